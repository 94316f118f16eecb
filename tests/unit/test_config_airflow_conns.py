"""`airflow_conn_id:`: a section's connection values from an Airflow connection, read only
through the lookup trackline.airflow installs in its tasks (here a plain dict stands in for
Airflow: the real Airflow reads them in tests/integration/test_airflow_connections.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from trackline.config import (
    MySQLSource,
    PostgresWarehouse,
    RedshiftWarehouse,
    ScheduleConfig,
    parse_config,
)
from trackline.errors import ConfigError
from trackline.extract import open_source
from trackline.load import open_warehouse
from trackline.stage import Stage

PW = "Af-conn-pw-8c1e"
S3_SECRET = "s3-conn-secret-77b2"

TEXT = """\
sources:
  kuaisong:
    airflow_conn_id: ks_mysql
    database: kuaisong
  demo:
    type: sqlite
    path: demo.db
warehouse:
  type: postgres
  airflow_conn_id: tl_wh
  port: 6543
stage:
  url: s3://bucket/prefix
  airflow_conn_id: tl_s3
tables:
  - name: orders
    source: kuaisong
    cdc: {strategy: id, id: id}
"""

CONNS: dict[str, Mapping[str, Any]] = {
    "ks_mysql": {
        "host": "mysql.internal",
        "port": 3307,
        "login": "etl",
        "password": PW,
        "schema": "other_db",
        "extra": {},
    },
    "tl_wh": {
        "host": "pg.internal",
        "port": 5432,
        "login": "loader",
        "password": "wh-" + PW,
        "schema": "analytics",
        "extra": {},
    },
    "tl_s3": {
        "host": None,
        "port": None,
        "login": "AKIAEXAMPLE",
        "password": S3_SECRET,
        "schema": None,
        "extra": {"region_name": "eu-west-1", "endpoint_url": "http://minio:9000"},
    },
}


def lookup(conn_id: str) -> Mapping[str, Any] | None:
    return CONNS.get(conn_id)


def error(text: str, connections: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="cfg.yml", connections=connections)
    message = str(info.value)
    for secret in (PW, S3_SECRET):
        assert secret not in message
    return message


def test_sections_take_their_values_from_the_connection_and_their_own_keys_win() -> None:
    cfg = parse_config(TEXT, connections=lookup)
    src = cfg.sources["kuaisong"]
    assert isinstance(src, MySQLSource)
    assert (src.host, src.port, src.user) == ("mysql.internal", 3307, "etl")
    assert src.password.get_secret_value() == PW
    assert src.database == "kuaisong"  # a source's database is always the file's
    assert src.airflow_conn_id is None  # read: nothing left to resolve
    wh = cfg.warehouse
    assert isinstance(wh, PostgresWarehouse)
    assert (wh.host, wh.port, wh.user, wh.database) == ("pg.internal", 6543, "loader", "analytics")
    assert wh.password.get_secret_value() == "wh-" + PW
    st = cfg.stage
    assert st.access_key_id is not None and st.secret_access_key is not None
    assert st.access_key_id.get_secret_value() == "AKIAEXAMPLE"
    assert st.secret_access_key.get_secret_value() == S3_SECRET
    assert (st.region, st.endpoint_url) == ("eu-west-1", "http://minio:9000")
    assert PW not in repr(cfg) and S3_SECRET not in repr(cfg)


def test_redshift_and_an_empty_password_in_the_file() -> None:
    text = """\
sources:
  ks: {database: ks}
warehouse:
  type: redshift
  airflow_conn_id: rs
  password: ${TL_AF_UNSET_PW:-}
  iam_role: arn:aws:iam::1:role/r
tables:
  - name: orders
    cdc: {strategy: id, id: id}
"""
    cfg = parse_config(text, connections={"rs": CONNS["tl_wh"]}.get)
    wh = cfg.warehouse
    assert isinstance(wh, RedshiftWarehouse)
    assert wh.host == "pg.internal" and wh.database == "analytics"
    assert wh.password.get_secret_value() == "wh-" + PW  # an empty value does not win


def test_outside_airflow_the_key_is_refused_naming_it_and_its_line() -> None:
    message = error(TEXT, None)
    assert "cfg.yml:3: sources.kuaisong.airflow_conn_id: 'ks_mysql' is an Airflow connection" in (
        message
    )
    assert "cfg.yml:10: warehouse.airflow_conn_id: 'tl_wh'" in message
    assert "cfg.yml:14: stage.airflow_conn_id: 'tl_s3'" in message
    assert "password" in message  # what to give instead


def test_a_missing_connection_names_the_key_the_id_and_its_variable() -> None:
    message = error(TEXT, {"ks_mysql": CONNS["ks_mysql"], "tl_s3": CONNS["tl_s3"]}.get)
    assert message == (
        "cfg.yml:10: warehouse.airflow_conn_id: the Airflow connection 'tl_wh' is not defined"
        " (define it in the Airflow UI, with `airflow connections add tl_wh …`, or as the"
        " environment variable AIRFLOW_CONN_TL_WH on the workers)"
    )


def test_a_bad_value_from_a_connection_is_reported_without_its_secrets() -> None:
    conns = {**CONNS, "ks_mysql": {**CONNS["ks_mysql"], "port": PW}}  # a password for a port
    message = error(TEXT, conns.get)
    assert "sources.kuaisong.port" in message


def test_deferred_keeps_the_id_and_opening_a_connection_then_is_refused(tmp_path: Any) -> None:
    cfg = parse_config(TEXT, connections="defer")
    wh, src = cfg.warehouse, cfg.sources["kuaisong"]
    assert isinstance(wh, PostgresWarehouse) and isinstance(src, MySQLSource)
    assert wh.airflow_conn_id == "tl_wh" and src.airflow_conn_id == "ks_mysql"
    with pytest.raises(ConfigError, match=r"warehouse\.airflow_conn_id: the Airflow conn"):
        open_warehouse(wh)
    with pytest.raises(ConfigError, match=r"source\.airflow_conn_id: the Airflow connection"):
        open_source(src)
    with pytest.raises(ConfigError, match=r"stage\.airflow_conn_id: the Airflow connection"):
        Stage(cfg.stage)


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ("warehouse: {type: duckdb, airflow_conn_id: x}", "warehouse.airflow_conn_id"),
        ("sources: {s: {type: sqlite, path: a.db, airflow_conn_id: x}}", "sources.s"),
    ],
)
def test_types_without_credentials_have_no_connection(section: str, where: str) -> None:
    base = "tables:\n  - name: orders\n    cdc: {strategy: id, id: id}\n"
    if not section.startswith("sources"):
        base += "sources: {ks: {database: ks}}\n"
    message = error(section + "\n" + base, lookup)
    assert where in message and "unknown key" in message


def test_lock_wait_defaults_to_half_the_task_time_limit_and_must_fit_in_it() -> None:
    assert ScheduleConfig().lock_wait() == 3600  # job_timeout_minutes 120
    assert ScheduleConfig(job_timeout_minutes=0).lock_wait() == 1800
    assert ScheduleConfig(lock_wait_seconds=0).lock_wait() == 0
    text = "sources: {ks: {database: ks}}\nschedule:\n  job_timeout_minutes: 10\n"
    text += "  lock_wait_seconds: 600\n"
    message = error(text, None)
    assert "cfg.yml:4: schedule.lock_wait_seconds: must be shorter than the task time" in message
