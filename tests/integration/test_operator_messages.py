"""What the operator is told, in normal and failure situations: each test pins a message
that was wrong, incomplete or missing from `--json` (see CHANGELOG), on a small demo
pipeline (SQLite source, DuckDB) or the suite's PostgreSQL server.

One demo run is shared; each test works on its own copy of its folder."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import MySQLDb, PgDb
from tests.integration.backfill_world import World, new_world
from tests.integration.synctools import write_config
from trackline.backfill.legacy import LegacyTable
from trackline.cli import main
from trackline.config import DuckDBWarehouse, PostgresWarehouse, load_config
from trackline.demo.generator import DemoSpec
from trackline.demo.run import run_demo
from trackline.errors import Interrupted, LockBusy, SourceError
from trackline.extract import Relation, open_source
from trackline.load import open_warehouse
from trackline.marts.cycle import finish_step, sync_step
from trackline.marts.exceptions import Exceptions
from trackline.quality.alerts import compose
from trackline.quality.checks import STATE_EXCEPTIONS
from trackline.quality.results import CheckResult
from trackline.quality.status import status_lines
from trackline.report import NullReporter
from trackline.sync.parallel import ParallelSyncer
from trackline.sync.syncer import Syncer


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    res = run_demo(
        tmp_path_factory.mktemp("demo") / "d", DemoSpec(days=6, orders_per_day=10), step_days=3
    )
    return res.workdir


def _copy(demo_dir: Path, tmp_path: Path, **changes: Any) -> Path:
    """A copy of the demo's folder; `changes` are merged into its config (top-level keys)."""
    work = tmp_path / "w"
    shutil.copytree(demo_dir, work)
    path = work / "trackline.yml"
    if changes:
        doc = yaml.safe_load(path.read_text())
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(doc.get(key), dict):
                doc[key].update(value)
            else:
                doc[key] = value
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_check_json_carries_the_lines_the_text_prints(demo_dir: Path, tmp_path: Path) -> None:
    """`check` printed each failing check's description line and sample rows, and a summary
    line; `check --json` had none of them."""
    cfg = _copy(demo_dir, tmp_path, quality={"freshness_seconds": 1})  # freshness fails
    text = _cli("check", "-c", str(cfg), "--no-alerts", "--log-format", "quiet")
    shown = _cli("check", "-c", str(cfg), "--no-alerts", "--json")
    assert text.exit_code == shown.exit_code == 1, (text.output, shown.output)
    data = json.loads(shown.output)
    fresh = next(r for r in data["results"] if r["name"].endswith(".freshness"))
    assert fresh["status"] == "fail"
    assert fresh["description"].startswith("newest ") and "threshold 1 s" in fresh["description"]
    assert f"       {fresh['description'].split(',')[0]}" in text.output  # the same line
    assert fresh["columns"] and len(fresh["sample"]) == 1 and fresh["params"]
    summary = re.search(
        r"(\d+) checks, (\d+) failing \((\d+) blocking\), (\d+) new failures", text.output
    )
    assert summary, text.output
    assert data["checks"] == int(summary.group(1))
    assert data["failing"] == int(summary.group(2)) >= 1
    assert data["blocking_failing"] == int(summary.group(3)) >= 1
    assert data["alert_errors"] == {}


