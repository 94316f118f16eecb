"""The local scheduler under a fake clock: no test sleeps.

Slots, missed slots (run once), daily jobs at their hour, no overlap / one instance, SIGTERM
in the middle of a step (it finishes, nothing new starts, the next run does what is left),
and a cycle killed half-way that the next slot completes. DuckDB in a temp folder.
"""

from __future__ import annotations

import datetime as dt
import faulthandler
import io
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.quality_world import ECS, UTI, UTS, World, day
from trackline import faults
from trackline.config import Config, DuckDBWarehouse
from trackline.errors import LockBusy
from trackline.load import Warehouse, open_warehouse
from trackline.quality.run import run_checks
from trackline.report import LogReporter, NullReporter
from trackline.schedule import Job, JobResult, Scheduler, daily_at, every

START = dt.datetime(2026, 3, 2, 0, 0)


class FakeClock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += dt.timedelta(seconds=seconds)

    def advance(self, **kw: float) -> None:
        self.now += dt.timedelta(**kw)


class Recorder:
    """Fake jobs: record (job, clock) on every run; optionally take time or act inside."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[tuple[str, dt.datetime]] = []
        self.active = 0
        self.max_active = 0
        self.duration: dict[str, list[dt.timedelta]] = {}
        self.inside: dict[str, Any] = {}

    def job(self, name: str, slot_and_period: tuple[Any, dt.timedelta]) -> Job:
        slot, period = slot_and_period

        def run() -> JobResult:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            try:
                self.calls.append((name, self.clock.now))
                if name in self.inside:
                    self.inside[name]()
                took = self.duration.get(name)
                if took:
                    self.clock.now += took.pop(0)
                return JobResult()
            finally:
                self.active -= 1

        return Job(name, slot, period, run)

    def times(self, name: str) -> list[str]:
        return [t.strftime("%d %H:%M") for n, t in self.calls if n == name]


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return Config.model_validate(
        {
            "sources": {"s": {"type": "sqlite", "path": str(tmp_path / "none.db")}},
            "warehouse": {"type": "duckdb", "path": str(tmp_path / "wh.duckdb")},
        }
    )


@pytest.fixture
def wh(cfg: Config) -> Iterator[Warehouse]:
    w = open_warehouse(cfg.warehouse)
    w.connect()
    try:
        yield w
    finally:
        w.close()


def make(cfg: Config, wh: Warehouse, clock: FakeClock) -> tuple[Scheduler, Recorder]:
    rec = Recorder(clock)
    s = cfg.schedule
    jobs = [
        rec.job("cycle", every(s.cycle_minutes)),
        rec.job("checks", daily_at(s.checks_hour)),
        rec.job("maintenance", daily_at(s.maintenance_hour)),
    ]
    return Scheduler(cfg, wh, clock=clock, sleep=clock.sleep, jobs=jobs), rec


def test_slots() -> None:
    slot, period = every(15)
    assert slot(dt.datetime(2026, 3, 2, 10, 14, 59)) == dt.datetime(2026, 3, 2, 10, 0)
    assert slot(dt.datetime(2026, 3, 2, 10, 15)) == dt.datetime(2026, 3, 2, 10, 15)
    assert period == dt.timedelta(minutes=15)
    daily, _ = daily_at(3)
    assert daily(dt.datetime(2026, 3, 2, 2, 59)) == dt.datetime(2026, 3, 1, 3, 0)
    assert daily(dt.datetime(2026, 3, 2, 3, 0)) == dt.datetime(2026, 3, 2, 3, 0)


def test_due_jobs_run_once_per_slot_in_order(cfg: Config, wh: Warehouse) -> None:
    clock = FakeClock(START + dt.timedelta(hours=2, minutes=50))
    sched, rec = make(cfg, wh, clock)
    # never run before: everything is due once, cycle first
    assert sched.run_due() == ["cycle", "checks", "maintenance"]
    assert sched.run_due() == []
    clock.advance(minutes=10)  # 03:00: a new cycle slot and the daily checks slot
    assert sched.run_due() == ["cycle", "checks"]
    clock.advance(minutes=14)
    assert sched.run_due() == []
    # a restarted scheduler reads the done slots back from trackline.runs
    again, _ = make(cfg, wh, clock)
    assert again.run_due() == []
    rows = wh.query(
        "SELECT table_key, status, detail FROM trackline.runs WHERE command = 'schedule' "
        "ORDER BY started_at"
    )
    assert [(r[0], r[1]) for r in rows] == [
        ("cycle", "ok"),
        ("checks", "ok"),
        ("maintenance", "ok"),
        ("cycle", "ok"),
        ("checks", "ok"),
    ]
    assert json.loads(rows[-1][2])["slot"] == "2026-03-02T03:00:00"


def test_missed_slots_run_once_not_n_times(cfg: Config, wh: Warehouse) -> None:
    clock = FakeClock(START + dt.timedelta(hours=5))
    sched, rec = make(cfg, wh, clock)
    rec.duration["cycle"] = [dt.timedelta(minutes=50)]  # the first cycle overruns 3 slots
    sched.run_forever(until=START + dt.timedelta(hours=6, minutes=1))
    assert rec.times("cycle") == ["02 05:00", "02 05:50", "02 06:00"]
    assert rec.max_active == 1  # never two runs at once
    # downtime: the machine was off for 7 hours; one catch-up cycle, not 28
    clock.advance(hours=7)
    sched.run_forever(until=clock.now + dt.timedelta(minutes=1))
    assert rec.times("cycle")[-2:] == ["02 06:00", "02 13:01"]
    # the scheduler slept until the next slot instead of polling
    assert all(s > 0 for s in clock.slept)


def test_daily_jobs_run_at_their_hour(cfg: Config, wh: Warehouse) -> None:
    clock = FakeClock(START + dt.timedelta(hours=5))  # after today's 03:00 and 04:00
    sched, rec = make(cfg, wh, clock)
    sched.run_forever(until=START + dt.timedelta(days=2, hours=5))
    assert rec.times("checks") == ["02 05:00", "03 03:00", "04 03:00"]
    assert rec.times("maintenance") == ["02 05:00", "03 04:00", "04 04:00"]
    assert len(rec.times("cycle")) == 2 * 24 * 4 + 1


def test_one_scheduler_per_pipeline(cfg: Config, wh: Warehouse) -> None:
    clock = FakeClock(START)
    sched, rec = make(cfg, wh, clock)
    second, _ = make(cfg, wh, clock)
    seen: list[str] = []

    def try_second() -> None:
        with pytest.raises(LockBusy):
            second.run_once()
        seen.append("refused")

    rec.inside["cycle"] = try_second
    sched.run_once()
    assert seen == ["refused"]
    assert second.run_once() == []  # free again once the first is done; nothing is due


def test_sigterm_finishes_the_step_then_stops_and_the_next_run_does_the_rest(
    cfg: Config, wh: Warehouse
) -> None:
    clock = FakeClock(START + dt.timedelta(hours=3))
    sched, rec = make(cfg, wh, clock)
    finished: list[str] = []

    def sigterm_mid_cycle() -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to the scheduler's handler
        finished.append("rest of the cycle")  # ... and the step still runs to its end

    rec.inside["cycle"] = sigterm_mid_cycle
    before = signal.getsignal(signal.SIGTERM)
    sched.run_forever()  # no `until`: only the stop request ends it
    assert finished == ["rest of the cycle"]
    assert [n for n, _ in rec.calls] == ["cycle"]  # checks and maintenance never started
    assert signal.getsignal(signal.SIGTERM) == before  # handler restored
    detail = wh.scalar(
        "SELECT detail FROM trackline.runs WHERE command = 'schedule' AND table_key = 'cycle'"
    )
    assert json.loads(detail)["stop_requested"] is True
    # the next run (e.g. `trackline run --once`) does what was due and not done
    nxt, rec2 = make(cfg, wh, clock)
    assert nxt.run_once() == ["checks", "maintenance"]


class SignalMidWrite(io.StringIO):
    """A log stream that receives SIGTERM while the reporter writes the running step's line:
    the handler runs in the main thread, inside the reporter's lock."""

    def __init__(self) -> None:
        super().__init__()
        self.fired = False

    def write(self, text: str) -> int:
        if not self.fired and "running step" in text:
            self.fired = True
            os.kill(os.getpid(), signal.SIGTERM)
        return super().write(text)


