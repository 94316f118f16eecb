"""PostgreSQL: COPY for loads (CSV written by Arrow's C++ writer), advisory locks."""

from __future__ import annotations

import contextlib
import io
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from trackline.config import PostgresWarehouse, RedshiftWarehouse
from trackline.errors import InjectedFault, LockBusy, WarehouseError
from trackline.load.base import Column, StagedFiles, Warehouse


def _copy_ready(data: pa.Table) -> pa.Table:
    """Make every column CSV-writable with PostgreSQL's input syntax (bytea as \\x hex)."""
    cols = []
    for field, col in zip(data.schema, data.columns, strict=True):
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            hexed = pc.binary_join_element_wise(
                pa.scalar("\\x"), pc.utf8_lower(pc.cast(_hex(col), pa.string())), ""
            )
            cols.append(hexed)
        else:
            cols.append(col)
    return pa.Table.from_arrays(cols, names=data.schema.names)


def _hex(col: pa.ChunkedArray) -> pa.Array:
    values = [None if v is None else v.hex() for v in col.to_pylist()]
    return pa.array(values, pa.string())


_SERIALIZE = 0x544C5831  # "TLX1": the first key of `Postgres.serialize`'s advisory locks


def _key32(name: str) -> int:
    """A signed 32-bit key for `name` (pg_advisory_xact_lock(int4, int4))."""
    k = zlib.crc32(f"trackline:{name}".encode())
    return k - (1 << 32) if k >= 1 << 31 else k


def _connect_error(exc: Exception) -> str:
    """psycopg's connection error (it never contains the password) on one line: the last
    attempt's cause, then libpq's hint. (Its last line alone was kept: the hint "Is the server
    running on that host…?" without the cause, "Connection refused".)"""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    causes = [ln for ln in lines if not ln.startswith(("Is the server", "HINT:"))]
    hints = [ln for ln in lines if ln not in causes]
    if not causes:
        return " ".join(hints) or type(exc).__name__
    return causes[-1] + (f" ({' '.join(hints)})" if hints else "")