def test_a_partial_cycle_says_so_in_text_json_status_and_report(
    demo_dir: Path, tmp_path: Path
) -> None:
    """A cycle whose tables all failed (the source file is gone) ended its text with
    "cycle … finished in 0.1s" (exit 1, nothing said about what happens next), its JSON had
    no run id, status or per-table seconds, and the report's duration chart called the
    partial cycle "failed"."""
    cfg = _copy(demo_dir, tmp_path, sources={"demo": {"type": "sqlite", "path": "gone.db"}})
    out = _cli("cycle", "-c", str(cfg), "--log-format", "quiet")
    assert out.exit_code == 1, out.output
    last = out.output.strip().splitlines()[-1]
    assert re.match(r"cycle \w+ finished in [\d.]+s: partial: 4 of 4 tables failed \(", last)
    assert "the next cycle retries them from their watermarks" in last, last
    js = _cli("cycle", "-c", str(cfg), "--log-format", "quiet", "--json")
    assert js.exit_code == 1, js.output
    data = json.loads(js.output)
    assert data["status"] == "partial" and len(data["failed_tables"]) == 4
    for table in data["sync"].values():
        assert table["status"] == "failed" and table["error"]
        assert {"seconds", "batches", "warnings", "retryable"} <= set(table)
    status = _cli("status", "-c", str(cfg))
    assert status.exit_code == 0, status.output
    (line,) = [ln for ln in status.output.splitlines() if ln.startswith("  ") and "partial" in ln][
        :1
    ]
    assert "error: uni_tracking_info: " in line and "None" not in line
    report = tmp_path / "r.html"
    assert _cli("report", "-c", str(cfg), "--html", str(report)).exit_code == 0
    page = report.read_text()
    assert '<i class="bad"></i>partial</span>' in page
    assert "(partial)</title></rect>" in page and "(failed)</title></rect>" not in page
    # the run id of the JSON is the one `trackline status` knows
    wh = open_warehouse(load_config(cfg).warehouse)
    wh.connect()
    try:
        assert (
            wh.scalar(
                "SELECT status FROM trackline.runs WHERE run_id = ? AND command = 'cycle'",
                (data["run_id"],),
            )
            == "partial"
        )
    finally:
        wh.close()


def test_cycle_text_shows_the_drift_warnings(demo_dir: Path, tmp_path: Path) -> None:
    """A column added at the source was said only in the log (stderr, gone under
    --log-format quiet), never in the cycle's summary nor its JSON."""
    import sqlite3

    cfg = _copy(demo_dir, tmp_path)
    con = sqlite3.connect(cfg.parent / "source.db")
    con.execute("ALTER TABLE uni_tracking_info ADD COLUMN courier TEXT")
    con.commit()
    con.close()
    out = _cli("cycle", "-c", str(cfg), "--log-format", "quiet")
    assert out.exit_code == 0, out.output
    assert "      warning: uni_tracking_info: new source column 'courier'" in out.output
    assert out.output.strip().endswith(": ok")


def test_an_interrupted_sync_counts_the_batches_of_its_run(demo_dir: Path, tmp_path: Path) -> None:
    """A stop request said "stopped after batch 7": a ledger id counting every run (the
    table had committed 2 batches in that run), and for a whole-table load (rolled back)
    it named a batch that never committed."""
    path = _copy(demo_dir, tmp_path, defaults={"batch_size": 20, "workers": 1})
    assert _cli("reset", "-c", str(path), "uni_tracking_info", "--yes").exit_code == 0
    cfg = load_config(path)
    wh = open_warehouse(cfg.warehouse)
    wh.connect()

    class StopAfterTwo(NullReporter):
        def progress(
            self, task: str, advance: int, total: int | None = None, unit: str = "rows"
        ) -> None:
            self.seen = getattr(self, "seen", 0) + 1
            if self.seen == 2:
                syncer.stop_requested.set()

    syncer = Syncer(cfg, wh, StopAfterTwo())
    try:
        with pytest.raises(Interrupted) as stopped:
            syncer.sync(["uni_tracking_info"])
    finally:
        syncer.close()
        wh.close()
    wh.connect()
    try:
        last = wh.scalar(
            "SELECT MAX(batch_id) FROM trackline.batches WHERE table_key = ?",
            ("settlement_public.uni_tracking_info_raw",),
        )
    finally:
        wh.close()
    assert str(stopped.value) == (
        "uni_tracking_info: stopped after 2 committed batches of this run (40 rows, up to "
        f"ledger batch {last}); the next sync goes on from there"
    )


def test_replay_of_a_pruned_file_says_what_was_replayed_and_how_to_go_on(
    demo_dir: Path, tmp_path: Path
) -> None:
    """ "replay from a later batch" named neither which one nor that the batches before the
    missing file had been replayed already."""
    path = _copy(demo_dir, tmp_path)
    (gone,) = (demo_dir / "stage").rglob("ecs_order_info_raw_*_2.parquet")  # the ledger's
    kept = tmp_path / gone.name
    shutil.move(gone, kept)
    try:
        out = _cli("replay", "-c", str(path), "ecs_order_info")
        again = _cli("replay", "-c", str(path), "ecs_order_info", "--from-batch", "3")
    finally:
        shutil.move(kept, gone)
    assert out.exit_code == 1
    assert "batch 1 before it was replayed (" in out.output, out.output
    assert "replay the rest with `trackline replay ecs_order_info --from-batch 3`" in out.output
    assert again.exit_code == 0, again.output


