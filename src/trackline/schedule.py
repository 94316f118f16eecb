"""`trackline run`: the local scheduler for one machine.

Jobs and when they are due (`schedule:` in the config; hours are UTC):

    cycle        every `cycle_minutes` (15), on slots aligned to the clock (:00, :15, …)
    consolidate  every `consolidation_minutes` (60), when `consolidations:` declares any
                                                   → `trackline consolidate` (all of them)
    checks       daily at `checks_hour` (3)        → `trackline check`
    maintenance  daily at `maintenance_hour` (4)   → `Warehouse.maintenance` per raw, mart and
                                                     history table; the engine decides whether
                                                     VACUUM/ANALYZE is needed; processed rows of
                                                     consolidation staging tables purged after
                                                     their `staging_retention_seconds`

Rules:
- A job is due when its latest slot (the newest slot start at or before now) has not run.
  Missed slots collapse: after a long outage or a long job, each job runs ONCE for the latest
  slot, never once per missed slot.
- Jobs run one after the other in one thread, cycle first: runs never overlap. One scheduler
  per warehouse: `run` and `run --once` hold the warehouse lock ``scheduler`` (a second
  one exits with code 75), and a cycle holds ``cycle`` as a manual `trackline cycle` does.
- After every job but `checks`, the run-level checks (failed, slow and zero-row cycles,
  freshness) run and alert on what is new, or recovered, at once
  (`trackline.quality.run.run_level_alerts`); the daily `checks` job runs every check.
- A job running past `job_timeout_minutes` is stopped (SIGALRM raises `JobTimeout` in it: it
  unwinds like a Ctrl-C, its open transaction rolls back) and recorded as failed. If it
  cannot unwind (native code holding the GIL) the process ends HARD_STOP_GRACE_SECONDS later
  (exit code 1, tracebacks on stderr), and the next start marks the cycle killed.
- SIGTERM (or Ctrl-C) sets the stop flag: the step that is running finishes, nothing new
  starts, the scheduler exits with code 0 and says which signal it received. What was due
  and did not run stays due for the next start. A second Ctrl-C interrupts the running step:
  it is recorded as ``interrupted`` (its slot stays due) and the scheduler exits 130.
- `--once` runs what is due now, once, and exits (for cron).
- With DuckDB, `trackline run` keeps the database file open for its whole life (DuckDB
  admits one writing process), so other `trackline` commands on that warehouse wait or exit
  with code 75 meanwhile; `run --once` from cron holds it only while it works.
- Every job run is a row in ``trackline.runs`` (command ``schedule``, `table_key` = the job,
  `detail.slot` = the slot it ran for); that is also how a restarted scheduler knows which
  slots are done. A cycle records its own ``cycle`` run however it ends (failed,
  interrupted; killed, found by the next cycle), so the `runs.failed_cycle` check sees it.

Time is injected: `clock` returns naive UTC datetimes and `sleep(seconds)` waits, so tests
drive the scheduler with a fake clock and never sleep.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import faulthandler
import json
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from trackline.config import Config
from trackline.errors import Interrupted, JobTimeout, LockBusy, TracklineError
from trackline.load import Warehouse
from trackline.report import NullReporter, Reporter
from trackline.state import StateStore, pipeline_lock, utcnow
from trackline.sync import resolve

Clock = Callable[[], dt.datetime]
Sleeper = Callable[[float], None]
SlotFn = Callable[[dt.datetime], dt.datetime]

_EPOCH = dt.datetime(1970, 1, 1)
HARD_STOP_GRACE_SECONDS = 300
"""After a job's time limit, how long its unwinding may take before the process is ended."""
DAY = dt.timedelta(days=1)


