"""Source types that widen after history exists (G5), with the source in MariaDB.

The order-tracking tables (uti, ecs, spath) are loaded for two months, rows are archived
into two half-year periods, then the source widens types that lose nothing: INT → BIGINT (the
order_id of all three, spath's code), SMALLINT → INT (ecs), VARCHAR(20) → VARCHAR(200) and
DECIMAL(8,2) → DECIMAL(12,4) (uti), adds a nullable column to each, and writes values only
the new types hold. The raw tables,
the marts, every history period and the ``<mart>_hist`` views must take them:

- DuckDB and PostgreSQL ALTER the columns in place, in the next sync and cycle;
- Redshift (the adapter in compat mode) can ALTER only a VARCHAR's length, and not inside a
  transaction: the sync stops each table with a type it cannot ALTER, names
  ``trackline migrate``, and changes nothing; ``trackline migrate TABLE`` then rebuilds the
  raw table, its marts and their periods in one transaction, and the next cycle goes on.
  Every statement sent must be one Redshift accepts (tests/redshift_checks.py).

Narrowing (fewer decimals) still stops the table with the error naming the column.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import MySQLDb, PgDb, S3Endpoint
from tests.integration.marts_helpers import DAY, ECS, UTI, UTS, config_dict
from tests.integration.synctools import write_config
from tests.integration.test_redshift_marts import RecordingRedshift
from tests.redshift_checks import redshift_problems
from trackline import faults
from trackline.cli import main
from trackline.config import Config, DuckDBWarehouse, RedshiftWarehouse
from trackline.errors import InjectedFault
from trackline.load import Warehouse, open_warehouse
from trackline.marts.cycle import CycleSummary, run_cycle_on
from trackline.marts.migrate import migrate
from trackline.stage import Stage
from trackline.status import reset_table_on

DDL = [
    "CREATE TABLE uni_tracking_info (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT, "
    "update_time INT NOT NULL, status VARCHAR(20), amount DECIMAL(8,2)) CHARSET=utf8mb4",
    "CREATE TABLE ecs_order_info (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT, "
    "add_time INT NOT NULL, partner_id SMALLINT)",
    "CREATE TABLE uni_tracking_spath (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT, "
    "pathTime INT NOT NULL, code INT, traceSeq INT)",
]
WIDEN = [
    "ALTER TABLE uni_tracking_info MODIFY order_id BIGINT, MODIFY status VARCHAR(200), "
    "MODIFY amount DECIMAL(12,4), ADD COLUMN note VARCHAR(30)",
    "ALTER TABLE ecs_order_info MODIFY order_id BIGINT, MODIFY partner_id INT, "
    "ADD COLUMN carrier VARCHAR(10)",
    "ALTER TABLE uni_tracking_spath MODIFY order_id BIGINT, MODIFY code BIGINT, "
    "ADD COLUMN site INT",
]
COLUMNS = {  # what each mart held before the change
    UTI: ["id", "order_id", "update_time", "status", "amount"],
    ECS: ["id", "order_id", "add_time", "partner_id"],
    UTS: ["id", "order_id", "pathTime", "code", "traceSeq"],
}
ADDED = {UTI: ("uni_tracking_info", "note", "big"), ECS: ("ecs_order_info", "carrier", "sf")}
ADDED[UTS] = ("uni_tracking_spath", "site", 7)
BIG_ORDER = 3_000_000_000  # over INT's range
LONG_STATUS = "€" * 150  # 450 bytes in UTF-8: over the VARCHAR(20) column's 80
BIG_AMOUNT = Decimal("12345678.1234")


def _order(
    db: MySQLDb, order: int, t: int, status: str, amount: Any, partner: int, code: int
) -> None:
    db.execute(
        "INSERT INTO uni_tracking_info (order_id, update_time, status, amount) "
        "VALUES (%s, %s, %s, %s)",
        (order, t, status, amount),
    )
    db.execute(
        "INSERT INTO ecs_order_info (order_id, add_time, partner_id) VALUES (%s, %s, %s)",
        (order, t, partner),
    )
    db.execute(
        "INSERT INTO uni_tracking_spath (order_id, pathTime, code, traceSeq) "
        "VALUES (%s, %s, %s, 1)",
        (order, t, code),
    )


def _config(request: pytest.FixtureRequest, tmp: Path, db: MySQLDb) -> Config:
    engine = request.param
    if engine == "duckdb":
        data = config_dict(tmp / "unused.db", DuckDBWarehouse(path=tmp / "wh.duckdb"), tmp / "st")
    else:
        pg: PgDb = request.getfixturevalue("pg_db")
        data = config_dict(tmp / "unused.db", pg.warehouse_config(), tmp / "st")
    if engine == "redshift":
        s3: S3Endpoint = request.getfixturevalue("s3")
        stage = s3.stage_config()
        data["warehouse"] = pg.redshift_compat()
        data["stage"] = {
            "url": stage.url,
            "endpoint_url": stage.endpoint_url,
            "region": stage.region,
            "access_key_id": s3.access_key_id,
            "secret_access_key": s3.secret_access_key,
        }
    data["sources"] = {"src": db.source_config(innodb_hold=False)}
    return Config.model_validate(data)


@pytest.fixture(
    params=[
        pytest.param("duckdb", id="duckdb"),
        pytest.param("postgres", id="postgres"),
        pytest.param("redshift", id="redshift-compat"),
    ]
)
def world(
    request: pytest.FixtureRequest, tmp_path: Path, mysql_db: MySQLDb
) -> Iterator[tuple[MySQLDb, Config, Any]]:
    for ddl in DDL:
        mysql_db.execute(ddl)
    cfg = _config(request, tmp_path, mysql_db)
    if isinstance(cfg.warehouse, RedshiftWarehouse):  # keep what is sent, to check it
        wh: Warehouse = RecordingRedshift(cfg.warehouse)
    else:
        wh = open_warehouse(cfg.warehouse)
    wh.stage = Stage(cfg.stage)
    wh.connect()
    try:
        yield mysql_db, cfg, wh
    finally:
        wh.close()


def _view(wh: Warehouse, schema: str, mart: str, cols: list[str]) -> list[tuple[Any, ...]]:
    sql = f"SELECT {wh.cols(cols)} FROM {wh.t(schema, mart + '_hist')}"
    return sorted(wh.query(sql), key=repr)


def _errors(s: CycleSummary) -> dict[str, str]:
    return {r.table: r.error or "" for r in s.sync if r.status != "ok"}


def test_widened_source_types_reach_raw_marts_history_and_views(
    world: tuple[MySQLDb, Config, Warehouse], tmp_path: Path
) -> None:
    db, cfg, wh = world
    g = cfg.marts[0]
    now = int(db.query("SELECT UNIX_TIMESTAMP()")[0][0])
    for o in range(1, 13):  # two months of orders half a year ago, then one a minute ago
        _order(db, o, now - 200 * DAY + o * 4 * DAY, f"s{o}", Decimal(o) / 4, 300 + o, 200 + o)
    _order(db, 99, now - 60, "hb", 1, 1, 1)
    assert run_cycle_on(cfg, wh).ok
    hist = {m: _view(wh, g.schema_, m, COLUMNS[m]) for m in (UTI, ECS, UTS)}
    assert all(len(rows) == 12 for rows in hist.values())  # every early order is archived

    for alter in WIDEN:
        db.execute(alter)
    # (written after the first sync's upper bound, the source's clock: read by the next one)
    now = int(db.query("SELECT UNIX_TIMESTAMP()")[0][0])
    _order(db, BIG_ORDER, now, LONG_STATUS, BIG_AMOUNT, 100_000, 2**40)
    for table, column, value in ADDED.values():  # new columns, added after archiving
        db.execute(f"UPDATE {table} SET {column} = %s WHERE order_id = %s", (value, BIG_ORDER))
    db.execute(  # an archived order comes back with values only the new types hold
        "UPDATE uni_tracking_info SET update_time = %s, status = %s, amount = %s "
        "WHERE order_id = 2",
        (now, LONG_STATUS, BIG_AMOUNT),
    )
    time.sleep(1.1)  # past the second they were stamped with: below the next upper bound
    summary = run_cycle_on(cfg, wh)
    if isinstance(wh, RecordingRedshift):
        # Redshift cannot ALTER INT → BIGINT: each table stops, names the fix, alters nothing
        errors = _errors(summary)
        assert set(errors) == {"uni_tracking_info", "ecs_order_info", "uni_tracking_spath"}
        for table, error in errors.items():
            assert f"trackline migrate {table}" in error and "\n" not in error, error
        assert "'order_id'" in errors["uni_tracking_info"]
        raw = wh.column_specs("raw", "uni_tracking_info_raw")["uni_tracking_info_raw"]
        assert raw["status"] == "character varying(80)"  # VARCHAR(20) × 4 bytes, unchanged
        assert raw["order_id"].startswith("integer")
        # the documented command, then the library function for the other two
        marts = [m.model_dump(mode="json", by_alias=True) for m in cfg.marts]
        path = write_config(tmp_path / "trackline.yml", cfg, marts=marts)
        r = CliRunner().invoke(main, ["migrate", "uni_tracking_info", "-c", str(path)])
        assert r.exit_code == 0, r.output
        assert "rebuilt mart.mart_uni_tracking_info" in r.output
        assert "rebuilt mart.hist_uti_20" in r.output
        for table in ("ecs_order_info", "uni_tracking_spath"):
            res = migrate(cfg, wh, table)
            assert res.columns and res.rebuilt
        summary = run_cycle_on(cfg, wh)
    assert summary.ok, summary.as_dict()

    # the new values, whole, in the marts (order 2 reactivated out of history)
    uti = dict(
        (r[0], r[1:])
        for r in wh.query(f"SELECT order_id, status, amount FROM {wh.t(g.schema_, UTI)}")
    )
    assert uti[BIG_ORDER] == (LONG_STATUS, BIG_AMOUNT)
    assert uti[2] == (LONG_STATUS, BIG_AMOUNT)
    ecs = dict(wh.query(f"SELECT order_id, partner_id FROM {wh.t(g.schema_, ECS)}"))
    assert ecs[BIG_ORDER] == 100_000
    uts = dict(wh.query(f"SELECT order_id, code FROM {wh.t(g.schema_, UTS)}"))
    assert uts[BIG_ORDER] == 2**40
    # rows archived before the change are all still there, with their values (order 2 left
    # uti's history when it came back, and its ecs row went back to the mart with it)
    after = {m: _view(wh, g.schema_, m, COLUMNS[m]) for m in (UTI, ECS, UTS)}
    assert after[UTS] == hist[UTS]
    assert [r for r in hist[UTI] if r[1] != 2] == after[UTI]
    assert [r for r in hist[ECS] if r[1] != 2] == after[ECS]
    # the added columns: the new rows carry their value; rows archived before read NULL
    for mart, (_table, column, value) in ADDED.items():
        key = "id" if mart == UTS else "order_id"
        live = dict(wh.query(f"SELECT {wh.q(key)}, {wh.q(column)} FROM {wh.t(g.schema_, mart)}"))
        big = [v for k, v in live.items() if k == BIG_ORDER or (mart == UTS and v is not None)]
        assert big == [value], mart
        old = _view(wh, g.schema_, mart, [column])
        assert old and all(v is None for (v,) in old), mart
    # every mart, period and view column has the raw column's type
    specs = wh.column_specs(g.schema_)
    raw_specs = wh.column_specs("raw")
    for mart, raw, name in (
        (UTI, "uni_tracking_info_raw", "uti"),
        (ECS, "ecs_order_info_raw", "ecs"),
        (UTS, "uni_tracking_spath_raw", "uts"),
    ):
        want = raw_specs[raw]
        periods = wh.list_tables(g.schema_, f"hist_{name}_")
        assert len(periods) == 2  # the half-years of the early orders
        for table in [mart, *periods]:
            for col, spec in specs[table].items():
                assert spec == want[col], (table, col, spec, want[col])
    assert raw_specs["uni_tracking_info_raw"]["order_id"].startswith("bigint")

    # narrowing (fewer decimals) still stops that table, naming the column; others go on
    db.execute("ALTER TABLE uni_tracking_info MODIFY amount DECIMAL(12,2)")
    summary = run_cycle_on(cfg, wh)
    errors = _errors(summary)
    assert set(errors) == {"uni_tracking_info"}
    assert (
        "column 'amount' changed type decimal128(12, 4) → decimal128(12, 2)"
        in errors["uni_tracking_info"]
    )
    if isinstance(wh, RecordingRedshift):
        bad = {s.sql: p for s in wh.sent if (p := redshift_problems(s))}
        assert not bad, bad
        alters = [s for s in wh.sent if " ALTER COLUMN " in s.sql]
        assert not alters  # INT → BIGINT went through migrate; status was rebuilt with it


# --------------------------------------------------------------------------- killed midway


@pytest.mark.parametrize("step", ["sync.after_widen", "mart.after_widen", "migrate.before_commit"])
def test_killed_while_widening_then_rerun_ends_as_an_uninterrupted_run(
    world: tuple[MySQLDb, Config, Warehouse], monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """A longer VARCHAR (altered in place everywhere, on Redshift outside a transaction) and
    INT → BIGINT (Redshift: through migrate), killed at each step of applying them, then run
    again: the warehouse ends as an uninterrupted run, the view works, nothing is lost."""
    db, cfg, wh = world
    g = cfg.marts[0]
    now = int(db.query("SELECT UNIX_TIMESTAMP()")[0][0])
    for o in range(1, 7):
        _order(db, o, now - 200 * DAY + o * 4 * DAY, f"s{o}", Decimal(o), 300 + o, 200 + o)
    _order(db, 99, now - 60, "hb", 1, 1, 1)
    assert run_cycle_on(cfg, wh).ok
    redshift = isinstance(wh, RecordingRedshift)
    if step == "migrate.before_commit" or not redshift:
        db.execute("ALTER TABLE uni_tracking_info MODIFY order_id BIGINT")
    db.execute("ALTER TABLE uni_tracking_info MODIFY status VARCHAR(200)")
    now = int(db.query("SELECT UNIX_TIMESTAMP()")[0][0])
    _order(db, 7, now, LONG_STATUS, BIG_AMOUNT / 10_000, 307, 207)
    time.sleep(1.1)

    faults.reset()
    monkeypatch.setenv("TRACKLINE_FAIL_AT", step)
    if step == "migrate.before_commit":
        if redshift:  # the sync asks for migrate, which is killed before its commit
            assert not run_cycle_on(cfg, wh).ok
        with pytest.raises(InjectedFault):
            migrate(cfg, wh, "uni_tracking_info")
    else:
        with pytest.raises(InjectedFault):
            run_cycle_on(cfg, wh)
    monkeypatch.delenv("TRACKLINE_FAIL_AT")
    if wh.in_transaction:  # an exception leaves no transaction open
        raise AssertionError("a transaction was left open")
    if step == "migrate.before_commit" and redshift:
        migrate(cfg, wh, "uni_tracking_info")
    summary = run_cycle_on(cfg, wh)
    assert summary.ok, summary.as_dict()

    status = dict(wh.query(f"SELECT order_id, status FROM {wh.t(g.schema_, UTI)}"))
    assert status == {99: "hb", 7: LONG_STATUS}
    view = _view(wh, g.schema_, UTI, ["order_id", "status"])
    assert view == [(o, f"s{o}") for o in range(1, 7)]
    specs, raw = wh.column_specs(g.schema_), wh.column_specs("raw")["uni_tracking_info_raw"]
    for table in [UTI, *wh.list_tables(g.schema_, "hist_uti_")]:
        assert specs[table]["status"] == raw["status"], table
        assert specs[table]["order_id"] == raw["order_id"], table
    if redshift:
        assert raw["status"] == "character varying(800)"
        bad = {s.sql: p for s in wh.sent if (p := redshift_problems(s))}
        assert not bad, bad


def test_reset_after_a_longer_varchar_widens_the_table_in_place(
    world: tuple[MySQLDb, Config, Warehouse],
) -> None:
    """`trackline reset` after the source's VARCHAR got longer: the table stays, its recorded
    schema is gone. The next sync compares the source with what the table declares (not with
    nothing), widens it, and reloads every row, the long ones too."""
    db, cfg, wh = world
    now = int(db.query("SELECT UNIX_TIMESTAMP()")[0][0])
    for o in range(1, 4):
        _order(db, o, now - 10 * DAY + o, f"s{o}", Decimal(o), 300 + o, 200 + o)
    assert run_cycle_on(cfg, wh).ok
    db.execute("ALTER TABLE uni_tracking_info MODIFY status VARCHAR(200)")
    db.execute("UPDATE uni_tracking_info SET status = %s WHERE order_id = 2", (LONG_STATUS,))
    reset_table_on(cfg, wh, "uni_tracking_info")
    time.sleep(1.1)
    summary = run_cycle_on(cfg, wh)
    assert summary.ok, summary.as_dict()
    raw = wh.t("raw", "uni_tracking_info_raw")
    assert sorted(wh.query(f"SELECT order_id, status FROM {raw}")) == [
        (1, "s1"), (2, LONG_STATUS), (3, "s3")
    ]  # fmt: skip
    if isinstance(wh, RecordingRedshift):
        spec = wh.column_specs("raw", "uni_tracking_info_raw")["uni_tracking_info_raw"]
        assert spec["status"] == "character varying(800)"
        mart = wh.column_specs(cfg.marts[0].schema_, UTI)[UTI]
        assert mart["status"] == "character varying(800)"