def test_history_says_there_is_none_yet(demo_dir: Path, tmp_path: Path) -> None:
    """Before any row aged out, `trackline history` printed nothing at all."""
    out = _cli("history", "-c", str(_copy(demo_dir, tmp_path)))
    assert out.exit_code == 0
    assert out.output.startswith("no history period tables yet"), out.output


def test_steps_cycle_records_only_the_failed_tables_errors(demo_dir: Path, tmp_path: Path) -> None:
    """A cycle run as steps (Airflow) with one failed table recorded its error as
    "partners: None; uni_tracking_info: …": every ok table's missing error was listed too."""
    import datetime as dt

    path = _copy(demo_dir, tmp_path)
    cfg = load_config(path)
    broken = cfg.model_copy(
        update={
            "sources": {
                "demo": cfg.sources["demo"].model_copy(update={"path": path.parent / "gone.db"})
            }
        }
    )
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        assert sync_step(cfg, wh, "partners", "r1").status == "ok"
        assert sync_step(broken, wh, "uni_tracking_info", "r1").status == "failed"
        summary = finish_step(cfg, wh, "r1", started)
        error = wh.scalar(
            "SELECT error FROM trackline.runs WHERE run_id = 'r1' AND table_key IS NULL"
        )
    finally:
        wh.close()
    assert not summary.ok
    assert error.startswith("uni_tracking_info_raw: ") and "None" not in error, error


