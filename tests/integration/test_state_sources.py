"""One target loaded from several source databases, and the state layout that allows it.

`trackline sync --source-db A` then `--source-db B` into one target schema shared one
watermark: B's rows with cursors older than A's were never read. The source database is now
part of a watermark's key and of every ledger entry (state version 3), and
`--source-db/--target-schema` mean the same on every command that reads state. Real MariaDB
(two databases), DuckDB and PostgreSQL (and the Redshift adapter in compat mode for the
migration).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import MySQLDb, PgDb
from tests.integration.synctools import (
    SOURCE,
    config_yaml,
    create_orders,
    insert_orders,
    make_config,
    one,
    source_rows,
    sync_ok,
    table,
    warehouse,
    wh_count,
    wh_query,
    write_config,
)
from trackline.cli import main
from trackline.config import Config, DuckDBWarehouse, RedshiftWarehouse
from trackline.extract.cdc import Watermark
from trackline.state import SCHEMA_VERSION, _migrations
from trackline.sync import sync

PAST = dt.datetime(2024, 3, 1, 8, 0, 0)


@pytest.fixture
def second_db(mysql_db: MySQLDb) -> Iterator[str]:
    """A second database on the same MariaDB server (the shard `--source-db` points at)."""
    other = f"{mysql_db.database}_b"
    mysql_db.execute(f"CREATE DATABASE `{other}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield other
    finally:
        mysql_db.execute(f"USE `{mysql_db.database}`")
        mysql_db.execute(f"DROP DATABASE IF EXISTS `{other}`")


def _in(mysql_db: MySQLDb, db: str, fn: Any, *args: Any) -> Any:
    mysql_db.execute(f"USE `{db}`")
    try:
        return fn(mysql_db, *args)
    finally:
        mysql_db.execute(f"USE `{mysql_db.database}`")


def _order_nos(cfg: Config, key: str) -> list[str]:
    schema, name = key.split(".")
    with warehouse(cfg) as wh:
        rows = wh.query(f"SELECT order_no FROM {wh.t(schema, name)} ORDER BY order_no")
    return [r[0] for r in rows]


def _source_order_nos(mysql_db: MySQLDb, *dbs: str) -> list[str]:
    out: list[str] = []
    for db in dbs:
        out += [r[0] for r in mysql_db.query(f"SELECT order_no FROM `{db}`.orders")]
    return sorted(out)


def test_two_source_databases_into_one_target_keep_a_cursor_each(
    mysql_db: MySQLDb, second_db: str, warehouse_config: Any, tmp_path: Path
) -> None:
    """The report's case: A's 4 orders are newer than B's 2. B's sync must read its own rows
    from its own start, not from A's cursor (before: 4 of 6 rows in the target). Every
    command that reads state then addresses the watermark of the database it is given."""
    a, b = mysql_db.database, second_db
    create_orders(mysql_db, 4, PAST + dt.timedelta(hours=1))
    _in(mysql_db, b, create_orders, 2, PAST)
    cfg = make_config(mysql_db, warehouse_config, tmp_path / "stage", [table()])
    # the config's own database does not exist: a command that ignored --source-db fails
    absent = mysql_db.source_config(innodb_hold=False, database=f"{a}_absent")
    path = write_config(
        tmp_path / "trackline.yml", cfg.model_copy(update={"sources": {SOURCE: absent}})
    )
    runner = CliRunner()

    def cli(*args: str, db: str) -> Any:
        res = runner.invoke(
            main, [*args, "-c", str(path), "--source-db", db, "--target-schema", "shards"]
        )
        return res

    for db in (a, b):
        r = cli("sync", "--log-format", "quiet", db=db)
        assert r.exit_code == 0, r.output
    assert _order_nos(cfg, "shards.orders_raw") == _source_order_nos(mysql_db, a, b)

    # each database has its own watermark, each batch its database
    marks = wh_query(
        cfg,
        f"SELECT source_db, value FROM {cfg.state_schema}.watermarks WHERE table_key = ? "
        "ORDER BY source_db",
        ("shards.orders_raw",),
    )
    assert [m[0] for m in marks] == sorted([a, b])
    ledger = wh_query(
        cfg,
        f"SELECT source_db, SUM(row_count) FROM {cfg.state_schema}.batches "
        "WHERE table_key = ? GROUP BY source_db ORDER BY source_db",
        ("shards.orders_raw",),
    )
    assert [(db, int(n)) for db, n in ledger] == sorted([(a, 4), (b, 2)])
    # batch ids stay one sequence per target: they are the raw rows' _tl_batch_id
    ids = wh_query(cfg, f"SELECT batch_id FROM {cfg.state_schema}.batches ORDER BY batch_id")
    assert [int(i[0]) for i in ids] == list(range(1, len(ids) + 1))

    # status reads B's watermark and asks B's clock for the lag
    r = cli("status", db=b)
    assert r.exit_code == 0, r.output
    assert "shards.orders_raw" in r.output and "unreachable" not in r.output

    # a cycle with --source-db B reads B's new rows from B's cursor
    _in(mysql_db, b, insert_orders, ["NOW"])
    insert_orders(mysql_db, ["NOW"] * 2)
    r = cli("cycle", "--log-format", "quiet", db=b)
    assert r.exit_code == 0, r.output
    assert "shards.orders_raw: 1 row " in r.output
    r = cli("cycle", "--log-format", "quiet", db=a)
    assert r.exit_code == 0, r.output
    assert _order_nos(cfg, "shards.orders_raw") == _source_order_nos(mysql_db, a, b)

    # reset empties the shared target: every database's watermark goes with its rows
    r = cli("reset", "orders", "--yes", db=a)
    assert r.exit_code == 0, r.output
    assert f"also loaded from {b}" in r.output
    assert wh_count(cfg, "shards.orders_raw") == 0
    assert (
        wh_query(
            cfg,
            f"SELECT COUNT(*) FROM {cfg.state_schema}.watermarks WHERE table_key = ?",
            ("shards.orders_raw",),
        )[0][0]
        == 0
    )
    for db in (b, a):
        assert cli("sync", "--log-format", "quiet", db=db).exit_code == 0
    assert _order_nos(cfg, "shards.orders_raw") == _source_order_nos(mysql_db, a, b)


def test_reconcile_and_replace_refuse_a_target_shared_by_two_databases(
    mysql_db: MySQLDb, second_db: str, duckdb_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    """Reconcile compares a target with one source database: with another database's keys
    in it, it would count them as deleted (and --apply would delete them). A `replace`
    target holds one database's snapshot. Both refuse, naming the other database."""
    a, b = mysql_db.database, second_db
    create_orders(mysql_db, 3, PAST)
    _in(mysql_db, b, create_orders, 3, PAST)
    merged = make_config(
        mysql_db, duckdb_warehouse, tmp_path / "stage", [table(write_mode="merge")]
    )
    sync_ok(merged.overridden(a, None))
    sync_ok(merged.overridden(b, None))
    path = write_config(tmp_path / "trackline.yml", merged)
    r = CliRunner().invoke(main, ["reconcile", "orders", "-c", str(path), "--source-db", a])
    assert r.exit_code == 2, r.output
    assert f"also loaded from source database(s) {b}" in r.output

    full = make_config(
        mysql_db,
        duckdb_warehouse,
        tmp_path / "stage",
        [table(strategy="full", target_table="orders_full")],
    )
    sync_ok(full.overridden(a, None))
    res = one(sync(full.overridden(b, None)))
    assert res.status == "failed" and f"snapshot of source database {a}" in (res.error or "")
    assert wh_count(full, "public.orders_full") == 3  # A's snapshot untouched


