"""Run-level checks, over ``trackline.runs`` and the sources (failed, slow and zero-row cycles,
rows dated in the future), and the reconcile check of `quality.reconcile_tables`. The check
model and the group checks live in `trackline.quality.checks`."""

from __future__ import annotations

import datetime as dt
import json

from trackline.config import Config
from trackline.extract import Relation, open_source
from trackline.extract.cdc import shift
from trackline.load import Warehouse
from trackline.quality.checks import (
    RUNS_TABLE,
    STATE_EXCEPTIONS,
    Check,
    Rows,
    _kind,
    _upper_of,
    freshness_check,
)
from trackline.quality.consolidation import consolidation_checks
from trackline.state import StateStore, utcnow
from trackline.sync import resolve

NOT_FAILED = ("ok", "running", "interrupted")
"""Cycle statuses that are no failure: done, still running, stopped on request."""


def run_checks_of(cfg: Config, wh: Warehouse, now: dt.datetime | None = None) -> list[Check]:
    """Checks over ``trackline.runs``: failed, slow and zero-row cycles; and rows dated in the
    future.

    A failed or slow cycle fails its check until a later cycle is ok (and, for slow, within
    `slow_cycle_seconds`): then the check passes again, its exceptions resolve and the
    recovery is announced once. Both look back `run_window_hours` at most."""
    q = cfg.quality
    runs = wh.t(cfg.state_schema, RUNS_TABLE)
    since = (now or utcnow()) - dt.timedelta(hours=q.run_window_hours)
    exc = (cfg.state_schema, STATE_EXCEPTIONS)
    slow = float(q.slow_cycle_seconds)
    later_ok = (
        f"SELECT 1 FROM {runs} g WHERE g.command = 'cycle' AND g.status = 'ok' "
        "AND g.started_at > r.started_at"
    )
    return [
        Check(
            name="runs.failed_cycle",
            severity="blocking",
            sql=(
                f"SELECT r.run_id, r.started_at, r.status, r.error FROM {runs} r "
                "WHERE r.command = 'cycle' AND r.started_at >= ? AND "
                + " AND ".join(f"r.status <> '{s}'" for s in NOT_FAILED)
                + f" AND NOT EXISTS ({later_ok})"
            ),
            params=(since,),
            key="run_id",
            table=RUNS_TABLE,
            exceptions=exc,
            description=f"cycles that failed, synced only partly or were killed in the last "
            f"{q.run_window_hours} h, with no ok cycle since",
        ),
        Check(
            name="runs.slow_cycle",
            severity="warning",
            sql=(
                f"SELECT r.run_id, r.started_at, r.seconds FROM {runs} r "
                "WHERE r.command = 'cycle' AND r.started_at >= ? AND r.seconds > ? "
                f"AND NOT EXISTS ({later_ok} AND g.seconds <= ?)"
            ),
            params=(since, slow, slow),
            key="run_id",
            table=RUNS_TABLE,
            exceptions=exc,
            description=f"cycles slower than {q.slow_cycle_seconds:,.0f} s in the last "
            f"{q.run_window_hours} h, with no ok cycle within that time since",
        ),
        Check(
            name="runs.zero_row_cycle",
            severity="warning",
            sql=(
                f"-- the last cycle: SELECT detail FROM {runs} WHERE command = 'cycle' "
                "ORDER BY started_at DESC LIMIT 1\n"
                "-- then, in the SOURCE, for each table that moved 0 rows:\n"
                "SELECT MAX(<cursor>), COUNT(*) FROM <table> WHERE <cursor> > <watermark> "
                "AND <cursor> < <the cycle's upper bound>"
            ),
            key="table_key",
            table=RUNS_TABLE,
            exceptions=exc,
            description="the last cycle moved zero rows of a table whose source has rows "
            "past the watermark and below the cycle's upper bound (rows it should have read)",
            collect=lambda w: zero_row_tables(cfg, w),
        ),
        Check(
            name="runs.future_rows",
            severity="warning",
            sql=(
                "-- in the SOURCE, for each table with a time cursor:\n"
                "SELECT COUNT(*), MAX(<cursor>) FROM <table> WHERE <cursor> > "
                f"<source clock> + {q.future_seconds} s"
            ),
            key="table_key",
            table=RUNS_TABLE,
            exceptions=exc,
            description=f"source rows dated more than {q.future_seconds:,} s after the source "
            "clock: incremental sync reads below the clock, so they wait unloaded until it "
            "reaches them",
            collect=lambda w: future_rows(cfg, w),
        ),
    ]


def future_rows(cfg: Config, wh: Warehouse) -> Rows:
    """Tables whose source holds rows with a time cursor beyond the source clock plus
    `quality.future_seconds` (not loaded by incremental sync until the clock gets there)."""
    columns = ["table_key", "future_rows", "newest", "source_now"]
    state = StateStore(wh, cfg.state_schema)
    out = []
    for t in cfg.tables:
        if t.cdc.strategy not in ("hybrid", "timestamp") or not t.cdc.cursor:
            continue
        rt = resolve(cfg, t, None, None)
        kind = _kind(state.get(rt.key, rt.source_db).watermark.ts)
        if kind is None:  # never synced (or no row yet): the cursor's type is unknown
            continue
        with open_source(cfg.sources[rt.source_name], rt.source_db) as src:
            rel = src.relation_sql(Relation(t.name, rt.source_db if not t.query else None, t.query))
            now = src.now(kind == "unix")
            ahead = (shift(now, -cfg.quality.future_seconds),)
            c = src.q(t.cdc.cursor)
            sql = f"SELECT COUNT(*), MAX({c}) FROM {rel} WHERE {c} > ?"
            n, top = src.rows(src.bind(sql, ahead), ahead)[0]
        if n:
            out.append((rt.key, int(n), str(top), str(now)))
    return Rows(columns, out)


