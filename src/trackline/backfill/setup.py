"""One table's backfill, resolved: both sources open, the legacy SELECT checked, the range
and its chunks planned, the handoff point computed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from trackline.backfill.chunks import Chunk, Unit, bound, floor, following, from_value, plan_chunks
from trackline.backfill.legacy import LegacyTable
from trackline.config import BackfillTable, Config, SourceConfig, TableConfig
from trackline.errors import CdcError, ConfigError
from trackline.extract import Relation, Source, open_source
from trackline.extract.cdc import Watermark
from trackline.extract.types import SourceColumn
from trackline.report import Reporter
from trackline.sync import ResolvedTable, TableResult, resolve
from trackline.sync.hold import time_upper
from trackline.sync.target import json_columns


def sync_past(wm: Watermark, point: Any) -> bool:
    """Whether an incremental watermark has read past `point` (a snapshot in progress reads
    up to its own bound, so it counts as past)."""
    if point is None:
        return False
    ts: Any = wm.ts
    return wm.phase == "snapshot" or (ts is not None and ts > point)


@dataclass
class Handoff:
    """Where the incremental sync goes on once the backfill is in."""

    watermark: Watermark
    upper: Any
    """The incremental source's upper bound when the backfill started (sync's rules)."""
    legacy_newest: Any
    """The newest legacy row's cursor in the range (the backfill's coverage end)."""
    incremental_oldest: Any
    """The incremental source's oldest cursor value (it keeps a few days only)."""
    warnings: list[str] = field(default_factory=list)
    gap: bool = False
    """The incremental source's oldest row is newer than the point: the rows between are in
    neither source (the handoff refuses it without --force)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "point": self.watermark.ts,
            "upper": self.upper,
            "legacy_newest": self.legacy_newest,
            "incremental_oldest": self.incremental_oldest,
            "warnings": self.warnings,
            "gap": self.gap,
        }


@dataclass
class Setup:
    cfg: Config
    b: BackfillTable
    t: TableConfig
    rt: ResolvedTable
    """The pipeline table as the incremental sync loads it (its key, its source database)."""
    legacy_rt: ResolvedTable
    """The same target, as loaded from the legacy database (stage layout, ledger)."""
    inc: Source
    legacy: LegacyTable
    target: list[SourceColumn]
    pk: list[str]
    unit: Unit
    start: dt.datetime
    end: dt.datetime
    chunks: list[Chunk]

    @property
    def key(self) -> str:
        return self.rt.key

    @property
    def cursor(self) -> SourceColumn:
        return next(c for c in self.target if c.name == self.t.cdc.cursor)

    def bounds(self, c: Chunk) -> tuple[Any, Any]:
        lg = self.legacy
        return bound(c.start, lg.unix, lg.date_only), bound(c.end, lg.unix, lg.date_only)

    def close(self) -> None:
        for s in {id(self.inc): self.inc, id(self.legacy.src): self.legacy.src}.values():
            s.close()

    def handoff(self, reporter: Reporter) -> Handoff:
        """The position the incremental sync goes on from: its upper bound now (the same
        bound sync would take: source clock − lag, held at open write transactions), or
        the newest legacy row of the range if that is older, so nothing between them is
        left out. Rows on both sides of the point are read twice; the marts keep one."""
        t = self.t
        cursor = self.cursor
        unix = pa.types.is_integer(cursor.arrow)
        res = TableResult(t.name, self.key)
        upper = time_upper(self.inc, t, self.cfg, unix, res, reporter)
        lg = self.legacy
        lo, hi = bound(self.start, lg.unix, lg.date_only), bound(self.end, lg.unix, lg.date_only)
        newest = self.legacy.newest_cursor(lo, hi, cursor)
        point = upper if newest is None else min(upper, newest)
        rel = self.inc.relation_sql(self._inc_relation())
        oldest = self.inc.scalar(f"SELECT MIN({cursor.cursor_ref}) FROM {rel}")
        out = Handoff(
            Watermark(ts=point if newest is not None else None),
            upper,
            newest,
            oldest,
            list(res.warnings),
        )
        if newest is None:
            out.warnings.append(
                f"{t.name}: the legacy side has no row in the range; the incremental sync "
                "keeps its own position"
            )
        elif oldest is not None and oldest > point:
            out.gap = True
            out.warnings.append(
                f"{t.name}: the incremental source's oldest row ({oldest}) is newer than the "
                f"handoff point ({point}): rows between them are in neither source"
            )
        return out

    def _inc_relation(self) -> Relation:
        t = self.t
        return Relation(t.name, self.rt.source_db if not t.query else None, t.query)


OpenSource = Callable[[SourceConfig, str], Source]


def setup(
    cfg: Config,
    name: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    unit: Unit | None,
    open_src: OpenSource | None = None,
) -> Setup:
    """Open both sources of one `backfill.tables` entry and check it (ConfigError).
    `open_src` replaces `open_source` (the SQL plans read metadata only)."""
    open_src = open_src or open_source
    b = cfg.backfill_table(name)
    t = cfg.table(b.table)
    rt = resolve(cfg, t, None, None)
    legacy_name = b.source or cfg.backfill.source
    legacy_db = b.source_db or str(getattr(cfg.sources[legacy_name], "database", ""))
    legacy_rt = ResolvedTable(t, legacy_name, legacy_db, rt.target_schema, rt.target)
    inc = open_src(cfg.sources[rt.source_name], rt.source_db)
    legacy_src = open_src(cfg.sources[legacy_name], legacy_db)
    try:
        rel = Relation(t.name, rt.source_db if not t.query else None, t.query)
        target = json_columns(t, inc.columns(rel))
        names = {c.name for c in target}
        for k, col in (("cursor", t.cdc.cursor), ("id", t.cdc.id)):
            if col and col not in names:
                raise ConfigError(
                    f"table {t.name!r}: cdc.{k} column {col!r} does not exist in the source"
                )
        pk = list(t.primary_key or inc.primary_key(rel))
        if t.write_mode == "merge" and not pk:
            raise ConfigError(f"table {t.name!r}: write_mode merge needs a key; set `primary_key:`")
        legacy = LegacyTable(cfg, b, t, legacy_src, target).check()
        nulls = legacy.null_times()
        if nulls:
            raise CdcError(
                f"backfill of {t.name!r}: {nulls:,} row(s) of {legacy.name} have a NULL or "
                f"zero (0000-00-00) {legacy.time!r} ({legacy.key}.time), so they fall in no "
                "chunk and would never be loaded. Nothing was written. Fix the rows, or read "
                "the table through "
                f"`{legacy.key}.query` (COALESCE the time, or leave such rows out on purpose)"
            )
        u: Unit = unit or cfg.backfill.chunk
        if start is None or end is None:
            lo, hi = legacy.span()
            if lo is None:
                raise ConfigError(
                    f"backfill of {t.name!r}: {legacy.name} has no rows with a {legacy.time}; "
                    "give --start and --end"
                )
            start = start or floor(from_value(lo), u)
            end = end or following(from_value(hi), u)
        chunks = plan_chunks(start, end, u)
    except BaseException:
        inc.close()
        legacy_src.close()
        raise
    return Setup(cfg, b, t, rt, legacy_rt, inc, legacy, target, pk, u, start, end, chunks)