class Postgres(Warehouse):
    ENGINE = "postgres"
    DIALECT = "postgres"
    MAX_IDENTIFIER_LENGTH = 63
    KEYED_INSERT = "on_conflict"
    SECONDARY_INDEXES = True
    ROW_COUNTS_ESTIMATED = True
    ANALYZE_BEFORE_JOIN = True
    # The default 4MB work_mem spills a 1M x 1M hash join to disk; JIT compiling the joins'
    # expressions costs more (~1.3 s) than it saves on a one-off statement. SET LOCAL ends
    # with the transaction: https://www.postgresql.org/docs/current/sql-set.html
    BULK_JOIN_SETTINGS: ClassVar[tuple[str, ...]] = (
        "SET LOCAL work_mem = '256MB'",
        "SET LOCAL jit = off",
    )
    # The default random_page_cost (4) prices 200K index probes of a 20M-row target above a
    # scan of all of it: EXPLAIN ANALYZE of the consolidation's DELETE, 17.6 s (hash join,
    # seq scan) against 1.5 s (nested loop, index scan) at 1.1, the value PostgreSQL's docs
    # suggest for SSDs: https://www.postgresql.org/docs/current/runtime-config-query.html
    INDEX_PROBE_SETTINGS: ClassVar[tuple[str, ...]] = ("SET LOCAL random_page_cost = 1.1",)

    config: PostgresWarehouse | RedshiftWarehouse

    def __init__(self, config: PostgresWarehouse | RedshiftWarehouse) -> None:
        super().__init__(config)
        self.con: Any = None

    def conninfo(self) -> dict[str, Any]:
        c = self.config
        return {
            "host": c.host,
            "port": c.port,
            "user": c.user,
            "password": c.password.get_secret_value() or None,
            "dbname": c.database,
            "connect_timeout": 10,
            "application_name": "trackline",
        }

    def connect(self) -> None:
        import psycopg

        try:
            self.con = psycopg.connect(**self.conninfo(), autocommit=True)
        except psycopg.OperationalError as exc:
            c = self.config
            raise WarehouseError(
                f"cannot connect to {self.ENGINE} at {c.host}:{c.port} database {c.database!r} "
                f"as {c.user!r}: {_connect_error(exc)}"
            ) from None

    def broken(self) -> bool:
        return self.con is None or bool(self.con.closed) or self.con.broken

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    @staticmethod
    def _pg_sql(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def _run(self, sql: str, params: Sequence[Any]) -> Any:
        # With parameters psycopg parses placeholders (`?` → `%s`, a literal `%` doubled);
        # without, it sends the text exactly as written.
        if params:
            return self.con.execute(self._pg_sql(sql), list(params))
        return self.con.execute(sql)

    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        self._run(sql, params)

    def _execute_count(self, sql: str, params: Sequence[Any]) -> int:
        return int(self._run(sql, params).rowcount)

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        cur = self._run(sql, params)
        return list(cur.fetchall()) if cur.description else []

    def _begin(self) -> None:
        self.con.execute("BEGIN")

    def _commit(self) -> None:
        self.con.execute("COMMIT")

    def _rollback(self) -> None:
        self.con.execute("ROLLBACK")

    # serialization_failure, deadlock_detected: the transaction is rolled back, run it again
    # (https://www.postgresql.org/docs/current/mvcc-serialization-failure-handling.html)
    RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
    # Two sessions running CREATE SCHEMA / CREATE TABLE … IF NOT EXISTS for the same name at
    # once (tables synced in parallel, Airflow tasks): the loser fails on the catalog's unique
    # index instead of finding the object; run again, it finds it.
    RETRYABLE_MESSAGES: ClassVar[tuple[str, ...]] = (
        r'unique constraint "pg_(namespace_nspname|type_typname_nsp)_index"',
    )

    def is_retryable(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, psycopg.OperationalError) or super().is_retryable(exc)

    # ------------------------------------------------------------------ loading

    def copy_into(self, target: str, data: pa.Table) -> int:
        """COPY an Arrow table into `target` (a quoted relation) through CSV."""
        if data.num_rows == 0:
            return 0
        ready = _copy_ready(data)
        buf = io.BytesIO()
        pacsv.write_csv(
            ready,
            buf,
            pacsv.WriteOptions(include_header=False, quoting_style="needed", batch_size=65536),
        )
        cols = self.cols(data.schema.names)
        try:
            with self.con.cursor().copy(
                f"COPY {target} ({cols}) FROM STDIN WITH (FORMAT csv)"
            ) as cp:
                view = buf.getbuffer()
                step = 1 << 20
                for i in range(0, len(view), step):
                    cp.write(view[i : i + step])
                del view
        except Exception as exc:
            raise self.translate_error(exc, f"COPY {target}") from exc
        return data.num_rows

    @contextlib.contextmanager
    def batch_relation(self, data: pa.Table, staged: StagedFiles | None = None) -> Iterator[str]:
        name = self.temp_name()
        cols = [Column.of(f) for f in data.schema]
        self.execute(
            f"CREATE TEMPORARY TABLE {self.q(name)} ("
            + ", ".join(f"{self.q(c.name)} {self.column_type(c)}" for c in cols)
            + ")"
        )
        try:
            self.copy_into(self.q(name), data)
            yield self.q(name)
        finally:
            with contextlib.suppress(WarehouseError):
                self.execute(f"DROP TABLE IF EXISTS {self.q(name)}")

    def append_arrow(
        self, schema: str, table: str, data: pa.Table, staged: StagedFiles | None = None
    ) -> int:
        return self.copy_into(self.t(schema, table), data)

    UNIQUE_VIOLATION = "23505"

    def unique_in_transaction(
        self, schema: str, table: str, columns: Sequence[str]
    ) -> Callable[[], None] | None:
        # The build fails on the first duplicate and would abort the transaction: a savepoint
        # keeps it going (https://www.postgresql.org/docs/current/sql-savepoint.html).
        if not self.in_transaction:
            raise AssertionError("unique_in_transaction runs inside a transaction")
        raw = f"{table}_tl_unique"[: self.MAX_IDENTIFIER_LENGTH]
        name, index = self.q(raw), self.t(schema, raw)
        self.execute("SAVEPOINT tl_unique")
        try:
            self.execute(
                f"CREATE UNIQUE INDEX {name} ON {self.t(schema, table)} ({self.cols(columns)})"
            )
        except WarehouseError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != self.UNIQUE_VIOLATION:
                raise
            self.execute("ROLLBACK TO SAVEPOINT tl_unique")
            return None
        self.execute("RELEASE SAVEPOINT tl_unique")
        return lambda: self.execute(f"DROP INDEX {index}")

    def approx_rows(self, schema: str, table: str) -> int:
        # Constant cost, unlike COUNT(*). `n_live_tup` of the cumulative statistics is kept
        # current by every committed insert and delete, with or without (auto)ANALYZE;
        # `reltuples` is only as fresh as the last ANALYZE (2.9k shown for a 163k-row mart
        # with autovacuum off): it is the fallback when the statistics were reset (0 live
        # rows counted). A table never analysed nor counted is counted exactly.
        # https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-ALL-TABLES-VIEW
        # Since PostgreSQL 15 a session flushes its own counts at most once a second, when
        # it goes idle: this session's last writes (the cycle that just ran) may not be
        # counted yet (16 rows shown for 3,009). Forcing the flush first makes them count;
        # it happens as this statement ends, before the read below.
        if self.con is not None and self.con.info.server_version >= 150000:
            self.execute("SELECT pg_stat_force_next_flush()")
        row = self.query(
            "SELECT s.n_live_tup, c.reltuples FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE n.nspname = ? AND c.relname = ?",
            (self.name(schema), self.name(table)),
        )
        live, tuples = row[0] if row else (None, None)
        est = live if live else tuples
        if est is None or float(est) <= 0:
            return super().approx_rows(schema, table)
        return int(float(est))

    # ------------------------------------------------------------------ locks & upkeep

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 0) -> Iterator[None]:
        key = zlib.crc32(f"trackline:{name}".encode())
        deadline = time.monotonic() + timeout
        while not self.scalar("SELECT pg_try_advisory_lock(?)", (key,)):
            if time.monotonic() >= deadline:
                raise LockBusy(
                    f"another trackline run holds the lock {name!r} on {self.ENGINE}"
                    f"{self._lock_holder(key)}; it is released when that run ends: run this "
                    "command again then"
                )
            time.sleep(0.2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                self.scalar("SELECT pg_advisory_unlock(?)", (key,))

    def _lock_holder(self, key: int) -> str:
        """Who holds the advisory lock `key`: its session (pid, application, client, since
        when), and how to end that session if it no longer works (`pg_terminate_backend`
        releases its locks). Empty when the server does not say."""
        try:
            rows = self.query(
                "SELECT a.pid, a.application_name, a.client_addr, a.backend_start, a.state "
                "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = ? "
                "AND l.objid::bigint = ? AND l.objsubid = 1 "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (key >> 32, key & 0xFFFFFFFF),
            )
        except InjectedFault:
            raise
        except Exception:  # noqa: BLE001 - a user without pg_stat_activity rights: no name
            return ""
        if not rows:
            return ""
        pid, app, client, since, state = rows[0]
        when = f", connected since {str(since)[:19]}" if since else ""
        return (
            f" (its session: pid {pid}, application {app or '?'!r}, client "
            f"{client or 'local'}{when}, {state or 'state unknown'}; if no trackline run "
            f"is working there any more, `SELECT pg_terminate_backend({pid})` releases it)"
        )

    PARALLEL_MARTS = True

    def serialize(self, name: str) -> None:
        # a transaction-level advisory lock (released at commit/rollback), in its own key
        # space: two 32-bit keys, the first naming trackline's serialization points
        self.scalar("SELECT pg_advisory_xact_lock(?, ?)", (_SERIALIZE, _key32(name)))

    def maintenance(self, schema: str, table: str) -> list[str]:
        # Only when the engine says it is needed: dead tuples above 10% of live ones.
        row = self.query(
            "SELECT n_live_tup, n_dead_tup FROM pg_stat_user_tables "
            "WHERE schemaname = ? AND relname = ?",
            (self.name(schema), self.name(table)),
        )
        ran = []
        if row and row[0][1] > 0.1 * max(row[0][0], 1):
            sql = f"VACUUM ANALYZE {self.t(schema, table)}"
            self.execute(sql)
            ran.append(sql)
        return ran
