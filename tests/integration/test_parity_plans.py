"""`trackline sql cycle` and `trackline sql follow` for a config with both fixes on: the
printed statements obey Redshift's rules (the session's recorder checks every one) and, as
compat mode sends them, run in order on PostgreSQL after the cycle's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import MySQLDb, PgDb
from tests.integration.parity_world import DDL, config_data
from tests.integration.test_sql_plans_run import run_script
from trackline.config import Config, RedshiftWarehouse
from trackline.load.redshift import Redshift
from trackline.sqlplan import plan_statements, render_plan

pytestmark = pytest.mark.servers


@pytest.mark.parametrize("spath", ["newest", "follow"])
def test_follow_and_changing_events_plans_run_on_compat(
    tmp_path: Path, pg_db: PgDb, mysql_db: MySQLDb, spath: str
) -> None:
    for ddl in DDL:
        mysql_db.execute(ddl)
    wh = RedshiftWarehouse(**pg_db.redshift_compat())
    cfg = Config.model_validate(config_data(mysql_db, wh, tmp_path / "stage", spath=spath))
    follow = render_plan(cfg, "follow")
    assert any(
        s.startswith('SELECT DISTINCT "order_id" FROM "raw"."uni_tracking_info_raw"')
        for s in follow
    ), follow
    assert any("mart_progress" in s and s.startswith("INSERT") for s in follow)
    cycle = render_plan(cfg, "cycle")
    if spath == "follow":  # the re-read keys' events replace the mart's
        assert any(s.startswith('CREATE TEMPORARY TABLE "_tl_fk_') for s in cycle)
    else:  # newest: superseded copies leave history and the mart
        assert any(
            s.startswith('DELETE FROM "mart"."hist_uts_') and "time_modified" not in s
            for s in cycle
        )
    # the one_per_key follower replaces changed rows (NULL-safe comparison)
    assert any(
        s.startswith('INSERT INTO "_tl_chg_')
        and 'FROM "mart"."mart_ecs_order_info" t' in s
        and '"consignee" <> ' in s
        for s in cycle
    )
    rs = Redshift(wh)
    rs.connect()
    try:
        for schema in ("trackline", "raw", "mart"):
            rs.execute(f"DROP SCHEMA IF EXISTS {rs.q(schema)} CASCADE")
        assert run_script(rs, plan_statements(cfg, "cycle", compat=True)) > 0
        assert run_script(rs, plan_statements(cfg, "follow", compat=True)) > 0
        assert not rs.in_transaction
    finally:
        rs.close()
