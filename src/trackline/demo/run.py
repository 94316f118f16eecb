"""`trackline demo`: ~8 simulated months of order tracking through the real cycle code path.

Embedded default: a SQLite source (the synthetic generator), a local Parquet stage and a DuckDB
warehouse, all in one folder. Each simulated day runs one full `trackline cycle` (the same code
as production, coarser than 15 minutes to stay fast), then checks G1 and G2 against the source.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trackline.config import Config, load_config
from trackline.demo.generator import DemoSource, DemoSpec, ticks
from trackline.errors import MartError
from trackline.load import Warehouse, open_warehouse
from trackline.marts.cycle import run_cycle_on
from trackline.marts.exceptions import Exceptions
from trackline.marts.invariants import check_all, missing_keys
from trackline.report import NullReporter, Reporter

DAY = 86400

DEMO_CONFIG = """\
# Written by `trackline demo`. Reuse it: trackline history -c {path}
sources:
  demo:
    type: sqlite
    path: source.db            # the synthetic order-tracking source (clock: trackline_clock)
warehouse:
  type: duckdb
  path: warehouse.duckdb
stage:
  url: stage
  retention_days: 7
defaults:
  batch_size: 100000
  lag_seconds: 300
tables:
  - name: uni_tracking_info
    target_schema: settlement_public
    cdc: {{strategy: hybrid, cursor: update_time, id: id}}
  - name: ecs_order_info         # no update time: re-read the rows of the orders uti changed
    target_schema: settlement_public
    cdc: {ecs_cdc}
  - name: uni_tracking_spath     # corrected in place: read by the time of the last change
    target_schema: settlement_public
    cdc: {uts_cdc}
  - name: partners               # a dimension with history (valid_from/valid_to/is_current)
    target_schema: settlement_public
    cdc: {{strategy: full}}
    write_mode: scd2
    scd2: {{natural_key: [partner_id]}}
marts:
  - name: order_tracking
    key: order_id
    schema: settlement_ods
    retention_seconds: 15552000   # 6 months of data time
    anchor: {{table: mart_uni_tracking_info, source: uni_tracking_info, time: update_time,
              tie_breaker: id, history_name: uti}}
    followers:
      - {{table: mart_ecs_order_info, source: ecs_order_info, kind: one_per_key,
         history_name: ecs}}
      - {{table: mart_uni_tracking_spath, source: uni_tracking_spath, kind: events,
         time: pathTime, event_key: [order_id, traceSeq, pathTime], history_name: uts{uts_changes}}}
"""

PARITY = {
    "ecs_cdc": "{strategy: follow, cursor: add_time, id: id, follow: uni_tracking_info, "
    "follow_key: order_id}",
    "uts_cdc": "{strategy: hybrid, cursor: time_modified, id: id}",
    "uts_changes": ", changes: newest, version: time_modified",
}
"""The two parity options (`run_demo(parity=True)`, the default)."""
NO_PARITY = {
    "ecs_cdc": "{strategy: hybrid, cursor: add_time, id: id}",
    "uts_cdc": "{strategy: hybrid, cursor: pathTime, id: id}",
    "uts_changes": "",
}

# What the marts and their history must hold: the source's current rows (the columns of the
# corrections included). Only settled rows count: a change within the lag is not read yet.
PARITY_COLUMNS = {
    "ecs": ("ecs_order_info", "mart_ecs_order_info", "order_id, zipcode"),
    "uts": (
        "uni_tracking_spath",
        "mart_uni_tracking_spath",
        "id, order_id, traceSeq, pathTime, code, pathInfo, is_updated",
    ),
}

PRIMARY_QUERY = """\
SELECT eoi.partner_id, p.name, COUNT(DISTINCT uts.order_id) AS orders, COUNT(*) AS scans
FROM   settlement_ods.mart_ecs_order_info     eoi
JOIN   settlement_ods.mart_uni_tracking_spath uts ON eoi.order_id = uts.order_id
JOIN   settlement_ods.mart_uni_tracking_info  uti ON eoi.order_id = uti.order_id
JOIN   settlement_public.partners             p   ON p.partner_id = eoi.partner_id
                                                 AND p.is_current
