"""One 15-minute cycle: sync every table, build each retention group, trim raw buffers."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from trackline.config import Config, FollowerConfig, RetentionGroupConfig
from trackline.errors import ConfigError
from trackline.extract.cdc import shift
from trackline.load import Warehouse, open_warehouse
from trackline.marts.engine import DEPARTURES, GroupEngine, MartPlan, MartStats
from trackline.marts.history import HistoryTables
from trackline.report import NullReporter, Reporter
from trackline.state import StateStore, pipeline_lock, utcnow
from trackline.sync import BATCH_COL, Syncer, TableResult, resolve
from trackline.sync.follow import progress_name
from trackline.sync.parallel import ParallelSyncer, Step

log = logging.getLogger(__name__)


@dataclass
class CycleSummary:
    run_id: str
    sync: list[TableResult] = field(default_factory=list)
    marts: list[MartStats] = field(default_factory=list)
    raw_trimmed: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    sizes: dict[str, int] = field(default_factory=dict)
    """Rows per mart and per `<mart>_hist` view after the cycle (`schema.table` → rows)."""
    newest: dict[str, Any] = field(default_factory=dict)
    """Per retention group, the newest anchor time after the cycle (freshness over time)."""

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.sync)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": "ok" if self.ok else "partial",
            "failed_tables": [r.table_key for r in self.sync if r.status != "ok"],
            "sync": {
                r.table_key: {
                    "rows": r.rows,
                    "batches": r.batches,
                    "seconds": round(r.seconds, 3),
                    "status": r.status,
                    "error": r.error,
                    "retryable": r.retryable,
                    "warnings": r.warnings,
                    "upper": r.upper,
                }
                for r in self.sync
            },
            "marts": {
                m.mart: {
                    "rows_in": m.rows_in,
                    "inserted": m.inserted,
                    "updated": m.updated,
                    "gone": m.gone,
                    "archived": m.archived,
                    "trimmed": m.trimmed,
                    "reactivated": m.reactivated,
                    "exceptions": m.exceptions,
                    "null_keys": m.null_keys,
                    "seconds": round(m.seconds, 3),
                    "steps": {k: round(v, 3) for k, v in m.steps.items()},
                }
                for m in self.marts
            },
            "raw_trimmed": self.raw_trimmed,
            "sizes": self.sizes,
            "newest": self.newest,
            "seconds": round(self.seconds, 3),
        }


def mart_sizes(
    cfg: Config, wh: Warehouse, exact: bool = False
) -> tuple[dict[str, int], dict[str, Any]]:
    """Rows per mart and history view, and each group's newest anchor time (for reports).

    Per cycle the sizes are the engine's cheap count (`Warehouse.approx_rows`: a statistics
    estimate where COUNT(*) scans, see `ROW_COUNTS_ESTIMATED`); `exact` counts every table."""
    count = wh.exact_rows if exact else wh.approx_rows
    sizes: dict[str, int] = {}
    newest: dict[str, Any] = {}
    for g in cfg.marts:
        marts = [(g.anchor.table, g.anchor.history_name)] + [
            (f.table, f.history_name) for f in g.followers
        ]
        for mart, hist_name in marts:
            if wh.table_exists(g.schema_, mart):
                sizes[f"{g.schema_}.{mart}"] = count(g.schema_, mart)
            # the `<mart>_hist` view's size = the sum of its period tables (no view scan)
            h = HistoryTables(wh, g.schema_, g.history_prefix, hist_name, mart, [], g.key, [], None)
            periods = h.existing()
            if periods:
                sizes[f"{g.schema_}.{mart}_hist"] = sum(
                    count(g.schema_, h.table(p)) for p in periods
                )
        if wh.table_exists(g.schema_, g.anchor.table):
            top = f"SELECT MAX({wh.q(g.anchor.time)}) FROM {wh.t(g.schema_, g.anchor.table)}"
            newest[g.name] = wh.scalar(top)
    return sizes, newest


def raw_consumers(cfg: Config) -> dict[str, list[tuple[str, str]]]:
    """Raw table name (config) → the (mart, raw state key) progress rows that read it."""
    out: dict[str, list[tuple[str, str]]] = {}
    for g in cfg.marts:
        a_key = resolve(cfg, cfg.table(g.anchor.source), None, None).key
        out.setdefault(g.anchor.source, []).append((g.anchor.table, a_key))
        for f in g.followers:
            f_key = resolve(cfg, cfg.table(f.source), None, None).key
            out.setdefault(f.source, []).append((f.table, f_key))
            if f.kind == "one_per_key":
                out[g.anchor.source].append((f.table, a_key))
    for t in cfg.tables:  # a follow pass reads its driver's raw batches
        if t.cdc.follow:
            d_key = resolve(cfg, cfg.table(t.cdc.follow), None, None).key
            f_key = resolve(cfg, t, None, None).key
            out.setdefault(t.cdc.follow, []).append((progress_name(f_key), d_key))
    return out


def trim_raw(
    cfg: Config, wh: Warehouse, plan: bool = False, only: str | None = None
) -> dict[str, int]:
    """Delete raw rows every reading mart has consumed AND older than the raw buffer.

    `plan`: the warehouse answers no rows (`trackline sql`); show the DELETE anyway.
    `only`: that table's raw buffer alone (a cycle's step once its readers are done)."""
    state = StateStore(wh, cfg.state_schema)
    out: dict[str, int] = {}
    b = wh.q(BATCH_COL)
    for name, readers in raw_consumers(cfg).items():
        if only is not None and name != only:
            continue
        t = cfg.table(name)
        if not t.cdc.cursor:
            continue
        rt = resolve(cfg, t, None, None)
        if not wh.table_exists(rt.target_schema, rt.target):
            continue
        consumed = min(state.mart_progress(m, k) for m, k in readers)
        keep = t.raw_retention_seconds or cfg.defaults.raw_retention_seconds
        ref, cur = wh.t(rt.target_schema, rt.target), wh.q(t.cdc.cursor)

        def trim(
            ref: str = ref, cur: str = cur, consumed: int = consumed, keep: int = keep
        ) -> int | None:
            top = wh.scalar(f"SELECT MAX({cur}) FROM {ref}")
            if top is None and not plan:
                return None
            cutoff = None if top is None else shift(top, keep)  # plan: a bound parameter
            n = int(
                wh.scalar(
                    f"SELECT COUNT(*) FROM {ref} WHERE {b} <= ? AND {cur} < ?", (consumed, cutoff)
                )
                or 0
            )
            if n or plan:
                wh.execute(f"DELETE FROM {ref} WHERE {b} <= ? AND {cur} < ?", (consumed, cutoff))
            return n

        n = wh.run_transaction(trim)  # computed again if a conflict reruns it
        if n is not None:
            out[rt.key] = n
    return out


def run_cycle_on(
    cfg: Config,
    wh: Warehouse,
    reporter: Reporter | None = None,
    sync_tables: bool = True,
    *,
    syncer: Syncer | None = None,
    plan: MartPlan | None = None,
) -> CycleSummary:
    """One cycle on an open warehouse. `syncer` (closed after the sync) replaces the default
    one, and `plan` puts the marts in plan mode: both serve `trackline sql … cycle`."""
    reporter = reporter or NullReporter()
    summary = CycleSummary(uuid.uuid4().hex[:16])
    t0 = time.monotonic()
    started = utcnow()
    state = StateStore(wh, cfg.state_schema)
    state.ensure()
    timeout = float(getattr(cfg.warehouse, "lock_timeout_seconds", 0) or 0)
    lock = pipeline_lock(cfg.state_schema, "cycle")
    with wh.lock(lock, timeout):
        for dead in state.recover_dead_runs(("cycle",), lock, plan=plan is not None):
            reporter.event("warning", f"cycle {dead} ended without a word: marked killed")
        state.start_run(summary.run_id, "cycle", None, started)
        try:
            _cycle_steps(cfg, wh, reporter, summary, sync_tables, syncer, plan)
        except BaseException as exc:  # recorded, however it ends (a stop request, an error)
            summary.seconds = time.monotonic() - t0
            _record_unfinished(state, summary, exc)
            exc.cycle_summary = summary  # type: ignore[attr-defined]  # what the CLI says of it
            raise
    summary.seconds = time.monotonic() - t0
    state.finish_run(
        summary.run_id,
        "cycle",
        "ok" if summary.ok else "partial",
        sum(r.rows for r in summary.sync),
        summary.seconds,
        None if summary.ok else "; ".join(f"{r.table}: {r.error}" for r in summary.sync if r.error),
        summary.as_dict(),
    )
    return summary


def _cycle_steps(
    cfg: Config,
    wh: Warehouse,
    reporter: Reporter,
    summary: CycleSummary,
    sync_tables: bool,
    syncer: Syncer | ParallelSyncer | None,
    plan: MartPlan | None,
) -> None:
    steps: list[Step] = []
    if sync_tables:
        syncer = syncer or ParallelSyncer(cfg, wh, reporter)  # `defaults.workers` at once
        if isinstance(syncer, ParallelSyncer) and plan is None:
            steps = mart_steps(cfg, wh, reporter)
        try:
            if steps:
                assert isinstance(syncer, ParallelSyncer)
                summary.sync = syncer.sync(None, run_id=summary.run_id, after=steps)
            else:
                summary.sync = syncer.sync(None, run_id=summary.run_id)
        except BaseException:
            summary.sync = syncer.results  # what it committed before it was stopped
            _step_results(summary, steps)
            raise
        finally:
            syncer.close()
    if steps:  # the marts, then each raw buffer's trim once its readers were done
        _step_results(summary, steps)
    else:
        for g in cfg.marts:
            summary.marts += GroupEngine(cfg, g, wh, reporter, plan=plan).run()
        summary.raw_trimmed = trim_raw(cfg, wh, plan=plan is not None)
    summary.sizes, summary.newest = mart_sizes(cfg, wh)


def mart_steps(cfg: Config, wh: Warehouse, reporter: Reporter) -> list[Step]:
    """The cycle's marts as steps for the sync's workers (`ParallelSyncer`), listed in the
    order one worker runs them (the tables they read are synced first); groups run one after
    the other. Where the engine builds marts at once (`Warehouse.PARALLEL_MARTS`: PostgreSQL)
    the group is an anchor step, which starts once the anchor's table has synced (while the
    followers' tables may still sync: the anchor reads its own raw table only), then one
    step per follower, once the anchor is built and the follower's own table has synced,
    side by side (each widens and creates only its own mart and periods, so it sees its raw
    table as this cycle's sync left it, as in a serial cycle; writes its own mart, history
    periods and progress rows, reads the anchor's departures, and takes
    `Warehouse.serialize` before allocating exception ids), then the pruning of consumed
    departures. Elsewhere the group is one step (`GroupEngine.run`) that starts once every
    table the group reads has synced, while tables no mart of the group reads still sync."""
    synced = {t.name for t in cfg.tables}
    steps: list[Step] = []
    built: dict[str, str] = {}  # mart table → the step that builds it
    ready: dict[str, bool] = {}

    def engine(g: RetentionGroupConfig, on: Warehouse, stop: threading.Event) -> GroupEngine:
        eng = GroupEngine(cfg, g, on, reporter)
        eng.stop = stop
        return eng

    def run_group(on: Warehouse, stop: threading.Event, g: RetentionGroupConfig) -> Any:
        return engine(g, on, stop).run()

    def run_anchor(on: Warehouse, stop: threading.Event, g: RetentionGroupConfig) -> Any:
        eng = engine(g, on, stop)
        ready[g.name] = eng.prepare(only=g.anchor.table)
        return [eng.run_anchor()] if ready[g.name] else []

    def run_follower(
        on: Warehouse, stop: threading.Event, g: RetentionGroupConfig, f: FollowerConfig
    ) -> Any:
        if not ready.get(g.name):
            return []  # the anchor's raw table is not loaded yet
        eng = engine(g, on, stop)
        eng.prepare(only=f.table)
        stats = eng.run_follower(f)
        return [stats] if stats is not None else []

    def prune(on: Warehouse, stop: threading.Event, g: RetentionGroupConfig) -> Any:
        if ready.get(g.name):
            engine(g, on, stop).prune_departures()
        return []

    for g in cfg.marts:
        reads = {g.anchor.source} | {f.source for f in g.followers}
        needs = (reads & synced) | ({steps[-1].name} if steps else set())
        if not wh.PARALLEL_MARTS or not g.followers:
            steps.append(Step(f"marts:{g.name}", frozenset(needs), partial(run_group, g=g)))
            for m in (g.anchor.table, *(f.table for f in g.followers)):
                built[m] = steps[-1].name
            continue
        anchor = f"anchor:{g.name}"
        after = {steps[-1].name} if steps else set()
        a_needs = ({g.anchor.source} & synced) | after
        steps.append(Step(anchor, frozenset(a_needs), partial(run_anchor, g=g)))
        built[g.anchor.table] = anchor
        followers = [f"follower:{g.name}:{f.table}" for f in g.followers]
        for name, f in zip(followers, g.followers, strict=True):
            f_needs = {anchor} | ({f.source} & synced)
            steps.append(Step(name, frozenset(f_needs), partial(run_follower, g=g, f=f)))
            built[f.table] = name
        steps.append(Step(f"prune:{g.name}", frozenset(followers), partial(prune, g=g)))
    steps += _trim_steps(cfg, built)
    return steps


def _step_results(summary: CycleSummary, steps: list[Step]) -> None:
    """The marts' stats and the raw trims of the steps that ran (`mart_steps`)."""
    summary.marts, summary.raw_trimmed = [], {}
    for s in steps:
        if isinstance(s.result, dict):
            summary.raw_trimmed.update(s.result)
        elif s.result:
            summary.marts += s.result


