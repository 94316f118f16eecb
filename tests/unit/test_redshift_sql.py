"""What the Redshift adapter sends, proven without a cluster.

The statements come from the product feature itself (`render_plan` / `record`, the recorder
behind `trackline sql --engine redshift`): the real sync loop and state store run against a
Redshift adapter that records instead of executing. Every statement must parse with sqlglot's
``redshift`` dialect, and the ones that ARE the design are pinned as expected SQL.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import pyarrow as pa
import pytest
import sqlglot
from click.testing import CliRunner
from sqlglot import exp

from tests.redshift_checks import Sent, from_recorded, redshift_problems
from trackline.config import Config, RedshiftWarehouse
from trackline.errors import ConfigError, RetryableWarehouseError, WarehouseError
from trackline.extract.types import json_field
from trackline.load import Column, StagedFiles
from trackline.load.limits import SUPER_MAX_BYTES, VARBYTE_MAX_BYTES, VARCHAR_MAX_BYTES
from trackline.load.redshift import (
    Redshift,
    iam_role_clause,
    s3_literal,
    sql_literal,
)
from trackline.sqlplan import PLACEHOLDER_ROLE, PLANS, Recorder, Statement, record, render_plan

ROLE = "arn:aws:iam::123456789012:role/trackline-copy"
STAGE = "s3://tl-stage/prod"
# sqlglot has no model for these two Redshift commands (it keeps them as `Command`).
UNMODELLED = ("LOCK ", "VACUUM ")


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    db = tmp_path / "src.db"
    con = sqlite3.connect(db)
    con.executescript(
        """
        CREATE TABLE uni_tracking_info (id INTEGER PRIMARY KEY, order_id INTEGER,
            status TEXT, update_time DATETIME);
        CREATE TABLE uni_tracking_spath (id INTEGER PRIMARY KEY, order_id INTEGER,
            code TEXT, pathTime DATETIME);
        CREATE TABLE settlement_claim_detail (ID INTEGER PRIMARY KEY, amount REAL,
            update_at DATETIME);
        CREATE TABLE partner (id INTEGER PRIMARY KEY, name TEXT);
        """
    )
    con.close()
    pub = "settlement_public"
    return Config.model_validate(
        {
            "sources": {"kuaisong": {"type": "sqlite", "path": str(db)}},
            "warehouse": {"type": "redshift", "host": "rs.example", "user": "etl",
                          "iam_role": ROLE},
            "stage": {"url": STAGE},
            "tables": [
                {"name": "uni_tracking_info", "target_schema": pub,
                 "cdc": {"strategy": "hybrid", "cursor": "update_time", "id": "id"},
                 "dist_key": "order_id", "sort_key": ["update_time", "order_id"]},
                {"name": "uni_tracking_spath", "target_schema": pub,
                 "cdc": {"strategy": "id", "id": "id"},
                 "dist_key": "order_id", "sort_key": ["pathTime", "code", "order_id"]},
                {"name": "settlement_claim_detail", "target_schema": pub,
                 "cdc": {"strategy": "hybrid", "cursor": "update_at", "id": "ID"},
                 "write_mode": "merge", "primary_key": ["ID"]},
                {"name": "partner", "target_schema": pub, "cdc": {"strategy": "full"}},
            ],
        }
    )  # fmt: skip


def _all_types() -> pa.Table:
    return pa.table(
        {
            "b": pa.array([True], pa.bool_()),
            "i8": pa.array([1], pa.int8()),
            "u32": pa.array([4_000_000_000], pa.uint32()),
            "u64": pa.array([2**64 - 1], pa.uint64()),
            "f": pa.array([1.5], pa.float32()),
            "d": pa.array([2.5], pa.float64()),
            "dec": pa.array([None], pa.decimal128(10, 2)),
            "s": pa.array(["x"], pa.string()),
            "bin": pa.array([b"\x00"], pa.binary()),
            "day": pa.array([None], pa.date32()),
            "ts": pa.array([None], pa.timestamp("us")),
            "tod": pa.array([None], pa.time64("us")),
        }
    )


def _exercise_adapter(rec: Recorder) -> None:
    """Every adapter entry point that emits SQL, once."""
    data = _all_types()
    cols = [Column(f.name, f.type) for f in data.schema]
    staged = StagedFiles((f"{STAGE}/b1.parquet",), f"{STAGE}/b1.manifest")
    with rec.lock("maintenance"):
        with rec.transaction():
            rec.ensure_schema("s")
            rec.create_table("s", "all_types", cols, primary_key=["b"], dist_key="u32",
                             sort_key=["ts", "s"])  # fmt: skip
            rec.append_arrow("s", "all_types", data, staged)  # COPY straight into the table
            rec.add_column("s", "all_types", Column("extra", pa.string()))
            rec.append_arrow("s", "all_types", data, staged)  # column order differs: by name
            rec.create_unique_index("s", "all_types", ["u32"])
            rec.table_exists("s", "all_types")
            rec.column_types("s", "all_types")
            rec.list_tables("s")
            rec.delete_all("s", "all_types")
            with rec.batch_relation(data, staged) as rel:
                rec.execute(f"SELECT COUNT(*) FROM {rel}")
        rec.maintenance("s", "all_types")


class _NeedsUpkeep(Recorder):
    """svv_table_info says: 25% unsorted, statistics 30% off."""

    def _query(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        super()._query(sql, params)
        return [(25.0, 30.0)] if "svv_table_info" in sql else []


@pytest.fixture
def sync_sql(cfg: Config) -> list[str]:
    return render_plan(cfg, "sync")


def _all_statements(cfg: Config) -> list[str]:
    out = render_plan(cfg, "sync") + render_plan(cfg, "state") + record(cfg, _exercise_adapter)
    rec = _NeedsUpkeep(RedshiftWarehouse(host="h", user="u", iam_role=ROLE), STAGE)
    rec.maintenance("s", "t")
    return out + rec.sql()


def _norm(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip().upper()


def _in_transaction(statements: list[str]) -> list[tuple[str, bool]]:
    depth, out = 0, []
    for s in statements:
        if s == "BEGIN":
            depth += 1
        elif s in ("COMMIT", "ROLLBACK"):
            depth -= 1
        out.append((s, depth > 0))
    return out


# ------------------------------------------------------------------ every statement parses


def test_every_emitted_statement_parses_as_redshift(cfg: Config) -> None:
    statements = _all_statements(cfg)
    assert len(statements) > 100
    for sql in statements:
        parsed = sqlglot.parse(sql, read="redshift", error_level=sqlglot.ErrorLevel.RAISE)
        assert len(parsed) == 1 and parsed[0] is not None, sql
        if isinstance(parsed[0], exp.Command):
            assert sql.upper().startswith(UNMODELLED), f"sqlglot could not model: {sql}"


def test_no_forbidden_forms_anywhere(cfg: Config) -> None:
    statements = _all_statements(cfg)
    for sql in statements:
        n = _norm(sql)
        assert "NOT IN (SELECT" not in n and "IS DISTINCT FROM" not in n, sql
        assert not n.startswith("TRUNCATE"), sql
        tree = sqlglot.parse_one(sql, read="redshift")
        for node in tree.find_all(exp.Not):
            assert not (isinstance(node.this, exp.In) and node.this.args.get("query")), sql
        assert not list(tree.find_all(exp.NullSafeEQ, exp.NullSafeNEQ)), sql
    for sql, inside in _in_transaction(statements):
        if sql.startswith(("VACUUM", "ANALYZE")):
            assert not inside, f"{sql} must run outside a transaction"


# ------------------------------------------------------------------ expected SQL


def test_names_are_stored_lower_case_with_no_session_setting(sync_sql: list[str]) -> None:
    """Source columns pathTime and ID (and the config keys naming them) are the columns
    pathtime and id: readers find them without enable_case_sensitive_identifier."""
    assert not any("enable_case_sensitive_identifier" in s for s in sync_sql)
    assert not any('"pathTime"' in s or '"ID"' in s for s in sync_sql)


def test_ddl_carries_distkey_and_sortkey(sync_sql: list[str]) -> None:
    assert (
        'CREATE TABLE IF NOT EXISTS "settlement_public"."uni_tracking_info_raw" (\n'
        '  "id" BIGINT,\n  "order_id" BIGINT,\n  "status" VARCHAR(65535),\n'
        '  "update_time" TIMESTAMP,\n  "_tl_batch_id" BIGINT\n'
        ') DISTKEY("order_id") SORTKEY("update_time", "order_id")'
    ) in sync_sql
    assert (
        'CREATE TABLE IF NOT EXISTS "settlement_public"."uni_tracking_spath_raw" (\n'
        '  "id" BIGINT,\n  "order_id" BIGINT,\n  "code" VARCHAR(65535),\n'
        '  "pathtime" TIMESTAMP,\n  "_tl_batch_id" BIGINT\n'
        ') DISTKEY("order_id") SORTKEY("pathtime", "code", "order_id")'
    ) in sync_sql


def test_state_tables_use_wide_varchar_not_text(cfg: Config) -> None:
    state = render_plan(cfg, "state")
    ddl = [s for s in state if s.startswith("CREATE TABLE")]
    assert len(ddl) >= 5  # schema_version, watermarks, batches, runs, mart_progress, …
    assert all(" TEXT" not in s for s in ddl)  # TEXT is VARCHAR(256) on Redshift
    assert (
        'CREATE TABLE IF NOT EXISTS "trackline"."watermarks" (table_key VARCHAR(65535) NOT NULL, '
        "strategy VARCHAR(65535), value VARCHAR(65535), last_batch_id BIGINT, rows_total BIGINT, "
        "updated_at TIMESTAMP, PRIMARY KEY (table_key))"
    ) in ddl


def test_copy_uses_the_manifest_and_iam_role(sync_sql: list[str]) -> None:
    copies = [s for s in sync_sql if s.startswith("COPY")]
    assert len(copies) == 4  # one per table (the merge's batch goes into a temp table)
    pattern = re.compile(
        r'COPY "settlement_public"\."uni_tracking_info_raw" '
        r'\("id", "order_id", "status", "update_time", "_tl_batch_id"\)\n'
        r"FROM 's3://tl-stage/prod/main/settlement_public/uni_tracking_info_raw/"
        r"year=\d{4}/month=\d\d/day=\d\d/uni_tracking_info_raw_\d{8}_\d{6}_1\.manifest'\n"
        rf"IAM_ROLE '{ROLE}'\n"
        r"FORMAT AS PARQUET\n"
        r"MANIFEST"
    )
    assert pattern.fullmatch(copies[0]), copies[0]


def test_copy_commits_with_the_watermark(sync_sql: list[str]) -> None:
    """The data change and the state that says it happened, in ONE transaction."""
    marks = _in_transaction(sync_sql)
    for i, (sql, inside) in enumerate(marks):
        if not sql.startswith("COPY"):
            continue
        assert inside
        end = next(j for j in range(i, len(marks)) if marks[j][0] == "COMMIT")
        tail = [s for s, _ in marks[i:end]]
        assert any(s.startswith('INSERT INTO "trackline"."batches"') for s in tail)
        assert any(s.startswith('INSERT INTO "trackline"."watermarks"') for s in tail)


def test_merge_deletes_by_key_with_exists_then_inserts(sync_sql: list[str]) -> None:
    i = sync_sql.index(
        'CREATE TEMPORARY TABLE "_tl_batch_1" ("id" BIGINT, "amount" DOUBLE PRECISION, '
        '"update_at" TIMESTAMP, "_tl_batch_id" BIGINT)'
    )
    assert sync_sql[i + 1].startswith(
        'COPY "_tl_batch_1" ("id", "amount", "update_at", "_tl_batch_id")\nFROM '
    )
    assert sync_sql[i + 2 : i + 5] == [
        'DELETE FROM "settlement_public"."settlement_claim_detail" WHERE EXISTS '
        '(SELECT 1 FROM "_tl_batch_1" WHERE "_tl_batch_1"."id" = '
        '"settlement_public"."settlement_claim_detail"."id")',
        'INSERT INTO "settlement_public"."settlement_claim_detail" ("id", "amount", '
        '"update_at", "_tl_batch_id") SELECT "id", "amount", "update_at", "_tl_batch_id" '
        'FROM "_tl_batch_1"',
        'DROP TABLE IF EXISTS "_tl_batch_1"',
    ]
    # the batch is COPYed from S3 once (into the temp table) and used by both statements
    assert not any(
        s.startswith('COPY "settlement_public"."settlement_claim_detail"') for s in sync_sql
    )


def test_full_snapshot_empties_with_delete_in_the_load_transaction(sync_sql: list[str]) -> None:
    marks = _in_transaction(sync_sql)
    i = sync_sql.index('DELETE FROM "settlement_public"."partner"')
    assert marks[i][1]
    assert sync_sql[i + 1].startswith(
        "SELECT column_name, data_type FROM information_schema.columns"
    )
    assert sync_sql[i + 2].startswith('COPY "settlement_public"."partner"')
    assert marks[i + 2][1]


def test_lock_is_a_row_taken_in_its_own_transaction(sync_sql: list[str]) -> None:
    i = sync_sql.index('LOCK "trackline"."locks"')
    assert sync_sql[i - 1 : i + 4] == [
        "BEGIN",
        'LOCK "trackline"."locks"',
        'SELECT holder, acquired_at FROM "trackline"."locks" WHERE "name" = ?',
        'INSERT INTO "trackline"."locks" ("name", holder, acquired_at) VALUES (?, ?, ?)',
        "COMMIT",
    ]
    release = 'DELETE FROM "trackline"."locks" WHERE "name" = ? AND holder = ?'
    assert sync_sql.count(release) == 4
    j = sync_sql.index(release)
    assert sync_sql[j - 1] == "BEGIN" and sync_sql[j + 1] == "COMMIT"


def test_unsigned_and_time_columns_are_typed_for_copy_and_loaded_from_the_staged_file(
    cfg: Config,
) -> None:
    statements = record(cfg, _exercise_adapter)
    ddl = next(s for s in statements if s.startswith('CREATE TABLE IF NOT EXISTS "s"'))
    assert '"u32" BIGINT' in ddl and '"u64" DECIMAL(20,0)' in ddl and '"i8" SMALLINT' in ddl
    assert '"bin" VARBYTE(1024000)' in ddl and '"tod" VARCHAR(32)' in ddl
    assert ddl.endswith('DISTKEY("u32") SORTKEY("ts", "s")')
    copy = next(s for s in statements if s.startswith('COPY "s"."all_types"'))
    assert f"FROM '{STAGE}/b1.manifest'" in copy  # sync stages the cast form (stage_form)
    data = _all_types()
    staged = Recorder(RedshiftWarehouse(host="h", user="u", iam_role=ROLE), STAGE).stage_form(data)
    assert [str(f.type) for f in staged.schema][1:4] == ["int8", "int64", "decimal128(20, 0)"]
    assert staged.column("tod").type == pa.string() and staged.num_rows == data.num_rows
    # after ADD COLUMN the table's order is not the file's: temp table, then INSERT by name
    i = statements.index('ALTER TABLE "s"."all_types" ADD COLUMN "extra" VARCHAR(65535)')
    assert statements[i + 2].startswith('CREATE TEMPORARY TABLE "_tl_batch_1"')
    assert statements[i + 3].startswith('COPY "_tl_batch_1"')
    assert statements[i + 4].startswith('INSERT INTO "s"."all_types" ("b", "i8", "u32"')


def test_upkeep_only_when_svv_table_info_says_so(cfg: Config) -> None:
    calm = record(cfg, lambda rec: rec.maintenance("s", "t"))
    assert calm[-1].startswith("SELECT unsorted, stats_off FROM svv_table_info")
    rec = _NeedsUpkeep(RedshiftWarehouse(host="h", user="u", iam_role=ROLE), STAGE)
    assert rec.maintenance("s", "t") == ['VACUUM "s"."t"', 'ANALYZE "s"."t"']


class _Counted(Recorder):
    """svv_table_info lists s.t with 1,200 visible of 1,500 stored rows; nothing else."""

    def _query(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        super()._query(sql, params)
        if "svv_table_info" in sql:
            return [(1200, 1500)] if tuple(params) == ("s", "t") else []
        return [(-1.0,)] if "reltuples" in sql else [(7,)]


def test_mart_sizes_come_from_svv_table_info_outside_transactions() -> None:
    rec = _Counted(RedshiftWarehouse(host="h", user="u", iam_role=ROLE), STAGE)
    assert rec.approx_rows("s", "t") == 1200
    assert rec.approx_rows("s", "empty") == 0  # the view lists only tables holding rows
    assert rec.sql()[-1].startswith("SELECT estimated_visible_rows, tbl_rows FROM svv_table_info")
    before = len(rec.sql())
    with rec.transaction():  # a failed query would abort it: COUNT(*) instead
        assert rec.approx_rows("s", "t") == 7
    inside = rec.sql()[before:]
    assert not any("svv_table_info" in q for q in inside)
    assert any(q.startswith('SELECT COUNT(*) FROM "s"."t"') for q in inside), inside


def test_plans_are_a_registry_and_unknown_commands_are_named(cfg: Config) -> None:
    assert {"sync", "state", "cycle"} <= set(PLANS)
    with pytest.raises(ConfigError, match="knows: state, sync, cycle, check, reconcile, replay"):
        render_plan(cfg, "marts-typo")


def test_plan_for_a_non_redshift_config_uses_placeholders(cfg: Config) -> None:
    local = Config.model_validate(
        {**cfg.model_dump(by_alias=True), "warehouse": {"type": "duckdb"},
         "stage": {"url": "/tmp/stage"}}
    )  # fmt: skip
    copy = next(s for s in render_plan(local, "sync") if s.startswith("COPY"))
    assert PLACEHOLDER_ROLE in copy and "s3://your-stage-bucket/trackline/" in copy


def test_sql_command_prints_the_plan(cfg: Config, tmp_path: Path) -> None:
    import yaml

    from trackline.sqlplan.cli import register

    path = tmp_path / "trackline.yml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True)))

    @click.group()
    def main() -> None: ...

    register(main)
    result = CliRunner().invoke(main, ["sql", "--engine", "redshift", "-c", str(path), "sync"])
    assert result.exit_code == 0, result.output
    assert 'DISTKEY("order_id")' in result.output
    assert "FORMAT AS PARQUET\nMANIFEST;" in result.output
    bad = CliRunner().invoke(main, ["sql", "-c", str(path), "nope"])
    assert bad.exit_code == 2 and "knows:" in bad.output
    # --target-schema means what it means on every other command
    moved = CliRunner().invoke(main, ["sql", "-c", str(path), "--target-schema", "shard_2", "sync"])
    assert moved.exit_code == 0, moved.output
    assert '"shard_2"."uni_tracking_info_raw"' in moved.output


# ------------------------------------------------------------------ the cycle's mart steps

MART = '"settlement_ods"'


@pytest.fixture
def cycle_cfg(cfg: Config) -> Config:
    """`cfg` plus ecs_order_info and the order-tracking retention group, with the order-tracking
    sort keys."""
    con = sqlite3.connect(cfg.sources["kuaisong"].path)  # type: ignore[union-attr]
    con.execute(
        "CREATE TABLE ecs_order_info (id INTEGER PRIMARY KEY, order_id INTEGER, "
        "partner_id INTEGER, add_time DATETIME)"
    )
    con.commit()
    con.close()
    data = cfg.model_dump(by_alias=True)
    data["tables"].append(
        {"name": "ecs_order_info", "target_schema": "settlement_public", "dist_key": "order_id",
         "cdc": {"strategy": "hybrid", "cursor": "add_time", "id": "id"}}
    )  # fmt: skip
    data["marts"] = [
        {"name": "order_tracking", "followers": [
            {"table": "mart_ecs_order_info", "source": "ecs_order_info", "kind": "one_per_key",
             "history_name": "ecs", "time": "add_time",
             "sort_key": ["partner_id", "add_time", "order_id"]},
            {"table": "mart_uni_tracking_spath", "source": "uni_tracking_spath",
             "kind": "events", "time": "pathTime", "event_key": ["id"], "history_name": "uts",
             "sort_key": ["pathTime", "code", "order_id"]},
        ]}
    ]  # fmt: skip
    return Config.model_validate(data)


@pytest.fixture
def cycle_plan(cycle_cfg: Config) -> list[Statement]:
    """`trackline sql --engine redshift cycle`, statements with their parameters."""
    recorders: list[Recorder] = []

    def plan(rec: Recorder) -> None:
        PLANS["cycle"](cycle_cfg, rec)
        recorders.append(rec)

    record(cycle_cfg, plan)
    return recorders[0].recorded


@pytest.fixture
def cycle_sql(cycle_plan: list[Statement]) -> list[str]:
    # the one history period of the plan, whatever today's half-year is
    return [re.sub(r"(hist_\w+?)_\d{4}_h[12]", r"\1_P", s.sql) for s in cycle_plan]


def _after(statements: list[str], start: int, prefix: str) -> int:
    return next(i for i in range(start, len(statements)) if statements[i].startswith(prefix))


def test_cycle_plan_is_redshift_sql(cycle_plan: list[Statement]) -> None:
    """Every statement of the cycle plan (sync, marts, raw trim) passes the same checks as
    the statements sent in compat mode: parses as redshift, no forbidden form, parameters only
    where Redshift can prepare them, no correlated subquery it cannot decorrelate."""
    sent = from_recorded(cycle_plan)
    assert len(sent) > 250
    bad = {s.sql: p for s in sent if (p := redshift_problems(s))}
    assert not bad, bad
    period = {m for s in sent for m in re.findall(r"hist_uti_(\d{4}_h[12])", s.sql)}
    assert len(period) == 1  # the current half-year


def test_cycle_plan_shows_the_marts_after_the_sync(cycle_sql: list[str]) -> None:
    last_copy = max(i for i, s in enumerate(cycle_sql) if s.startswith("COPY"))
    first_mart = min(i for i, s in enumerate(cycle_sql) if f'{MART}."mart_' in s)
    assert 0 < last_copy < first_mart
    # anchor, then the one_per_key follower, then events, then the raw buffers
    order = [
        _after(cycle_sql, first_mart, f'INSERT INTO {MART}."{t}" (') for t in (
            "mart_uni_tracking_info", "mart_ecs_order_info", "mart_uni_tracking_spath")
    ]  # fmt: skip
    raw_trim = _after(cycle_sql, first_mart, 'DELETE FROM "settlement_public"."uni_tracking_info')
    assert order == sorted(order) and order[-1] < raw_trim
    # the cycle's run row: runs left `running` by a dead process are marked killed, the row
    # is written as `running` before the work, and its outcome after it
    runs = '"trackline"."runs"'
    killed = _after(cycle_sql, 0, f"UPDATE {runs} SET status = 'killed'")
    running = _after(cycle_sql, 0, f"INSERT INTO {runs}")
    assert killed < running < last_copy
    assert cycle_sql[-2].startswith(f"UPDATE {runs} SET finished_at = ?, status = ?")


def test_cycle_plan_mart_and_history_ddl_carry_distkey_and_sortkey(cycle_sql: list[str]) -> None:
    assert (
        f'CREATE TABLE IF NOT EXISTS {MART}."mart_uni_tracking_info" (\n'
        '  "id" BIGINT,\n  "order_id" BIGINT,\n  "status" VARCHAR(65535),\n'
        '  "update_time" TIMESTAMP\n'
        ') DISTKEY("order_id") SORTKEY("update_time", "order_id")'
    ) in cycle_sql
    keys = {
        "uni_tracking_info": ("uti", 'SORTKEY("update_time", "order_id")'),
        "ecs_order_info": ("ecs", 'SORTKEY("partner_id", "add_time", "order_id")'),
        "uni_tracking_spath": ("uts", 'SORTKEY("pathtime", "code", "order_id")'),
    }
    for table, (name, sort) in keys.items():
        for target in (f"mart_{table}", f"hist_{name}_P"):
            ddl = [
                s
                for s in cycle_sql
                if s.startswith(f'CREATE TABLE IF NOT EXISTS {MART}."{target}"')
            ]
            assert len(ddl) == 1, target
            assert ddl[0].endswith(f') DISTKEY("order_id") {sort}'), ddl[0]
        view = next(
            s
            for s in cycle_sql
            if s.startswith(f'CREATE OR REPLACE VIEW {MART}."mart_{table}_hist"')
        )
        assert view.endswith(f'FROM {MART}."hist_{name}_P" WITH NO SCHEMA BINDING')
    assert not [s for s in cycle_sql if "INDEX" in s or "ON CONFLICT" in s]


def _temp(statements: list[str], prefix: str, start: int = 0) -> tuple[int, str]:
    """(index, quoted name) of the next CREATE TEMPORARY TABLE "<prefix>…"."""
    i = _after(statements, start, f'CREATE TEMPORARY TABLE "{prefix}')
    return i, '"' + statements[i].split('"')[1] + '"'


def test_cycle_plan_anchor_replace_reactivate_archive_check_trim(cycle_sql: list[str]) -> None:
    """The anchor's chunk: one transaction, steps in the documented order."""
    mart, hist = f'{MART}."mart_uni_tracking_info"', f'{MART}."hist_uti_P"'
    raw = '"settlement_public"."uni_tracking_info_raw"'
    cols = '"id", "order_id", "status", "update_time"'
    i, new = _temp(cycle_sql, "_tl_new_")
    assert cycle_sql[i] == (
        f'CREATE TEMPORARY TABLE {new} ("id" BIGINT, "order_id" BIGINT, '
        '"status" VARCHAR(65535), "update_time" TIMESTAMP) DISTKEY("order_id")'
    )
    assert cycle_sql[i + 1 : i + 6] == [
        f"INSERT INTO {new} ({cols}) SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER "
        '(PARTITION BY "order_id" ORDER BY "update_time" DESC, "id" DESC) AS _tl_rn '
        f'FROM {raw} WHERE "_tl_batch_id" > ? AND "_tl_batch_id" <= ? '
        'AND "order_id" IS NOT NULL) r WHERE _tl_rn = 1',
        # never let an older version replace a newer one
        f"DELETE FROM {new} WHERE EXISTS (SELECT 1 FROM {mart} m WHERE "
        f'm."order_id" = {new}."order_id" AND m."update_time" > {new}."update_time")',
        # replace by key, no time window
        f"DELETE FROM {mart} WHERE EXISTS (SELECT 1 FROM {new} n "
        f'WHERE n."order_id" = {mart}."order_id")',
        f"INSERT INTO {mart} ({cols}) SELECT {cols} FROM {new}",
        # 1. reactivation: the keys of this batch leave history
        f"DELETE FROM {hist} WHERE EXISTS (SELECT 1 FROM {new} n "
        f'WHERE n."order_id" = {hist}."order_id")',
    ]
    begin = max(j for j in range(i) if cycle_sql[j] == "BEGIN")
    chunk = cycle_sql[begin : _after(cycle_sql, i, "COMMIT")]
    assert "BEGIN" not in chunk[1:]  # one transaction
    # 2. archive: the rows past the cutoff of one period are copied to a temp table, what
    #    history already holds is removed from it (guard), the rest goes into the period table
    #    (created on demand)
    m_cols = ", ".join(f"m.{c}" for c in cols.split(", "))
    o, old = _temp(chunk, "_tl_old_")
    fill = (
        f"INSERT INTO {old} ({cols}) SELECT {m_cols} FROM {mart} m "
        'WHERE m."update_time" >= ? AND m."update_time" < ? AND m."update_time" < ?'
    )
    f1 = chunk.index(fill)
    assert chunk[f1 + 1] == (
        f"DELETE FROM {old} WHERE EXISTS (SELECT 1 FROM {hist} h "
        f'WHERE h."order_id" = {old}."order_id")'
    )
    archive = f1 + 2
    assert chunk[archive] == f"INSERT INTO {hist} ({cols}) SELECT {cols} FROM {old}"
    # the plan's period table exists before the first statement that reads it
    assert any(s.startswith(f"CREATE TABLE IF NOT EXISTS {hist} (") for s in cycle_sql[:begin])
    # 3. safety check: past the cutoff and not in history (this version) -> exceptions
    f2 = chunk.index(fill, archive)
    assert chunk[f2 + 1] == (
        f"DELETE FROM {old} WHERE EXISTS (SELECT 1 FROM {hist} h "
        f'WHERE h."order_id" = {old}."order_id" AND h."update_time" = {old}."update_time")'
    )
    c, exc = _temp(chunk, "_tl_exc_", f2)
    assert chunk[c + 1] == (
        f'INSERT INTO {exc} (k) SELECT DISTINCT CAST(o."order_id" AS VARCHAR(256)) FROM {old} o'
    )
    opened = _after(chunk, c, f'INSERT INTO {MART}."order_tracking_exceptions" (id, ')
    assert "ROW_NUMBER() OVER (ORDER BY x.k)" in chunk[opened]
    # 4. trim: past the cutoff, minus the unarchived rows (kept in `old`), no open exception
    cond = (
        f'{mart}."update_time" >= ? AND {mart}."update_time" < ? AND {mart}."update_time" < ? '
        f'AND NOT EXISTS (SELECT 1 FROM {old} o WHERE o."order_id" = {mart}."order_id") '
        f'AND NOT EXISTS (SELECT 1 FROM {MART}."order_tracking_exceptions" e WHERE '
        "e.status = 'open' AND e.table_name = ? "
        f'AND e.key_value = CAST({mart}."order_id" AS VARCHAR(256)))'
    )
    departures = chunk.index(
        'INSERT INTO "trackline"."order_tracking_departures" ("order_id", period, seq) '
        f'SELECT {mart}."order_id", CAST(? AS VARCHAR(65535)), CAST(? AS BIGINT) '
        f"FROM {mart} WHERE {cond}"
    )
    trim = chunk.index(f"DELETE FROM {mart} WHERE {cond}")
    assert o < archive < c < opened < departures < trim
    assert chunk[-2:] == [
        'DELETE FROM "trackline"."mart_progress" WHERE mart = ? AND raw_table = ?',
        'INSERT INTO "trackline"."mart_progress" (mart, raw_table, last_batch_id, updated_at) '
        "VALUES (?, ?, ?, ?)",
    ]


