"""The Redshift adapter end to end against the real PostgreSQL (``compat_postgres: true``).

Compatibility mode swaps only what PostgreSQL lacks: DISTKEY/SORTKEY are dropped, VARBYTE is
BYTEA, and the S3 COPY becomes a client-side COPY of the same staged files, read back from the
stage (a moto S3 endpoint here) by the manifest's entries, columns matched by position. Every
other statement is the one Redshift receives.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from tests.conftest import REDSHIFT_TEST_ROLE, MySQLDb, PgDb, S3Endpoint
from trackline.config import Config, DuckDBWarehouse, RedshiftWarehouse, StageConfig
from trackline.errors import LockBusy, WarehouseError
from trackline.load import Column, open_warehouse
from trackline.load.limits import VARCHAR_MAX_BYTES
from trackline.load.redshift import Redshift
from trackline.stage import Stage
from trackline.sync import sync

ROLE = REDSHIFT_TEST_ROLE

TRACKING_DDL = """
CREATE TABLE uni_tracking_info (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  order_id BIGINT UNSIGNED NOT NULL,
  status VARCHAR(32),
  amount DECIMAL(10,2),
  is_cod TINYINT(1),
  created DATE,
  pathTime TIME,
  note TEXT,
  payload BLOB,
  update_time DATETIME(6) NOT NULL
)
"""
CLAIMS_DDL = """
CREATE TABLE settlement_claim_detail (
  ID BIGINT NOT NULL PRIMARY KEY,
  order_id BIGINT,
  amount DECIMAL(12,4),
  reason VARCHAR(200),
  update_at DATETIME NOT NULL
)
"""


def _seed(db: MySQLDb) -> None:
    db.execute(TRACKING_DDL)
    db.execute(CLAIMS_DDL)
    base = dt.datetime(2024, 3, 1, 8, 0, 0)
    db.executemany(
        "INSERT INTO uni_tracking_info (order_id, status, amount, is_cod, created, pathTime, "
        "note, payload, update_time) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            (
                2**64 - 1 - i if i % 7 == 0 else 1000 + i,
                ["已签收", "in transit", 'o\'neil "q"', None][i % 4],
                Decimal(i) / 4,
                i % 2,
                dt.date(2024, 1, 1) + dt.timedelta(days=i),
                f"{i:02d}:15:30",
                None if i % 5 == 0 else "派送中, line\nbreak" * (i % 3 + 1),
                None if i % 3 else bytes(range(i % 50)),
                base + dt.timedelta(seconds=i // 3, microseconds=i),  # same-second rows
            )
            for i in range(60)
        ],
    )
    db.executemany(
        "INSERT INTO settlement_claim_detail VALUES (%s, %s, %s, %s, %s)",
        [
            (i, 500 + i % 10, Decimal("12.3456") * i, f"reason {i}", base + dt.timedelta(hours=i))
            for i in range(1, 31)
        ],
    )


def _config(db: MySQLDb, warehouse: Any, stage: StageConfig) -> Config:
    return Config.model_validate(
        {
            "sources": {"kuaisong": db.source_config(innodb_hold=False)},
            "warehouse": warehouse,
            "stage": stage,
            "defaults": {"batch_size": 17, "lag_seconds": 0},
            "tables": [
                {
                    "name": "uni_tracking_info",
                    "target_schema": "settlement_public",
                    "cdc": {"strategy": "hybrid", "cursor": "update_time", "id": "id"},
                    "dist_key": "order_id",
                    "sort_key": ["update_time", "order_id"],
                },
                {
                    "name": "settlement_claim_detail",
                    "target_schema": "settlement_public",
                    "cdc": {"strategy": "hybrid", "cursor": "update_at", "id": "ID"},
                    "write_mode": "merge",
                    "primary_key": ["ID"],
                },
            ],
        }
    )


def _norm(v: Any) -> Any:
    if isinstance(v, Decimal) and v == v.to_integral_value():
        return int(v)
    if isinstance(v, memoryview):
        return bytes(v)
    return v


def _rows(query: Any, table: str, order: str, cols: str = "*") -> list[tuple[Any, ...]]:
    sql = f"SELECT {cols} FROM {table} ORDER BY {order}"
    return [tuple(_norm(v) for v in r) for r in query(sql)]


def _transient_files(s3: S3Endpoint) -> list[str]:
    # (pyarrow leaves an empty "folder/" marker object behind a deleted file; that is no file)
    return [k for k in s3.keys() if "_trackline_tmp" in k and not k.endswith("/")]


def _compat(pg_db: PgDb, **overrides: Any) -> RedshiftWarehouse:
    return RedshiftWarehouse(**pg_db.redshift_compat(**overrides))


def test_full_sync_matches_duckdb(
    mysql_db: MySQLDb, pg_db: PgDb, s3: S3Endpoint, tmp_path: Path
) -> None:
    _seed(mysql_db)
    duck = _config(
        mysql_db, DuckDBWarehouse(path=tmp_path / "wh.duckdb"), StageConfig(url=str(tmp_path))
    )
    red = _config(mysql_db, _compat(pg_db), s3.stage_config())

    def both() -> None:
        for cfg in (duck, red):
            results = sync(cfg)
            assert [r.status for r in results] == ["ok", "ok"], [r.error for r in results]

    both()
    # Changes after the first upper bound (the source's clock, lag 0): a new row, and claims
    # updated in place, which the merge replaces by key.
    time.sleep(1.1)
    mysql_db.execute(
        "INSERT INTO uni_tracking_info (order_id, status, update_time) VALUES (77, 'new', NOW(6))"
    )
    mysql_db.execute(
        "UPDATE settlement_claim_detail SET amount = amount + 1, update_at = NOW() WHERE ID % 4 = 0"
    )
    time.sleep(0.05)
    both()

    import duckdb

    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:
        for table, order in (
            ("settlement_public.uni_tracking_info_raw", "id"),
            ("settlement_public.settlement_claim_detail", "ID"),  # (Redshift: the column id)
        ):
            expected = _rows(lambda q: con.execute(q).fetchall(), table, order)
            got = _rows(pg_db.query, table, order)
            assert got == expected, table
            assert len(got) == (61 if "tracking" in table else 30)
    finally:
        con.close()
    # What only the Redshift adapter does: unsigned ids cast before COPY, BYTEA for VARBYTE.
    types = dict(
        pg_db.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'uni_tracking_info_raw'"
        )
    )
    assert types["order_id"] == "numeric" and types["payload"] == "bytea"
    assert types["pathtime"] == "character varying"  # source pathTime, stored lower case
    # The transient files written for the casts were removed after each COPY.
    assert not _transient_files(s3)
    assert pg_db.query("SELECT COUNT(*) FROM trackline.locks") == [(0,)]


def test_unsigned_and_time_columns_are_staged_for_copy_and_never_restaged(
    mysql_db: MySQLDb, pg_db: PgDb, s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """INT/BIGINT UNSIGNED and TIME, which Redshift's Parquet reader does not map, are cast
    when the batch is staged: COPY loads the staged manifests themselves, with no second
    write of the batch to S3. A batch staged uncast (by an earlier version) is restaged."""
    _seed(mysql_db)
    cfg = _config(mysql_db, _compat(pg_db), s3.stage_config())
    manifests: list[str] = []
    real = Redshift._copy_manifest

    def spy(self: Redshift, target: str, names: list[str], manifest: str, **kw: bool) -> None:
        manifests.append(manifest)
        real(self, target, names, manifest, **kw)

    monkeypatch.setattr(Redshift, "_copy_manifest", spy)
    assert [r.status for r in sync(cfg)] == ["ok", "ok"]
    assert manifests and not [m for m in manifests if "_trackline_tmp" in m]
    stage = Stage(cfg.stage)
    first = next(f for f in stage.list() if "uni_tracking_info" in f.uri)
    types = {f.name: str(f.type) for f in stage.read([first.uri]).schema}
    assert (types["id"], types["order_id"], types["pathTime"]) == (
        "int64",
        "decimal128(20, 0)",
        "string",
    )
    # an uncast staged file (what earlier versions wrote) is restaged, not refused
    plain = pa.table({"id": pa.array([7], pa.uint32()), "at": pa.array([None], pa.time64("us"))})
    wh = open_warehouse(cfg.warehouse, stage=stage)
    wh.connect()
    try:
        with wh.transaction():
            wh.ensure_schema("old")
            wh.create_table("old", "t", [Column(f.name, f.type) for f in plain.schema])
        staged = stage.write_batch(
            source_db="x", schema="old", table="t", batch_id=1, data=plain, when=dt.datetime.now()
        )
        manifests.clear()
        with wh.transaction():
            wh.append_arrow("old", "t", plain, staged)
        assert len(manifests) == 1 and "_trackline_tmp" in manifests[0]
        assert pg_db.query("SELECT id, at FROM old.t") == [(7, None)]
    finally:
        wh.close()


@pytest.fixture
def wh(pg_db: PgDb, s3: S3Endpoint) -> Any:
    def make(**overrides: Any) -> Redshift:
        w = open_warehouse(_compat(pg_db, **overrides), stage=Stage(s3.stage_config()))
        assert isinstance(w, Redshift)
        w.connect()
        opened.append(w)
        return w

    opened: list[Redshift] = []
    yield make
    for w in opened:
        w.close()


def _stage_batch(w: Redshift, data: pa.Table, batch_id: int = 1) -> Any:
    assert w.stage is not None
    return w.stage.write_batch(
        source_db="src",
        schema="s",
        table="t",
        batch_id=batch_id,
        data=data,
        when=dt.datetime(2024, 1, 1),
    )


def _target(w: Redshift, data: pa.Table) -> None:
    w.ensure_schema("s")
    w.create_table("s", "t", [Column(f.name, f.type) for f in data.schema])


def test_varchar_limit_error_names_table_column_row(wh: Any) -> None:
    w = wh()
    data = pa.table({"k": [1, 2, 3], "txt": ["ok", "é" * 40_000, None]})
    _target(w, data)
    staged = _stage_batch(w, data)
    with pytest.raises(WarehouseError) as err, w.transaction():
        w.append_arrow("s", "t", data, staged)
    msg = str(err.value)
    assert "s.t" in msg and "'txt'" in msg and "row 1" in msg and "80,000 bytes" in msg
    assert "varchar_policy" in msg
    assert w.scalar('SELECT COUNT(*) FROM "s"."t"') == 0


def test_varchar_limit_truncates_at_character_boundary(wh: Any, s3: S3Endpoint) -> None:
    w = wh(varchar_policy="truncate")
    data = pa.table({"k": [1, 2], "txt": ["x" + "€" * 30_000, "short"]})  # "€" is 3 bytes
    _target(w, data)
    staged = _stage_batch(w, data)
    with w.transaction():
        assert w.append_arrow("s", "t", data, staged) == 2
    got = dict(w.query('SELECT "k", "txt" FROM "s"."t"'))
    assert got[2] == "short"
    assert got[1] == "x" + "€" * 21_844  # 65,533 bytes: one more byte-cut would split a "€"
    assert len(got[1].encode()) == VARCHAR_MAX_BYTES - 2
    assert any("'txt'" in n and "cut at a character boundary" in n for n in w.notices)
    assert not _transient_files(s3)


def test_filtered_batch_is_restaged_not_copied_from_the_original(wh: Any) -> None:
    """A merge deduplicates after staging: COPY must load the batch, not the staged file."""
    w = wh()
    staged_rows = pa.table({"k": [1, 1, 2], "v": ["old", "new", "x"]})
    staged = _stage_batch(w, staged_rows)
    batch = staged_rows.take([1, 2])
    with w.transaction(), w.batch_relation(batch, staged) as rel:
        assert sorted(w.query(f'SELECT "k", "v" FROM {rel}')) == [(1, "new"), (2, "x")]


def test_staged_file_with_other_columns_is_refused(wh: Any) -> None:
    w = wh()
    staged = _stage_batch(w, pa.table({"k": [1], "v": ["a"]}))
    other = pa.table({"v": ["a"], "k": [1]})
    with pytest.raises(WarehouseError, match="by position"), w.transaction():
        with w.batch_relation(other, staged):
            pass


def test_drift_added_column_loads_by_name(wh: Any) -> None:
    """After ALTER TABLE ADD COLUMN the table's order differs from the batch's: still right."""
    w = wh()
    w.ensure_schema("s")
    w.create_table("s", "t", [Column("a", pa.int64()), Column("_tl_batch_id", pa.int64())])
    w.add_column("s", "t", Column("b", pa.string()))
    data = pa.table({"a": [1], "b": ["new"], "_tl_batch_id": [7]})
    with w.transaction():
        w.append_arrow("s", "t", data, _stage_batch(w, data))
    assert w.query('SELECT "a", "_tl_batch_id", "b" FROM "s"."t"') == [(1, 7, "new")]


def test_lock_table_busy_then_stale_takeover(wh: Any) -> None:
    first, second = wh(), wh(lock_stale_seconds=3600)
    with first.lock("sync:s.t"):
        with first.lock("sync:s.t"):  # re-entrant in one adapter
            pass
        with pytest.raises(LockBusy, match="sync:s.t"), second.lock("sync:s.t", timeout=0.3):
            pass
        first.execute("UPDATE trackline.locks SET acquired_at = acquired_at - INTERVAL '2 hours'")
        with second.lock("sync:s.t"):
            assert any("taking it over" in n for n in second.notices)
    assert first.scalar("SELECT COUNT(*) FROM trackline.locks") == 0
    with pytest.raises(WarehouseError, match="before a transaction"), first.transaction():
        with first.lock("other"):
            pass


def _plant_lock(w: Redshift, name: str, holder: str) -> None:
    w._lock_table()
    with w.transaction():
        w.execute(
            "INSERT INTO trackline.locks (name, holder, acquired_at) VALUES (?, ?, ?)",
            (name, holder, dt.datetime.now(dt.UTC).replace(tzinfo=None)),
        )


def test_lock_of_a_run_that_died_is_taken_over_at_once(wh: Any, pg_db: PgDb) -> None:
    """A run killed while holding the lock leaves its row; its database session is gone, so
    the next run takes the lock at once instead of waiting `lock_stale_seconds` (6 h)."""
    w = wh()
    gone = pg_db.connect()
    pid, user = gone.execute("SELECT pg_backend_pid(), current_user").fetchone()  # type: ignore[misc]
    gone.close()
    _plant_lock(w, "cycle", f"crashed-host:4242:deadbeef (session {pid} of {user})")
    with w.lock("cycle"):
        assert any("has no session" in n and "crashed-host" in n for n in w.notices)
        holder = w.scalar("SELECT holder FROM trackline.locks WHERE name = 'cycle'")
        assert f"of {user})" in holder and "crashed-host" not in holder
    assert w.scalar("SELECT COUNT(*) FROM trackline.locks") == 0


def test_lock_of_a_live_session_or_of_another_user_is_not_taken(wh: Any, pg_db: PgDb) -> None:
    w = wh()
    alive = pg_db.connect()
    try:
        pid, user = alive.execute("SELECT pg_backend_pid(), current_user").fetchone()  # type: ignore[misc]
        _plant_lock(w, "a", f"busy-host:1:aaaa (session {pid} of {user})")
        with pytest.raises(LockBusy, match="busy-host"), w.lock("a", timeout=0.3):
            pass
    finally:
        alive.close()
    # another user's sessions may be invisible on Redshift: only the age can free its lock
    _plant_lock(w, "b", "other-host:1:bbbb (session 999999 of someone_else)")
    with pytest.raises(LockBusy, match="other-host"), w.lock("b", timeout=0.3):
        pass
    # and a holder that names no session (an older trackline) is judged by age alone
    _plant_lock(w, "c", "old-host:1:cccc")
    with pytest.raises(LockBusy, match="old-host"), w.lock("c", timeout=0.3):
        pass


def test_hard_kill_of_a_sync_then_the_next_run_goes_on(
    mysql_db: MySQLDb, pg_db: PgDb, s3: S3Endpoint, tmp_path: Path
) -> None:
    """`trackline sync` through the Redshift adapter killed by os._exit inside a batch (no
    rollback, no lock release): the next run is not blocked by the dead run's lock row, and
    ends with the same rows as an uninterrupted run."""
    import os
    import subprocess
    import sys

    import yaml

    _seed(mysql_db)
    cfg = _config(mysql_db, _compat(pg_db), s3.stage_config())
    data = cfg.model_dump(mode="json", by_alias=True)
    data["stage"]["access_key_id"] = s3.access_key_id
    data["stage"]["secret_access_key"] = s3.secret_access_key
    data["sources"]["kuaisong"]["password"] = ""
    path = tmp_path / "trackline.yml"
    path.write_text(yaml.safe_dump(data))
    exe = str(Path(sys.executable).with_name("trackline"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKLINE_")}
    killed = subprocess.run(
        [exe, "sync", "-c", str(path), "--log-format", "plain"],
        env={**env, "TRACKLINE_FAIL_AT": "sync.before_commit@2", "TRACKLINE_FAIL_MODE": "exit"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == 99, killed.stderr
    assert pg_db.query("SELECT COUNT(*) FROM trackline.locks") == [(1,)]  # left behind
    done = subprocess.run(
        [exe, "sync", "-c", str(path), "--log-format", "plain"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "taking it over" in done.stderr
    assert pg_db.query("SELECT COUNT(*) FROM trackline.locks") == [(0,)]

    # The uninterrupted run: the same source into a second database, in-process.
    ref_db = f"{pg_db.database}_ref"
    pg_db.execute(f'CREATE DATABASE "{ref_db}"')
    try:
        ref = _config(mysql_db, _compat(pg_db, database=ref_db), s3.stage_config(prefix="ref"))
        assert all(r.status == "ok" for r in sync(ref))
        with psycopg.connect(pg_db.dsn.replace(pg_db.database, ref_db)) as con:
            for table, order in (
                ("settlement_public.uni_tracking_info_raw", "id"),
                ("settlement_public.settlement_claim_detail", "ID"),  # (the column id)
                ("trackline.batches", "table_key, batch_id"),
            ):
                cols = "table_key, batch_id, row_count, checksum" if "batches" in table else "*"
                got = _rows(pg_db.query, table, order, cols)
                assert got == _rows(lambda q: con.execute(q).fetchall(), table, order, cols), table
    finally:
        pg_db.execute(f'DROP DATABASE IF EXISTS "{ref_db}" WITH (FORCE)')
    raw = _rows(pg_db.query, "settlement_public.uni_tracking_info_raw", "id", "id, order_id")
    assert raw == [
        tuple(r) for r in mysql_db.query("SELECT id, order_id FROM uni_tracking_info ORDER BY id")
    ]
    assert _rows(pg_db.query, "settlement_public.settlement_claim_detail", "ID", "ID, amount") == [
        (i, Decimal("12.3456") * i) for i in range(1, 31)
    ]


def test_maintenance_falls_back_to_analyze_without_svv_table_info(wh: Any) -> None:
    w = wh()
    _target(w, pa.table({"k": [1]}))
    assert w.maintenance("s", "t") == ['ANALYZE "s"."t"']
    assert any("svv_table_info" in n for n in w.notices)
    with pytest.raises(WarehouseError, match="inside a transaction"), w.transaction():
        w.maintenance("s", "t")


def test_without_the_stage_the_adapter_says_how_to_open_it(pg_db: PgDb) -> None:
    w = open_warehouse(_compat(pg_db))
    w.connect()
    try:
        w.ensure_schema("s")
        data = pa.table({"k": [1]})
        w.create_table("s", "t", [Column("k", pa.int64())])
        with pytest.raises(WarehouseError, match=r"stage=Stage\(cfg.stage\)"), w.transaction():
            w.append_arrow("s", "t", data)
    finally:
        w.close()


def test_sql_plan_for_a_mysql_source(mysql_db: MySQLDb, s3: S3Endpoint) -> None:
    """`trackline sql --engine redshift sync`: MySQL types become Redshift DDL, unconnected."""
    from trackline.sqlplan import render_plan

    _seed(mysql_db)
    cfg = _config(
        mysql_db,
        RedshiftWarehouse(host="redshift.invalid", user="etl", iam_role=ROLE),
        s3.stage_config(),
    )
    plan = render_plan(cfg, "sync")
    ddl = next(s for s in plan if '"uni_tracking_info_raw" (' in s and s.startswith("CREATE"))
    for column in (
        '"id" BIGINT,',  # INT UNSIGNED
        '"order_id" DECIMAL(20,0)',  # BIGINT UNSIGNED
        '"amount" DECIMAL(10,2)',
        '"is_cod" SMALLINT',
        '"pathtime" VARCHAR(65535)',  # TIME arrives as text; names stored lower case
        '"payload" VARBYTE(1024000)',
        '"update_time" TIMESTAMP',
    ):
        assert column in ddl, column
    assert ddl.endswith('DISTKEY("order_id") SORTKEY("update_time", "order_id")')
    # unsigned ids are cast when staged: COPY reads the staged manifest itself
    copy = next(s for s in plan if s.startswith('COPY "settlement_public"."uni_tracking_info_raw"'))
    assert "/_trackline_tmp/" not in copy and f"IAM_ROLE '{ROLE}'" in copy
    assert "/uni_tracking_info_raw/year=" in copy
    assert not s3.keys()  # nothing was written to the stage
