"""One input → the staging table, batch after batch, each batch in ONE warehouse transaction
with the input's watermark and the batch ledger entry.

The cursor is always (time, id) (`trackline.extract.cdc`, strategy ``hybrid``): rows strictly
after the last (time, id) read, strictly below the source clock minus the lag (held at the
oldest open write transaction, `trackline.sync.hold`). A crash leaves at most the batch in
flight uncommitted; the next run continues from the last committed cursor, so a row is staged
once. Staged rows carry ``processed_at`` NULL until the merge moves them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from trackline.config import Config, ConsolidationConfig, ConsolidationInput, TableConfig
from trackline.consolidate.schema import (
    BATCH_COL,
    INPUT_COL,
    PROCESSED_COL,
    ROW_COL,
    InputShape,
)
from trackline.errors import CdcError
from trackline.extract import Relation, Source
from trackline.extract.cdc import CursorSpec, Value, Watermark, plan_query
from trackline.extract.types import with_max_bytes
from trackline.faults import checkpoint
from trackline.load import Column, StagedFiles, Warehouse
from trackline.report import Reporter
from trackline.stage import Stage
from trackline.state import StateStore
from trackline.sync.hold import time_upper
from trackline.sync.tables import TableResult


def input_key(c: ConsolidationConfig, input_name: str) -> str:
    """The input's entry in the watermarks table."""
    return f"{c.target_schema}.{c.staging}#{input_name}"


def ledger_key(c: ConsolidationConfig) -> str:
    """The consolidation's entry in the batch ledger (one batch sequence for all inputs)."""
    return f"{c.target_schema}.{c.staging}"


def relation(inp: ConsolidationInput, source_db: str) -> Relation:
    if inp.query:
        return Relation(inp.name, None, inp.query)
    assert inp.table is not None
    return Relation(inp.table, source_db)


def as_table_config(c: ConsolidationConfig, shape: InputShape) -> TableConfig:
    """The input seen as a table, for the helpers it shares with sync (the upper bound)."""
    inp = shape.input
    return TableConfig.model_validate(
        {
            "name": inp.name,
            "source": inp.source,
            "source_db": inp.source_db,
            "query": inp.query,
            "target_schema": c.target_schema,
            "target_table": c.staging,
            "cdc": {"strategy": "hybrid", "cursor": inp.cdc.cursor, "id": inp.cdc.id},
            "lag_seconds": inp.lag_seconds,
            "batch_size": inp.batch_size,
        }
    )


@dataclass
class InputRun:
    input: str
    rows: int = 0
    batches: int = 0
    watermark: str = ""
    upper: object = None
    error: str | None = None


def plan_input(
    cfg: Config,
    c: ConsolidationConfig,
    shape: InputShape,
    src: Source,
    source_db: str,
    wm: Watermark,
    upper: Value,
) -> str:
    """The input's next streaming query: its columns, after `wm`, below `upper`."""
    rel = relation(shape.input, source_db)
    select = ", ".join(f"{col.expr} AS {src.q(col.name)}" for col in shape.read)
    spec = CursorSpec("hybrid", shape.cursor.cursor_ref, shape.id.cursor_ref, "error")
    return plan_query(
        select=select, relation=src.relation_sql(rel), spec=spec, wm=wm, upper=upper, lit=src.lit
    ).sql


