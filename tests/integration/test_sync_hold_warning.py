"""A source user without the PROCESS privilege cannot see open transactions: the sync says
so once per run (not once or twice per table), and each table's result still records it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import SecretStr

from tests.conftest import MySQLDb
from tests.integration.synctools import (
    ORDERS_DDL,
    SOURCE,
    insert_orders,
    make_config,
    mysql_user,
    sync_ok,
    table,
)
from trackline.config import DuckDBWarehouse, PostgresWarehouse
from trackline.report import NullReporter


def test_missing_process_privilege_is_told_once_per_run(
    mysql_db: MySQLDb, warehouse_config: DuckDBWarehouse | PostgresWarehouse, tmp_path: Path
) -> None:
    for name in ("orders", "orders_b", "orders_c"):
        mysql_db.execute(ORDERS_DDL.replace("CREATE TABLE orders", f"CREATE TABLE {name}"))
    start = dt.datetime(2026, 1, 1)
    insert_orders(mysql_db, [start, start + dt.timedelta(seconds=1)])
    tables = [table("orders"), table("orders_b"), table("orders_c")]
    # database privileges only: PROCESS is global, so innodb_trx is out of reach
    with mysql_user(mysql_db, "pw") as user:
        cfg = make_config(mysql_db, warehouse_config, tmp_path / "stage", tables, hold=True)
        src = cfg.sources[SOURCE].model_copy(update={"user": user, "password": SecretStr("pw")})
        cfg = cfg.model_copy(update={"sources": {SOURCE: src}})
        reporter = NullReporter()
        results = sync_ok(cfg, reporter=reporter)
    told = [m for kind, m, _ in reporter.events if kind == "hold" and "PROCESS" in m]
    assert len(told) == 1, reporter.events
    assert "grant PROCESS" in told[0] and "innodb_hold: false" in told[0]
    for r in results:  # each table's own record keeps it
        assert any("PROCESS" in w for w in r.warnings), (r.table, r.warnings)
