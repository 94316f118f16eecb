"""The stage on an S3 endpoint (moto's server): incremental sync, key layout, manifests, replay."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner

from tests.conftest import MySQLDb, S3Endpoint
from tests.integration.synctools import (
    ORDER_COLS,
    create_orders,
    insert_orders,
    make_config,
    one,
    source_rows,
    sync_ok,
    table,
    warehouse,
    wh_query,
    wh_rows,
    write_config,
)
from trackline.cli import main
from trackline.config import DuckDBWarehouse, PostgresWarehouse

Warehouse = DuckDBWarehouse | PostgresWarehouse
PAST = dt.datetime(2024, 3, 1, 8, 0, 0)
COLS = [*ORDER_COLS, "_tl_batch_id"]


def test_incremental_sync_through_s3(
    mysql_db: MySQLDb, warehouse_config: Warehouse, s3: S3Endpoint, tmp_path: Path
) -> None:
    create_orders(mysql_db, 12, PAST)
    t = table(batch_size=5, target_schema="settlement_public", write_mode="merge")
    cfg = make_config(mysql_db, warehouse_config, s3.stage_config(prefix="stage"), [t])
    key = "settlement_public.orders"

    assert one(sync_ok(cfg)).rows == 12
    assert wh_rows(cfg, key) == source_rows(mysql_db)
    insert_orders(mysql_db, ["NOW"] * 3)
    mysql_db.execute("UPDATE orders SET status = 'paid', update_time = NOW(6) WHERE id IN (1, 6)")
    assert one(sync_ok(cfg)).rows == 5
    assert wh_rows(cfg, key) == source_rows(mysql_db)

    # the stage layout: {prefix}/{source_db}/{target_schema}/{table}/year=/month=/day=/
    #            {table}_{YYYYmmdd_HHMMSS}_{batch_id}.parquet, plus a .manifest per batch.
    layout = re.compile(
        rf"stage/{mysql_db.database}/settlement_public/orders/"
        r"year=(\d{4})/month=(\d{2})/day=(\d{2})/orders_(\d{8})_(\d{6})_(\d+)\.(parquet|manifest)"
    )
    keys = s3.keys("stage/")
    assert keys and all(layout.fullmatch(k) for k in keys), keys
    ledger = wh_query(
        cfg,
        "SELECT batch_id, row_count, files, manifest FROM trackline.batches "
        "WHERE table_key = ? ORDER BY batch_id",
        (key,),
    )
    assert [r[0] for r in ledger] == [1, 2, 3, 4]
    parquet = [k for k in keys if k.endswith(".parquet")]
    assert len(parquet) == len(ledger) and len(keys) == 2 * len(ledger)
    for batch_id, rows, files, manifest_uri in ledger:
        (uri,) = json.loads(files)
        m = layout.fullmatch(uri.removeprefix(f"s3://{s3.bucket}/"))
        assert m is not None and int(m.group(6)) == batch_id
        year, month, day, ymd = m.group(1), m.group(2), m.group(3), m.group(4)
        assert ymd == f"{year}{month}{day}"
        object_key = uri.removeprefix(f"s3://{s3.bucket}/")
        size = s3.client.head_object(Bucket=s3.bucket, Key=object_key)["ContentLength"]
        assert manifest_uri == uri.removesuffix(".parquet") + ".manifest"
        body = s3.client.get_object(
            Bucket=s3.bucket, Key=manifest_uri.removeprefix(f"s3://{s3.bucket}/")
        )["Body"].read()
        manifest = json.loads(body)
        (entry,) = manifest["entries"]
        assert entry["url"] == uri and entry["mandatory"] is True
        assert entry["meta"]["content_length"] == size
        assert entry["meta"]["record_count"] == rows
        local = tmp_path / f"{batch_id}.parquet"
        local.write_bytes(s3.client.get_object(Bucket=s3.bucket, Key=object_key)["Body"].read())
        assert pq.read_table(local).num_rows == rows

    # Replay from S3, twice: the table does not change.
    before = wh_rows(cfg, key, COLS)
    path = write_config(tmp_path / "trackline.yml", cfg)
    for _ in range(2):
        r = CliRunner().invoke(main, ["replay", "-c", str(path), "orders"])
        assert r.exit_code == 0, r.output
        assert "replayed 4 batches (17 rows)" in r.output
        assert wh_rows(cfg, key, COLS) == before


def test_replay_from_s3_restores_a_damaged_append_table(
    mysql_db: MySQLDb, warehouse_config: Warehouse, s3: S3Endpoint, tmp_path: Path
) -> None:
    create_orders(mysql_db, 9, PAST)
    cfg = make_config(
        mysql_db, warehouse_config, s3.stage_config(prefix="p/q"), [table(batch_size=4)]
    )
    sync_ok(cfg)
    key = "public.orders_raw"
    before = wh_rows(cfg, key, COLS)
    with warehouse(cfg) as wh, wh.transaction():
        wh.execute(f"DELETE FROM {wh.t('public', 'orders_raw')} WHERE id > 2")
    assert len(wh_rows(cfg, key, COLS)) == 2
    path = write_config(tmp_path / "trackline.yml", cfg)
    r = CliRunner().invoke(main, ["replay", "-c", str(path), "orders"])
    assert r.exit_code == 0, r.output
    assert wh_rows(cfg, key, COLS) == before
    keys = s3.keys()
    assert all(k.startswith(f"p/q/{mysql_db.database}/public/orders_raw/") for k in keys)

    # A staged file that is gone (pruned) stops the replay with its name; nothing changes.
    gone = next(k for k in keys if k.endswith("_2.parquet"))
    s3.client.delete_object(Bucket=s3.bucket, Key=gone)
    r = CliRunner().invoke(main, ["replay", "-c", str(path), "orders"])
    assert r.exit_code == 1
    assert f"s3://{s3.bucket}/{gone} is gone" in r.output and "batch 2" in r.output
    assert wh_rows(cfg, key, COLS) == before
