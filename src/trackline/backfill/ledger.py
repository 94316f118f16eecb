"""The backfill's own state, beside the batch ledger in the state schema.

- ``backfills``: one row per backfill of one table (its range, chunk unit, legacy side,
  and the handoff point captured on the incremental source when it started);
- ``backfill_chunks``: append-only, one row per chunk attempt that ended: ``done`` (written
  in the chunk's own transaction, with its rows and ledger batches: a chunk is done exactly
  when its rows are in) or ``failed`` (written after the rollback, with the reason).

The tables are created on first use (like ``compare_results``); nothing else reads them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from trackline.extract.cdc import Watermark
from trackline.load import Warehouse
from trackline.state import utcnow

BACKFILLS = "backfills"
CHUNKS = "backfill_chunks"


@dataclass(frozen=True)
class Record:
    backfill_id: str
    table_key: str
    table_name: str
    legacy: str
    time_column: str
    unit: str
    start: dt.datetime
    end: dt.datetime
    chunks: int
    handoff_source_db: str
    handoff: Watermark
    """Where the incremental sync goes on from (ts = None: its own first load)."""
    captured: dict[str, Any]
    """What the handoff point was taken from (upper bound, legacy newest row, …)."""
    created_at: dt.datetime | None
    handed_off_at: dt.datetime | None

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        return self.start < end and start < self.end


@dataclass(frozen=True)
class ChunkRow:
    chunk_no: int
    status: str
    attempt: int
    run_id: str
    source_rows: int | None
    loaded_rows: int | None
    first_batch: int | None
    last_batch: int | None
    seconds: float | None
    error: str | None
    at: dt.datetime | None


def backfill_id(
    table_key: str, legacy: str, start: dt.datetime, end: dt.datetime, unit: str
) -> str:
    text = f"{table_key}|{legacy}|{start.isoformat()}|{end.isoformat()}|{unit}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class BackfillLedger:
    def __init__(self, wh: Warehouse, schema: str) -> None:
        self.wh = wh
        self.schema = schema

    def t(self, name: str) -> str:
        return self.wh.t(self.schema, name)

    def ensure(self) -> None:
        w = self.wh
        if f"backfill:{self.schema}" in w.ready:
            return
        T, TS = w.TEXT_TYPE, w.TIMESTAMP_TYPE

        def create() -> None:
            w.ensure_schema(self.schema)
            w.execute(
                f"CREATE TABLE IF NOT EXISTS {self.t(BACKFILLS)} (backfill_id {T} NOT NULL, "
                f"table_key {T} NOT NULL, table_name {T}, legacy {T}, time_column {T}, "
                f"unit {T}, range_start {TS}, range_end {TS}, chunks BIGINT, "
                f"handoff_source_db {T}, handoff {T}, captured {T}, created_at {TS}, "
                f"handed_off_at {TS}, PRIMARY KEY (backfill_id))"
            )
            w.execute(
                f"CREATE TABLE IF NOT EXISTS {self.t(CHUNKS)} (backfill_id {T} NOT NULL, "
                f"chunk_no BIGINT NOT NULL, status {T} NOT NULL, attempt BIGINT, run_id {T}, "
                f"source_rows BIGINT, loaded_rows BIGINT, first_batch BIGINT, "
                f"last_batch BIGINT, seconds DOUBLE PRECISION, error {T}, recorded_at {TS})"
            )

        w.run_transaction(create)
        w.ready.add(f"backfill:{self.schema}")

    # ------------------------------------------------------------------ backfills

    def records(self, table_key: str | None = None) -> list[Record]:
        where, params = ("WHERE table_key = ?", (table_key,)) if table_key else ("", ())
        rows = self.wh.query(
            "SELECT backfill_id, table_key, table_name, legacy, time_column, unit, range_start, "
            "range_end, chunks, handoff_source_db, handoff, captured, created_at, handed_off_at "
            f"FROM {self.t(BACKFILLS)} {where} ORDER BY table_key, range_start",
            params,
        )
        return [
            Record(
                str(r[0]),
                str(r[1]),
                str(r[2]),
                str(r[3]),
                str(r[4]),
                str(r[5]),
                r[6],
                r[7],
                int(r[8] or 0),
                str(r[9] or ""),
                Watermark.from_json(r[10]),
                json.loads(r[11]) if r[11] else {},
                r[12],
                r[13],
            )
            for r in rows
        ]

    def create(self, rec: Record) -> None:
        """Insert `rec` (inside the caller's transaction)."""
        self.wh.execute(
            f"INSERT INTO {self.t(BACKFILLS)} (backfill_id, table_key, table_name, legacy, "
            "time_column, unit, range_start, range_end, chunks, handoff_source_db, handoff, "
            "captured, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rec.backfill_id,
                rec.table_key,
                rec.table_name,
                rec.legacy,
                rec.time_column,
                rec.unit,
                rec.start,
                rec.end,
                rec.chunks,
                rec.handoff_source_db,
                rec.handoff.to_json(),
                json.dumps(rec.captured, default=str, sort_keys=True),
                utcnow(),
            ),
        )

    def mark_handed_off(self, backfill_id: str) -> None:
        self.wh.execute(
            f"UPDATE {self.t(BACKFILLS)} SET handed_off_at = ? WHERE backfill_id = ?",
            (utcnow(), backfill_id),
        )

    # ------------------------------------------------------------------ chunks

    def chunk_rows(self, backfill_id: str) -> list[ChunkRow]:
        rows = self.wh.query(
            "SELECT chunk_no, status, attempt, run_id, source_rows, loaded_rows, first_batch, "
            f"last_batch, seconds, error, recorded_at FROM {self.t(CHUNKS)} WHERE backfill_id = ? "
            "ORDER BY chunk_no, recorded_at",
            (backfill_id,),
        )
        return [
            ChunkRow(
                int(r[0]),
                str(r[1]),
                int(r[2] or 0),
                str(r[3] or ""),
                None if r[4] is None else int(r[4]),
                None if r[5] is None else int(r[5]),
                None if r[6] is None else int(r[6]),
                None if r[7] is None else int(r[7]),
                None if r[8] is None else float(r[8]),
                r[9],
                r[10],
            )
            for r in rows
        ]

    def done(self, backfill_id: str) -> dict[int, ChunkRow]:
        return {r.chunk_no: r for r in self.chunk_rows(backfill_id) if r.status == "done"}

    def record_chunk(self, backfill_id: str, row: ChunkRow) -> None:
        self.wh.execute(
            f"INSERT INTO {self.t(CHUNKS)} (backfill_id, chunk_no, status, attempt, run_id, "
            "source_rows, loaded_rows, first_batch, last_batch, seconds, error, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                backfill_id,
                row.chunk_no,
                row.status,
                row.attempt,
                row.run_id,
                row.source_rows,
                row.loaded_rows,
                row.first_batch,
                row.last_batch,
                row.seconds,
                row.error,
                utcnow(),
            ),
        )
