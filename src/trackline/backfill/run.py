"""`trackline backfill run`: every chunk of every table, each in one warehouse transaction.

A chunk is read from the legacy side with one streaming query, staged batch by batch in the
sync's stage layout (under the legacy database's name), and loaded into the table's raw
target with the sync's own load path, each batch with its entry in the batch ledger. The
chunk's ``done`` row commits in the same transaction, after the rows it loaded were counted
in the warehouse and found equal to the legacy's COUNT of the chunk: a chunk is in whole,
with its ledger entries and its done row, or not at all. A count that differs rolls the chunk
back, records it ``failed`` and runs it again (`backfill.attempts`).

Tables run in parallel (`workers`), each with its own warehouse and source connections;
a table's chunks run one after another in time order. The table's sync lock is held for each
chunk's transaction, so its batch ids (which the marts consume in order) are handed out and
committed in order with the incremental sync's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from trackline.backfill.chunks import Chunk, Unit
from trackline.backfill.ledger import BackfillLedger, ChunkRow, Record, backfill_id
from trackline.backfill.reader import ChunkReader, Head
from trackline.backfill.setup import OpenSource, Setup, setup, sync_past
from trackline.config import Config
from trackline.errors import (
    BackfillRefused,
    ChunkCountMismatch,
    ConfigError,
    InjectedFault,
    LockBusy,
    TracklineError,
)
from trackline.extract.cdc import Watermark
from trackline.extract.source import regroup
from trackline.extract.types import json_field, with_max_bytes
from trackline.faults import checkpoint
from trackline.load import Warehouse, open_warehouse
from trackline.report import NullReporter, Reporter
from trackline.state import StateStore, utcnow
from trackline.sync import BATCH_COL, Syncer, TableResult, merge_into
from trackline.sync.target import ensure_target, widen_target


@dataclass
class TableOutcome:
    table: str
    key: str = ""
    backfill_id: str = ""
    status: str = "ok"
    chunks: int = 0
    skipped: int = 0
    """Chunks committed by an earlier run (not read again)."""
    loaded: int = 0
    """Chunks committed by this run."""
    retried: int = 0
    """Chunk attempts rolled back because the counts differed."""
    rows: int = 0
    seconds: float = 0.0
    error: str | None = None
    retryable: bool = False
    """The error is transient (a lost connection, a serialization conflict): run it again."""
    warnings: list[str] = field(default_factory=list)
    handoff: dict[str, Any] = field(default_factory=dict)
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    unit: str | None = None
    """The backfill's range and chunk unit, as resolved (defaults: the legacy table's span)."""


PIPELINE_BATCHES = 4
"""A chunk is read in at least this many batches (when it holds MIN_BATCH rows each)."""
MIN_BATCH = 20_000

_SETUP = threading.Lock()
"""State and target tables are created one worker at a time: two transactions creating one
schema conflict (DuckDB's catalog, PostgreSQL's unique index on schema names)."""


def lock_timeout(cfg: Config) -> float:
    return float(getattr(cfg.warehouse, "lock_timeout_seconds", 0) or 0)


def run(
    cfg: Config,
    names: list[str] | None = None,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    unit: Unit | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    force: bool = False,
    through: int | None = None,
    reporter: Reporter | None = None,
    warehouse: Warehouse | None = None,
    open_src: OpenSource | None = None,
    make_syncer: Callable[[Config, Warehouse, Reporter], Syncer] | None = None,
) -> list[TableOutcome]:
    """Backfill `names` (default: every `backfill.tables` entry); returns one outcome per
    table. A stop request (Ctrl-C) lets each table finish its chunk in flight.

    `through` loads only the chunks numbered up to it (those not done yet, in time order):
    ``through=0`` only starts each backfill (records its range, chunks and handoff point,
    creates the raw target) and loads nothing; ``through=n`` after that loads chunk n and
    any earlier chunk not done (the Airflow backfill DAG's tasks). Default: every chunk.

    `warehouse`, `open_src` and `make_syncer` replace the connections and the sync loop
    (`trackline sql backfill` runs it on its recorder; one table at a time then)."""
    reporter = reporter or NullReporter()
    names = names or [b.table for b in cfg.backfill.tables]
    if not names:
        raise ConfigError("nothing to backfill: list tables under `backfill.tables:`")
    for n in names:
        cfg.backfill_table(n)
    run_id = uuid.uuid4().hex[:16]
    stop = threading.Event()
    outcomes = [TableOutcome(n) for n in names]
    n_workers = max(1, min(workers or cfg.backfill.workers, len(names)))
    if warehouse is not None:
        n_workers = 1
    conn = _Connections(warehouse, open_src, make_syncer)
    pool = ThreadPoolExecutor(n_workers, thread_name_prefix="backfill")
    futures: list[Future[None]] = [
        pool.submit(
            _table,
            cfg,
            n,
            start,
            end,
            unit,
            batch_size,
            force,
            through,
            run_id,
            reporter,
            out,
            stop,
            conn,
        )
        for n, out in zip(names, outcomes, strict=True)
    ]
    try:
        for f in futures:
            while True:
                try:
                    f.result(timeout=0.2)
                    break
                except TimeoutError:
                    continue
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return outcomes


@dataclass(frozen=True)
class _Connections:
    warehouse: Warehouse | None
    open_src: OpenSource | None
    make_syncer: Callable[[Config, Warehouse, Reporter], Syncer] | None


def _table(
    cfg: Config,
    name: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    unit: Unit | None,
    batch_size: int | None,
    force: bool,
    through: int | None,
    run_id: str,
    reporter: Reporter,
    out: TableOutcome,
    stop: threading.Event,
    conn: _Connections,
) -> None:
    t0 = time.monotonic()
    wh = conn.warehouse or open_warehouse(cfg.warehouse)
    if conn.warehouse is None:
        wh.connect()
    try:
        s = setup(cfg, name, start, end, unit, open_src=conn.open_src)
    except BaseException:
        wh.close()
        raise
    syncer = (conn.make_syncer or Syncer)(cfg, wh, reporter)
    started = utcnow()
    killed = False
    try:
        out.key, out.chunks = s.key, len(s.chunks)
        out.start, out.end, out.unit = s.start, s.end, s.unit
        led = BackfillLedger(wh, cfg.state_schema)
        with _SETUP:  # (the first lock creates Redshift's lock table)
            syncer.state.ensure()
            led.ensure()
            try:
                table_lock = wh.lock(f"backfill:{s.key}", 0)
                table_lock.__enter__()
            except LockBusy:
                raise BackfillRefused(
                    f"another backfill of {name!r} ({s.key}) is running; nothing was written"
                ) from None
        try:
            _chunks(s, wh, syncer, led, batch_size, force, through, run_id, reporter, out, stop, t0)
        finally:
            table_lock.__exit__(None, None, None)
    except InjectedFault:
        out.status, killed = "failed", True
        raise
    except TracklineError as exc:
        out.status, out.error, out.retryable = "failed", str(exc), exc.retryable
        reporter.event("failed", f"{name}: {exc}", table=name)
    finally:
        out.seconds = time.monotonic() - t0
        try:
            if out.key and not killed:
                syncer.state.record_run(
                    run_id,
                    "backfill",
                    out.key,
                    started,
                    out.status,
                    out.rows,
                    out.seconds,
                    out.error,
                    {"backfill_id": out.backfill_id, "chunks": out.loaded, "skipped": out.skipped},
                )
        except Exception:  # noqa: BLE001 - the outcome is what the caller reports
            pass
        syncer.close()
        s.close()
        wh.close()


def _chunks(
    s: Setup,
    wh: Warehouse,
    syncer: Syncer,
    led: BackfillLedger,
    batch_size: int | None,
    force: bool,
    through: int | None,
    run_id: str,
    reporter: Reporter,
    out: TableOutcome,
    stop: threading.Event,
    t0: float,
) -> None:
    """Every chunk not done yet (up to chunk `through`), in time order (holding the table's
    backfill lock)."""
    name, cfg = s.t.name, s.cfg
    rec = _record(s, wh, syncer.state, led, force, reporter, out)
    out.backfill_id = rec.backfill_id
    with _SETUP:
        schema = _target(s, syncer, reporter)
    done = led.done(rec.backfill_id)
    attempts = cfg.backfill.attempts
    size = batch_size or s.b.batch_size or cfg.backfill.batch_size
    failures: dict[int, int] = {}
    for r in led.chunk_rows(rec.backfill_id):
        failures[r.chunk_no] = failures.get(r.chunk_no, 0) + 1
    wanted = [c for c in s.chunks if through is None or c.no <= through]
    for chunk in wanted:
        if chunk.no in done:
            out.skipped += 1
            reporter.progress(f"{name} chunks", 1, len(s.chunks), "chunks")
    pending = [c for c in wanted if c.no not in done]
    reader = _reader(s, pending, schema, size, syncer.wh.BATCH_ROW_MULTIPLE)
    try:
        for chunk in pending:
            if stop.is_set():
                out.status, out.error = "interrupted", "stopped before this chunk"
                return
            before = failures.get(chunk.no, 0)
            for attempt in range(before + 1, before + attempts + 1):
                try:
                    row = _chunk(s, syncer, led, rec, chunk, attempt, schema, reader, run_id)
                except ChunkCountMismatch as exc:
                    out.retried += 1
                    _failed(wh, led, rec, chunk, attempt, run_id, exc)
                    reporter.event("warning", f"{name}: {exc}", table=name)
                    if attempt == before + attempts:
                        raise ChunkCountMismatch(
                            f"{exc}, {attempts} times in this run: the legacy table changed "
                            "while it was read (a load job still writing?) or its rows do not "
                            "match its count; once it is quiet, run `trackline backfill run "
                            f"-t {name}` again (done chunks are skipped)"
                        ) from None
                    continue
                except TracklineError as exc:
                    # any other failure (a conversion the target cannot hold, a source
                    # error) names the chunk too; same error class, so `retryable` holds
                    if not isinstance(exc, InjectedFault) and len(exc.args) == 1:
                        exc.args = (
                            f"chunk {chunk.no} ({chunk.label}) of {name!r}, rolled back "
                            f"(nothing of it kept): {exc.args[0]}",
                        )
                        with contextlib.suppress(TracklineError):  # status shows it
                            _failed(wh, led, rec, chunk, attempt, run_id, exc)
                    raise
                out.loaded += 1
                out.rows += row.loaded_rows or 0
                _progress(reporter, name, s, chunk, row, out, t0)
                break
    finally:
        reader.close()


def _record(
    s: Setup,
    wh: Warehouse,
    state: StateStore,
    led: BackfillLedger,
    force: bool,
    reporter: Reporter,
    out: TableOutcome,
) -> Record:
    """This backfill's record: resumed when the same range was started before; refused when
    it overlaps another backfill of the table; else created with the handoff point taken
    now on the incremental source."""
    bid = backfill_id(s.key, s.legacy.name, s.start, s.end, s.unit)
    existing = led.records(s.key)
    for r in existing:
        if r.backfill_id == bid:
            out.handoff = {"point": r.handoff.ts, **r.captured}
            return r
    for r in existing:
        if r.overlaps(s.start, s.end):
            raise BackfillRefused(
                f"backfill of {s.t.name!r} [{s.start}, {s.end}) by {s.unit} overlaps the "
                f"backfill {r.backfill_id} of [{r.start}, {r.end}) by {r.unit} from {r.legacy} "
                f"({r.chunks} chunks): its rows would be loaded twice. Nothing was written. "
                "Rerun that one (same --start/--end/--chunk) to finish it, or choose a range "
                "that does not overlap it"
            )
    h = s.handoff(reporter)
    for w in h.warnings:
        reporter.event("warning", w, table=s.t.name)
    out.warnings += h.warnings
    st = state.get(s.key, s.rt.source_db)
    wm = st.watermark
    point = h.watermark.ts
    if sync_past(wm, point) and not force:
        raise BackfillRefused(
            f"backfill of {s.t.name!r}: the incremental sync from {s.rt.source_db} already "
            f"read up to {wm.describe()}, past where this backfill's coverage ends "
            f"({point}). Nothing was written. Run with --force to load the history anyway; "
            "the incremental sync then keeps its position (`trackline backfill handoff` "
            "refuses to move it back without --force)"
        )
    rec = Record(
        bid,
        s.key,
        s.t.name,
        s.legacy.name,
        s.legacy.time,
        s.unit,
        s.start,
        s.end,
        len(s.chunks),
        s.rt.source_db,
        h.watermark,
        {k: v for k, v in h.as_dict().items() if k != "point"},
        None,
        None,
    )
    wh.run_transaction(lambda: led.create(rec))
    out.handoff = h.as_dict()
    reporter.event(
        "plan",
        f"{s.t.name}: backfill {bid} of [{s.start}, {s.end}) in {len(s.chunks)} chunks; "
        f"handoff point {point} (incremental upper bound {h.upper}, newest legacy row "
        f"{h.legacy_newest})",
        table=s.t.name,
    )
    return rec


def _target(s: Setup, syncer: Syncer, reporter: Reporter) -> pa.Schema:
    """Create or check the raw target as sync does (from the incremental source's columns),
    and return the Arrow schema batches are loaded in."""
    w, state = syncer.wh, syncer.state
    res = TableResult(s.t.name, s.key)
    with w.lock(f"sync:{s.key}", lock_timeout(s.cfg)):
        widen_target(w, reporter, s.rt, s.target, state.get(s.key, s.rt.source_db).watermark)
        stored_json = w.run_transaction(
            lambda: ensure_target(
                w,
                state,
                reporter,
                s.rt,
                s.target,
                s.pk,
                state.get(s.key, s.rt.source_db).watermark,
                res,
            )
        )
    sizes = state.get(s.key, s.rt.source_db).watermark.extra.get("bytes") or {}
    return pa.schema(
        [
            json_field(c.name, c.arrow)
            if c.name in stored_json
            else with_max_bytes(pa.field(c.name, c.arrow), sizes.get(c.name))
            for c in s.target
        ]
    )


def _reader(s: Setup, chunks: list[Chunk], schema: pa.Schema, size: int, step: int) -> ChunkReader:
    """The table's legacy reader: each chunk's COUNT (and key range), its SELECT and its batch
    size, then its rows, a step ahead of the loader (`ChunkReader`)."""
    t = s.t
    zero_cols = [c for c in s.legacy.columns if c.zero_date_check]
    order = [str(t.cdc.cursor), *([str(t.cdc.id)] if t.cdc.id else [])]
    read_schema = pa.schema(
        [*schema, *[pa.field("_tl_zero_" + c.name, pa.int64()) for c in zero_cols]]
    )

    def plan(chunk: Chunk) -> Head:
        lo, hi = s.bounds(chunk)
        expected = s.legacy.count(lo, hi)
        ids = s.legacy.id_span(lo, hi, expected)
        sql = s.legacy.rows_sql(
            lo, hi, bool(zero_cols), order if t.write_mode == "merge" else None, ids
        )
        # At least PIPELINE_BATCHES batches a chunk: the next batch is read and staged while
        # one loads (the sync's pipeline), which a chunk read as one batch would not overlap.
        batch_size = min(size, max(-(-expected // PIPELINE_BATCHES), MIN_BATCH))
        if batch_size > step // 2:
            batch_size = -(-batch_size // step) * step
        pieces: tuple[str, ...] = ()
        if ids is not None and t.write_mode != "merge":
            # read a batch of keys at a time, each whole (`Source.fetch`): the streaming read
            # holds Python's GIL while it waits for the server, stalling staging and loading
            pieces = tuple(s.legacy.piece_sqls(lo, hi, bool(zero_cols), ids, batch_size))
        return Head(chunk, expected, sql, batch_size, pieces)

    def stream(head: Head) -> Iterator[pa.RecordBatch | pa.Table]:
        if head.pieces:
            fetched = (s.legacy.src.fetch(sql, read_schema) for sql in head.pieces)
            return regroup(fetched, read_schema, head.batch_size)
        return s.legacy.src.stream(head.sql, read_schema, head.batch_size)

    return ChunkReader(chunks, plan, stream, t.name)


def _chunk(
    s: Setup,
    syncer: Syncer,
    led: BackfillLedger,
    rec: Record,
    chunk: Chunk,
    attempt: int,
    schema: pa.Schema,
    reader: ChunkReader,
    run_id: str,
) -> ChunkRow:
    """Load one chunk in one transaction (under the table's sync lock); ChunkCountMismatch
    when what the warehouse holds of it differs from the legacy's count. Its count and rows
    come from `reader`, which may have read them while the chunk before committed."""
    t0 = time.monotonic()
    w, state, t = syncer.wh, syncer.state, s.t
    lo, hi = s.bounds(chunk)
    zero_cols = [c for c in s.legacy.columns if c.zero_date_check]
    schema_name, target = s.rt.target_schema, s.rt.target
    legacy_db = s.legacy_rt.source_db

    # The chunk's count is taken before its transaction and the table's sync lock; a
    # second run of `work` (after a transient warehouse error) reads the chunk again.
    opened = [reader.open(chunk)]

    def work() -> ChunkRow:
        head, batches = opened.pop() if opened else reader.open(chunk)
        expected = head.expected
        first = state.next_batch_id(s.key)
        last, read = first - 1, 0
        res = TableResult(t.name, s.key)
        for bid, data, staged, _ in syncer._pipeline(
            s.legacy_rt, batches, zero_cols, schema, "incremental", Watermark(), None, None,
            first, s.pk, res,
        ):  # fmt: skip
            if t.write_mode == "merge":
                merge_into(w, schema_name, target, data, staged, s.pk)
            else:
                w.append_arrow(schema_name, target, data, staged)
            state.record_batch(
                table_key=s.key,
                source_db=legacy_db,
                batch_id=bid,
                run_id=run_id,
                row_count=data.num_rows,
                checksum=staged.checksum,
                files=staged.uris,
                manifest=staged.manifest_uri,
                wm_from=Watermark(ts=lo, extra={"backfill": rec.backfill_id, "chunk": chunk.no}),
                wm_to=Watermark(ts=hi, extra={"backfill": rec.backfill_id, "chunk": chunk.no}),
            )
            last, read = bid, read + data.num_rows
            syncer.reporter.progress(f"{t.name} rows", data.num_rows)
            checkpoint("backfill.after_batch")
        loaded = read
        if t.write_mode == "append" and last >= first:
            loaded = int(
                w.scalar(
                    f"SELECT COUNT(*) FROM {w.t(schema_name, target)} WHERE "
                    f"{w.q(BATCH_COL)} >= ? AND {w.q(BATCH_COL)} <= ?",
                    (first, last),
                )
                or 0
            )
        if loaded != expected or read != expected:
            raise ChunkCountMismatch(
                f"chunk {chunk.no} ({chunk.label}) of {t.name!r}: the legacy side counts "
                f"{expected:,} rows, {read:,} were read and {loaded:,} loaded; rolled back"
            )
        checkpoint("backfill.before_commit")
        row = ChunkRow(
            chunk.no,
            "done",
            attempt,
            run_id,
            expected,
            loaded,
            first if last >= first else None,
            last if last >= first else None,
            time.monotonic() - t0,
            None,
            None,
        )
        led.record_chunk(rec.backfill_id, row)
        return row

    with w.lock(f"sync:{s.key}", lock_timeout(s.cfg)):
        row = w.run_transaction(work)
    checkpoint("backfill.after_commit")
    return row


def _failed(
    wh: Warehouse,
    led: BackfillLedger,
    rec: Record,
    chunk: Chunk,
    attempt: int,
    run_id: str,
    exc: Exception,
) -> None:
    row = ChunkRow(
        chunk.no, "failed", attempt, run_id, None, None, None, None, None, str(exc), None
    )
    wh.run_transaction(lambda: led.record_chunk(rec.backfill_id, row))


def _progress(
    reporter: Reporter,
    name: str,
    s: Setup,
    chunk: Chunk,
    row: ChunkRow,
    out: TableOutcome,
    t0: float,
) -> None:
    reporter.progress(f"{name} chunks", 1, len(s.chunks), "chunks")
    elapsed = time.monotonic() - t0
    rate = out.rows / elapsed if elapsed > 0 else 0.0
    left = len(s.chunks) - out.loaded - out.skipped
    eta = elapsed / out.loaded * left if out.loaded else 0.0
    reporter.event(
        "chunk",
        f"{name}: chunk {chunk.no}/{len(s.chunks)} {chunk.label}: {row.loaded_rows:,} rows "
        f"({out.loaded + out.skipped}/{len(s.chunks)} done, {rate:,.0f} rows/s, "
        f"ETA {eta:,.0f} s)",
        table=name,
        chunk=chunk.no,
        rows=row.loaded_rows,
    )
