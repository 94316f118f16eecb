"""JSON columns as Redshift SUPER documents (``warehouse.json_as: super``), proven without a
cluster: the Redshift adapter in ``compat_postgres`` mode against the real PostgreSQL, where
SUPER is JSONB, staged on the moto S3 endpoint.

What is checked:
- JSON source columns (MariaDB's JSON, i.e. LONGTEXT with a JSON_VALID check, found on its
  own; text columns listed in `json_columns`) become document columns in the raw table, the
  marts and every history period, with the same documents as a DuckDB run stores as text;
- the staged Parquet holds them with the JSON logical type (what Redshift's COPY parses into
  SUPER), and COPY still loads straight from the staged files;
- a value that is not JSON stops the batch with its column and row named, and nothing of the
  batch is loaded (the watermark stays);
- ``json_as: varchar`` (the default) keeps them as text, and a table created that way keeps
  loading text after the setting changes;
- `json_columns` naming an unknown or non-text column is a clear configuration error.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import MySQLDb, PgDb, S3Endpoint
from tests.integration.marts_helpers import ECS, UTI, UTS, Driver, Source, busy_plan, day
from tests.integration.test_redshift_marts import RecordingRedshift, _configs, connect
from tests.redshift_checks import redshift_problems, shape
from trackline.config import Config, RedshiftWarehouse
from trackline.load import Warehouse
from trackline.marts.cycle import run_cycle_on
from trackline.stage import Stage
from trackline.sync import sync

JSON_COLS = {"props", "extra"}

# Documents written by the source itself, so every touch of the mart helpers' Driver carries
# one: objects, arrays, the JSON literal null and SQL NULL.
TRIGGERS = """
ALTER TABLE uni_tracking_info ADD COLUMN props TEXT;
ALTER TABLE uni_tracking_spath ADD COLUMN extra TEXT;
CREATE TRIGGER uti_props_ins AFTER INSERT ON uni_tracking_info BEGIN
  UPDATE uni_tracking_info SET props = json_object('status', NEW.status, 'tno', NEW.tno,
    'tags', json_array(NEW.order_id, 'x')) WHERE id = NEW.id;
END;
CREATE TRIGGER uti_props_upd AFTER UPDATE OF update_time ON uni_tracking_info BEGIN
  UPDATE uni_tracking_info SET props = json_object('status', NEW.status, 'at', NEW.update_time)
  WHERE id = NEW.id;
END;
CREATE TRIGGER uts_extra AFTER INSERT ON uni_tracking_spath BEGIN
  UPDATE uni_tracking_spath SET extra = CASE NEW.traceSeq % 4
    WHEN 0 THEN NULL
    WHEN 1 THEN 'null'
    WHEN 2 THEN json_array(NEW.code, json_object('seq', NEW.traceSeq))
    ELSE json_object('code', NEW.code, 'note', '派送中 "q"') END
  WHERE id = NEW.id;
