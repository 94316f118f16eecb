"""`trackline consolidate` against real MariaDB → DuckDB, PostgreSQL and Redshift (compat).

The shipped shape: scan events of `uni_tracking_spath` and of `uni_tracking_addon_spath`, each
joined to `uni_tracking_info`, into one target keyed by (source_kind, event_id). After every
run the target is compared, row for row, with the same union computed directly on MariaDB
(the oracle), over several simulated hours: new events, late events (an old path time written
now), an addon event of an order with no spath event, an event corrected in place.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MySQLDb
from tests.integration.synctools import make_config, norm, warehouse, write_config
from trackline.config import (
    Config,
    ConsolidationConfig,
    DuckDBWarehouse,
    RedshiftWarehouse,
    StageConfig,
)
from trackline.consolidate import consolidate
from trackline.consolidate.merge import purge_staging
from trackline.errors import ConfigError
from trackline.state import utcnow

DDL = [
    """CREATE TABLE uni_tracking_info (
      id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
      order_id BIGINT NOT NULL,
      tracking_no VARCHAR(32) NOT NULL,
      update_time DATETIME(6) NOT NULL,
      UNIQUE KEY ux_order (order_id)
    )""",
    *[
        f"""CREATE TABLE {t} (
      id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
      order_id BIGINT NOT NULL,
      trace_seq INT NOT NULL,
      path_time DATETIME(6) NOT NULL,
      path_info VARCHAR(64),
      update_time DATETIME(6) NOT NULL,
      KEY ix_update (update_time, id)
    )"""
        for t in ("uni_tracking_spath", "uni_tracking_addon_spath")
    ],
]
COLS = [
    "source_kind",
    "event_id",
    "order_id",
    "tracking_no",
    "trace_seq",
    "path_time",
    "path_info",
    "update_time",
]


def join(events: str) -> str:
    return (
        "SELECT e.id AS event_id, e.order_id, u.tracking_no, e.trace_seq, e.path_time, "
        f"e.path_info, e.update_time FROM {events} e "
        "LEFT JOIN uni_tracking_info u ON u.order_id = e.order_id"
    )


def oracle(db: MySQLDb) -> list[tuple[Any, ...]]:
    """The union, computed on the source."""
    sql = (
        f"SELECT 'spath' AS source_kind, x.* FROM ({join('uni_tracking_spath')}) x UNION ALL "
        f"SELECT 'addon', y.* FROM ({join('uni_tracking_addon_spath')}) y "
        "ORDER BY source_kind, event_id"
    )
    return [tuple(norm(v) for v in r) for r in db.query(sql)]


def target(cfg: Config, table: str = "parcel_detail_tool") -> list[tuple[Any, ...]]:
    with warehouse(cfg) as wh:
        rows = wh.query(
            f"SELECT {wh.cols(COLS)} FROM {wh.t('public', table)} ORDER BY source_kind, event_id"
        )
    return [tuple(norm(v) for v in r) for r in rows]


def consolidation(**over: Any) -> ConsolidationConfig:
    spec: dict[str, Any] = {
        "name": "parcel_detail",
        "key": ["source_kind", "event_id"],
        "inputs": [
            {
                "name": kind,
                "query": join(table),
                "cdc": {"cursor": "update_time", "id": "event_id"},
                "constants": {"source_kind": kind},
                "lag_seconds": 0,
            }
            for kind, table in (
                ("spath", "uni_tracking_spath"),
                ("addon", "uni_tracking_addon_spath"),
            )
        ],
        "dist_key": "event_id",
        **over,
    }
    return ConsolidationConfig.model_validate(spec)


@pytest.fixture(
    params=[
        pytest.param("duckdb", id="duckdb"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.servers),
        pytest.param("redshift", id="redshift-compat", marks=pytest.mark.servers),
    ]
)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Any, StageConfig]:
    if request.param == "duckdb":
        return DuckDBWarehouse(path=tmp_path / "wh.duckdb"), StageConfig(url=str(tmp_path / "s"))
    pg = request.getfixturevalue("pg_db")
    if request.param == "postgres":
        return pg.warehouse_config(), StageConfig(url=str(tmp_path / "s"))
    s3 = request.getfixturevalue("s3")
    return RedshiftWarehouse(**pg.redshift_compat()), s3.stage_config()


def setup(mysql_db: MySQLDb, engine: tuple[Any, StageConfig], **over: Any) -> Config:
    for ddl in DDL:
        mysql_db.execute(ddl)
    wh, stage = engine
    cfg = make_config(mysql_db, wh, stage, [])
    return cfg.model_copy(update={"consolidations": [consolidation(**over)]})


class Hours:
    """Writes one simulated hour of source activity at a time."""

    def __init__(self, db: MySQLDb) -> None:
        self.db = db
        self.next_order = 1

    def orders(self, n: int) -> list[int]:
        ids = list(range(self.next_order, self.next_order + n))
        self.next_order += n
        self.db.executemany(
            "INSERT INTO uni_tracking_info (order_id, tracking_no, update_time) "
            "VALUES (%s, %s, NOW(6))",
            [(o, f"TN{o:06d}") for o in ids],
        )
        return ids

    def events(self, table: str, orders: list[int], seq: int, age_hours: int = 0) -> None:
        self.db.executemany(
            f"INSERT INTO {table} (order_id, trace_seq, path_time, path_info, update_time) "
            "VALUES (%s, %s, NOW(6) - INTERVAL %s HOUR, %s, NOW(6))",
            [(o, seq, age_hours, f"step {seq} of {o}") for o in orders],
        )

    def hour(self, h: int) -> None:
        new = self.orders(5)
        self.events("uni_tracking_spath", new, 1)
        self.events("uni_tracking_spath", new[:3], 2)
        self.events("uni_tracking_addon_spath", new[:2], 1)
        if h >= 2:
            # late events: old path times written now; an addon event of an order without
            # any spath event; an event corrected in place (same id, new update_time)
            self.events("uni_tracking_spath", list(range(1, 4)), 10 + h, age_hours=5)
            lonely = self.orders(1)
            self.events("uni_tracking_addon_spath", lonely, 1)
            self.db.execute(
                "UPDATE uni_tracking_spath SET path_info = %s, update_time = NOW(6) WHERE id = %s",
                (f"corrected in hour {h}", h),
            )


def run_ok(cfg: Config) -> Any:
    with warehouse(cfg) as wh:
        (res,) = consolidate(cfg, wh)
    assert res.ok, res.error
    return res


def test_hours_equal_the_union_on_the_source(
    mysql_db: MySQLDb, engine: tuple[Any, StageConfig]
) -> None:
    cfg = setup(mysql_db, engine)
    hours = Hours(mysql_db)
    for h in range(1, 5):
        hours.hour(h)
        res = run_ok(cfg)
        assert res.merged > 0
        expected = oracle(mysql_db)
        assert target(cfg) == expected, f"hour {h}"
    # an addon event for an order that has no spath event made it
    lonely = hours.next_order - 1
    assert [r[0] for r in target(cfg) if r[2] == lonely] == ["addon"]
    # a quiet hour: nothing new, nothing changes, the run is recorded with zero rows
    res = run_ok(cfg)
    assert (res.merged, res.rows_read) == (0, 0)
    assert target(cfg) == oracle(mysql_db)
    with warehouse(cfg) as wh:
        runs = wh.query(
            "SELECT status, rows_moved FROM trackline.runs WHERE command = 'consolidate' "
            "ORDER BY started_at"
        )
        assert [r[0] for r in runs] == ["ok"] * 5 and runs[-1][1] == 0
        # processed rows stay until the retention has passed, then the purge removes them
        staged = wh.scalar("SELECT COUNT(*) FROM public.parcel_detail_tool_staging")
        assert staged == len(expected) + 3  # late and corrected events were staged twice
        c = cfg.consolidations[0]
        assert purge_staging(wh, c, utcnow()) == 0
        assert purge_staging(wh, c, utcnow() + dt.timedelta(days=8)) == staged


STEPS = [
    "consolidate.after_input@1",
    "consolidate.after_input@2",
    "consolidate.after_delete",
    "consolidate.before_merge_commit",
    "consolidate.after_merge_commit",
]


@pytest.mark.parametrize("step", STEPS)
def test_kill_anywhere_then_rerun_equals_uninterrupted(
    mysql_db: MySQLDb, engine: tuple[Any, StageConfig], tmp_path: Path, step: str
) -> None:
    cfg = setup(mysql_db, engine)
    hours = Hours(mysql_db)
    hours.hour(1)
    run_ok(cfg)
    hours.hour(2)
    path = write_config(tmp_path / "c.yml", cfg)
    exe = str(Path(sys.executable).with_name("trackline"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKLINE_")}
    killed = subprocess.run(
        [exe, "consolidate", "-c", str(path), "--log-format", "plain"],
        env={**env, "TRACKLINE_FAIL_AT": step, "TRACKLINE_FAIL_MODE": "exit"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == 99, (killed.stdout, killed.stderr)
    if step != "consolidate.after_merge_commit":
        assert target(cfg) != oracle(mysql_db)  # the kill really left work undone
    run_ok(cfg)
    rows = target(cfg)
    assert rows == oracle(mysql_db)
    assert len({(r[0], r[1]) for r in rows}) == len(rows)


def test_one_input_failing_merges_nothing_until_fixed(
    mysql_db: MySQLDb, engine: tuple[Any, StageConfig]
) -> None:
    cfg = setup(mysql_db, engine)
    hours = Hours(mysql_db)
    hours.hour(1)
    run_ok(cfg)
    before = target(cfg)
    hours.hour(2)
    mysql_db.execute("RENAME TABLE uni_tracking_addon_spath TO addon_gone")
    with warehouse(cfg) as wh:
        (res,) = consolidate(cfg, wh)
    assert res.status == "failed" and "addon" in (res.error or "")
    assert target(cfg) == before  # the spath rows staged this run did not reach the target
    from trackline.quality.status import status_lines, status_section

    with warehouse(cfg) as wh:  # `trackline status` shows the failed run and what waits
        shown = status_section(cfg, wh)["consolidations"]["parcel_detail"]
        lines = status_lines(status_section(cfg, wh))
    assert shown["pending"] == 0  # the schema check found it before any input was read
    assert [r["status"] for r in shown["runs"]] == ["failed", "ok"]
    assert shown["runs"][1]["inputs"] == {"spath": 8, "addon": 2}
    assert "consolidation parcel_detail (0 staged rows pending):" in lines
    mysql_db.execute("RENAME TABLE addon_gone TO uni_tracking_addon_spath")
    run_ok(cfg)
    assert target(cfg) == oracle(mysql_db)
    with warehouse(cfg) as wh:
        assert wh.query(
            "SELECT status FROM trackline.runs WHERE command = 'consolidate' ORDER BY started_at"
        ) == [("ok",), ("failed",), ("ok",)]


def test_an_input_failing_while_read_leaves_the_others_rows_pending(
    mysql_db: MySQLDb, engine: tuple[Any, StageConfig]
) -> None:
    """The second input fails during its read (a NULL cursor): the first input's rows stay
    staged and pending with its watermark, nothing reaches the target; once the row is fixed
    the next run merges everything, and equals the union on the source."""
    from trackline.quality.status import status_section

    cfg = setup(mysql_db, engine)
    hours = Hours(mysql_db)
    hours.hour(1)
    run_ok(cfg)
    before = target(cfg)
    hours.hour(2)
    mysql_db.execute("ALTER TABLE uni_tracking_addon_spath MODIFY update_time DATETIME(6) NULL")
    mysql_db.execute("UPDATE uni_tracking_addon_spath SET update_time = NULL WHERE id = 1")
    with warehouse(cfg) as wh:
        (res,) = consolidate(cfg, wh)
        shown = status_section(cfg, wh)["consolidations"]["parcel_detail"]
    assert res.status == "failed" and "NULL update_time" in (res.error or ""), res.error
    assert target(cfg) == before
    assert shown["pending"] == 5 + 3 + 3 + 1  # hour 2 of spath: new, late, corrected
    mysql_db.execute("UPDATE uni_tracking_addon_spath SET update_time = NOW(6) WHERE id = 1")
    res = run_ok(cfg)
    assert [(i.input, i.rows) for i in res.inputs] == [("spath", 0), ("addon", 2 + 1 + 1)]
    assert res.pending == 12 + 4
    assert target(cfg) == oracle(mysql_db)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            "ALTER TABLE uni_tracking_addon_spath MODIFY trace_seq BIGINT NOT NULL",
            "column 'trace_seq' is int32 in input 'spath' but int64 in input 'addon'",
        ),
        (
            "ALTER TABLE uni_tracking_addon_spath CHANGE path_info path_text VARCHAR(64)",
            "Unknown column 'e.path_info'",
        ),
    ],
)
def test_mismatching_inputs_stop_before_anything_is_written(
    mysql_db: MySQLDb, tmp_path: Path, change: str, message: str
) -> None:
    cfg = setup(
        mysql_db,
        (DuckDBWarehouse(path=tmp_path / "w.duckdb"), StageConfig(url=str(tmp_path / "s"))),
    )
    Hours(mysql_db).hour(1)
    mysql_db.execute(change)
    with warehouse(cfg) as wh:
        (res,) = consolidate(cfg, wh)
        assert res.status == "failed"
        assert message in (res.error or "") and "input 'addon'" in (res.error or ""), res.error
        assert not wh.table_exists("public", "parcel_detail_tool")
        assert not wh.table_exists("public", "parcel_detail_tool_staging")


def test_count_mismatch_names_the_input(mysql_db: MySQLDb, tmp_path: Path) -> None:
    cfg = setup(
        mysql_db,
        (DuckDBWarehouse(path=tmp_path / "w.duckdb"), StageConfig(url=str(tmp_path / "s"))),
    )
    mysql_db.execute("ALTER TABLE uni_tracking_addon_spath ADD COLUMN note VARCHAR(8)")
    c = cfg.consolidations[0]
    addon = c.inputs[1].model_copy(
        update={
            "query": join("uni_tracking_addon_spath").replace(
                "e.update_time", "e.update_time, e.note"
            )
        }
    )
    cfg = cfg.model_copy(
        update={"consolidations": [c.model_copy(update={"inputs": [c.inputs[0], addon]})]}
    )
    with warehouse(cfg) as wh:
        (res,) = consolidate(cfg, wh)
    assert "input 'addon' has ['note'] (which input 'spath' lacks)" in (res.error or ""), res.error


def test_table_inputs_map_differing_names(mysql_db: MySQLDb, tmp_path: Path) -> None:
    """Two plain table inputs whose columns differ in name: refused with both lists, then
    merged once an explicit `columns:` list maps the names."""
    cfg = setup(
        mysql_db,
        (DuckDBWarehouse(path=tmp_path / "w.duckdb"), StageConfig(url=str(tmp_path / "s"))),
    )
    Hours(mysql_db).hour(1)
    mysql_db.execute("ALTER TABLE uni_tracking_addon_spath CHANGE path_info path_text VARCHAR(64)")
    inputs = [
        {
            "name": kind,
            "table": table,
            "cdc": {"cursor": "update_time", "id": "id"},
            "constants": {"source_kind": kind},
            "lag_seconds": 0,
        }
        for kind, table in (("spath", "uni_tracking_spath"), ("addon", "uni_tracking_addon_spath"))
    ]
    c = consolidation(inputs=inputs, key=["source_kind", "id"], dist_key=None)
    cfg = cfg.model_copy(update={"consolidations": [c]})
    with warehouse(cfg) as wh:
        (res,) = consolidate(cfg, wh)
    assert res.status == "failed"
    assert "input 'addon' lacks ['path_info']" in (res.error or ""), res.error
    assert "has ['path_text']" in (res.error or "")
    names = ["id", "order_id", "trace_seq", "path_time", "update_time"]
    inputs[1]["columns"] = {**{n: n for n in names}, "path_info": "path_text"}
    inputs[0]["columns"] = {**{n: n for n in names}, "path_info": "path_info"}
    c = consolidation(inputs=inputs, key=["source_kind", "id"], dist_key=None)
    cfg = cfg.model_copy(update={"consolidations": [c]})
    res = run_ok(cfg)
    assert res.merged == 5 + 3 + 2
    with warehouse(cfg) as wh:
        got = wh.query(
            "SELECT path_info FROM public.parcel_detail_tool WHERE source_kind = 'addon' "
            "ORDER BY id"
        )
    assert [r[0] for r in got] == ["step 1 of 1", "step 1 of 2"]


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    from trackline.config import load_config

    path = tmp_path / "c.yml"
    path.write_text(
        "sources:\n  s: {type: sqlite, path: x.db}\n"
        "consolidations:\n"
        "  - name: p\n    key: [id]\n    inputs:\n"
        "      - name: a\n        table: t\n        cdc: {cursor: ts}\n"
    )
    with pytest.raises(ConfigError, match=r"c.yml:9: consolidations\[0\].inputs\[0\].cdc.id"):
        load_config(path)


def test_run_schedules_it_hourly_and_maintenance_purges(mysql_db: MySQLDb, tmp_path: Path) -> None:
    """`trackline run`: the consolidation is a job of its own, after the cycle, every
    `schedule.consolidation_minutes`; the daily maintenance purges processed staging rows
    only once they are older than the retention."""
    from trackline.report import NullReporter
    from trackline.schedule import Scheduler, default_jobs

    base = setup(
        mysql_db,
        (DuckDBWarehouse(path=tmp_path / "w.duckdb"), StageConfig(url=str(tmp_path / "s"))),
    )
    cfg = base.model_copy(
        update={"schedule": base.schedule.model_copy(update={"consolidation_minutes": 60})}
    )
    hours = Hours(mysql_db)
    hours.hour(1)
    now = [dt.datetime(2026, 3, 2, 10, 0)]

    class Clock:
        def __call__(self) -> dt.datetime:
            return now[0]

    with warehouse(cfg) as wh:
        jobs = default_jobs(cfg, wh, NullReporter())
        assert [j.name for j in jobs] == ["cycle", "consolidate", "checks", "maintenance"]
        mine = [j for j in jobs if j.name in ("consolidate", "maintenance")]
        sched = Scheduler(cfg, wh, clock=Clock(), sleep=lambda s: None, jobs=mine)
        assert sched.run_due() == ["consolidate", "maintenance"]
        assert sched.results["consolidate"].status == "ok"
        staged = wh.scalar("SELECT COUNT(*) FROM public.parcel_detail_tool_staging")
        assert staged > 0 and sched.results["maintenance"].detail.get("purged") is None
        now[0] += dt.timedelta(minutes=59)
        assert sched.run_due() == []
        now[0] += dt.timedelta(minutes=1)
        hours.hour(2)
        assert sched.run_due() == ["consolidate"]
    assert target(cfg) == oracle(mysql_db)


@pytest.mark.servers
def test_it_never_overlaps_a_cycle(mysql_db: MySQLDb, pg_db: Any, tmp_path: Path) -> None:
    """A consolidation takes the pipeline's cycle lock: while a cycle holds it, the
    consolidation waits (here: gives up at once) and writes nothing."""
    from trackline.errors import LockBusy
    from trackline.state import pipeline_lock

    cfg = setup(mysql_db, (pg_db.warehouse_config(), StageConfig(url=str(tmp_path / "s"))))
    Hours(mysql_db).hour(1)
    with warehouse(cfg) as cycle, cycle.lock(pipeline_lock(cfg.state_schema, "cycle")):
        with warehouse(cfg) as wh, pytest.raises(LockBusy, match="cycle"):
            consolidate(cfg, wh)
        assert not cycle.table_exists("public", "parcel_detail_tool")
    run_ok(cfg)
    assert target(cfg) == oracle(mysql_db)


def test_the_airflow_task_waits_for_a_cycle_then_runs(
    mysql_db: MySQLDb, pg_db: Any, tmp_path: Path
) -> None:
    """The Airflow consolidate task (`trackline.airflow.tasks`) waits for the cycle lock
    (`schedule.lock_wait_seconds`, by default half the task time limit) and runs once the
    cycle lets go; only a wait that runs out gives up (`LockBusy`: the task is skipped)."""
    import threading

    from trackline.airflow import tasks
    from trackline.errors import LockBusy
    from trackline.state import pipeline_lock

    cfg = setup(mysql_db, (pg_db.warehouse_config(), StageConfig(url=str(tmp_path / "s"))))
    Hours(mysql_db).hour(1)
    patient = write_config(tmp_path / "patient.yml", cfg)
    hasty = write_config(tmp_path / "hasty.yml", cfg, schedule={"lock_wait_seconds": 1})
    lock = pipeline_lock(cfg.state_schema, "cycle")
    with warehouse(cfg) as cycle:
        with cycle.lock(lock), pytest.raises(LockBusy, match="cycle"):
            tasks.consolidate_all(hasty)
        assert not cycle.table_exists("public", "parcel_detail_tool")
        held = cycle.lock(lock)
        held.__enter__()
        released = threading.Event()

        def release() -> None:
            held.__exit__(None, None, None)
            released.set()

        timer = threading.Timer(1.0, release)  # the cycle ends while the task waits
        timer.start()
        try:
            result = tasks.consolidate_all(patient)
        finally:
            timer.join()
    assert released.is_set() and result["rows"] > 0
    assert target(cfg) == oracle(mysql_db)


def test_failed_and_zero_row_runs_are_alerted_once(mysql_db: MySQLDb, tmp_path: Path) -> None:
    """The run-level checks `trackline run` evaluates after every job: a zero-row hour is
    one failure (alerted once, not again while it lasts), a failed run is blocking, and both
    pass again after a run that merges rows."""
    from trackline.quality.run import run_level_alerts

    cfg = setup(
        mysql_db,
        (DuckDBWarehouse(path=tmp_path / "w.duckdb"), StageConfig(url=str(tmp_path / "s"))),
    )
    hours = Hours(mysql_db)

    def evaluate() -> dict[str, tuple[str, bool]]:
        with warehouse(cfg) as wh:
            report = run_level_alerts(cfg, wh)
        return {
            r.name.removeprefix("consolidate.parcel_detail."): (r.status, r.is_new)
            for r in report.results
            if r.name.startswith("consolidate.")
        }

    hours.hour(1)
    run_ok(cfg)
    assert evaluate() == {n: ("pass", False) for n in ("failed", "slow", "zero_rows")}
    run_ok(cfg)  # a quiet hour
    assert evaluate()["zero_rows"] == ("fail", True)
    run_ok(cfg)  # still quiet: the same failure, not alerted again
    assert evaluate()["zero_rows"] == ("fail", False)
    mysql_db.execute("RENAME TABLE uni_tracking_spath TO spath_gone")
    with warehouse(cfg) as wh:
        (res,) = consolidate(cfg, wh)
    assert not res.ok
    got = evaluate()
    assert got["failed"] == ("fail", True)
    mysql_db.execute("RENAME TABLE spath_gone TO uni_tracking_spath")
    hours.hour(2)
    run_ok(cfg)
    got = evaluate()
    assert got["failed"][0] == "pass" and got["zero_rows"][0] == "pass"
    assert target(cfg) == oracle(mysql_db)


def test_explain_tells_index_range_from_full_scan(mysql_db: MySQLDb, tmp_path: Path) -> None:
    """`trackline explain parcel_detail`: with the (update_time, id) index each input's hourly
    read is an index range; without it, a full scan with the CREATE INDEX that fixes it."""
    from trackline.jobs.explain import explain

    cfg = setup(
        mysql_db,
        (DuckDBWarehouse(path=tmp_path / "w.duckdb"), StageConfig(url=str(tmp_path / "s"))),
    )
    hours = Hours(mysql_db)
    orders = hours.orders(3000)
    for table in ("uni_tracking_spath", "uni_tracking_addon_spath"):  # history: days old
        mysql_db.executemany(
            f"INSERT INTO {table} (order_id, trace_seq, path_time, path_info, update_time) "
            "VALUES (%s, 1, NOW(6) - INTERVAL 3 DAY, 'old', NOW(6) - INTERVAL 3 DAY)",
            [(o,) for o in orders],
        )
        mysql_db.execute(f"ANALYZE TABLE {table}")
    hours.hour(1)
    with warehouse(cfg) as wh:
        found = {e.what: e for e in explain(cfg, wh, "parcel_detail")}
    assert set(found) == {
        "consolidation parcel_detail, input spath",
        "consolidation parcel_detail, input addon",
    }
    for e in found.values():
        assert e.ok, e.plan
        assert {p["type"] for p in e.plan} <= {"range", "eq_ref"}, e.plan
        assert "ix_update" in {p["key"] for p in e.plan}
    mysql_db.execute("ALTER TABLE uni_tracking_addon_spath DROP INDEX ix_update")
    with warehouse(cfg) as wh:
        found = {e.what: e for e in explain(cfg, wh, "parcel_detail")}
    addon = found["consolidation parcel_detail, input addon"]
    assert addon.scans == ["e"] and not addon.ok
    assert addon.suggest == (
        "CREATE INDEX `ix_uni_tracking_addon_spath_update_time_id` ON "
        "`uni_tracking_addon_spath` (`update_time`, `id`)"
    )
    assert found["consolidation parcel_detail, input spath"].ok
    # `trackline check` warns about it (source.full_scan), with the fix
    from trackline.quality.run import run_checks

    with warehouse(cfg) as wh:
        report = run_checks(cfg, wh)
    (scan,) = [r for r in report.results if r.name == "source.full_scan"]
    assert (scan.status, scan.severity, scan.sample_keys) == (
        "fail",
        "warning",
        ["consolidation parcel_detail, input addon"],
    )
    # the suggestion, applied as printed, makes the read a range again
    mysql_db.execute(addon.suggest)
    with warehouse(cfg) as wh:
        assert all(e.ok for e in explain(cfg, wh, "parcel_detail"))
