"""One batch on its way in: zero dates, the watermark it advances to, merge by key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from trackline.config import TableConfig
from trackline.errors import CdcError
from trackline.extract.cdc import Watermark
from trackline.extract.types import SourceColumn
from trackline.load import StagedFiles, Warehouse
from trackline.report import Reporter
from trackline.sync.tables import ResolvedTable, TableResult

Batches = Iterator[pa.RecordBatch | pa.Table]


@dataclass(frozen=True)
class ReadWindows:
    """One run's read as consecutive source queries of at most `rows` rows each (see
    `defaults.read_window_batches`): `first` opens the first; `after(wm, last)` opens the
    query that continues after the last row a full window read, from the watermark reached
    (`wm`) and that window's last batch (`last`, as read). A window that returns fewer rows
    than `rows` was the last. The next window is opened as soon as a window's last batch
    arrives, so the source sends it while that batch is staged and loaded: memory holds at
    most about two windows, whatever the table's size."""

    rows: int
    first: Callable[[], Batches]
    after: Callable[[Watermark, pa.Table], Batches]


def zero_dates(
    reporter: Reporter,
    rt: ResolvedTable,
    data: pa.Table,
    zero_cols: list[SourceColumn],
    pk: list[str],
    policy: str,
    res: TableResult,
) -> pa.Table:
    for c in zero_cols:
        flag = data.column("_tl_zero_" + c.name)
        n = pc.sum(flag).as_py() or 0
        if n:
            idx = pc.index(flag, 1).as_py()
            where = ", ".join(f"{k}={data.column(k)[idx].as_py()!r}" for k in pk) or f"row {idx}"
            if policy == "error":
                raise CdcError(
                    f"table {rt.cfg.name!r}, column {c.name!r}: {n} zero date(s) "
                    f"(0000-00-00), first at {where}; set defaults.zero_date: null to load "
                    "them as NULL"
                )
            msg = f"{rt.cfg.name}.{c.name}: {n} zero date(s) loaded as NULL (first at {where})"
            res.warnings.append(msg)
            reporter.event("warning", msg, table=rt.cfg.name, column=c.name)
        data = data.drop_columns(["_tl_zero_" + c.name])
    return data


def next_watermark(
    t: TableConfig,
    data: pa.Table,
    cur: Watermark,
    phase: str,
    upper: Any,
    snapshot_col: str | None,
) -> Watermark:
    if data.num_rows == 0:
        return cur
    last = data.num_rows - 1
    if t.cdc.strategy == "full":
        return cur
    if phase == "snapshot":
        # Read in key order: (ts, id) carries the greatest cursor read so far, where the
        # cursor continues once the snapshot is done (never the upper bound itself).
        assert snapshot_col is not None
        key = data.column(snapshot_col)[last].as_py()
        ts, idv = _greatest(data, t.cdc.cursor, t.cdc.id, cur.ts, cur.id)
        return Watermark(
            ts=ts,
            id=idv,
            phase="snapshot",
            snapshot_upper=upper,
            snapshot_key=key,
            extra=cur.extra,
        )
    if t.cdc.strategy == "id":
        return cur.advanced(id=data.column(t.cdc.id)[last].as_py())
    ts = data.column(t.cdc.cursor)[last].as_py()
    if ts is None:
        # A batch of NULL-cursor rows only (null_cursor: load; they sort first): the id of
        # the last one is the progress, so a rerun after this batch does not load them again.
        if t.cdc.strategy == "hybrid" and cur.ts is None:
            return cur.advanced(id=data.column(t.cdc.id)[last].as_py())
        return cur
    if t.cdc.strategy == "timestamp":
        return cur.advanced(ts=ts, id=None)
    return cur.advanced(ts=ts, id=data.column(t.cdc.id)[last].as_py())


def _greatest(
    data: pa.Table, ts_col: str | None, id_col: str | None, ts: Any, idv: Any
) -> tuple[Any, Any]:
    """The greatest (ts, id) among the batch's rows and (ts, id) (NULL cursors ignored)."""
    if not ts_col or not id_col:
        return ts, idv
    table = data.select([ts_col, id_col]).filter(pc.is_valid(data.column(ts_col)))
    if table.num_rows == 0:
        return ts, idv
    top = pc.max(table.column(ts_col)).as_py()
    at_top = table.filter(pc.equal(table.column(ts_col), top))
    top_id = pc.max(at_top.column(id_col)).as_py()
    if ts is None or (top, top_id) > (ts, idv):
        return top, top_id
    return ts, idv


def merge_into(
    w: Warehouse,
    schema: str,
    table: str,
    data: pa.Table,
    staged: StagedFiles | None,
    pk: list[str],
) -> None:
    """Delete+insert by key (the batch deduplicated first: the last row per key wins)."""
    data = dedup_last(data, pk)
    target = w.t(schema, table)
    names = data.schema.names
    with w.batch_relation(data, staged) as rel:  # loaded once, used by both statements
        match = " AND ".join(f"{rel}.{w.q(k)} = {target}.{w.q(k)}" for k in pk)
        w.execute(f"DELETE FROM {target} WHERE EXISTS (SELECT 1 FROM {rel} WHERE {match})")
        w.execute(f"INSERT INTO {target} ({w.cols(names)}) SELECT {w.cols(names)} FROM {rel}")


def dedup_last(data: pa.Table, keys: list[str]) -> pa.Table:
    """Keep the last row per key (batches are read in cursor order, so last = newest)."""
    if not keys or data.num_rows < 2:
        return data
    idx = pa.array(range(data.num_rows), pa.int64())
    grouped = (
        data.select(keys)
        .append_column("_i", idx)
        .group_by(keys, use_threads=False)
        .aggregate([("_i", "max")])
    )
    keep = pc.sort_indices(grouped.column("_i_max"))
    return data.take(pc.take(grouped.column("_i_max"), keep))
