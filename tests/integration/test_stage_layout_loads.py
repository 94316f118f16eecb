"""Every MySQL type round-trips through the staged Parquet files in their new layout
(`trackline.stage.parquet`: format 1.0, snappy, INT96 timestamps) into DuckDB, PostgreSQL and
Redshift in compat mode, and files staged in the layout of earlier versions (format 2.6, zstd,
INT64 timestamps) still replay.

The table is `test_sync_types`' (unsigned BIGINT above 2^63, DECIMAL(38,10), DATETIME(6) at
1000-01-01 and 9999-12-31 23:59:59.999999, TIME ±838 h, BIT, BLOB with zero bytes, JSON, …).
The values must come from the files: the target is emptied and `replay_table` reloads it from
the stage. In compat mode the Redshift adapter loads the staged files themselves (its stand-in
for COPY reads the manifest's files), and re-stages an older-layout file before COPY instead of
handing it to Redshift.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import MySQLDb, PgDb, S3Endpoint
from tests.integration.synctools import make_config, one, sync_ok, table, warehouse
from tests.integration.test_sync_types import (
    ROWS,
    _f32,
    _fill,
    _source_values,
    _warehouse_values,
)
from trackline.config import Config, DuckDBWarehouse, PostgresWarehouse, RedshiftWarehouse
from trackline.load.redshift import Redshift
from trackline.stage import Stage
from trackline.status import replay_table


def _assert_values(cfg: Config, mysql_db: MySQLDb) -> None:
    src, got = _source_values(mysql_db), _warehouse_values(cfg)
    assert got.keys() == src.keys() == {1, 2, 3, 4}
    for key, want in src.items():
        for col, value in want.items():
            have = got[key][col]
            if col == "f4" and value is not None:
                assert have == pytest.approx(_f32(value), rel=1e-7), (key, col)
            elif isinstance(value, float):
                assert have == value and math.copysign(1, have) == math.copysign(1, value)
            else:
                assert have == value, (key, col, have, value)
                assert type(have) is type(value), (key, col, type(have), type(value))
    assert got[2]["dt6"] == dt.datetime(1000, 1, 1, 0, 0, 0, 1)
    assert got[4]["dt6"] == dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    assert got[1]["u64"] == 18446744073709551615


def _empty_and_replay(cfg: Config) -> None:
    with warehouse(cfg) as wh:
        wh.execute(f"DELETE FROM {wh.t('public', 'types_raw')}")
    batches, rows = replay_table(cfg, "types")
    assert (batches, rows) == (2, len(ROWS))


def _staged(cfg: Config) -> tuple[Stage, list[str]]:
    stage = Stage(cfg.stage)
    return stage, [f.uri for f in stage.list() if "/types_raw/" in f.uri]


def _rewrite_in_the_old_layout(stage: Stage, uris: list[str]) -> None:
    """What earlier versions staged: pyarrow's defaults (Parquet 2.6) with zstd. The manifests
    keep their entries (compat mode reads the files they list)."""
    for uri in uris:
        path = uri.removeprefix(stage.scheme)
        with stage.fs.open_input_file(path) as f:
            data = pq.read_table(f, coerce_int96_timestamp_unit="us")
        with stage.fs.open_output_stream(path) as out:
            pq.write_table(data, out, compression="zstd")
        with stage.fs.open_input_file(path) as f:
            meta = pq.ParquetFile(f).metadata
        assert meta.format_version == "2.6"


def _assert_new_layout(stage: Stage, uris: list[str]) -> None:
    assert uris
    for uri in uris:
        with stage.fs.open_input_file(uri.removeprefix(stage.scheme)) as f:
            pf = pq.ParquetFile(f)
            meta, schema = pf.metadata, pf.schema
        assert meta.format_version == "1.0"
        assert meta.row_group(0).column(0).compression == "SNAPPY"
        names = [schema.column(i).name for i in range(len(schema))]
        for col in ("dtm", "dt6", "ts3", "update_time"):
            assert schema.column(names.index(col)).physical_type == "INT96", col


def test_every_type_replays_from_the_staged_files_new_and_old_layout(
    mysql_db: MySQLDb, warehouse_config: DuckDBWarehouse | PostgresWarehouse, tmp_path: Path
) -> None:
    _fill(mysql_db)
    cfg = make_config(
        mysql_db, warehouse_config, tmp_path / "stage", [table("types", batch_size=3)]
    )
    assert one(sync_ok(cfg)).rows == len(ROWS)
    stage, uris = _staged(cfg)
    _assert_new_layout(stage, uris)

    _empty_and_replay(cfg)
    _assert_values(cfg, mysql_db)

    _rewrite_in_the_old_layout(stage, uris)
    _empty_and_replay(cfg)
    _assert_values(cfg, mysql_db)


def test_redshift_copies_the_new_layout_and_restages_the_old(
    mysql_db: MySQLDb, pg_db: PgDb, s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests: list[str] = []
    real = Redshift._copy_manifest

    def spy(self: Redshift, target: str, names: list[str], manifest: str, **kw: Any) -> None:
        manifests.append(manifest)
        real(self, target, names, manifest, **kw)

    monkeypatch.setattr(Redshift, "_copy_manifest", spy)
    _fill(mysql_db)
    base = make_config(mysql_db, pg_db.warehouse_config(), s3.stage_config(), [])
    cfg = base.model_copy(
        update={
            "warehouse": RedshiftWarehouse(**pg_db.redshift_compat()),
            "tables": [table("types", batch_size=3)],
        }
    )
    assert one(sync_ok(cfg)).rows == len(ROWS)
    stage, uris = _staged(cfg)
    _assert_new_layout(stage, uris)
    # COPY read the staged manifests themselves: nothing re-written
    assert len(manifests) == 2 and not [m for m in manifests if "_trackline_tmp" in m]
    _assert_values(cfg, mysql_db)

    manifests.clear()
    _rewrite_in_the_old_layout(stage, uris)
    _empty_and_replay(cfg)
    # each older-layout batch went to COPY through a transient file in today's layout
    assert len(manifests) == 2 and all("/_trackline_tmp/" in m for m in manifests)
    left = [k for k in s3.keys("stage/_trackline_tmp/") if not k.endswith("/")]
    assert left == []  # and the transient files are gone
    _assert_values(cfg, mysql_db)