def _trim_steps(cfg: Config, built: dict[str, str]) -> list[Step]:
    """One step per raw buffer the marts read: its trim (`trim_raw`), once every step that
    reads it has finished (the steps that build its marts, `built`; a follow table's sync for
    its driver's buffer), beside the marts still building. Last in the list: one worker runs
    them after the marts."""
    follows = {
        progress_name(resolve(cfg, t, None, None).key): t.name for t in cfg.tables if t.cdc.follow
    }
    # every reader is a mart of `cfg.marts` (built by a step) or a follow table's pass
    return [
        Step(
            f"trim:{name}",
            frozenset(built[m] if m in built else follows[m] for m, _ in readers),
            partial(_trim_one, cfg=cfg, name=name),
        )
        for name, readers in raw_consumers(cfg).items()
    ]


def _trim_one(on: Warehouse, stop: threading.Event, cfg: Config, name: str) -> dict[str, int]:
    return trim_raw(cfg, on, only=name)


# --------------------------------------------------------------------------- steps
# The cycle above, cut into steps that can run as separate tasks, in separate processes or on
# separate machines (the Airflow cycle DAG): one `sync_step` per table (in parallel), then per
# retention group `anchor_step`, then `follower_step` per follower, then `finish_step`. The
# steps run the same code in the same order as `run_cycle_on`; what they share lives in the
# warehouse (watermarks, ledger, mart progress). Each mart step holds the pipeline's
# ``cycle`` lock, so none overlaps another, nor a `trackline cycle` / `trackline run`.


