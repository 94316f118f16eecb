"""What the Redshift adapter sends, proven without a cluster.

The statements come from the product feature itself (`render_plan` / `record`, the recorder
behind `trackline sql --engine redshift`): the real sync loop and state store run against a
Redshift adapter that records instead of executing. Every statement must parse with sqlglot's
``redshift`` dialect, and the ones that ARE the design are pinned as expected SQL.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import click
import pyarrow as pa
import pytest
import sqlglot
from click.testing import CliRunner
from sqlglot import exp

from trackline.config import Config, RedshiftWarehouse
from trackline.errors import ConfigError, RetryableWarehouseError, WarehouseError
from trackline.load import Column, StagedFiles
from trackline.load.plan import PLACEHOLDER_ROLE, PLANS, Recorder, record
from trackline.load.redshift import (
    VARBYTE_MAX_BYTES,
    VARCHAR_MAX_BYTES,
    Redshift,
    iam_role_clause,
    render_plan,
    s3_literal,
    sql_literal,
)

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


def test_session_keeps_identifier_case(sync_sql: list[str]) -> None:
    assert sync_sql[0] == "SET enable_case_sensitive_identifier TO true"


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
        '  "pathTime" TIMESTAMP,\n  "_tl_batch_id" BIGINT\n'
        ') DISTKEY("order_id") SORTKEY("pathTime", "code", "order_id")'
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
    assert len(copies) == 4
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
    """DESIGN §1: the data change and the state that says it happened, in ONE transaction."""
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
        'CREATE TEMPORARY TABLE "_tl_batch_1" ("ID" BIGINT, "amount" DOUBLE PRECISION, '
        '"update_at" TIMESTAMP, "_tl_batch_id" BIGINT)'
    )
    assert sync_sql[i + 1].startswith(
        'COPY "_tl_batch_1" ("ID", "amount", "update_at", "_tl_batch_id")\nFROM '
    )
    assert sync_sql[i + 2 : i + 5] == [
        'DELETE FROM "settlement_public"."settlement_claim_detail" WHERE EXISTS '
        '(SELECT 1 FROM "_tl_batch_1" WHERE "_tl_batch_1"."ID" = '
        '"settlement_public"."settlement_claim_detail"."ID")',
        'INSERT INTO "settlement_public"."settlement_claim_detail" '
        '("ID", "amount", "update_at", "_tl_batch_id") '
        'SELECT "ID", "amount", "update_at", "_tl_batch_id" FROM "_tl_batch_1"',
        'DROP TABLE IF EXISTS "_tl_batch_1"',
    ]


def test_full_snapshot_empties_with_delete_in_the_load_transaction(sync_sql: list[str]) -> None:
    marks = _in_transaction(sync_sql)
    i = sync_sql.index('DELETE FROM "settlement_public"."partner"')
    assert marks[i][1]
    assert sync_sql[i + 1].startswith("SELECT column_name FROM information_schema.columns")
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


def test_unsigned_and_time_columns_are_cast_and_loaded_from_a_transient_file(
    cfg: Config,
) -> None:
    statements = record(cfg, _exercise_adapter)
    ddl = next(s for s in statements if s.startswith('CREATE TABLE IF NOT EXISTS "s"'))
    assert '"u32" BIGINT' in ddl and '"u64" DECIMAL(20,0)' in ddl and '"i8" SMALLINT' in ddl
    assert '"bin" VARBYTE(1024000)' in ddl and '"tod" VARCHAR(32)' in ddl
    assert ddl.endswith('DISTKEY("u32") SORTKEY("ts", "s")')
    copy = next(s for s in statements if s.startswith('COPY "s"."all_types"'))
    assert f"FROM '{STAGE}/_trackline_tmp/batch-1.manifest'" in copy
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


def test_plans_are_a_registry_and_unknown_commands_are_named(cfg: Config) -> None:
    assert {"sync", "state"} <= set(PLANS)
    with pytest.raises(ConfigError, match="knows: .*state.*sync"):
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

    from trackline.load.cli import register

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
    assert pg.session_setup() == () and rs.session_setup()


def test_capabilities_are_class_constants() -> None:
    assert (Redshift.ENGINE, Redshift.DIALECT) == ("redshift", "redshift")
    assert Redshift.MAX_IDENTIFIER_LENGTH == 127 and Redshift.TRUNCATE_COMMITS
    assert Redshift.KEYED_INSERT == "anti_join" and Redshift.TEXT_TYPE == "VARCHAR(65535)"


def test_dist_and_sort_keys_must_be_columns(cfg: Config) -> None:
    def bad(rec: Recorder) -> None:
        rec.create_table("s", "t", [Column("a", pa.int64())], sort_key=["a", "nope"])

    with pytest.raises(ConfigError, match="sort_key of s.t: column 'nope'"):
        record(cfg, bad)
