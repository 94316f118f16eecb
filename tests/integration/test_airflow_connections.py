"""trackline's config naming Airflow connections (`airflow_conn_id:`), read by a real Airflow
(tests/airflow/venv.py) in its tasks: see docs/airflow.md, "Secrets"."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

from tests.conftest import MySQLDb, PgDb
from tests.integration.test_airflow import DDL, Airflow, _orders, _pipeline, _states, _write_config


def test_tasks_reach_mariadb_and_postgres_through_airflow_connections(
    airflow_venv: Path, tmp_path: Path, mysql_db: MySQLDb, pg_db: PgDb
) -> None:
    """The config names Airflow connections instead of giving hosts, users and passwords:
    the source an ``AIRFLOW_CONN_<ID>`` URI (a MariaDB user with a password that needs
    escaping), the warehouse one in JSON form (its database from the connection's schema:
    the default would be `postgres`). A cycle DAG run (one table, no marts: cheap) syncs
    through them; a config naming a
    connection that is not defined fails its task, naming the key and the id. The passwords
    are nowhere: not in the driver's output (the task logs), Airflow's metadata database
    (XComs, task instances) or the warehouse."""
    from urllib.parse import quote

    for ddl in DDL:
        mysql_db.execute(ddl)
    _orders(mysql_db, range(1, 6), mysql_db.query("SELECT NOW(6)")[0][0] - dt.timedelta(hours=1))
    secret = f"Af/p@ss:{os.urandom(4).hex()}%"
    user = f"tl_af_{os.urandom(3).hex()}"
    mysql_db.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, secret))
    try:
        mysql_db.execute(f"GRANT SELECT ON `{mysql_db.database}`.* TO %s@'%%'", (user,))
        data = _pipeline(tmp_path, mysql_db, pg_db, "conn_")
        data["tables"], data["marts"] = data["tables"][:1], []  # one sync task, then trim_raw
        data["sources"]["kuaisong"] = {
            "airflow_conn_id": "tl_source",
            "database": mysql_db.database,
            "innodb_hold": False,
        }
        data["warehouse"] = {"type": "postgres", "airflow_conn_id": "tl_warehouse"}
        missing = {**data, "state_schema": "miss_trackline"}
        missing["warehouse"] = {"type": "postgres", "airflow_conn_id": "tl_nowhere"}
        af = Airflow(airflow_venv, tmp_path / "af")
        af.dag_file("conn_dags", _write_config(tmp_path / "conn.yml", data))
        af.dag_file("missing_dags", _write_config(tmp_path / "missing.yml", missing))
        env = {
            "AIRFLOW_CONN_TL_SOURCE": (
                f"mysql://{user}:{quote(secret, safe='')}@{mysql_db.host}:{mysql_db.port}/"
                f"{mysql_db.database}"
            ),
            "AIRFLOW_CONN_TL_WAREHOUSE": json.dumps(
                {
                    "conn_type": "postgres",
                    "host": pg_db.host,
                    "port": pg_db.port,
                    "login": pg_db.user,
                    "password": "pg-" + secret,  # trust auth: accepted, never checked
                    "schema": pg_db.database,
                }
            ),
        }
        time.sleep(1.1)  # the upper bound is the server's NOW() (lag 0): let it pass the writes
        _, cycle, checks = af.run(
            [
                {"op": "pools", "pools": {"conn_trackline_kuaisong": 2}},
                {"op": "test", "dag": "conn_trackline_cycle"},
                {"op": "test", "dag": "miss_trackline_checks"},
            ],
            env,
        )
    finally:
        mysql_db.execute("DROP USER IF EXISTS %s@'%%'", (user,))
    assert _states(cycle) == {"sync_uni_tracking_info": "success", "trim_raw": "success"}, cycle
    assert pg_db.query("SELECT COUNT(*) FROM conn_raw.uni_tracking_info_raw")[0][0] == 5
    # the missing connection: the task fails at once (a config error: no retry), naming both
    assert _states(checks) == {"checks": "failed"} and checks["tasks"]["checks"][1] == 1, checks
    assert (
        "warehouse.airflow_conn_id: the Airflow connection 'tl_nowhere' is not defined" in af.output
    ), af.output[-3000:]
    leaks = [secret, quote(secret, safe=""), "pg-" + secret]
    texts = {"driver output": af.output}
    for f in sorted(af.home.rglob("*")):  # the metadata database, task logs, anything
        if f.is_file():
            texts[str(f)] = f.read_bytes().decode("utf-8", "replace")
    for schema, table in pg_db.query(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema LIKE 'conn_%' OR table_schema LIKE 'miss_%'"
    ):
        rows = pg_db.query(f'SELECT t::text FROM "{schema}"."{table}" t')
        texts[f"{schema}.{table}"] = "\n".join(r[0] for r in rows)
    assert "conn_trackline.runs" in texts  # the state tables were scanned too
    for where, text in texts.items():
        for leak in leaks:
            assert leak not in text, f"a password is in {where}"
