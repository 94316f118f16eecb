"""Rows written behind the cursor: the watermark never passes the last row read, and
`runs.behind_watermark` reports the rows that land below it (real MariaDB).

A row written later with an older cursor (an application clock behind the database, a
restored backup, a backdated correction) is read if it lands above the watermark; below it,
incremental sync cannot see it, and `trackline check` must say so: table, count, fix.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any, TypeAlias

import pytest

from tests.conftest import MySQLDb, PgDb, S3Endpoint
from tests.integration.synctools import (
    create_orders,
    insert_orders,
    make_config,
    one,
    source_now,
    source_rows,
    state_watermark,
    sync_ok,
    table,
    warehouse,
    wh_count,
    wh_rows,
    write_config,
)
from trackline.config import Config, DuckDBWarehouse, PostgresWarehouse, RedshiftWarehouse
from trackline.quality.behind import behind_watermark_check
from trackline.quality.run import CheckReport, run_checks

Warehouse: TypeAlias = DuckDBWarehouse | PostgresWarehouse
CHECK = "runs.behind_watermark"


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    return tmp_path / "stage"


def _check(cfg: Config) -> CheckReport:
    with warehouse(cfg) as wh:
        return run_checks(cfg, wh, send_alerts=False, checks=[behind_watermark_check(cfg)])


def _failure(report: CheckReport) -> dict[str, Any]:
    (r,) = report.results
    assert r.name == CHECK and r.status == "fail" and r.blocking, r
    assert len(r.sample) == 1
    return dict(zip(r.columns, r.sample[0], strict=True))


def _insert_times(mysql_db: MySQLDb, times: list[dt.datetime], tag: str) -> None:
    rows = [(f"{tag}{i}", "late", "1.00", ts) for i, ts in enumerate(times)]
    for i in range(0, len(rows), 5000):
        mysql_db.executemany(
            "INSERT INTO orders (order_no, status, amount, update_time) VALUES (%s,%s,%s,%s)",
            rows[i : i + 5000],
        )


def test_after_the_snapshot_the_cursor_is_the_last_row_read(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path
) -> None:
    """The first sync of a hybrid table is a snapshot below `now - lag`; its cursor must be
    the last row it read, so a row written afterwards with an older time than that bound
    (but newer than every row read) is still loaded."""
    now = source_now(mysql_db)
    start = now - dt.timedelta(hours=3)
    create_orders(mysql_db, 10, start)  # 3 h ago, one per second
    cfg = make_config(mysql_db, warehouse_config, stage, [table(lag_seconds=300)])
    assert one(sync_ok(cfg)).rows == 10
    wm = state_watermark(cfg, "public.orders_raw")
    assert (wm.ts, wm.id) == (start + dt.timedelta(seconds=9), 10)  # not now - 300 s

    insert_orders(mysql_db, [now - dt.timedelta(minutes=30), now - dt.timedelta(hours=1)])
    assert one(sync_ok(cfg)).rows == 2  # backdated, yet above the last row read
    assert wh_rows(cfg, "public.orders_raw") == source_rows(mysql_db)
    assert _check(cfg).ok


@pytest.mark.parametrize("strategy", ["timestamp", "id"])
def test_other_strategies_keep_the_last_row_read(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, strategy: str
) -> None:
    now = source_now(mysql_db)
    create_orders(mysql_db, 5, now - dt.timedelta(hours=3))
    mode = "merge" if strategy == "timestamp" else "append"
    cfg = make_config(
        mysql_db,
        warehouse_config,
        stage,
        [table(strategy=strategy, lag_seconds=300, write_mode=mode)],
    )
    sync_ok(cfg)
    key = "public.orders" if mode == "merge" else "public.orders_raw"
    wm = state_watermark(cfg, key)
    if strategy == "id":
        assert wm.id == 5
    else:
        assert wm.ts == now - dt.timedelta(hours=3) + dt.timedelta(seconds=4)
    insert_orders(mysql_db, [now - dt.timedelta(minutes=30)])
    # timestamp re-reads its inclusive boundary row too (its target is idempotent by key)
    assert one(sync_ok(cfg)).rows == (2 if strategy == "timestamp" else 1)
    assert wh_rows(cfg, key) == source_rows(mysql_db)


def _behind_scenario(mysql_db: MySQLDb, cfg: Config, key: str) -> None:
    now = source_now(mysql_db)
    start = now - dt.timedelta(hours=2)
    create_orders(mysql_db, 60, start, step_seconds=60)  # one a minute, up to 1 h ago
    sync_ok(cfg)
    assert _check(cfg).ok
    # an update in place moves a row past the watermark: its old version stays in an append
    # target, the merge target still has it where it was: neither is a missing row
    mysql_db.execute("UPDATE orders SET update_time = %s WHERE id = 30", (now,))
    # a backdated correction and a clock 90 min behind: below the watermark (1 h ago)
    _insert_times(mysql_db, [start + dt.timedelta(minutes=m, seconds=7) for m in (5, 6, 7)], "B")
    assert one(sync_ok(cfg)).rows == 0  # invisible to incremental sync: hence the check
    report = _check(cfg)
    assert not report.ok and report.exit_code == 1
    row = _failure(report)
    assert row["table_key"] == key
    assert (row["missing"], row["source_rows"], row["loaded_rows"]) == (3, 61, 58)
    assert row["fix"] == "reset orders or lag_seconds>300"
    assert report.results[0].new_count == 1
    assert _check(cfg).results[0].new_count == 0  # reported once, not on every run

    # the fix: reset + resync loads everything; the check passes again
    from trackline.status import reset_table

    reset_table(cfg, "orders", None, None)
    sync_ok(cfg)
    assert wh_count(cfg, key) == 62  # all but row 30, updated to now: it waits for the lag
    assert wh_rows(cfg, key) == [r for r in source_rows(mysql_db) if r[0] != 30]
    assert _check(cfg).ok


@pytest.mark.parametrize("write_mode", ["append", "merge"])
def test_rows_behind_the_watermark_are_reported_with_table_count_and_fix(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, write_mode: str
) -> None:
    cfg = make_config(
        mysql_db, warehouse_config, stage, [table(lag_seconds=300, write_mode=write_mode)]
    )
    _behind_scenario(
        mysql_db, cfg, "public.orders_raw" if write_mode == "append" else "public.orders"
    )


@pytest.mark.parametrize("write_mode", ["append", "merge"])
def test_rows_behind_the_watermark_on_redshift_compat(
    mysql_db: MySQLDb, pg_db: PgDb, s3: S3Endpoint, write_mode: str
) -> None:
    """The check's warehouse statements, as Redshift receives them (compat mode)."""
    wh = RedshiftWarehouse(**pg_db.redshift_compat())
    cfg = make_config(
        mysql_db,
        wh,  # type: ignore[arg-type]
        s3.stage_config("stage"),
        [table(lag_seconds=300, write_mode=write_mode)],
    )
    _behind_scenario(
        mysql_db, cfg, "public.orders_raw" if write_mode == "append" else "public.orders"
    )