def test_cycle_plan_follower_restores_and_follows_its_anchor(cycle_sql: list[str]) -> None:
    mart, hist = f'{MART}."mart_ecs_order_info"', f'{MART}."hist_ecs_P"'
    cols = '"id", "order_id", "partner_id", "add_time"'
    r, name = _temp(cycle_sql, "_tl_react_")
    assert cycle_sql[r] == f'CREATE TEMPORARY TABLE {name} ("order_id" BIGINT) DISTKEY("order_id")'
    found = f'EXISTS (SELECT 1 FROM {name} x WHERE x."order_id" = {hist}."order_id")'
    absent = f'(SELECT 1 FROM {mart} m WHERE m."order_id" = {hist}."order_id")'
    restore = cycle_sql.index(
        f"INSERT INTO {mart} ({cols}) SELECT "
        + ", ".join(f"{hist}.{c}" for c in cols.split(", "))
        + f" FROM {hist} WHERE {found} AND NOT EXISTS {absent}"
    )
    assert cycle_sql[restore + 1] == f"DELETE FROM {hist} WHERE {found} AND EXISTS {absent}"
    # departed keys (still absent from the anchor) are collected once per chunk, each with
    # the period of its last departure, ...
    g, gone_rel = _temp(cycle_sql, "_tl_gone_", restore)
    dep = '"trackline"."order_tracking_departures"'
    assert cycle_sql[g + 1 : g + 3] == [
        f'INSERT INTO {gone_rel} ("order_id", period) SELECT DISTINCT d."order_id", d.period '
        f"FROM {dep} d WHERE d.seq > ? AND d.seq <= ? AND NOT EXISTS (SELECT 1 FROM {dep} l "
        'WHERE l."order_id" = d."order_id" AND l.seq > d.seq AND l.seq <= ?)',
        # minus the keys active in the anchor again (a probe of the anchor with these keys)
        f'DELETE FROM {gone_rel} WHERE EXISTS (SELECT 1 FROM {MART}."mart_uni_tracking_info" a '
        f'WHERE a."order_id" = {gone_rel}."order_id")',
    ]
    # ... then archived into their anchor row's period, guarded, and trimmed
    gone = (
        f'EXISTS (SELECT 1 FROM {gone_rel} d WHERE d."order_id" = {mart}."order_id" '
        "AND d.period = ?)"
    )
    archive = _after(cycle_sql, g, f"INSERT INTO {hist} ")
    assert cycle_sql[archive].endswith(
        f"FROM {mart} WHERE {gone} AND NOT EXISTS (SELECT 1 FROM {hist} h "
        f'WHERE h."order_id" = {mart}."order_id")'
    )
    # the keys to trim are those departed keys that history holds and that have no open
    # exception, decided on the departed keys; the mart is probed with them alone
    t, trim_rel = _temp(cycle_sql, "_tl_trim_", archive)
    keys = _after(cycle_sql, t, f'INSERT INTO {trim_rel} ("order_id") SELECT ')
    assert (
        f"FROM {gone_rel} WHERE {gone_rel}.period = ? AND EXISTS (SELECT 1 FROM {hist} h"
        in (cycle_sql[keys])
    )
    assert "e.status = 'open'" in cycle_sql[keys]
    assert cycle_sql[keys + 1] == (
        f"DELETE FROM {mart} WHERE EXISTS (SELECT 1 FROM {trim_rel} x "
        f'WHERE x."order_id" = {mart}."order_id")'
    )