def _lock_timeout(cfg: Config) -> float:
    return float(getattr(cfg.warehouse, "lock_timeout_seconds", 0) or 0)


def sync_step(
    cfg: Config, wh: Warehouse, table: str, run_id: str, reporter: Reporter | None = None
) -> TableResult:
    """Sync one table for the cycle `run_id` (under its own ``sync:<table>`` lock: `LockBusy`
    when another run syncs it past `warehouse.lock_timeout_seconds`)."""
    syncer = Syncer(cfg, wh, reporter)
    try:
        return syncer.sync([table], run_id=run_id)[0]
    finally:
        syncer.close()


def _group(cfg: Config, name: str) -> RetentionGroupConfig:
    for g in cfg.marts:
        if g.name == name:
            return g
    raise ConfigError(f"mart group {name!r} is not in the config's `marts:`")


def anchor_step(
    cfg: Config, wh: Warehouse, group: str, reporter: Reporter | None = None
) -> MartStats | None:
    """The group's anchor mart (after creating or widening what the group needs); None while
    the anchor's raw table has not been loaded."""
    eng = GroupEngine(cfg, _group(cfg, group), wh, reporter or NullReporter())
    with wh.lock(pipeline_lock(cfg.state_schema, "cycle"), _lock_timeout(cfg)):
        return eng.run_anchor() if eng.prepare() else None


