"""Each built-in check catches a planted defect of its kind and stays silent on clean data,
on real DuckDB and PostgreSQL warehouses."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import MySQLDb
from tests.integration.quality_world import (
    DAY,
    ECS,
    MART,
    STATE,
    UTI,
    UTS,
    World,
    day,
)
from trackline.cli import main
from trackline.config import DuckDBWarehouse, PostgresWarehouse
from trackline.marts.engine import GroupEngine
from trackline.quality.results import CheckResult, ResultsStore
from trackline.quality.run import CheckReport, run_checks
from trackline.sync import sync

G = "order_tracking"
CUSTOM = {
    "checks": [
        {
            "name": "custom.lost_orders",
            "severity": "warning",
            "sql": f"SELECT order_id, status FROM {MART}.{UTI} WHERE status = 'lost'",
            "description": "orders a courier reported lost",
        }
    ]
}


@pytest.fixture
def world(tmp_path: Path, warehouse_config: DuckDBWarehouse | PostgresWarehouse) -> Iterator[World]:
    w = World(tmp_path, warehouse_config, **CUSTOM).build()
    try:
        yield w
    finally:
        w.close()


def by_name(report: CheckReport) -> dict[str, CheckResult]:
    return {r.name: r for r in report.results}


def failing(report: CheckReport) -> dict[str, list[str]]:
    return {r.name: sorted(r.sample_keys) for r in report.results if r.failed}


EXPECTED_CHECKS = {
    f"{G}.latest_event_time.{UTS}",
    f"{G}.has_events.{UTS}",
    f"{G}.has_row.{ECS}",
    f"{G}.duplicate_keys",
    f"{G}.null_keys.{UTI}",
    f"{G}.null_keys.{ECS}",
    f"{G}.null_keys.{UTS}",
    f"{G}.freshness",
    "runs.failed_cycle",
    "runs.slow_cycle",
    "runs.zero_row_cycle",
    "runs.future_rows",
    "runs.behind_watermark",
    "custom.lost_orders",
}


def test_clean_data_passes_every_check(world: World) -> None:
    # the world has history: order 1 archived whole, order 2's first event archived
    assert world.wh.scalar(f"SELECT COUNT(*) FROM {world.t(UTI + '_hist')}") >= 1
    assert world.wh.scalar(f"SELECT COUNT(*) FROM {world.t(UTS + '_hist')}") >= 1
    report = run_checks(world.cfg, world.wh)
    assert set(by_name(report)) == EXPECTED_CHECKS
    assert failing(report) == {}
    assert report.ok and report.exit_code == 0
    assert report.alert is None
    # one results row per check, all `pass`
    rows = ResultsStore(world.wh, STATE).history(run_id=report.run_id)
    assert {r["check_name"]: r["status"] for r in rows} == dict.fromkeys(EXPECTED_CHECKS, "pass")


def test_row_level_defects_are_caught_each_by_its_check(world: World) -> None:
    wh, t = world.wh, world.t
    # test 1: the anchor time no longer equals the latest event time (order 3)
    wh.execute(f"UPDATE {t(UTI)} SET update_time = update_time - 5 WHERE order_id = 3")
    # test 2: order 4 loses every event
    wh.execute(f"DELETE FROM {t(UTS)} WHERE order_id = 4")
    # test 2 counts history: order 5's events move to history only -> still passes
    hist_uts = world.wh.list_tables(MART, "hist_uts_")[-1]
    cols = 'id, order_id, "pathTime", code'
    wh.execute(f"INSERT INTO {t(hist_uts)} ({cols}) SELECT {cols} FROM {t(UTS)} WHERE order_id = 5")
    wh.execute(f"DELETE FROM {t(UTS)} WHERE order_id = 5")
    # test 3: order 6 loses its follower row
    wh.execute(f"DELETE FROM {t(ECS)} WHERE order_id = 6")
    # duplicate key: order 7 twice in the anchor (PostgreSQL's unique index goes first)
    wh.execute(f"DROP INDEX IF EXISTS {wh.t(MART, UTI + '_uk')}")
    wh.execute(f"INSERT INTO {t(UTI)} SELECT * FROM {t(UTI)} WHERE order_id = 7")
    # NULL key in the events mart
    wh.execute(
        f'INSERT INTO {t(UTS)} (id, order_id, "pathTime", code) VALUES (999999, NULL, ?, 1)',
        (day(45),),
    )
    # custom check: order 8 reported lost
    wh.execute(f"UPDATE {t(UTI)} SET status = 'lost' WHERE order_id = 8")

    report = run_checks(world.cfg, world.wh)
    results = by_name(report)
    assert failing(report) == {
        f"{G}.latest_event_time.{UTS}": ["3"],
        f"{G}.has_events.{UTS}": ["4"],
        f"{G}.has_row.{ECS}": ["6"],
        f"{G}.duplicate_keys": ["7"],
        f"{G}.null_keys.{UTS}": [],
        "custom.lost_orders": ["8"],
    }
    assert results[f"{G}.null_keys.{UTS}"].sample == [(1,)]
    assert not report.ok and report.exit_code == 1
    # every failure is new, recorded once in the group's exceptions table, and shown with SQL
    assert all(r.new_count == 1 for r in report.results if r.failed)
    assert world.open_exceptions(f"{G}.has_events.{UTS}") == ["4"]
    assert world.open_exceptions(f"{G}.null_keys.{UTS}") == [None]
    assert world.open_exceptions("custom.lost_orders") == ["8"]
    assert "NOT EXISTS" in results[f"{G}.has_events.{UTS}"].sql
    # the exceptions keep order 3's anchor row from being trimmed
    assert (
        world.wh.scalar(
            f"SELECT COUNT(*) FROM {world.t('order_tracking_exceptions')} WHERE status = 'open' "
            "AND table_name = ? AND key_value = '3'",
            (UTI,),
        )
        == 1
    )

    # a second run: the same failures, nothing new
    again = run_checks(world.cfg, world.wh)
    assert failing(again) == failing(report)
    assert sum(r.new_count for r in again.results) == 0
    assert again.alert is None
    assert world.open_exceptions(f"{G}.has_events.{UTS}") == ["4"]

    # fixing order 3 resolves its exception automatically, with a note
    wh.execute(f"UPDATE {t(UTI)} SET update_time = update_time + 5 WHERE order_id = 3")
    fixed = run_checks(world.cfg, world.wh)
    assert by_name(fixed)[f"{G}.latest_event_time.{UTS}"].status == "pass"
    assert by_name(fixed)[f"{G}.latest_event_time.{UTS}"].resolved_count == 1
    assert world.open_exceptions(f"{G}.latest_event_time.{UTS}") == []
    note = world.wh.scalar(
        f"SELECT note FROM {world.t('order_tracking_exceptions')} WHERE check_name = ?",
        (f"{G}.latest_event_time.{UTS}",),
    )
    assert note.startswith("auto-resolved")


def test_a_table_that_is_only_behind_is_not_a_failure(world: World) -> None:
    """Tests 1-3 only compare what both marts have consumed: an anchor row whose events are
    not loaded yet (the events table synced before it) is not reported."""
    world.touch(3, day(46) + 100)
    # the anchor alone moves on (as if spath had been synced before this change arrived)
    world.clock(day(46) + 200)
    sync(world.cfg, ["uni_tracking_info"])
    GroupEngine(world.cfg, world.cfg.marts[0], world.wh).run_anchor()
    assert world.wh.scalar(f"SELECT update_time FROM {world.t(UTI)} WHERE order_id = 3") == (
        day(46) + 100
    )
    report = run_checks(world.cfg, world.wh)
    assert failing(report) == {}


def test_an_order_updated_again_before_any_read_is_in_flight_not_a_gap(world: World) -> None:
    """Order 3 is touched at t1 (< the next clock) and again at t2 (> it) before the next
    cycle: that cycle loads the t1 event but never sees the t1 version of the uti row (the
    row already says t2, past the upper bound). Test 1 asks the source: the row has moved on
    past what was consumed, so this is in flight, not a gap. A real gap in the same run (order
    4's anchor time damaged in the mart) is still reported, and order 3 settles next cycle."""
    world.touch(3, day(46) + 100)
    world.touch(3, day(47) + 100)
    assert world.step(day(47)).ok
    wh, t = world.wh, world.t
    assert wh.scalar(f"SELECT update_time FROM {t(UTI)} WHERE order_id = 3") < day(46) + 100
    assert wh.scalar(f'SELECT MAX("pathTime") FROM {t(UTS)} WHERE order_id = 3') == (day(46) + 100)
    wh.execute(f"UPDATE {t(UTI)} SET update_time = update_time - 5 WHERE order_id = 4")
    test1 = f"{G}.latest_event_time.{UTS}"
    # (the uti table moved no row this cycle while its source holds one: a zero-row warning)
    assert failing(run_checks(world.cfg, world.wh)).get(test1) == ["4"]
    assert world.open_exceptions(test1) == ["4"]
    assert world.step(day(48)).ok
    wh.execute(f"UPDATE {t(UTI)} SET update_time = update_time + 5 WHERE order_id = 4")
    assert failing(run_checks(world.cfg, world.wh)) == {}


def test_quiet_follower_table_does_not_blind_test_3(world: World) -> None:
    """No order was created since day 40, so the follower's last consumed row is old; an
    order updated after that and missing its follower row is still found (the last cycle
    read the follower table up to its upper bound)."""
    world.touch(3, day(46) + 100)
    assert world.step(day(47)).ok
    world.wh.execute(f"DELETE FROM {world.t(ECS)} WHERE order_id = 3")
    assert failing(run_checks(world.cfg, world.wh)) == {f"{G}.has_row.{ECS}": ["3"]}


def test_freshness_against_the_source_clock(world: World) -> None:
    assert by_name(run_checks(world.cfg, world.wh))[f"{G}.freshness"].status == "pass"
    world.clock(day(50))  # the source moved on 5 days past the newest anchor row (day 45)
    r = by_name(run_checks(world.cfg, world.wh))[f"{G}.freshness"]
    assert r.status == "fail" and r.new_count == 1
    assert "behind the source clock" in r.description
    # a looser threshold passes again and resolves the open exception
    world.reconfigure(freshness_seconds=10 * DAY)
    r = by_name(run_checks(world.cfg, world.wh))[f"{G}.freshness"]
    assert r.status == "pass" and r.resolved_count == 1


def test_failed_slow_and_zero_row_cycles(world: World) -> None:
    # rows at or past the cycle's upper bound (within the lag, or dated ahead of the source
    # clock) are rows it was not allowed to read yet: a quiet cycle, not a zero-row failure
    world.touch(20, day(52))
    summary = world.step(day(51))
    assert summary.ok and sum(r.rows for r in summary.sync) == 0
    r = by_name(run_checks(world.cfg, world.wh))["runs.zero_row_cycle"]
    assert r.status == "pass" and r.new_count == 0
    assert world.open_exceptions("runs.zero_row_cycle") == []
    # a row that lands below the bound after the cycle read (a late commit, a backdated
    # correction) is one the cycle should have read: that is a zero-row failure
    world.touch(21, day(51) - 60)
    r = by_name(run_checks(world.cfg, world.wh))["runs.zero_row_cycle"]
    assert r.status == "fail"
    assert sorted(r.sample_keys) == [
        f"raw.{n}_raw" for n in ("ecs_order_info", "uni_tracking_info", "uni_tracking_spath")
    ]
    rows = {row[0]: dict(zip(r.columns, row, strict=True)) for row in r.sample}
    uti = rows["raw.uni_tracking_info_raw"]
    assert uti["pending_rows"] == 2 and uti["below_upper"] == 1  # order 20 is past the bound

    # a failed cycle: a source table disappears
    con = sqlite3.connect(world.src_path)
    con.execute("ALTER TABLE uni_tracking_spath RENAME TO spath_gone")
    con.commit()
    summary = world.step(day(53))
    assert not summary.ok
    con.execute("ALTER TABLE spath_gone RENAME TO uni_tracking_spath")
    con.commit()
    con.close()
    report = run_checks(world.cfg, world.wh)
    failed_cycle = by_name(report)["runs.failed_cycle"]
    assert failed_cycle.status == "fail" and failed_cycle.sample_keys == [summary.run_id]
    assert world.open_exceptions("runs.failed_cycle") == [summary.run_id]
    assert report.exit_code == 1  # blocking

    # a slow cycle (its recorded duration is over the threshold)
    last = world.step(day(54))
    world.wh.execute(
        f"UPDATE {world.wh.t(STATE, 'runs')} SET seconds = 9999 WHERE run_id = ?", (last.run_id,)
    )
    report = run_checks(world.cfg, world.wh)
    slow = by_name(report)["runs.slow_cycle"]
    assert slow.status == "fail" and slow.sample_keys == [last.run_id]
    assert slow.severity == "warning"
    # the zero-row cycle is no longer the last one: resolved
    assert by_name(report)["runs.zero_row_cycle"].status == "pass"
    assert world.open_exceptions("runs.zero_row_cycle") == []


def test_rows_dated_in_the_future_are_reported_until_the_clock_reaches_them(
    world: World,
) -> None:
    assert by_name(run_checks(world.cfg, world.wh))["runs.future_rows"].status == "pass"
    world.touch(20, day(60))  # a clock off by 9 days: sync reads below the source clock
    world.step(day(51))
    r = by_name(run_checks(world.cfg, world.wh))["runs.future_rows"]
    assert r.status == "fail" and r.severity == "warning"
    assert sorted(r.sample_keys) == [
        f"raw.{n}_raw" for n in ("ecs_order_info", "uni_tracking_info", "uni_tracking_spath")
    ]
    row = dict(zip(r.columns, r.sample[0], strict=True))
    assert row["future_rows"] == 1 and row["newest"] == str(day(60))
    uti = world.wh.query(f"SELECT order_id FROM {world.t(UTI)} WHERE order_id = 20")
    assert uti == []  # not loaded: why the check exists
    # within `future_seconds` (default one day) of the clock it is no longer reported
    world.step(day(59) + 1)
    assert by_name(run_checks(world.cfg, world.wh))["runs.future_rows"].status == "pass"
    assert world.open_exceptions("runs.future_rows") == []


def test_a_check_that_cannot_run_is_an_error_not_a_crash(world: World) -> None:
    world.reconfigure(checks=[{"name": "custom.broken", "sql": "SELECT nope FROM nowhere"}])
    report = run_checks(world.cfg, world.wh)
    r = by_name(report)["custom.broken"]
    assert r.status == "error" and "nowhere" in (r.error or "")
    assert r.new_count == 1 and report.exit_code == 1
    assert by_name(report)[f"{G}.has_events.{UTS}"].status == "pass"  # the others still ran
    assert by_name(run_checks(world.cfg, world.wh))["custom.broken"].new_count == 0


def test_check_command_exit_codes_and_output(tmp_path: Path) -> None:
    w = World(tmp_path, DuckDBWarehouse(path=tmp_path / "wh.duckdb")).build()
    w.wh.execute(f"DELETE FROM {w.t(ECS)} WHERE order_id = 6")
    w.close()
    cfg_path = tmp_path / "trackline.yml"
    cfg_path.write_text(yaml.safe_dump(w.data))
    result = CliRunner().invoke(main, ["check", "-c", str(cfg_path), "--log-format", "quiet"])
    assert result.exit_code == 1, result.output
    assert f"FAIL [blocking] {G}.has_row.{ECS}: 1 failing, 1 new (keys 6)" in result.output
    assert "SQL:" in result.output and "NOT EXISTS" in result.output
    ok = CliRunner().invoke(main, ["check", "-c", str(cfg_path), "--log-format", "quiet", "--json"])
    assert ok.exit_code == 1
    data = json.loads(ok.output)
    assert data["ok"] is False
    assert {r["name"]: r["new_count"] for r in data["results"]}[f"{G}.has_row.{ECS}"] == 0


def test_window_of_run_level_checks(world: World) -> None:
    """Failed cycles older than the window are not reported (and their exceptions resolve)."""
    con = sqlite3.connect(world.src_path)
    con.execute("ALTER TABLE ecs_order_info RENAME TO ecs_gone")
    con.commit()
    failed = world.step(day(47))
    con.execute("ALTER TABLE ecs_gone RENAME TO ecs_order_info")
    con.commit()
    con.close()
    assert by_name(run_checks(world.cfg, world.wh))["runs.failed_cycle"].status == "fail"
    world.wh.execute(
        f"UPDATE {world.wh.t(STATE, 'runs')} SET started_at = started_at - INTERVAL '2 days' "
        "WHERE run_id = ?",
        (failed.run_id,),
    )
    r = by_name(run_checks(world.cfg, world.wh))["runs.failed_cycle"]
    assert r.status == "pass" and r.resolved_count == 1


def test_status_section(world: World) -> None:
    from trackline.quality.status import status_lines, status_section

    world.wh.execute(f"DELETE FROM {world.t(ECS)} WHERE order_id = 6")
    run_checks(world.cfg, world.wh)
    section = status_section(world.cfg, world.wh, cycles=3)
    assert [c["status"] for c in section["cycles"]] == ["ok", "ok", "ok"]
    assert section["open_exceptions"][f"{G}.has_row.{ECS}"] == 1
    text = "\n".join(status_lines(section))
    assert "last cycles:" in text and f"failing\n  fail  [blocking] {G}.has_row.{ECS}" in text


def test_check_sql_is_portable(world: World) -> None:
    """Redshift is checked by parsing: every built-in check parses in its dialect
    and uses none of the forms it lacks."""
    import sqlglot

    from tests.redshift_checks import correlation_problems
    from trackline.quality.catalog import all_checks
    from trackline.sqlutil import parses

    checks = [c for c in all_checks(world.cfg, world.wh) if c.collect is None]
    assert len(checks) >= 9
    for c in checks:
        sql = f"CREATE TABLE trackline._tl_chk AS SELECT * FROM ({c.sql}) x"
        assert parses(sql, "redshift"), c.name
        upper = c.sql.upper()
        assert "IS DISTINCT FROM" not in upper and "NOT IN (" not in upper, c.name
        assert c.sql.count("?") == len(c.params), c.name
        assert not correlation_problems(sqlglot.parse_one(c.sql, read="redshift")), c.name


def test_in_flight_lookup_against_mariadb(mysql_db: MySQLDb, tmp_path: Path) -> None:
    """The source lookup of test 1 with MySQL's driver (``%s`` parameters) and DATETIME times:
    of the offending keys, only those whose source row moved past the consumed cursor are in
    flight."""
    import datetime as dt

    from trackline.config import Config
    from trackline.quality.checks import _moved_on_in_source

    mysql_db.execute(
        "CREATE TABLE uni_tracking_info (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
        "order_id BIGINT, update_time DATETIME(6) NOT NULL)"
    )
    t0 = dt.datetime(2026, 3, 1, 8, 0, 0)
    seen = t0 + dt.timedelta(hours=1)  # the anchor mart consumed rows below this
    mysql_db.executemany(
        "INSERT INTO uni_tracking_info (order_id, update_time) VALUES (%s, %s)",
        [
            (1, t0 + dt.timedelta(hours=2)),  # moved on past `seen`: in flight
            (2, t0 + dt.timedelta(minutes=30)),  # newer than the mart but consumed: a gap
            (3, t0),  # unchanged: a gap
        ],
    )
    cfg = Config.model_validate(
        {
            "sources": {"src": mysql_db.source_config(innodb_hold=False)},
            "warehouse": {"type": "duckdb", "path": str(tmp_path / "unused.duckdb")},
            "tables": [
                {"name": n, "cdc": {"strategy": "hybrid", "cursor": c, "id": "id"}}
                for n, c in (
                    ("uni_tracking_info", "update_time"),
                    ("ecs_order_info", "add_time"),
                    ("uni_tracking_spath", "pathTime"),
                )
            ],
            "marts": [
                {
                    "followers": [
                        {"table": "mart_uts", "source": "uni_tracking_spath", "kind": "events",
                         "time": "pathTime", "history_name": "uts"}
                    ]
                }
            ],
        }
    )  # fmt: skip
    probe = _moved_on_in_source(cfg, cfg.marts[0], seen)
    assert probe([(1, t0), (2, t0), (3, t0), (4, t0)]) == {1}
    assert _moved_on_in_source(cfg, cfg.marts[0], None)([(1, t0)]) == set()


@pytest.mark.servers
def test_rows_inside_the_lag_window_are_no_zero_row_failure_on_mariadb(
    mysql_db: MySQLDb, duckdb_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    """The reported false alarm: with a 300 s lag, rows written in the last 300 s are past
    the cycle's upper bound; a cycle that moves nothing then is quiet, not failing. A row
    that lands below the bound after the read (a late commit) is a real zero-row failure."""
    import datetime as dt

    from tests.integration.synctools import create_orders, insert_orders, make_config, table
    from trackline.load import open_warehouse
    from trackline.marts.cycle import run_cycle_on
    from trackline.quality.runlevel import alert_checks

    now = mysql_db.query("SELECT NOW(6)")[0][0]
    create_orders(mysql_db, 4, now - dt.timedelta(hours=2))
    cfg = make_config(
        mysql_db, duckdb_warehouse, tmp_path / "stage", [table("orders", lag_seconds=300)]
    )
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        assert sum(r.rows for r in run_cycle_on(cfg, wh).sync) == 4
        insert_orders(mysql_db, ["NOW"] * 4)  # inside the lag window
        assert sum(r.rows for r in run_cycle_on(cfg, wh).sync) == 0
        zero = by_name(run_checks(cfg, wh, checks=alert_checks(cfg, wh)))["runs.zero_row_cycle"]
        assert zero.status == "pass" and zero.new_count == 0
        # a late commit stamped an hour ago: the cycle should have read it
        insert_orders(mysql_db, [now - dt.timedelta(hours=1)])
        zero = by_name(run_checks(cfg, wh, checks=alert_checks(cfg, wh)))["runs.zero_row_cycle"]
        assert zero.status == "fail" and zero.new_count == 1
        row = dict(zip(zero.columns, zero.sample[0], strict=True))
        assert row["pending_rows"] == 5 and row["below_upper"] == 1
    finally:
        wh.close()