def test_cycle_plan_events_archive_by_their_own_time_and_raw_is_trimmed(
    cycle_sql: list[str],
) -> None:
    mart, hist = f'{MART}."mart_uni_tracking_spath"', f'{MART}."hist_uts_P"'
    t = '"pathtime"'
    o = _temp(cycle_sql, "_tl_old_", _after(cycle_sql, 0, f"INSERT INTO {mart} ("))[1]
    guard = cycle_sql.index(
        f'DELETE FROM {o} WHERE EXISTS (SELECT 1 FROM {hist} h WHERE h."id" = {o}."id")'
    )
    assert cycle_sql[guard + 1].startswith(f"INSERT INTO {hist} (")
    assert cycle_sql[guard + 1].endswith(f"FROM {o}")
    assert any(
        s.startswith(f"DELETE FROM {mart} WHERE {mart}.{t} >= ? AND ")
        and f'NOT EXISTS (SELECT 1 FROM {o} o WHERE o."id" = {mart}."id")' in s
        for s in cycle_sql
    )
    # raw buffers with a time cursor (spath is read by id here: it has no data-time buffer)
    for raw, cursor in (
        ("uni_tracking_info_raw", "update_time"),
        ("ecs_order_info_raw", "add_time"),
    ):
        assert (
            f'DELETE FROM "settlement_public"."{raw}" WHERE "_tl_batch_id" <= ? AND "{cursor}" < ?'
        ) in cycle_sql


