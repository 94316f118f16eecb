"""`trackline backfill handoff` and `trackline backfill status`.

The handoff sets a table's incremental watermark (for the incremental source database) to
the point its backfill captured when it started, inclusive (``id`` unset: the boundary time
is read again), in one transaction with the backfill's ``handed_off_at``, under the table's
sync lock. Rows read by both sides are kept once by the marts (anchor by key and newest time,
followers by key, events by event key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trackline.backfill.ledger import BackfillLedger, Record
from trackline.backfill.run import lock_timeout
from trackline.backfill.setup import sync_past
from trackline.config import Config
from trackline.errors import BackfillRefused, ConfigError
from trackline.extract.cdc import Watermark
from trackline.faults import checkpoint
from trackline.load import Warehouse
from trackline.state import StateStore
from trackline.sync import resolve
from trackline.sync.follow import progress_name


@dataclass
class HandoffOutcome:
    table: str
    key: str
    point: Any
    before: str
    """The incremental watermark before the handoff."""
    status: str
    """`set`, `already` (handed off earlier), `kept` (no legacy row: nothing to set)."""


def latest(records: list[Record]) -> Record | None:
    """The backfill whose range ends last: its coverage end is where the sync goes on."""
    return max(records, key=lambda r: r.end) if records else None


def handoff(
    cfg: Config,
    wh: Warehouse,
    names: list[str] | None = None,
    *,
    force: bool = False,
    done: list[HandoffOutcome] | None = None,
) -> list[HandoffOutcome]:
    """Hand each table over to its incremental sync (BackfillRefused: nothing written for
    that table or any after it; the tables before it were handed off, and are in `done`
    when the caller passes a list, to say so)."""
    names = names or [b.table for b in cfg.backfill.tables]
    if not names:
        raise ConfigError("nothing to hand off: list tables under `backfill.tables:`")
    state = StateStore(wh, cfg.state_schema)
    state.ensure()
    led = BackfillLedger(wh, cfg.state_schema)
    led.ensure()
    out = done if done is not None else []
    for i, name in enumerate(names):
        try:
            out.append(_one(cfg, wh, state, led, name, force))
        except BackfillRefused as exc:
            rest = names[i + 1 :]
            if not rest:
                raise
            raise BackfillRefused(
                f"{exc}; not tried after it: {', '.join(rest)} (run the handoff again once "
                f"{name} is ready, or name the others with -t)"
            ) from None
    return out


def _one(
    cfg: Config, wh: Warehouse, state: StateStore, led: BackfillLedger, name: str, force: bool
) -> HandoffOutcome:
    cfg.backfill_table(name)
    t = cfg.table(name)
    rt = resolve(cfg, t, None, None)
    rec = latest(led.records(rt.key))
    if rec is None:
        raise BackfillRefused(
            f"{name}: no backfill recorded for {rt.key}; run `trackline backfill run` first"
        )
    done = led.done(rec.backfill_id)
    if len(done) < rec.chunks and not force:
        raise BackfillRefused(
            f"{name}: backfill {rec.backfill_id} has {rec.chunks - len(done)} of {rec.chunks} "
            "chunks not loaded; the watermark was not moved. Finish it with `trackline "
            "backfill run` (or hand off anyway with --force)"
        )
    point = rec.handoff.ts
    if rec.captured.get("gap") and not force:
        raise BackfillRefused(
            f"{name}: when backfill {rec.backfill_id} started, the incremental source's oldest "
            f"row ({rec.captured.get('incremental_oldest')}) was newer than the handoff point "
            f"({point}, the newest legacy row of the range): the rows between them are in "
            "neither source, and a handoff would leave them out for good; the watermark was "
            "not moved. Backfill a range that reaches the incremental source's oldest row (a "
            "later --end, once the legacy DW holds those rows), or hand off anyway with --force"
        )
    with wh.lock(f"sync:{rt.key}", lock_timeout(cfg)):

        def work() -> HandoffOutcome:
            st = state.get(rt.key, rec.handoff_source_db)
            wm = st.watermark
            before = wm.describe()
            if rec.handed_off_at is not None:
                return HandoffOutcome(name, rt.key, point, before, "already")
            if point is None:
                led.mark_handed_off(rec.backfill_id)
                return HandoffOutcome(name, rt.key, point, before, "kept")
            if sync_past(wm, point) and not force:
                raise BackfillRefused(
                    f"{name}: the incremental sync from {rec.handoff_source_db} already read "
                    f"up to {before}, past the handoff point {point}; the watermark was not "
                    "moved. If that sync began from an empty watermark it holds everything "
                    "since the source's oldest row and needs no handoff; --force moves it "
                    "back to the point (the rows between are read again and kept once)"
                )
            new = Watermark(ts=point, id=None, extra=wm.extra)
            state.put(rt.key, rec.handoff_source_db, str(t.cdc.strategy), new, st.last_batch_id, 0)
            if t.cdc.follow:
                _follow_from_production(cfg, state, rt.key, t.cdc.follow)
            checkpoint("backfill.handoff_before_commit")
            led.mark_handed_off(rec.backfill_id)
            return HandoffOutcome(name, rt.key, point, before, "set")

        out = wh.run_transaction(work)
    checkpoint("backfill.after_handoff")
    return out


def _follow_from_production(cfg: Config, state: StateStore, key: str, driver: str) -> None:
    """A following table's rows came from the legacy DW as it was when it was read; what
    changed since then is seen only by re-reading the keys the driver loads from production.
    Without a follow position, the table's first follow pass would start at the driver's
    current last batch and skip the production batches the driver already loaded (its own
    handoff may have come first): set the position before the driver's first batch from
    its incremental source (or at its last batch when it has none), unless one exists."""
    d = resolve(cfg, cfg.table(driver), None, None)
    mark = progress_name(key)
    if state.has_mart_progress(mark, d.key):
        return
    first = state.wh.scalar(
        f"SELECT MIN(batch_id) FROM {state.t('batches')} WHERE table_key = ? AND source_db = ?",
        (d.key, d.source_db),
    )
    at = int(first) - 1 if first is not None else state.last_batch_id(d.key)
    state.set_mart_progress(mark, d.key, at)


def status(cfg: Config, wh: Warehouse, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Per backfill: its range, chunks done / failed / left, rows per chunk (legacy count
    vs loaded), the handoff point and whether it was handed off, the incremental watermark."""
    state = StateStore(wh, cfg.state_schema)
    state.ensure()
    led = BackfillLedger(wh, cfg.state_schema)
    led.ensure()
    keys = None
    if names:
        keys = {resolve(cfg, cfg.table(n), None, None).key for n in names}
    out = []
    for rec in led.records():
        if keys is not None and rec.table_key not in keys:
            continue
        rows = led.chunk_rows(rec.backfill_id)
        done = {r.chunk_no: r for r in rows if r.status == "done"}
        failed = [r for r in rows if r.status == "failed"]
        wm = state.get(rec.table_key, rec.handoff_source_db).watermark
        out.append(
            {
                "table": rec.table_name,
                "key": rec.table_key,
                "backfill_id": rec.backfill_id,
                "legacy": rec.legacy,
                "time_column": rec.time_column,
                "range": [rec.start, rec.end],
                "unit": rec.unit,
                "chunks": rec.chunks,
                "done": len(done),
                "failed_attempts": len(failed),
                "failed_not_done": sorted({r.chunk_no for r in failed} - set(done)),
                "rows_legacy": sum(r.source_rows or 0 for r in done.values()),
                "rows_loaded": sum(r.loaded_rows or 0 for r in done.values()),
                "handoff_point": rec.handoff.ts,
                "captured": rec.captured,
                "handed_off_at": rec.handed_off_at,
                "incremental_source_db": rec.handoff_source_db,
                "incremental_watermark": wm.describe(),
                "chunk_rows": [
                    {
                        "chunk": r.chunk_no,
                        "status": r.status,
                        "attempt": r.attempt,
                        "legacy_rows": r.source_rows,
                        "loaded_rows": r.loaded_rows,
                        "batches": [r.first_batch, r.last_batch],
                        "seconds": r.seconds,
                        "error": r.error,
                        "at": r.at,
                    }
                    for r in rows
                ],
            }
        )
    return out
