"""Shared fixtures: real MariaDB / PostgreSQL databases, an S3 endpoint, warehouse configs.

Server fixtures (`mysql_db`, `pg_db`, `s3`) give every test its own fresh database or bucket
and remove it afterwards, so tests can run in parallel (pytest-xdist) against one server.
A test that uses one of them is marked `servers` automatically.

When MariaDB or PostgreSQL is not reachable the fixtures try once to start it, then wait up
to ~20 s. If it is still down, the test is skipped with a loud reason -- except under
``CI=true``, where it fails: CI must never pass by skipping the server tier.

Environment overrides: ``TRACKLINE_TEST_MYSQL_HOST`` / ``TRACKLINE_TEST_MYSQL_PORT`` and
``TRACKLINE_TEST_PG_HOST`` / ``TRACKLINE_TEST_PG_PORT``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

try:
    import trackline  # noqa: F401
except ModuleNotFoundError:  # not installed into the venv: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import boto3
import psycopg
import pymysql
from pydantic import SecretStr

from trackline.config import DuckDBWarehouse, MySQLSource, PostgresWarehouse, StageConfig

pytest_plugins = ["pytester"]

SERVER_FIXTURES = frozenset({"mysql_db", "pg_db", "s3"})
START_WAIT_SECONDS = 20.0
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; repeated so the fixtures work in a bare session.
    config.addinivalue_line("markers", "servers: needs the real MariaDB / PostgreSQL / S3 endpoint")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _unique_name() -> str:
    return f"tl_{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- server start


@dataclass
class _Server:
    """How to reach one kind of server, and how to start it if it is down."""

    label: str
    host: str
    port: int
    probe: Callable[[], None]
    start_command: str


# Per process (each xdist worker checks on its own): label -> None when up, else the reason.
_SERVER_STATUS: dict[str, str | None] = {}


def _try_probe(server: _Server) -> str | None:
    try:
        server.probe()
    except Exception as exc:  # any failure to connect means "not reachable"
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_server(server: _Server) -> str | None:
    problem = _try_probe(server)
    if problem is None:
        return None
    if server.host not in LOCAL_HOSTS:
        return f"{problem} (not started: {server.host} is not this machine)"
    try:
        subprocess.run(
            server.start_command,
            shell=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{problem}; starting it with `{server.start_command}` failed: {exc}"
    deadline = time.monotonic() + START_WAIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.5)
        problem = _try_probe(server)
        if problem is None:
            return None
    return f"{problem}; still unreachable {START_WAIT_SECONDS:.0f} s after `{server.start_command}`"


def _require_server(server: _Server) -> None:
    """Skip (or, under CI=true, fail) the test when the server cannot be reached."""
    if server.label not in _SERVER_STATUS:
        _SERVER_STATUS[server.label] = _check_server(server)
    problem = _SERVER_STATUS[server.label]
    if problem is None:
        return
    message = f"{server.label} at {server.host}:{server.port} is NOT REACHABLE: {problem}"
    if _in_ci():
        pytest.fail(f"{message} (CI=true: the server tier must run, never skip)", pytrace=False)
    pytest.skip(f"!!! SKIPPED, NO SERVER !!! {message}")


# --------------------------------------------------------------------------- MariaDB


def _mysql_host_port() -> tuple[str, int]:
    return (
        os.environ.get("TRACKLINE_TEST_MYSQL_HOST", "127.0.0.1"),
        int(os.environ.get("TRACKLINE_TEST_MYSQL_PORT", "3306")),
    )


MYSQL_USER = "root"
MYSQL_PASSWORD = ""


def _mysql_admin(host: str, port: int, **kwargs: Any) -> pymysql.Connection:
    return pymysql.connect(
        host=host,
        port=port,
        user=MYSQL_USER,
        password=MYSQL_PASSWORD,
        autocommit=True,
        connect_timeout=3,
        **kwargs,
    )


def _mysql_server() -> _Server:
    host, port = _mysql_host_port()

    def probe() -> None:
        _mysql_admin(host, port).close()

    return _Server(
        label="MariaDB",
        host=host,
        port=port,
        probe=probe,
        start_command="start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    )


@dataclass
class MySQLDb:
    """A fresh database on the test MariaDB server, dropped after the test."""

    host: str
    port: int
    user: str
    password: str
    database: str
    _conn: pymysql.Connection | None = field(default=None, repr=False)

    def connect(self) -> pymysql.Connection:
        """A new autocommit connection to this database; the caller closes it."""
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=self.database,
            autocommit=True,
            charset="utf8mb4",
        )

    @property
    def conn(self) -> pymysql.Connection:
        if self._conn is None:
            self._conn = self.connect()
        return self._conn

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> int:
        """Run one statement (autocommit); returns the affected row count."""
        with self.conn.cursor() as cur:
            return cur.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any] | dict[str, Any]]) -> int:
        with self.conn.cursor() as cur:
            return cur.executemany(sql, rows) or 0

    def query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def source_dict(self, **overrides: Any) -> dict[str, Any]:
        """This database as a `sources:` entry of a config written as data (the InnoDB hold
        off: tests share one server, and another test's open transaction would hold it)."""
        return {
            "type": "mysql",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "innodb_hold": False,
            **overrides,
        }

    def source_config(self, **overrides: Any) -> MySQLSource:
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": SecretStr(self.password),
            "database": self.database,
        }
        values.update(overrides)
        return MySQLSource(**values)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def _mysql_drop(host: str, port: int, name: str) -> None:
    admin = _mysql_admin(host, port)
    try:
        with admin.cursor() as cur:
            # Connections a test left open would block DROP on metadata locks: end them.
            cur.execute(
                "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> "
                "CONNECTION_ID()",
                (name,),
            )
            for (thread_id,) in cur.fetchall():
                with contextlib.suppress(pymysql.MySQLError):
                    cur.execute(f"KILL {int(thread_id)}")
            cur.execute("SET SESSION lock_wait_timeout = 30")
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        admin.close()