def test_sql_command_prints_the_cycle_plan(cycle_cfg: Config, tmp_path: Path) -> None:
    import yaml

    from trackline.sqlplan.cli import register

    path = tmp_path / "cycle.yml"
    path.write_text(yaml.safe_dump(cycle_cfg.model_dump(mode="json", by_alias=True)))

    @click.group()
    def main() -> None: ...

    register(main)
    result = CliRunner().invoke(main, ["sql", "--engine", "redshift", "-c", str(path), "cycle"])
    assert result.exit_code == 0, result.output
    assert "FORMAT AS PARQUET\nMANIFEST;" in result.output
    assert 'SORTKEY("partner_id", "add_time", "order_id");' in result.output
    assert "WITH NO SCHEMA BINDING;" in result.output


def test_the_checks_catch_what_redshift_refuses() -> None:
    """The checker itself (tests/redshift_checks.py): Redshift refuses each of these."""
    refused = [
        Sent("TRUNCATE t", (), True),
        Sent("DELETE FROM t WHERE k NOT IN (SELECT k FROM u)", (), False),
        Sent("SELECT 1 FROM t WHERE a IS DISTINCT FROM b", (), False),
        Sent("INSERT INTO t (k) SELECT k FROM u ON CONFLICT (k) DO NOTHING", (), False),
        Sent("CREATE INDEX t_ix ON t (k)", (), False),
        Sent("CREATE TEMPORARY TABLE x AS SELECT k FROM t WHERE b > ?", (1,), True),
        Sent("SELECT ROW_NUMBER() OVER (PARTITION BY k) FROM t", (), False),
        Sent("SELECT k FROM t WHERE k IN (SELECT k FROM u LIMIT 1)", (), False),
        Sent(  # skip-level correlation (the Redshift guide's example)
            "SELECT e.n FROM e WHERE NOT EXISTS (SELECT 1 FROM l WHERE NOT EXISTS "
            "(SELECT 1 FROM s WHERE e.id = s.id))",
            (),
            False,
        ),
        Sent(  # correlated subquery with a window function
            "SELECT 1 FROM t WHERE EXISTS (SELECT SUM(u.v) OVER (ORDER BY u.v) FROM u "
            "WHERE u.k = t.k)",
            (),
            False,
        ),
    ]
    for s in refused:
        assert redshift_problems(s), s.sql
    accepted = Sent(
        'DELETE FROM "m"."t" WHERE EXISTS (SELECT 1 FROM "n" n WHERE n."k" = "m"."t"."k") '
        'AND NOT EXISTS (SELECT 1 FROM "e" e WHERE e.k = CAST("m"."t"."k" AS VARCHAR(256))) '
        'AND "m"."t"."b" > ?',
        (1,),
        True,
    )
    assert redshift_problems(accepted) == []