def test_parallel_sync_workers_close_their_duckdb_before_they_end(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGTERM to a cycle exited 134 ("FATAL: exception not rethrown", aborted) instead of
    143 about every other time (PostgreSQL warehouse, scd2 dimensions): a worker's
    thread-local DuckDB (the scd2 row hashes) was left to the thread's end, which came while
    the interpreter was exiting. Each worker now closes it before it says it is done, and the
    sync returns once its workers ended."""
    import sqlite3

    import duckdb

    from trackline.dims import rowhash

    path = _copy(demo_dir, tmp_path, defaults={"workers": 3})
    con = sqlite3.connect(path.parent / "source.db")
    con.execute("UPDATE partners SET name = name || ' (renamed)'")  # new versions to hash
    con.commit()
    con.close()
    opened: list[duckdb.DuckDBPyConnection] = []
    original = rowhash._duckdb

    def recording() -> duckdb.DuckDBPyConnection:
        con = original()
        if threading.current_thread() is not threading.main_thread() and con not in opened:
            opened.append(con)
        return con

    monkeypatch.setattr(rowhash, "_duckdb", recording)
    cfg = load_config(path)
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    before = set(threading.enumerate())
    syncer = ParallelSyncer(cfg, wh, NullReporter())
    try:
        assert all(r.status == "ok" for r in syncer.sync(None))
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    finally:
        syncer.close()
        wh.close()
    assert left == []
    assert opened, "no worker hashed a dimension row: the test proves nothing"
    for con in opened:
        with pytest.raises(duckdb.ConnectionException):
            con.execute("SELECT 1")


def test_status_lines_keep_their_columns_for_every_status() -> None:
    """ "interrupted" (11 letters) pushed its line's columns out of line in `status`."""
    runs = [
        {"started_at": "2026-12-07 12:00:00", "status": s, "seconds": 1.0, "rows": 5, "error": None}
        for s in ("ok", "interrupted", "partial")
    ]
    lines = status_lines({"cycles": runs, "open_exceptions": {}, "last_checks": []})[1:4]
    assert len({ln.index("1.0s") for ln in lines}) == 1, lines


def test_alert_subject_says_over_how_many_checks() -> None:
    """ "3 new data-quality failures (a, b)": 3 counted new keys, the names were 2 checks."""
    results = [
        CheckResult("a", "blocking", "fail", failing_count=1, new_count=1, new_keys=["1"]),
        CheckResult("b", "warning", "fail", failing_count=2, new_count=2, new_keys=["2", "3"]),
    ]
    alert = compose(results, "run1")
    assert alert is not None
    assert alert.subject == "trackline: 3 new data-quality failures in 2 checks (a, b)"
    one = compose(results[1:], "run2")
    assert one is not None and one.subject == "trackline: 2 new data-quality failures (b)"


def test_postgres_lock_busy_names_the_holding_session(pg_db: PgDb) -> None:
    """LockBusy on PostgreSQL said only "another trackline run holds the lock": not which
    session, so an operator could not tell a running cycle from a hung client."""
    cfg = PostgresWarehouse(
        host=pg_db.host, port=pg_db.port, user=pg_db.user, database=pg_db.database
    )
    holder, other = open_warehouse(cfg), open_warehouse(cfg)
    holder.connect()
    other.connect()
    try:
        pid = holder.scalar("SELECT pg_backend_pid()")
        with holder.lock("sync:public.orders_raw"), pytest.raises(LockBusy) as busy:
            with other.lock("sync:public.orders_raw"):
                pass
    finally:
        holder.close()
        other.close()
    message = str(busy.value)
    assert f"session: pid {pid}, application 'trackline'" in message, message
    assert f"`SELECT pg_terminate_backend({pid})` releases it" in message
    assert message.endswith("run this command again then")


def test_an_unreadable_query_is_not_called_a_table(mysql_db: MySQLDb) -> None:
    """A consolidation input `addon` whose SELECT reads a missing table was reported as
    "query of table 'addon' failed": `addon` is the input's name, the table is in the
    server's message."""
    src = open_source(mysql_db.source_config(), mysql_db.database)
    try:
        with pytest.raises(SourceError) as failed:
            src.columns(Relation("addon", mysql_db.database, "SELECT * FROM missing_addon"))
    finally:
        src.close()
    message = str(failed.value)
    assert message.startswith("query 'addon' cannot be read on MySQL"), message
    assert "missing_addon" in message and "table 'addon'" not in message


def test_run_says_which_job_a_stop_let_finish_or_that_it_waited(
    demo_dir: Path, tmp_path: Path
) -> None:
    """`trackline run` stopped by SIGTERM while it slept until the next slot said "finished
    the running step and stopped" (no step ran), and logged "scheduler stopped" before the
    line saying it had received the signal."""
    import datetime as dt
    import io
    import signal

    from trackline.quality.cli import stop_message
    from trackline.report import LogReporter
    from trackline.schedule import Job, JobResult, Scheduler

    cfg = load_config(_copy(demo_dir, tmp_path))
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:

        def slot(now: dt.datetime) -> dt.datetime:
            return now.replace(minute=0, second=0, microsecond=0)

        log = io.StringIO()
        idle = Scheduler(
            cfg,
            wh,
            reporter=LogReporter(stream=log),
            jobs=[Job("cycle", slot, dt.timedelta(hours=1), JobResult)],
            alerts=lambda: None,
        )
        idle.sleep = lambda seconds: idle.request_stop(signal.SIGTERM)  # the signal, asleep
        idle.run_forever()
        busy = Scheduler(cfg, wh, jobs=[], alerts=lambda: None)

        def job() -> JobResult:
            busy.request_stop(signal.SIGTERM)  # the signal, while the job runs
            return JobResult()

        busy.jobs = [Job("checks", slot, dt.timedelta(days=1), job)]
        busy.run_forever()
    finally:
        wh.close()
    lines = [ln.split(None, 2)[2] for ln in log.getvalue().splitlines()]
    assert lines[-2:] == [
        "received SIGTERM while waiting for the next slot: stopping",
        "scheduler stopped",
    ], lines
    assert stop_message(idle) == "received SIGTERM while waiting for the next slot: stopped"
    assert stop_message(busy) == (
        "received SIGTERM: finished the running step and stopped (job: checks)"
    )


@pytest.fixture
def world(mysql_db: MySQLDb, request: pytest.FixtureRequest, tmp_path: Path) -> World:
    """The backfill tests' legacy DW and production (tests/integration/backfill_world.py)."""
    return new_world(mysql_db, request, tmp_path)


def test_a_backfill_chunk_that_never_matches_says_what_next(
    world: World, duckdb_warehouse: DuckDBWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk whose legacy COUNT never matched: `backfill run` said "3 retried" (3 failed
    attempts, 2 retries) and its error named no next step; `backfill status` showed "rows
    legacy 9 / loaded 9" for a table with 5 of 9 chunks missing, chunks as a Python list and
    "legacy None, loaded None, batches None..None" per failed attempt; `backfill handoff`
    handed the first table off, then printed only the second table's refusal."""
    path = tmp_path / "trackline.yml"
    path.write_text(yaml.safe_dump(world.data(duckdb_warehouse, tmp_path / "stage")))
    count = LegacyTable.count

    def one_too_many(self: LegacyTable, lo: Any, hi: Any) -> int:
        n = count(self, lo, hi)
        return n + 1 if self.b.table == "ecs_order_info" and lo >= dt.datetime(2025, 3, 1) else n

    monkeypatch.setattr(LegacyTable, "count", one_too_many)
    ran = _cli("backfill", "run", "-c", str(path), "--start", "2024-11", "--end", "2025-08",
               "--log-format", "quiet")  # fmt: skip
    assert ran.exit_code == 1, ran.output
    (ecs,) = [ln for ln in ran.output.splitlines() if "ecs_order_info_raw:" in ln]
    assert ", 3 failed attempts (rolled back), " in ecs, ecs
    assert ecs.endswith(
        "rolled back, 3 times in this run: the legacy table changed while it was read (a load "
        "job still writing?) or its rows do not match its count; once it is quiet, run "
        "`trackline backfill run -t ecs_order_info` again (done chunks are skipped)"
    ), ecs
    shown = _cli("backfill", "status", "-c", str(path), "--chunks", "-t", "ecs_order_info")
    assert shown.exit_code == 0, shown.output
    assert "4/9 chunks done, 3 failed attempts, rows legacy 9 / loaded 9 (of the done chunks)" in (
        shown.output
    )
    assert "  failed, not done yet: chunks 5 (`trackline backfill run -t ecs_order_info` again" in (
        shown.output
    )
    assert (
        "None" not in shown.output and "attempt 3: rolled back  chunk 5 (2025-03)" in shown.output
    )
    handed = _cli("backfill", "handoff", "-c", str(path))
    assert handed.exit_code == 1
    assert "uni_tracking_info (raw.uni_tracking_info_raw): incremental watermark set to" in (
        handed.output
    )
    assert "chunks not loaded; the watermark was not moved" in handed.output
    assert "; not tried after it: uni_tracking_spath (run the handoff again" in handed.output


def test_a_failed_consolidation_says_what_stays_pending(mysql_db: MySQLDb, tmp_path: Path) -> None:
    """An input failing while read left the other input's rows staged for the next run, but
    `consolidate --json` said "pending": 0 and the text did not say it (the error line, on
    stderr, had no "error:" either)."""
    from tests.integration.test_consolidate import Hours, run_ok, setup
    from trackline.config import StageConfig

    cfg = setup(
        mysql_db, (DuckDBWarehouse(path=tmp_path / "wh.duckdb"), StageConfig(url=str(tmp_path)))
    )
    hours = Hours(mysql_db)
    hours.hour(1)
    run_ok(cfg)
    hours.hour(2)
    mysql_db.execute("ALTER TABLE uni_tracking_addon_spath MODIFY update_time DATETIME(6) NULL")
    mysql_db.execute("UPDATE uni_tracking_addon_spath SET update_time = NULL WHERE id = 1")
    path = write_config(tmp_path / "trackline.yml", cfg)
    js = _cli("consolidate", "-c", str(path), "--json")
    assert js.exit_code == 1
    (res,) = json.loads(js.output)
    assert res["status"] == "failed" and res["pending"] == 12, res
    text = _cli("consolidate", "-c", str(path), "--log-format", "quiet")
    assert text.exit_code == 1
    assert "; 12 staged rows pending for the next run\n" in text.output, text.output
    assert "\n  error: " in text.output and "input 'addon' failed" in text.output
    # the report cut the run's error at 200 characters mid-word, with no mark
    report = tmp_path / "r.html"
    assert _cli("report", "-c", str(path), "--html", str(report)).exit_code == 0
    page = report.read_text()
    assert "…</td>" in page and "COALESCE the cursor in the input&#x27;s query)" in page


def test_exceptions_list_says_which_ids_need_run_level(demo_dir: Path, tmp_path: Path) -> None:
    """Ids repeat across the group's exceptions table and `trackline check`'s: the list did
    not say that the second table's ids need --run-level, and `resolve` said "exception 1
    resolved" without naming the table it resolved it in."""
    path = _copy(demo_dir, tmp_path)
    cfg = load_config(path)
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        g = cfg.marts[0]
        with wh.transaction():
            Exceptions(wh, cfg.state_schema, STATE_EXCEPTIONS).record("planted", "runs", "r1", "x")
            Exceptions(wh, g.schema_, g.exceptions_table).record("planted", "t", "k1", "y")
    finally:
        wh.close()
    listed = _cli("exceptions", "list", "-c", str(path))
    assert "-- trackline.check_exceptions  [resolve with --run-level]\n" in listed.output
    assert f"-- {g.schema_}.{g.exceptions_table}\n" in listed.output
    done = _cli("exceptions", "resolve", "1", "--run-level", "--note", "ok", "-c", str(path))
    assert done.output == "exception 1 resolved (in trackline.check_exceptions)\n", done.output


def test_a_full_table_read_is_logged_as_one(demo_dir: Path, tmp_path: Path) -> None:
    """A dimension read whole every run (`cdc.strategy: full`) was logged as "partners:
    incremental read from (start) below None"."""
    import io

    from trackline.report import LogReporter

    cfg = load_config(_copy(demo_dir, tmp_path))
    log = io.StringIO()
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    syncer = Syncer(cfg, wh, LogReporter(stream=log))
    try:
        assert syncer.sync(["partners"])[0].status == "ok"
    finally:
        syncer.close()
        wh.close()
    assert "partners: whole table read (cdc strategy full)" in log.getvalue(), log.getvalue()
    assert "below None" not in log.getvalue()


def test_a_short_demo_says_it_made_no_history_table(tmp_path: Path) -> None:
    """A demo too short to age rows out printed an empty "History period tables" table."""
    out = _cli("demo", "--workdir", str(tmp_path / "d"), "--days", "3", "--orders-per-day", "5")
    assert out.exit_code == 0, out.output
    assert "History period tables: none yet" in " ".join(out.output.split()), out.output


def test_run_once_says_which_jobs_ran_failed_or_found_the_lock_held(
    demo_dir: Path, tmp_path: Path
) -> None:
    """`trackline run --once` printed "ran: cycle, consolidate, checks, maintenance" (exit 0)
    when a manual cycle held the lock and only maintenance ran; a failed job was named with
    "(see `trackline status`)", which shows no job's error."""
    import datetime as dt

    from trackline.quality.cli import failed_lines, once_summary
    from trackline.schedule import Job, JobResult, Scheduler

    cfg = load_config(_copy(demo_dir, tmp_path))

    def slot(now: dt.datetime) -> dt.datetime:
        return now.replace(minute=0, second=0, microsecond=0)

    def job(name: str, result: JobResult) -> Job:
        return Job(name, slot, dt.timedelta(hours=1), lambda: result)

    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        s = Scheduler(
            cfg,
            wh,
            jobs=[
                job("cycle", JobResult("busy", error="another trackline run holds the lock")),
                job("checks", JobResult("failed", error="blocking checks failed: a, b")),
                job("maintenance", JobResult()),
            ],
            alerts=lambda: None,
        )
        due = s.run_once()
    finally:
        wh.close()
    assert once_summary(due, s.results) == (
        "ran: maintenance; failed: checks; not run, another run held the lock: cycle (still "
        "due: each runs at the next `trackline run --once`)"
    )
    assert failed_lines(s.results) == ["failed: checks: blocking checks failed: a, b"]
    assert once_summary([], {}) == "ran: nothing was due"


def test_a_warehouse_that_refuses_the_connection_says_so() -> None:
    """A PostgreSQL warehouse on a port nothing listens on said only "…: Is the server
    running on that host and accepting TCP/IP connections?": libpq's hint without its cause
    ("Connection refused")."""
    import socket

    from trackline.errors import WarehouseError

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    wh = open_warehouse(PostgresWarehouse(host="127.0.0.1", port=port))
    with pytest.raises(WarehouseError) as refused:
        wh.connect()
    message = str(refused.value)
    assert f"port {port} failed: Connection refused (Is the server running" in message, message
    assert "\n" not in message and "\t" not in message


def test_reconcile_says_what_to_do_about_what_it_found(
    mysql_db: MySQLDb, duckdb_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    """`trackline reconcile` counted keys deleted in the source and keys missing from the
    target (exit 1), and said nothing about what to do next."""
    from tests.integration.synctools import create_orders, make_config, sync_ok, table
    from tests.integration.synctools import warehouse as wh_of

    create_orders(mysql_db, 6, dt.datetime(2024, 3, 1, 8))
    cfg = make_config(mysql_db, duckdb_warehouse, tmp_path / "stage", [table(write_mode="merge")])
    sync_ok(cfg)
    mysql_db.execute("DELETE FROM orders WHERE id = 3")
    with wh_of(cfg) as wh, wh.transaction():
        t = cfg.tables[0]
        wh.execute(f"DELETE FROM {wh.t(t.target_schema, t.target)} WHERE id = 5")
    path = write_config(tmp_path / "trackline.yml", cfg)
    out = _cli("reconcile", "-c", str(path), "orders", "--log-format", "quiet")
    assert out.exit_code == 1, out.output
    assert (
        "next: `trackline reconcile orders --apply` deletes the 1 keys deleted in the source "
        "from the target\n"
    ) in out.output
    assert "next: for the 1 missing keys, `trackline replay orders` loads" in out.output
    assert _cli("replay", "-c", str(path), "orders").exit_code == 0
    again = _cli("reconcile", "-c", str(path), "orders", "--apply", "--log-format", "quiet")
    assert again.exit_code == 0 and "next:" not in again.output, again.output


def test_explain_names_the_table_behind_an_alias(mysql_db: MySQLDb, tmp_path: Path) -> None:
    """A consolidation input's join scanned `uni_tracking_info u` whole: `trackline explain`
    said "FULL SCAN of u" and "key=None", and gave no fix (its suggestion covers only the
    cursor's table)."""
    from tests.integration.test_consolidate import Hours, setup
    from trackline.config import StageConfig

    cfg = setup(
        mysql_db, (DuckDBWarehouse(path=tmp_path / "wh.duckdb"), StageConfig(url=str(tmp_path)))
    )
    Hours(mysql_db).hour(1)
    mysql_db.execute("ALTER TABLE uni_tracking_info DROP INDEX ux_order")
    path = write_config(tmp_path / "trackline.yml", cfg)
    out = _cli("explain", "-c", str(path), "parcel_detail")
    assert out.exit_code == 1, out.output
    scans = [ln for ln in out.output.splitlines() if ": FULL SCAN of " in ln]
    assert len(scans) == 2 and all("u (uni_tracking_info)" in ln for ln in scans), out.output
    assert "  u: ALL key=- rows=" in out.output and "None" not in out.output
    hint = "  fix for u (uni_tracking_info): an index on the columns it is joined or filtered on"
    assert out.output.count(hint) == 2, out.output


def test_a_cycle_ended_by_a_held_table_lock_says_what_it_committed(
    mysql_db: MySQLDb, pg_db: PgDb, tmp_path: Path
) -> None:
    """A cycle whose second table's sync lock another run holds ended with exit 75 and the
    lock's message alone: nothing said that the first table's batches were committed, nor
    that no mart was built."""
    from click.testing import CliRunner

    from tests.integration.synctools import create_orders, make_config, table, write_config
    from trackline.cli import main

    create_orders(mysql_db, 5, dt.datetime(2026, 1, 1))
    mysql_db.execute("CREATE TABLE orders2 LIKE orders")
    mysql_db.execute("INSERT INTO orders2 SELECT * FROM orders")
    cfg = make_config(
        mysql_db,
        pg_db.warehouse_config(),
        tmp_path / "stage",
        [table("orders"), table("orders2")],
        workers=1,
    )
    path = write_config(tmp_path / "trackline.yml", cfg)
    holder = open_warehouse(pg_db.warehouse_config())
    holder.connect()
    try:
        with holder.lock("sync:public.orders2_raw"):
            result = CliRunner().invoke(main, ["cycle", "-c", str(path), "--log-format", "quiet"])
    finally:
        holder.close()
    assert result.exit_code == 75, result.output
    assert "ok  sync  public.orders_raw: 5 rows committed" in result.stdout, result.stdout
    assert "no mart was built; what it committed stays" in result.stdout
    assert "holds the lock" in result.stderr
