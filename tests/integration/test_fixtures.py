"""The shared fixtures themselves work: each gives a usable, isolated, cleaned-up resource."""

from __future__ import annotations

import duckdb
import psycopg
import pytest

from tests.conftest import (
    MySQLDb,
    PgDb,
    S3Endpoint,
    _mysql_admin,
    _mysql_host_port,
    _pg_host_port,
)
from trackline.config import DuckDBWarehouse, PostgresWarehouse


def _mysql_databases() -> set[str]:
    conn = _mysql_admin(*_mysql_host_port())
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE 'tl\\_%%'")
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def test_mysql_db_round_trip(mysql_db: MySQLDb) -> None:
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20), amount DECIMAL(10,2))")
    mysql_db.executemany(
        "INSERT INTO t VALUES (%s, %s, %s)", [(1, "a", "1.50"), (2, "b", None), (3, "c'", "0")]
    )
    assert mysql_db.query("SELECT COUNT(*) FROM t") == [(3,)]
    rows = mysql_db.query("SELECT id, name FROM t WHERE id >= %s ORDER BY id", (2,))
    assert rows == [(2, "b"), (3, "c'")]

    conn = mysql_db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT DATABASE(), COUNT(*) FROM t")
            assert cur.fetchone() == (mysql_db.database, 3)
    finally:
        conn.close()


def test_mysql_db_source_config(mysql_db: MySQLDb) -> None:
    cfg = mysql_db.source_config(innodb_hold=False)
    assert (cfg.host, cfg.port, cfg.user, cfg.database) == (
        mysql_db.host,
        mysql_db.port,
        mysql_db.user,
        mysql_db.database,
    )
    assert cfg.password.get_secret_value() == mysql_db.password
    assert cfg.innodb_hold is False


def test_mysql_db_starts_empty(mysql_db: MySQLDb) -> None:
    assert mysql_db.database.startswith("tl_") and len(mysql_db.database) == 11
    assert mysql_db.query("SHOW TABLES") == []
    assert mysql_db.database in _mysql_databases()


@pytest.mark.servers
def test_mysql_db_dropped_after_test(pytester: pytest.Pytester) -> None:
    """Run a tiny test session that uses mysql_db twice; both databases are gone after."""
    pytester.makeconftest("from tests.conftest import *  # noqa: F401,F403\n")
    pytester.makepyfile(
        """
        def test_a(mysql_db):
            print("DBNAME", mysql_db.database)

        def test_b(mysql_db):
            print("DBNAME", mysql_db.database)
        """
    )
    result = pytester.runpytest_inprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    names = [ln.split()[-1] for ln in result.outlines if "DBNAME" in ln]
    assert len(names) == 2 and names[0] != names[1]
    remaining = _mysql_databases()
    assert not set(names) & remaining


def test_pg_db_round_trip(pg_db: PgDb) -> None:
    assert pg_db.database.startswith("tl_")
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY, name text, ts timestamp)")
    pg_db.execute(
        "INSERT INTO t VALUES (%s, %s, %s), (%s, %s, %s)",
        (1, "a", "2024-01-01 00:00:00.123456", 2, "b'", None),
    )
    assert pg_db.query("SELECT count(*) FROM t") == [(2,)]
    assert pg_db.query("SELECT name FROM t WHERE id = %s", (2,)) == [("b'",)]
    assert pg_db.query("SELECT current_database()") == [(pg_db.database,)]

    with psycopg.connect(pg_db.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_pg_db_warehouse_config(pg_db: PgDb) -> None:
    cfg = pg_db.warehouse_config(lock_timeout_seconds=5)
    assert isinstance(cfg, PostgresWarehouse)
    assert (cfg.host, cfg.port, cfg.user, cfg.database) == (
        pg_db.host,
        pg_db.port,
        pg_db.user,
        pg_db.database,
    )
    assert cfg.lock_timeout_seconds == 5


@pytest.mark.servers
def test_pg_db_dropped_after_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from tests.conftest import *  # noqa: F401,F403\n")
    pytester.makepyfile(
        """
        def test_a(pg_db):
            pg_db.execute("CREATE TABLE t (id int)")
            print("DBNAME", pg_db.database)
        """
    )
    result = pytester.runpytest_inprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (name,) = [ln.split()[-1] for ln in result.outlines if "DBNAME" in ln]
    host, port = _pg_host_port()
    with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres") as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchall()
    assert found == []


def test_s3_put_get(s3: S3Endpoint) -> None:
    s3.client.put_object(Bucket=s3.bucket, Key="stage/a/part-0.parquet", Body=b"hello")
    got = s3.client.get_object(Bucket=s3.bucket, Key="stage/a/part-0.parquet")
    assert got["Body"].read() == b"hello"
    assert s3.keys("stage/") == ["stage/a/part-0.parquet"]
    assert s3.url("stage") == f"s3://{s3.bucket}/stage"


def test_s3_stage_config(s3: S3Endpoint) -> None:
    cfg = s3.stage_config()
    assert cfg.url == f"s3://{s3.bucket}/stage"
    assert cfg.endpoint_url == s3.endpoint_url
    assert cfg.region == "us-east-1"
    assert cfg.access_key_id is not None and cfg.secret_access_key is not None
    assert cfg.access_key_id.get_secret_value() == "testing"
    assert cfg.secret_access_key.get_secret_value() == "testing"
    assert "testing" not in repr(cfg)


def test_s3_buckets_are_fresh(s3: S3Endpoint) -> None:
    assert s3.keys() == []
    buckets = {b["Name"] for b in s3.client.list_buckets()["Buckets"]}
    # the fixture's earlier buckets were emptied and removed
    assert {b for b in buckets if b.startswith("tl-")} == {s3.bucket}


def test_duckdb_warehouse(duckdb_warehouse: DuckDBWarehouse) -> None:
    assert duckdb_warehouse.path.name == "wh.duckdb"
    assert not duckdb_warehouse.path.exists()
    with duckdb.connect(str(duckdb_warehouse.path)) as conn:
        conn.execute("CREATE TABLE t AS SELECT 42 AS x")
        assert conn.execute("SELECT x FROM t").fetchall() == [(42,)]


def test_warehouse_config_param(
    warehouse_config: DuckDBWarehouse | PostgresWarehouse, request: pytest.FixtureRequest
) -> None:
    engine = request.node.callspec.id
    assert warehouse_config.type == engine
    has_servers_mark = request.node.get_closest_marker("servers") is not None
    assert has_servers_mark == (engine == "postgres")
    if isinstance(warehouse_config, PostgresWarehouse):
        with psycopg.connect(
            host=warehouse_config.host,
            port=warehouse_config.port,
            user=warehouse_config.user,
            dbname=warehouse_config.database,
        ) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (
                warehouse_config.database,
            )


def test_server_fixtures_get_servers_marker(
    mysql_db: MySQLDb, request: pytest.FixtureRequest
) -> None:
    assert request.node.get_closest_marker("servers") is not None


def test_no_marker_without_server_fixtures(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("servers") is None
