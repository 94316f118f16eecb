"""`trackline run`: a job that finds the pipeline's lock held (a manual run) stays due.

Before: its slot was recorded as done, so a manual cycle running at the checks' hour made the
scheduler skip that day's checks (and a restarted scheduler believed the same from the run
history). Now the job is tried again BUSY_RETRY_SECONDS later in the same slot, and a busy
run in the history does not count as the slot's run.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.conftest import MySQLDb
from tests.integration.synctools import make_config
from trackline.config import DuckDBWarehouse
from trackline.load import open_warehouse
from trackline.schedule import BUSY_RETRY_SECONDS, Job, JobResult, Scheduler


def test_a_job_that_found_the_lock_held_runs_again_in_its_slot(
    mysql_db: MySQLDb, tmp_path: Path
) -> None:
    cfg = make_config(mysql_db, DuckDBWarehouse(path=tmp_path / "wh.duckdb"), tmp_path, [])
    now = [dt.datetime(2026, 3, 2, 3, 0, 5)]
    outcomes = [JobResult("busy", error="another trackline run holds the lock"), JobResult()]
    runs: list[dt.datetime] = []

    def checks() -> JobResult:
        runs.append(now[0])
        return outcomes.pop(0)

    def daily(t: dt.datetime) -> dt.datetime:
        return t.replace(hour=3, minute=0, second=0, microsecond=0)

    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += dt.timedelta(seconds=seconds)

    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        job = Job("checks", daily, dt.timedelta(days=1), checks)
        s = Scheduler(cfg, wh, clock=lambda: now[0], sleep=sleep, jobs=[job], alerts=lambda: None)
        s.run_forever(until=dt.datetime(2026, 3, 2, 3, 30))
        # busy at 03:00:05, run again one retry later, then nothing until the next day
        assert runs == [
            dt.datetime(2026, 3, 2, 3, 0, 5),
            dt.datetime(2026, 3, 2, 3, 0, 5) + dt.timedelta(seconds=BUSY_RETRY_SECONDS),
        ]
        assert s.results["checks"].status == "ok"
        assert slept[0] == BUSY_RETRY_SECONDS

        # a scheduler started after a busy run (its history says busy) still runs the slot
        outcomes[:] = [JobResult("busy", error="held"), JobResult()]
        now[0] = dt.datetime(2026, 3, 3, 3, 0, 1)
        assert Scheduler(cfg, wh, clock=lambda: now[0], jobs=[job], alerts=lambda: None).run_due()
        restarted = Scheduler(cfg, wh, clock=lambda: now[0], jobs=[job], alerts=lambda: None)
        assert [j.name for j, _ in restarted.due()] == ["checks"]
        restarted.run_due()
        assert restarted.results["checks"].status == "ok"
        assert restarted.due() == []
    finally:
        wh.close()