def every(minutes: int) -> tuple[SlotFn, dt.timedelta]:
    """Slots every `minutes`, aligned to the clock: (latest slot at or before now, period)."""
    period = dt.timedelta(minutes=minutes)

    def slot(now: dt.datetime) -> dt.datetime:
        return _EPOCH + ((now - _EPOCH) // period) * period

    return slot, period


def daily_at(hour: int) -> tuple[SlotFn, dt.timedelta]:
    """One slot a day at `hour`:00 (UTC)."""

    def slot(now: dt.datetime) -> dt.datetime:
        today = now.replace(hour=hour, minute=0, second=0, microsecond=0)
        return today if now >= today else today - DAY

    return slot, DAY


@dataclass
class JobResult:
    status: str = "ok"
    """ok, failed, or busy (another run held the lock)."""
    rows: int = 0
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    name: str
    slot: SlotFn
    period: dt.timedelta
    run: Callable[[], JobResult]

    def next_slot(self, now: dt.datetime) -> dt.datetime:
        return self.slot(now) + self.period


BUSY_RETRY_SECONDS = 60
"""A job that found the pipeline's lock held runs again this long after, in the same slot."""


class Scheduler:
    def __init__(
        self,
        cfg: Config,
        wh: Warehouse,
        *,
        clock: Clock | None = None,
        sleep: Sleeper | None = None,
        reporter: Reporter | None = None,
        jobs: list[Job] | None = None,
        alerts: Callable[[], object] | None = None,
    ) -> None:
        self.cfg, self.wh = cfg, wh
        self.clock: Clock = clock or utcnow
        self._wake = threading.Event()
        self.sleep: Sleeper = sleep or self._wait
        self.reporter = reporter or NullReporter()
        self.state = StateStore(wh, cfg.state_schema)
        self.jobs = jobs if jobs is not None else default_jobs(cfg, wh, self.reporter)
        if alerts is None and jobs is None:
            alerts = lambda: alert_job(cfg, wh, self.reporter)  # noqa: E731
        self.alerts: Callable[[], object] | None = alerts
        """Run after every job but `checks` (which runs every check itself): the run-level
        checks and their alerts."""
        self._done: dict[str, dt.datetime] | None = None
        self._stop = False
        self.stop_signal: str | None = None
        """The signal that asked the scheduler to stop (SIGTERM, SIGINT), if one did."""
        self.running: str | None = None
        """The job running now (None between jobs)."""
        self.stopped_during: str | None = None
        """The job that was running when the stop signal came (None: the scheduler waited)."""
        self._said: queue.SimpleQueue[str | None] | None = None
        """While the stop signals are ours: what a handler has to say, for the announcer."""
        self.job_timeout = float(cfg.schedule.job_timeout_minutes * 60)
        self.results: dict[str, JobResult] = {}
        """The outcome of each job's latest run in this process."""
        self.retry_at: dict[str, dt.datetime] = {}
        """Jobs that found the pipeline's lock held (a manual run), and when their slot is
        tried again: their slot is not done (a daily check skipped because a manual cycle ran
        at 03:00 would otherwise wait a whole day)."""

    # ------------------------------------------------------------------ stopping

    def _wait(self, seconds: float) -> None:
        """The real sleeper: returns early when a stop is requested."""
        self._wake.wait(seconds)

    def request_stop(self, signum: int | None = None, frame: object = None) -> None:
        """Finish the running step, start nothing new (the SIGTERM / SIGINT handler). A second
        Ctrl-C does not wait: it interrupts the step (what it committed stays, G3; the step
        records itself as interrupted)."""
        if self._stop and signum == signal.SIGINT:
            raise Interrupted("received SIGINT twice", 130)
        if signum is not None and self.stop_signal is None:
            self.stop_signal = signal.Signals(signum).name
            self.stopped_during = self.running
            message = (
                f"received {self.stop_signal}: finishing the running step, then stopping "
                f"(job: {self.running})"
                if self.running
                else f"received {self.stop_signal} while waiting for the next slot: stopping"
            )
            if self._said is not None:
                # a signal handler runs between two bytecodes of the main thread, which may be
                # inside the reporter's own lock (writing a line): the reporter is called from
                # the announcing thread instead (SimpleQueue.put is safe in a handler)
                self._said.put(message)
            else:
                self.reporter.event("schedule", message)
        self._stop = True
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        said: queue.SimpleQueue[str | None] = queue.SimpleQueue()

        def announce() -> None:
            while (message := said.get()) is not None:
                self.reporter.event("schedule", message)

        announcer = threading.Thread(target=announce, name="signals", daemon=True)
        announcer.start()
        self._said = said
        old = {s: signal.signal(s, self.request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            self._said = None
            said.put(None)
            announcer.join(5)  # what a signal announced is written before the caller goes on

    # ------------------------------------------------------------------ slots

    def done_slots(self) -> dict[str, dt.datetime]:
        """The latest slot each job has run for (from run history, then kept in memory)."""
        if self._done is None:
            self.state.ensure()
            self._done = {}
            runs = self.wh.t(self.cfg.state_schema, "runs")
            for job in self.jobs:
                rows = self.wh.query(  # an interrupted or a busy job did not run its slot
                    f"SELECT detail FROM {runs} WHERE command = 'schedule' AND table_key = ? "
                    "AND status NOT IN ('interrupted', 'busy') ORDER BY started_at DESC LIMIT 1",
                    (job.name,),
                )
                slot = json.loads(rows[0][0] or "{}").get("slot") if rows else None
                if slot:
                    self._done[job.name] = dt.datetime.fromisoformat(slot)
        return self._done

    def due(self, now: dt.datetime | None = None) -> list[tuple[Job, dt.datetime]]:
        now = now or self.clock()
        done = self.done_slots()
        out = []
        for job in self.jobs:
            slot = job.slot(now)
            if job.name in self.retry_at and now < self.retry_at[job.name]:
                continue  # found the lock held: tried again at retry_at
            if job.name not in done or done[job.name] < slot:
                out.append((job, slot))
        return out

    # ------------------------------------------------------------------ running

    def run_due(self) -> list[str]:
        """Run each due job once, in order; stop early when a stop was requested."""
        ran = []
        for job, slot in self.due():
            if self._stop:
                break
            self._run_job(job, slot)
            ran.append(job.name)
        return ran

    def _run_job(self, job: Job, slot: dt.datetime) -> JobResult:
        started, t0 = utcnow(), time.monotonic()
        self.reporter.event(
            "schedule", f"{job.name}: starting (slot {slot:%Y-%m-%d %H:%M})", job=job.name
        )
        interrupted: Interrupted | None = None
        self.running = job.name
        try:
            with self._time_limit(job.name):
                result = job.run()
        except LockBusy as exc:
            result = JobResult("busy", error=str(exc))
        except TracklineError as exc:
            result = JobResult("failed", error=str(exc))
        except JobTimeout as exc:  # the job unwound (rolled back) like a stop request
            result = JobResult("failed", error=str(exc))
        except KeyboardInterrupt as exc:  # a second Ctrl-C: record the job, then stop
            interrupted = exc if isinstance(exc, Interrupted) else Interrupted("interrupted")
            result = JobResult("interrupted", error=str(interrupted))
        except Exception as exc:  # the scheduler outlives a failing job; it is recorded
            result = JobResult("failed", error=f"{type(exc).__name__}: {exc}")
        self.running = None
        seconds = time.monotonic() - t0
        self.results[job.name] = result
        self.retry_at.pop(job.name, None)
        if result.status == "busy":
            self.retry_at[job.name] = self.clock() + dt.timedelta(seconds=BUSY_RETRY_SECONDS)
        elif interrupted is None:
            self.done_slots()[job.name] = slot
        detail = {"slot": slot.isoformat(), **result.detail}
        if self._stop:
            detail["stop_requested"] = True
        self.state.record_run(
            _run_id(),
            "schedule",
            job.name,
            started,
            result.status,
            result.rows,
            seconds,
            result.error,
            detail,
        )
        kind = {"ok": "done", "failed": "failed"}.get(result.status, "warning")
        self.reporter.event(
            kind,
            f"{job.name}: {result.status} in {seconds:.1f}s"
            + (f": {result.error}" if result.error else "")
            + (f"; tried again in {BUSY_RETRY_SECONDS} s" if result.status == "busy" else ""),
            job=job.name,
        )
        if interrupted is not None:
            raise interrupted
        if self.alerts is not None and job.name != "checks":
            self._alert(job.name)
        return result

    def _alert(self, after: str) -> None:
        """Evaluate the run-level checks now and send what is new (or recovered)."""
        assert self.alerts is not None
        try:
            self.alerts()
        except LockBusy as exc:  # a manual cycle or check holds the lock: next time
            self.reporter.event("warning", f"run-level checks after {after} skipped: {exc}")
        except Exception as exc:  # alerting never stops the scheduler; it says why
            self.reporter.event(
                "warning", f"run-level checks after {after} failed: {type(exc).__name__}: {exc}"
            )

    @contextlib.contextmanager
    def _time_limit(self, name: str) -> Iterator[None]:
        """Raise `JobTimeout` in the job when it runs past `schedule.job_timeout_minutes`
        (SIGALRM: main thread only). Source reads have their own, shorter timeouts; this ends
        a job stuck anywhere else, with the same unwinding as a stop request."""
        limit = self.job_timeout
        if not limit or threading.current_thread() is not threading.main_thread():
            yield
            return

        def expired(signum: int, frame: object) -> None:
            raise JobTimeout(
                f"job {name!r} ran past its time limit of {limit:g} s "
                "(schedule.job_timeout_minutes) and was stopped"
            )

        old = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, limit)
        # A thread stuck in native code that keeps the GIL (connectorx waiting on a silent
        # network) never lets the handler run: then a C-level watchdog ends the process,
        # with every thread's traceback on stderr; the next start marks the cycle killed.
        faulthandler.dump_traceback_later(limit + HARD_STOP_GRACE_SECONDS, exit=True)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)

    def run_once(self) -> list[str]:
        """What is due now, once (for cron); holds this pipeline's ``scheduler`` lock."""
        with self.wh.lock(pipeline_lock(self.cfg.state_schema, "scheduler"), 0), self._signals():
            return self.run_due()

    def run_forever(self, until: dt.datetime | None = None) -> None:
        """Run due jobs, sleep until the next slot, repeat until stopped (or `until`)."""
        with self.wh.lock(pipeline_lock(self.cfg.state_schema, "scheduler"), 0), self._signals():
            self.reporter.event(
                "schedule", "scheduler started: " + ", ".join(j.name for j in self.jobs)
            )
            while not self._stop:
                self.run_due()
                now = self.clock()
                if self._stop or (until is not None and now >= until):
                    break
                if self.due(now):  # a slot passed while a long job ran: run it now, once
                    continue
                wake = min(
                    [job.next_slot(now) for job in self.jobs]
                    + [at for at in self.retry_at.values() if at > now]
                )
                if until is not None:
                    wake = min(wake, until)
                self.sleep(max(0.0, (wake - now).total_seconds()))
        # after the signals' announcer has said why (it was written after this line before)
        self.reporter.event("schedule", "scheduler stopped")


def _run_id() -> str:
    return uuid.uuid4().hex[:16]


# --------------------------------------------------------------------------- the jobs


def default_jobs(cfg: Config, wh: Warehouse, reporter: Reporter) -> list[Job]:
    s = cfg.schedule
    cycle_slot, cycle_period = every(s.cycle_minutes)
    checks_slot, checks_period = daily_at(s.checks_hour)
    maint_slot, maint_period = daily_at(s.maintenance_hour)
    jobs = [Job("cycle", cycle_slot, cycle_period, lambda: cycle_job(cfg, wh, reporter))]
    if cfg.consolidations:
        cons_slot, cons_period = every(s.consolidation_minutes)
        jobs.append(
            Job("consolidate", cons_slot, cons_period, lambda: consolidate_job(cfg, wh, reporter))
        )
    return [
        *jobs,
        Job("checks", checks_slot, checks_period, lambda: checks_job(cfg, wh, reporter)),
        Job("maintenance", maint_slot, maint_period, lambda: maintenance_job(cfg, wh, reporter)),
    ]


def cycle_job(cfg: Config, wh: Warehouse, reporter: Reporter) -> JobResult:
    from trackline.marts.cycle import run_cycle_on

    summary = run_cycle_on(cfg, wh, reporter)  # records its run row, however it ends
    return JobResult(
        "ok" if summary.ok else "failed",
        sum(r.rows for r in summary.sync),
        None if summary.ok else "a table failed to sync (see the cycle's run)",
        {"run_id": summary.run_id},
    )


def consolidate_job(cfg: Config, wh: Warehouse, reporter: Reporter) -> JobResult:
    """Every consolidation, one after the other (each records its own ``consolidate`` run;
    each holds the cycle's lock, so none overlaps a cycle)."""
    from trackline.consolidate import consolidate

    results = consolidate(cfg, wh, None, reporter)
    failed = [r for r in results if not r.ok]
    return JobResult(
        "failed" if failed else "ok",
        sum(r.merged for r in results),
        "; ".join(f"{r.name}: {r.error}" for r in failed) or None,
        {"run_ids": {r.name: r.run_id for r in results}},
    )


def alert_job(cfg: Config, wh: Warehouse, reporter: Reporter) -> None:
    """After each job: the run-level checks, alerting on what is new or recovered."""
    from trackline.quality.run import run_level_alerts

    run_level_alerts(cfg, wh, reporter)


def checks_job(cfg: Config, wh: Warehouse, reporter: Reporter) -> JobResult:
    from trackline.quality.run import run_checks

    report = run_checks(cfg, wh, reporter)
    failed = [r.name for r in report.results if r.blocking]
    return JobResult(
        "ok" if report.ok else "failed",
        len(report.failed),
        ("blocking checks failed: " + ", ".join(failed)) if failed else None,
        {"run_id": report.run_id, "failed": [r.name for r in report.failed]},
    )


def maintenance_tables(cfg: Config, wh: Warehouse) -> list[tuple[str, str]]:
    """Raw, mart, history and consolidation tables that exist (each once)."""
    out: list[tuple[str, str]] = []
    for t in cfg.tables:
        rt = resolve(cfg, t, None, None)
        out.append((rt.target_schema, rt.target))
    for g in cfg.marts:
        marts = [(g.anchor.table, g.anchor.history_name)] + [
            (f.table, f.history_name) for f in g.followers
        ]
        for mart, hist in marts:
            out.append((g.schema_, mart))
            out += [(g.schema_, h) for h in wh.list_tables(g.schema_, f"{g.history_prefix}{hist}_")]
    for c in cfg.consolidations:
        out += [(c.target_schema, c.target_table), (c.target_schema, c.staging)]
    seen = dict.fromkeys(out)
    return [st for st in seen if wh.table_exists(*st)]


def maintenance_job(cfg: Config, wh: Warehouse, reporter: Reporter) -> JobResult:
    from trackline.consolidate.merge import purge_staging

    ran: dict[str, list[str]] = {}
    errors: list[str] = []
    purged: dict[str, int] = {}
    for c in cfg.consolidations:  # first, so the VACUUM below reclaims the space
        try:
            n = purge_staging(wh, c, utcnow())
        except TracklineError as exc:
            errors.append(f"{c.target_schema}.{c.staging}: {exc}")
            continue
        if n:
            purged[f"{c.target_schema}.{c.staging}"] = n
            reporter.event(
                "maintenance", f"{c.target_schema}.{c.staging}: {n:,} processed rows purged"
            )
    for schema, table in maintenance_tables(cfg, wh):
        try:
            done = wh.maintenance(schema, table)  # the engine decides whether it is needed
        except TracklineError as exc:
            errors.append(f"{schema}.{table}: {exc}")
            continue
        if done:
            ran[f"{schema}.{table}"] = done
            reporter.event("maintenance", f"{schema}.{table}: {'; '.join(done)}")
    detail: dict[str, Any] = {"ran": ran}
    if purged:
        detail["purged"] = purged
    return JobResult("failed" if errors else "ok", len(ran), "; ".join(errors) or None, detail)