@pytest.fixture
def hold_serial() -> Iterator[None]:
    """The InnoDB hold is server-wide: tests that keep transactions open run one at a time
    (across xdist workers too), or one's open transaction would hold the other's bound.
    (While one runs, a second on the other worker waits here. xdist's `--dist loadgroup`
    would put them on one worker, but xdist 3.8 names a test's group by rewriting
    `item._nodeid`, which pytest 9 no longer reads: the grouping has no effect here.)"""
    path = Path(tempfile.gettempdir()) / "trackline-tests-innodb-hold.lock"
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture
def mysql_db() -> Iterator[MySQLDb]:
    server = _mysql_server()
    _require_server(server)
    name = _unique_name()
    admin = _mysql_admin(server.host, server.port)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        admin.close()
    db = MySQLDb(
        host=server.host,
        port=server.port,
        user=MYSQL_USER,
        password=MYSQL_PASSWORD,
        database=name,
    )
    try:
        yield db
    finally:
        db.close()
        _mysql_drop(server.host, server.port, name)


# --------------------------------------------------------------------------- PostgreSQL


def _pg_host_port() -> tuple[str, int]:
    return (
        os.environ.get("TRACKLINE_TEST_PG_HOST", "127.0.0.1"),
        int(os.environ.get("TRACKLINE_TEST_PG_PORT", "5432")),
    )


PG_USER = "postgres"


def _pg_connect(host: str, port: int, dbname: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=host, port=port, user=PG_USER, dbname=dbname, autocommit=True, connect_timeout=3
    )


def _pg_server() -> _Server:
    host, port = _pg_host_port()

    def probe() -> None:
        _pg_connect(host, port, "postgres").close()

    return _Server(
        label="PostgreSQL",
        host=host,
        port=port,
        probe=probe,
        start_command=(
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | sort -V | tail -n1)"
            " main start"
        ),
    )


REDSHIFT_TEST_ROLE = "arn:aws:iam::123456789012:role/trackline-test"


