"""A hung source read ends, with a clear error: a table held by `LOCK TABLES … WRITE` in
another MariaDB session.

The sync must end on its own (the server ends the waiting statement: nothing of ours is left
waiting once it has returned), say which table, which read and which limit, release nothing
it should not, and the next sync after the lock is gone loads the rows. The data read goes
through connectorx (the `full` table, which reads nothing before its stream), the metadata
connection through PyMySQL (the `hybrid` table's NULL-cursor check is its first read that
needs the table).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from tests.conftest import MySQLDb
from tests.integration.synctools import (
    SOURCE,
    create_orders,
    make_config,
    sync_ok,
    table,
    wh_count,
)
from trackline.config import Config, DuckDBWarehouse, PostgresWarehouse
from trackline.sync import TableResult, sync

START = dt.datetime(2026, 3, 1, 8, 0)
GUARD_SECONDS = 120


@pytest.fixture
def locker(mysql_db: MySQLDb) -> Iterator[pymysql.connections.Connection]:
    """Another session, as an operator's or a migration's would be."""
    con = pymysql.connect(
        host=mysql_db.host,
        port=mysql_db.port,
        user=mysql_db.user,
        password=mysql_db.password,
        database=mysql_db.database,
        autocommit=True,
    )
    try:
        yield con
    finally:
        con.close()


def _config(
    mysql_db: MySQLDb, warehouse_config: DuckDBWarehouse | PostgresWarehouse, tmp: Path
) -> Config:
    cfg = make_config(
        mysql_db,
        warehouse_config,
        tmp / "stage",
        [table("orders"), table("events", strategy="full", cursor=None, id=None)],
    )
    src = cfg.sources[SOURCE].model_copy(update={"read_timeout_seconds": 2})
    return cfg.model_copy(update={"sources": {SOURCE: src}})


def _waiting_for_a_lock(mysql_db: MySQLDb) -> int:
    rows = mysql_db.query(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE LIKE %s AND DB = %s",
        ("Waiting for table metadata lock%", mysql_db.database),
    )
    return int(rows[0][0])


@pytest.mark.servers
def test_a_locked_table_ends_its_read_with_an_error_and_the_next_sync_loads(
    mysql_db: MySQLDb,
    warehouse_config: DuckDBWarehouse | PostgresWarehouse,
    tmp_path: Path,
    locker: pymysql.connections.Connection,
) -> None:
    create_orders(mysql_db, 5, START)
    mysql_db.execute("CREATE TABLE events (id BIGINT PRIMARY KEY, note VARCHAR(20))")
    mysql_db.executemany("INSERT INTO events VALUES (%s, %s)", [(i, f"e{i}") for i in range(7)])
    cfg = _config(mysql_db, warehouse_config, tmp_path)

    with locker.cursor() as cur:
        cur.execute("LOCK TABLES orders WRITE, events WRITE")
    done: list[TableResult] = []
    worker = threading.Thread(target=lambda: done.extend(sync(cfg)), daemon=True)
    worker.start()
    worker.join(GUARD_SECONDS)  # a guard against the hang this test is about, not a measure
    assert not worker.is_alive(), "the sync still waits for the locked tables"
    results = {r.table: r for r in done}
    # both reads ended on the server: nothing of ours still waits for the lock
    assert _waiting_for_a_lock(mysql_db) == 0
    orders, events = results["orders"], results["events"]
    assert orders.status == events.status == "failed"
    assert orders.error and events.error
    assert orders.error.startswith("table 'orders': NULL-cursor check on MySQL at")
    assert events.error.startswith("table 'events': data read on MySQL at")
    # the metadata statement's own limit and its lock wait are both 2 s: either ends it
    assert "read_timeout_seconds = 2 s" in orders.error
    assert "waited for a table lock longer than read_timeout_seconds = 2 s" in events.error
    for err in (orders.error, events.error):
        assert f"sources.{SOURCE}.read_timeout_seconds" in err
    assert orders.rows == events.rows == 0

    # the lock goes: the next sync reads and loads every row
    with locker.cursor() as cur:
        cur.execute("UNLOCK TABLES")
    sync_ok(cfg)
    assert wh_count(cfg, "public.orders_raw") == 5
    assert wh_count(cfg, "public.events") == 7


@pytest.mark.servers
def test_a_data_read_past_its_stream_timeout_ends_and_keeps_nothing_half_loaded(
    mysql_db: MySQLDb, duckdb_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    """A read that runs (not waits) too long is ended by `stream_timeout_seconds`: a view
    whose rows take a second each stands in for a huge scan."""
    mysql_db.execute("CREATE TABLE slow_base (id BIGINT PRIMARY KEY)")
    mysql_db.executemany("INSERT INTO slow_base VALUES (%s)", [(i,) for i in range(5)])
    mysql_db.execute("CREATE VIEW slow AS SELECT id, SLEEP(1) AS napped FROM slow_base")
    cfg = make_config(
        mysql_db, duckdb_warehouse, tmp_path / "stage", [table("slow", strategy="id", cursor=None)]
    )
    src = cfg.sources[SOURCE].model_copy(update={"stream_timeout_seconds": 1})
    cfg = cfg.model_copy(update={"sources": {SOURCE: src}})
    (res,) = sync(cfg)
    assert res.status == "failed" and res.error
    assert res.error.startswith("table 'slow': data read on MySQL at")
    assert "ran past stream_timeout_seconds = 1 s" in res.error
    assert res.rows == 0
