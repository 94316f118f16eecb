"""G3: kill `trackline sync` at every step, rerun, and end exactly as an uninterrupted run.

The same scenario runs twice against the same MariaDB source: once into warehouse A with a
fault injected (TRACKLINE_FAIL_AT) and a rerun, once into a fresh warehouse B without faults.
A and B must hold the same rows (batch ids included), the same ledger and the same cursor.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import MySQLDb, PgDb
from tests.integration.synctools import (
    ORDER_COLS,
    create_orders,
    insert_orders,
    ledger,
    make_config,
    run_faulted,
    source_now,
    source_rows,
    state_watermark,
    sync_ok,
    table,
    wh_rows,
    write_config,
)
from trackline.cli import main
from trackline.config import (
    Config,
    DuckDBWarehouse,
    PostgresWarehouse,
    RedshiftWarehouse,
    TableConfig,
)
from trackline.status import reset_table

Warehouse = DuckDBWarehouse | PostgresWarehouse
PAST = dt.datetime(2024, 3, 1, 8, 0, 0)
STEPS = ["sync.after_extract", "sync.after_stage", "sync.before_commit", "sync.after_commit"]
COLS = [*ORDER_COLS, "_tl_batch_id"]


def second_warehouse(warehouse_config: Warehouse, tmp_path: Path, request: Any) -> Warehouse:
    """A fresh warehouse of the same engine for the uninterrupted reference run."""
    if isinstance(warehouse_config, DuckDBWarehouse):
        return DuckDBWarehouse(path=tmp_path / "reference.duckdb")
    # A second PostgreSQL database: the pg_db fixture gives one per test, so make another.
    pg: PgDb = request.getfixturevalue("pg_db")
    import psycopg

    name = f"{pg.database}_ref"
    with psycopg.connect(pg.dsn, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(pg.dsn, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    request.addfinalizer(drop)
    return pg.warehouse_config(database=name)


def configs(
    mysql_db: MySQLDb, a: Warehouse, b: Warehouse, tmp_path: Path, t: TableConfig
) -> tuple[Config, Config]:
    return (
        make_config(mysql_db, a, tmp_path / "stage_a", [t]),
        make_config(mysql_db, b, tmp_path / "stage_b", [t]),
    )


def with_lag(cfg: Config, lag: int) -> Config:
    tables = [t.model_copy(update={"lag_seconds": lag}) for t in cfg.tables]
    return cfg.model_copy(update={"tables": tables})


def assert_same(a: Config, b: Config, key: str, *, same_cursor: bool = True) -> None:
    rows_a = wh_rows(a, key, COLS, ["id", "_tl_batch_id"])
    rows_b = wh_rows(b, key, COLS, ["id", "_tl_batch_id"])
    assert rows_a == rows_b
    assert len({(r[0], r[4]) for r in rows_a}) == len(rows_a)  # no duplicate version
    assert ledger(a, key) == ledger(b, key)
    if same_cursor:
        wa, wb = state_watermark(a, key), state_watermark(b, key)
        assert (wa.ts, wa.id, wa.phase) == (wb.ts, wb.id, wb.phase)


def _scenario_source(mysql_db: MySQLDb) -> None:
    """20 old rows, read by the initial snapshot (3 batches of 7)."""
    create_orders(mysql_db, 20, PAST, step_seconds=0.5)


def _scenario_changes(mysql_db: MySQLDb) -> None:
    """After the initial run (cursor an hour back): 17 rows in one second, 4 in the next,
    and 3 old rows updated into the second one; all in the past of the source clock."""
    sec = (source_now(mysql_db) - dt.timedelta(minutes=20)).replace(microsecond=0)
    insert_orders(mysql_db, [sec] * 17)
    insert_orders(mysql_db, [sec + dt.timedelta(seconds=1)] * 4)
    mysql_db.execute(
        "UPDATE orders SET status = 'moved', update_time = %s WHERE id IN (2, 7, 19)",
        (sec + dt.timedelta(seconds=1),),
    )


def _round(
    a: Config, b: Config, key: str, kill: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One sync of A killed at `kill` then rerun, one clean sync of B."""
    if kill:
        run_faulted(a, kill, monkeypatch)
    sync_ok(a)
    sync_ok(b)


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_each_step_then_rerun_equals_clean_run(
    mysql_db: MySQLDb,
    warehouse_config: Warehouse,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    """Append target: kill in the first and the second batch, of the initial snapshot and of
    an incremental run with same-second rows across batch boundaries."""
    ref = second_warehouse(warehouse_config, tmp_path, request)
    t = table(batch_size=7)
    a, b = configs(mysql_db, warehouse_config, ref, tmp_path, t)
    key = "public.orders_raw"
    _scenario_source(mysql_db)

    # Initial snapshot (lag 1 h so the cursor ends an hour back), killed in batch 1.
    _round(with_lag(a, 3600), with_lag(b, 3600), key, f"{step}@1", monkeypatch)
    assert_same(a, b, key, same_cursor=False)  # the cursor is each run's clock
    assert wh_rows(a, key) == source_rows(mysql_db)

    # Incremental, killed in batch 2, then in batch 1.
    _scenario_changes(mysql_db)
    _round(a, b, key, f"{step}@2", monkeypatch)
    assert_same(a, b, key)
    mysql_db.execute("UPDATE orders SET status = 'again', update_time = NOW(6) WHERE id > 15")
    _round(a, b, key, f"{step}@1", monkeypatch)
    assert_same(a, b, key)
    newest = {r[0]: r for r in wh_rows(a, key, ORDER_COLS, ["id", "update_time"])}
    assert sorted(newest.values()) == source_rows(mysql_db)

    # A reset makes the next run a snapshot again: kill it in batch 2.
    reset_table(a, "orders")
    reset_table(b, "orders")
    _round(a, b, key, f"{step}@2", monkeypatch)
    assert_same(a, b, key, same_cursor=False)
    assert wh_rows(a, key) == source_rows(mysql_db)
    assert sync_ok(a)[0].rows == 0  # and a further run moves nothing


@pytest.mark.parametrize("step", STEPS)
def test_kill_merge_target_then_rerun_equals_clean_run(
    mysql_db: MySQLDb,
    warehouse_config: Warehouse,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    ref = second_warehouse(warehouse_config, tmp_path, request)
    t = table(batch_size=7, write_mode="merge")
    a, b = configs(mysql_db, warehouse_config, ref, tmp_path, t)
    _scenario_source(mysql_db)
    _round(with_lag(a, 3600), with_lag(b, 3600), "public.orders", None, monkeypatch)
    _scenario_changes(mysql_db)
    _round(a, b, "public.orders", f"{step}@2", monkeypatch)
    assert_same(a, b, "public.orders")
    assert wh_rows(a, "public.orders") == source_rows(mysql_db)


def test_hard_kill_in_a_subprocess_then_rerun(
    mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """TRACKLINE_FAIL_MODE=exit ends the process with os._exit (no finally, no rollback)."""
    ref = second_warehouse(warehouse_config, tmp_path, request)
    t = table(batch_size=7)
    a, b = configs(mysql_db, warehouse_config, ref, tmp_path, t)
    _scenario_source(mysql_db)
    path = write_config(tmp_path / "a.yml", a)
    exe = str(Path(sys.executable).with_name("trackline"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKLINE_")}
    for step in ("sync.before_commit@2", "sync.after_stage@2"):
        killed = subprocess.run(
            [exe, "sync", "-c", str(path), "--log-format", "plain"],
            env={**env, "TRACKLINE_FAIL_AT": step, "TRACKLINE_FAIL_MODE": "exit"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert killed.returncode == 99, (step, killed.stdout, killed.stderr)
    done = subprocess.run(
        [exe, "sync", "-c", str(path), "--log-format", "plain"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    sync_ok(b)
    assert_same(a, b, "public.orders_raw", same_cursor=False)
    assert wh_rows(a, "public.orders_raw") == source_rows(mysql_db)


@pytest.mark.parametrize("write_mode", ["append", "merge"])
def test_replay_twice_leaves_the_table_unchanged(
    mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path, write_mode: str
) -> None:
    t = table(batch_size=7, write_mode=write_mode)
    cfg = make_config(mysql_db, warehouse_config, tmp_path / "stage", [t])
    key = f"public.{t.target}"
    _scenario_source(mysql_db)
    sync_ok(with_lag(cfg, 3600))
    _scenario_changes(mysql_db)
    sync_ok(cfg)
    before = wh_rows(cfg, key, COLS, ["id", "_tl_batch_id"])
    n_batches = len(ledger(cfg, key))
    assert n_batches == 3 + 4

    path = write_config(tmp_path / "trackline.yml", cfg)
    runner = CliRunner()
    for _ in range(2):
        r = runner.invoke(main, ["replay", "-c", str(path), "orders"])
        assert r.exit_code == 0, r.output
        assert f"replayed {n_batches} batches" in r.output
        assert wh_rows(cfg, key, COLS, ["id", "_tl_batch_id"]) == before
    r = runner.invoke(main, ["replay", "-c", str(path), "orders", "--from-batch", "5"])
    assert r.exit_code == 0, r.output
    assert "replayed 3 batches" in r.output
    assert wh_rows(cfg, key, COLS, ["id", "_tl_batch_id"]) == before
    if write_mode == "merge":
        assert wh_rows(cfg, key) == source_rows(mysql_db)


@pytest.mark.parametrize("kill", ["sync.after_commit@1", "sync.after_commit@2"])
def test_kill_after_a_batch_of_null_cursor_rows_loads_them_once(
    mysql_db: MySQLDb,
    warehouse_config: Warehouse,
    tmp_path: Path,
    request: Any,
    monkeypatch: pytest.MonkeyPatch,
    kill: str,
) -> None:
    """`null_cursor: load` on a table read incrementally from the start (no integer primary
    key, so no snapshot): the NULL-cursor rows sort first and fill whole batches; a kill after
    such a batch must not load them twice on the rerun."""
    mysql_db.execute(
        "CREATE TABLE ev (code VARCHAR(8) PRIMARY KEY, id INT NOT NULL, update_time DATETIME, "
        "KEY (update_time, id))"
    )
    mysql_db.executemany(
        "INSERT INTO ev VALUES (%s, %s, %s)",
        [(f"n{i}", i, None) for i in range(1, 6)]
        + [(f"t{i}", 10 + i, PAST + dt.timedelta(seconds=i)) for i in range(1, 4)],
    )
    t = table(
        "ev",
        batch_size=2,
        cdc={"strategy": "hybrid", "cursor": "update_time", "id": "id", "null_cursor": "load"},
    )
    b = second_warehouse(warehouse_config, tmp_path, request)
    a_cfg, b_cfg = configs(mysql_db, warehouse_config, b, tmp_path, t)
    run_faulted(a_cfg, kill, monkeypatch)
    sync_ok(a_cfg)
    sync_ok(b_cfg)
    cols = ["code", "id", "update_time", "_tl_batch_id"]
    rows_a = wh_rows(a_cfg, "public.ev_raw", cols, ["id"])
    assert [r[1] for r in rows_a] == [1, 2, 3, 4, 5, 11, 12, 13]  # each once
    assert rows_a == wh_rows(b_cfg, "public.ev_raw", cols, ["id"])
    assert ledger(a_cfg, "public.ev_raw") == ledger(b_cfg, "public.ev_raw")
    wa = state_watermark(a_cfg, "public.ev_raw")
    assert (wa.ts, wa.id) == (PAST + dt.timedelta(seconds=3), 13)


@pytest.mark.parametrize("step", STEPS)
def test_redshift_adapter_kill_at_each_step_then_rerun_equals_clean_run(
    mysql_db: MySQLDb,
    pg_db: PgDb,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    """G3 through the Redshift adapter (compat mode against PostgreSQL: the COPY of the
    staged files runs inside the watermark's transaction, the lock is a row of
    trackline.locks): a kill at each step, in an append and a merge table, then a rerun, ends
    as an uninterrupted run."""
    ref = second_warehouse(pg_db.warehouse_config(), tmp_path, request)
    assert isinstance(ref, PostgresWarehouse)
    red_a = RedshiftWarehouse(**pg_db.redshift_compat())
    red_b = RedshiftWarehouse(**pg_db.redshift_compat(database=ref.database))
    pairs = [
        (
            make_config(mysql_db, red_a, tmp_path / f"stage_a_{mode}", [t]),
            make_config(mysql_db, red_b, tmp_path / f"stage_b_{mode}", [t]),
            key,
        )
        for mode, t, key in (
            ("append", table(batch_size=7), "public.orders_raw"),
            ("merge", table(batch_size=5, write_mode="merge"), "public.orders"),
        )
    ]
    _scenario_source(mysql_db)
    for a, b, key in pairs:
        _round(with_lag(a, 3600), with_lag(b, 3600), key, f"{step}@2", monkeypatch)
        assert_same(a, b, key, same_cursor=False)  # the cursor is each run's clock
    _scenario_changes(mysql_db)
    for a, b, key in pairs:
        _round(a, b, key, f"{step}@3", monkeypatch)
        assert_same(a, b, key)
    (a_app, _, raw), (a_mrg, _, merged) = pairs
    assert wh_rows(a_mrg, merged) == source_rows(mysql_db)
    newest = {r[0]: r for r in wh_rows(a_app, raw, ORDER_COLS, ["id", "update_time"])}
    assert sorted(newest.values()) == source_rows(mysql_db)
    assert pg_db.query("SELECT COUNT(*) FROM trackline.locks") == [(0,)]
