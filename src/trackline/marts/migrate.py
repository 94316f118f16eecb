"""`trackline migrate TABLE`: apply a source type widening the warehouse cannot ALTER in place.

A lossless widening at the source (INT → BIGINT, a longer VARCHAR, a DECIMAL with more digits)
is applied by the next sync and cycle with ALTER … TYPE where the engine allows it (DuckDB and
PostgreSQL: every such change; Redshift: only a VARCHAR's length, outside a transaction,
https://docs.aws.amazon.com/redshift/latest/dg/r_ALTER_TABLE.html). Otherwise the sync stops
that table and names this command, which rebuilds the affected tables instead: the raw table,
every mart built from it and every history period of those marts are each copied into a new
table with the new types (their distribution and sort keys kept), swapped in under the old
name, and the `<mart>_hist` views created again, all in ONE warehouse transaction together
with the state that records the new schema. Nothing changes when any step fails. For a
`write_mode: scd2` table the raw table is its staging table, and the dimension, every
version, is rebuilt with it (`trackline.dims.scd2.rebuild_dimension`).

It holds the table's sync lock and the pipeline's cycle lock, so no sync or cycle writes these
tables meanwhile. A rebuild copies every row: its cost grows with the tables, which is why
it is a command a person runs, not a step of every cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from trackline.config import Config, FollowerConfig, RetentionGroupConfig
from trackline.dims import scd2
from trackline.dims.rowhash import ROW_HASH_COL
from trackline.errors import SchemaDriftError
from trackline.extract import Relation, open_source
from trackline.faults import checkpoint
from trackline.load import Column, Warehouse
from trackline.marts.history import HistoryTables
from trackline.marts.steps import MartPlan, MartSteps, RawRef
from trackline.report import NullReporter, Reporter
from trackline.state import StateStore, pipeline_lock
from trackline.sync import BATCH_COL, TableResult, resolve
from trackline.sync.target import drift, ensure_target, json_columns, raw_column, stored_as


@dataclass
class MigrateResult:
    table: str
    table_key: str
    columns: list[str] = field(default_factory=list)
    """The widened columns, as ``name: new type``."""
    rebuilt: list[str] = field(default_factory=list)
    """The tables rebuilt (``schema.table``)."""


def migrate(
    cfg: Config,
    wh: Warehouse,
    name: str,
    *,
    source_db: str | None = None,
    target_schema: str | None = None,
    reporter: Reporter | None = None,
    plan: MartPlan | None = None,
) -> MigrateResult:
    """`plan` (``trackline sql --engine redshift migrate``): against a recorder, after a
    planned cycle; every column of the table counts as widened, so every statement shows."""
    reporter = reporter or NullReporter()
    t = cfg.table(name)
    rt = resolve(cfg, t, source_db, target_schema)
    state = StateStore(wh, cfg.state_schema)
    state.ensure()
    src = open_source(cfg.sources[rt.source_name], rt.source_db)
    try:
        rel = Relation(t.name, rt.source_db if not t.query else None, t.query)
        cols = json_columns(t, src.columns(rel))
        source_pk = src.primary_key(rel) if t.write_mode == "scd2" else []
    finally:
        src.close()
    result = MigrateResult(t.name, rt.key)
    wm = state.get(rt.key, rt.source_db).watermark
    d = drift(wm, cols)
    if d.refused:
        raise SchemaDriftError(
            f"table {t.name!r} → {rt.key}: {'; '.join(d.refused)}. `trackline migrate` applies "
            "only changes that lose nothing. Nothing was changed. Alter the target to match "
            f"(or drop it) and run `trackline reset {t.name}` to reload it."
        )
    widened = {c.name for c in (cols if plan is not None else d.widened)}
    if not widened or not wh.table_exists(rt.target_schema, rt.target):
        return result
    # (the cycle's order: its lock first, then the table's sync lock)
    with wh.lock(pipeline_lock(cfg.state_schema, "cycle")), wh.lock(f"sync:{rt.key}"):

        def rebuild() -> None:  # one transaction, rerun whole after a conflict
            result.rebuilt.clear()
            stored_json = stored_as(wh, cols, wh.json_column_names(rt.target_schema, rt.target))
            # keyed by the name the warehouse stores (`Warehouse.name`), as the catalog lists it
            by_name = {wh.name(c.name): raw_column(c, stored_json, d.sizes) for c in cols}
            by_name[BATCH_COL] = Column(BATCH_COL, pa.int64())
            by_name[wh.name(ROW_HASH_COL)] = Column(ROW_HASH_COL, pa.string(), max_bytes=32)
            raw_cols = [by_name[n] for n in wh.column_names(rt.target_schema, rt.target)]
            wh.rebuild_table(
                rt.target_schema,
                rt.target,
                raw_cols,
                dist_key=t.dist_key,
                sort_key=t.sort_key,
            )
            result.rebuilt.append(rt.key)
            result.columns = [
                f"{n}: {wh.column_type(by_name[wh.name(n)])}" for n in sorted(widened)
            ]
            ensure_target(wh, state, reporter, rt, cols, [], wm, TableResult(t.name, rt.key))
            if t.write_mode == "scd2":  # the raw table was its staging table
                staged = [by_name[wh.name(c.name)] for c in cols]
                dim = scd2.dimension(t, rt.target_schema, staged, source_pk)
                if scd2.rebuild_dimension(wh, dim, staged):
                    result.rebuilt.append(dim.key)
            for g in cfg.marts:
                result.rebuilt += _rebuild_marts(cfg, g, wh, t.name, widened, plan)
            checkpoint("migrate.before_commit")

        wh.run_transaction(rebuild)
    for n in result.columns:
        reporter.event("drift", f"{t.name}: column {n} (rebuilt {', '.join(result.rebuilt)})")
    return result


def _rebuild_marts(
    cfg: Config,
    g: RetentionGroupConfig,
    wh: Warehouse,
    source: str,
    widened: set[str],
    plan: MartPlan | None,
) -> list[str]:
    """Rebuild each mart of `g` built from `source`, and its history periods."""
    steps = MartSteps(cfg, g, wh, plan=plan)
    raw = steps.raw(source)
    if raw is None:
        return []
    out = []
    marts: list[tuple[str, list[str], HistoryTables]] = []
    if g.anchor.source == source:
        sort = g.anchor.sort_key or [g.anchor.time, g.key]
        marts.append((g.anchor.table, sort, steps.anchor_history(raw)))
    for f in g.followers:
        if f.source == source:
            marts.append((f.table, _follower_sort(g, f), steps.follower_history(f, raw)))
    dep = steps._dep_table()
    if g.anchor.source == source and g.key in widened and wh.table_exists(cfg.state_schema, dep):
        # the departures list copies the anchor's key column
        cols = steps.departure_columns(raw)
        wh.rebuild_table(cfg.state_schema, dep, cols, dist_key=g.key)
        out.append(f"{cfg.state_schema}.{dep}")
    for mart, sort, hist in marts:
        tables = [(mart, sort)] + [(hist.table(p), hist.sort_key) for p in hist.existing()]
        todo = [
            (table, sort_key)
            for table, sort_key in tables
            if {wh.name(n) for n in widened} & set(wh.column_names(g.schema_, table))
        ]
        if not todo:
            continue
        wh.drop_view(g.schema_, hist.view_name())
        for table, sort_key in todo:
            wh.rebuild_table(
                g.schema_,
                table,
                _columns(wh, g.schema_, table, raw),
                dist_key=g.key,
                sort_key=sort_key,
            )
            out.append(f"{g.schema_}.{table}")
        # columns the source added meanwhile: in every table before the view lists them
        have = {wh.name(t): dict.fromkeys(wh.column_names(g.schema_, t), "") for t, _ in tables}
        steps.add_missing_columns(mart, hist, raw, have)
        hist.rebuild_view(new_columns=True)
    return out


def _follower_sort(g: RetentionGroupConfig, f: FollowerConfig) -> list[str]:
    if f.kind == "events":
        return f.sort_key or [f.time or "", g.key]
    return f.sort_key or [g.key]


def _columns(wh: Warehouse, schema: str, table: str, raw: RawRef) -> list[Column]:
    """The table's columns, in its order, with the raw table's (new) types."""
    by_name = {wh.name(c.name): c for c in raw.columns}
    names = wh.column_names(schema, table)  # (as stored: `Warehouse.name`)
    missing = [n for n in names if n not in by_name]
    if missing:
        raise SchemaDriftError(
            f"{schema}.{table}: column {missing[0]!r} is not in the raw table {raw.key}; "
            "nothing was changed"
        )
    return [by_name[n] for n in names]
