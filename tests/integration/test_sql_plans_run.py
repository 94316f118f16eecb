"""The scripts `trackline sql --engine redshift <command>` prints run as printed.

Each command's plan is recorded twice: as printed (Redshift) and as the adapter sends it in
compat mode. The two differ only where compat mode is documented to differ (DISTKEY/SORTKEY,
``WITH NO SCHEMA BINDING``, row estimates), and the compat statements then run, with
their recorded parameters, on the real PostgreSQL server, from an empty database:
``state``, ``sync`` and ``cycle`` each on an empty database (a first run), and the commands
planned as right after a first cycle (``check``, ``reconcile``, ``replay``, ``reset``,
``maintenance``, ``migrate``) after the cycle's script. As in the other compat tests, the S3
COPY is not run (nothing was staged) and neither are reads of Redshift's system views
(``svv_table_info``).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import PgDb
from trackline.config import Config, RedshiftWarehouse
from trackline.load.redshift import Redshift
from trackline.sqlplan import PLANS, Statement, plan_statements, render_plan

pytestmark = pytest.mark.servers

PUB, ODS = "settlement_public", "settlement_ods"
FIRST_RUN = ("state", "sync", "cycle")


def _source(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE uni_tracking_info (id INTEGER PRIMARY KEY, order_id INTEGER,
            status TEXT, update_time DATETIME);
        CREATE TABLE uni_tracking_spath (id INTEGER PRIMARY KEY, order_id INTEGER,
            code TEXT, pathTime DATETIME);
        CREATE TABLE ecs_order_info (id INTEGER PRIMARY KEY, order_id INTEGER,
            partner_id INTEGER, add_time DATETIME);
        CREATE TABLE settlement_claim_detail (ID INTEGER PRIMARY KEY, amount REAL,
            update_at DATETIME);
        CREATE TABLE partner (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE uni_tracking_addon_spath (id INTEGER PRIMARY KEY, order_id INTEGER,
            code TEXT, pathTime DATETIME);
        """
    )
    con.close()
    return path


def plan_config(tmp_path: Path, warehouse: dict[str, Any], stage: str) -> Config:
    db = _source(tmp_path / "src.db")
    return Config.model_validate(
        {
            "sources": {"kuaisong": {"type": "sqlite", "path": str(db)}},
            "warehouse": warehouse,
            "stage": {"url": stage},
            "tables": [
                {"name": "uni_tracking_info", "target_schema": PUB, "dist_key": "order_id",
                 "cdc": {"strategy": "hybrid", "cursor": "update_time", "id": "id"}},
                {"name": "uni_tracking_spath", "target_schema": PUB, "dist_key": "order_id",
                 "cdc": {"strategy": "id", "id": "id"}, "sort_key": ["pathTime", "order_id"]},
                {"name": "ecs_order_info", "target_schema": PUB, "dist_key": "order_id",
                 "cdc": {"strategy": "hybrid", "cursor": "add_time", "id": "id"}},
                {"name": "settlement_claim_detail", "target_schema": PUB,
                 "cdc": {"strategy": "hybrid", "cursor": "update_at", "id": "ID"},
                 "write_mode": "merge", "primary_key": ["ID"]},
                {"name": "partner", "target_schema": PUB, "cdc": {"strategy": "full"}},
            ],
            "marts": [
                {"name": "order_tracking", "followers": [
                    {"table": "mart_ecs_order_info", "source": "ecs_order_info",
                     "kind": "one_per_key", "history_name": "ecs", "time": "add_time"},
                    {"table": "mart_uni_tracking_spath", "source": "uni_tracking_spath",
                     "kind": "events", "time": "pathTime", "event_key": ["id"],
                     "history_name": "uts"},
                ]}
            ],
            "consolidations": [
                {"name": "parcel_detail", "target_schema": PUB, "dist_key": "order_id",
                 "key": ["source_kind", "event_id"],
                 "inputs": [
                     {"name": kind, "constants": {"source_kind": kind},
                      "query": "SELECT e.id AS event_id, e.order_id, u.status, e.code, "
                      f"e.pathTime FROM {events} e LEFT JOIN uni_tracking_info u "
                      "ON u.order_id = e.order_id",
                      "cdc": {"cursor": "pathTime", "id": "event_id"}}
                     for kind, events in (("spath", "uni_tracking_spath"),
                                          ("addon", "uni_tracking_addon_spath"))
                 ]},
            ],
        }
    )  # fmt: skip


