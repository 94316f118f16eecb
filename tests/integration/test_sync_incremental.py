"""Incremental correctness of `trackline sync` against real MariaDB → DuckDB / PostgreSQL.

Each test builds a source table, syncs, changes the source, syncs again and compares the
warehouse with the source row by row. The source clock is MariaDB's NOW(); `lag_seconds: 0`
makes rows written a moment ago visible, and a larger lag on the first run is how a test
places the watermark in the past so later rows can carry past (and shared) timestamps.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import MySQLDb
from tests.integration.synctools import (
    ORDER_COLS,
    ORDERS_DDL,
    create_orders,
    insert_orders,
    ledger,
    make_config,
    one,
    source_now,
    source_rows,
    state_watermark,
    sync_ok,
    sync_when_quiet,
    table,
    wait_for_no_other_writers,
    wh_count,
    wh_exists,
    wh_rows,
    write_config,
)
from trackline import faults
from trackline.cli import main
from trackline.config import DuckDBWarehouse, PostgresWarehouse
from trackline.errors import InjectedFault
from trackline.report import NullReporter
from trackline.sync import sync

Warehouse = DuckDBWarehouse | PostgresWarehouse
PAST = dt.datetime(2024, 3, 1, 8, 0, 0)


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    return tmp_path / "stage"


# --------------------------------------------------------------------------- basics


def test_initial_load_then_only_changed_rows_move(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path
) -> None:
    create_orders(mysql_db, 30, PAST)
    cfg = make_config(mysql_db, warehouse_config, stage, [table(batch_size=8)])

    reporter = NullReporter()
    (first,) = sync(cfg, reporter=reporter)
    assert first.status == "ok" and (first.rows, first.batches) == (30, 4)
    assert wh_rows(cfg, "public.orders_raw") == source_rows(mysql_db)
    # the snapshot and the read after it are one run: one "done", with the run's totals
    done = [(m, f) for k, m, f in reporter.events if k == "done"]
    assert len(done) == 1 and done[0][1]["rows"] == 30, done

    # Nothing changed: nothing moves.
    assert one(sync_ok(cfg)).rows == 0

    # 5 new rows and 3 updates, all stamped by the source clock.
    insert_orders(mysql_db, ["NOW"] * 5)
    mysql_db.execute(
        "UPDATE orders SET status = 'paid', update_time = NOW(6) WHERE id IN (3, 10, 30)"
    )
    second = one(sync_ok(cfg))
    assert second.rows == 8
    last = ledger(cfg, "public.orders_raw")[-1][0]
    moved = wh_rows(cfg, "public.orders_raw", ["id", "status", "_tl_batch_id"])
    assert sorted(r[0] for r in moved if r[2] == last) == [3, 10, 30, 31, 32, 33, 34, 35]
    # Append raw target: old and new versions both present, 38 rows in all.
    assert wh_count(cfg, "public.orders_raw") == 38
    newest = {r[0]: r for r in wh_rows(cfg, "public.orders_raw", ORDER_COLS, ("id", "update_time"))}
    assert sorted(newest.values()) == source_rows(mysql_db)


def test_updates_merge_target_keeps_one_row_per_key(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path
) -> None:
    create_orders(mysql_db, 20, PAST)
    cfg = make_config(mysql_db, warehouse_config, stage, [table(batch_size=6, write_mode="merge")])
    sync_ok(cfg)
    assert wh_rows(cfg, "public.orders") == source_rows(mysql_db)
    for round_ in range(3):
        mysql_db.execute(
            "UPDATE orders SET status = %s, amount = amount + 1, update_time = NOW(6) "
            "WHERE id %% 4 = %s",
            (f"s{round_}", round_),
        )
        insert_orders(mysql_db, ["NOW"] * 2)
        sync_ok(cfg)
        assert wh_rows(cfg, "public.orders") == source_rows(mysql_db)
    keys = [r[0] for r in wh_rows(cfg, "public.orders", ["id"])]
    assert len(keys) == len(set(keys)) == 26


def test_many_rows_in_one_second_across_batch_boundaries(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 rows share one second; batch_size 7 cuts that second 7 times. The (ts, id) cursor
    must read each row once: no miss, no duplicate, also when a run stops between batches."""
    create_orders(mysql_db, 5, PAST)
    # First run with a 1 h lag: the watermark lands an hour behind the source clock.
    early = make_config(mysql_db, warehouse_config, stage, [table(batch_size=7, lag_seconds=3600)])
    sync_ok(early)
    wm = state_watermark(early, "public.orders_raw")
    assert isinstance(wm.ts, dt.datetime)

    second = (source_now(mysql_db) - dt.timedelta(minutes=30)).replace(microsecond=0)
    assert second > wm.ts
    insert_orders(mysql_db, [second] * 50)
    insert_orders(mysql_db, [second + dt.timedelta(seconds=1)] * 3)

    cfg = make_config(mysql_db, warehouse_config, stage, [table(batch_size=7)])
    # Stop after the 3rd batch (mid-second), then continue: the resume reads
    # (ts = second AND id > last id), never the rows of the first three batches again.
    monkeypatch.setenv("TRACKLINE_FAIL_AT", "sync.after_commit@3")
    faults.reset()
    with pytest.raises(InjectedFault):
        sync(cfg)
    monkeypatch.delenv("TRACKLINE_FAIL_AT")
    mid = state_watermark(cfg, "public.orders_raw")
    assert mid.ts == second and mid.id == 5 + 21

    res = one(sync_ok(cfg))
    assert res.rows == 53 - 21
    rows = wh_rows(cfg, "public.orders_raw")
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)) == 58
    assert rows == source_rows(mysql_db)
    assert [n for _, n in ledger(cfg, "public.orders_raw")][-8:] == [7, 7, 7, 7, 7, 7, 7, 4]
    final = state_watermark(cfg, "public.orders_raw")
    assert (final.ts, final.id) == (second + dt.timedelta(seconds=1), 58)