WHERE  uts.code = 200
AND    eoi.partner_id IN (382)
AND    uts."pathTime" >= ?
GROUP BY eoi.partner_id, p.name"""

PARTNER_HISTORY = """SELECT dim_key, name, country, valid_from, valid_to, is_current
FROM   settlement_public.partners
WHERE  partner_id = ?
ORDER BY valid_from, dim_key"""


@dataclass
class DemoResult:
    workdir: Path
    cycles: int = 0
    seconds: float = 0.0
    source_rows: dict[str, int] = field(default_factory=dict)
    sizes: list[dict[str, Any]] = field(default_factory=list)
    """Mart sizes sampled every ~30 simulated days."""
    history: dict[str, int] = field(default_factory=dict)
    reactivated: int = 0
    restored: int = 0
    archived: int = 0
    exceptions: dict[str, int] = field(default_factory=dict)
    violations: int = 0
    primary_query: str = PRIMARY_QUERY
    primary_since: int = 0
    primary_result: list[tuple[Any, ...]] = field(default_factory=list)
    partner: int = 0
    """The partner whose name or country changed most often (the dimension's longest history)."""
    partner_history: list[tuple[Any, ...]] = field(default_factory=list)
    """Its versions: dim_key, name, country, valid_from, valid_to, is_current."""
    parity: bool = True
    """Whether the run followed ecs changes and corrected scan events (the parity options)."""
    changed: dict[str, int] = field(default_factory=dict)
    """Rows the source changed after creation: ecs rows, corrected scan events."""
    parity_gap: dict[str, int] = field(default_factory=dict)
    """Per table, source rows whose current values the marts ∪ history do not hold."""


def _mart_sizes(wh: Warehouse, cfg: Config) -> dict[str, int]:
    g = cfg.marts[0]
    out = {}
    for t in [g.anchor.table, *[f.table for f in g.followers]]:
        out[t] = int(wh.scalar(f"SELECT COUNT(*) FROM {wh.t(g.schema_, t)}") or 0)
    return out


def _source_keys(path: Path, until: int) -> set[object]:
    con = sqlite3.connect(str(path))
    try:
        return {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT order_id FROM uni_tracking_info "
                "WHERE order_id IS NOT NULL AND update_time < ?",
                (until,),
            )
        }
    finally:
        con.close()


def parity_gap(wh: Warehouse, cfg: Config, path: Path, until: int) -> dict[str, int]:
    """Per table, the source rows (settled before `until`) whose current values are not what
    the mart ∪ history holds for them."""
    g = cfg.marts[0]
    con = sqlite3.connect(str(path))
    out = {}
    try:
        for name, (table, mart, cols) in PARITY_COLUMNS.items():
            # settled: the order's last change (uti) is older than the bound
            src = set(
                con.execute(
                    f"SELECT {cols} FROM {table} t WHERE order_id IS NOT NULL AND EXISTS "
                    "(SELECT 1 FROM uni_tracking_info u WHERE u.order_id = t.order_id "
                    "AND u.update_time < ?)",
                    (until,),
                ).fetchall()
            )
            names = [c.strip() for c in cols.split(",")]
            sel = ", ".join(wh.q(c) for c in names)
            held: set[tuple[Any, ...]] = set()
            for t in [mart, *wh.list_tables(g.schema_, f"{g.history_prefix}{name}_")]:
                held |= {tuple(r) for r in wh.query(f"SELECT {sel} FROM {wh.t(g.schema_, t)}")}
            out[table] = len(src - held)
    finally:
        con.close()
    return out


