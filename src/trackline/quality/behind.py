"""`runs.behind_watermark`: source rows that arrived behind a table's watermark.

Incremental sync reads past the watermark only. A row written later with a cursor below it
(an application clock behind the database, a restored backup, a backdated correction, a
transaction that committed after the hold ceiling let the bound pass it) is never read; this
check is what finds it. For each table, it counts the source rows in a recent window just
below the watermark and what the target holds in the same window:

- time cursors: ``window_start <= cursor < watermark``, the window being
  `quality.behind_window_seconds` (for raw tables at most their raw retention, which trims
  the oldest rows);
- `id`: ``first id loaded in that many seconds < id <= watermark`` (from the batch ledger).

A complete target holds at least as many rows there as the source: one per key for a merge
target; for an append target every (key, cursor) version read, counted once, and a row that
has since moved on in the source (updated, deleted) leaves its old version behind. So fewer
rows in the target than in the source means that many rows at least are missing. The counts
use the cursor's index in the source; a row exactly at the watermark's time is not counted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from trackline.config import Config, TableConfig
from trackline.extract import Relation, Source, open_source
from trackline.extract.cdc import Watermark, shift
from trackline.load import Warehouse
from trackline.quality.checks import RUNS_TABLE, STATE_EXCEPTIONS, Check, Rows
from trackline.state import StateStore, utcnow
from trackline.sync import ResolvedTable, resolve

OpenSource = Callable[[Config, ResolvedTable], Source]

PENDING_LIMIT = 10_000
"""Most rows past the watermark the check looks up in the target (see `_pending_in_window`)."""

COLUMNS = ["table_key", "missing", "source_rows", "loaded_rows", "since", "watermark", "fix"]


def _open(cfg: Config, rt: ResolvedTable) -> Source:
    return open_source(cfg.sources[rt.source_name], rt.source_db)


def behind_watermark_check(cfg: Config, open_src: OpenSource = _open) -> Check:
    """`open_src`: how to reach a table's source (`trackline sql` asks a stand-in)."""
    window = cfg.quality.behind_window_seconds
    return Check(
        name="runs.behind_watermark",
        severity="blocking",
        sql=(
            "-- per table, in the SOURCE and in the target, over the same window below the "
            "watermark:\n"
            "SELECT COUNT(*) FROM <table> WHERE <cursor> >= <watermark - window> "
            "AND <cursor> < <watermark>\n"
            "-- (append targets: distinct (<key>, <cursor>) versions; id: first id loaded in "
            "the window < id <= watermark)"
        ),
        key="table_key",
        table=RUNS_TABLE,
        exceptions=(cfg.state_schema, STATE_EXCEPTIONS),
        description=f"source rows that arrived behind the watermark (in the {window:,} s "
        "below it): incremental sync never reads them. Fix: `trackline reset <table>` then a "
        "sync reloads the table; if rows keep arriving late (a clock behind the database, "
        "backdated writes), raise lag_seconds so they land above the watermark (merge "
        "targets: or set lookback_seconds); id tables: raise defaults.hold_ceiling_seconds",
        collect=lambda wh: behind_watermark(cfg, wh, open_src),
    )


def behind_watermark(cfg: Config, wh: Warehouse, open_src: OpenSource = _open) -> Rows:
    """One row per table whose source holds more rows in the window below its watermark than
    the target (see the module docstring)."""
    state = StateStore(wh, cfg.state_schema)
    out = []
    for t in cfg.tables:
        if t.cdc.strategy == "full":
            continue
        rt = resolve(cfg, t, None, None)
        wm = state.get(rt.key, rt.source_db).watermark
        if wm.phase == "snapshot" or not wh.table_exists(rt.target_schema, rt.target):
            continue
        window = _window(cfg, wh, state, t, rt.key, wm)
        if window is None:
            continue
        column, cond, params = window
        relation = Relation(t.name, rt.source_db if not t.query else None, t.query)
        with open_src(cfg, rt) as src:
            where = cond.format(c=src.q(column))
            sql = f"SELECT COUNT(*) FROM {src.relation_sql(relation)} WHERE {where}"
            in_source = int(src.scalar(src.bind(sql, params), params) or 0)
            key = t.primary_key or src.primary_key(relation) or [t.cdc.id or column]
            loaded = _target_count(wh, rt.target_schema, rt.target, t, key, column, cond, params)
            loaded -= _pending_in_window(
                wh,
                src,
                src.relation_sql(relation),
                rt.target_schema,
                rt.target,
                t,
                key,
                column,
                cond,
                params,
            )
        if in_source > loaded:
            out.append(
                (
                    rt.key,
                    in_source - loaded,
                    in_source,
                    loaded,
                    str(params[0]) if len(params) == 2 else None,
                    wm.describe(),
                    _fix(cfg, t),
                )
            )
    return Rows(COLUMNS, out)