def test_the_checks_catch_an_uncast_parameter_in_a_select_list() -> None:
    """Redshift types a bare ``?`` in a select list `unknown` (oid 705) and refuses it."""
    refused = [
        "INSERT INTO e (id, c) SELECT ? + ROW_NUMBER() OVER (ORDER BY x.k), ? FROM x",
        "INSERT INTO d (k, period, seq) SELECT m.k, ?, ? FROM m WHERE m.t < ?",
        "SELECT (?) AS a FROM t",
    ]
    for sql in refused:
        assert any("uncast parameter" in p for p in redshift_problems(Sent(sql, (1,), True))), sql
    accepted = [
        "INSERT INTO e (id, c) SELECT CAST(? AS BIGINT) + ROW_NUMBER() OVER (ORDER BY x.k), "
        "CAST(? AS VARCHAR(65535)) FROM x WHERE x.k > ?",
        "INSERT INTO t (a, b) VALUES (?, ?)",
        "SELECT a FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.k = ?)",
    ]
    for sql in accepted:
        assert redshift_problems(Sent(sql, (1,), True)) == [], sql


# ------------------------------------------------------------------ VARCHAR limit


def _adapter(**overrides: Any) -> Redshift:
    return Redshift(RedshiftWarehouse(**{"host": "h", "user": "u", "iam_role": ROLE, **overrides}))