def zero_row_tables(cfg: Config, wh: Warehouse) -> Rows:
    """Tables the last finished cycle moved no row of although the source has rows past the
    watermark that the cycle was allowed to read: below its upper bound (the cycle reads
    `cursor < upper`). Rows at or past the bound (within the lag, or dated ahead of the
    source clock) are not a zero-row failure. `pending_rows` counts every row past the
    watermark, `below_upper` those the cycle should have read. `id` tables have no upper
    bound: any row past the watermark counts."""
    columns = ["table_key", "pending_rows", "below_upper", "source_max", "watermark", "upper"]
    runs = wh.t(cfg.state_schema, RUNS_TABLE)
    last = wh.query(
        f"SELECT detail FROM {runs} WHERE command = 'cycle' AND status IN ('ok', 'partial') "
        "ORDER BY started_at DESC LIMIT 1"
    )
    if not last or not last[0][0]:
        return Rows(columns, [])
    synced = json.loads(last[0][0]).get("sync", {})
    by_key = {resolve(cfg, t, None, None).key: t for t in cfg.tables}
    state = StateStore(wh, cfg.state_schema)
    out = []
    for table_key, info in synced.items():
        t = by_key.get(table_key)
        if t is None or info.get("status") != "ok" or info.get("rows"):
            continue
        column = t.cdc.id if t.cdc.strategy == "id" else t.cdc.cursor
        if t.cdc.strategy == "full" or not column:
            continue
        rt = resolve(cfg, t, None, None)
        wm = state.get(table_key, rt.source_db).watermark
        mark_value = wm.id if t.cdc.strategy == "id" else wm.ts
        upper = None if t.cdc.strategy == "id" else _upper_of(info.get("upper"), wm.ts)
        with open_source(cfg.sources[rt.source_name], rt.source_db) as src:
            rel = src.relation_sql(Relation(t.name, rt.source_db if not t.query else None, t.query))
            c = src.q(column)
            past, params = (
                (f"{c} > ?", (mark_value,)) if mark_value is not None else (f"{c} IS NOT NULL", ())
            )
            sql = f"SELECT MAX({c}) FROM {rel} WHERE {past}"
            top = src.scalar(src.bind(sql, params), params)
            if top is None:
                continue
            sql = f"SELECT COUNT(*) FROM {rel} WHERE {past}"
            pending = int(src.scalar(src.bind(sql, params), params) or 0)
            below = None
            if upper is not None:
                both = (*params, upper)
                sql = f"SELECT COUNT(*) FROM {rel} WHERE {past} AND {c} < ?"
                below = int(src.scalar(src.bind(sql, both), both) or 0)
        if below == 0:
            # Every pending row is at or past the cycle's upper bound (read as `< upper`):
            # within the lag, or dated ahead of the source clock. The cycle was not allowed
            # to read them yet: no zero-row failure (`runs.future_rows` reports the latter).
            continue
        out.append(
            (
                table_key,
                pending,
                below,
                str(top),
                wm.describe(),
                None if upper is None else str(upper),
            )
        )
    return Rows(columns, out)


def reconcile_check(cfg: Config, name: str) -> Check:
    """`reconcile.<table>`: keys the sync should have loaded that the target lacks (G2)."""

    def collect(wh: Warehouse) -> Rows:
        from trackline.jobs.reconcile import reconcile

        res = reconcile(cfg, wh, name)
        detail = f"{res.deleted_count} deleted in the source, {res.pending_count} pending"
        return Rows(
            ["table_key", "key", "detail"],
            [(res.table_key, str(k), detail) for k in res.missing],
        )

    return Check(
        name=f"reconcile.{name}",
        severity="blocking",
        sql=(
            "-- trackline.jobs.reconcile (as `trackline reconcile "
            f"{name}`): per key range, COUNT and residue sums in the source and the target;\n"
            "-- differing ranges compared key by key; a source key below the watermark that "
            "the target lacks is missing"
        ),
        key="key",
        table=name,
        exceptions=(cfg.state_schema, STATE_EXCEPTIONS),
        description=f"keys of {name} the sync should have loaded but the target lacks (at most "
        "20 listed); keys deleted in the source are only counted: "
        f"`trackline reconcile {name} --apply` removes them",
        collect=collect,
    )


def alert_checks(cfg: Config, wh: Warehouse) -> list[Check]:
    """What `trackline run` evaluates after every job, to alert at once: failed, slow and
    zero-row cycles and consolidation runs, and each retention group's freshness."""
    wanted = ("runs.failed_cycle", "runs.slow_cycle", "runs.zero_row_cycle")
    out = [c for c in run_checks_of(cfg, wh) if c.name in wanted]
    out += consolidation_checks(cfg, wh)
    for g in cfg.marts:
        if wh.table_exists(g.schema_, g.anchor.table):
            anchor = wh.t(g.schema_, g.anchor.table)
            newest = wh.scalar(f"SELECT MAX({wh.q(g.anchor.time)}) FROM {anchor}")
            out.append(freshness_check(cfg, g, wh, newest))
    return out
