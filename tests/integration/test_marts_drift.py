"""Source columns added after history exists (G5): the marts, every history period and the
`<mart>_hist` views gain them, and cycles go on.

Before this was handled, a nullable column added to a source table reached raw and the mart,
but never the period tables: the next archive failed (``hist_uti_2026_h1`` has no column
``note``), and so did every cycle after it. Here a multi-month run (the busy months of
marts_helpers, over two half-years) adds a column to each of uti, ecs and spath at different
times, after rows of each were archived, on DuckDB, PostgreSQL and the Redshift adapter in
compat mode (S3 stage on moto). After every cycle the warehouse must equal the oracle of
marts_helpers, and every new column must read, in the marts and through the views, exactly
what the source row holds (NULL for rows archived before the column existed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PgDb, S3Endpoint
from tests.integration.marts_helpers import (
    ECS,
    UTI,
    UTS,
    Driver,
    Source,
    actual_state,
    busy_plan,
    config_dict,
    day,
    expected_state,
)
from tests.integration.test_redshift_marts import RecordingRedshift
from tests.redshift_checks import redshift_problems
from trackline.config import Config, DuckDBWarehouse, RedshiftWarehouse
from trackline.load import Warehouse, open_warehouse
from trackline.marts.cycle import run_cycle_on
from trackline.stage import Stage

# (source table, new column, its SQLite type, the value a row written afterwards gets, mart,
#  the mart's key column, the cycle day it is added on)
DRIFT = [
    ("uni_tracking_info", "note", "TEXT", "'n' || order_id", UTI, "order_id", 81),
    ("ecs_order_info", "carrier", "TEXT", "'c' || order_id", ECS, "order_id", 121),
    ("uni_tracking_spath", "site", "INTEGER", "code * 10", UTS, "id", 201),
]
TIME = {"uni_tracking_info": "update_time", "ecs_order_info": "add_time"}
TIME["uni_tracking_spath"] = "pathTime"


def _config(request: pytest.FixtureRequest, tmp: Path, src: Path) -> Config:
    engine = request.param
    if engine == "duckdb":
        return Config.model_validate(
            config_dict(src, DuckDBWarehouse(path=tmp / "wh.duckdb"), tmp / "stage")
        )
    pg: PgDb = request.getfixturevalue("pg_db")
    data = config_dict(src, pg.warehouse_config(), tmp / "stage")
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
    return Config.model_validate(data)


@pytest.fixture(
    params=[
        pytest.param("duckdb", id="duckdb"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.servers),
        pytest.param("redshift", id="redshift-compat", marks=pytest.mark.servers),
    ]
)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Source, Config, Any]]:
    src = Source(tmp_path / "src.db")
    cfg = _config(request, tmp_path, src.path)
    wh = open_warehouse(cfg.warehouse, stage=Stage(cfg.stage))
    if isinstance(cfg.warehouse, RedshiftWarehouse):  # keep what is sent, to check it
        wh = RecordingRedshift(cfg.warehouse)
        wh.stage = Stage(cfg.stage)
    wh.connect()
    try:
        yield src, cfg, wh
    finally:
        wh.close()
        src.close()


def _add_column(src: Source, table: str, column: str, sql_type: str) -> None:
    src.con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
    src.con.commit()


def _fill(src: Source, table: str, column: str, value: str, since: int) -> None:
    """Rows written since the column exists carry a value (earlier rows keep NULL)."""
    src.con.execute(
        f"UPDATE {table} SET {column} = {value} WHERE {column} IS NULL AND {TIME[table]} >= ?",
        (since,),
    )


def _source_values(src: Source, table: str, key: str, column: str) -> dict[Any, Any]:
    rows = src.con.execute(f"SELECT {key}, {column} FROM {table} WHERE order_id IS NOT NULL")
    return dict(rows.fetchall())


def _warehouse_values(
    wh: Warehouse, schema: str, mart: str, key: str, column: str
) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """(mart, history view): key → the column's value."""
    sel = f"SELECT {wh.q(key)}, {wh.q(column)} FROM "
    live = dict(wh.query(sel + wh.t(schema, mart)))
    hist = dict(wh.query(sel + wh.t(schema, f"{mart}_hist")))
    return live, hist


def test_columns_added_after_archiving_reach_history_and_views(
    world: tuple[Source, Config, Warehouse],
) -> None:
    src, cfg, wh = world
    g = cfg.marts[0]
    drv = Driver(src, busy_plan(span_days=200))
    added: dict[str, int] = {}
    archived_before: dict[str, int] = {}
    for c in range(1, 290, 10):
        drv.until(day(c))
        for table, column, sql_type, value, mart, _key, on in DRIFT:
            if c == on:
                # history of this mart exists already: the case that used to stop cycles
                archived_before[mart] = int(
                    wh.scalar(f"SELECT COUNT(*) FROM {wh.t(g.schema_, f'{mart}_hist')}") or 0
                )
                assert archived_before[mart] > 0, mart
                _add_column(src, table, column, sql_type)
                added[table] = day(c - 10)  # rows of the touches written after the last cycle
            if table in added:
                _fill(src, table, column, value, added[table])
        src.con.commit()
        summary = run_cycle_on(cfg, wh)
        assert summary.ok, summary.as_dict()
        assert actual_state(wh, g.schema_) == expected_state(src), f"cycle day {c}"

    periods = {t for t in wh.list_tables(g.schema_, "hist_")}
    assert {"hist_uti_2026_h1", "hist_uti_2026_h2"} <= periods  # two half-years of history
    for table, column, _type, _value, mart, key, _on in DRIFT:
        # every period of the mart has the column, and the mart and the view read what the
        # source holds: NULL for rows archived before the column existed, the value after
        hist_name = {UTI: "uti", ECS: "ecs", UTS: "uts"}[mart]
        for period in wh.list_tables(g.schema_, f"hist_{hist_name}_"):
            assert column in wh.column_names(g.schema_, period), period
        live, hist = _warehouse_values(wh, g.schema_, mart, key, column)
        want = _source_values(src, table, key, column)
        assert {**hist, **live} == want, f"{mart}.{column}"
        nulls_in_history = sum(1 for v in hist.values() if v is None)
        assert nulls_in_history >= archived_before[mart] > 0, mart  # archived before: NULL
        assert any(v is not None for v in {**hist, **live}.values()), mart
    # uti: rows archived after the column was added carry their value in history too
    _live, uti_hist = _warehouse_values(wh, g.schema_, UTI, "order_id", "note")
    assert any(v is not None for v in uti_hist.values())
    if isinstance(wh, RecordingRedshift):
        # Redshift: the views were dropped and created (CREATE OR REPLACE VIEW may not
        # change the column list), and everything sent is what Redshift accepts
        sql = [s.sql for s in wh.sent]
        for mart in (UTI, ECS, UTS):
            drop = f'DROP VIEW IF EXISTS "{g.schema_}"."{mart}_hist"'
            assert drop in sql, mart
            assert sql[sql.index(drop) + 1].startswith(f'CREATE VIEW "{g.schema_}"."{mart}_hist"')
        bad = {s.sql: p for s in wh.sent if (p := redshift_problems(s))}
        assert not bad, bad
