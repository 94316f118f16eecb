"""The warehouse boundary: one small base, one module per engine.

An engine module states its capabilities as class constants and overrides a handful of hooks;
business logic (sync, marts, checks) never asks which engine it talks to. SQL written by
trackline uses ``?`` for bound parameters; each adapter translates to its driver's style.

Hooks an engine overrides:
- `_connect`, `_execute`, `_query`, `_begin/_commit/_rollback`: driver plumbing;
- `TYPE_MAP` / `sql_type`: Arrow → column type;
- `table_options`: text after ``CREATE TABLE (…)`` (Redshift: DISTKEY/SORTKEY);
- `view_options`: text after ``CREATE VIEW … AS <query>`` (Redshift: WITH NO SCHEMA BINDING);
- `batch_relation`: make an in-memory Arrow batch (or staged files) queryable by name;
- `append_arrow`: fastest append of a batch into a table (default: via `batch_relation`);
- `lock`: one holder at a time for a named piece of work.

`stage` is set by the caller (`open_warehouse(cfg.warehouse, stage=Stage(cfg.stage))`) for
engines that load from the staged files themselves (Redshift's COPY); others ignore it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import logging
import re
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import pyarrow as pa

from trackline import faults
from trackline.errors import ConfigError, RetryableWarehouseError, WarehouseError
from trackline.extract.types import is_json, max_bytes
from trackline.sqlutil import column_list, qualified, quote, replace_placeholders
from trackline.stage import Stage, StagedFiles

log = logging.getLogger(__name__)

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

T = TypeVar("T")


def _arrow_values(values: list[Any], t: pa.DataType) -> pa.Array:
    """Driver values as an Arrow array of type `t` (a time of day may come back as text)."""
    try:
        return pa.array(values, t)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        if pa.types.is_time(t):
            return pa.array([v if v is None else dt.time.fromisoformat(v) for v in values], t)
        return pa.array(values).cast(t)


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool = True
    json: bool = False
    """Stored with the engine's JSON document type (`Warehouse.JSON_TYPE`), where it has one."""
    max_bytes: int | None = None
    """Text: the most bytes a value takes (from the source's declared length), for engines
    that size text columns (`Warehouse.sized_text_type`); None = unbounded."""

    @classmethod
    def of(cls, field: pa.Field) -> Column:
        return cls(field.name, field.type, field.nullable, is_json(field), max_bytes(field))


def declared_bytes(spec: str) -> int | None:
    """The length of a ``character varying(n)`` column spec (`Warehouse.column_specs`); None
    for any other type (unbounded text, numbers)."""
    m = re.fullmatch(r"character varying\((\d+)\)", spec)
    return int(m.group(1)) if m else None