# --------------------------------------------------------------------------- migration


@pytest.fixture(
    params=[
        "duckdb",
        pytest.param("postgres", marks=pytest.mark.servers),
        pytest.param("redshift", marks=pytest.mark.servers),
    ]
)
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    if request.param == "duckdb":
        return DuckDBWarehouse(path=tmp_path / "wh.duckdb")
    pg: PgDb = request.getfixturevalue("pg_db")
    if request.param == "postgres":
        return pg.warehouse_config()
    return RedshiftWarehouse(**pg.redshift_compat())


_WM_COLS = "table_key, strategy, value, last_batch_id, rows_total, updated_at"
_BATCH_COLS = (
    "table_key, batch_id, run_id, row_count, checksum, files, manifest, wm_from, wm_to, loaded_at"
)


def _downgrade_to_v2(cfg: Config) -> None:
    """Rebuild `watermarks` and `batches` as state version 2 laid them out (migrations are
    history: the first two are the v2 layout), with the rows they held."""
    s = cfg.state_schema
    with warehouse(cfg) as wh:
        marks = wh.query(f"SELECT {_WM_COLS} FROM {wh.t(s, 'watermarks')}")
        batches = wh.query(f"SELECT {_BATCH_COLS} FROM {wh.t(s, 'batches')}")
        with wh.transaction():
            for name in ("watermarks", "batches"):
                wh.execute(f"DROP TABLE {wh.t(s, name)}")
            for stmts in _migrations(wh, s)[:2]:
                for sql in stmts:
                    wh.execute(sql)
            wh.execute(f"DELETE FROM {wh.t(s, 'schema_version')} WHERE version > 2")
            for cols, rows, name in (
                (_WM_COLS, marks, "watermarks"),
                (_BATCH_COLS, batches, "batches"),
            ):
                marks_ = ", ".join("?" for _ in cols.split(","))
                for row in rows:
                    wh.execute(
                        f"INSERT INTO {wh.t(s, name)} ({cols}) VALUES ({marks_})", tuple(row)
                    )
        assert "source_db" not in wh.column_names(s, "watermarks")
        assert "source_db" not in wh.column_names(s, "batches")