def follower_step(
    cfg: Config, wh: Warehouse, group: str, follower: str, reporter: Reporter | None = None
) -> MartStats | None:
    """One follower mart of the group (after its anchor); None while nothing is loaded."""
    g = _group(cfg, group)
    f = next((f for f in g.followers if f.table == follower), None)
    if f is None:
        raise ConfigError(f"mart group {group!r} has no follower {follower!r}")
    eng = GroupEngine(cfg, g, wh, reporter or NullReporter())
    with wh.lock(pipeline_lock(cfg.state_schema, "cycle"), _lock_timeout(cfg)):
        return eng.run_follower(f) if eng.prepare() else None


def finish_step(
    cfg: Config,
    wh: Warehouse,
    run_id: str,
    started: dt.datetime,
    reporter: Reporter | None = None,
) -> CycleSummary:
    """After every group: forget consumed departures, trim the raw buffers, and record the
    cycle's ``cycle`` run (its tables' sync rows carry the same `run_id`), so `trackline
    status`, reports and the run-level checks see cycles run as steps like any other."""
    reporter = reporter or NullReporter()
    summary = CycleSummary(run_id)
    state = StateStore(wh, cfg.state_schema)
    state.ensure()
    with wh.lock(pipeline_lock(cfg.state_schema, "cycle"), _lock_timeout(cfg)):
        for g in cfg.marts:
            GroupEngine(cfg, g, wh, reporter).prune_departures()
        summary.raw_trimmed = trim_raw(cfg, wh)
        summary.sizes, summary.newest = mart_sizes(cfg, wh)
        runs = wh.t(cfg.state_schema, "runs")
        for key, status, rows, error in wh.query(
            f"SELECT table_key, status, rows_moved, error FROM {runs} "
            "WHERE run_id = ? AND command = 'sync' ORDER BY table_key",
            (run_id,),
        ):
            r = TableResult(key.rsplit(".", 1)[-1], key, status, int(rows or 0), error=error)
            summary.sync.append(r)
        summary.seconds = max(0.0, (utcnow() - started).total_seconds())
        state.record_run(
            run_id,
            "cycle",
            None,
            started,
            "ok" if summary.ok else "partial",
            sum(r.rows for r in summary.sync),
            summary.seconds,
            None
            if summary.ok
            else "; ".join(f"{r.table}: {r.error}" for r in summary.sync if r.error),
            summary.as_dict(),
        )
    return summary


