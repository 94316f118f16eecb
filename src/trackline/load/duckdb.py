"""DuckDB: the embedded default warehouse (one file, one writer process at a time)."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal

import pyarrow as pa

from trackline.config import DuckDBWarehouse
from trackline.errors import LockBusy, WarehouseError
from trackline.load.base import Column, StagedFiles, Warehouse

_process_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def _holder(message: str) -> str:
    """The process DuckDB names as holding the file's lock (``Conflicting lock is held in
    /usr/bin/python3 (PID 4242)``), as `` (/usr/bin/python3, PID 4242)``; empty if unnamed."""
    m = re.search(r"lock is held in (.+?) \(PID (\d+)\)", message)
    return f" ({m.group(1)}, PID {m.group(2)})" if m else ""


class DuckDB(Warehouse):
    ENGINE = "duckdb"
    DIALECT = "duckdb"
    MAX_IDENTIFIER_LENGTH = 255
    TEXT_TYPE = "VARCHAR"
    BATCH_ROW_MULTIPLE = 122_880  # one DuckDB row group
    TYPE_MAP: ClassVar[dict[str, str]] = {
        **Warehouse.TYPE_MAP,
        "uint8": "UTINYINT",
        "uint16": "USMALLINT",
        "uint32": "UINTEGER",
        "uint64": "UBIGINT",
        "int8": "TINYINT",
        "string": "VARCHAR",
        "large_string": "VARCHAR",
        "binary": "BLOB",
        "large_binary": "BLOB",
        "double": "DOUBLE",
    }

    RETRYABLE_MESSAGES: ClassVar[tuple[str, ...]] = (
        # two connections of one process wrote the same row or catalog entry
        # (https://duckdb.org/docs/stable/connect/concurrency): the later one is refused
        r"TransactionContext Error: Conflict on",
        r"write-write conflict",
    )

    config: DuckDBWarehouse

    def __init__(self, config: DuckDBWarehouse) -> None:
        super().__init__(config)
        self.con: Any = None
        self.catalog: str | None = None
        """The database file's catalog name (its file name's stem)."""
        self._unregister_after_rollback: list[str] = []
        """Arrow tables registered by a failed statement's `batch_relation`."""

    def connect(self) -> None:
        import duckdb

        path = str(self.config.path)
        deadline = time.monotonic() + self.config.lock_timeout_seconds
        while True:
            try:
                self.con = duckdb.connect(path)
                self.catalog = self.con.execute("SELECT current_database()").fetchone()[0]
                if self.config.memory_limit:
                    # DuckDB keeps written blocks cached up to 80% of RAM by default: memory
                    # would grow with the table. A limit keeps it bounded (it evicts/spills).
                    self.con.execute(f"SET memory_limit = '{_size(self.config.memory_limit)}'")
                return
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise WarehouseError(f"cannot open DuckDB file {path}: {exc}") from None
                if time.monotonic() >= deadline:
                    raise LockBusy(
                        f"DuckDB file {path} is open in another process{_holder(str(exc))}, "
                        "and DuckDB lets one process write a file: if it is a trackline run, "
                        "wait for it to finish (or set warehouse.lock_timeout_seconds to wait); "
                        "otherwise (a DuckDB shell, a notebook) close it there"
                    ) from None
                time.sleep(0.2)

    def sibling(self) -> DuckDB:
        """A cursor on this process's open database (DuckDB admits one process per file, so a
        second thread gets a second connection to the same instance, not a second open).
        It has its own transactions, which run beside this connection's: two tables' batch
        loads overlap (one DuckDB insert keeps about one core busy). DuckDB's optimistic
        concurrency control refuses a commit that writes a row another open transaction
        wrote; tables synced in parallel write different rows (their own raw table, their
        own watermark and ledger rows), and should one conflict anyway, the error is
        retryable (`RETRYABLE_MESSAGES`): the whole batch transaction runs again."""
        other = DuckDB(self.config)
        other.stage = self.stage
        other.con = self.con.cursor()
        other.catalog = self.catalog
        return other

    def write_heavy_storage(self, c: Column) -> str:
        # Text in a raw buffer: zstd instead of DuckDB's default choice (dictionary / FSST),
        # whose analysis and encoding at each checkpoint were most of the insert's CPU
        # (bench/README.md: half the loader's CPU on the sync benchmark's text, and a smaller
        # file); scans of it cost a little more, and raw is scanned by batch id only.
        if pa.types.is_string(c.type) or pa.types.is_large_string(c.type):
            return "" if c.json and self.JSON_TYPE else " USING COMPRESSION zstd"
        return ""

    def extreme(
        self,
        which: Literal["MIN", "MAX"],
        column: str,
        table: str,
        where: str = "",
        params: Sequence[Any] = (),
    ) -> Any:
        # The first row in the column's order instead of the aggregate. DuckDB answers an
        # ungrouped MIN/MAX/COUNT with statistics of every row group, which on a table with
        # deleted rows (a mart after its batch's replace-by-key, before the next checkpoint)
        # means counting the visible rows of every vector that holds a deletion: 17-24 ms at
        # 20M rows with 80,000 deletions spread over it, where the same probe as a top-1 reads
        # the one or two row groups its zone maps select (~1 ms; bench/README.md, session 9).
        cond = f"({where}) AND " if where else ""
        order = "DESC" if which == "MAX" else "ASC"
        return self.scalar(
            f"SELECT {column} FROM {table} WHERE {cond}{column} IS NOT NULL "
            f"ORDER BY {column} {order} LIMIT 1",
            params,
        )

    def t(self, schema: str | None, table: str) -> str:
        name = super().t(schema, table)
        if schema is not None and schema == self.catalog:
            # DuckDB names a file's catalog after the file: in trackline.duckdb, which holds
            # the schema `trackline` (the state's), `trackline.x` is ambiguous and refused.
            # The catalog's own name settles it.
            return f"{self.q(schema)}.{name}"
        return name

    def ensure_schema(self, schema: str) -> None:
        if schema != self.catalog:
            return super().ensure_schema(schema)
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.q(schema)}.{self.q(schema)}")

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        self.con.execute(sql, list(params) if params else None)

    def _execute_count(self, sql: str, params: Sequence[Any]) -> int:
        row = self.con.execute(sql, list(params) if params else None).fetchone()
        return int(row[0]) if row else 0  # DuckDB answers a DML statement with its row count

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, list(params) if params else None).fetchall()

    def _query_arrow(self, sql: str, params: Sequence[Any], schema: pa.Schema) -> pa.Table:
        # DuckDB hands its result over as Arrow (no Python value per cell)
        got = self.con.sql(sql, params=list(params) if params else None).to_arrow_table()
        arrays = [col.cast(f.type) for col, f in zip(got.columns, schema, strict=True)]
        return pa.Table.from_arrays(arrays, schema=schema)

    def _begin(self) -> None:
        self.con.begin()

    def _commit(self) -> None:
        self.con.commit()

    def _rollback(self) -> None:
        self.con.rollback()
        while self._unregister_after_rollback:
            self.con.unregister(self._unregister_after_rollback.pop())

    @contextlib.contextmanager
    def batch_relation(self, data: pa.Table, staged: StagedFiles | None = None) -> Iterator[str]:
        name = self.temp_name()
        self.con.register(name, data)
        try:
            yield self.q(name)
        except BaseException:
            # A statement that failed inside a transaction aborts it, and DuckDB then refuses
            # even the unregister until the rollback: let the statement's own error through
            # (it names what went wrong), and unregister after the rollback.
            try:
                self.con.unregister(name)
            except Exception:  # noqa: BLE001 - duckdb.Error (imported lazily): "transaction aborted"
                self._unregister_after_rollback.append(name)
            raise
        self.con.unregister(name)

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 0) -> Iterator[None]:
        # Across processes the database file itself is the lock (one writer opens it); inside
        # one process, a named lock keeps two threads from running the same work.
        with _guard:
            lk = _process_locks.setdefault(f"{self.config.path}:{name}", threading.Lock())
        if not lk.acquire(timeout=timeout if timeout > 0 else -1 if timeout < 0 else 0.0):
            raise LockBusy(f"{name!r} is already running in this process")
        try:
            yield
        finally:
            lk.release()

    def maintenance(self, schema: str, table: str) -> list[str]:
        sql = f"ANALYZE {self.t(schema, table)}"
        self.execute(sql)
        return [sql]


def _size(text: str) -> str:
    """A validated DuckDB size literal such as ``256MB`` (config is validated; re-checked)."""
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", text.strip()):
        raise WarehouseError(f"warehouse.memory_limit {text!r} is not a size such as '256MB'")
    return text.strip()