def test_varchar_over_limit_is_an_error_naming_table_column_and_row() -> None:
    secret_text = "€" * 30_000  # 90,000 bytes
    data = pa.table({"k": [1, 2, 3], "note": ["a", None, secret_text]})
    with pytest.raises(WarehouseError) as err:
        _adapter().copy_ready(data, "settlement_public.t")
    msg = str(err.value)
    assert "settlement_public.t" in msg and "'note'" in msg and "row 2" in msg
    assert "90,000 bytes" in msg and "65,535" in msg and "varchar_policy: truncate" in msg
    assert "€" not in msg  # the value itself never goes into an error


def test_varchar_over_limit_is_cut_at_a_character_boundary_and_reported() -> None:
    w = _adapter(varchar_policy="truncate")
    data = pa.table({"k": [1, 2], "note": ["ok", "ab" + "€" * 30_000]})
    ready, changes = w.copy_ready(data, "s.t")
    cut = ready.column("note")[1].as_py()
    assert cut == "ab" + "€" * 21_844 and len(cut.encode()) == VARCHAR_MAX_BYTES - 1
    assert ready.column("note")[0].as_py() == "ok" and changes
    assert w.notices and "'note'" in w.notices[0] and "row 1" in w.notices[0]


def test_values_at_the_limit_pass_untouched() -> None:
    data = pa.table({"note": ["x" * VARCHAR_MAX_BYTES]})
    ready, changes = _adapter().copy_ready(data, "s.t")
    assert ready is data and changes == []