END;
"""


def _json_configs(tmp: Path, src: Source, pg: PgDb, s3: S3Endpoint) -> tuple[Config, Config]:
    duck, red = _configs(tmp, src.path, pg, s3, "restore")

    def with_json(cfg: Config, **wh: Any) -> Config:
        data = cfg.model_dump(mode="python", by_alias=True)
        data["warehouse"].update(wh)
        for t in data["tables"]:
            t["json_columns"] = {
                "uni_tracking_info": ["props"],
                "uni_tracking_spath": ["extra"],
            }.get(t["name"], [])
        if "secret_access_key" in data["stage"] and data["stage"]["secret_access_key"]:
            data["stage"]["secret_access_key"] = s3.secret_access_key
            data["stage"]["access_key_id"] = s3.access_key_id
        return Config.model_validate(data)

    return with_json(duck), with_json(red, json_as="super")


def _table_rows(wh: Warehouse, schema: str, table: str) -> list[tuple[Any, ...]]:
    names = list(wh.column_types(schema, table))
    rows = wh.query(f"SELECT {wh.cols(names)} FROM {wh.t(schema, table)}")
    out = []
    for r in rows:
        row = []
        for n, v in zip(names, r, strict=True):
            if n in JSON_COLS and isinstance(v, str):  # DuckDB keeps the text
                v = json.loads(v)
            row.append((n.lower(), v))  # Redshift stores pathTime as pathtime
        out.append(tuple(row))
    return sorted(out, key=repr)


def _snapshot(wh: Warehouse, cfg: Config) -> dict[str, list[tuple[Any, ...]]]:
    g = cfg.marts[0]
    out = {}
    for schema in (g.schema_, cfg.tables[0].target_schema):
        for table in wh.list_tables(schema):
            if table != g.exceptions_table:
                out[f"{schema}.{table}"] = _table_rows(wh, schema, table)
    return out


def test_json_documents_flow_as_super_through_raw_marts_and_history(
    tmp_path: Path, pg_db: PgDb, s3: S3Endpoint
) -> None:
    source = Source(tmp_path / "src.db")
    source.con.executescript(TRIGGERS)
    duck_cfg, red_cfg = _json_configs(tmp_path, source, pg_db, s3)
    assert isinstance(red_cfg.warehouse, RedshiftWarehouse)
    red = RecordingRedshift(red_cfg.warehouse)
    red.stage = Stage(red_cfg.stage)
    red.connect()
    duck = connect(duck_cfg)
    drv = Driver(source, busy_plan(orders=16, span_days=50))
    archived = 0
    try:
        for c in range(1, 120, 17):
            drv.until(day(c))
            for cfg, wh in ((duck_cfg, duck), (red_cfg, red)):
                summary = run_cycle_on(cfg, wh)
                assert summary.ok, summary.as_dict()
            archived += sum(m.archived for m in summary.marts)
            assert _snapshot(red, red_cfg) == _snapshot(duck, duck_cfg), f"after day {c}"
        mart = red_cfg.marts[0].schema_
        # Document columns everywhere the data goes: raw, marts, every history period.
        typed = pg_db.query(
            "SELECT table_schema, table_name, column_name, data_type "
            "FROM information_schema.columns WHERE column_name IN ('props', 'extra', 'tno') "
            "AND table_schema IN ('raw', %s)",
            (mart,),
        )
        by_table = {(s, t, c): d for s, t, c, d in typed}
        hist = {t for s, t, c in by_table if t.startswith("hist_")}
        assert {"hist_uti_2026_h1", "hist_uts_2026_h1"} <= hist
        for (_s, t, c), d in by_table.items():
            if c in JSON_COLS:
                assert d == "jsonb", (t, c)
            else:
                assert d == "character varying", (t, c)  # VARCHAR(65535), not a document
        assert {t for _s, t, c in by_table if c == "extra"} >= {
            "uni_tracking_spath_raw",
            UTS,
            "hist_uts_2026_h1",
        }
        # Parsed documents, not strings holding JSON: objects, arrays, JSON null, SQL NULL.
        kinds = dict(
            pg_db.query(
                "SELECT coalesce(jsonb_typeof(extra), 'sql null'), COUNT(*) "
                f'FROM "{mart}"."{UTS}" GROUP BY 1'
            )
        )
        assert set(kinds) == {"object", "array", "null", "sql null"}, kinds
        assert pg_db.query(
            f'SELECT COUNT(*) FROM "{mart}"."{UTI}" WHERE props->>\'status\' IS NULL'
        ) == [(0,)]
        assert pg_db.query(
            f"SELECT DISTINCT extra->>'note' FROM \"{mart}\".hist_uts_2026_h1 "
            "WHERE jsonb_typeof(extra) = 'object'"
        ) == [('派送中 "q"',)]
        assert archived > 0
        assert ECS in red.list_tables(mart)
    finally:
        red.close()
        duck.close()
        source.close()

    # COPY loaded the documents straight from the staged manifests (no transient re-write).
    copies = [s.sql for s in red.sent if s.sql.startswith("COPY")]
    assert any('"uni_tracking_spath_raw"' in c and "_trackline_tmp" not in c for c in copies)
    # Every statement sent is one Redshift accepts; the DDL says SUPER where compat said JSONB.
    shapes = {shape(s.sql): s for s in red.sent}
    bad = {s.sql: p for s in shapes.values() if (p := redshift_problems(s))}
    assert not bad, bad


def _spath_config(red: RedshiftWarehouse | dict[str, Any], src: Path, s3: S3Endpoint) -> Config:
    stage = s3.stage_config()
    return Config.model_validate(
        {
            "sources": {"src": {"type": "sqlite", "path": str(src)}},
            "warehouse": red,
            "stage": stage.model_dump(mode="python", by_alias=True)
            | {
                "access_key_id": s3.access_key_id,
                "secret_access_key": s3.secret_access_key,
            },
            "defaults": {"lag_seconds": 0},
            "tables": [
                {
                    "name": "uni_tracking_spath",
                    "target_schema": "raw",
                    "cdc": {"strategy": "hybrid", "cursor": "pathTime", "id": "id"},
                    "json_columns": ["extra"],
                }
            ],
        }
    )


def test_a_value_that_is_not_json_stops_the_batch_naming_column_and_row(
    tmp_path: Path, pg_db: PgDb, s3: S3Endpoint
) -> None:
    source = Source(tmp_path / "src.db")
    source.con.executescript(TRIGGERS)
    cfg = _spath_config(pg_db.redshift_compat(json_as="super"), source.path, s3)
    try:
        for o in range(1, 6):
            source.touch(o, day(0) + o)
        source.clock(day(1))
        assert [r.status for r in sync(cfg)] == ["ok"]
        loaded = pg_db.query("SELECT COUNT(*) FROM raw.uni_tracking_spath_raw")
        # The staged file holds the documents with Parquet's JSON logical type, which is what
        # Redshift's COPY parses into SUPER (a plain string would be one string scalar).
        stage = Stage(cfg.stage)
        (staged,) = [f for f in stage.list() if f.uri.endswith(".parquet")]
        with stage.fs.open_input_file(staged.uri.removeprefix("s3://")) as f:
            schema = pq.ParquetFile(f).schema
        logical = {
            schema.column(i).name: str(schema.column(i).logical_type) for i in range(len(schema))
        }
        assert logical["extra"] == "JSON" and logical["order_id"] != "JSON"
        source.touch(7, day(1) + 10)
        source.touch(8, day(1) + 20)
        source.con.execute("UPDATE uni_tracking_spath SET extra = '{\"a\": 1' WHERE order_id = 8")
        source.clock(day(2))
        (res,) = sync(cfg)
        assert res.status == "failed"
        assert "column 'extra', row 1 of the batch is not valid JSON" in res.error, res.error
        assert "json_columns" in res.error
        # nothing of that batch: not the valid row before it either, and the watermark stayed
        assert pg_db.query("SELECT COUNT(*) FROM raw.uni_tracking_spath_raw") == loaded
        source.con.execute("UPDATE uni_tracking_spath SET extra = '{\"a\": 1}' WHERE order_id = 8")
        source.con.commit()
        assert [r.status for r in sync(cfg)] == ["ok"]
        assert pg_db.query(
            "SELECT extra->>'a' FROM raw.uni_tracking_spath_raw WHERE order_id = 8"
        ) == [("1",)]
        assert pg_db.query("SELECT COUNT(*) FROM raw.uni_tracking_spath_raw") == [
            (loaded[0][0] + 2,)
        ]
    finally:
        source.close()


MARIADB_DDL = """
CREATE TABLE orders_doc (
  id BIGINT NOT NULL PRIMARY KEY,
  doc JSON,
  note TEXT,
  raw_msg MEDIUMTEXT,
  n INT,
  update_time DATETIME(6) NOT NULL
)
"""


def _mariadb_config(db: MySQLDb, wh: dict[str, Any], s3: S3Endpoint, **table: Any) -> Config:
    stage = s3.stage_config()
    return Config.model_validate(
        {
            "sources": {"kuaisong": db.source_config(innodb_hold=False)},
            "warehouse": wh,
            "stage": stage.model_dump(mode="python", by_alias=True)
            | {"access_key_id": s3.access_key_id, "secret_access_key": s3.secret_access_key},
            "defaults": {"lag_seconds": 0, "batch_size": 4},
            "tables": [
                {
                    "name": "orders_doc",
                    "target_schema": "ods",
                    "cdc": {"strategy": "hybrid", "cursor": "update_time", "id": "id"},
                    "write_mode": "merge",
                    **table,
                }
            ],
        }
    )


def _types(pg: PgDb) -> dict[str, str]:
    return dict(
        pg.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'ods' AND table_name = 'orders_doc'"
        )
    )


def _insert(db: MySQLDb, ids: range, at: dt.datetime | None) -> None:
    """Rows at `at` (None: the source's NOW(6))."""
    db.executemany(
        "INSERT INTO orders_doc VALUES (%s, %s, %s, %s, %s, COALESCE(%s, NOW(6)))",
        [
            (i, json.dumps({"i": i, "tags": ["a", i]}), '{"not": "a document"}', f"[{i}]", i, at)
            for i in ids
        ],
    )


def test_mariadb_json_is_found_and_json_as_applies_to_new_tables(
    mysql_db: MySQLDb, pg_db: PgDb, s3: S3Endpoint
) -> None:
    mysql_db.execute(MARIADB_DDL)
    past = dt.datetime(2024, 5, 1, 8, 0, 0)
    _insert(mysql_db, range(1, 10), past)

    # json_as: super, merge mode (batches go through a temp table): doc is found on its own,
    # raw_msg is listed, note stays text although it holds JSON-looking text.
    cfg = _mariadb_config(
        mysql_db, pg_db.redshift_compat(json_as="super"), s3, json_columns=["raw_msg"]
    )
    assert [r.status for r in sync(cfg)] == ["ok"]
    types = _types(pg_db)
    assert (types["doc"], types["raw_msg"], types["note"]) == (
        "jsonb",
        "jsonb",
        "character varying",
    )
    assert pg_db.query(
        "SELECT doc->'tags'->>1, raw_msg->>0, note FROM ods.orders_doc WHERE id = 3"
    ) == [("3", "3", '{"not": "a document"}')]
    # updates merge by key, documents replaced whole
    time.sleep(1.1)  # past the first run's upper bound (the source clock, lag 0)
    mysql_db.execute(
        "UPDATE orders_doc SET doc = JSON_OBJECT('i', -1), update_time = NOW(6) WHERE id <= 2"
    )
    time.sleep(0.05)
    assert [r.status for r in sync(cfg)] == ["ok"]
    assert pg_db.query("SELECT id, doc->>'i' FROM ods.orders_doc WHERE id <= 3 ORDER BY id") == [
        (1, "-1"),
        (2, "-1"),
        (3, "3"),
    ]
    assert pg_db.query("SELECT COUNT(*) FROM ods.orders_doc") == [(9,)]


def test_a_json_column_added_in_the_source_arrives_as_super(
    mysql_db: MySQLDb, pg_db: PgDb, s3: S3Endpoint
) -> None:
    """Schema drift on an append table: a JSON column added to the source is added to the raw
    table as a document column, and the batches (whose column order is no longer the
    table's) are loaded through a temp table with that column as a document too."""
    mysql_db.execute(MARIADB_DDL)
    _insert(mysql_db, range(1, 4), dt.datetime(2024, 5, 1, 8, 0, 0))
    cfg = _mariadb_config(mysql_db, pg_db.redshift_compat(json_as="super"), s3, write_mode="append")
    assert [r.status for r in sync(cfg)] == ["ok"]
    mysql_db.execute("ALTER TABLE orders_doc ADD COLUMN extra JSON AFTER doc")
    time.sleep(1.1)
    mysql_db.execute(
        "INSERT INTO orders_doc (id, doc, extra, note, raw_msg, n, update_time) "
        "VALUES (10, '{}', '{\"k\": [1, {\"z\": null}]}', 'n', NULL, 1, NOW(6))"
    )
    time.sleep(0.05)
    (res,) = sync(cfg)
    assert res.status == "ok" and any("'extra'" in w for w in res.warnings), res
    cols = pg_db.query(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'ods' AND table_name = 'orders_doc_raw' ORDER BY ordinal_position"
    )
    assert cols[-1] == ("extra", "jsonb") and ("doc", "jsonb") in cols
    assert pg_db.query(
        "SELECT extra->'k'->1->'z', jsonb_typeof(extra->'k'->1->'z') "
        "FROM ods.orders_doc_raw WHERE id = 10"
    ) == [(None, "null")]
    assert pg_db.query("SELECT COUNT(*) FROM ods.orders_doc_raw WHERE extra IS NULL") == [(3,)]


def test_json_as_varchar_keeps_text_and_a_text_table_stays_text_after_switching(
    mysql_db: MySQLDb, pg_db: PgDb, s3: S3Endpoint
) -> None:
    mysql_db.execute(MARIADB_DDL)
    past = dt.datetime(2024, 5, 1, 8, 0, 0)
    _insert(mysql_db, range(1, 6), past)
    cfg = _mariadb_config(mysql_db, pg_db.redshift_compat(), s3)  # json_as defaults to varchar
    assert [r.status for r in sync(cfg)] == ["ok"]
    assert _types(pg_db)["doc"] == "character varying"
    stage = Stage(cfg.stage)
    files = stage.list()  # batch_size 4: two batches
    assert len(files) == 2
    for staged in files:
        with stage.fs.open_input_file(staged.uri.removeprefix("s3://")) as f:
            schema = pq.ParquetFile(f).schema
        assert [str(schema.column(i).logical_type) for i in range(len(schema))].count("JSON") == 0

    # Switching to super later: the existing table keeps VARCHAR and keeps loading text.
    switched = _mariadb_config(mysql_db, pg_db.redshift_compat(json_as="super"), s3)
    time.sleep(1.1)
    _insert(mysql_db, range(6, 9), None)
    time.sleep(0.05)
    assert [r.status for r in sync(switched)] == ["ok"]
    assert _types(pg_db)["doc"] == "character varying"
    got = pg_db.query("SELECT doc FROM ods.orders_doc WHERE id = 7")
    assert json.loads(got[0][0]) == {"i": 7, "tags": ["a", 7]}


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["nope"], "json_columns names 'nope', which is not one of its columns"),
        (["n"], "json_columns names 'n', a int"),
    ],
)
def test_json_columns_must_name_text_columns(
    mysql_db: MySQLDb, pg_db: PgDb, s3: S3Endpoint, columns: list[str], message: str
) -> None:
    mysql_db.execute(MARIADB_DDL)
    _insert(mysql_db, range(1, 3), dt.datetime(2024, 5, 1))
    cfg = _mariadb_config(
        mysql_db, pg_db.redshift_compat(json_as="super"), s3, json_columns=columns
    )
    (res,) = sync(cfg)
    assert res.status == "failed" and message in res.error, res.error
    assert "orders_doc" in res.error
    assert not pg_db.query("SELECT 1 FROM information_schema.tables WHERE table_schema = 'ods'")