def test_a_stop_signal_that_arrives_while_a_line_is_written_is_announced_not_deadlocked(
    cfg: Config, wh: Warehouse
) -> None:
    clock = FakeClock(START + dt.timedelta(hours=3))
    rec = Recorder(clock)
    stream = SignalMidWrite()
    reporter = LogReporter("plain", stream)
    rec.inside["cycle"] = lambda: reporter.event("info", "a line of the running step")
    sched = Scheduler(
        cfg,
        wh,
        clock=clock,
        sleep=clock.sleep,
        reporter=reporter,
        jobs=[rec.job("cycle", every(15)), rec.job("checks", daily_at(cfg.schedule.checks_hour))],
    )

    # a handler waiting on the lock its own thread holds never returns: end the process with
    # every thread's traceback instead of hanging the suite (a crashed worker fails the run)
    faulthandler.dump_traceback_later(60, exit=True)
    try:
        sched.run_forever()
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert stream.fired
    assert [n for n, _ in rec.calls] == ["cycle"]  # the step finished; nothing new started
    text = stream.getvalue()
    assert "a line of the running step" in text
    assert "received SIGTERM: finishing the running step, then stopping" in text


def test_a_failing_job_is_recorded_and_the_scheduler_goes_on(cfg: Config, wh: Warehouse) -> None:
    clock = FakeClock(START + dt.timedelta(hours=5))
    sched, rec = make(cfg, wh, clock)

    def boom() -> None:
        raise RuntimeError("disk full")

    rec.inside["checks"] = boom
    assert sched.run_due() == ["cycle", "checks", "maintenance"]
    rows = dict(wh.query("SELECT table_key, error FROM trackline.runs WHERE status = 'failed'"))
    assert rows == {"checks": "RuntimeError: disk full"}


