"""The legacy side of one backfill: which rows a chunk is, and how they become target rows.

A legacy table (`source_table`) is read through one SELECT that gives every target column,
each from the same-named legacy column or from the SQL expression `columns:` maps it to;
a `query:` gives them itself. The result's types are checked against the target's (the
incremental source's columns, which the raw table is built from) before anything is read,
and an error names the column, both types and the key to change.

A chunk is a range of the legacy table's own time column, filtered on the column itself
(an index range read), never on a converted value.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa

from trackline.config import BackfillTable, Config, TableConfig
from trackline.errors import ConfigError, SourceError, SourceUnreachable
from trackline.extract import Relation, Source
from trackline.extract.types import SourceColumn, is_widening

ALIAS = "_tl_src"


@dataclass(frozen=True)
class Conversion:
    """How one target column is read from the legacy side (for the plan's listing)."""

    column: str
    expression: str
    legacy_type: str
    target_type: str


def compatible(legacy: pa.DataType, target: pa.DataType) -> bool:
    """Whether legacy values load into the target type without loss: the same type, a wider
    target, or integers into integers (the cast is checked: a value that does not fit stops
    the chunk and names it)."""
    if legacy == target or is_widening(legacy, target):
        return True
    if pa.types.is_integer(legacy) and pa.types.is_integer(target):
        return True
    if pa.types.is_string(legacy) and pa.types.is_string(target):
        return True
    return pa.types.is_timestamp(legacy) and pa.types.is_timestamp(target)


class LegacyTable:
    """One `backfill.tables` entry against its open legacy source."""

    def __init__(
        self,
        cfg: Config,
        b: BackfillTable,
        t: TableConfig,
        src: Source,
        target: list[SourceColumn],
    ) -> None:
        self.b = b
        self.t = t
        self.src = src
        self.target = target
        self.source_name = b.source or cfg.backfill.source
        self.db = b.source_db or str(getattr(cfg.sources[self.source_name], "database", ""))
        self.index = next(i for i, x in enumerate(cfg.backfill.tables) if x.table == b.table)
        self.time = b.time or str(t.cdc.cursor)
        self.key = f"backfill.tables[{self.index}]"
        self.columns: list[SourceColumn] = []
        self.conversions: list[Conversion] = []
        self.unix = False
        self.date_only = False
        self._inner = ""
        self._time_ref = ""
        self._select = ""
        self._spans: dict[tuple[Any, Any], tuple[Any, Any]] = {}
        self.pk: str | None = None
        """The legacy table's single integer primary key (None: none, or a `query:`)."""

    # ------------------------------------------------------------------ names

    @property
    def name(self) -> str:
        """What the plan and errors call the legacy side."""
        if self.b.query:
            return f"{self.source_name} (query)"
        return f"{self.source_name}:{self.db}.{self.b.legacy_table}"

    def q(self, name: str) -> str:
        return self.src.q(name)

    @property
    def relation(self) -> str:
        return f"{self.q(self.db)}.{self.q(self.b.legacy_table)}"

    # ------------------------------------------------------------------ checks

    def check(self) -> LegacyTable:
        """Resolve the SELECT and check its columns against the target (ConfigError)."""
        if self.b.query:
            self._inner = self.b.query.strip().rstrip(";") + "\n"  # (ends a `--` comment)
            mapped = self._result_columns(self._inner)
            by_name = {c.name: c for c in mapped}
            if self.time not in by_name:
                raise ConfigError(
                    f"{self.key}.time: {self.time!r} is not an output column of the query "
                    f"(columns: {', '.join(by_name)})"
                )
            time_col = by_name[self.time]
            self._time_ref = f"{self.q(ALIAS)}.{self.q(self.time)}"
        else:
            legacy = self._table_columns()
            by_legacy = {c.name: c for c in legacy}
            lower = {c.name.lower(): c.name for c in legacy}
            targets = {c.name for c in self.target}
            for col in self.b.columns:
                if col not in targets:
                    raise ConfigError(
                        f"{self.key}.columns.{col}: {col!r} is not a column of the target "
                        f"{self.t.name!r} (its columns: {', '.join(sorted(targets))})"
                    )
            exprs = []
            for c in self.target:
                if c.name in self.b.columns:
                    expr = self.b.columns[c.name]
                elif c.name in by_legacy:
                    expr = self.q(c.name)
                elif c.name.lower() in lower:
                    expr = self.q(lower[c.name.lower()])
                else:
                    raise ConfigError(
                        f"{self.key}: the target column {c.name!r} of {self.t.name!r} has no "
                        f"legacy column of that name in {self.name}; map it with "
                        f"`{self.key}.columns.{c.name}: <SQL expression>` (e.g. NULL)"
                    )
                exprs.append(f"{expr} AS {self.q(c.name)}")
            if self.time not in by_legacy:
                raise ConfigError(
                    f"{self.key}.time: {self.time!r} is not a column of {self.name} (set "
                    "`time:` to the legacy column the chunks are cut on)"
                )
            time_col = by_legacy[self.time]
            pk = self.src.primary_key(Relation(self.b.legacy_table, self.db))
            if len(pk) == 1 and pk[0] in by_legacy and pa.types.is_integer(by_legacy[pk[0]].arrow):
                self.pk = pk[0]
            self._select = ", ".join(exprs)
            self._inner = f"SELECT {self._select} FROM {self.relation}"
            self._time_ref = f"{self.relation}.{self.q(self.time)}"
            mapped = self._result_columns(self._inner)
        self._time_type(time_col)
        self.columns = self._matched(mapped)
        return self

    def _table_columns(self) -> list[SourceColumn]:
        try:
            return self.src.columns(Relation(self.b.legacy_table, self.db))
        except SourceUnreachable:
            raise
        except SourceError as exc:
            raise ConfigError(
                f"{self.key}.source_table: {self.b.legacy_table!r} not found in {self.db} on "
                f"source {self.source_name!r} ({exc})"
            ) from None

    def _result_columns(self, sql: str) -> list[SourceColumn]:
        try:
            return self.src.columns(Relation(self.b.table, query=sql))
        except SourceUnreachable:
            raise
        except SourceError as exc:
            where = f"{self.key}.query" if self.b.query else f"{self.key}.columns"
            raise ConfigError(f"{where}: the legacy SELECT fails on {self.name}: {exc}") from None

    def _time_type(self, c: SourceColumn) -> None:
        if pa.types.is_integer(c.arrow):
            self.unix = True
        elif pa.types.is_date(c.arrow):
            self.date_only = True
        elif not pa.types.is_timestamp(c.arrow):
            raise ConfigError(
                f"{self.key}.time: {self.time!r} is {c.column_type or c.arrow} in {self.name}; "
                "chunks need a DATE, DATETIME or TIMESTAMP column or unix seconds (an integer)"
            )

    def _matched(self, mapped: list[SourceColumn]) -> list[SourceColumn]:
        by_name = {c.name: c for c in mapped}
        out = []
        for c in self.target:
            got = by_name.get(c.name)
            if got is None:
                raise ConfigError(
                    f"{self.key}.query: the target column {c.name!r} of {self.t.name!r} is not "
                    f"an output column (the query gives {', '.join(by_name)})"
                )
            if not compatible(got.arrow, c.arrow):
                how = self.b.columns.get(c.name, c.name)
                raise ConfigError(
                    f"{self.key}: column {c.name!r} is {got.column_type or got.arrow} "
                    f"({got.arrow}) on the legacy side ({how}) but {c.column_type or c.arrow} "
                    f"({c.arrow}) in the target {self.t.name!r}; convert it on the legacy side "
                    f"with `{self.key}.columns.{c.name}: <SQL expression>` (e.g. "
                    f"{_hint(got.arrow, c.arrow, self.q(c.name))})"
                )
            out.append(got)
            expr = self.b.columns.get(c.name) or (f"query column {c.name}" if self.b.query else "")
            if expr or got.arrow != c.arrow:
                self.conversions.append(
                    Conversion(
                        c.name,
                        expr or c.name,
                        got.column_type or str(got.arrow),
                        c.column_type or str(c.arrow),
                    )
                )
        return out

    # ------------------------------------------------------------------ SQL

    def _range(self, lo: Any, hi: Any) -> str:
        lit = self.src.lit
        return f"{self._time_ref} >= {lit(lo)} AND {self._time_ref} < {lit(hi)}"

    def id_span(self, lo: Any, hi: Any, rows: int) -> tuple[Any, Any] | None:
        """The primary-key range of the chunk's rows when it is dense (at most twice as
        many ids as rows), else None. Read from the time column's index alone (InnoDB's
        secondary indexes hold the primary key)."""
        if self.pk is None or rows == 0:
            return None
        span = self._spans.pop((lo, hi), None)
        if span is None:
            ref = f"{self.relation}.{self.q(self.pk)}"
            got = self.src.long_rows(
                f"SELECT MIN({ref}), MAX({ref}) FROM {self.relation} WHERE {self._range(lo, hi)}"
            )
            span = (got[0][0], got[0][1]) if got else (None, None)
        if span[0] is None or span[1] is None:
            return None
        first, last = int(span[0]), int(span[1])
        return (first, last) if last - first + 1 <= 2 * rows else None

    def rows_sql(
        self,
        lo: Any,
        hi: Any,
        zero: bool,
        order: list[str] | None = None,
        ids: tuple[Any, Any] | None = None,
    ) -> str:
        """The chunk's rows as target columns (read through the reader's own conversions,
        e.g. NULLIF for zero dates; `zero`: with the zero-date flags sync reports).

        `ids` (`id_span`): read the primary-key range, filtered by the chunk's times, in the
        table's own order: a range read of the time index fetches every row by its primary
        key, one lookup each (measured on MariaDB 10.11: 24 monthly ranges of 2M rows took
        3.2 times as long as one scan of the same rows)."""
        a = self.q(ALIAS)
        select = ", ".join(f"{c.expr} AS {self.q(c.name)}" for c in self.columns)
        if zero:
            select += "".join(
                f", ({c.expr.removeprefix('NULLIF(').rsplit(',', 1)[0]} = 0) AS "
                f"{self.q('_tl_zero_' + c.name)}"
                for c in self.columns
                if c.zero_date_check
            )
        if self.b.query:
            sql = f"SELECT {select} FROM ({self._inner}) AS {a} WHERE {self._range(lo, hi)}"
        elif ids is not None and self.pk is not None:
            lit, ref = self.src.lit, f"{self.relation}.{self.q(self.pk)}"
            inner = (
                f"SELECT {self._select} FROM {self.relation} FORCE INDEX (PRIMARY) WHERE "
                f"{ref} >= {lit(ids[0])} AND {ref} <= {lit(ids[1])} AND {self._range(lo, hi)}"
            )
            sql = f"SELECT {select} FROM ({inner}) AS {a}"
        else:
            sql = f"SELECT {select} FROM ({self._inner} WHERE {self._range(lo, hi)}) AS {a}"
        if order:
            sql += " ORDER BY " + ", ".join(f"{a}.{self.q(o)}" for o in order)
        return sql

    def piece_sqls(
        self, lo: Any, hi: Any, zero: bool, ids: tuple[Any, Any], width: int
    ) -> list[str]:
        """The chunk's rows as `rows_sql` reads them by primary-key range (`ids`), cut into
        consecutive ranges of at most `width` ids: each holds at most `width` rows (the key
        is unique), together they are exactly `ids`, in key order."""
        first, last = int(ids[0]), int(ids[1])
        return [
            self.rows_sql(lo, hi, zero, None, (a, min(a + width - 1, last)))
            for a in range(first, last + 1, max(1, width))
        ]

    def count_sql(self, lo: Any, hi: Any) -> str:
        if self.b.query:
            return f"SELECT COUNT(*) FROM ({self._inner}) AS {self.q(ALIAS)} WHERE " + self._range(
                lo, hi
            )
        return f"SELECT COUNT(*) FROM {self.relation} WHERE {self._range(lo, hi)}"

    def count(self, lo: Any, hi: Any) -> int:
        """The legacy rows of [lo, hi) (a COUNT on the time column's index; with a single
        integer primary key, the same read also gives the chunk's key range, `id_span`)."""
        if self.pk is None:
            return int(self.src.long_rows(self.count_sql(lo, hi))[0][0] or 0)
        ref = f"{self.relation}.{self.q(self.pk)}"
        rows = self.src.long_rows(
            f"SELECT COUNT(*), MIN({ref}), MAX({ref}) FROM {self.relation} WHERE "
            + self._range(lo, hi)
        )
        row = (*(rows[0] if rows else (0,)), None, None)
        self._spans[(lo, hi)] = (row[1], row[2])
        return int(row[0] or 0)

    def estimate(self, lo: Any, hi: Any) -> tuple[int, bool]:
        """The server's estimate of the rows of [lo, hi) (EXPLAIN, nothing read), and
        whether it reads an index range (False: every chunk scans the table)."""
        rows = self.src.rows("EXPLAIN " + self.count_sql(lo, hi))
        if not rows:
            return 0, True
        first = rows[-1] if self.b.query else rows[0]
        n = len(first)
        # MariaDB: id, select_type, table, type, possible_keys, key, key_len, ref, rows,
        # Extra; MySQL 8 adds partitions (after table) and filtered (after rows)
        at_type, at_rows = (4, 9) if n >= 12 else (3, 8)
        access = str(first[at_type] or "")
        return int(first[at_rows] or 0), access not in ("ALL", "index")

    def null_times(self) -> int:
        """Legacy rows whose time column is NULL or a zero date (`0000-00-00`; a legacy table
        only, a `query:` decides itself): they fall in no chunk. Probed first (one index
        range read), counted if found."""
        if self.b.query:
            return 0
        ref = f"{self.relation}.{self.q(self.time)}"
        where = f"FROM {self.relation} WHERE {ref} IS NULL"
        if not self.unix:  # a zero date sorts before every chunk
            where += f" OR {ref} < {self.src.lit(dt.date(1, 1, 1))}"
        if not self.src.long_rows(f"SELECT 1 {where} LIMIT 1"):
            return 0
        return int(self.src.long_rows(f"SELECT COUNT(*) {where}")[0][0] or 0)

    def span(self) -> tuple[Any, Any]:
        """(MIN, MAX) of the time column (two index reads)."""
        if self.b.query:
            sql = (
                f"SELECT MIN({self._time_ref}), MAX({self._time_ref}) FROM ({self._inner}) AS "
                f"{self.q(ALIAS)}"
            )
        else:
            sql = f"SELECT MIN({self._time_ref}), MAX({self._time_ref}) FROM {self.relation}"
        row = self.src.long_rows(sql)[0]
        return row[0], row[1]

    def newest_cursor(self, lo: Any, hi: Any, cursor: SourceColumn) -> Any:
        """The target cursor's value of the newest legacy row in [lo, hi), in the target's
        type (None: no row): where the backfill's coverage ends."""
        a = self.q(ALIAS)
        ref = f"{a}.{self.q(cursor.name)}"
        if self.b.query:
            inner = f"SELECT * FROM ({self._inner}) AS {a} WHERE {self._range(lo, hi)}"
        else:
            inner = f"{self._inner} WHERE {self._range(lo, hi)}"
        if self.time == cursor.name and not self.b.query:
            # the newest row by the chunk column: one index read (the cursor moves with it)
            sql = f"{inner} ORDER BY {self._time_ref} DESC LIMIT 1"
            sql = f"SELECT {ref} FROM ({sql}) AS {a}"
        else:
            sql = f"SELECT MAX({ref}) FROM ({inner}) AS {a}"
        rows = self.src.long_rows(sql)
        value = rows[0][0] if rows else None
        return target_value(value, cursor)


def target_value(value: Any, cursor: SourceColumn) -> Any:
    """A cursor value as the target's type holds it (unix int or datetime)."""
    if value is None:
        return None
    if pa.types.is_integer(cursor.arrow):
        return int(value) if isinstance(value, int | Decimal | float) else value
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day)
    return value


def _hint(legacy: pa.DataType, target: pa.DataType, col: str) -> str:
    if pa.types.is_timestamp(legacy) and pa.types.is_integer(target):
        return f"UNIX_TIMESTAMP({col})"
    if pa.types.is_integer(legacy) and pa.types.is_timestamp(target):
        return f"FROM_UNIXTIME({col})"
    if pa.types.is_decimal(target):
        return f"CAST({col} AS DECIMAL({target.precision},{target.scale}))"
    if pa.types.is_string(target):
        return f"CAST({col} AS CHAR)"
    return f"CAST({col} AS …)"
