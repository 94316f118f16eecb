"""Consolidations: N source inputs → one staging table → one target merged by key
(`trackline consolidate`, docs/consolidation.md)."""

from __future__ import annotations

from pydantic import Field, StrictInt, StrictStr, model_validator

from trackline.config.base import Ident, LocatedError, Model

WEEK_SECONDS = 7 * 86400


class InputCursor(Model):
    """The (time, id) cursor of one input: rows strictly after the last (time, id) read, below
    the source clock minus the lag. Always both columns: an id alone cannot follow a table
    whose rows are deleted or whose ids restart."""

    cursor: Ident
    """The input's time column (DATETIME/TIMESTAMP or unix integer), as the table or the
    query names it."""
    id: Ident
    """A unique tie-breaker within one cursor time (the event's id)."""


class ConsolidationInput(Model):
    name: Ident
    """How this input is called in errors, run history and the state (unique per
    consolidation)."""
    source: Ident | None = None
    """Which entry of `sources:` (default: the only one)."""
    source_db: Ident | None = None
    table: Ident | None = None
    """Read this table ... """
    query: str | None = None
    """... or this SELECT (e.g. a join); `cdc` names its result's columns."""
    cdc: InputCursor
    columns: dict[Ident, Ident] | None = None
    """Explicit column list: target column → the input's column, in target order. Default:
    every column of the input under its own name."""
    constants: dict[Ident, StrictStr | StrictInt] = Field(default_factory=dict)
    """Columns with one value for every row of this input (e.g. `source_kind: addon`): a
    string or an integer (YAML's `yes`/`no`/`true` are refused, not loaded as 1 or 0)."""
    batch_size: int | None = Field(default=None, gt=0)
    lag_seconds: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _table_or_query(self) -> ConsolidationInput:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        clash = set(self.constants) & set(self.columns or {})
        if clash:
            raise ValueError(f"column(s) {sorted(clash)} are both in `columns` and in `constants`")
        return self


class ConsolidationConfig(Model):
    name: Ident
    """The consolidation's name (`trackline consolidate NAME`)."""
    target_table: Ident = "parcel_detail_tool"
    target_schema: Ident = "public"
    staging_table: Ident | None = None
    """Default: `<target_table>_staging` (in `target_schema`)."""
    key: list[Ident] = Field(min_length=1)
    """The target's key: the merge deletes and inserts by it, one row per key."""
    newest_by: list[Ident] | None = None
    """Target columns that order two staged rows of one key (the greatest wins). Default: the
    inputs' cursor columns, when every input outputs them under the same names; rows staged
    later win ties."""
    inputs: list[ConsolidationInput] = Field(min_length=1)
    staging_retention_seconds: int = Field(default=WEEK_SECONDS, ge=0)
    """Processed staging rows are deleted by the daily maintenance once older than this."""
    slow_seconds: int = Field(default=1800, gt=0)
    """A run slower than this is reported (`consolidate.<name>.slow`, warning)."""
    dist_key: Ident | None = None
    """Redshift DISTKEY of the target (and the staging table)."""
    sort_key: list[Ident] | None = None
    """Redshift SORTKEY of the target (default: the key)."""

    @model_validator(mode="after")
    def _unique_inputs(self) -> ConsolidationConfig:
        seen: set[str] = set()
        for i, inp in enumerate(self.inputs):
            if inp.name in seen:
                raise LocatedError(
                    ("inputs", i, "name"), f"input names must be unique; {inp.name!r} is repeated"
                )
            seen.add(inp.name)
        if len(set(self.key)) != len(self.key):
            raise LocatedError(("key",), "a key column is repeated")
        return self

    @property
    def staging(self) -> str:
        return self.staging_table or f"{self.target_table}_staging"
