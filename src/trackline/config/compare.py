"""`compare:`: which legacy DW tables `trackline compare` checks against which trackline
tables, how their values are normalised, and the pass/fail thresholds (docs/compare.md)."""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from trackline.config.base import Ident, LocatedError, Model


class Normalise(Model):
    """How values are brought to one canonical text on both sides before they are hashed."""

    empty_as_null: bool = True
    """An empty string equals NULL (the legacy DW turned one into the other)."""
    trim_trailing_spaces: bool = True
    zero_dates_as_null: bool = True
    """MySQL `0000-00-00` dates equal NULL (trackline loads them as NULL)."""
    float_scale: int = Field(default=6, ge=0, le=30)
    """FLOAT/DOUBLE: compared rounded to this many decimal places (unless `float_digits`)."""
    float_digits: int | None = Field(default=None, ge=1, le=17)
    """FLOAT/DOUBLE: compared rounded to this many significant digits instead (`1.23457e5`):
    fits values of any magnitude, where a fixed number of places hides differences between
    small values and keeps noise in large ones."""
    json_columns: list[Ident] = []
    """Compared columns holding JSON documents in text columns. Legacy JSON columns and
    warehouse JSON/JSONB/SUPER columns are found by their types without being listed."""


class CompareTable(Model):
    name: Ident
    """What `trackline compare --table NAME` calls it (e.g. `uti`)."""
    legacy_table: Ident
    legacy_db: Ident | None = None
    """The legacy database (default: the legacy source's `database`)."""
    table: Ident
    """trackline's side: a mart (its `<mart>_hist` view is added, so archived rows count),
    a `tables:` target, or any warehouse table (then give `schema`)."""
    schema_: Ident | None = Field(default=None, alias="schema")
    history: bool = True
    """Add the `<table>_hist` view when it exists."""
    key: list[Ident] = Field(min_length=1)
    """Key columns. Ranges are split on the first when it is an integer, else on a number
    taken from the MD5 of the key's canonical text (no collation involved)."""
    columns: list[Ident] = Field(min_length=1)
    """Compared columns (same names on both sides unless `legacy_columns` renames them)."""
    legacy_columns: dict[Ident, Ident] = Field(default_factory=dict)
    """trackline column → legacy column, where the names differ."""
    time: Ident | None = None
    """The column `--date` / `--since` / `--until` filter on (both sides)."""
    newer_by: Ident | None = None
    """A compared time column (e.g. an update time): keys whose values differ and whose legacy
    value of it is later than trackline's are counted as `legacy newer` (changes trackline
    never read)."""
    count_gap: float = Field(default=0.001, ge=0, le=1)
    """Most (keys missing on either side + duplicate rows) / legacy rows that passes."""
    mismatch: float = Field(default=0.01, ge=0, le=1)
    """Most mismatching rows / legacy rows (in the window), per column, that passes."""
    normalise: Normalise = Normalise()
    check: bool = False
    """`trackline check` runs this comparison over the previous UTC day (blocking check
    `compare.<name>`)."""
    chunk: int = Field(default=1_000, gt=0)
    """Differing ranges are split until they hold at most this many rows, then fetched."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _columns(self) -> CompareTable:
        for i, c in enumerate(self.columns):
            if c in self.key:
                raise LocatedError(("columns", i), f"{c!r} is a key column; list it in `key` only")
        if len(set(self.columns)) != len(self.columns):
            raise LocatedError(("columns",), "a compared column is repeated")
        if len(set(self.key)) != len(self.key):
            raise LocatedError(("key",), "a key column is repeated")
        if self.newer_by is not None and self.newer_by not in self.columns:
            raise LocatedError(("newer_by",), f"{self.newer_by!r} must be one of `columns`")
        named = set(self.key) | set(self.columns) | ({self.time} if self.time else set())
        for c in self.legacy_columns:
            if c not in named:
                raise LocatedError(
                    ("legacy_columns", c), f"{c!r} is not a key, compared or time column"
                )
        return self

    def legacy(self, column: str) -> str:
        return self.legacy_columns.get(column, column)


class CompareConfig(Model):
    legacy: Ident = "uniods"
    """The `sources:` entry of the legacy DW (MySQL/MariaDB)."""
    sample: int = Field(default=10, ge=0)
    """Sample keys listed per kind of difference (the counts are complete)."""
    tables: list[CompareTable] = []

    @model_validator(mode="after")
    def _unique(self) -> CompareConfig:
        seen: set[str] = set()
        for i, t in enumerate(self.tables):
            if t.name in seen:
                raise LocatedError(
                    ("tables", i, "name"), f"compare table names must be unique; {t.name!r}"
                )
            seen.add(t.name)
        return self