ROW_ESTIMATE = re.compile(r'SELECT (COUNT\(\*\) FROM "\w+"\."\w+"|estimated_visible_rows, .*)$')
"""Rows for reports: svv_table_info on Redshift, COUNT(*) in compat mode (both left out)."""


def as_compat_sends(printed: str) -> str | None:
    """A printed statement as compat mode sends it (None: compat sends nothing for it)."""
    if ROW_ESTIMATE.match(printed):
        return None
    out = re.sub(r' (DISTKEY|SORTKEY)\((("[^"]*"(, )?)+)\)', "", printed)
    return _stable(out.replace(" WITH NO SCHEMA BINDING", ""))


def _stable(sql: str) -> str:
    return re.sub(r"_\d{8}_\d{6}_", "_<time>_", sql)  # staged file names carry the clock


NEXT_ID = re.compile(r"SELECT COALESCE\(MAX\(id\), 0\) FROM (\S+)$")


def run_script(wh: Redshift, statements: list[Statement]) -> int:
    """Run the statements in order with their recorded parameters. The one parameter a run
    computes from an answer, the next exception id (`MAX(id)` + n, recorded as 0 + n), is
    computed from this database's answer, as the run would."""
    ran, max_id = 0, {}
    for s in statements:
        if s.sql.startswith("COPY ") or "svv_table_info" in s.sql:
            continue
        params = s.params
        if m := NEXT_ID.match(s.sql):
            max_id[m.group(1)] = int(wh.scalar(s.sql, params))
        for table, top in max_id.items():
            if s.sql.startswith(f"INSERT INTO {table} (id,"):
                params = (params[0] + top, *params[1:])
        wh.execute(s.sql, params)
        ran += 1
    return ran


def empty(wh: Redshift, cfg: Config) -> None:
    for schema in (cfg.state_schema, PUB, ODS):
        wh.execute(f"DROP SCHEMA IF EXISTS {wh.q(schema)} CASCADE")


@pytest.fixture
def cfg(tmp_path: Path, pg_db: PgDb) -> Config:
    return plan_config(tmp_path, pg_db.redshift_compat(), "s3://tl-stage/prod")


@pytest.fixture
def compat(cfg: Config) -> Any:
    assert isinstance(cfg.warehouse, RedshiftWarehouse)
    wh = Redshift(cfg.warehouse)
    wh.connect()
    yield wh
    wh.close()


def test_every_warehouse_command_has_a_plan() -> None:
    assert list(PLANS) == [
        "state", "sync", "cycle", "check", "reconcile", "replay", "reset", "maintenance",
        "migrate", "drift", "consolidate", "compare", "backfill", "follow",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "command",
    # compare and backfill need a legacy DW; follow a following table (test_parity_plans.py)
    [c for c in PLANS if c not in ("compare", "backfill", "follow")],
)
def test_printed_script_runs_on_postgresql_in_order(
    cfg: Config, compat: Redshift, command: str
) -> None:
    printed = render_plan(cfg, command)
    sent = plan_statements(cfg, command, compat=True)
    assert [s for p in printed if (s := as_compat_sends(p)) is not None] == [
        _stable(s.sql) for s in sent if not ROW_ESTIMATE.match(s.sql)
    ]
    empty(compat, cfg)
    if command not in FIRST_RUN:
        run_script(compat, plan_statements(cfg, "cycle", compat=True))
    assert run_script(compat, sent) > 0
    assert not compat.in_transaction