def test_binary_over_varbyte_limit_is_always_an_error() -> None:
    data = pa.table({"blob": pa.array([b"\x01" * (VARBYTE_MAX_BYTES + 1)], pa.binary())})
    with pytest.raises(WarehouseError, match="'blob', row 0.*VARBYTE"):
        _adapter(varchar_policy="truncate").copy_ready(data, "s.t")


def _docs(values: list[str | None]) -> pa.Table:
    schema = pa.schema([pa.field("k", pa.int64()), json_field("doc")])
    return pa.Table.from_arrays([pa.array(range(len(values))), pa.array(values)], schema=schema)


def test_super_documents_skip_the_varchar_limit_but_not_their_own() -> None:
    # a 90 kB document (each string in it under 65,535 bytes): over VARCHAR, fine as SUPER
    big = '{"a": [' + ",".join(['"' + "€" * 1_000 + '"'] * 30) + "]}"
    data = _docs(['{"x": 1}', None, "null", big])
    ready, changes = _adapter().copy_ready(data, "s.t")
    assert ready is data and changes == []
    huge = '"' + "x" * SUPER_MAX_BYTES + '"'
    with pytest.raises(WarehouseError, match="'doc', row 1 .*SUPER limit of 16,777,216"):
        _adapter().copy_ready(_docs(["1", huge]), "s.t")


def test_a_super_value_that_is_not_json_is_an_error_naming_its_row() -> None:
    with pytest.raises(WarehouseError) as err:
        _adapter().copy_ready(_docs(['{"ok": true}', "[1, 2]", "{'single': 1}"]), "s.t")
    msg = str(err.value)
    assert "s.t: column 'doc', row 2 of the batch is not valid JSON" in msg
    assert "single" not in msg  # the value itself never goes into an error


# ------------------------------------------------------------------ errors and literals


class _DriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    "exc",
    [
        _DriverError(
            "1023\nDETAIL:  Serializable isolation violation on table - 1256109, transactions "
            "forming the cycle are: 15749004, 15748971 (pid:8238)",
            "XX000",
        ),
        _DriverError("ERROR: 1023 DETAIL: Serializable isolation violation on table"),
        _DriverError("could not serialize access due to concurrent update", "40001"),
        # SNAPSHOT isolation (the default of new clusters): another text, SQLSTATE XX000
        _DriverError("could not complete because of conflict with concurrent transaction", "XX000"),
    ],
)
def test_serialization_conflict_is_retryable(exc: Exception) -> None:
    err = _adapter().translate_error(exc, "COMMIT")
    assert isinstance(err, RetryableWarehouseError) and err.retryable
    assert "1023" in str(err)


