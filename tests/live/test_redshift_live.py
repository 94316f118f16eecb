"""The Redshift adapter against a real cluster: run by hand by a user who has one.

Set three environment variables, then run ``scripts/test.sh tests/live``:

- ``TRACKLINE_REDSHIFT_DSN``: a libpq connection string or URL, e.g.
  ``host=my-cluster.abc.eu-west-1.redshift.amazonaws.com port=5439 dbname=dev user=etl
  password=…`` (``postgresql://etl:…@host:5439/dev`` works too);
- ``TRACKLINE_REDSHIFT_IAM_ROLE``: the role ARN the cluster assumes for COPY (or ``default``);
- ``TRACKLINE_REDSHIFT_S3``: ``s3://bucket/prefix`` for the stage, in the cluster's region; the
  test writes there with the standard AWS credential chain (environment, profile, instance).

Each test works in schemas of its own (``tl_live_<random>``) and drops them afterwards; the
sync test also creates ``trackline.locks`` if it is missing (the lock table every trackline run
on the cluster shares), and leaves it.

`test_every_command_on_a_real_cluster` runs the scenario of `tests/redshift_scenario.py` (the
one `tests/integration/test_redshift_scenario.py` runs in compat mode on every CI run): several
mart cycles with archiving and reactivation, `trackline check`, reconcile, replay, reset and
maintenance, in schemas ``tl_live_<random>_raw|mart|trackline``, and prints a summary of what
ran.

When the variables are not set, the whole module is skipped. That is the one skip allowed even
under ``CI=true``: no Redshift cluster can exist on a CI machine, and the same adapter is proven
there by `tests/unit/test_redshift_sql.py` (sqlglot) and `tests/integration/
test_redshift_compat.py` (PostgreSQL + S3). These tests check what neither can: that Redshift
itself accepts the COPY (Parquet by position, column list, manifest, the type casts), the DDL
with DISTKEY/SORTKEY, the lock table and the upkeep queries.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

ENV = ("TRACKLINE_REDSHIFT_DSN", "TRACKLINE_REDSHIFT_IAM_ROLE", "TRACKLINE_REDSHIFT_S3")
if not all(os.environ.get(v) for v in ENV):
    pytest.skip(
        f"live Redshift tests need {', '.join(ENV)} (no cluster here; see the module docstring)",
        allow_module_level=True,
    )

from psycopg.conninfo import conninfo_to_dict  # noqa: E402

from tests.redshift_scenario import run_scenario, scenario_config  # noqa: E402
from trackline.config import Config, RedshiftWarehouse, StageConfig  # noqa: E402
from trackline.errors import LockBusy  # noqa: E402
from trackline.extract.types import json_field  # noqa: E402
from trackline.load import Column, open_warehouse  # noqa: E402
from trackline.load.redshift import Redshift  # noqa: E402
from trackline.stage import Stage  # noqa: E402
from trackline.sync import sync  # noqa: E402

SCENARIO_SCHEMAS = ("raw", "mart", "trackline")
"""Schemas of `run_scenario` (prefixed with the run's name)."""


def _warehouse(**overrides: Any) -> RedshiftWarehouse:
    return RedshiftWarehouse(**_warehouse_values(**overrides))


def _warehouse_values(**overrides: Any) -> dict[str, Any]:
    """The warehouse config as plain data (with the password: it goes into a `Config`)."""
    dsn = conninfo_to_dict(os.environ["TRACKLINE_REDSHIFT_DSN"])
    values: dict[str, Any] = {
        "host": dsn["host"],
        "port": int(dsn.get("port") or 5439),
        "user": dsn["user"],
        "password": dsn.get("password") or "",
        "database": dsn.get("dbname") or "dev",
        "iam_role": os.environ["TRACKLINE_REDSHIFT_IAM_ROLE"],
    }
    values.update(overrides)
    return values


def _stage(run: str) -> StageConfig:
    return StageConfig(url=f"{os.environ['TRACKLINE_REDSHIFT_S3'].rstrip('/')}/{run}")


@pytest.fixture
def run() -> Iterator[str]:
    """A unique name for this test's schemas and stage prefix; both are removed afterwards."""
    name = f"tl_live_{uuid.uuid4().hex[:8]}"
    yield name
    wh = open_warehouse(_warehouse())
    wh.connect()
    try:
        for schema in (name, f"{name}_state", *(f"{name}_{s}" for s in SCENARIO_SCHEMAS)):
            wh.execute(f"DROP SCHEMA IF EXISTS {wh.q(schema)} CASCADE")
    finally:
        wh.close()
    stage = Stage(_stage(name))
    for f in stage.list():
        stage.delete(f.uri)


@pytest.fixture
def wh(run: str) -> Iterator[Redshift]:
    w = open_warehouse(_warehouse(), stage=Stage(_stage(run)))
    assert isinstance(w, Redshift)
    w.lock_schema = f"{run}_state"
    w.connect()
    try:
        yield w
    finally:
        w.close()


def _all_types() -> pa.Table:
    return pa.table(
        {
            "id": pa.array([1, 2], pa.uint32()),
            "big": pa.array([2**64 - 1, 0], pa.uint64()),
            "small": pa.array([-5, None], pa.int8()),
            "flag": pa.array([True, None], pa.bool_()),
            "ratio": pa.array([1.5, None], pa.float32()),
            "amount": pa.array([Decimal("12.34"), None], pa.decimal128(10, 2)),
            "day": pa.array([dt.date(2024, 2, 29), None], pa.date32()),
            "at": pa.array([dt.datetime(2024, 2, 29, 23, 59, 59, 1234), None], pa.timestamp("us")),
            "tod": pa.array([dt.time(8, 30, 0, 5), None], pa.time64("us")),
            "pathTime": pa.array(["已签收 o'neil", None], pa.string()),
            "blob": pa.array([b"\x00\xff", None], pa.binary()),
        }
    )


def test_copy_round_trips_every_type(wh: Redshift, run: str) -> None:
    data = _all_types()
    with wh.transaction():
        wh.ensure_schema(run)
        wh.create_table(
            run,
            "t",
            [Column(f.name, f.type) for f in data.schema],
            dist_key="id",
            sort_key=["at", "id"],
        )
    assert wh.stage is not None
    staged = wh.stage.write_batch(
        source_db="live", schema=run, table="t", batch_id=1, data=data, when=dt.datetime.now()
    )
    with wh.transaction():
        assert wh.append_arrow(run, "t", data, staged) == 2
    rows = wh.query(f'SELECT * FROM {wh.t(run, "t")} ORDER BY "id"')
    assert rows[0][:9] == (
        1,
        Decimal(2**64 - 1),
        -5,
        True,
        1.5,
        Decimal("12.34"),
        dt.date(2024, 2, 29),
        dt.datetime(2024, 2, 29, 23, 59, 59, 1234),
        "08:30:00.000005",
    )
    blob = rows[0][10]  # psycopg does not know VARBYTE's type: Redshift sends it as hex text
    assert rows[0][9] == "已签收 o'neil"
    assert (bytes.fromhex(blob) if isinstance(blob, str) else bytes(blob)) == b"\x00\xff"
    assert rows[1][2:] == (None,) * 9
    # After ADD COLUMN the table's order is not the file's: still loaded by name.
    wh.add_column(run, "t", Column("extra", pa.string()))
    more = data.append_column("extra", pa.array(["e", None]))
    staged = wh.stage.write_batch(
        source_db="live", schema=run, table="t", batch_id=2, data=more, when=dt.datetime.now()
    )
    with wh.transaction():
        wh.append_arrow(run, "t", more, staged)
    assert wh.scalar(f'SELECT COUNT(*) FROM {wh.t(run, "t")} WHERE "extra" = ?', ("e",)) == 1
    assert 0 <= wh.approx_rows(run, "t") <= 4  # svv_table_info's estimate, read outside a tx


def test_json_documents_copy_into_super(run: str) -> None:
    """`json_as: super`: the staged JSON logical type loads as SUPER documents (not string
    scalars), information_schema reports the columns as super, and a merge goes through a SUPER
    temp table."""
    w = open_warehouse(_warehouse(json_as="super"), stage=Stage(_stage(run)))
    assert isinstance(w, Redshift)
    w.lock_schema = f"{run}_state"
    w.connect()
    try:
        docs = ['{"a": [1, 2], "b": "x"}', "null", None, '"s"']
        data = pa.Table.from_arrays(
            [pa.array([1, 2, 3, 4], pa.int64()), pa.array(docs)],
            schema=pa.schema([pa.field("id", pa.int64()), json_field("doc")]),
        )
        with w.transaction():
            w.ensure_schema(run)
            w.create_table(run, "j", [Column.of(f) for f in data.schema], dist_key="id")
        assert w.json_column_names(run, "j") == {"doc"}
        assert w.stage is not None
        staged = w.stage.write_batch(
            source_db="live", schema=run, table="j", batch_id=1, data=data, when=dt.datetime.now()
        )
        with w.transaction():
            w.append_arrow(run, "j", data, staged)
            with w.batch_relation(data.slice(0, 1), None) as rel:
                w.execute(f"INSERT INTO {w.t(run, 'j')} SELECT * FROM {rel}")
        rows = w.query(
            f'SELECT "id", IS_OBJECT("doc"), JSON_TYPEOF("doc"), "doc".b::VARCHAR '
            f'FROM {w.t(run, "j")} ORDER BY "id"'
        )
        assert rows[0] == (1, True, "object", "x") and rows[1] == (1, True, "object", "x")
        assert rows[2][2] == "null" and rows[3][1] is None and rows[4][2] == "string"
    finally:
        w.close()


def test_sync_from_sqlite_into_redshift(tmp_path: Path, run: str) -> None:
    db = tmp_path / "src.db"
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, order_id INTEGER, status TEXT, "
        "update_time INTEGER)"  # unix seconds, as the demo's source keeps times
    )
    con.executemany(
        "INSERT INTO orders VALUES (?, ?, ?, ?)",
        [(i, 100 + i % 7, f"s{i}", 1_704_067_200 + i % 60) for i in range(1, 101)],
    )
    con.commit()
    con.close()
    cfg = Config.model_validate(
        {
            "sources": {"src": {"type": "sqlite", "path": str(db)}},
            "warehouse": _warehouse(),
            "stage": _stage(run),
            "state_schema": f"{run}_state",
            "defaults": {"batch_size": 30},
            "tables": [
                {
                    "name": "orders",
                    "target_schema": run,
                    "cdc": {"strategy": "hybrid", "cursor": "update_time", "id": "id"},
                    "write_mode": "merge",
                    "primary_key": ["id"],
                    "dist_key": "order_id",
                    "sort_key": ["update_time", "id"],
                }
            ],
        }
    )
    results = sync(cfg)
    assert [r.status for r in results] == ["ok"], results[0].error
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        assert wh.scalar(f'SELECT COUNT(DISTINCT "id") FROM {wh.t(run, "orders")}') == 100
        assert wh.scalar(f"SELECT COUNT(*) FROM {wh.t(run, 'orders')}") == 100
    finally:
        wh.close()


