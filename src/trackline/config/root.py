"""`Config`: the whole file, and lookups across its sections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from pydantic import model_validator

from trackline.config.backfill import BackfillConfig, BackfillTable
from trackline.config.base import Ident, LocatedError, Model, check_identifier
from trackline.config.compare import CompareConfig, CompareTable
from trackline.config.connections import DuckDBWarehouse, SourceConfig, StageConfig, WarehouseConfig
from trackline.config.consolidation import ConsolidationConfig
from trackline.config.pipeline import Defaults, RetentionGroupConfig, TableConfig
from trackline.config.quality import QualityConfig, ScheduleConfig
from trackline.errors import ConfigError


def _one_entry_per_target(tables: list[TableConfig]) -> None:
    """Two entries writing one table would share its watermark and batch ledger: the second
    one reads only what is newer than the first one's cursor and skips the rest."""
    first: dict[tuple[str, str], int] = {}
    for i, t in enumerate(tables):
        j = first.setdefault((t.target_schema, t.target), i)
        if j == i:
            continue
        raise LocatedError(
            ("tables", i, "target_table") if t.target_table else ("tables", i),
            f"tables[{i}] ({t.name!r}{{0}}) and tables[{j}] ({tables[j].name!r}{{1}}) both load "
            f"{t.target_schema}.{t.target}: entries with one target share its watermark, so "
            "one would skip the other's rows. Give each its own `target_table`; to union "
            "several sources into one table, the consolidation job is the supported way "
            "(a `consolidations:` entry, run by `trackline consolidate`)",
            refs=(("tables", i), ("tables", j)),
        )


