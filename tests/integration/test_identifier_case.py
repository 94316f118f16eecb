"""Mixed-case source columns (the spath table's ``pathTime``, ``traceSeq``) on every engine.

Redshift stores every name trackline writes in lower case (`Warehouse.FOLDS_IDENTIFIERS`):
the column is ``pathtime``, so a reader that sets nothing (a BI tool, a late-binding view,
psql) finds it, quoted or not. The config keeps naming it ``pathTime`` (sort keys, the events
mart's time, its event key). DuckDB and PostgreSQL keep the source's case. Compat mode runs
the Redshift adapter on PostgreSQL, which also takes quoted names as written: only the
folding makes ``pathtime`` appear there.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.conftest import MySQLDb, PgDb, S3Endpoint
from trackline.config import Config, DuckDBWarehouse, StageConfig
from trackline.errors import ConfigError
from trackline.extract.types import SourceColumn
from trackline.load import Column, Warehouse, open_warehouse
from trackline.marts.cycle import run_cycle_on
from trackline.sqlplan import render_plan
from trackline.stage import Stage
from trackline.sync.tables import resolve
from trackline.sync.target import check_names

pytestmark = pytest.mark.servers

PUB, ODS = "settlement_public", "settlement_ods"
BASE = dt.datetime(2026, 1, 5, 8, 0, 0)


def _seed(db: MySQLDb) -> None:
    db.execute(
        "CREATE TABLE uni_tracking_info (id INT PRIMARY KEY AUTO_INCREMENT, "
        "order_id BIGINT NOT NULL, status VARCHAR(16), update_time DATETIME NOT NULL)"
    )
    db.execute(
        "CREATE TABLE uni_tracking_spath (id INT PRIMARY KEY AUTO_INCREMENT, "
        "order_id BIGINT NOT NULL, code INT, pathTime DATETIME NOT NULL, traceSeq INT NOT NULL)"
    )
    _orders(db, range(1, 6), 0)


def _orders(db: MySQLDb, orders: range, hour: int) -> None:
    for o in orders:
        t = BASE + dt.timedelta(hours=hour, minutes=o)
        db.execute(
            "INSERT INTO uni_tracking_info (order_id, status, update_time) VALUES (%s, %s, %s)",
            (o, "scanned", t + dt.timedelta(minutes=2)),
        )
        db.executemany(
            "INSERT INTO uni_tracking_spath (order_id, code, pathTime, traceSeq) "
            "VALUES (%s, %s, %s, %s)",
            [(o, 100 + s, t + dt.timedelta(minutes=s), s) for s in (1, 2)],
        )


def _config(db: MySQLDb, warehouse: Any, stage: StageConfig) -> Config:
    return Config.model_validate(
        {
            "sources": {"kuaisong": db.source_config(innodb_hold=False)},
            "warehouse": warehouse,
            "stage": stage,
            "defaults": {"lag_seconds": 0},
            "tables": [
                {"name": "uni_tracking_info", "target_schema": PUB, "dist_key": "order_id",
                 "cdc": {"strategy": "hybrid", "cursor": "update_time", "id": "id"}},
                {"name": "uni_tracking_spath", "target_schema": PUB, "dist_key": "order_id",
                 "cdc": {"strategy": "id", "id": "id"},
                 "sort_key": ["pathTime", "traceSeq"]},
            ],
            "marts": [
                {"name": "order_tracking", "followers": [
                    {"table": "mart_uni_tracking_spath", "source": "uni_tracking_spath",
                     "kind": "events", "time": "pathTime", "event_key": ["order_id", "traceSeq"],
                     "history_name": "uts", "sort_key": ["pathTime", "traceSeq"]},
                ]}
            ],
        }
    )  # fmt: skip


@pytest.fixture(params=["duckdb", "postgres", "redshift"])
def engine(request: pytest.FixtureRequest, tmp_path: Path, mysql_db: MySQLDb) -> tuple[str, Config]:
    _seed(mysql_db)
    local = StageConfig(url=str(tmp_path / "stage"))
    if request.param == "duckdb":
        return "duckdb", _config(mysql_db, DuckDBWarehouse(path=tmp_path / "w.duckdb"), local)
    pg: PgDb = request.getfixturevalue("pg_db")
    if request.param == "postgres":
        return "postgres", _config(mysql_db, pg.warehouse_config(), local)
    s3: S3Endpoint = request.getfixturevalue("s3")
    return "redshift", _config(mysql_db, pg.redshift_compat(), s3.stage_config())


def _cycle(cfg: Config) -> Warehouse:
    wh = open_warehouse(cfg.warehouse, stage=Stage(cfg.stage))
    wh.connect()
    summary = run_cycle_on(cfg, wh)
    assert summary.ok, summary.as_dict()
    return wh


def test_mixed_case_source_columns_through_sync_and_marts(
    engine: tuple[str, Config], mysql_db: MySQLDb
) -> None:
    name, cfg = engine
    folded = name == "redshift"
    want = ["pathtime", "traceseq"] if folded else ["pathTime", "traceSeq"]
    wh = _cycle(cfg)
    try:
        raw = wh.column_names(PUB, "uni_tracking_spath_raw")
        mart = wh.column_names(ODS, "mart_uni_tracking_spath")
        assert raw[3:5] == want and mart[3:5] == want
        # a second cycle: new rows, and a new mixed-case source column (drift) added once
        mysql_db.execute("ALTER TABLE uni_tracking_spath ADD COLUMN scanSite VARCHAR(8)")
        _orders(mysql_db, range(6, 9), 1)
        summary = run_cycle_on(cfg, wh)
        assert summary.ok, summary.as_dict()
        added = "scansite" if folded else "scanSite"
        assert wh.column_names(PUB, "uni_tracking_spath_raw")[-1] == added  # (added at the end)
        assert wh.column_names(ODS, "mart_uni_tracking_spath")[-1] == added
        # every scan event once, keyed by (order_id, traceSeq), with its pathTime
        rows = wh.query(
            f"SELECT {wh.cols(['order_id', 'traceSeq', 'pathTime'])} "
            f"FROM {wh.t(ODS, 'mart_uni_tracking_spath')} ORDER BY 1, 2"
        )
        assert len(rows) == 16 and len({r[:2] for r in rows}) == 16
        assert rows[0][2] == BASE + dt.timedelta(minutes=2)
    finally:
        wh.close()


def test_a_reader_with_no_session_setting_finds_the_columns_on_redshift(
    tmp_path: Path, mysql_db: MySQLDb, pg_db: PgDb, s3: S3Endpoint
) -> None:
    _seed(mysql_db)
    cfg = _config(mysql_db, pg_db.redshift_compat(), s3.stage_config())
    _cycle(cfg).close()
    # unquoted, as a BI tool writes it (PostgreSQL folds unquoted names as Redshift does)
    got = pg_db.query(
        f"SELECT COUNT(*), MIN(pathTime), MAX(traceSeq) FROM {ODS}.mart_uni_tracking_spath"
    )
    assert got == [(10, BASE + dt.timedelta(minutes=2), 2)]
    # a table made before names were folded (its column kept the case) stops with the fix
    pg_db.execute(f'ALTER TABLE {PUB}.uni_tracking_spath_raw RENAME COLUMN pathtime TO "pathTime"')
    _orders(mysql_db, range(6, 7), 1)
    wh = open_warehouse(cfg.warehouse, stage=Stage(cfg.stage))
    wh.connect()
    try:
        summary = run_cycle_on(cfg, wh)
    finally:
        wh.close()
    failed = {r.table: r.error for r in summary.sync if r.status != "ok"}
    assert list(failed) == ["uni_tracking_spath"]
    assert "column 'pathTime' keeps its case" in str(failed["uni_tracking_spath"])
    assert 'RENAME COLUMN "pathTime" TO pathtime' in str(failed["uni_tracking_spath"])
    # the printed plan shows the folded names where the config says pathTime / traceSeq
    plan = render_plan(cfg, "cycle")
    assert 'SORTKEY("pathtime", "traceseq")' in next(
        s for s in plan if s.startswith(f'CREATE TABLE IF NOT EXISTS "{PUB}"."uni_tracking_spath')
    )
    assert not any('"pathTime"' in s or '"traceSeq"' in s for s in plan)


def test_two_columns_that_fold_to_one_name_are_refused(
    tmp_path: Path, mysql_db: MySQLDb, pg_db: PgDb, s3: S3Endpoint
) -> None:
    """MariaDB (and SQLite) column names are case-insensitive, so no source table holds such
    a pair today; the sync and the adapter both refuse one, before anything is written."""
    _seed(mysql_db)
    cfg = _config(mysql_db, pg_db.redshift_compat(), s3.stage_config())
    wh = open_warehouse(cfg.warehouse, stage=Stage(cfg.stage))
    rt = resolve(cfg, cfg.table("uni_tracking_spath"), None, None)
    cols = [
        SourceColumn(n, "int", "int", True, pa.int32(), f"`{n}`")
        for n in ("id", "pathTime", "code", "PathTime")
    ]
    with pytest.raises(ConfigError) as err:
        check_names(wh, rt, cols)
    message = str(err.value)
    assert "'uni_tracking_spath'" in message and f"{PUB}.uni_tracking_spath_raw" in message
    assert "'pathTime' and 'PathTime'" in message and "'pathtime'" in message
    wh.connect()
    try:
        wh.ensure_schema(PUB)
        with pytest.raises(ConfigError, match="'pathTime' and 'PathTime' would both be"):
            wh.create_table(PUB, "t", [Column(c.name, c.arrow) for c in cols])
        assert not wh.table_exists(PUB, "t")
    finally:
        wh.close()
    # DuckDB and PostgreSQL keep the case: nothing to refuse there
    pg = open_warehouse(pg_db.warehouse_config())
    assert pg.name_clash([c.name for c in cols]) is None