def extract_input(
    cfg: Config,
    c: ConsolidationConfig,
    shape: InputShape,
    src: Source,
    source_db: str,
    wh: Warehouse,
    stage: Stage,
    staging: list[Column],
    run_id: str,
    batch_ids: Iterator[int],
    reporter: Reporter,
) -> InputRun:
    """Stage the input's new rows; `batch_ids` hands out the consolidation's next batch ids
    (one sequence across inputs, so later-staged rows carry greater ids)."""
    inp = shape.input
    out = InputRun(inp.name)
    state = StateStore(wh, cfg.state_schema)
    key = input_key(c, inp.name)
    wm = state.get(key, source_db).watermark
    t = as_table_config(c, shape)
    rel = relation(shape.input, source_db)
    nulls = src.scalar(
        f"SELECT COUNT(*) FROM {src.relation_sql(rel)} WHERE {shape.cursor.cursor_ref} IS NULL"
    )
    if nulls:
        raise CdcError(
            f"consolidation {c.name!r}, input {inp.name!r}: {nulls} row(s) have a NULL "
            f"{inp.cdc.cursor}; they would never be read. Fix the rows (or COALESCE the "
            "cursor in the input's query)"
        )
    unix = pa.types.is_integer(shape.cursor.arrow)
    res = TableResult(inp.name, key)
    upper = time_upper(src, t, cfg, unix, res, reporter)
    out.upper = upper
    for w in res.warnings:
        reporter.event("warning", f"{c.name}.{w}", consolidation=c.name)
    read_schema = pa.schema([pa.field(col.name, col.arrow) for col in shape.read])
    batch_size = inp.batch_size or cfg.defaults.batch_size
    window = batch_size * cfg.defaults.read_window_batches
    when = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    # each window is planned when the one before is used up: from the `wm` its rows reached
    windows = _windows(
        src,
        lambda: plan_input(cfg, c, shape, src, source_db, wm, upper),
        read_schema,
        batch_size,
        window,
    )
    for batch in windows:
        data = pa.Table.from_batches([batch])
        if data.num_rows == 0:
            continue
        checkpoint("consolidate.after_read")
        last = data.num_rows - 1
        wm_to = wm.advanced(
            ts=data.column(shape.cursor.name)[last].as_py(),
            id=data.column(shape.id.name)[last].as_py(),
        )
        batch_id = next(batch_ids)
        rows = _staging_rows(shape, data, staging, batch_id)
        staged = stage.write_batch(
            source_db=source_db,
            schema=c.target_schema,
            table=c.staging,
            batch_id=batch_id,
            data=wh.stage_form(rows),
            when=when,
        )

        _commit(wh, state, c, key, source_db, rows, staged, batch_id, wm, wm_to, run_id)
        wm = wm_to
        out.rows += data.num_rows
        out.batches += 1
        reporter.progress(f"{c.name}.{inp.name}", data.num_rows)
    checkpoint("consolidate.after_input")
    out.watermark = wm.describe()
    return out


def _windows(
    src: Source, plan: Callable[[], str], schema: pa.Schema, batch_size: int, window: int
) -> Iterator[pa.RecordBatch]:
    """The input's rows as consecutive queries of at most `window` rows
    (`defaults.read_window_batches`), each planned from the watermark the rows before it
    reached (`plan` reads it when called): the MySQL reader buffers a whole query as fast as
    the server sends it, so one query would hold the whole backlog in memory."""
    while True:
        n = 0
        for batch in src.stream(f"{plan()} LIMIT {window}", schema, batch_size):
            n += batch.num_rows
            yield batch
        if n < window:
            return


def _commit(
    wh: Warehouse,
    state: StateStore,
    c: ConsolidationConfig,
    key: str,
    source_db: str,
    rows: pa.Table,
    staged: StagedFiles,
    batch_id: int,
    wm_from: Watermark,
    wm_to: Watermark,
    run_id: str,
) -> None:
    """The batch's staging rows, its ledger entry and the input's watermark: one transaction."""

    def work() -> None:
        wh.append_arrow(c.target_schema, c.staging, rows, staged)
        state.record_batch(
            table_key=ledger_key(c),
            source_db=source_db,
            batch_id=batch_id,
            run_id=run_id,
            row_count=rows.num_rows,
            checksum=staged.checksum,
            files=staged.uris,
            manifest=staged.manifest_uri,
            wm_from=wm_from,
            wm_to=wm_to,
        )
        state.put(key, source_db, "hybrid", wm_to, batch_id, rows.num_rows)
        checkpoint("consolidate.before_stage_commit")

    wh.run_transaction(work)  # retried whole on a serialization conflict


def _staging_rows(
    shape: InputShape, data: pa.Table, staging: list[Column], batch_id: int
) -> pa.Table:
    """The batch as staging rows: target columns in the staging table's order, cast to its
    types (same type by the schema check; only text lengths differ), plus the bookkeeping."""
    n = data.num_rows
    arrays: list[pa.Array | pa.ChunkedArray] = []
    fields: list[pa.Field] = []
    for col in staging:
        if col.name in shape.columns:
            arr: pa.Array | pa.ChunkedArray = data.column(shape.columns[col.name].name)
        elif col.name in shape.constants:
            arr = pa.array([shape.constants[col.name]] * n, col.type)
        elif col.name == INPUT_COL:
            arr = pa.array([shape.input.name] * n, pa.string())
        elif col.name == BATCH_COL:
            arr = pa.array([batch_id] * n, pa.int64())
        elif col.name == ROW_COL:
            arr = pa.array(range(n), pa.int64())
        elif col.name == PROCESSED_COL:
            arr = pa.nulls(n, pa.timestamp("us"))
        else:  # pragma: no cover - the schema check makes every input produce every column
            raise AssertionError(col.name)
        arrays.append(arr)
        fields.append(with_max_bytes(pa.field(col.name, col.type), col.max_bytes))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
