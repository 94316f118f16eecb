"""`backfill:`: which legacy DW tables `trackline backfill` loads into which pipeline tables,
how their columns convert, and how the work is cut (docs/backfill.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from trackline.config.base import Ident, LocatedError, Model


def check_expression(text: str) -> str:
    """One SQL expression (MySQL dialect): no statement, no second statement."""
    import sqlglot
    from sqlglot import exp

    stripped = text.strip()
    if not stripped or ";" in stripped:
        raise ValueError(f"{text!r} is not one SQL expression")
    try:  # (an unclosed quote or comment is a TokenError, not a ParseError)
        parsed = sqlglot.parse_one(stripped, read="mysql")
        commented = any(t.comments for t in sqlglot.tokenize(stripped, read="mysql"))
    except sqlglot.errors.SqlglotError as exc:
        raise ValueError(f"{text!r} is not a SQL expression MySQL would read: {exc}") from None
    if commented:  # it goes into a one-line SELECT: `--` or `#` would hide the rest of it
        raise ValueError(f"{text!r} holds a SQL comment; leave comments out of the expression")
    if isinstance(parsed, exp.Query | exp.DDL | exp.DML | exp.Command):
        raise ValueError(f"{text!r} is a statement, not an expression on the legacy row")
    return stripped


class BackfillTable(Model):
    table: Ident
    """The `tables:` entry (by name) this backfill fills: its raw target, its ledger."""
    source_table: Ident | None = None
    """The legacy table (default: the same name as `table`), e.g. `dw_uni_tracking_info`."""
    source: Ident | None = None
    """The `sources:` entry of the legacy DW (default: `backfill.source`)."""
    source_db: Ident | None = None
    """The legacy database (default: that source's `database`)."""
    time: Ident | None = None
    """The legacy column the chunks are cut on (default: the table's `cdc.cursor`). Give it
    an index: each chunk is one range read of it."""
    columns: dict[Ident, str] = Field(default_factory=dict)
    """Target column → a SQL expression on the legacy row that gives its value in the
    target's type, e.g. ``update_time: UNIX_TIMESTAMP(update_time)`` or
    ``tno: NULLIF(tno, '')``. Columns not listed are read from the legacy column of the
    same name."""
    query: str | None = None
    """A SELECT giving the target's columns (instead of `source_table` + `columns`); `time`
    then names one of its output columns, which the chunks filter on."""
    batch_size: int | None = Field(default=None, gt=0)
    """Rows per staged batch (default: `backfill.batch_size`)."""

    @model_validator(mode="after")
    def _consistent(self) -> BackfillTable:
        if self.query is not None:
            if self.columns or self.source_table:
                raise LocatedError(
                    ("query",),
                    f"backfill of {self.table!r}: give either `query` or `source_table` / "
                    "`columns`, not both",
                )
            if not self.time:
                raise LocatedError(
                    ("time",),
                    f"backfill of {self.table!r}: with `query`, `time` must name the output "
                    "column the chunks are cut on",
                )
        for col, text in self.columns.items():
            try:
                check_expression(text)
            except ValueError as exc:
                raise LocatedError(("columns", col), f"backfill of {self.table!r}: {exc}") from None
        return self

    @property
    def legacy_table(self) -> str:
        return self.source_table or self.table


class BackfillConfig(Model):
    source: Ident = "uniods"
    """The `sources:` entry of the legacy DW (MySQL/MariaDB)."""
    chunk: Literal["month", "week", "day"] = "month"
    """One chunk = one calendar month (week from Monday, day) of the table's time column,
    in UTC; `--chunk` overrides it."""
    batch_size: int = Field(default=500_000, gt=0)
    """Rows per staged batch; a chunk is one warehouse transaction of one or more batches, so
    memory is bounded by the batch, not the chunk."""
    workers: int = Field(default=2, ge=1)
    """Tables backfilled at once (each with its own source and warehouse connections);
    chunks of one table always run one after another, in time order."""
    attempts: int = Field(default=3, ge=1)
    """Runs of a chunk whose loaded rows differ from the legacy's count before the table
    stops (the chunk is rolled back each time, never half kept)."""
    tables: list[BackfillTable] = []

    @model_validator(mode="after")
    def _unique(self) -> BackfillConfig:
        seen: set[str] = set()
        for i, t in enumerate(self.tables):
            if t.table in seen:
                raise LocatedError(
                    ("tables", i, "table"),
                    f"backfill: {t.table!r} is listed twice; one entry per pipeline table",
                )
            seen.add(t.table)
        return self