def test_lock_table_and_upkeep(wh: Redshift, run: str) -> None:
    other = open_warehouse(_warehouse())
    assert isinstance(other, Redshift)
    other.lock_schema = wh.lock_schema
    other.connect()
    try:
        with wh.lock("live"):
            with pytest.raises(LockBusy), other.lock("live", timeout=0.5):
                pass
        with other.lock("live"):
            pass
        # a holder whose session is gone (a run that died) is taken over at once
        gone = open_warehouse(_warehouse())
        assert isinstance(gone, Redshift)
        gone.lock_schema = wh.lock_schema
        gone.connect()
        holder = "dead-host:1:dead" + gone._session()
        gone.close()
        assert "(session " in holder
        table = wh.t(wh.lock_schema, "locks")
        with wh.transaction():
            wh.execute(
                f'INSERT INTO {table} ("name", holder, acquired_at) VALUES (?, ?, GETDATE())',
                ("died", holder),
            )
        with other.lock("died", timeout=5):
            assert any("has no session" in n for n in other.notices)
    finally:
        other.close()
    with wh.transaction():
        wh.ensure_schema(run)
        wh.create_table(run, "u", [Column("k", pa.int64())])
    ran = wh.maintenance(run, "u")
    assert all(s.startswith(("VACUUM", "ANALYZE")) for s in ran)


