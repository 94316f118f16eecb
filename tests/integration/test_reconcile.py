"""`trackline reconcile` against real MariaDB → DuckDB / PostgreSQL.

Hard deletes in the source are invisible to timestamp CDC: reconcile finds them range by
range, reports them, and with --apply removes them from the merge target. It also audits G2:
a key the sync should have loaded but the target lacks is reported as missing (exit 1), while
rows newer than the watermark are only pending.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TypeAlias

import pytest
from click.testing import CliRunner

from tests.conftest import MySQLDb, PgDb
from tests.integration.synctools import (
    ORDERS_DDL,
    create_orders,
    insert_orders,
    make_config,
    source_rows,
    sync_ok,
    table,
    warehouse,
    wh_rows,
    write_config,
)
from tests.integration.test_marts import LocalStageRecorder
from tests.redshift_checks import redshift_problems
from trackline.cli import main
from trackline.config import (
    Config,
    DuckDBWarehouse,
    PostgresWarehouse,
    QualityConfig,
    RedshiftWarehouse,
)
from trackline.errors import ConfigError
from trackline.jobs import ReconcileResult, reconcile
from trackline.quality.run import run_checks

Warehouse: TypeAlias = DuckDBWarehouse | PostgresWarehouse
PAST = dt.datetime(2024, 3, 1, 8, 0, 0)


def run(cfg: Config, **kw: object) -> ReconcileResult:
    with warehouse(cfg) as wh:
        return reconcile(cfg, wh, "orders", **kw)  # type: ignore[arg-type]


@pytest.fixture
def synced(mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path) -> Config:
    """30 orders (ids 1–30) synced into a merge target."""
    create_orders(mysql_db, 30, PAST)
    cfg = make_config(
        mysql_db, warehouse_config, tmp_path / "stage", [table(write_mode="merge", batch_size=7)]
    )
    sync_ok(cfg)
    return cfg


def test_deleted_source_rows_are_found_by_range_then_applied(
    synced: Config, mysql_db: MySQLDb
) -> None:
    cfg = synced
    same = run(cfg, chunk=10)
    # equal figures over the whole key space: one question per side, nothing compared
    assert (same.ranges, same.ranges_compared, same.deleted_count, same.missing_count) == (
        1,
        0,
        0,
        0,
    )
    mysql_db.execute("DELETE FROM orders WHERE id IN (3, 7, 24)")
    found = run(cfg, chunk=10)
    # split while a differing range holds more than 10 rows: [-, 16) → [-, 9) compared,
    # [9, 16) equal; [16, -) → [16, 24) equal, [24, -) compared
    assert (found.ranges, found.ranges_compared) == (7, 2)
    assert found.deleted == [3, 7, 24] and found.deleted_count == 3
    assert found.missing_count == 0 and found.pending_count == 0 and found.ok
    assert found.applied == 0
    assert len(wh_rows(cfg, "public.orders")) == 30  # reported only

    applied = run(cfg, chunk=10, apply=True)
    assert applied.applied == 3
    assert wh_rows(cfg, "public.orders") == source_rows(mysql_db)
    again = run(cfg, chunk=10, apply=True)
    assert (again.ranges, again.ranges_compared, again.deleted_count) == (1, 0, 0)


def test_sparse_keys_are_split_by_their_rows_not_by_their_width(
    mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path
) -> None:
    """Snowflake-like ids: 40 keys spread over 10^18. Splitting by the keys' middle reaches
    each differing key in a few dozen questions, where fixed-width ranges would need 10^12."""
    mysql_db.execute(ORDERS_DDL)
    step = 25_000_000_000_000_000
    mysql_db.executemany(
        "INSERT INTO orders (id, order_no, status, amount, update_time) "
        "VALUES (%s, %s, 'new', 1, %s)",
        [(i * step + 7, f"S{i}", PAST) for i in range(1, 41)],
    )
    cfg = make_config(
        mysql_db, warehouse_config, tmp_path / "stage", [table(write_mode="merge", batch_size=9)]
    )
    sync_ok(cfg)
    gone = [5 * step + 7, 33 * step + 7]
    mysql_db.execute("DELETE FROM orders WHERE id IN (%s, %s)", gone)
    res = run(cfg, chunk=4, apply=True)
    assert res.deleted == gone and res.applied == 2 and res.missing_count == 0
    assert res.ranges < 40
    assert wh_rows(cfg, "public.orders") == source_rows(mysql_db)


def test_a_lost_row_is_missing_a_new_one_only_pending(synced: Config, mysql_db: MySQLDb) -> None:
    cfg = synced
    with warehouse(cfg) as wh:  # a row the target should hold goes astray
        wh.execute(f"DELETE FROM {wh.t('public', 'orders')} WHERE id = 12")
    insert_orders(mysql_db, ["NOW"] * 2)  # past the watermark: the next sync brings them
    res = run(cfg, chunk=7)
    assert res.missing == [12] and res.missing_count == 1 and not res.ok
    assert res.pending_count == 2 and res.deleted_count == 0


def test_cli_reports_and_exits_1_on_missing_rows(
    synced: Config, mysql_db: MySQLDb, tmp_path: Path
) -> None:
    cfg = synced
    path = write_config(tmp_path / "trackline.yml", cfg)
    mysql_db.execute("DELETE FROM orders WHERE id = 5")
    runner = CliRunner()
    ok = runner.invoke(main, ["reconcile", "orders", "-c", str(path), "--log-format", "quiet"])
    assert ok.exit_code == 0, ok.output
    assert "deleted in the source: 1" in ok.output and "e.g. 5" in ok.output
    with warehouse(cfg) as wh:
        wh.execute(f"DELETE FROM {wh.t('public', 'orders')} WHERE id = 9")
    bad = runner.invoke(main, ["reconcile", "orders", "-c", str(path), "--json", "--apply"])
    assert bad.exit_code == 1, bad.output
    out = json.loads(bad.output)
    assert out["missing_sample"] == ["9"] and out["deleted"] == 1 and out["applied"] == 1


def test_only_merge_targets_with_one_integer_key(
    mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path
) -> None:
    create_orders(mysql_db, 3, PAST)
    appended = make_config(mysql_db, warehouse_config, tmp_path / "stage", [table()])
    sync_ok(appended)
    with pytest.raises(ConfigError, match="'orders'.*write_mode is 'append'"):
        run(appended)
    two = make_config(
        mysql_db,
        warehouse_config,
        tmp_path / "stage2",
        [table(write_mode="merge", primary_key=["id", "order_no"], target_table="orders_m")],
    )
    sync_ok(two)
    with (
        warehouse(two) as wh,
        pytest.raises(ConfigError, match="single-column integer key"),
    ):
        reconcile(two, wh, "orders")


def test_a_key_held_twice_in_the_target_does_not_stall_the_split(
    synced: Config, mysql_db: MySQLDb
) -> None:
    """A broken target (one key twice, e.g. written by hand) cannot be split below one key
    value: that range is compared as it is, and the run ends."""
    with warehouse(synced) as wh:
        t = wh.t("public", "orders")
        wh.execute(f"INSERT INTO {t} SELECT * FROM {t} WHERE id = 4")
        assert wh.scalar(f"SELECT COUNT(*) FROM {t} WHERE id = 4") == 2
    res = run(synced, chunk=1)
    assert res.ok and res.deleted_count == 0 and res.ranges_compared >= 1


@pytest.mark.servers
def test_through_the_redshift_adapter_every_statement_is_redshift_sql(
    mysql_db: MySQLDb, pg_db: PgDb, tmp_path: Path
) -> None:
    """The Redshift adapter in compat mode (PostgreSQL underneath): the same findings, and
    every statement it sent passes the checks of what Redshift accepts."""
    create_orders(mysql_db, 30, PAST)
    wh_cfg = RedshiftWarehouse(**pg_db.redshift_compat())
    cfg = make_config(
        mysql_db,
        wh_cfg,  # type: ignore[arg-type]
        tmp_path / "stage",
        [table(write_mode="merge", batch_size=7)],
    )
    sync_ok(cfg)
    mysql_db.execute("DELETE FROM orders WHERE id IN (2, 19)")
    wh = LocalStageRecorder(wh_cfg)
    wh.connect()
    try:
        res = reconcile(cfg, wh, "orders", chunk=5, apply=True)
    finally:
        wh.close()
    assert res.deleted == [2, 19] and res.applied == 2 and res.ok
    assert wh_rows(cfg, "public.orders") == source_rows(mysql_db)
    assert {s.sql: redshift_problems(s) for s in wh.sent if redshift_problems(s)} == {}
    assert any(s.sql.startswith("DELETE FROM") and s.in_transaction for s in wh.sent)


def test_trackline_check_reconciles_the_configured_tables(
    synced: Config, mysql_db: MySQLDb
) -> None:
    cfg = synced.model_copy(update={"quality": QualityConfig(reconcile_tables=["orders"])})
    mysql_db.execute("DELETE FROM orders WHERE id = 6")  # deleted in the source: not a failure
    with warehouse(cfg) as wh:
        report = run_checks(cfg, wh, send_alerts=False)
        r = {x.name: x for x in report.results}["reconcile.orders"]
        assert r.status == "pass" and r.severity == "blocking"
        wh.execute(f"DELETE FROM {wh.t('public', 'orders')} WHERE id IN (11, 12)")  # lost
        report = run_checks(cfg, wh, send_alerts=False)
        r = {x.name: x for x in report.results}["reconcile.orders"]
        assert r.status == "fail" and sorted(r.sample_keys) == ["11", "12"]
        assert report.exit_code == 1
        detail = dict(zip(r.columns, r.sample[0], strict=True))["detail"]
        assert detail == "1 deleted in the source, 0 pending"


# Integer keys at the ends of their MySQL ranges (and the ids of the original report). The
# residues' product reached ~10^12 and overflowed an INTEGER on PostgreSQL / Redshift
# ("integer out of range") and DuckDB ("Overflow in multiplication of INT32").
KEY_TYPES = {
    "int": ("INT", [-2147483648, -999_999, 1000, 50_000, 70_000, 2147483646, 2147483647]),
    "mediumint": ("MEDIUMINT", [-8388608, -1_000_003, 1000, 70_000, 8388606, 8388607]),
    "smallint_unsigned": ("SMALLINT UNSIGNED", [0, 1, 1000, 50_000, 65534, 65535]),
    "int_unsigned": ("INT UNSIGNED", [0, 1000, 70_000, 2147483648, 4294967294, 4294967295]),
    "bigint_unsigned": (
        "BIGINT UNSIGNED",
        [0, 1000, 9223372036854775807, 9223372036854775808, 2**64 - 2, 2**64 - 1],
    ),
}


@pytest.fixture(
    params=[
        "duckdb",
        pytest.param("postgres", marks=pytest.mark.servers),
        pytest.param("redshift", marks=pytest.mark.servers),
    ]
)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    """DuckDB, PostgreSQL, and the Redshift adapter in compat mode (PostgreSQL underneath)."""
    if request.param == "duckdb":
        return DuckDBWarehouse(path=tmp_path / "wh.duckdb")
    pg: PgDb = request.getfixturevalue("pg_db")
    if request.param == "postgres":
        return pg.warehouse_config()
    return RedshiftWarehouse(**pg.redshift_compat())


@pytest.mark.parametrize("kind", list(KEY_TYPES))
def test_integer_keys_at_their_extremes_do_not_overflow(
    mysql_db: MySQLDb, engine: object, tmp_path: Path, kind: str
) -> None:
    """Every integer key type, at both ends of its range: equal tables compare equal in one
    question, a deleted key is found by splitting (the middle of the extremes is computed and
    bound on both sides), and applying it leaves the target equal to the source. The largest
    BIGINT UNSIGNED (2^64 - 1) is stored exactly (DuckDB UBIGINT, PostgreSQL / Redshift
    DECIMAL(20,0)) and round-trips."""
    sql_type, keys = KEY_TYPES[kind]
    mysql_db.execute(
        f"CREATE TABLE orders (id {sql_type} NOT NULL PRIMARY KEY, order_no VARCHAR(32), "
        "status VARCHAR(16), amount DECIMAL(10,2), update_time DATETIME(6) NOT NULL)"
    )
    mysql_db.executemany(
        "INSERT INTO orders VALUES (%s, %s, 'new', 1, %s)",
        [(k, f"K{i}", PAST + dt.timedelta(seconds=i)) for i, k in enumerate(keys)],
    )
    cfg = make_config(
        mysql_db,
        engine,  # type: ignore[arg-type]
        tmp_path / "stage",
        [table(write_mode="merge", batch_size=4)],
    )
    sync_ok(cfg)
    wh_cfg = cfg.warehouse
    recorder = isinstance(wh_cfg, RedshiftWarehouse)

    def reconcile_once(**kw: object) -> ReconcileResult:
        if not recorder:
            return run(cfg, **kw)
        wh = LocalStageRecorder(wh_cfg)
        wh.connect()
        try:
            res = reconcile(cfg, wh, "orders", **kw)  # type: ignore[arg-type]
        finally:
            wh.close()
        assert {s.sql: redshift_problems(s) for s in wh.sent if redshift_problems(s)} == {}
        return res

    same = reconcile_once(chunk=2)
    assert (same.ranges, same.deleted_count, same.missing_count) == (1, 0, 0)
    gone = [keys[0], keys[-1], keys[len(keys) // 2]]
    mysql_db.execute("DELETE FROM orders WHERE id IN (%s, %s, %s)", gone)
    found = reconcile_once(chunk=2, apply=True)
    assert found.deleted == sorted(gone) and found.applied == 3 and found.ok
    assert found.ranges > 1  # split at least once between the extremes
    assert wh_rows(cfg, "public.orders") == source_rows(mysql_db)
    assert reconcile_once(chunk=2).ranges == 1