def test_history_periods_are_created_before_any_statement_reads_them(cfg: Config) -> None:
    """The plan's period tables (hist_uti, hist_ecs, hist_uts) appear in a CREATE TABLE before
    any other statement names them."""
    printed = render_plan(cfg, "cycle")
    names = {m for s in printed for m in re.findall(r'"(hist_\w+_\d{4}_h[12])"', s)}
    assert {n.split("_")[1] for n in names} == {"uti", "ecs", "uts"}
    for name in names:
        first = next(s for s in printed if f'"{name}"' in s)
        assert first.startswith("CREATE TABLE IF NOT EXISTS"), (name, first)


def test_the_plans_of_the_commands_after_a_cycle_show_their_work(cfg: Config) -> None:
    claims = f'"{PUB}"."settlement_claim_detail"'
    reconcile = render_plan(cfg, "reconcile")
    assert any(s.startswith("SELECT COUNT(*), SUM(") and claims in s for s in reconcile)
    assert f'DELETE FROM {claims} WHERE "id" IN (?)' in reconcile
    replay = render_plan(cfg, "replay", ["uni_tracking_info"])
    assert any(s.startswith(f'COPY "{PUB}"."uni_tracking_info_raw"') for s in replay)
    assert f'DELETE FROM "{PUB}"."uni_tracking_info_raw" WHERE "_tl_batch_id" = ?' in replay
    reset = render_plan(cfg, "reset", ["partner"])
    assert f'DELETE FROM "{PUB}"."partner"' in reset
    assert not any("uni_tracking_info" in s for s in reset)
    maintenance = render_plan(cfg, "maintenance")
    assert f'VACUUM "{ODS}"."mart_uni_tracking_info"' in maintenance
    assert any(s.startswith(f'ANALYZE "{ODS}"."hist_uts_') for s in maintenance)
    check = render_plan(cfg, "check")
    assert any(s.startswith('INSERT INTO "trackline"."check_results"') for s in check)
    assert "ROLLBACK" not in check  # no check errored in the plan
    # runs.behind_watermark: the target side of its counts, for a merge and an append table
    assert any(
        s.startswith(f'SELECT COUNT(*) FROM {claims} WHERE "update_at" >= ?') for s in check
    ), check
    assert any(s.startswith('SELECT COUNT(*) FROM (SELECT "id", MAX("update_time")') for s in check)
    assert any(s.startswith(f'SELECT COUNT(*) FROM {claims} WHERE "id" IN (?)') for s in check)


def test_sql_command_says_on_stderr_when_it_used_placeholders(tmp_path: Path) -> None:
    import yaml

    from trackline.cli import main

    local = plan_config(tmp_path, {"type": "duckdb", "path": str(tmp_path / "w.duckdb")}, "st")
    path = tmp_path / "local.yml"
    path.write_text(yaml.safe_dump(local.model_dump(mode="json", by_alias=True)))
    result = CliRunner().invoke(main, ["sql", "-c", str(path), "sync", "partner"])
    assert result.exit_code == 0, result.output
    assert "placeholder role" in result.stderr and "--iam-role" in result.stderr
    assert "placeholder s3://your-stage-bucket/trackline" in result.stderr
    assert "placeholder" not in result.stdout
    assert "COPY" in result.stdout and "uni_tracking_info" not in result.stdout

    given = CliRunner().invoke(
        main,
        ["sql", "-c", str(path), "--iam-role", "arn:aws:iam::123456789012:role/r",
         "--stage-url", "s3://tl-bucket/prefix", "sync"],
    )  # fmt: skip
    assert given.exit_code == 0, given.output
    assert given.stderr == ""