def test_state_v2_is_upgraded_in_place_without_losing_a_watermark(
    mysql_db: MySQLDb, any_engine: Any, tmp_path: Path
) -> None:
    """State written by the previous layout (one watermark per target) is migrated on the
    next run: every watermark and ledger entry kept, the sync goes on from its cursor (a lost
    watermark would load the 6 first rows again into the append target)."""
    create_orders(mysql_db, 6, PAST)
    cfg = make_config(mysql_db, any_engine, tmp_path / "stage", [table(batch_size=4)])
    sync_ok(cfg)
    _downgrade_to_v2(cfg)
    insert_orders(mysql_db, ["NOW"] * 3)
    assert one(sync_ok(cfg)).rows == 3
    assert wh_count(cfg, "public.orders_raw") == 9
    assert len(source_rows(mysql_db)) == 9
    s = cfg.state_schema
    assert wh_query(cfg, f"SELECT MAX(version) FROM {s}.schema_version")[0][0] == SCHEMA_VERSION
    # the database that synced took the watermark over; the old ledger entries are kept
    assert wh_query(cfg, f"SELECT table_key, source_db FROM {s}.watermarks") == [
        ("public.orders_raw", mysql_db.database)
    ]
    ledger = wh_query(
        cfg, f"SELECT batch_id, source_db, row_count FROM {s}.batches ORDER BY batch_id"
    )
    assert [(int(i), db, int(n)) for i, db, n in ledger] == [
        (1, None, 4),
        (2, None, 2),
        (3, mysql_db.database, 3),
    ]


def test_status_of_a_migrated_table_shows_its_watermark_before_the_next_sync(
    mysql_db: MySQLDb, duckdb_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    create_orders(mysql_db, 2, PAST)
    cfg = make_config(mysql_db, duckdb_warehouse, tmp_path / "stage", [table()])
    sync_ok(cfg)
    (value,) = wh_query(cfg, f"SELECT value FROM {cfg.state_schema}.watermarks")[0]
    _downgrade_to_v2(cfg)
    path = write_config(tmp_path / "trackline.yml", cfg)
    r = CliRunner().invoke(main, ["status", "-c", str(path)])
    assert r.exit_code == 0, r.output
    assert str(Watermark.from_json(value).ts)[:19] in r.output


def test_two_entries_loading_one_target_stop_before_anything_runs(
    mysql_db: MySQLDb, duckdb_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    """The report's union: `orders` plus a `query:` entry over `orders_old` (2 older rows)
    into the same table. They shared one watermark and the second loaded 0 of its 2 rows;
    now `trackline sync` refuses the config (exit 2), names both entries and their lines,
    and the warehouse is not touched."""
    create_orders(mysql_db, 4, PAST + dt.timedelta(hours=1))
    mysql_db.execute("CREATE TABLE orders_old LIKE orders")
    mysql_db.execute(
        "INSERT INTO orders_old (order_no, status, amount, update_time) "
        "VALUES ('OLD-1', 'new', 1, %s), ('OLD-2', 'new', 1, %s)",
        (PAST, PAST + dt.timedelta(seconds=1)),
    )
    cfg = make_config(mysql_db, duckdb_warehouse, tmp_path / "stage", [table()])
    data = yaml.safe_load(config_yaml(cfg))  # (a Config holding the conflict cannot be built)
    union = {**data["tables"][0], "name": "orders_union", "target_table": "orders_raw"}
    data["tables"].append({**union, "query": "SELECT * FROM orders_old"})
    text = yaml.safe_dump(data, sort_keys=False)
    path = tmp_path / "trackline.yml"
    path.write_text(text)
    lines = text.splitlines()
    first = lines.index("- name: orders") + 1
    second = lines.index("- name: orders_union") + 1
    assert first < second
    r = CliRunner().invoke(main, ["sync", "-c", str(path), "--log-format", "quiet"])
    assert r.exit_code == 2, r.output
    assert f"tables[1] ('orders_union', line {second})" in r.output
    assert f"tables[0] ('orders', line {first})" in r.output
    assert "consolidation job" in r.output
    assert not duckdb_warehouse.path.exists()