def run_demo(
    workdir: Path,
    spec: DemoSpec | None = None,
    step_days: int = 1,
    reporter: Reporter | None = None,
    check_every: int = 1,
    parity: bool = True,
) -> DemoResult:
    """Build the source, run one cycle per simulated step, verify G1/G2 as it goes, and at
    the end that the marts hold the source's current ecs rows and scan events (`parity`: with
    the two options that follow changes after creation; without them the gap is reported)."""
    reporter = reporter or NullReporter()
    spec = spec or DemoSpec()
    if workdir.exists():
        shutil.rmtree(workdir)  # rerunnable from scratch
    workdir.mkdir(parents=True)
    cfg_path = workdir / "trackline.yml"
    cfg_path.write_text(DEMO_CONFIG.format(path=cfg_path, **(PARITY if parity else NO_PARITY)))
    cfg = load_config(cfg_path)
    src = DemoSource(workdir / "source.db", spec)
    res = DemoResult(workdir, parity=parity)
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    t0 = time.monotonic()
    try:
        steps = list(ticks(spec, step_days * DAY))
        ecs_changes = 0
        for i, now in enumerate(steps):
            ecs_changes += src.advance(now).ecs_changes
            summary = run_cycle_on(cfg, wh, reporter)
            failed = [r for r in summary.sync if r.status != "ok"]
            if failed:
                raise MartError(f"demo cycle {i}: sync failed: {failed[0].error}")
            for m in summary.marts:
                res.archived += m.archived
                if m.kind == "anchor":
                    res.reactivated += m.reactivated
                elif m.kind == "one_per_key":
                    res.restored += m.reactivated
            res.cycles += 1
            reporter.progress(
                "simulated days", step_days, total=len(steps) * step_days, unit="days"
            )
            if i % check_every == 0 or i == len(steps) - 1:
                bad = check_all(cfg, wh)
                lag = cfg.defaults.lag_seconds
                miss = missing_keys(wh, cfg.marts[0], _source_keys(src.path, now - lag))
                if bad or miss:
                    res.violations += len(bad) + len(miss)
                    raise MartError(
                        f"demo cycle {i}: invariant broken: {bad[:3]} missing keys "
                        f"{sorted(miss, key=str)[:5]}"
                    )
            if i % max(1, 30 // step_days) == 0 or i == len(steps) - 1:
                res.sizes.append({"day": (now - spec.start) // DAY, **_mart_sizes(wh, cfg)})
        res.seconds = time.monotonic() - t0
        g = cfg.marts[0]
        for name in wh.list_tables(g.schema_, g.history_prefix):
            res.history[name] = int(wh.scalar(f"SELECT COUNT(*) FROM {wh.t(g.schema_, name)}"))
        res.exceptions = Exceptions(wh, g.schema_, g.exceptions_table).counts()
        res.primary_since = spec.end - 30 * DAY
        res.primary_result = wh.query(PRIMARY_QUERY, (res.primary_since,))
        top = wh.query(
            "SELECT partner_id, COUNT(*) FROM settlement_public.partners "
            "GROUP BY partner_id ORDER BY 2 DESC, 1 LIMIT 1"
        )
        if top:
            res.partner = int(top[0][0])
            res.partner_history = wh.query(PARTNER_HISTORY, (res.partner,))
        con = sqlite3.connect(str(src.path))
        for t in ("uni_tracking_info", "ecs_order_info", "uni_tracking_spath"):
            res.source_rows[t] = con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
        res.changed = {
            "ecs_order_info": ecs_changes,
            "uni_tracking_spath": con.execute(
                "SELECT COUNT(*) FROM uni_tracking_spath WHERE is_updated = 1"
            ).fetchone()[0],
        }
        con.close()
        res.parity_gap = parity_gap(wh, cfg, src.path, steps[-1] - cfg.defaults.lag_seconds)
        if parity and any(res.parity_gap.values()):
            raise MartError(
                f"demo: the marts miss the source's current values of {res.parity_gap} rows"
            )
    finally:
        wh.close()
    return res
