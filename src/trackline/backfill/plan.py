"""`trackline backfill plan`: what a run would do, read-only (nothing is written anywhere)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from trackline.backfill.chunks import Unit
from trackline.backfill.setup import setup
from trackline.config import Config
from trackline.errors import ConfigError
from trackline.report import NullReporter, Reporter


def plan(
    cfg: Config,
    names: list[str] | None = None,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    unit: Unit | None = None,
    exact: bool = False,
    reporter: Reporter | None = None,
) -> list[dict[str, Any]]:
    """Per table: the legacy side, its conversions, the chunks with estimated rows (the
    server's EXPLAIN estimate, or an exact COUNT with `exact`), and the handoff point a run
    started now would capture."""
    reporter = reporter or NullReporter()
    names = names or [b.table for b in cfg.backfill.tables]
    if not names:
        raise ConfigError("nothing to plan: list tables under `backfill.tables:`")
    out = []
    for name in names:
        s = setup(cfg, name, start, end, unit)
        try:
            chunks = []
            indexed = True
            for c in s.chunks:
                lo, hi = s.bounds(c)
                if exact:
                    rows, how = s.legacy.count(lo, hi), "count"
                else:
                    rows, used = s.legacy.estimate(lo, hi)
                    indexed, how = indexed and used, "estimate"
                chunks.append({"no": c.no, "label": c.label, "from": lo, "to": hi, how: rows})
            h = s.handoff(reporter)
            warnings = list(h.warnings)
            if not indexed:
                warnings.append(
                    f"{name}: {s.legacy.name} has no index on {s.legacy.time}: every chunk "
                    f"scans the table (CREATE INDEX … ({s.legacy.time}))"
                )
            out.append(
                {
                    "table": name,
                    "key": s.key,
                    "legacy": s.legacy.name,
                    "time_column": s.legacy.time,
                    "unit": s.unit,
                    "range": [s.start, s.end],
                    "chunks": chunks,
                    "rows": sum(c.get("count", c.get("estimate", 0)) for c in chunks),
                    "rows_are": "counted" if exact else "estimated",
                    "conversions": [
                        {
                            "column": v.column,
                            "legacy": v.expression,
                            "from": v.legacy_type,
                            "to": v.target_type,
                        }
                        for v in s.legacy.conversions
                    ],
                    "handoff": {
                        "source_db": s.rt.source_db,
                        "point": h.watermark.ts,
                        "upper": h.upper,
                        "legacy_newest": h.legacy_newest,
                        "incremental_oldest": h.incremental_oldest,
                    },
                    "warnings": warnings,
                }
            )
        finally:
            s.close()
    return out
