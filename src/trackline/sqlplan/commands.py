"""The plans of `trackline sql`: one function per command, in `PLANS` (a plain dict).

A plan takes the config, the recorder and the tables named on the command line (none: every
table the command applies to) and runs the command's own library function against the
recorder. ``state``, ``sync`` and ``cycle`` are planned as a first run on an empty warehouse.
The commands that work on what a cycle left (``check``, ``reconcile``, ``replay``, ``reset``,
``maintenance``, ``migrate``) are planned as right after a first ``cycle``: the cycle's plan
runs first, unrecorded, so they find its tables; their scripts run after the cycle's. Where a
command would skip its work on an empty warehouse, its plan answers the few queries that decide
that, so the statements show:

- ``reconcile``: each `write_mode: merge` table (``--apply``), its target holding one key the
  source no longer has: figures, the key-by-key comparison and the DELETE;
- ``replay``: the batches the plan's sync staged (one per table, empty);
- ``maintenance``: every table as needing both VACUUM and ANALYZE;
- ``migrate``: every column of each table as widened at the source (each table rebuilt);
- ``drift``: the next cycle after each source table gained a nullable column and its first
  VARCHAR doubled in length (the ALTERs on raw, the marts, every history period, the views).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from trackline.config import Config, TableConfig
from trackline.errors import ConfigError
from trackline.extract import open_source
from trackline.extract.cdc import Watermark
from trackline.extract.source import Source
from trackline.sqlplan.recorder import MetadataSource, Recorder, no_rows

if TYPE_CHECKING:
    from trackline.quality.checks import Check
    from trackline.sync import Syncer, TableResult


class PlanFn(Protocol):
    def __call__(self, cfg: Config, rec: Recorder, tables: Sequence[str] = ()) -> None: ...


def _tables(cfg: Config, names: Sequence[str], *, merge_only: bool = False) -> list[TableConfig]:
    """The `tables:` entries named (each must exist), or all of them."""
    chosen = [cfg.table(n) for n in names] if names else list(cfg.tables)
    if merge_only:
        if names:
            for t in chosen:
                if t.write_mode != "merge":
                    raise ConfigError(
                        f"table {t.name!r}: reconcile compares one row per key, and write_mode "
                        f"is {t.write_mode!r}; only `merge` targets can be reconciled"
                    )
        chosen = [t for t in chosen if t.write_mode == "merge"]
    return chosen


# --------------------------------------------------------------------------- first run


def plan_state(cfg: Config, rec: Recorder, tables: Sequence[str] = ()) -> None:
    from trackline.state import StateStore

    StateStore(rec, cfg.state_schema).ensure()


def plan_syncer(cfg: Config, rec: Recorder, drifted: Sequence[str] = ()) -> Syncer:
    """The real sync loop, over metadata-only sources and a stage that writes nothing
    (`drifted`: the tables whose source reads as `_DriftedSource`)."""
    from trackline.sync import Syncer

    class PlanSyncer(Syncer):
        def source(self, rt: Any) -> Source:
            real = super().source(rt)
            return _DriftedSource(real) if rt.cfg.name in drifted else MetadataSource(real)

        def _sync_incremental_after_snapshot(self, rt: Any, res: Any) -> None:
            return None  # it would repeat the same statements for the rows after the snapshot

    syncer = PlanSyncer(cfg, rec)
    syncer.stage = rec.plan_stage
    return syncer


def _require_ok(results: Sequence[TableResult]) -> None:
    for r in results:
        if r.status != "ok":
            raise ConfigError(f"cannot plan table {r.table}: {r.error}")


def plan_sync(cfg: Config, rec: Recorder, tables: Sequence[str] = ()) -> None:
    syncer = plan_syncer(cfg, rec)
    try:
        results = syncer.sync([t.name for t in _tables(cfg, tables)] if tables else None)
    finally:
        syncer.close()
    _require_ok(results)


def plan_cycle(cfg: Config, rec: Recorder, tables: Sequence[str] = ()) -> None:
    from trackline.marts.cycle import run_cycle_on
    from trackline.marts.engine import MartPlan
    from trackline.marts.history import Period
    from trackline.state import utcnow

    plan = MartPlan(raw_columns=rec.columns, period=Period.of(utcnow()))
    summary = run_cycle_on(cfg, rec, syncer=plan_syncer(cfg, rec), plan=plan)
    _require_ok(summary.sync)


# --------------------------------------------------------------------------- after a cycle


def _after_cycle(cfg: Config, rec: Recorder) -> None:
    with rec.unrecorded():
        plan_cycle(cfg, rec)


def plan_check(cfg: Config, rec: Recorder, tables: Sequence[str] = ()) -> None:
    from trackline.quality.catalog import all_checks
    from trackline.quality.run import run_checks

    _after_cycle(cfg, rec)
    behind = _planned_behind(cfg, rec)
    checks = [behind if c.name == behind.name else c for c in all_checks(cfg, rec)]
    run_checks(cfg, rec, send_alerts=False, checks=checks)


def _planned_behind(cfg: Config, rec: Recorder) -> Check:
    """`runs.behind_watermark` as after a first cycle: each table has a watermark (a source
    row's cursor), its source counts one row below it and one key moved past it, and the
    ledger holds one batch, so every target statement of the check shows."""
    import dataclasses

    import pyarrow as pa

    from trackline.extract import Relation
    from trackline.extract.cdc import Watermark
    from trackline.quality.behind import behind_watermark, behind_watermark_check
    from trackline.sync import resolve

    marks: dict[str, str] = {}
    for t in cfg.tables:
        rt = resolve(cfg, t, None, None)
        if t.cdc.strategy == "id":
            marks[rt.key] = Watermark(id=1).to_json()
        elif t.cdc.cursor:
            with open_source(cfg.sources[rt.source_name], rt.source_db) as src:
                rel = Relation(t.name, rt.source_db if not t.query else None, t.query)
                col = {c.name: c for c in src.columns(rel)}[t.cdc.cursor]
                unix = pa.types.is_integer(col.arrow)
                marks[rt.key] = Watermark(ts=src.now(unix), id=1).to_json()

    def state_answer(sql: str, params: tuple[Any, ...]) -> Any:
        if "watermarks" in sql and len(params) == 3 and params[0] in marks:
            # StateStore.get: source_db, strategy, value, last_batch_id, rows_total, updated_at
            return [(params[1], None, marks[params[0]], 0, 0, None)]
        if "wm_from" in sql:
            return [(Watermark().to_json(),)]
        return []

    def source_answer(sql: str, params: tuple[Any, ...]) -> Any:
        return [(1,)]  # one row below the watermark, and key 1 moved past it

    def opened(cfg: Config, rt: Any) -> Source:
        return MetadataSource(open_source(cfg.sources[rt.source_name], rt.source_db), source_answer)

    def collect(wh: Any) -> Any:
        rec.answer = state_answer
        try:
            return behind_watermark(cfg, wh, opened)
        finally:
            rec.answer = no_rows

    return dataclasses.replace(behind_watermark_check(cfg), collect=collect)


def plan_reconcile(cfg: Config, rec: Recorder, tables: Sequence[str] = ()) -> None:
    from trackline.jobs.reconcile import reconcile
    from trackline.sync import resolve

    _after_cycle(cfg, rec)
    for t in _tables(cfg, tables, merge_only=True):
        rt = resolve(cfg, t, None, None)
        target = rec.t(rt.target_schema, rt.target)

        def target_answer(sql: str, params: tuple[Any, ...], target: str = target) -> Any:
            # the target holds key 1 (the source none): one range, compared key by key
            if target not in sql:
                return []
            return [(1, 1, 1)] if sql.startswith("SELECT COUNT(*)") else [(1,)]

        def source_answer(sql: str, params: tuple[Any, ...]) -> Any:
            return [(0, 0, 0)] if sql.startswith("SELECT COUNT(*)") else []

        rec.answer = target_answer
        real = open_source(cfg.sources[rt.source_name], rt.source_db)
        try:
            reconcile(cfg, rec, t.name, apply=True, open_src=MetadataSource(real, source_answer))
        finally:
            real.close()
            rec.answer = no_rows


def _ledger(cfg: Config, rec: Recorder) -> dict[str, list[tuple[Any, ...]]]:
    """The batch ledger of the plan's sync (table key → ledger rows), from the files it staged:
    what `StateStore.batches` reads back."""
    from trackline.sync import resolve

    stage, out = rec.plan_stage, {}
    for t in cfg.tables:
        rt = resolve(cfg, t, None, None)
        folder = stage.table_dir(rt.source_db, rt.target_schema, rt.target) + "/"
        rows = []
        for path in sorted(p for p in stage.files if p.startswith(folder)):
            if path.endswith(".parquet"):
                batch_id = int(path.removesuffix(".parquet").rpartition("_")[2])
                manifest = stage.uri(path.removesuffix(".parquet") + ".manifest")
                files = json.dumps([stage.uri(path)])
                rows.append((batch_id, 0, "", files, manifest, None, rt.source_db))
        out[rt.key] = rows
    return out


def plan_replay(cfg: Config, rec: Recorder, tables: Sequence[str] = ()) -> None:
    from trackline.status import replay_table_on

    _after_cycle(cfg, rec)
    ledger = _ledger(cfg, rec)
    rec.answer = lambda sql, params: ledger.get(params[0], []) if "batch_id >" in sql else []
    try:
        for t in _tables(cfg, tables):
            replay_table_on(cfg, rec, rec.plan_stage, t.name)
    finally:
        rec.answer = no_rows


def plan_reset(cfg: Config, rec: Recorder, tables: Sequence[str] = ()) -> None:
    from trackline.status import reset_table_on

    _after_cycle(cfg, rec)
    for t in _tables(cfg, tables):
        reset_table_on(cfg, rec, t.name)


def plan_maintenance(cfg: Config, rec: Recorder, tables: Sequence[str] = ()) -> None:
    from trackline.report import NullReporter
    from trackline.schedule import maintenance_job

    _after_cycle(cfg, rec)
    rec.answer = lambda sql, params: [(100.0, 100.0)] if "svv_table_info" in sql else []
    try:
        maintenance_job(cfg, rec, NullReporter())
    finally:
        rec.answer = no_rows


def plan_migrate(cfg: Config, rec: Recorder, tables: Sequence[str] = ()) -> None:
    """`trackline migrate`: as if every column of each table had widened at the source."""
    from trackline.marts.engine import MartPlan
    from trackline.marts.history import Period
    from trackline.marts.migrate import migrate
    from trackline.state import utcnow

    _after_cycle(cfg, rec)
    plan = MartPlan(raw_columns=rec.columns, period=Period.of(utcnow()))
    for t in _tables(cfg, tables):
        migrate(cfg, rec, t.name, plan=plan)


class _OneRowSource(MetadataSource):
    """One row of NULLs instead of the rows, so the plan shows a staged batch."""

    def stream(self, sql: str, schema: Any, batch_size: int) -> Any:
        import pyarrow as pa

        yield pa.RecordBatch.from_arrays([pa.nulls(1, f.type) for f in schema], schema=schema)


def plan_consolidate(cfg: Config, rec: Recorder, tables: Sequence[str] = ()) -> None:
    """`trackline consolidate`: a first run, each input staging one batch, the merge finding
    rows pending (`tables`: consolidation names; none: all)."""
    from trackline.consolidate import Consolidator
    from trackline.state import StateStore

    with rec.unrecorded():  # its script runs after the cycle's: the state tables are in place
        StateStore(rec, cfg.state_schema).ensure()

    class PlanConsolidator(Consolidator):
        def source(self, c: Any, i: int) -> tuple[Source, str]:
            real, db = super().source(c, i)
            return _OneRowSource(real), db

    todo = [cfg.consolidation(n) for n in tables] if tables else list(cfg.consolidations)
    if not todo:
        raise ConfigError("`trackline sql consolidate`: the config declares no `consolidations:`")
    worker = PlanConsolidator(cfg, rec)
    worker.stage = rec.plan_stage
    staging = {rec.t(c.target_schema, c.staging) for c in todo}

    def pending(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        # the merge finds rows pending in the staging table
        if sql.startswith(("SELECT COUNT(*)", 'SELECT MAX("_tl_batch")')) and any(
            f"FROM {s} " in sql for s in staging
        ):
            return [(1,)]
        return []

    rec.answer = pending
    try:
        for c in todo:
            res = worker.run(c)
            if not res.ok:
                raise ConfigError(f"cannot plan consolidation {c.name}: {res.error}")
    finally:
        rec.answer = no_rows
        worker.close()


def plan_compare(cfg: Config, rec: Recorder, tables: Sequence[str] = ()) -> None:
    """`trackline compare` right after a first cycle (`tables`: `compare.tables` names; none:
    all): the warehouse holds more than `chunk` rows the legacy DW lacks, so the key span, the
    first pass (figures per part and day), the grouped figures of a differing part's split and
    the fetch of one of its parts all show. The legacy DW is asked for its columns only."""
    from trackline.compare import compare

    todo = [cfg.compare_table(n) for n in tables] if tables else list(cfg.compare.tables)
    if not todo:
        raise ConfigError("`trackline sql compare`: the config declares no `compare.tables`")
    _after_cycle(cfg, rec)
    legacy = cfg.sources[cfg.compare.legacy]

    def legacy_answer(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return [(None, None)] if sql.startswith("SELECT MIN(") else []

    try:
        for c in todo:
            asked: list[str] = []

            def answer(
                sql: str, params: tuple[Any, ...], rows: int = c.chunk + 1, asked: list[str] = asked
            ) -> Any:
                if sql.startswith("SELECT MIN("):
                    return [(1, 100_000)]
                if not sql.startswith('SELECT "_tl_b"'):
                    return []
                asked.append(sql)  # the first pass (and its first part) holds `chunk` + 1 rows
                n = rows if len(asked) == 1 else 1
                return [(0, "2024-01-01", n, 1)] if '"_tl_d"' in sql else [(0, n, 1)]

            rec.answer = answer
            real = open_source(legacy, c.legacy_db or getattr(legacy, "database", None))
            try:
                compare(cfg, rec, c.name, open_src=MetadataSource(real, legacy_answer))
            finally:
                real.close()
    finally:
        rec.answer = no_rows


NEW_COLUMN = "new_source_column"
"""The nullable column the ``drift`` plan adds to each source table."""


class _DriftedSource(MetadataSource):
    """A source whose tables gained a nullable column and whose first sized text column
    (a VARCHAR) doubled its declared length since the first cycle."""

    def columns(self, rel: Any) -> list[Any]:
        import dataclasses
        import re

        from trackline.extract.types import map_mysql_column

        cols = list(self.real.columns(rel))
        for i, c in enumerate(cols):
            m = re.fullmatch(r"(var)?char\((\d+)\)", c.column_type)
            if m and not c.json:
                wider = f"varchar({2 * int(m.group(2))})"
                cols[i] = dataclasses.replace(c, data_type="varchar", column_type=wider)
                break
        taken = {c.name.lower() for c in cols}
        if NEW_COLUMN not in taken:
            new = map_mysql_column(NEW_COLUMN, "varchar", "varchar(64)", True, self.q(NEW_COLUMN))
            cols.append(new)
        return cols


def plan_drift(cfg: Config, rec: Recorder, tables: Sequence[str] = ()) -> None:
    """A cycle after the source's schema drifted (`tables`: the tables that drifted; none:
    all): each gained the nullable column `NEW_COLUMN`, and its first VARCHAR doubled in
    length. The sync widens raw (Redshift: ALTER COLUMN … TYPE, outside any transaction) and
    adds the column; the marts then do the same to the mart and every history period, with
    the `_hist` view dropped and created again around them."""
    from trackline.extract import Relation
    from trackline.marts.cycle import run_cycle_on
    from trackline.marts.engine import MartPlan
    from trackline.marts.history import Period
    from trackline.state import utcnow
    from trackline.sync import resolve

    _after_cycle(cfg, rec)
    drifted = {t.name for t in _tables(cfg, tables)}
    recorded: dict[str, str] = {}  # table key → the watermark the first cycle left
    for t in cfg.tables:
        rt = resolve(cfg, t, None, None)
        with open_source(cfg.sources[rt.source_name], rt.source_db) as src:
            cols = src.columns(Relation(t.name, rt.source_db if not t.query else None, t.query))
            extra = {
                "schema": {c.name: str(c.arrow) for c in cols},
                "bytes": {c.name: c.max_bytes for c in cols if c.max_bytes is not None},
            }
            recorded[rt.key] = Watermark(ts=None, id=None, extra=extra).to_json()

    def state_answer(sql: str, params: tuple[Any, ...]) -> Any:
        if "watermarks" in sql and len(params) == 3 and params[0] in recorded:
            # StateStore.get: source_db, strategy, value, last_batch_id, rows_total, updated_at
            return [(params[1], None, recorded[params[0]], 1, 0, None)]  # after batch 1
        if sql.startswith("SELECT MAX(batch_id)") and params and params[0] in recorded:
            return [(1,)]  # the first cycle's batch: this one is batch 2
        return []

    syncer = plan_syncer(cfg, rec, sorted(drifted))
    plan = MartPlan(raw_columns=rec.columns, period=Period.of(utcnow()), drift=True)
    rec.answer = state_answer
    try:
        summary = run_cycle_on(cfg, rec, syncer=syncer, plan=plan)
    finally:
        rec.answer = no_rows
    _require_ok(summary.sync)


def plan_backfill(cfg: Config, rec: Recorder, tables: Sequence[str] = ()) -> None:
    """`trackline backfill run` (`tables`: pipeline tables; none: every `backfill.tables`
    entry) as a first run of one chunk, the current month, that reads one row: the state
    tables, the raw target, the handoff record, the chunk's load, its ledger entry, the
    count that checks it and its done row. Both sources are asked for metadata only."""

    from trackline.backfill.chunks import floor, following
    from trackline.backfill.run import run
    from trackline.report import NullReporter
    from trackline.state import StateStore, utcnow

    if not cfg.backfill.tables:
        raise ConfigError("`trackline sql backfill`: the config declares no `backfill.tables`")
    with rec.unrecorded():  # its script runs after the state's, before any sync or cycle
        StateStore(rec, cfg.state_schema).ensure()

    def source_answer(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return [(1,)] if "SELECT COUNT(*)" in sql else []

    def warehouse_answer(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return [(1,)] if sql.startswith("SELECT COUNT(*)") and "_tl_batch_id" in sql else []

    def opened(config: Any, db: str) -> Source:
        return _OneRowSource(open_source(config, db), source_answer)

    start = floor(utcnow(), "month")
    rec.answer = warehouse_answer
    try:
        res = run(
            cfg,
            list(tables) or None,
            start=start,
            end=following(start, "month"),
            unit="month",
            reporter=NullReporter(),
            warehouse=rec,
            open_src=opened,
            make_syncer=lambda c, w, r: plan_syncer(c, rec),
        )
    finally:
        rec.answer = no_rows
    for r in res:
        if r.status != "ok":
            raise ConfigError(f"cannot plan the backfill of {r.table}: {r.error}")


def plan_follow(cfg: Config, rec: Recorder, tables: Sequence[str] = ()) -> None:
    """The follow pass of each `cdc: strategy follow` table as in a cycle after the first:
    its driving table loaded one batch naming one key since the last pass."""
    from trackline.sync import TableResult, resolve
    from trackline.sync.follow import FollowPass

    chosen = [t for t in _tables(cfg, tables) if t.cdc.follow]
    if not chosen:
        raise ConfigError("no table (of those named) has cdc strategy follow")
    _after_cycle(cfg, rec)
    syncer = plan_syncer(cfg, rec)

    def answer(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if "mart_progress" in sql and "COUNT(*)" in sql:
            return [(1,)]  # the pass ran before
        if "row_count" in sql and "batch_id >" in sql:
            return [(1, 1, "", "[]", None, None, "")]  # one new batch of the driver
        if sql.startswith("SELECT DISTINCT"):
            return [(1,)]  # naming one key
        return []

    try:
        with rec.unrecorded():  # the table's own read (shown by `sync`)
            _require_ok(syncer.sync([t.name for t in chosen]))
        rec.answer = answer
        for t in chosen:
            rt = resolve(cfg, t, None, None)
            FollowPass(syncer, rt, TableResult(t.name, rt.key)).run()
    finally:
        rec.answer = no_rows
        syncer.close()


PLANS: dict[str, PlanFn] = {
    "state": plan_state,
    "sync": plan_sync,
    "cycle": plan_cycle,
    "check": plan_check,
    "reconcile": plan_reconcile,
    "replay": plan_replay,
    "reset": plan_reset,
    "maintenance": plan_maintenance,
    "migrate": plan_migrate,
    "drift": plan_drift,
    "consolidate": plan_consolidate,
    "compare": plan_compare,
    "backfill": plan_backfill,
    "follow": plan_follow,
}
"""Adding a job's plan: a function above that runs the job's library function on `rec`."""
