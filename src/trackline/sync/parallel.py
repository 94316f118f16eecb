"""Several tables synced at once (`defaults.workers`), with the end state of one after another.

Each worker thread takes the next table from the config's list and syncs it with its own
`Syncer`: its own source connection and its own warehouse connection (`Warehouse.sibling`),
so each table keeps its usual rules (its ``sync:<table>`` lock, one transaction per batch,
its own ledger rows and watermark). Tables share nothing but the run id, so the order in
which they finish changes nothing in the warehouse: the result equals ``workers: 1``.

DuckDB opens its file once per process: the workers get cursors on the one open database,
each with its own transactions (see `DuckDB.sibling`), so two tables' loads overlap there too.

A stop (Ctrl-C, SIGTERM, a job's time limit) arrives in the main thread, which waits here:
it asks every worker to stop after the batch it is committing (`Syncer.stop_requested`: the
worker raises `Interrupted` there, its table is recorded interrupted), waits for them, then
re-raises; a second Ctrl-C does not wait. (Raising in a thread from outside could land in
the middle of a driver call or a lock's bookkeeping; a batch boundary is a clean place, and
a batch is bounded by `batch_size`.) An error that ends a run (`InjectedFault`, `LockBusy`)
in one worker stops the others the same way and is raised once they have stopped. Results
come back in the config's order.

Steps after the sync (`Step`, the cycle's marts) can join the same workers: each starts once
the tables and steps it `needs` have finished, before any table still waiting, and the tables
some step needs are synced first: a retention group's marts build while the tables none of
them reads still sync (`trackline.marts.cycle.mart_steps`). A step runs on its worker's
warehouse connection, and stops between its transactions when the run is asked to stop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trackline.config import Config
from trackline.dims.rowhash import release_thread_duckdb
from trackline.errors import ConfigError
from trackline.load import Warehouse
from trackline.report import NullReporter, Reporter
from trackline.sync.follow import drivers_first
from trackline.sync.syncer import Syncer
from trackline.sync.tables import TableResult, resolve


@dataclass
class Step:
    """Work after the sync on a worker: `run(warehouse, stop)` once every table or step named
    in `needs` has finished (a table whatever its status, as in a serial cycle). `stop` is set
    when the run is asked to stop: a step checks it between its transactions."""

    name: str
    needs: frozenset[str]
    run: Callable[[Warehouse, threading.Event], Any]
    result: Any = field(default=None, init=False)


class ParallelSyncer:
    """The `Syncer` interface (`sync`, `results`, `close`) over `workers` threads."""

    def __init__(
        self,
        cfg: Config,
        wh: Warehouse,
        reporter: Reporter | None = None,
        workers: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.wh = wh
        self.reporter = reporter or NullReporter()
        self.workers = workers or cfg.defaults.workers
        self._syncers: list[Syncer] = []
        self._own: list[Syncer] = []
        self._done: list[TableResult] = []
        self._order: dict[str, int] = {}

    @property
    def results(self) -> list[TableResult]:
        """This run's tables so far (live, in the config's order): what an interrupted cycle
        counts as committed."""
        out = {id(r): r for r in self._done}
        for s in self._syncers:  # the table each worker is on (its Syncer keeps its last call's)
            out.update((id(r), r) for r in s.results)
        return sorted(out.values(), key=lambda r: self._order.get(r.table, len(self._order)))

    def close(self) -> None:
        """Close what the caller's thread opened (workers close their own, in their thread:
        a source connection may be bound to it)."""
        for s in self._own:
            s.close()

    def sync(
        self,
        names: list[str] | None = None,
        *,
        source_db: str | None = None,
        target_schema: str | None = None,
        run_id: str | None = None,
        after: Sequence[Step] = (),
    ) -> list[TableResult]:
        """Sync `names` (every table) and run the `after` steps (listed so that each comes
        after what it needs: one worker runs them in that order, after every table)."""
        tables = names or [t.name for t in self.cfg.tables]
        if not tables:
            raise ConfigError("no tables to sync: list them under `tables:` or pass --tables")
        self._order = {n: i for i, n in enumerate(tables)}
        workers = min(self.workers, len(tables))
        if workers <= 1:
            one = Syncer(self.cfg, self.wh, self.reporter)
            self._syncers.append(one)
            self._own.append(one)
            out = one.sync(tables, source_db=source_db, target_schema=target_schema, run_id=run_id)
            for step in after:  # in the order given (each after what it needs)
                step.result = step.run(self.wh, threading.Event())
            return out
        first = Syncer(self.cfg, self.wh, self.reporter)
        first.state.ensure()  # state tables created once, before the workers race for them
        schemas = {
            resolve(self.cfg, self.cfg.table(n), source_db, target_schema).target_schema
            for n in tables
        }

        def create_schemas() -> None:
            for schema in sorted(schemas):
                self.wh.ensure_schema(schema)

        self.wh.run_transaction(create_schemas)
        run_id = run_id or first._run_id()
        # a following table (`cdc.follow`) starts once its driver has finished in this run:
        # its follow pass reads the driver's new batches, as one table after the other does
        pending = [t.name for t in drivers_first([self.cfg.table(n) for n in tables])]
        steps = {s.name: s for s in after}
        first_need: dict[str, int] = {}  # table → the first step (in `after`'s order) needing it
        for i, s in enumerate(after):
            for n in s.needs:
                first_need.setdefault(n, i)
        # stable: the tables the earliest steps wait for first (an anchor's before its followers')
        pending.sort(key=lambda n: first_need.get(n, len(after)))
        waiting = list(steps)  # steps first: a step that is ready goes before a table
        unfinished = set(pending) | set(waiting)
        take = threading.Lock()
        stop = threading.Event()
        siblings: list[Warehouse] = []
        errors: list[BaseException] = []

        def worker(syncer: Syncer, finished: threading.Event) -> None:
            try:
                while not stop.is_set():
                    with take:
                        if stop.is_set() or (not pending and not waiting):
                            return
                        step = next(
                            (steps[n] for n in waiting if not steps[n].needs & unfinished), None
                        )
                        name = None
                        if step is not None:
                            waiting.remove(step.name)
                        else:
                            name = next(
                                (n for n in pending if _ready(self.cfg, n, unfinished)), None
                            )
                            if name is not None:
                                pending.remove(name)
                    if step is None and name is None:  # all wait for tables still syncing
                        stop.wait(0.05)
                        continue
                    key = step.name if step is not None else name
                    assert key is not None
                    try:
                        if step is not None:
                            step.result = step.run(syncer.wh, stop)
                        else:
                            synced = syncer.sync(
                                [key],
                                source_db=source_db,
                                target_schema=target_schema,
                                run_id=run_id,
                            )
                            with take:
                                self._done += synced
                    except BaseException:
                        # stop first: what waits for `key` must not start after its failure
                        _stop_all(stop, self._syncers)
                        raise
                    finally:
                        with take:
                            unfinished.discard(key)
            except BaseException as exc:  # handed to the waiting thread, which raises it
                with take:
                    errors.append(exc)
                _stop_all(stop, self._syncers)
            finally:
                syncer.close()  # in its thread: a source connection may be bound to it (sqlite3)
                release_thread_duckdb()  # not at thread exit, which may be the process's exit
                finished.set()

        threads: list[threading.Thread] = []
        finished: list[threading.Event] = []
        try:
            self._syncers.append(first)
            for _ in range(workers - 1):
                other = self.wh.sibling()
                siblings.append(other)
                self._syncers.append(Syncer(self.cfg, other, self.reporter))
            for i, syncer in enumerate(self._syncers):
                # daemon: a worker stuck in native code must not keep the process alive
                done = threading.Event()
                t = threading.Thread(
                    target=worker, args=(syncer, done), name=f"sync-{i}", daemon=True
                )
                threads.append(t)
                finished.append(done)
                t.start()
            try:
                _wait(finished)
            except BaseException:  # Ctrl-C, SIGTERM, a time limit, in this (the caller's) thread
                _stop_all(stop, self._syncers)
                _wait(finished)  # each ends after the batch it commits; a second Ctrl-C won't wait
                _ended(threads)
                raise
            _ended(threads)
        finally:
            for done, w in zip(finished[1:], siblings, strict=False):
                if done.is_set():
                    w.close()
        if errors:
            raise errors[0]
        return self.results


def _ready(cfg: Config, name: str, unfinished: set[str]) -> bool:
    driver = cfg.table(name).cdc.follow
    return not driver or driver not in unfinished


def _stop_all(stop: threading.Event, syncers: list[Syncer]) -> None:
    stop.set()
    for s in syncers:
        s.stop_requested.set()


def _ended(threads: list[threading.Thread]) -> None:
    """Let each worker, done with its work, end: a daemon thread still tearing down when the
    process exits (right after a stop request) frees native objects during the interpreter's
    shutdown, which aborts the process (exit 134, "FATAL: exception not rethrown") instead of
    exiting with the signal's code."""
    for t in threads:
        t.join(timeout=5)


def _wait(finished: list[threading.Event]) -> None:
    """Wait for every worker. (Not `Thread.join`: a join that a signal interrupts can mark a
    running thread as stopped in CPython 3.11, and a second wait would then not wait.)"""
    for done in finished:
        while not done.wait(0.2):  # short waits: a signal handler still runs in this thread
            pass