def _window(
    cfg: Config, wh: Warehouse, state: StateStore, t: TableConfig, key: str, wm: Watermark
) -> tuple[str, str, tuple[Any, ...]] | None:
    """(column, condition with `{c}` for the quoted column, its parameters), or None."""
    seconds = cfg.quality.behind_window_seconds
    if t.cdc.strategy == "id":
        if wm.id is None or not t.cdc.id:
            return None
        since = utcnow() - dt.timedelta(seconds=seconds)
        first = wh.query(
            f"SELECT wm_from FROM {state.t('batches')} WHERE table_key = ? AND batch_id = "
            f"(SELECT MIN(batch_id) FROM {state.t('batches')} WHERE table_key = ? "
            "AND loaded_at >= ?)",
            (key, key, since),
        )
        if not first:
            return None  # nothing loaded in the window
        lo = Watermark.from_json(first[0][0]).id
        if lo is None:
            return t.cdc.id, "{c} IS NOT NULL AND {c} <= ?", (wm.id,)
        return t.cdc.id, "{c} > ? AND {c} <= ?", (lo, wm.id)
    if wm.ts is None or not t.cdc.cursor:
        return None
    if t.write_mode == "append":  # raw trim deletes rows older than the retention
        seconds = min(seconds, t.raw_retention_seconds or cfg.defaults.raw_retention_seconds)
    return t.cdc.cursor, "{c} >= ? AND {c} < ?", (shift(wm.ts, seconds), wm.ts)


def _target_count(
    wh: Warehouse,
    schema: str,
    table: str,
    t: TableConfig,
    key: list[str],
    column: str,
    cond: str,
    params: tuple[Any, ...],
) -> int:
    """Keys whose newest version in the target lies in the window."""
    ref = wh.t(schema, table)
    if t.write_mode == "merge" or not key:
        where = cond.format(c=wh.q(column))
        return int(wh.scalar(f"SELECT COUNT(*) FROM {ref} WHERE {where}", params) or 0)
    # append: every version read is a row; a key counts once, where its newest version is
    # (an older version left behind by an update is no row of the window any more)
    lower, upper = cond.split(" AND ", 1)
    sql = (
        f"SELECT COUNT(*) FROM (SELECT {wh.cols(key)}, MAX({wh.q(column)}) AS {wh.q('_tl_top')} "
        f"FROM {ref} WHERE {lower.format(c=wh.q(column))} GROUP BY {wh.cols(key)}) x "
        f"WHERE {upper.format(c=wh.q('_tl_top'))}"
    )
    return int(wh.scalar(sql, params) or 0)


def _pending_in_window(
    wh: Warehouse,
    src: Any,
    relation: str,
    schema: str,
    table: str,
    t: TableConfig,
    key: list[str],
    column: str,
    cond: str,
    params: tuple[Any, ...],
) -> int:
    """Rows the source has moved past the watermark (updated since the last read; not yet
    loaded) whose newest target version still lies in the window: the target counts them
    there, the source no longer. Up to PENDING_LIMIT of them; 0 for a composite key."""
    if len(key) != 1:
        return 0
    past = f"{src.q(column)} {'>' if t.cdc.strategy == 'id' else '>='} ?"
    sql = f"SELECT {src.q(key[0])} FROM {relation} WHERE {past} LIMIT {PENDING_LIMIT}"
    keys = [r[0] for r in src.rows(src.bind(sql, params[-1:]), params[-1:])]
    found = 0
    ref, k, c = wh.t(schema, table), wh.q(key[0]), wh.q(column)
    for i in range(0, len(keys), 500):
        chunk = tuple(keys[i : i + 500])
        marks = ", ".join("?" * len(chunk))
        if t.write_mode == "merge":
            sql = f"SELECT COUNT(*) FROM {ref} WHERE {k} IN ({marks}) AND {cond.format(c=c)}"
        else:
            lower, upper = cond.split(" AND ", 1)
            sql = (
                f"SELECT COUNT(*) FROM (SELECT {k}, MAX({c}) AS {wh.q('_tl_top')} FROM {ref} "
                f"WHERE {k} IN ({marks}) AND {lower.format(c=c)} GROUP BY {k}) x "
                f"WHERE {upper.format(c=wh.q('_tl_top'))}"
            )
            found += int(wh.scalar(sql, (*chunk, *params)) or 0)
            continue
        found += int(wh.scalar(sql, (*chunk, *params)) or 0)
    return found


def _fix(cfg: Config, t: TableConfig) -> str:
    """Short (the CLI shows 40 characters of a value); the description says it in full."""
    if t.cdc.strategy == "id":
        return f"reset {t.name} or hold_ceiling>{cfg.defaults.hold_ceiling_seconds}"
    lag = t.lag_seconds if t.lag_seconds is not None else cfg.defaults.lag_seconds
    return f"reset {t.name} or lag_seconds>{lag}"
