"""Operating a table's sync state: status, reset, replay from the stage."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from trackline.config import Config
from trackline.errors import StageError, StateError
from trackline.extract import Relation, open_source
from trackline.load import StagedFiles, Warehouse, open_warehouse
from trackline.stage import Stage
from trackline.state import LEGACY_SOURCE, StateStore
from trackline.sync import BATCH_COL, merge_into, resolve


def _lag(source_now: Any, ts: Any) -> str:
    if ts is None or source_now is None:
        return "-"
    if isinstance(ts, dt.datetime):
        secs = (source_now - ts).total_seconds()
    else:
        secs = float(source_now - ts)
    return f"{secs:,.0f}s"


def _with_time(text: str, ts: Any) -> str:
    """A unix-time watermark gets its UTC date and time beside it (`1764982800 = 2025-12-06
    00:20:00 UTC`); a DATETIME watermark reads as a time already."""
    if isinstance(ts, int | float) and not isinstance(ts, bool) and 0 < ts < 32503680000:
        when = dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{text} ({when})"
    return text


def table_status(
    cfg: Config, source_db: str | None = None, target_schema: str | None = None
) -> list[dict[str, Any]]:
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        state = StateStore(wh, cfg.state_schema)
        state.ensure()
        out = []
        for t in cfg.tables:
            rt = resolve(cfg, t, source_db, target_schema)
            st = state.get(rt.key, rt.source_db)
            runs = state.last_runs(rt.key, limit=1)
            last = runs[0] if runs else {}
            lag = "-"
            try:
                src = open_source(cfg.sources[rt.source_name], rt.source_db)
                try:
                    ts = st.watermark.ts
                    if ts is not None:
                        lag = _lag(src.now(not isinstance(ts, dt.datetime)), ts)
                finally:
                    src.close()
            except Exception as exc:  # status must show what it can even if a source is down
                lag = f"source unreachable ({type(exc).__name__})"
            out.append(
                {
                    "table": rt.key,
                    "strategy": t.cdc.strategy,
                    "watermark": _with_time(st.watermark.describe(), st.watermark.ts),
                    "last_run": str(last.get("finished_at") or "-")[:19],
                    "status": last.get("status") or "never run",
                    "rows_last": int(last.get("rows") or 0),
                    "rows_total": st.rows_total,
                    "lag": lag,
                    "error": last.get("error"),
                }
            )
        return out
    finally:
        wh.close()


def reset_table(
    cfg: Config, name: str, source_db: str | None = None, target_schema: str | None = None
) -> tuple[str, list[str]]:
    """Empty a table's target and forget its watermarks, those of every source database
    that loaded it too (their rows are gone with the target's). Returns the target and the
    other source databases, which must be synced again on their own."""
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        return reset_table_on(cfg, wh, name, source_db, target_schema)
    finally:
        wh.close()


def reset_table_on(
    cfg: Config,
    wh: Warehouse,
    name: str,
    source_db: str | None = None,
    target_schema: str | None = None,
) -> tuple[str, list[str]]:
    """`reset_table` on an open warehouse (also what `trackline sql … reset` records)."""
    rt = resolve(cfg, cfg.table(name), source_db, target_schema)
    state = StateStore(wh, cfg.state_schema)
    state.ensure()

    def reset() -> list[str]:
        dropped = state.reset(rt.key)
        if wh.table_exists(rt.target_schema, rt.target):
            wh.delete_all(rt.target_schema, rt.target)
        return dropped

    with wh.lock(f"sync:{rt.key}"):
        dropped = wh.run_transaction(reset)  # rerun whole after a conflict
    return rt.key, [db for db in dropped if db not in (rt.source_db, LEGACY_SOURCE)]


def replay_table(
    cfg: Config,
    name: str,
    from_batch: int = 1,
    source_db: str | None = None,
    target_schema: str | None = None,
) -> tuple[int, int]:
    """Reload ledger batches ≥ `from_batch` from the stage, in order, one transaction each.

    Append targets: the batch's rows are deleted by `_tl_batch_id` and inserted again.
    Merge targets: rows are deleted by key and inserted, in ledger order, so the newest
    version of each key ends on top. Either way a replay is idempotent.
    """
    stage = Stage(cfg.stage)
    wh = open_warehouse(cfg.warehouse, stage=stage)
    wh.connect()
    try:
        return replay_table_on(cfg, wh, stage, name, from_batch, source_db, target_schema)
    finally:
        wh.close()


def replay_table_on(
    cfg: Config,
    wh: Warehouse,
    stage: Stage,
    name: str,
    from_batch: int = 1,
    source_db: str | None = None,
    target_schema: str | None = None,
) -> tuple[int, int]:
    """`replay_table` on an open warehouse and stage (also what `trackline sql … replay`
    records)."""
    t = cfg.table(name)
    rt = resolve(cfg, t, source_db, target_schema)
    n = rows = 0
    state = StateStore(wh, cfg.state_schema)
    state.ensure()
    pk = t.primary_key
    if t.write_mode == "merge" and not pk:
        src = open_source(cfg.sources[rt.source_name], rt.source_db)
        try:
            pk = src.primary_key(Relation(t.name, rt.source_db))
        finally:
            src.close()
    with wh.lock(f"sync:{rt.key}"):
        ledger = state.batches(rt.key, after=from_batch - 1)
        for i, b in enumerate(ledger):
            missing = [u for u in b["files"] if not stage.exists(u)]
            if missing:
                first, last = ledger[0]["batch_id"], ledger[i - 1]["batch_id"] if i else 0
                done = (
                    "nothing was replayed"
                    if not i
                    else f"batch {first} before it was replayed ({rows:,} rows)"
                    if first == last
                    else f"batches {first}-{last} before it were replayed ({rows:,} rows)"
                )
                later = (
                    f"replay the rest with `trackline replay {name} --from-batch "
                    f"{ledger[i + 1]['batch_id']}`"
                    if i + 1 < len(ledger)
                    else "it is the last batch in the ledger"
                )
                raise StageError(
                    f"batch {b['batch_id']} of {rt.key}: staged file {missing[0]} is gone "
                    f"(pruned after stage.retention_days?), so this batch cannot be replayed; "
                    f"{done}; {later}"
                )
            data: pa.Table = stage.read(list(b["files"]))
            if data.num_rows != b["row_count"]:
                raise StateError(
                    f"batch {b['batch_id']} of {rt.key}: the staged file has "
                    f"{data.num_rows} rows, the ledger says {b['row_count']}"
                )
            staged = StagedFiles(tuple(b["files"]), b["manifest"], b["checksum"])

            def load(
                data: pa.Table = data, staged: StagedFiles = staged, batch: int = b["batch_id"]
            ) -> None:
                if t.write_mode == "merge" and pk:
                    merge_into(wh, rt.target_schema, rt.target, data, staged, list(pk))
                else:
                    target = wh.t(rt.target_schema, rt.target)
                    wh.execute(f"DELETE FROM {target} WHERE {wh.q(BATCH_COL)} = ?", (batch,))
                    wh.append_arrow(rt.target_schema, rt.target, data, staged)

            wh.run_transaction(load)  # DELETE + load of one batch, rerun whole after a conflict
            n += 1
            rows += data.num_rows
    return n, rows