# --------------------------------------------------------------------------- cursors


@pytest.mark.parametrize("write_mode", ["append", "merge"])
def test_hybrid_unix_int_cursor(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, write_mode: str
) -> None:
    mysql_db.execute(
        "CREATE TABLE ev (id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "code VARCHAR(8), update_time INT NOT NULL, KEY (update_time, id))"
    )
    now = int(mysql_db.query("SELECT UNIX_TIMESTAMP()")[0][0])
    old = now - 7200
    mysql_db.executemany(
        "INSERT INTO ev (code, update_time) VALUES (%s, %s)",
        [(f"a{i}", old + i // 4) for i in range(20)],
    )
    t = table("ev", batch_size=6, write_mode=write_mode)
    early = make_config(
        mysql_db, warehouse_config, stage, [t.model_copy(update={"lag_seconds": 3600})]
    )
    sync_ok(early)
    key = f"public.{t.target}"
    wm = state_watermark(early, key)
    # the last row actually read, not the upper bound (now - 3600): see test_sync_behind.py
    assert isinstance(wm.ts, int) and (wm.ts, wm.id) == (old + 4, 20)

    # 15 rows in one unix second, 5 in the next; one earlier row updated into that second.
    mid = now - 1800
    mysql_db.executemany(
        "INSERT INTO ev (code, update_time) VALUES (%s, %s)",
        [(f"b{i}", mid + (i >= 15)) for i in range(20)],
    )
    mysql_db.execute("UPDATE ev SET code = 'upd', update_time = %s WHERE id = 2", (mid,))
    # A row stamped in the current second is not read yet (ts < upper is strict).
    mysql_db.execute("INSERT INTO ev (code, update_time) VALUES ('future', %s)", (now + 3600,))
    cfg = make_config(mysql_db, warehouse_config, stage, [t])
    res = one(sync_ok(cfg))
    assert res.rows == 21
    got = wh_rows(cfg, key, ["id", "code", "update_time"], ["id", "update_time"])
    src = [r for r in mysql_db.query("SELECT id, code, update_time FROM ev ORDER BY id")]
    if write_mode == "merge":
        assert got == [r for r in src if r[1] != "future"]
    else:
        assert len(got) == 41
        assert {r for r in got} == {r for r in src if r[1] != "future"} | {(2, "a1", old)}
    wm = state_watermark(cfg, key)
    assert (wm.ts, wm.id) == (mid + 1, 40)


def test_timestamp_strategy_with_merge_rereads_boundary_idempotently(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path
) -> None:
    create_orders(mysql_db, 12, PAST, step_seconds=0)  # all in one second
    cfg = make_config(
        mysql_db,
        warehouse_config,
        stage,
        [table(strategy="timestamp", write_mode="merge", batch_size=5)],
    )
    one(sync_ok(cfg))
    assert wh_rows(cfg, "public.orders") == source_rows(mysql_db)
    for _ in range(2):  # re-reading the boundary second changes nothing
        sync_ok(cfg)
        assert wh_rows(cfg, "public.orders") == source_rows(mysql_db)
    mysql_db.execute("UPDATE orders SET status = 'done', update_time = NOW(6) WHERE id < 4")
    insert_orders(mysql_db, ["NOW"] * 3)
    sync_ok(cfg)
    assert wh_rows(cfg, "public.orders") == source_rows(mysql_db)
    wm = state_watermark(cfg, "public.orders")
    assert wm.id is None and wm.ts == max(r[4] for r in source_rows(mysql_db))


def test_id_strategy_and_truncated_table_detection(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path
) -> None:
    mysql_db.execute(
        "CREATE TABLE log (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(20))"
    )
    mysql_db.executemany("INSERT INTO log (msg) VALUES (%s)", [(f"m{i}",) for i in range(20)])
    cfg = make_config(
        mysql_db, warehouse_config, stage, [table("log", strategy="id", batch_size=6)]
    )
    assert one(sync_ok(cfg)).rows == 20
    mysql_db.executemany("INSERT INTO log (msg) VALUES (%s)", [(f"n{i}",) for i in range(5)])
    assert one(sync_ok(cfg)).rows == 5
    cols, key = ["id", "msg"], "public.log_raw"
    assert wh_rows(cfg, key, cols) == mysql_db.query("SELECT id, msg FROM log ORDER BY id")
    assert state_watermark(cfg, key).id == 25

    # The table is truncated and refilled: its max id (3) is below the watermark (25).
    mysql_db.execute("TRUNCATE TABLE log")
    mysql_db.executemany("INSERT INTO log (msg) VALUES (%s)", [("x",), ("y",), ("z",)])
    before = wh_rows(cfg, key, cols)
    res = one(sync(cfg))
    assert res.status == "failed"
    assert res.error and "truncated" in res.error and "log" in res.error
    assert "trackline reset log" in res.error
    assert wh_rows(cfg, key, cols) == before
    assert state_watermark(cfg, key).id == 25
    assert len(ledger(cfg, key)) == 5


def test_full_strategy_replaces_atomically(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_orders(mysql_db, 17, PAST)
    cfg = make_config(mysql_db, warehouse_config, stage, [table(strategy="full", batch_size=5)])
    assert cfg.tables[0].write_mode == "replace"
    assert one(sync_ok(cfg)).rows == 17
    assert wh_rows(cfg, "public.orders") == source_rows(mysql_db)

    mysql_db.execute("DELETE FROM orders WHERE id IN (2, 9, 16)")
    mysql_db.execute("UPDATE orders SET status = 'x' WHERE id = 5")
    insert_orders(mysql_db, [PAST] * 2)
    expected = source_rows(mysql_db)
    before = wh_rows(cfg, "public.orders")

    # A crash in the middle of the snapshot leaves the previous snapshot whole.
    monkeypatch.setenv("TRACKLINE_FAIL_AT", "sync.before_commit@3")
    faults.reset()
    with pytest.raises(InjectedFault):
        sync(cfg)
    monkeypatch.delenv("TRACKLINE_FAIL_AT")
    assert wh_rows(cfg, "public.orders") == before

    assert one(sync_ok(cfg)).rows == 16
    assert wh_rows(cfg, "public.orders") == expected

    # An empty source is refused by the shrink guard; with the guard off it empties the target.
    mysql_db.execute("DELETE FROM orders")
    res = one(sync(cfg))
    assert res.status == "failed" and res.error and "shrink_guard" in res.error
    assert wh_rows(cfg, "public.orders") == expected
    unguarded = cfg.tables[0].model_copy(update={"shrink_guard": 0})
    assert one(sync_ok(cfg.model_copy(update={"tables": [unguarded]}))).rows == 0
    assert wh_count(cfg, "public.orders") == 0


def test_query_source_join_with_cursor_on_its_columns(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path
) -> None:
    mysql_db.execute(
        "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(20) CHARACTER SET utf8mb4)"
    )
    mysql_db.executemany("INSERT INTO customers VALUES (%s, %s)", [(1, "Ann"), (2, "Bö 😀")])
    mysql_db.execute(ORDERS_DDL)
    mysql_db.execute("ALTER TABLE orders ADD COLUMN customer_id INT")
    insert_orders(mysql_db, [PAST + dt.timedelta(seconds=i // 3) for i in range(10)])
    mysql_db.execute("UPDATE orders SET customer_id = 1 + id % 2")
    query = (
        "SELECT o.id AS order_id, o.order_no, o.amount, o.update_time AS changed_at, "
        "c.name AS customer FROM orders o JOIN customers c ON c.id = o.customer_id"
    )
    t = table(
        "order_view",
        cursor="changed_at",
        id="order_id",
        query=query,
        batch_size=4,
        write_mode="merge",
        primary_key=["order_id"],
    )
    cfg = make_config(mysql_db, warehouse_config, stage, [t])
    cols = ["order_id", "order_no", "amount", "changed_at", "customer"]

    def expected() -> list[tuple[Any, ...]]:
        return [tuple(r) for r in mysql_db.query(f"SELECT * FROM ({query}) q ORDER BY order_id")]

    assert one(sync_ok(cfg)).rows == 10
    assert wh_rows(cfg, "public.order_view", cols, ["order_id"]) == expected()
    mysql_db.execute("UPDATE customers SET name = 'Ann B' WHERE id = 1")  # not a cursor change
    mysql_db.execute("UPDATE orders SET amount = 99, update_time = NOW(6) WHERE id = 4")
    insert_orders(mysql_db, ["NOW"] * 2)
    mysql_db.execute("UPDATE orders SET customer_id = 2 WHERE customer_id IS NULL")
    assert one(sync_ok(cfg)).rows == 3
    got = {r[0]: r for r in wh_rows(cfg, "public.order_view", cols, ["order_id"])}
    want = {r[0]: r for r in expected()}
    assert got.keys() == want.keys()
    assert got[4] == want[4] and got[11] == want[11] and got[12] == want[12]
    assert got[2][4] == "Ann"  # unchanged cursor: the old join value stays (documented)


def test_cli_source_db_and_target_schema_overrides(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, tmp_path: Path
) -> None:
    other = f"{mysql_db.database}_b"
    mysql_db.execute(f"CREATE DATABASE `{other}` CHARACTER SET utf8mb4")
    try:
        create_orders(mysql_db, 4, PAST)
        mysql_db.execute(f"USE `{other}`")
        create_orders(mysql_db, 7, PAST)
        other_rows = source_rows(mysql_db)
        mysql_db.execute(f"USE `{mysql_db.database}`")
        cfg = make_config(mysql_db, warehouse_config, stage, [table()])
        path = write_config(tmp_path / "trackline.yml", cfg)
        runner = CliRunner()
        args = ["sync", "-c", str(path), "--log-format", "quiet", "--tables", "orders"]
        r = runner.invoke(
            main, [*args, "--source-db", other, "--target-schema", "settlement_public"]
        )
        assert r.exit_code == 0, r.output
        assert "settlement_public.orders_raw: 7 rows" in r.output
        assert wh_rows(cfg, "settlement_public.orders_raw") == other_rows
        assert not wh_exists(cfg, "public", "orders_raw")
        files = sorted(p.relative_to(stage).parts[:3] for p in stage.rglob("*.parquet"))
        assert set(files) == {(other, "settlement_public", "orders_raw")}

        r = runner.invoke(main, args)  # the defaults are a separate table with its own cursor
        assert r.exit_code == 0, r.output
        assert wh_rows(cfg, "public.orders_raw") == source_rows(mysql_db)
        assert wh_count(cfg, "settlement_public.orders_raw") == 7
    finally:
        mysql_db.execute(f"DROP DATABASE IF EXISTS `{other}`")


# --------------------------------------------------------------------------- upper bound


def test_rows_at_or_after_the_upper_bound_wait(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path
) -> None:
    mysql_db.execute(ORDERS_DDL)
    now = source_now(mysql_db)
    insert_orders(mysql_db, [now - dt.timedelta(seconds=600 + i) for i in range(5)])
    insert_orders(mysql_db, [now - dt.timedelta(seconds=100)] * 3)  # inside the 300 s lag
    insert_orders(mysql_db, [now + dt.timedelta(hours=1)])  # in the source's future
    lagged = make_config(mysql_db, warehouse_config, stage, [table(lag_seconds=300)])
    res = one(sync_ok(lagged))
    assert res.rows == 5
    assert isinstance(res.upper, dt.datetime)
    assert res.upper - (now - dt.timedelta(seconds=300)) < dt.timedelta(seconds=30)
    assert state_watermark(lagged, "public.orders_raw").ts <= res.upper

    cfg = make_config(mysql_db, warehouse_config, stage, [table()])
    assert one(sync_ok(cfg)).rows == 3  # later (here: a smaller lag), the rest arrive
    assert [r[0] for r in wh_rows(cfg, "public.orders_raw")] == list(range(1, 9))


def test_late_committing_transaction_is_picked_up(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, hold_serial: None
) -> None:
    create_orders(mysql_db, 5, PAST)
    cfg = make_config(mysql_db, warehouse_config, stage, [table()], hold=True)
    sync_ok(cfg)

    late = mysql_db.connect()
    try:
        late.autocommit(False)
        with late.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(
                "INSERT INTO orders (order_no, status, amount, update_time) "
                "VALUES ('LATE', 'late', 1, NOW(6))"
            )
            cur.execute("SELECT update_time FROM orders WHERE order_no = 'LATE'")
            late_ts = cur.fetchone()[0]
        time.sleep(0.2)  # information_schema.innodb_trx is a cache refreshed every 0.1 s
        insert_orders(mysql_db, ["NOW"] * 4)  # committed rows, newer than the open one
        wait_for_no_other_writers(mysql_db, late.thread_id())

        held = one(sync_ok(cfg))
        # Held at the transaction's start: nothing at or after it was read.
        assert held.upper <= late_ts
        assert held.rows == 0
        assert state_watermark(cfg, "public.orders_raw").ts <= late_ts
        late.commit()
    finally:
        late.close()
    time.sleep(0.2)
    assert sum(r.rows for r in sync_when_quiet(mysql_db, cfg, expect=5)) == 5
    rows = wh_rows(cfg, "public.orders_raw")
    assert rows == source_rows(mysql_db)
    assert "late" in [r[2] for r in rows]


def test_read_only_transaction_does_not_hold_the_bound(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, hold_serial: None
) -> None:
    create_orders(mysql_db, 3, PAST)
    cfg = make_config(mysql_db, warehouse_config, stage, [table()], hold=True)
    sync_ok(cfg)
    reader = mysql_db.connect()
    try:
        with reader.cursor() as cur:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SELECT id FROM orders WHERE id = 1 FOR UPDATE")  # locks, modifies none
            time.sleep(0.2)  # information_schema.innodb_trx is a cache refreshed every 0.1 s
            cur.execute(
                "SELECT trx_rows_modified FROM information_schema.innodb_trx "
                "WHERE trx_mysql_thread_id = CONNECTION_ID()"
            )
            assert cur.fetchone() == (0,)
        time.sleep(1.1)  # the rows below are stamped in a later second than the snapshot
        insert_orders(mysql_db, ["NOW"] * 4)
        tries = sync_when_quiet(mysql_db, cfg, expect=4)
        assert sum(r.rows for r in tries) == 4
        assert not [w for r in tries for w in r.warnings]
    finally:
        reader.rollback()
        reader.close()
    assert wh_rows(cfg, "public.orders_raw") == source_rows(mysql_db)


def test_long_write_statement_holds_the_bound_from_its_start(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, hold_serial: None
) -> None:
    """An INSERT … SELECT stamps its row with NOW() of its start but writes it only when it
    ends (here: once the test releases a user lock it waits on); until then InnoDB reports no
    modified row. Rows committed meanwhile, and a lag of 1 s, would move the watermark past
    that stamp. The process list holds the bound instead. The test orders the events (the
    statement is seen running before the other rows are written, the sync runs before the
    statement ends) instead of timing them, so a loaded machine cannot reorder them."""
    create_orders(mysql_db, 5, PAST)
    cfg = make_config(mysql_db, warehouse_config, stage, [table(lag_seconds=1)], hold=True)
    sync_ok(cfg)
    gate = f"tl_gate_{uuid.uuid4().hex[:12]}"
    locker, slow = mysql_db.connect(), mysql_db.connect()
    with locker.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, 0)", (gate,))
        assert cur.fetchone() == (1,)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with slow.cursor() as cur:
                cur.execute(
                    "INSERT INTO orders (order_no, status, amount, update_time) "
                    "SELECT 'SLOW', 'slow', 1, NOW(6) FROM DUAL WHERE GET_LOCK(%s, 60) = 1",
                    (gate,),
                )
                cur.execute("SELECT RELEASE_LOCK(%s)", (gate,))
            slow.commit()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    writer = threading.Thread(target=run)
    writer.start()
    try:
        _wait_until_running(mysql_db, slow.thread_id(), "SLOW")
        insert_orders(mysql_db, ["NOW"] * 3)  # committed, stamped after the slow statement's
        newest = mysql_db.query("SELECT MAX(update_time) FROM orders")[0][0]
        while source_now(mysql_db) < newest + dt.timedelta(seconds=1.05):
            time.sleep(0.1)  # now - lag is past them all
        held = one(sync_ok(cfg))
        assert held.rows == 0
    finally:
        with locker.cursor() as cur:
            cur.execute("SELECT RELEASE_LOCK(%s)", (gate,))
        writer.join(60)
        locker.close()
        slow.close()
    assert not errors, errors
    stamp = mysql_db.query("SELECT update_time FROM orders WHERE order_no = 'SLOW'")[0][0]
    others = mysql_db.query("SELECT MIN(update_time) FROM orders WHERE id > 5 AND status = 'new'")
    assert others[0][0] > stamp  # the order of events the test is about
    assert held.upper <= stamp  # held at the statement's start, not at its commit
    time.sleep(1.1)
    assert sum(r.rows for r in sync_when_quiet(mysql_db, cfg, expect=4)) == 4
    rows = wh_rows(cfg, "public.orders_raw")
    assert rows == source_rows(mysql_db)
    assert "slow" in [r[2] for r in rows]


def _wait_until_running(mysql_db: MySQLDb, thread_id: int, marker: str) -> None:
    """Wait until connection `thread_id` is running a statement that mentions `marker`."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = mysql_db.query(
            "SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = %s", (thread_id,)
        )
        if info and info[0][0] and marker in info[0][0]:
            return
        time.sleep(0.05)
    raise AssertionError(f"connection {thread_id} never ran its statement")


def test_transaction_older_than_the_hold_ceiling_is_reported_not_waited_for(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, hold_serial: None
) -> None:
    create_orders(mysql_db, 3, PAST)
    cfg = make_config(
        mysql_db, warehouse_config, stage, [table()], hold=True, hold_ceiling_seconds=1
    )
    sync_ok(cfg)
    stuck = mysql_db.connect()
    try:
        stuck.autocommit(False)
        with stuck.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(
                "INSERT INTO orders (order_no, status, amount, update_time) "
                "VALUES ('STUCK', 'stuck', 1, NOW(6))"
            )
        time.sleep(1.6)
        insert_orders(mysql_db, ["NOW"] * 4)
        wait_for_no_other_writers(mysql_db, stuck.thread_id())
        res = one(sync_ok(cfg))
        assert res.rows == 4  # not held
        assert len(res.warnings) == 1
        warning = res.warnings[0]
        assert f"thread {stuck.thread_id()}" in warning and "hold ceiling" in warning
    finally:
        stuck.rollback()
        stuck.close()


def test_innodb_hold_off_does_not_wait_for_open_transactions(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, hold_serial: None
) -> None:
    """`innodb_hold: false` (e.g. no PROCESS privilege wanted): the bound is the clock - lag."""
    create_orders(mysql_db, 3, PAST)
    cfg = make_config(mysql_db, warehouse_config, stage, [table()], hold=False)
    sync_ok(cfg)
    open_trx = mysql_db.connect()
    try:
        open_trx.autocommit(False)
        with open_trx.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(
                "INSERT INTO orders (order_no, status, amount, update_time) "
                "VALUES ('OPEN', 'open', 1, NOW(6))"
            )
        time.sleep(0.2)
        insert_orders(mysql_db, ["NOW"] * 4)
        res = one(sync_ok(cfg))
        assert res.rows == 4 and not res.warnings
    finally:
        open_trx.rollback()
        open_trx.close()


def test_cursor_queries_use_the_cursor_index(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """G7: an incremental run costs what its batch costs. Every query a run sends to the
    source (the NULL-cursor check, the batch read) must use the (update_time, id) index:
    a range read in index order, never a scan of the table followed by a sort."""
    mysql_db.execute(ORDERS_DDL)
    mysql_db.execute(
        "INSERT INTO orders (order_no, status, amount, update_time) "
        "SELECT CONCAT('B', seq), 'old', 1, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND "
        "FROM seq_1_to_3000"
    )
    mysql_db.execute("ANALYZE TABLE orders")
    cfg = make_config(mysql_db, warehouse_config, stage, [table(batch_size=500)])
    sync_ok(cfg)
    insert_orders(mysql_db, ["NOW"] * 5)

    from trackline.extract.mysql import MySQL

    sent: list[str] = []
    rows, stream = MySQL.rows, MySQL.stream

    def spy_rows(self: MySQL, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if "FROM `" in sql and "information_schema" not in sql:
            sent.append(sql)
        return rows(self, sql, params)

    def spy_stream(self: MySQL, sql: str, *args: Any) -> Any:
        sent.append(sql)
        return stream(self, sql, *args)

    monkeypatch.setattr(MySQL, "rows", spy_rows)
    monkeypatch.setattr(MySQL, "stream", spy_stream)
    assert one(sync_ok(cfg)).rows == 5
    assert len(sent) == 2  # the NULL-cursor check and the batch read
    for sql in sent:
        plan = mysql_db.query(f"EXPLAIN {sql}")
        assert len(plan) == 1, plan
        access, key, extra = plan[0][3], plan[0][5], plan[0][9] or ""
        assert key == "ix_update", (sql, plan)
        assert access in ("range", "ref_or_null", "ref"), (sql, plan)
        assert "filesort" not in extra, (sql, plan)


def test_duckdb_raw_buffer_text_is_zstd_and_merge_targets_keep_the_default(
    mysql_db: MySQLDb, tmp_path: Path, stage: Path
) -> None:
    """On DuckDB an append raw table (a buffer the marts read by batch id) stores its text
    columns with zstd (cheaper to write than the default dictionary/FSST analysis); a merge
    target, which users query, keeps DuckDB's default. Both read back equal to the source."""
    import duckdb

    create_orders(mysql_db, 3000, PAST)
    wh = DuckDBWarehouse(path=tmp_path / "wh.duckdb")
    append = make_config(mysql_db, wh, stage, [table(batch_size=1000)])
    merge = make_config(mysql_db, wh, stage, [table(batch_size=1000, write_mode="merge")])
    sync_ok(append)
    sync_ok(merge)
    assert wh_rows(append, "public.orders_raw") == source_rows(mysql_db)
    assert wh_rows(merge, "public.orders") == source_rows(mysql_db)
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    try:
        con.execute("CHECKPOINT")

        def compression(t: str) -> set[str]:
            rows = con.execute(
                "SELECT DISTINCT compression FROM pragma_storage_info(?) "
                "WHERE column_name = 'status' AND compression <> 'Constant'",
                [f"public.{t}"],
            ).fetchall()
            return {r[0] for r in rows}

        assert compression("orders_raw") == {"ZSTD"}
        assert "ZSTD" not in compression("orders")
    finally:
        con.close()