class Warehouse(ABC):
    ENGINE: ClassVar[str]
    DIALECT: ClassVar[str]
    MAX_IDENTIFIER_LENGTH: ClassVar[int] = 63
    TRUNCATE_COMMITS: ClassVar[bool] = False
    ROW_COUNTS_ESTIMATED: ClassVar[bool] = False
    """`approx_rows` returns the engine's statistics, not a COUNT (reports label them)."""
    """TRUNCATE ends the transaction (Redshift): trackline then uses DELETE."""
    FOLDS_IDENTIFIERS: ClassVar[bool] = False
    """Store every name trackline writes in lower case (`name`), as the engine does with
    unquoted names, so readers find `pathTime` as ``pathtime`` with no session setting."""
    BLANK_PADDED_EQUALITY: ClassVar[bool] = False
    """`=` on VARCHAR ignores trailing blanks (Redshift: 'a' = 'a '): value comparisons of
    text columns go through `distinct`, which also compares their lengths."""
    KEYED_INSERT: ClassVar[str] = "anti_join"
    """How marts insert "only keys not present": `anti_join` (INSERT … WHERE NOT EXISTS) or
    `on_conflict` (INSERT … ON CONFLICT DO NOTHING through a unique index, flat cost in PG)."""
    BATCH_ROW_MULTIPLE: ClassVar[int] = 1
    """Sync batches are rounded up to a multiple of this (the engine's storage unit)."""
    TEXT_TYPE: ClassVar[str] = "TEXT"
    JSON_TYPE: ClassVar[str | None] = None
    """The column type of JSON documents (Redshift: SUPER); None = kept as text."""
    TIMESTAMP_TYPE: ClassVar[str] = "TIMESTAMP"
    TYPE_MAP: ClassVar[dict[str, str]] = {
        "bool": "BOOLEAN",
        "int8": "SMALLINT",
        "int16": "SMALLINT",
        "int32": "INTEGER",
        "int64": "BIGINT",
        "uint8": "SMALLINT",
        "uint16": "INTEGER",
        "uint32": "BIGINT",
        "uint64": "DECIMAL(20,0)",
        "float": "REAL",
        "double": "DOUBLE PRECISION",
        "string": "TEXT",
        "large_string": "TEXT",
        "binary": "BYTEA",
        "large_binary": "BYTEA",
        "date32[day]": "DATE",
        "time64[us]": "TIME",
    }

    def __init__(self, config: Any) -> None:
        self.config = config
        self.stage: Stage | None = None
        self.notices: list[str] = []
        """What the adapter decided on its own (a value cut to fit, a stale lock taken over)."""
        self._depth = 0
        self._tx_lock = threading.RLock()
        self.ready: set[str] = set()
        """Things already set up on this connection (state schema migrated, …): skip re-checks."""

    def notice(self, message: str) -> None:
        """Record (and log) a decision the caller did not ask for; callers may report them."""
        self.notices.append(message)
        log.warning(message)

    # ------------------------------------------------------------------ connection

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def sibling(self) -> Warehouse:
        """Another open connection to the same warehouse, for another thread (tables synced
        in parallel): its own session, transactions and locks. The caller closes it."""
        other = type(self)(self.config)
        other.stage = self.stage
        other.connect()
        return other

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any]) -> None: ...

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    RETRYABLE_SQLSTATES: ClassVar[frozenset[str]] = frozenset()
    """SQLSTATEs of errors after which the whole transaction may simply run again."""
    RETRYABLE_MESSAGES: ClassVar[tuple[str, ...]] = ()
    """Regular expressions (case-insensitive) on a driver error's text with the same meaning,
    for engines that report a conflict without a telling SQLSTATE (Redshift)."""
    RETRY_ATTEMPTS: ClassVar[int] = 5
    """How often `run_transaction` runs a transaction before it gives up."""
    RETRY_BACKOFF: ClassVar[float] = 0.5
    """Seconds before the first retry; doubled after each one, up to `RETRY_BACKOFF_CAP`."""
    RETRY_BACKOFF_CAP: ClassVar[float] = 8.0

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether a driver error means "run the transaction again" (a conflict with a
        concurrent transaction, a dropped connection): `RETRYABLE_SQLSTATES` / `_MESSAGES`."""
        if getattr(exc, "sqlstate", None) in self.RETRYABLE_SQLSTATES:
            return True
        text = str(exc)
        return any(re.search(p, text, re.I | re.M) for p in self.RETRYABLE_MESSAGES)

    def translate_error(self, exc: BaseException, sql: str) -> BaseException:
        """Map a driver error to trackline's tree (retryable or not). Engines refine this."""
        first = sql.strip().splitlines()[0][:160] if sql.strip() else ""
        if self.is_retryable(exc):
            return RetryableWarehouseError(
                f"{self.ENGINE}: conflict with a concurrent transaction or lost connection "
                f"({exc}); the transaction was rolled back and can run again (statement: {first})"
            )
        return WarehouseError(f"{self.ENGINE} refused: {exc} (statement: {first})")

    def _statement(self, sql: str, run: Callable[[], T]) -> T:
        """Run one statement through the fault points, translating driver errors at this
        boundary (every statement method goes through here)."""
        faults.before_statement()
        try:
            out = run()
        except Exception as exc:
            if isinstance(exc, WarehouseError):
                raise
            raise self.translate_error(exc, sql) from exc
        faults.after_statement()
        return out

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._statement(sql, lambda: self._execute(sql, params))

    def _execute_count(self, sql: str, params: Sequence[Any]) -> int:
        """Engines that report a DML statement's row count override this; -1 = unknown."""
        self._execute(sql, params)
        return -1

    def execute_count(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT/UPDATE/DELETE and return how many rows it changed (-1 if unknown)."""
        return self._statement(sql, lambda: self._execute_count(sql, params))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._statement(sql, lambda: self._query(sql, params))

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def extreme(
        self,
        which: Literal["MIN", "MAX"],
        column: str,
        table: str,
        where: str = "",
        params: Sequence[Any] = (),
    ) -> Any:
        """``MIN``/``MAX`` of `column` (quoted) over the rows of `table` (quoted) that match
        `where` (SQL, `?` bound to `params`); None when no row has a value."""
        cond = f" WHERE {where}" if where else ""
        return self.scalar(f"SELECT {which}({column}) FROM {table}{cond}", params)

    def query_arrow(self, sql: str, params: Sequence[Any], schema: pa.Schema) -> pa.Table:
        """A query's rows as an Arrow table whose columns, by position, have `schema`'s names
        and types (a caller bounds the rows: the result is held whole)."""
        return self._statement(sql, lambda: self._query_arrow(sql, params, schema))

    def _query_arrow(self, sql: str, params: Sequence[Any], schema: pa.Schema) -> pa.Table:
        """Default: the driver's rows (Python values) converted column by column."""
        rows = self._query(sql, params)
        arrays = [_arrow_values([r[i] for r in rows], f.type) for i, f in enumerate(schema)]
        return pa.Table.from_arrays(arrays, schema=schema)

    def distinct(self, a: str, b: str, column: Column) -> str:  # noqa: ARG002 - engines that compare some types specially use it
        """SQL true when the values `a` and `b` of `column`'s type differ, NULL-safely (a
        change to or from NULL counts)."""
        return f"{a} IS DISTINCT FROM {b}"

    def fetchable(self, expr: str, column: Column) -> str:  # noqa: ARG002 - engines with a JSON document type use it
        """`expr` (a value of `column`) as a SELECT should return it for `query_arrow` (JSON
        documents: as text)."""
        return expr

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One warehouse transaction; nested uses join the outer one."""
        with self._tx_lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            faults.before_statement()
            self._begin()
            self._depth = 1
            try:
                faults.after_statement()  # fault injection counts BEGIN and COMMIT too
                yield
                faults.before_statement()  # a process killed meanwhile sends no COMMIT
            except BaseException:
                self._depth = 0
                self.ready.clear()
                with contextlib.suppress(Exception):
                    self._rollback()
                raise
            self._depth = 0
            try:
                self._commit()
            except Exception as exc:
                raise self.translate_error(exc, "COMMIT") from exc
            faults.after_statement()

    def run_transaction(
        self,
        work: Callable[[], T],
        *,
        attempts: int | None = None,
        backoff: float | None = None,
    ) -> T:
        """Run `work` in one transaction and return what it returns. Every transaction
        trackline runs goes through here, so a retryable error (`RetryableWarehouseError`: a
        serialization conflict such as Redshift's error 1023, a dropped connection, reopened
        first) reruns the WHOLE of `work` in a new transaction: whatever it computed from the
        warehouse is computed again, never a single statement replayed. Up to `attempts`
        (`RETRY_ATTEMPTS`) runs, waiting `backoff` · 2^n seconds between them (at most
        `RETRY_BACKOFF_CAP`). Inside another transaction `work` joins it, and the outermost
        one is what reruns. `work` must leave no effect outside the warehouse that a second
        run would repeat (counters are set from what it returns, or reset at its start)."""
        if self.in_transaction:
            return work()
        attempts = self.RETRY_ATTEMPTS if attempts is None else attempts
        backoff = self.RETRY_BACKOFF if backoff is None else backoff
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction():
                    return work()
            except RetryableWarehouseError as exc:
                if attempt >= attempts:
                    raise
                self.notice(
                    f"retrying after a transient {self.ENGINE} error ({exc}); "
                    f"attempt {attempt + 1} of {attempts}"
                )
                time.sleep(min(backoff * 2 ** (attempt - 1), self.RETRY_BACKOFF_CAP))
                with contextlib.suppress(Exception):
                    if self.broken():
                        self.close()
                        self.connect()
        raise AssertionError("unreachable")

    def broken(self) -> bool:
        """True when the connection is unusable and must be reopened before a retry."""
        return False

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    # ------------------------------------------------------------------ names

    def name(self, name: str) -> str:
        """The name the warehouse stores for `name` (lower case where `FOLDS_IDENTIFIERS`:
        ASCII letters only, as the engine folds them)."""
        return name.translate(_ASCII_LOWER) if self.FOLDS_IDENTIFIERS else name

    def q(self, name: str) -> str:
        if len(name.encode()) > self.MAX_IDENTIFIER_LENGTH:
            raise WarehouseError(
                f"identifier {name!r} is longer than {self.ENGINE}'s limit of "
                f"{self.MAX_IDENTIFIER_LENGTH} bytes; choose a shorter name in the config"
            )
        return quote(self.name(name), self.DIALECT)

    def t(self, schema: str | None, table: str) -> str:
        self.q(table)
        return qualified(schema and self.name(schema), self.name(table), self.DIALECT)

    def cols(self, names: Sequence[str], prefix: str = "") -> str:
        for n in names:
            self.q(n)
        return column_list([self.name(n) for n in names], self.DIALECT, prefix)

    def name_clash(self, names: Sequence[str]) -> tuple[str, str, str] | None:
        """Two of `names` the warehouse would store under one name: (first, second, stored)."""
        seen: dict[str, str] = {}
        for n in names:
            stored = self.name(n)
            if stored in seen:
                return seen[stored], n, stored
            seen[stored] = n
        return None

    # ------------------------------------------------------------------ catalog

    def ensure_schema(self, schema: str) -> None:
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.q(schema)}")

    def table_exists(self, schema: str, table: str) -> bool:
        # Tables trackline created stay (it never drops one it loads into), so a "yes" is
        # remembered for this connection; a rollback forgets everything remembered.
        memo = f"table:{schema}.{table}"
        if memo in self.ready:
            return True
        found = bool(
            self.scalar(
                "SELECT COUNT(*) FROM information_schema.tables "
                "WHERE table_schema = ? AND table_name = ?",
                (self.name(schema), self.name(table)),
            )
        )
        if found:
            self.ready.add(memo)
        return found

    def column_names(self, schema: str, table: str) -> list[str]:
        rows = self.query(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            (self.name(schema), self.name(table)),
        )
        return [r[0] for r in rows]

    @property
    def stores_json(self) -> bool:
        """Whether new tables store JSON source columns as documents (`JSON_TYPE`)."""
        return False

    def json_column_names(self, schema: str, table: str) -> set[str]:
        """The columns of an existing table stored with `JSON_TYPE`."""
        if not self.JSON_TYPE:
            return set()
        want = self.JSON_TYPE.lower()
        return {n for n, t in self.column_types(schema, table).items() if t == want}

    def column_types(self, schema: str, table: str) -> dict[str, str]:
        """Column name → the engine's type name, lower-cased (for drift checks)."""
        rows = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            (self.name(schema), self.name(table)),
        )
        return {r[0]: str(r[1]).lower() for r in rows}

    def list_tables(self, schema: str, prefix: str = "") -> list[str]:
        rows = self.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = ? AND table_type = 'BASE TABLE' ORDER BY table_name",
            (self.name(schema),),
        )
        return [r[0] for r in rows if r[0].startswith(self.name(prefix))]

    # ------------------------------------------------------------------ DDL

    def sql_type(self, t: pa.DataType) -> str:
        if pa.types.is_decimal(t):
            return f"DECIMAL({t.precision},{t.scale})"
        if pa.types.is_timestamp(t):
            return self.TIMESTAMP_TYPE
        key = str(t)
        if key in self.TYPE_MAP:
            return self.TYPE_MAP[key]
        if pa.types.is_time(t):
            return self.TYPE_MAP["time64[us]"]
        if pa.types.is_date(t):
            return "DATE"
        raise WarehouseError(f"{self.ENGINE}: no column type for Arrow type {t}")

    def param_type(self, value: Any) -> str:
        """The column type for a bound value of this Python type (for ``CAST(? AS …)``);
        raises for None, whose type only its context tells."""
        if isinstance(value, bool):
            return self.sql_type(pa.bool_())
        if isinstance(value, int):
            return self.sql_type(pa.int64())
        if isinstance(value, float):
            return self.sql_type(pa.float64())
        if isinstance(value, decimal.Decimal):
            exponent = value.as_tuple().exponent
            scale = -exponent if isinstance(exponent, int) and exponent < 0 else 0
            return f"DECIMAL(38,{min(scale, 37)})"
        if isinstance(value, dt.datetime):
            return self.TIMESTAMP_TYPE
        if isinstance(value, dt.date):
            return "DATE"
        if isinstance(value, str):
            return self.TEXT_TYPE
        raise WarehouseError(f"{self.ENGINE}: no column type for a bound {type(value).__name__}")

    def typed_nulls(self, sql: str, params: Sequence[Any]) -> str:
        """`sql` with each ``?`` replaced by a NULL of its parameter's type (plain NULL for a
        None): the same query's columns and types, with no bound parameter, so DDL such as
        ``CREATE TABLE … AS`` can take its shape (Redshift prepares only SELECT, INSERT,
        UPDATE and DELETE: https://docs.aws.amazon.com/redshift/latest/dg/r_PREPARE.html)."""
        nulls = ["NULL" if p is None else f"CAST(NULL AS {self.param_type(p)})" for p in params]
        return replace_placeholders(sql, self.DIALECT, nulls)

    def column_type(self, c: Column) -> str:
        if c.json and self.JSON_TYPE:
            return self.JSON_TYPE
        if c.max_bytes is not None and pa.types.is_string(c.type):
            return self.sized_text_type(c.max_bytes)
        return self.sql_type(c.type)

    def write_heavy_storage(self, c: Column) -> str:  # noqa: ARG002 - engines without per-column storage options ignore it
        """A column option after the type for a `write_heavy` table ('' = the default)."""
        return ""

    def sized_text_type(self, max_bytes: int) -> str:  # noqa: ARG002 - engines with unbounded text ignore the size
        """The column type of text whose values take at most `max_bytes` bytes."""
        return self.TEXT_TYPE

    def table_options(self, dist_key: str | None, sort_key: Sequence[str] | None) -> str:  # noqa: ARG002 - engines without physical design options ignore them
        return ""

    def replicated_options(self, sort_key: Sequence[str] | None) -> str:
        """`table_options` of a small table every node keeps a whole copy of (a dimension)."""
        return self.table_options(None, sort_key)

    def create_table(
        self,
        schema: str,
        table: str,
        columns: Sequence[Column],
        *,
        primary_key: Sequence[str] | None = None,
        dist_key: str | None = None,
        sort_key: Sequence[str] | None = None,
        replicated: bool = False,
        write_heavy: bool = False,
    ) -> None:
        """`replicated`: a small table every node keeps whole (`replicated_options`).
        `write_heavy`: a table written far more than it is scanned (an append-only raw buffer,
        read by batch id and trimmed): its columns take `write_heavy_storage`."""
        clash = self.name_clash([c.name for c in columns])
        if clash:
            raise ConfigError(
                f"{schema}.{table}: columns {clash[0]!r} and {clash[1]!r} would both be the "
                f"column {clash[2]!r} ({self.ENGINE} stores names in lower case); rename one"
            )
        parts = [
            f"{self.q(c.name)} {self.column_type(c)}"
            f"{self.write_heavy_storage(c) if write_heavy else ''}"
            f"{'' if c.nullable else ' NOT NULL'}"
            for c in columns
        ]
        if primary_key:
            parts.append(f"PRIMARY KEY ({self.cols(primary_key)})")
        self.execute(
            f"CREATE TABLE IF NOT EXISTS {self.t(schema, table)} (\n  "
            + ",\n  ".join(parts)
            + "\n)"
            + (
                self.replicated_options(sort_key)
                if replicated
                else self.table_options(dist_key, sort_key)
            )
        )

    def add_column(self, schema: str, table: str, column: Column) -> None:
        self.execute(
            f"ALTER TABLE {self.t(schema, table)} "
            f"ADD COLUMN {self.q(column.name)} {self.column_type(column)}"
        )

    # Column types change only by widening (a source type change that loses nothing). ALTER
    # TABLE … ALTER COLUMN … TYPE runs inside the caller's transaction where the engine allows
    # it (`ALTERS_TYPES_IN_TRANSACTION`); `can_alter_type` says which changes the engine can
    # make in place at all (else the tables are rebuilt: `trackline migrate`).
    ALTERS_TYPES_IN_TRANSACTION: ClassVar[bool] = True

    def can_alter_type(self, current: str, column: Column) -> bool:  # noqa: ARG002 - every change is possible in the base
        """Whether a column whose catalog type is `current` (`column_specs`) can be altered in
        place to `column`'s type."""
        return True

    def alter_type_scope(self) -> contextlib.AbstractContextManager[None]:
        """The block in which `alter_column_type` runs: one transaction, or (engines that
        refuse ALTER … TYPE inside a transaction block) none, each statement on its own."""
        if self.ALTERS_TYPES_IN_TRANSACTION:
            return self.transaction()
        return contextlib.nullcontext()

    def alter_column_type(self, schema: str, table: str, column: Column) -> None:
        self.execute(
            f"ALTER TABLE {self.t(schema, table)} "
            f"ALTER COLUMN {self.q(column.name)} TYPE {self.column_type(column)}"
        )

    def rebuild_table(
        self,
        schema: str,
        table: str,
        columns: Sequence[Column],
        *,
        dist_key: str | None = None,
        sort_key: Sequence[str] | None = None,
        replicated: bool = False,
    ) -> None:
        """Copy `table` into a new table with `columns`' types and give it the old name (a deep
        copy), inside the caller's transaction: for a type change the engine cannot ALTER.
        Indexes are not copied (callers create theirs again); views on the table must be
        dropped first where the engine binds them."""
        new = f"{table}_tl_migrate"
        names = self.cols([c.name for c in columns])
        self.execute(f"DROP TABLE IF EXISTS {self.t(schema, new)}")
        self.create_table(
            schema, new, columns, dist_key=dist_key, sort_key=sort_key, replicated=replicated
        )
        old = self.t(schema, table)
        self.execute(f"INSERT INTO {self.t(schema, new)} ({names}) SELECT {names} FROM {old}")
        self.execute(f"DROP TABLE {old}")
        self.execute(f"ALTER TABLE {self.t(schema, new)} RENAME TO {self.q(table)}")
        self.ready.discard(f"table:{schema}.{new}")

    def column_specs(self, schema: str, table: str | None = None) -> dict[str, dict[str, str]]:
        """Table or view → column → its declared type as the catalog states it, lengths and
        precisions included (``character varying(800)``, ``numeric(12,2)``): one catalog query
        for a whole schema (or one `table` of it). Columns made from the same `Column` have the
        same spec."""
        where, params = "table_schema = ?", [self.name(schema)]
        if table is not None:
            where, params = where + " AND table_name = ?", [*params, self.name(table)]
        rows = self.query(
            "SELECT table_name, column_name, data_type, character_maximum_length, "
            "numeric_precision, numeric_scale FROM information_schema.columns "
            f"WHERE {where} ORDER BY table_name, ordinal_position",
            params,
        )
        out: dict[str, dict[str, str]] = {}
        for table, col, dtype, length, precision, scale in rows:
            size = [str(v) for v in (length, precision, scale) if v is not None]
            spec = str(dtype).lower() + (f"({','.join(size)})" if size else "")
            out.setdefault(table, {})[col] = spec
        return out

    def replace_view(self, schema: str, view: str, query: str, *, new_columns: bool) -> None:
        """(Re)create a view. When its column list or types change (`new_columns`), the old one
        is dropped first: ``CREATE OR REPLACE VIEW`` may only keep the columns (Redshift) or
        append to them (PostgreSQL), and a column a view reads cannot change type under it."""
        if new_columns:
            self.drop_view(schema, view)
        verb = "CREATE VIEW" if new_columns else "CREATE OR REPLACE VIEW"
        self.execute(f"{verb} {self.t(schema, view)} AS {query}{self.view_options()}")

    def drop_view(self, schema: str, view: str) -> None:
        self.execute(f"DROP VIEW IF EXISTS {self.t(schema, view)}")
        self.ready.discard(f"table:{schema}.{view}")

    def create_unique_index(self, schema: str, table: str, columns: Sequence[str]) -> None:
        """Engines whose KEYED_INSERT is `on_conflict` need it; others may skip it."""
        name = f"{table}_uk"[: self.MAX_IDENTIFIER_LENGTH]
        self.execute(
            f"CREATE UNIQUE INDEX IF NOT EXISTS {self.q(name)} "
            f"ON {self.t(schema, table)} ({self.cols(columns)})"
        )

    def unique_in_transaction(
        self, schema: str, table: str, columns: Sequence[str]
    ) -> Callable[[], None] | None:
        """Inside a transaction: whether `columns` are unique in `table`, answered by building a
        unique index on them (row stores: one sort of the keys, cheaper than a GROUP BY's hash
        of all of them). Returns the index's drop (run it in the same transaction) when they
        are unique; None when the engine has no such check or the table holds duplicates (the
        transaction goes on: the caller asks its GROUP BY to name them)."""
        return None

    def view_options(self) -> str:
        """Text after ``CREATE OR REPLACE VIEW … AS <query>`` (Redshift: late binding)."""
        return ""

    BULK_JOIN_SETTINGS: ClassVar[tuple[str, ...]] = ()
    """Transaction-scoped settings for a transaction whose statements join two tables of a
    million rows or more (the scd2 apply): `bulk_join_settings` runs them inside it, so they
    end with it. PostgreSQL: more `work_mem` for its hashes and sorts, no JIT compilation."""

    INDEX_PROBE_SETTINGS: ClassVar[tuple[str, ...]] = ()
    """Added to `BULK_JOIN_SETTINGS` where the transaction's joins should probe a large
    table's index rather than scan it (the consolidation merge: 200K keys against a 20M-row
    target). PostgreSQL: a random page cost for data in cache or on SSD."""

    def bulk_join_settings(self, index_probes: bool = False) -> list[str]:
        """Apply `BULK_JOIN_SETTINGS` (and `INDEX_PROBE_SETTINGS` with `index_probes`) in
        the open transaction; returns what ran."""
        if not self.in_transaction:
            raise AssertionError("bulk_join_settings runs inside a transaction")
        todo = [*self.BULK_JOIN_SETTINGS, *(self.INDEX_PROBE_SETTINGS if index_probes else ())]
        for sql in todo:
            self.execute(sql)
        return todo

    ANALYZE_BEFORE_JOIN: ClassVar[bool] = False
    """Refresh a just-appended table's planner statistics before a statement joins it with a
    large table (`analyze`). PostgreSQL's planner sizes the join from statistics that
    autovacuum refreshes late; Redshift analyzes in the background and its explicit ANALYZE
    skips a table whose changed rows are under its threshold; DuckDB plans from the data."""

    def analyze(self, schema: str | None, table: str) -> str | None:
        """`ANALYZE` one table where `ANALYZE_BEFORE_JOIN` says it pays; returns what ran.
        Called outside a transaction where it can be (no lock held on the table for the rest
        of one); inside one (the scd2 apply, after its staging load), PostgreSQL's ANALYZE
        samples the rows the transaction itself inserted. `schema` None: a temporary table
        of this session (found by its name alone)."""
        if not self.ANALYZE_BEFORE_JOIN:
            return None
        sql = f"ANALYZE {self.t(schema, table)}"
        self.execute(sql)
        return sql

    SECONDARY_INDEXES: ClassVar[bool] = False
    """Create B-tree indexes on keys and time columns (row stores); columnar engines rely on
    zone maps / sort keys instead."""

    def create_index(self, schema: str, table: str, columns: Sequence[str]) -> None:
        if not self.SECONDARY_INDEXES or not columns:
            return
        name = f"{table}_{'_'.join(columns)}_ix"[: self.MAX_IDENTIFIER_LENGTH]
        self.execute(
            f"CREATE INDEX IF NOT EXISTS {self.q(name)} "
            f"ON {self.t(schema, table)} ({self.cols(columns)})"
        )

    def stage_form(self, data: pa.Table) -> pa.Table:
        """The batch as sync writes it to the stage: for engines that load the staged files
        themselves (Redshift's COPY), in the types they read; others: unchanged."""
        return data

    def approx_rows(self, schema: str, table: str) -> int:
        """Row count for reports. Engines where COUNT(*) scans the table return their
        statistics' estimate instead (and say so with `ROW_COUNTS_ESTIMATED`), so a report
        costs the same whatever the table's size."""
        return self.exact_rows(schema, table)

    def exact_rows(self, schema: str, table: str) -> int:
        return int(self.scalar(f"SELECT COUNT(*) FROM {self.t(schema, table)}") or 0)

    def delete_all(self, schema: str, table: str) -> None:
        """Empty a table inside the current transaction (never TRUNCATE: it may commit)."""
        self.execute(f"DELETE FROM {self.t(schema, table)}")

    def empty_private(self, schema: str, table: str) -> None:
        """Empty a table only trackline reads (the scd2 staging table) inside the current
        transaction: TRUNCATE where it is transactional, else DELETE (`TRUNCATE_COMMITS`).
        PostgreSQL's DELETE leaves the old rows dead in the table until a vacuum, so a 1M-row
        staging table refilled every run grew to 2.7 times its rows and every scan of it
        slowed; TRUNCATE gives it a new, empty file. It holds the table's exclusive lock
        until the commit, which only another trackline run on the same table would wait on
        (and the run lock keeps those apart)."""
        if self.TRUNCATE_COMMITS:
            self.delete_all(schema, table)
        else:
            self.execute(f"TRUNCATE TABLE {self.t(schema, table)}")

    # ------------------------------------------------------------------ batches

    @abstractmethod
    def batch_relation(
        self, data: pa.Table, staged: StagedFiles | None = None
    ) -> contextlib.AbstractContextManager[str]:
        """Expose a batch as a relation name usable in SQL for the current transaction."""

    def append_arrow(
        self,
        schema: str,
        table: str,
        data: pa.Table,
        staged: StagedFiles | None = None,
    ) -> int:
        names = data.schema.names
        with self.batch_relation(data, staged) as rel:
            self.execute(
                f"INSERT INTO {self.t(schema, table)} ({self.cols(names)}) "
                f"SELECT {self.cols(names)} FROM {rel}"
            )
        return data.num_rows

    @staticmethod
    def temp_name(prefix: str = "_tl_batch") -> str:
        return f"{prefix}_{uuid.uuid4().hex[:12]}"

    # ------------------------------------------------------------------ locks & upkeep

    @abstractmethod
    def lock(self, name: str, timeout: float = 0) -> contextlib.AbstractContextManager[None]:
        """Hold the named lock for the block, or raise `LockBusy` after `timeout` seconds."""

    PARALLEL_MARTS: ClassVar[bool] = False
    """Whether a retention group's followers may build at the same time (each in its own
    transaction on its own connection; `trackline cycle` with `defaults.workers` ≥ 2). Only
    where `serialize` works and concurrent transactions on different tables do not conflict:
    DuckDB runs one query on every core anyway (and its unique checks see rows another open
    transaction deleted), Redshift's serializable isolation would refuse or retry them."""

    def serialize(self, name: str) -> None:
        """Inside the current transaction: wait until no other transaction holds `name`, then
        hold it until this one ends (commit or rollback). What two marts building at once
        both write (the group's exceptions, whose ids come from the largest one) takes it
        first. Engines without `PARALLEL_MARTS` never run such transactions at once."""
        return None

    def maintenance(self, schema: str, table: str) -> list[str]:
        """Run the engine's upkeep for one table (ANALYZE/VACUUM); returns what it ran."""
        return []

    def __enter__(self) -> Warehouse:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
