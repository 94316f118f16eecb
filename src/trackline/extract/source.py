"""What the sync loop needs from a source database, and the two sources trackline ships.

A source answers metadata questions with bound parameters (`columns`, `primary_key`, `now`,
`write_transactions`, `max_value`, `count_nulls`) and streams one query's rows as Arrow
record batches cast to the declared schema (`stream`). Memory is bounded by the batch size.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
from sqlglot import exp

from trackline.extract.types import SourceColumn
from trackline.sqlutil import quote


@dataclass(frozen=True)
class Relation:
    """A table (database + name) or a SQL query, which is read as a derived table."""

    name: str
    database: str | None = None
    query: str | None = None


@dataclass(frozen=True)
class OpenTransaction:
    """An open write transaction, or a write statement still running (`statement`), that
    may yet commit rows stamped from `started` on."""

    started: Any
    thread_id: int
    age_seconds: float
    statement: bool = False
    """`started` is the running statement's own start (its NOW()); else the transaction's
    start as InnoDB records it, which a statement that waited for a lock precedes."""


class Source(ABC):
    DIALECT: str
    INT64_TYPE: str = "BIGINT"
    """The 64-bit signed integer in a CAST (MySQL spells it SIGNED)."""
    hold_problem: str | None = None
    """Why `write_transactions` could not look (set by the last call), for a warning."""

    def q(self, name: str) -> str:
        return quote(name, self.DIALECT)

    def bind(self, sql: str, params: tuple[Any, ...]) -> str:
        """`sql` written with `?` markers, in this driver's parameter style (for `rows`)."""
        return sql

    def relation_sql(self, rel: Relation) -> str:
        if rel.query:
            # (a newline ends a trailing `--` / `#` comment before the closing parenthesis)
            return f"({rel.query.strip().rstrip(';')}\n) AS {self.q('_tl_src')}"
        if rel.database:
            return f"{self.q(rel.database)}.{self.q(rel.name)}"
        return self.q(rel.name)

    def lit(self, v: Any) -> str:
        """A typed value as a SQL literal, for readers that cannot bind parameters."""
        if isinstance(v, bool):
            return "1" if v else "0"
        if isinstance(v, int | Decimal):
            return str(v)
        if isinstance(v, dt.datetime):
            return "'" + v.isoformat(sep=" ", timespec="microseconds") + "'"
        if isinstance(v, dt.date):
            return "'" + v.isoformat() + "'"
        if isinstance(v, str):
            return exp.Literal.string(v).sql(dialect=self.DIALECT)
        raise TypeError(f"cannot render a {type(v).__name__} cursor value")

    @abstractmethod
    def columns(self, rel: Relation) -> list[SourceColumn]: ...

    @abstractmethod
    def primary_key(self, rel: Relation) -> list[str]: ...

    @abstractmethod
    def now(self, unix: bool) -> Any:
        """The source database's clock (unix seconds when the cursor is an integer)."""

    def leading_index(self, rel: Relation, column: str) -> str | None:
        """The name of an index of the table whose first column is `column` (None: none).
        A lookup by that column (`WHERE column IN (...)`) reads only the rows it names."""
        return None

    def write_transactions(self, unix: bool, fresh: bool = False) -> list[OpenTransaction]:
        """The open transactions that have written rows and the write statements running
        (none where the source cannot tell). `fresh`: it must see every transaction that had
        written when `now()` was last read (a bound with little or no lag relies on that)."""
        return []

    @abstractmethod
    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A small metadata or lookup query's rows (bound parameters in the driver's style)."""

    def long_rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A long aggregate's few rows (e.g. a comparison's figures over a whole table): held
        to the data read's time limit rather than a metadata query's."""
        return self.rows(sql, params)

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    @abstractmethod
    def stream(self, sql: str, schema: pa.Schema, batch_size: int) -> Iterator[pa.RecordBatch]:
        """Rows of `sql` as batches of at most `batch_size` rows, cast to `schema`."""

    def fetch(self, sql: str, schema: pa.Schema) -> pa.Table:
        """Every row of `sql` at once, cast to `schema`: for a read its caller bounds (e.g. a
        primary-key range of at most a batch of ids). MySQL reads it without holding Python's
        GIL, which `stream` holds while it waits for the server (`MySQL.fetch`)."""
        return pa.Table.from_batches(list(self.stream(sql, schema, 1 << 20)), schema)

    def close(self) -> None:
        return None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.close()


def rechunk(
    batches: Iterator[pa.RecordBatch], schema: pa.Schema, batch_size: int
) -> Iterator[pa.RecordBatch]:
    """Regroup a stream of reader batches into batches of exactly `batch_size` rows (last: ≤)."""
    tables = (pa.Table.from_batches([b], schema) for b in batches)
    for t in regroup(tables, schema, batch_size):
        yield t.combine_chunks().to_batches()[0]


def regroup(tables: Iterable[pa.Table], schema: pa.Schema, size: int) -> Iterator[pa.Table]:
    """`rechunk` for whole results: tables of exactly `size` rows (last: ≤), made of slices
    of the inputs' own buffers (nothing is copied)."""
    pending: list[pa.RecordBatch] = []
    n = 0
    for t in tables:
        for b in t.to_batches():
            while b.num_rows:
                take = min(size - n, b.num_rows)
                pending.append(b.slice(0, take))
                n += take
                b = b.slice(take)
                if n == size:
                    yield pa.Table.from_batches(pending, schema)
                    pending, n = [], 0
    if n:
        yield pa.Table.from_batches(pending, schema)