def test_staged_timestamps_and_decimals_read_back_exactly(wh: Redshift, run: str) -> None:
    """The staged layout (Parquet 1.0, snappy, INT96 timestamps: `trackline.stage.parquet`)
    as COPY reads it: the timestamp of apache/arrow#38000 (loaded as year 161065 from pyarrow's
    default layout), MySQL's DATETIME range ends with microseconds, and a DECIMAL(38,10)."""
    at = [
        dt.datetime(2023, 9, 11, 10, 39, 0),
        dt.datetime(1000, 1, 1, 0, 0, 0, 1),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    ]
    big = [Decimal("1234567890123456789012345678.0123456789"), Decimal("-0.0000000001"), None]
    data = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "at": pa.array(at, pa.timestamp("us")),
            "big": pa.array(big, pa.decimal128(38, 10)),
        }
    )
    with wh.transaction():
        wh.ensure_schema(run)
        wh.create_table(run, "ts", [Column(f.name, f.type) for f in data.schema], dist_key="id")
    assert wh.stage is not None
    staged = wh.stage.write_batch(
        source_db="live", schema=run, table="ts", batch_id=1, data=wh.stage_form(data),
        when=dt.datetime.now(),
    )  # fmt: skip
    with wh.transaction():
        assert wh.append_arrow(run, "ts", data, staged) == 3
    rows = wh.query(f'SELECT "at", "big" FROM {wh.t(run, "ts")} ORDER BY "id"')
    assert [r[0] for r in rows] == at and [r[1] for r in rows] == big


def test_every_command_on_a_real_cluster(
    tmp_path: Path, run: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The compat suite's scenario (tests/redshift_scenario.py) on the cluster: cycles with
    archiving and reactivation, `trackline check`, reconcile (+ apply), replay, reset + sync,
    maintenance. Prints what ran."""
    stage = {"url": _stage(run).url}
    cfg, src = scenario_config(tmp_path, _warehouse_values(), stage, prefix=f"{run}_")
    try:
        summary = run_scenario(cfg, src)
    finally:
        src.close()
    with capsys.disabled():
        print("\nlive Redshift scenario:\n  " + "\n  ".join(summary))