def test_check_command_names_the_table_the_count_and_the_fix(
    mysql_db: MySQLDb, duckdb_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from trackline.cli import main

    now = source_now(mysql_db)
    create_orders(mysql_db, 20, now - dt.timedelta(hours=2), step_seconds=60)
    cfg = make_config(mysql_db, duckdb_warehouse, tmp_path / "stage", [table(lag_seconds=300)])
    sync_ok(cfg)
    _insert_times(mysql_db, [now - dt.timedelta(hours=2, minutes=-3, seconds=-1)] * 4, "C")
    sync_ok(cfg)
    path = write_config(tmp_path / "trackline.yml", cfg)
    result = CliRunner().invoke(main, ["check", "-c", str(path), "--log-format", "quiet"])
    assert result.exit_code == 1, result.output
    assert "FAIL [blocking] runs.behind_watermark: 1 failing, 1 new (keys public.orders_raw)" in (
        result.output
    )
    line = next(x for x in result.output.splitlines() if x.strip().startswith("public.orders_raw"))
    assert "| 4 | 23 | 19 |" in line and line.endswith("| reset orders or lag_seconds>300"), line
    assert "Fix: `trackline reset <table>`" in result.output


def test_id_rows_committed_below_the_watermark_are_reported(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path
) -> None:
    """`id`: a row that lands below the watermark (e.g. committed after the hold ceiling let
    the read pass it; here, an explicit lower id) is counted from the ids loaded lately."""
    create_orders(mysql_db, 5, dt.datetime(2024, 3, 1))
    mysql_db.execute("DELETE FROM orders WHERE id = 3")
    cfg = make_config(mysql_db, warehouse_config, stage, [table(strategy="id")])
    sync_ok(cfg)
    assert _check(cfg).ok
    mysql_db.execute(
        "INSERT INTO orders (id, order_no, status, amount, update_time) "
        "VALUES (3, 'L', 'late', 1, '2024-03-01')"
    )
    sync_ok(cfg)
    row = _failure(_check(cfg))
    assert (row["table_key"], row["missing"]) == ("public.orders_raw", 1)
    assert row["fix"] == "reset orders or hold_ceiling>3600"


@pytest.mark.slow
def test_80000_backdated_orders_are_loaded_or_reported(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path
) -> None:
    """The issue's reproduction: after a sync, 80,000 orders are inserted 5-60 minutes in the
    past. Every one of them is loaded, or counted by `trackline check`."""
    now = source_now(mysql_db)
    create_orders(mysql_db, 500, now - dt.timedelta(hours=6), step_seconds=40)  # to ~40 min ago
    cfg = make_config(mysql_db, warehouse_config, stage, [table(lag_seconds=300)])
    sync_ok(cfg)
    before = wh_count(cfg, "public.orders_raw")
    rng = random.Random(11)
    now = source_now(mysql_db)
    times = [now - dt.timedelta(seconds=rng.uniform(300, 3600)) for _ in range(80_000)]
    _insert_times(mysql_db, times, "P")
    sync_ok(cfg)
    loaded = wh_count(cfg, "public.orders_raw") - before
    report = _check(cfg)
    reported = _failure(report)["missing"] if not report.ok else 0
    assert loaded + reported == 80_000, (loaded, reported)
    assert loaded > 0 and reported > 0  # both paths taken: rows above and below the cursor