def _record_unfinished(state: StateStore, summary: CycleSummary, exc: BaseException) -> None:
    """The cycle's run row after an exception: ``interrupted`` for a stop request (Ctrl-C,
    SIGTERM), else ``failed``; rows = what its committed batches moved (from the ledger,
    which commits with each batch). Best effort: if the
    warehouse is gone too, the row stays ``running`` and the next cycle marks it killed."""
    if isinstance(exc, KeyboardInterrupt):
        status = getattr(exc, "status", "interrupted")
        error = str(exc) or "interrupted (Ctrl-C)"
    else:
        status, error = "failed", str(exc) or type(exc).__name__
    try:
        state.finish_run(
            summary.run_id,
            "cycle",
            status,
            state.rows_committed(summary.run_id),
            summary.seconds,
            error,
            summary.as_dict(),
        )
    except Exception as record_exc:  # noqa: BLE001 - the original exception matters more
        log.warning("could not record cycle %s as %s: %s", summary.run_id, status, record_exc)


def run_cycle(cfg: Config, reporter: Reporter | None = None) -> CycleSummary:
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        return run_cycle_on(cfg, wh, reporter)
    finally:
        wh.close()


__all__ = [
    "DEPARTURES",
    "CycleSummary",
    "anchor_step",
    "finish_step",
    "follower_step",
    "run_cycle",
    "run_cycle_on",
    "sync_step",
    "trim_raw",
]
