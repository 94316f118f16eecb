"""`trackline sql --engine redshift <job>` for a config that combines the newer jobs: a backfill
of follow tables, the follow pass, a cycle with events upserted by modified time and
re-read by order, a consolidation, a compare against the legacy DW, and scd2 / replace
dimensions. Every printed statement (what Redshift itself would receive, not what compat
mode sends PostgreSQL) is checked against Redshift's documented rules:
`tests/redshift_checks.redshift_problems` plus `printed_problems` (what compat mode, running
on PostgreSQL, can never show: PostgreSQL-only functions and clauses Redshift lacks)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MySQLDb, PgDb
from tests.integration.parity_world import DDL, config_data
from tests.redshift_checks import Sent, from_recorded, printed_problems, redshift_problems
from trackline.config import Config, RedshiftWarehouse
from trackline.sqlplan import plan_statements

pytestmark = pytest.mark.servers

JOBS = ["backfill", "follow", "cycle", "consolidate", "compare", "sync"]


def combined_config(tmp_path: Path, db: MySQLDb, pg: PgDb, spath: str) -> Config:
    for ddl in DDL:
        db.execute(ddl)
    for ddl in DDL:
        db.execute(ddl.replace("CREATE TABLE ", "CREATE TABLE dw_"))
    db.execute(
        "CREATE TABLE partners (partner_id INT PRIMARY KEY, name VARCHAR(40), city VARCHAR(40))"
    )
    db.execute("CREATE TABLE regions (region_id INT PRIMARY KEY, name VARCHAR(40))")
    db.execute(
        "CREATE TABLE uni_tracking_addon_spath (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
        "order_id BIGINT, traceSeq INT NULL, pathTime INT NOT NULL, code INT, "
        "is_updated TINYINT NOT NULL DEFAULT 0, time_modified INT NOT NULL, "
        "KEY ix_mod (time_modified, id))"
    )
    wh = RedshiftWarehouse(**pg.redshift_compat())
    data: dict[str, Any] = config_data(db, wh, tmp_path / "stage", spath=spath)
    data["stage"] = {"url": "s3://tl-stage/prod"}
    src = data["sources"]["src"]
    data["sources"] = {"kuaisong": src, "uniods": dict(src)}
    for t in data["tables"]:
        t["source"] = "kuaisong"
    data["tables"] += [
        {
            "name": "partners",
            "source": "kuaisong",
            "target_schema": "dim",
            "cdc": {"strategy": "full"},
            "write_mode": "scd2",
        },
        {
            "name": "regions",
            "source": "kuaisong",
            "target_schema": "dim",
            "cdc": {"strategy": "full"},
            "write_mode": "replace",
        },
    ]
    tables = ("uni_tracking_info", "ecs_order_info", "uni_tracking_spath")
    data["backfill"] = {
        "source": "uniods",
        "tables": [{"table": t, "source_table": f"dw_{t}"} for t in tables],
    }
    data["consolidations"] = [
        {
            "name": "scans",
            "target_schema": "mart",
            "key": ["source_kind", "id"],
            "dist_key": "order_id",
            "inputs": [
                {
                    "name": kind,
                    "source": "kuaisong",
                    "table": table,
                    "constants": {"source_kind": kind},
                    "cdc": {"cursor": "time_modified", "id": "id"},
                }
                for kind, table in (
                    ("spath", "uni_tracking_spath"),
                    ("addon", "uni_tracking_addon_spath"),
                )
            ],
        }
    ]
    data["compare"] = {
        "legacy": "uniods",
        "tables": [
            {
                "name": "uti",
                "legacy_table": "dw_uni_tracking_info",
                "table": "mart_uni_tracking_info",
                "key": ["order_id"],
                "columns": ["status", "update_time"],
            },
            {
                "name": "uts",
                "legacy_table": "dw_uni_tracking_spath",
                "table": "mart_uni_tracking_spath",
                "key": ["order_id", "traceSeq", "pathTime"],
                "columns": ["code", "time_modified"],
            },
        ],
    }
    return Config.model_validate(data)


@pytest.mark.parametrize("spath", ["newest", "follow"])
def test_every_printed_statement_of_the_newer_jobs_obeys_redshift(
    tmp_path: Path, mysql_db: MySQLDb, pg_db: PgDb, spath: str
) -> None:
    cfg = combined_config(tmp_path, mysql_db, pg_db, spath)
    bad: dict[str, dict[str, list[str]]] = {}
    seen: dict[str, int] = {}
    printed: dict[str, str] = {}
    for job in JOBS:
        sent = plan_statements(cfg, job)
        checked = from_recorded(sent)
        seen[job] = len(checked)
        printed[job] = "\n".join(s.sql for s in checked)
        found = {s.sql: p for s in checked if (p := redshift_problems(s) + printed_problems(s))}
        if found:
            bad[job] = found
    assert all(n > 0 for n in seen.values()), seen  # every job printed something
    # the work itself is in the printed plans, not only its bookkeeping
    assert 'COPY "raw"."ecs_order_info_raw"' in printed["backfill"]
    assert 'SELECT DISTINCT "order_id" FROM "raw"."uni_tracking_info_raw"' in printed["follow"]
    assert 'DELETE FROM "mart"."parcel_detail_tool" WHERE EXISTS' in printed["consolidate"]
    assert "SHA2(" in printed["compare"]
    assert '"dim"."partners"' in printed["sync"] and '"dim"."regions"' in printed["sync"]
    assert bad == {}
    # and the checks see what compat mode sends PostgreSQL in Redshift's place
    from trackline.compare.canonical import pg_digest

    compat = Sent(f"SELECT {pg_digest(repr('a'))}", (), False)
    assert "PostgreSQL-only hash functions (Redshift: SHA2)" in printed_problems(compat)


@pytest.mark.parametrize(
    ("sql", "found"),
    [
        ("CREATE TABLE a (x TEXT, y INT)", True),
        ('CREATE TABLE a ("x" VARCHAR NOT NULL)', True),
        ("CREATE TABLE a (x VARCHAR(20), y BIGINT)", False),
        ('ALTER TABLE a ADD COLUMN "b" TEXT', True),
        ('ALTER TABLE a ADD COLUMN "b" VARCHAR(12)', False),
        ("SELECT CAST(x AS TEXT) FROM t", True),
        ("SELECT CAST(x AS VARCHAR(65535)) FROM t", False),
        ("INSERT INTO t (a) VALUES (?) RETURNING id", True),
        ("SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b", True),
        ("SELECT COUNT(*) FILTER (WHERE a > 1) FROM t", True),
        ("SELECT * FROM t WHERE a = ANY(?)", True),
        ("SELECT TO_TIMESTAMP(1700000000)", True),
        ("SELECT TO_TIMESTAMP('2026-01-01', 'YYYY-MM-DD')", False),
        ("ALTER TABLE t ADD COLUMN IF NOT EXISTS c INT", True),
        ("SELECT pg_advisory_xact_lock(1, 2)", True),
        ("SELECT SHA2(a, 256) FROM t", False),
    ],
)
def test_printed_problems_tell_what_redshift_lacks(sql: str, found: bool) -> None:
    assert bool(printed_problems(Sent(sql, (), False))) == found


def test_the_follower_change_test_sees_trailing_blanks_on_redshift(
    tmp_path: Path, mysql_db: MySQLDb, pg_db: PgDb
) -> None:
    """The one_per_key follower replaces a row whose values differ. On Redshift `'A' <> 'A '`
    is false; the printed comparison of the text column `consignee` must also compare
    something trailing blanks change (its LENGTH, which counts them on Redshift)."""
    cfg = combined_config(tmp_path, mysql_db, pg_db, "newest")
    sent = [s.sql for s in from_recorded(plan_statements(cfg, "cycle"))]
    detect = [s for s in sent if s.startswith('INSERT INTO "_tl_chg_') and '"consignee" <> ' in s]
    if not detect:
        raise RuntimeError("set-up: no change detection on consignee in the printed cycle")
    assert all(re.search(r'LENGTH\([^)]*"consignee"\)', s) for s in detect), detect[0][:600]