class Config(Model):
    sources: dict[Ident, SourceConfig]
    warehouse: WarehouseConfig = DuckDBWarehouse()
    stage: StageConfig = StageConfig()
    defaults: Defaults = Defaults()
    tables: list[TableConfig] = []
    marts: list[RetentionGroupConfig] = []
    state_schema: Ident = "trackline"
    quality: QualityConfig = QualityConfig()
    """Data-quality checks and alert channels (`trackline check`)."""
    schedule: ScheduleConfig = ScheduleConfig()
    """The local scheduler's timetable (`trackline run`)."""
    consolidations: list[ConsolidationConfig] = []
    """Jobs that merge several source inputs into one target by key (`trackline consolidate`)."""
    compare: CompareConfig = CompareConfig()
    """Legacy DW tables checked against trackline's (`trackline compare`)."""
    backfill: BackfillConfig = BackfillConfig()
    """Legacy DW tables loaded into the pipeline's tables by chunk (`trackline backfill`)."""

    @model_validator(mode="after")
    def _references(self) -> Config:
        names = [t.name for t in self.tables]
        seen: set[str] = set()
        for i, t in enumerate(self.tables):
            if t.name in seen:
                raise LocatedError(
                    ("tables", i, "name"), f"table names must be unique; {t.name!r} is repeated"
                )
            seen.add(t.name)
        _one_entry_per_target(self.tables)
        for i, t in enumerate(self.tables):
            if t.source is not None and t.source not in self.sources:
                raise LocatedError(
                    ("tables", i, "source"),
                    f"table {t.name!r}: source {t.source!r} is not one of {sorted(self.sources)}",
                )
            if t.source is None and len(self.sources) != 1:
                raise LocatedError(
                    ("tables", i),
                    f"table {t.name!r}: say which source it comes from (`source:`), "
                    f"one of {sorted(self.sources)}",
                )
        for gi, g in enumerate(self.marts):
            refs: list[tuple[tuple[str | int, ...], str]] = [
                (("marts", gi, "anchor", "source"), g.anchor.source),
                *[
                    (("marts", gi, "followers", fi, "source"), f.source)
                    for fi, f in enumerate(g.followers)
                ],
            ]
            for loc, src in refs:
                if src not in names:
                    raise LocatedError(
                        loc, f"mart group {g.name!r}: source {src!r} is not a table in `tables:`"
                    )
        self._follow_references()
        self._consolidation_references()
        self._compare_references()
        self._backfill_references()
        by_name = {t.name: t for t in self.tables}
        for i, name in enumerate(self.quality.reconcile_tables):
            found = by_name.get(name)
            if found is None:
                raise LocatedError(
                    ("quality", "reconcile_tables", i), f"{name!r} is not a table in `tables:`"
                )
            if found.write_mode != "merge":
                raise LocatedError(
                    ("quality", "reconcile_tables", i),
                    f"table {name!r} has write_mode {found.write_mode!r}; reconcile compares one "
                    "row per key, which only `merge` targets hold",
                )
        return self

    def _follow_references(self) -> None:
        """strategy follow: the driving table is another append table of the same source;
        an events follower fed by a following table replaces a key's events (changes:
        follow), and changes: follow needs a following table."""
        by_name = {t.name: t for t in self.tables}
        for i, t in enumerate(self.tables):
            d = by_name.get(t.cdc.follow or "")
            if t.cdc.follow and d is None:
                raise LocatedError(
                    ("tables", i, "cdc", "follow"),
                    f"table {t.name!r}: follow {t.cdc.follow!r} is not a table in `tables:`",
                )
            if d is not None and (d.name == t.name or d.write_mode != "append" or d.cdc.follow):
                raise LocatedError(
                    ("tables", i, "cdc", "follow"),
                    f"table {t.name!r}: the driving table {d.name!r} must be another "
                    "write_mode: append table that does not follow one itself (its raw "
                    "batches name the changed keys)",
                )
            if d is not None and self.source_for(d)[0] != self.source_for(t)[0]:
                raise LocatedError(
                    ("tables", i, "cdc", "follow"),
                    f"table {t.name!r}: the driving table {d.name!r} reads another source",
                )
        for gi, g in enumerate(self.marts):
            for fi, f in enumerate(g.followers):
                src = by_name.get(f.source)
                follows = bool(src and src.cdc.follow)
                loc = ("marts", gi, "followers", fi, "changes")
                if f.kind == "events" and follows != (f.changes == "follow"):
                    raise LocatedError(
                        loc,
                        f"follower {f.table!r}: changes: follow and a source table with cdc "
                        f"strategy follow go together ({f.source!r} "
                        f"{'follows' if follows else 'does not follow'} "
                        f"{src.cdc.follow if src and src.cdc.follow else 'a driving table'})",
                    )
                if src is not None and follows and src.cdc.follow_key != g.key:
                    raise LocatedError(
                        ("tables", self.tables.index(src), "cdc", "follow_key"),
                        f"table {src.name!r}: follow_key must be the mart group's key "
                        f"{g.key!r} (its mart replaces rows by that key)",
                    )

    def overridden(self, source_db: str | None, target_schema: str | None) -> Config:
        """This config with every table read from `source_db` and loaded into
        `target_schema` (`--source-db` / `--target-schema`; None keeps the config's)."""
        if not source_db and not target_schema:
            return self
        update: dict[str, str] = {}
        for option, value, key in (
            ("--source-db", source_db, "source_db"),
            ("--target-schema", target_schema, "target_schema"),
        ):
            if value:
                try:
                    update[key] = check_identifier(value)
                except ValueError as exc:
                    raise ConfigError(f"{option}: {exc}") from None
        tables = [t.model_copy(update=update) for t in self.tables]
        try:
            _one_entry_per_target(tables)
        except LocatedError as exc:
            raise ConfigError(f"with --target-schema {target_schema}: {exc}") from None
        return self.model_copy(update={"tables": tables})

    def _consolidation_references(self) -> None:
        seen: set[str] = set()
        # every table a consolidation writes is its own: a staging table shared with its
        # target, another consolidation or a `tables:` entry would mix their rows and ledgers
        owners = {(t.target_schema, t.target): f"`tables:` entry {t.name!r}" for t in self.tables}
        for ci, c in enumerate(self.consolidations):
            for key, table in (("target_table", c.target_table), ("staging_table", c.staging)):
                owner = owners.setdefault(
                    (c.target_schema, table), f"consolidation {c.name!r} ({key})"
                )
                if owner != f"consolidation {c.name!r} ({key})":
                    raise LocatedError(
                        ("consolidations", ci, key if key in c.model_fields_set else "name"),
                        f"consolidation {c.name!r}: its {key.replace('_', ' ')} "
                        f"{c.target_schema}.{table} is also the table of {owner}; give each "
                        "its own",
                    )
        for ci, c in enumerate(self.consolidations):
            if c.name in seen:
                raise LocatedError(
                    ("consolidations", ci, "name"),
                    f"consolidation names must be unique; {c.name!r} is repeated",
                )
            seen.add(c.name)
            for ii, inp in enumerate(c.inputs):
                if inp.source is not None and inp.source not in self.sources:
                    raise LocatedError(
                        ("consolidations", ci, "inputs", ii, "source"),
                        f"consolidation {c.name!r}, input {inp.name!r}: source {inp.source!r} "
                        f"is not one of {sorted(self.sources)}",
                    )
                if inp.source is None and len(self.sources) != 1:
                    raise LocatedError(
                        ("consolidations", ci, "inputs", ii),
                        f"consolidation {c.name!r}, input {inp.name!r}: say which source it "
                        f"comes from (`source:`), one of {sorted(self.sources)}",
                    )

    def _compare_references(self) -> None:
        if not self.compare.tables:
            return
        legacy = self.sources.get(self.compare.legacy)
        if legacy is None or legacy.type != "mysql":
            raise LocatedError(
                ("compare", "legacy"),
                f"compare: the legacy source {self.compare.legacy!r} must be a MySQL entry of "
                f"`sources:` (known: {sorted(self.sources)})",
            )
        for i, c in enumerate(self.compare.tables):
            if c.schema_ is None and self.compare_schema(c.table) is None:
                raise LocatedError(
                    ("compare", "tables", i, "table"),
                    f"compare table {c.name!r}: {c.table!r} is neither a mart nor a `tables:` "
                    "target; say which warehouse schema holds it (`schema:`)",
                )

    def _backfill_references(self) -> None:
        by_name = {t.name: t for t in self.tables}
        for i, b in enumerate(self.backfill.tables):
            loc: tuple[str | int, ...] = ("backfill", "tables", i)
            t = by_name.get(b.table)
            if t is None:
                raise LocatedError(
                    (*loc, "table"),
                    f"backfill: {b.table!r} is not a table in `tables:` (known: "
                    f"{', '.join(by_name) or 'none'})",
                )
            name = b.source or self.backfill.source
            src = self.sources.get(name)
            if src is None or src.type != "mysql":
                raise LocatedError(
                    (*loc, "source") if b.source else ("backfill", "source"),
                    f"backfill of {b.table!r}: the legacy source {name!r} must be a MySQL "
                    f"entry of `sources:` (known: {sorted(self.sources)})",
                )
            if t.cdc.strategy not in ("hybrid", "timestamp"):
                raise LocatedError(
                    (*loc, "table"),
                    f"backfill of {b.table!r}: its cdc strategy is {t.cdc.strategy!r}; a "
                    "backfill hands over to a time cursor (strategy hybrid or timestamp)",
                )
            if t.write_mode not in ("append", "merge"):
                raise LocatedError(
                    (*loc, "table"),
                    f"backfill of {b.table!r}: write_mode {t.write_mode!r} replaces the table "
                    "with each snapshot; only append and merge tables can be backfilled",
                )

    def backfill_table(self, name: str) -> BackfillTable:
        for b in self.backfill.tables:
            if b.table == name:
                return b
        raise ConfigError(
            f"table {name!r} is not in the config's `backfill.tables:` (known: "
            f"{', '.join(b.table for b in self.backfill.tables) or 'none'})"
        )

    def compare_schema(self, table: str) -> str | None:
        """The schema of a mart or `tables:` target called `table` (None: neither)."""
        for g in self.marts:
            if table in (g.anchor.table, *(f.table for f in g.followers)):
                return g.schema_
        for t in self.tables:
            if t.target == table:
                return t.target_schema
        return None

    def compare_table(self, name: str) -> CompareTable:
        return _named(self.compare.tables, name, "compare table", "compare.tables")

    def consolidation(self, name: str) -> ConsolidationConfig:
        return _named(self.consolidations, name, "consolidation", "consolidations")

    def table(self, name: str) -> TableConfig:
        return _named(self.tables, name, "table", "tables")

    def source_for(self, table: TableConfig) -> tuple[str, SourceConfig]:
        name = table.source or next(iter(self.sources))
        return name, self.sources[name]


# --------------------------------------------------------------------------- loading


_Named = TypeVar("_Named", CompareTable, ConsolidationConfig, TableConfig)


def _named(entries: Sequence[_Named], name: str, what: str, key: str) -> _Named:
    """The entry of a config list called `name`; else an error naming the list's key and the
    names it holds."""
    for entry in entries:
        if entry.name == name:
            return entry
    known = ", ".join(e.name for e in entries) or "none"
    raise ConfigError(f"{what} {name!r} is not in the config's `{key}:` (known: {known})")