def test_other_errors_are_not_retryable() -> None:
    err = _adapter().translate_error(
        _DriverError('invalid input syntax for integer: "1023x"', "22P02"), "INSERT …"
    )
    assert isinstance(err, WarehouseError) and not err.retryable


def test_copy_literals_are_quoted_and_validated() -> None:
    assert sql_literal("s3://b/it's") == "'s3://b/it''s'"
    assert s3_literal("s3://tl-stage/a/b.manifest") == "'s3://tl-stage/a/b.manifest'"
    with pytest.raises(WarehouseError, match="stage.url"):
        s3_literal("/local/stage/b.manifest")
    with pytest.raises(WarehouseError, match="backslash"):
        sql_literal("s3://b/a\\' ; DROP TABLE x; --")
    assert iam_role_clause("default") == "IAM_ROLE default"
    chained = f"{ROLE},arn:aws:iam::210987654321:role/other"
    assert iam_role_clause(chained) == f"IAM_ROLE '{chained}'"


def test_a_bad_iam_role_is_refused_without_echoing_it() -> None:
    leaked = "aws_access_key_id=AKIAEXAMPLE;aws_secret_access_key=wJalrXUtnFEMI"
    with pytest.raises(ConfigError, match="warehouse.iam_role") as err:
        _adapter(iam_role=leaked)
    assert "AKIA" not in str(err.value) and "wJalr" not in str(err.value)


def test_identifiers_up_to_127_bytes() -> None:
    w = _adapter()
    assert w.q("a" * 127) == '"' + "a" * 127 + '"'
    with pytest.raises(WarehouseError, match="127"):
        w.q("a" * 128)


def test_compat_mode_drops_physical_design_and_uses_bytea() -> None:
    rs, pg = _adapter(), _adapter(compat_postgres=True)
    assert rs.table_options("k", ["a", "b"]) == ' DISTKEY("k") SORTKEY("a", "b")'
    assert pg.table_options("k", ["a", "b"]) == ""
    assert rs.sql_type(pa.binary()) == "VARBYTE(1024000)" and pg.sql_type(pa.binary()) == "BYTEA"
    assert pg.sql_type(pa.string()) == "VARCHAR(65535)"
    assert pg.session_setup() == () == rs.session_setup()


def test_capabilities_are_class_constants() -> None:
    assert (Redshift.ENGINE, Redshift.DIALECT) == ("redshift", "redshift")
    assert Redshift.MAX_IDENTIFIER_LENGTH == 127 and Redshift.TRUNCATE_COMMITS
    assert Redshift.KEYED_INSERT == "anti_join" and Redshift.TEXT_TYPE == "VARCHAR(65535)"


def test_dist_and_sort_keys_must_be_columns(cfg: Config) -> None:
    def bad(rec: Recorder) -> None:
        rec.create_table("s", "t", [Column("a", pa.int64())], sort_key=["a", "nope"])

    with pytest.raises(ConfigError, match="sort_key of s.t: column 'nope'"):
        record(cfg, bad)


# ------------------------------------------------------------------ JSON documents as SUPER


def test_json_columns_are_super_in_raw_mart_and_history_ddl(cycle_cfg: Config) -> None:
    """`warehouse.json_as: super`: the columns a table lists in `json_columns` are SUPER in its
    raw table, in the mart made from it and in its history period; other text stays VARCHAR;
    COPY is unchanged (the staged file carries the JSON logical type)."""
    data = cycle_cfg.model_dump(by_alias=True)
    data["warehouse"]["json_as"] = "super"
    for t in data["tables"]:
        if t["name"] == "uni_tracking_info":
            t["json_columns"] = ["status"]
    cfg = Config.model_validate(data)
    statements = render_plan(cfg, "cycle")
    creates = {
        m.group(1): s
        for s in statements
        if (m := re.match(r'CREATE TABLE IF NOT EXISTS "[^"]+"\."([^"]+)"', s))
    }
    for table in ("uni_tracking_info_raw", "mart_uni_tracking_info"):
        assert '"status" SUPER' in creates[table], creates[table]
    (hist,) = [s for t, s in creates.items() if t.startswith("hist_uti_")]
    assert '"status" SUPER' in hist
    assert '"code" VARCHAR(65535)' in creates["uni_tracking_spath_raw"]
    assert "SUPER" not in creates["uni_tracking_spath_raw"]
    for s in statements:
        sqlglot.parse_one(s, read="redshift")
    # the default keeps JSON as text
    assert not any("SUPER" in s for s in render_plan(cycle_cfg, "cycle"))


def test_a_super_column_cannot_be_a_sort_or_dist_key(cycle_cfg: Config) -> None:
    data = cycle_cfg.model_dump(by_alias=True)
    data["warehouse"]["json_as"] = "super"
    for t in data["tables"]:
        if t["name"] == "uni_tracking_spath":  # its sort_key is [pathTime, code, order_id]
            t["json_columns"] = ["code"]
    with pytest.raises(ConfigError, match="sort_key of .*'code' holds JSON documents"):
        render_plan(Config.model_validate(data), "sync")


def test_a_check_query_takes_its_shape_without_parameters() -> None:
    """`typed_nulls`: the query of a check with parameters, for ``CREATE TABLE … AS``: each
    marker a NULL of its value's type; a ``?`` in a string or a quoted name is not a marker."""
    sql = "SELECT a, 'why?' AS \"q?\" FROM t WHERE b < ? AND c = ? AND d > ? AND e = ? AND f = ?"
    shaped = _adapter().typed_nulls(sql, (dt.datetime(2026, 1, 1), 3, "x", None, Decimal("1.25")))
    assert shaped == (
        "SELECT a, 'why?' AS \"q?\" FROM t WHERE b < CAST(NULL AS TIMESTAMP) AND "
        "c = CAST(NULL AS BIGINT) AND d > CAST(NULL AS VARCHAR(65535)) AND e = NULL AND "
        "f = CAST(NULL AS DECIMAL(38,2))"
    )
    assert redshift_problems(Sent(f"CREATE TABLE x AS SELECT * FROM ({shaped}) s", (), True)) == []
