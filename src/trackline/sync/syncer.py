"""`Syncer`: the EL loop over the tables of one config (see the package docstring)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import pyarrow as pa

from trackline.config import Config, TableConfig
from trackline.dims import scd2
from trackline.errors import (
    CdcError,
    ConfigError,
    InjectedFault,
    Interrupted,
    LockBusy,
    SourceTimeout,
    TracklineError,
)
from trackline.extract import Relation, Source, open_source
from trackline.extract.cdc import CursorSpec, Watermark, plan_query, shift
from trackline.extract.types import SourceColumn, json_field, with_max_bytes
from trackline.faults import checkpoint
from trackline.load import StagedFiles, Warehouse, open_warehouse
from trackline.report import NullReporter, Reporter
from trackline.stage import Stage
from trackline.state import LEGACY_SOURCE, StateStore, utcnow
from trackline.sync.batches import (
    Batches,
    ReadWindows,
    merge_into,
    next_watermark,
    zero_dates,
)
from trackline.sync.follow import FollowPass, check_follow_index, drivers_first
from trackline.sync.hold import check_time_cursor, id_upper, time_upper
from trackline.sync.tables import BATCH_COL, ResolvedTable, TableResult, resolve
from trackline.sync.target import ensure_target, json_columns, raw_column, widen_target
from trackline.sync.whole import WholeLoad

log = logging.getLogger(__name__)

_FATAL: tuple[type[BaseException], ...] = (InjectedFault, LockBusy)
"""Errors that end the whole run instead of failing one table."""


class Syncer:
    """Runs sync for tables of one config against one open warehouse."""

    def __init__(self, cfg: Config, wh: Warehouse, reporter: Reporter | None = None) -> None:
        self.cfg = cfg
        self.wh = wh
        self.state = StateStore(wh, cfg.state_schema)
        self.stage = Stage(cfg.stage)
        wh.stage = wh.stage or self.stage  # engines that COPY from the staged files read them
        self.reporter = reporter or NullReporter()
        self.hold_warned: set[str] = set()
        """Hold problems (e.g. no PROCESS privilege) already told this run: once, not per table."""
        self._sources: dict[tuple[str, str], Source] = {}
        self.run_id = ""
        self.results: list[TableResult] = []
        """This run's tables so far, updated as batches commit."""
        self.read_shapes: dict[str, tuple[str, pa.Schema]] = {}
        """Per table key, the SELECT list and Arrow schema its last read used."""
        self.stop_requested = threading.Event()
        """Set from another thread (tables synced in parallel, `trackline.sync.parallel`): the
        table stops after the batch it is committing, as after a Ctrl-C there."""

    def close(self) -> None:
        for s in self._sources.values():
            s.close()
        self._sources.clear()

    def source(self, rt: ResolvedTable) -> Source:
        k = (rt.source_name, rt.source_db)
        if k not in self._sources:
            self._sources[k] = open_source(self.cfg.sources[rt.source_name], rt.source_db)
        return self._sources[k]

    # ------------------------------------------------------------------ public

    def sync(
        self,
        names: list[str] | None = None,
        *,
        source_db: str | None = None,
        target_schema: str | None = None,
        run_id: str | None = None,
    ) -> list[TableResult]:
        tables = [self.cfg.table(n) for n in names] if names else list(self.cfg.tables)
        tables = drivers_first(tables)
        if not tables:
            raise ConfigError("no tables to sync: list them under `tables:` or pass --tables")
        self.state.ensure()
        self.run_id = run_id or self._run_id()
        self.results = results = []  # live: an interrupted cycle counts what was committed
        for t in tables:
            rt = resolve(self.cfg, t, source_db, target_schema)
            started = utcnow()
            res = TableResult(t.name, rt.key)
            results.append(res)
            t0 = time.monotonic()
            try:
                with self.wh.lock(f"sync:{rt.key}", self._lock_timeout()):
                    follow = None
                    if t.cdc.follow:  # refused before anything is read: no index, no follow
                        check_follow_index(self.source(rt), rt)
                        follow = FollowPass(self, rt, res, source_db, target_schema)
                        follow.begin()
                    self._sync_table(rt, res)
                    if follow is not None:
                        follow.run()
            except TracklineError as exc:
                if isinstance(exc, _FATAL):
                    raise
                res.status, res.error, res.retryable = "failed", str(exc), exc.retryable
                if isinstance(exc, SourceTimeout):  # name the table and the keys to change
                    res.error = (
                        f"table {t.name!r}: {exc} (limits: sources.{rt.source_name}."
                        "read_timeout_seconds / stream_timeout_seconds)"
                    )
                self.reporter.event("failed", f"{t.name}: {res.error}", table=t.name)
            except KeyboardInterrupt as exc:  # a stop request: record what was committed
                res.status = getattr(exc, "status", "interrupted")
                res.error = str(exc) or "interrupted (Ctrl-C)"
                res.seconds = time.monotonic() - t0
                with contextlib.suppress(Exception):
                    res.rows = self.state.rows_committed(self.run_id, rt.key)
                    self._record(rt, started, res)
                raise
            res.seconds = time.monotonic() - t0
            self._record(rt, started, res)
        return results

    def _record(self, rt: ResolvedTable, started: dt.datetime, res: TableResult) -> None:
        self.state.record_run(
            self.run_id,
            "sync",
            rt.key,
            started,
            res.status,
            res.rows,
            res.seconds,
            res.error,
            {"batches": res.batches, "watermark": res.watermark, "warnings": res.warnings},
        )

    def _lock_timeout(self) -> float:
        return float(getattr(self.cfg.warehouse, "lock_timeout_seconds", 0) or 0)

    @staticmethod
    def _run_id() -> str:
        import uuid

        return uuid.uuid4().hex[:16]

    # ------------------------------------------------------------------ one table

    def _sync_table(self, rt: ResolvedTable, res: TableResult, *, announce: bool = True) -> None:
        """Sync one table; `announce`: report it done (not for the read after a snapshot,
        whose rows the snapshot's own report includes)."""
        t = rt.cfg
        src = self.source(rt)
        rel = Relation(t.name, rt.source_db if not t.query else None, t.query)
        cols = json_columns(t, src.columns(rel))
        by_name = {c.name: c for c in cols}
        self._check_cursor_columns(t, by_name)
        pk = t.primary_key or src.primary_key(rel)
        if t.write_mode == "merge" and not pk:
            raise ConfigError(
                f"table {t.name!r}: write_mode merge needs a key; set `primary_key:` "
                "(the source has no primary key)"
            )
        if t.write_mode == "scd2":
            scd2.natural_key(t, pk)  # a dimension without a key stops before anything runs
        self._one_source_if_replaced(rt)
        st = self.state.get(rt.key, rt.source_db)
        wm = st.watermark
        widen_target(self.wh, self.reporter, rt, cols, wm)
        warned = len(res.warnings)

        def target() -> set[str]:
            del res.warnings[warned:]  # a rerun after a conflict reports its drift once
            return ensure_target(self.wh, self.state, self.reporter, rt, cols, pk, wm, res)

        stored_json = self.wh.run_transaction(target)
        st = self.state.get(rt.key, rt.source_db)
        wm = st.watermark
        # JSON documents are marked only where the target stores them as such (Redshift SUPER);
        # text carries its raw column's size (the limit checked before a Redshift COPY)
        sizes = wm.extra.get("bytes") or {}
        arrow_schema = pa.schema(
            [
                json_field(c.name, c.arrow)
                if c.name in stored_json
                else with_max_bytes(pa.field(c.name, c.arrow), sizes.get(c.name))
                for c in cols
            ]
        )

        spec = CursorSpec(
            t.cdc.strategy,
            by_name[t.cdc.cursor].cursor_ref if t.cdc.cursor else None,
            by_name[t.cdc.id].cursor_ref if t.cdc.id else None,
            t.cdc.null_cursor,
        )
        unix = bool(t.cdc.cursor and pa.types.is_integer(by_name[t.cdc.cursor].arrow))
        zero_cursor = bool(t.cdc.cursor and by_name[t.cdc.cursor].zero_date_check)
        self._pre_checks(src, rel, t, spec, wm, res, zero_cursor)
        upper, readable = None, True
        if t.cdc.strategy == "id" and spec.id:
            bound = id_upper(
                src,
                src.relation_sql(rel),
                spec.id,
                t,
                self.cfg,
                wm,
                res,
                self.reporter,
                self.hold_warned,
            )
            upper, readable = bound.upper, bound.upper is not None
            if bound.watermark != wm:
                wm = bound.watermark
                if not readable or (wm.id is not None and upper <= wm.id):
                    # nothing to read this time: the sample still counts for the next run
                    sampled = wm
                    self.wh.run_transaction(
                        lambda: self.state.put(
                            rt.key, rt.source_db, t.cdc.strategy, sampled, st.last_batch_id, 0
                        )
                    )
        elif t.cdc.cursor:
            upper = time_upper(src, t, self.cfg, unix, res, self.reporter, self.hold_warned)
        res.upper = upper

        snapshot_key = None
        if (
            t.cdc.strategy == "hybrid"
            and len(pk) == 1
            and not t.query
            and pa.types.is_integer(by_name[pk[0]].arrow)
        ):
            snapshot_key = by_name[pk[0]].cursor_ref
        lookback = None
        if t.lookback_seconds and wm.ts is not None:
            lookback = shift(wm.ts, t.lookback_seconds)
        zero_cols = [c for c in cols if c.zero_date_check]
        select = ", ".join(f"{c.expr} AS {src.q(c.name)}" for c in cols)
        self.read_shapes[rt.key] = (select, arrow_schema)  # a follow pass reads the same
        if zero_cols and self.cfg.defaults.zero_date is not None:
            select += "".join(
                f", ({c.expr.removeprefix('NULLIF(').rsplit(',', 1)[0]} = 0) AS "
                f"{src.q('_tl_zero_' + c.name)}"
                for c in zero_cols
            )
        order_key = None  # a full table's read order when it is read in windows
        if t.cdc.strategy == "full" and len(pk) == 1 and not t.query and pk[0] in by_name:
            if pa.types.is_integer(by_name[pk[0]].arrow):
                order_key = by_name[pk[0]].cursor_ref
        relation = src.relation_sql(rel)
        plan = plan_query(
            select=select,
            relation=relation,
            spec=spec,
            wm=wm,
            upper=upper,
            lit=src.lit,
            snapshot_key=snapshot_key,
            lookback=lookback,
            nothing=not readable,
            order_key=order_key,
        )
        read_schema = arrow_schema
        if zero_cols:
            read_schema = pa.schema(
                [*arrow_schema, *[pa.field("_tl_zero_" + c.name, pa.int64()) for c in zero_cols]]
            )
        batch_size = t.batch_size or self.cfg.defaults.batch_size
        # Whole row groups: a DuckDB commit of less than one row group goes through its
        # write-ahead log and is written again at checkpoint (measured: 66% of load time).
        # (Small batches, as in tests of batch boundaries, are kept as given.)
        step = self.wh.BATCH_ROW_MULTIPLE
        if batch_size > step // 2:
            batch_size = -(-batch_size // step) * step
        self.reporter.event(
            "plan",
            f"{t.name}: whole table read (cdc strategy full)"
            if t.cdc.strategy == "full"
            else f"{t.name}: {plan.phase} read from {wm.describe()} below {upper}",
            table=t.name,
        )
        next_id = self.state.next_batch_id(rt.key)
        res.first_batch = next_id
        whole = None
        if t.write_mode in ("replace", "scd2"):
            whole = WholeLoad(self.wh, rt, self.reporter, source_pk=pk)
            whole.page_rows = batch_size
            if t.write_mode == "scd2":
                whole.columns = [raw_column(c, stored_json, sizes) for c in cols]
                whole.clock = src.now(False)
            whole.prepare()
        counts = (res.rows, res.batches, res.last_batch)
        window = batch_size * self.cfg.defaults.read_window_batches
        windowed = {
            "hybrid": spec.id is not None,
            "id": True,
            "timestamp": spec.id is not None,
            "full": order_key is not None,
        }[t.cdc.strategy]

        def read_window(sql: str) -> Batches:
            return src.stream(f"{sql} LIMIT {window}", read_schema, batch_size)

        def after(cur: Watermark, last: pa.Table) -> Batches:
            """The query that continues after `last`'s last row (see `plan_query`)."""
            end = last.num_rows - 1
            after: tuple[Any, ...] | None = None
            if t.cdc.strategy == "timestamp":
                after = (last[t.cdc.cursor][end].as_py(), last[str(t.cdc.id)][end].as_py())
            elif t.cdc.strategy == "full":
                after = (last[pk[0]][end].as_py(),)
            nxt = plan_query(
                select=select,
                relation=relation,
                spec=spec,
                wm=cur,
                upper=plan.upper,
                lit=src.lit,
                snapshot_key=snapshot_key,
                order_key=order_key,
                after=after,
            )
            return read_window(nxt.sql)

        def read_all() -> Watermark:
            res.rows, res.batches, res.last_batch = counts  # a rerun reads everything again
            wm_now = wm
            batches: Batches | ReadWindows = (
                ReadWindows(window, lambda: read_window(plan.sql), after)
                if windowed
                else src.stream(plan.sql, read_schema, batch_size)
            )
            if whole:
                whole.begin()
            for batch_id, data, staged, wm_to in self._pipeline(
                rt,
                batches,
                zero_cols,
                arrow_schema,
                plan.phase,
                wm,
                plan.upper,
                pk[0] if snapshot_key else None,
                next_id,
                pk,
                res,
            ):
                self._commit_batch(rt, batch_id, data, staged, wm_now, wm_to, pk, res)
                wm_now = wm_to
                res.last_batch = batch_id
                if self.stop_requested.is_set():
                    raise Interrupted(_stopped(t.name, res, batch_id, whole is not None))
            if whole:
                whole.finish(res)
            return wm_now

        # replace / scd2: every batch joins one transaction (`trackline.sync.whole`), rerun
        # whole (the source read again) after a conflict; otherwise each batch commits alone.
        whole_load = t.write_mode in ("replace", "scd2")
        wm = self.wh.run_transaction(read_all) if whole_load else read_all()
        if plan.phase == "snapshot" and wm.phase == "snapshot":
            # The snapshot is complete: continue incrementally from the greatest (ts, id) it
            # read, not from its upper bound: a row written later with a time between the two
            # (a clock behind the database, a backdated correction) is then still read.
            # (Rows with NULL cursors only: from the upper bound, as they are never re-read.)
            final = Watermark(ts=wm.ts, id=wm.id, extra=wm.extra)
            if wm.ts is None:
                final = Watermark(ts=plan.upper, id=None, extra=wm.extra)
            self.wh.run_transaction(
                lambda: self.state.put(
                    rt.key,
                    rt.source_db,
                    t.cdc.strategy,
                    final,
                    res.last_batch or st.last_batch_id,
                    0,
                )
            )
            wm = final
            self.reporter.event("snapshot", f"{t.name}: initial snapshot complete", table=t.name)
            self._sync_incremental_after_snapshot(rt, res)
            wm = self.state.get(rt.key, rt.source_db).watermark
        res.watermark = wm.describe()
        if not announce:
            return
        self.reporter.event(
            "done",
            f"{t.name}: {res.rows:,} rows in {res.batches} batches, cursor {res.watermark}",
            table=t.name,
            rows=res.rows,
        )

    def _sync_incremental_after_snapshot(self, rt: ResolvedTable, res: TableResult) -> None:
        # Rows that changed while the snapshot ran (ts >= its upper bound, < a fresh upper).
        inner = TableResult(res.table, res.table_key)
        self._sync_table(rt, inner, announce=False)
        res.rows += inner.rows
        res.batches += inner.batches
        res.last_batch = inner.last_batch or res.last_batch
        res.warnings += inner.warnings

    # ------------------------------------------------------------------ checks

    def _check_cursor_columns(self, t: TableConfig, by_name: dict[str, SourceColumn]) -> None:
        for key, col in (("cursor", t.cdc.cursor), ("id", t.cdc.id)):
            if col and col not in by_name:
                raise ConfigError(
                    f"table {t.name!r}: cdc.{key} column {col!r} does not exist in the source "
                    f"(columns: {', '.join(list(by_name)[:20])})"
                )
        for col in t.primary_key or []:
            if col not in by_name:
                raise ConfigError(f"table {t.name!r}: primary_key column {col!r} does not exist")
        if t.cdc.cursor and t.cdc.strategy in ("hybrid", "timestamp"):
            check_time_cursor(f"table {t.name!r}", by_name[t.cdc.cursor])

    def _one_source_if_replaced(self, rt: ResolvedTable) -> None:
        """A `replace` or `scd2` target holds one database's snapshot: loading another
        database's into it would drop (or close) the first one's rows while its watermark
        stays."""
        if rt.cfg.write_mode not in ("replace", "scd2"):
            return
        others = [
            db for db in self.state.source_dbs(rt.key) if db not in (rt.source_db, LEGACY_SOURCE)
        ]
        if others:
            raise ConfigError(
                f"table {rt.cfg.name!r}: {rt.key} holds a snapshot of source database "
                f"{others[0]} (write_mode {rt.cfg.write_mode}); loading {rt.source_db}'s would "
                f"delete it. Load it into another --target-schema, or `trackline reset "
                f"{rt.cfg.name}` first"
            )

    def _pre_checks(
        self,
        src: Source,
        rel: Relation,
        t: TableConfig,
        spec: CursorSpec,
        wm: Watermark,
        res: TableResult,
        zero_cursor: bool = False,
    ) -> None:
        relation = src.relation_sql(rel)
        if spec.strategy == "id" and wm.id is not None:
            top = src.scalar(f"SELECT MAX({spec.id}) FROM {relation}")
            if top is None or top < wm.id:
                raise CdcError(
                    f"table {t.name!r}: the source's max {t.cdc.id} is {top}, below the "
                    f"watermark {wm.id}: the table was truncated or its ids reset. Nothing was "
                    f"loaded. If that is expected, run `trackline reset {t.name}` to start over."
                )
        if spec.ts and spec.strategy in ("hybrid", "timestamp"):
            # A zero date (0000-00-00) is no usable cursor value either; both tests use the
            # cursor index (ref_or_null), so this check does not scan the table.
            zero = f" OR {spec.ts} = 0" if zero_cursor else ""
            nulls = src.scalar(f"SELECT COUNT(*) FROM {relation} WHERE {spec.ts} IS NULL{zero}")
            if nulls:
                if t.cdc.null_cursor == "error":
                    raise CdcError(
                        f"table {t.name!r}: {nulls} row(s) have a NULL "
                        f"{'or zero-date ' if zero_cursor else ''}{t.cdc.cursor}; they "
                        "would never be read incrementally. Fix the rows, or set "
                        "cdc.null_cursor: load to load them once and report them"
                    )
                msg = (
                    f"{t.name}: {nulls} row(s) with NULL {t.cdc.cursor} "
                    "(loaded by the first read only)"
                )
                res.warnings.append(msg)
                self.reporter.event("warning", msg, table=t.name)

    # ------------------------------------------------------------------ target & drift

    # ------------------------------------------------------------------ pipeline

    def _pipeline(
        self,
        rt: ResolvedTable,
        batches: Batches | ReadWindows,
        zero_cols: list[SourceColumn],
        schema: pa.Schema,
        phase: str,
        wm: Watermark,
        upper: Any,
        snapshot_col: str | None,
        first_id: int,
        pk: list[str],
        res: TableResult,
    ) -> Iterator[tuple[int, pa.Table, StagedFiles, Watermark]]:
        """Extract + stage in a worker thread, one batch ahead of the loader."""
        t = rt.cfg
        q: queue.Queue[Any] = queue.Queue(maxsize=1)
        stop = threading.Event()
        when = utcnow()
        zero_policy = self.cfg.defaults.zero_date

        windows = batches if isinstance(batches, ReadWindows) else None
        # the open readers: this window's query, and the next one's once it is opened
        readers: list[Batches] = [windows.first() if windows else cast(Batches, batches)]

        def read() -> Batches:
            """Every batch, across the windows' queries."""
            while readers:
                yield from readers[0]
                _close(readers.pop(0))

        def produce() -> None:
            try:
                cur = wm
                bid = first_id
                in_window = 0
                for b in read():
                    if stop.is_set():
                        return
                    checkpoint("sync.after_extract")
                    data = b if isinstance(b, pa.Table) else pa.Table.from_batches([b])
                    in_window += data.num_rows
                    if zero_cols:
                        data = zero_dates(self.reporter, rt, data, zero_cols, pk, zero_policy, res)
                    cur = next_watermark(t, data, cur, phase, upper, snapshot_col)
                    if windows and in_window >= windows.rows:
                        # a full window: the next query opens now, so the source sends it
                        # while this batch is staged and loaded
                        last = b if isinstance(b, pa.Table) else pa.Table.from_batches([b])
                        readers.append(windows.after(cur, last))
                        in_window = 0
                    data = data.append_column(
                        BATCH_COL, pa.repeat(pa.scalar(bid, pa.int64()), data.num_rows)
                    )
                    staged = self.stage.write_batch(
                        source_db=rt.source_db,
                        schema=rt.target_schema,
                        table=rt.target,
                        batch_id=bid,
                        data=self.wh.stage_form(data),
                        when=when,
                    )
                    checkpoint("sync.after_stage")
                    while not stop.is_set():
                        try:
                            q.put((bid, data, staged, cur), timeout=0.2)
                            break
                        except queue.Full:
                            continue
                    bid += 1
                q.put(None)
            except BaseException as exc:  # handed to the loader thread, which re-raises it
                q.put(exc)
            finally:
                # Close the readers here, not wherever they are garbage-collected once the
                # loader stopped early: a source's cursor may be bound to this thread (sqlite3).
                while readers:
                    _close(readers.pop())

        def _close(reader: Batches) -> None:
            close = getattr(reader, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:  # noqa: BLE001 - the batch's outcome is decided
                    log.warning("%s: closing the source reader failed: %s", t.name, exc)

        worker = threading.Thread(target=produce, name=f"extract-{t.name}", daemon=True)
        worker.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    pass
                worker.join(timeout=0.1)

    # ------------------------------------------------------------------ commit

    def _commit_batch(
        self,
        rt: ResolvedTable,
        batch_id: int,
        data: pa.Table,
        staged: StagedFiles,
        wm_from: Watermark,
        wm_to: Watermark,
        pk: list[str],
        res: TableResult,
    ) -> None:
        t = rt.cfg
        w = self.wh

        def work() -> None:
            if t.write_mode == "append":
                w.append_arrow(rt.target_schema, rt.target, data, staged)
            elif t.write_mode in ("replace", "scd2"):
                if res.batches == 0 and t.write_mode == "replace":
                    w.delete_all(rt.target_schema, rt.target)
                w.append_arrow(rt.target_schema, rt.target, data, staged)
            else:
                self._merge(rt, data, staged, pk)
            checkpoint("sync.before_commit")
            self.state.record_batch(
                table_key=rt.key,
                source_db=rt.source_db,
                batch_id=batch_id,
                run_id=self.run_id,
                row_count=data.num_rows,
                checksum=staged.checksum,
                files=staged.uris,
                manifest=staged.manifest_uri,
                wm_from=wm_from,
                wm_to=wm_to,
            )
            self.state.put(rt.key, rt.source_db, t.cdc.strategy, wm_to, batch_id, data.num_rows)

        w.run_transaction(work)  # retried whole on a serialization conflict
        checkpoint("sync.after_commit")
        if w.notices:
            res.warnings += w.notices
            w.notices.clear()
        res.rows += data.num_rows
        res.batches += 1
        self.reporter.progress(t.name, data.num_rows)

    def _merge(self, rt: ResolvedTable, data: pa.Table, staged: StagedFiles, pk: list[str]) -> None:
        merge_into(self.wh, rt.target_schema, rt.target, data, staged, pk)


def _stopped(name: str, res: TableResult, batch_id: int, whole: bool) -> str:
    """Why a table's sync stopped at a stop request, in this run's terms (the ledger's batch
    ids count every run)."""
    if whole:  # replace / scd2: one transaction, rolled back
        return f"{name}: stopped before its load committed; nothing of this run was loaded"
    n = res.batches
    return (
        f"{name}: stopped after {n} committed batch{'es' if n != 1 else ''} of this run "
        f"({res.rows:,} rows, up to ledger batch {batch_id}); the next sync goes on from there"
    )


def sync(
    cfg: Config,
    tables: list[str] | None = None,
    *,
    source_db: str | None = None,
    target_schema: str | None = None,
    reporter: Reporter | None = None,
) -> list[TableResult]:
    """Open the warehouse, sync the tables, close. The library entry point of `trackline sync`."""
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    syncer = Syncer(cfg, wh, reporter)
    try:
        return syncer.sync(tables, source_db=source_db, target_schema=target_schema)
    finally:
        syncer.close()
        wh.close()


def now_utc() -> dt.datetime:
    return utcnow()