def test_the_migrate_plan_rebuilds_raw_marts_periods_in_one_transaction(cfg: Config) -> None:
    """`trackline sql --engine redshift migrate uni_tracking_info`: raw, the departures list,
    the anchor mart and its period are each copied into a new table and swapped in, the view
    dropped and created, the new schema recorded: all between one BEGIN and its COMMIT."""
    printed = render_plan(cfg, "migrate", ["uni_tracking_info"])
    first = next(i for i, s in enumerate(printed) if s.endswith('_tl_migrate"'))
    begin = max(i for i, s in enumerate(printed[:first]) if s == "BEGIN")
    body = printed[begin : printed.index("COMMIT", first)]
    assert "BEGIN" not in body[1:]
    renames = [s.rsplit(" ", 1)[1] for s in body if " RENAME TO " in s]
    assert renames[:3] == [
        '"uni_tracking_info_raw"', '"order_tracking_departures"', '"mart_uni_tracking_info"'
    ]  # fmt: skip
    assert re.fullmatch(r'"hist_uti_\d{4}_h[12]"', renames[3]) and len(renames) == 4
    assert not any(" RENAME TO " in s for s in printed[printed.index("COMMIT", first) :])
    view = f'"{ODS}"."mart_uni_tracking_info_hist"'
    create = next(s for s in body if s.startswith(f"CREATE VIEW {view}"))
    assert body.index(f"DROP VIEW IF EXISTS {view}") < body.index(create)
    assert create.endswith("WITH NO SCHEMA BINDING")
    assert any(s.startswith('INSERT INTO "trackline"."watermarks"') for s in body)
    assert not any("ecs" in s or "spath" in s for s in body)  # only what uti feeds


def test_the_consolidate_plan_obeys_redshift_and_merges_in_one_transaction(cfg: Config) -> None:
    """`trackline sql --engine redshift consolidate`: each input's staged batch commits with
    its watermark; DELETE, INSERT and the processed_at UPDATE share one transaction."""
    from tests.redshift_checks import from_recorded, redshift_problems

    sent = from_recorded(plan_statements(cfg, "consolidate"))
    bad = {s.sql: p for s in sent if (p := redshift_problems(s))}
    assert not bad, bad
    printed = render_plan(cfg, "consolidate")
    target = f'"{PUB}"."parcel_detail_tool"'
    create = next(s for s in printed if s.startswith(f"CREATE TABLE IF NOT EXISTS {target} "))
    assert 'DISTKEY("order_id")' in create and 'SORTKEY("source_kind", "event_id")' in create
    delete = next(i for i, s in enumerate(printed) if s.startswith(f"DELETE FROM {target}"))
    begin = max(i for i, s in enumerate(printed[:delete]) if s == "BEGIN")
    body = printed[begin : printed.index("COMMIT", delete)]
    assert "BEGIN" not in body[1:]
    assert any(s.startswith(f"INSERT INTO {target} ") and "ROW_NUMBER()" in s for s in body)
    assert any(s.startswith(f'UPDATE "{PUB}"."parcel_detail_tool_staging" SET') for s in body)
    stage_commits = [
        i for i, s in enumerate(printed) if s.startswith('INSERT INTO "trackline"."watermarks"')
    ]
    # one batch per input, each with its watermark; then the merge's progress, in its body
    assert len(stage_commits) == 3 and printed[stage_commits[2]] in body


MYSQL_TABLES = """
CREATE TABLE uni_tracking_info (id BIGINT PRIMARY KEY, order_id BIGINT, status VARCHAR(16),
  update_time DATETIME, KEY ix_u (update_time, id));
CREATE TABLE uni_tracking_spath (id BIGINT PRIMARY KEY, order_id BIGINT, code VARCHAR(8),
  pathTime DATETIME);
CREATE TABLE ecs_order_info (id BIGINT PRIMARY KEY, order_id BIGINT, partner_id INT,
  add_time DATETIME, KEY ix_a (add_time, id));
CREATE TABLE settlement_claim_detail (ID BIGINT PRIMARY KEY, amount DECIMAL(10,2),
  update_at DATETIME, KEY ix_c (update_at, ID));
CREATE TABLE partner (id INT PRIMARY KEY, name VARCHAR(40));
CREATE TABLE uni_tracking_addon_spath (id BIGINT PRIMARY KEY, order_id BIGINT,
  code VARCHAR(8), pathTime DATETIME)
"""