@dataclass
class PgDb:
    """A fresh database on the test PostgreSQL server, dropped after the test."""

    host: str
    port: int
    user: str
    database: str
    _conn: psycopg.Connection[Any] | None = field(default=None, repr=False)

    @property
    def dsn(self) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={self.database}"

    def connect(self) -> psycopg.Connection[Any]:
        """A new autocommit connection to this database; the caller closes it."""
        return psycopg.connect(self.dsn, autocommit=True)

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            self._conn = self.connect()
        return self._conn

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> int:
        """Run one statement (autocommit); returns the affected row count."""
        with self.conn.cursor() as cur:
            cur.execute(sql, params)  # type: ignore[arg-type]
            return cur.rowcount

    def query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)  # type: ignore[arg-type]
            return list(cur.fetchall())

    def warehouse_config(self, **overrides: Any) -> PostgresWarehouse:
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "database": self.database,
        }
        values.update(overrides)
        return PostgresWarehouse(**values)

    def redshift_compat(self, **overrides: Any) -> dict[str, Any]:
        """A Redshift warehouse config (as data) that runs against this database in
        ``compat_postgres`` mode."""
        return {
            "type": "redshift",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "database": self.database,
            "iam_role": REDSHIFT_TEST_ROLE,
            "compat_postgres": True,
            **overrides,
        }

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


@pytest.fixture
def pg_db() -> Iterator[PgDb]:
    server = _pg_server()
    _require_server(server)
    name = _unique_name()
    with _pg_connect(server.host, server.port, "postgres") as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    db = PgDb(host=server.host, port=server.port, user=PG_USER, database=name)
    try:
        yield db
    finally:
        db.close()
        with _pg_connect(server.host, server.port, "postgres") as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- S3 (moto)

S3_REGION = "us-east-1"
S3_KEY_ID = "testing"
S3_SECRET = "testing"


@dataclass
class S3Endpoint:
    """A fresh bucket on the session's moto S3 server, emptied and removed after the test."""

    endpoint_url: str
    bucket: str
    client: Any = field(repr=False)
    region: str = S3_REGION
    access_key_id: str = S3_KEY_ID
    secret_access_key: str = S3_SECRET

    def url(self, prefix: str = "") -> str:
        prefix = prefix.strip("/")
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"

    def stage_config(self, prefix: str = "stage", **overrides: Any) -> StageConfig:
        values: dict[str, Any] = {
            "url": self.url(prefix),
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "access_key_id": SecretStr(self.access_key_id),
            "secret_access_key": SecretStr(self.secret_access_key),
        }
        values.update(overrides)
        return StageConfig(**values)

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under `prefix`, sorted."""
        out: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            out.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(out)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One in-process moto server for the whole session; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Endpoint]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", S3_REGION)
    monkeypatch.setenv("AWS_REGION", S3_REGION)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name=S3_REGION,
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
    )
    bucket = f"tl-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    endpoint = S3Endpoint(endpoint_url=moto_server, bucket=bucket, client=client)
    try:
        yield endpoint
    finally:
        try:
            keys = endpoint.keys()
            for start in range(0, len(keys), 1000):
                client.delete_objects(
                    Bucket=bucket,
                    Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]]},
                )
            client.delete_bucket(Bucket=bucket)
        finally:
            client.close()


# --------------------------------------------------------------------------- warehouses


@pytest.fixture
def duckdb_warehouse(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(path=tmp_path / "wh.duckdb")


@pytest.fixture(
    params=[
        pytest.param("duckdb", id="duckdb"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.servers),
    ]
)
def warehouse_config(
    request: pytest.FixtureRequest, tmp_path: Path
) -> DuckDBWarehouse | PostgresWarehouse:
    """The same test once per warehouse engine, each on a fresh database."""
    if request.param == "duckdb":
        return DuckDBWarehouse(path=tmp_path / "wh.duckdb")
    pg: PgDb = request.getfixturevalue("pg_db")
    return pg.warehouse_config()


@pytest.fixture(scope="session", autouse=True)
def redshift_statements() -> Iterator[Any]:
    """Check every statement the compat-mode Redshift adapter sent during the session against
    what Redshift accepts (tests/redshift_recorder.py); any finding fails the run."""
    from tests.redshift_recorder import recording

    with recording() as statements:
        yield statements
    bad = statements.problems()
    if bad:
        lines = [
            f"- {sql}\n    {'; '.join(why)} (first sent by {test})"
            for sql, (test, why) in bad.items()
        ]
        pytest.fail(
            f"{len(bad)} statement(s) sent in Redshift compat mode would be refused by Redshift:\n"
            + "\n".join(lines),
            pytrace=False,
        )