# --------------------------------------------------------------------------- real jobs


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path, DuckDBWarehouse(path=tmp_path / "world.duckdb")).build()
    try:
        yield w
    finally:
        w.close()


class KillOnEvent(NullReporter):
    """Sends SIGTERM to this process when the cycle reports its first mart event."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = False

    def event(self, kind: str, message: str, **fields: Any) -> None:
        super().event(kind, message, **fields)
        if not self.sent and kind == "done":  # a table finished syncing: mid-cycle
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


def marts(w: World) -> dict[str, int]:
    return {t: int(w.wh.scalar(f"SELECT COUNT(*) FROM {w.t(t)}")) for t in (UTI, ECS, UTS)}


def test_sigterm_mid_cycle_with_the_real_jobs(world: World) -> None:
    world.touch(30, day(46) + 60)
    world.touch(31, day(46) + 120)
    world.clock(day(47))
    clock = FakeClock(START + dt.timedelta(hours=3, minutes=5))
    reporter = KillOnEvent()
    sched = Scheduler(world.cfg, world.wh, clock=clock, sleep=clock.sleep, reporter=reporter)
    sched.run_forever()
    assert reporter.sent
    # the cycle that got SIGTERM ran to its end: both new orders are in every mart
    keys = {r[0] for r in world.wh.query(f"SELECT order_id FROM {world.t(UTI)}")}
    assert {30, 31} <= keys
    done = world.wh.query("SELECT table_key, status FROM trackline.runs WHERE command = 'schedule'")
    assert done == [("cycle", "ok")]
    # the next start runs the checks and the maintenance that were due, and they pass
    nxt = Scheduler(world.cfg, world.wh, clock=clock, sleep=clock.sleep)
    assert nxt.run_once() == ["checks", "maintenance"]
    results = world.wh.query(
        "SELECT check_name, status FROM trackline.check_results WHERE status <> 'pass'"
    )
    assert results == []


def test_a_cycle_killed_half_way_is_completed_by_the_next_slot(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.touch(40, day(46) + 60)
    world.touch(2, day(46) + 90)  # an existing order moves too
    world.clock(day(47))
    clock = FakeClock(START + dt.timedelta(hours=5, minutes=1))
    sched = Scheduler(world.cfg, world.wh, clock=clock, sleep=clock.sleep)
    faults.reset()
    monkeypatch.setenv("TRACKLINE_FAIL_AT", "mart.after_archive")
    assert sched.run_due() == ["cycle", "checks", "maintenance"]
    monkeypatch.delenv("TRACKLINE_FAIL_AT")
    failed = world.wh.query(
        "SELECT command, status FROM trackline.runs WHERE status = 'failed' ORDER BY command"
    )
    assert ("cycle", "failed") in failed  # recorded, so runs.failed_cycle sees it

    def keys(table: str) -> set[int]:
        return {r[0] for r in world.wh.query(f"SELECT order_id FROM {world.t(table)}")}

    # half-way: the anchor committed, its one_per_key follower was killed mid-transaction
    assert 40 in keys(UTI) and 40 not in keys(ECS)
    clock.advance(minutes=15)
    assert sched.run_due() == ["cycle"]
    assert 40 in keys(UTI) and 40 in keys(ECS) and 40 in keys(UTS)
    assert world.wh.scalar(f"SELECT update_time FROM {world.t(UTI)} WHERE order_id = 2") == (
        day(46) + 90
    )
    sizes = marts(world)
    report = run_checks(world.cfg, world.wh)
    # the failed cycle was reported right after it ran (run-level checks after each job),
    # and the ok cycle of the next slot resolved it: the failure is on record, not open
    assert [r.name for r in report.results if r.failed] == []
    exc = world.wh.query(
        "SELECT key_value, status FROM trackline.check_exceptions "
        "WHERE check_name = 'runs.failed_cycle'"
    )
    assert [s for _, s in exc] == ["resolved"]
    assert marts(world) == sizes


def test_a_job_past_its_time_limit_is_stopped_recorded_failed_and_the_next_slot_runs(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cycle stuck after its first committed batch (waiting on an event nobody sets) is
    ended by the job time limit: rolled back where it was, recorded as failed with what it
    committed, and the scheduler goes on."""
    import threading

    import trackline.sync.syncer as syncer

    for order in (40, 41, 42):
        world.touch(order, day(46) + 60 + order)
    world.clock(day(47))
    stuck = threading.Event()
    real = syncer.checkpoint

    def hang(step: str) -> None:
        real(step)
        if step == "sync.after_commit":
            # the limit runs out while the job is stuck here: bring its timer forward
            signal.setitimer(signal.ITIMER_REAL, 0.01)
            stuck.wait()  # interrupted by the time limit's signal

    monkeypatch.setattr(syncer, "checkpoint", hang)
    clock = FakeClock(START + dt.timedelta(hours=5, minutes=1))
    # one table after the other: the signal reaches the thread that is stuck (tables synced
    # in parallel are stopped by test_cycle_workers)
    one = world.cfg.model_copy(
        update={"defaults": world.cfg.defaults.model_copy(update={"workers": 1})}
    )
    sched = Scheduler(one, world.wh, clock=clock, sleep=clock.sleep)
    assert sched.run_due() == ["cycle", "checks", "maintenance"]
    result = sched.results["cycle"]
    assert result.status == "failed"
    assert "ran past its time limit" in (result.error or "")
    cycle = world.wh.query(
        "SELECT run_id, status, rows_moved, error FROM trackline.runs WHERE command = 'cycle' "
        "ORDER BY started_at DESC LIMIT 1"
    )[0]
    assert cycle[1] == "failed" and "schedule.job_timeout_minutes" in cycle[3]
    committed = world.wh.scalar(
        "SELECT SUM(row_count) FROM trackline.batches WHERE run_id = ?", (cycle[0],)
    )
    assert cycle[2] == committed == 3  # uti's one batch of three orders
    assert sched.results["maintenance"].status == "ok"  # the scheduler went on

    monkeypatch.setattr(syncer, "checkpoint", real)
    clock.advance(minutes=15)
    assert sched.run_due() == ["cycle"]
    assert sched.results["cycle"].status == "ok", sched.results["cycle"]
    keys = {r[0] for r in world.wh.query(f"SELECT order_id FROM {world.t(ECS)}")}
    assert {40, 41, 42} <= keys