def test_the_drift_plan_widens_and_adds_columns_on_raw_marts_periods_and_views(
    tmp_path: Path, mysql_db: Any, pg_db: PgDb
) -> None:
    """`trackline sql --engine redshift drift`: each source table gained a nullable column and
    its first VARCHAR doubled. Raw, the mart and its history period are widened with ALTER
    COLUMN … TYPE outside any transaction (Redshift refuses it inside one), the view that
    reads them dropped first and created again after, the new column added everywhere; the
    compat script then runs after the cycle's on PostgreSQL."""
    from tests.redshift_checks import from_recorded, redshift_problems

    for ddl in MYSQL_TABLES.split(";"):
        mysql_db.execute(ddl)
    base = plan_config(tmp_path, pg_db.redshift_compat(), "s3://tl-stage/prod")
    data = base.model_dump(mode="python", by_alias=True)
    data["sources"] = {"kuaisong": mysql_db.source_config()}
    data["warehouse"] = base.warehouse
    cfg = Config.model_validate(data)

    sent = from_recorded(plan_statements(cfg, "drift"))
    bad = {s.sql: p for s in sent if (p := redshift_problems(s))}
    assert not bad, bad
    printed = render_plan(cfg, "drift")
    alters = [i for i, s in enumerate(printed) if " ALTER COLUMN " in s]
    widened = {printed[i] for i in alters}
    for table in (f'"{PUB}"."uni_tracking_info_raw"', f'"{ODS}"."mart_uni_tracking_info"'):
        assert f'ALTER TABLE {table} ALTER COLUMN "status" TYPE VARCHAR(128)' in widened
    period = next(
        s for s in widened if re.match(rf'ALTER TABLE "{ODS}"\."hist_uti_\d{{4}}_h[12]"', s)
    )
    assert period.endswith('ALTER COLUMN "status" TYPE VARCHAR(128)')
    assert f'ALTER TABLE "{PUB}"."partner" ALTER COLUMN "name" TYPE VARCHAR(320)' in widened
    for i in alters:  # never inside BEGIN … COMMIT
        before = [s for s in printed[:i] if s in ("BEGIN", "COMMIT")]
        assert not before or before[-1] == "COMMIT", printed[i]
    view = f'"{ODS}"."mart_uni_tracking_info_hist"'
    mart_alter = printed.index(
        f'ALTER TABLE "{ODS}"."mart_uni_tracking_info" ALTER COLUMN "status" TYPE VARCHAR(128)'
    )
    drop = max(i for i, s in enumerate(printed[:mart_alter]) if s == f"DROP VIEW IF EXISTS {view}")
    create = next(
        i for i, s in enumerate(printed) if i > mart_alter and s.startswith(f"CREATE VIEW {view}")
    )
    assert drop < mart_alter < create and '"new_source_column"' in printed[create]
    added = [s for s in printed if s.endswith('ADD COLUMN "new_source_column" VARCHAR(256)')]
    assert {s.split(" ")[2] for s in added} >= {
        f'"{PUB}"."uni_tracking_info_raw"', f'"{ODS}"."mart_uni_tracking_info"',
        f'"{ODS}"."mart_ecs_order_info"', f'"{ODS}"."mart_uni_tracking_spath"',
    }  # fmt: skip
    assert any(re.match(rf'ALTER TABLE "{ODS}"\."hist_uts_\d{{4}}_h[12]" ADD', s) for s in added)
    # only uni_tracking_info drifted: nothing else is altered
    one = render_plan(cfg, "drift", ["uni_tracking_info"])
    assert not any("partner" in s and "ALTER" in s for s in one)

    assert isinstance(cfg.warehouse, RedshiftWarehouse)
    wh = Redshift(cfg.warehouse)
    wh.connect()
    try:
        empty(wh, cfg)
        run_script(wh, plan_statements(cfg, "cycle", compat=True))
        assert run_script(wh, plan_statements(cfg, "drift", compat=True)) > 0
        got = wh.column_specs(ODS, "mart_uni_tracking_info")["mart_uni_tracking_info"]
        assert got["status"] == "character varying(128)" and "new_source_column" in got
    finally:
        wh.close()
