"""Bad input to the newer jobs (backfill, consolidate, compare, cdc follow) and to the source
connection: each is refused with an error naming the key, table, column or chunk, leaves
nothing half-written, and never shows a password. Real MariaDB, DuckDB warehouse."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from tests.conftest import MySQLDb
from tests.integration.backfill_world import SECONDS, World, connect, new_world
from tests.integration.synctools import mysql_user, wh_exists, wh_query
from trackline.backfill.handoff import status
from trackline.backfill.run import run as backfill
from trackline.cli import main
from trackline.config import Config, DuckDBWarehouse, parse_config
from trackline.consolidate import consolidate
from trackline.errors import CdcError, MartError
from trackline.marts.cycle import run_cycle
from trackline.sync import sync

START, END = dt.datetime(2024, 11, 1), dt.datetime(2025, 8, 1)


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def source(db: MySQLDb, **over: Any) -> dict[str, Any]:
    return db.source_dict(**over)


def small(db: MySQLDb, tmp_path: Path, **top: Any) -> dict[str, Any]:
    """One source `s`, a DuckDB warehouse, a local stage; `top` adds top-level keys."""
    return {
        "sources": {"s": source(db)},
        "warehouse": {"type": "duckdb", "path": str(tmp_path / "wh.duckdb")},
        "stage": {"url": str(tmp_path / "stage")},
        "defaults": {"lag_seconds": 0},
        **top,
    }


def write(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "trackline.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return str(path)


def hybrid(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "cdc": {"strategy": "hybrid", "cursor": "ts", "id": "id"}, **kw}


# --------------------------------------------------------------------------- backfill


@pytest.fixture
def world(mysql_db: MySQLDb, request: pytest.FixtureRequest, tmp_path: Path) -> World:
    return new_world(mysql_db, request, tmp_path)


def test_a_chunk_whose_conversion_overflows_names_chunk_and_column_and_keeps_nothing(
    world: World, duckdb_warehouse: DuckDBWarehouse
) -> None:
    """The conversion gives a BIGINT where the target holds INT; from April 2025 on a value
    does not fit. Found by: `backfill run --json` said only "a value does not fit its
    declared type: Integer value … not in range", and `backfill status` listed no failed
    chunk."""
    data = world.data(duckdb_warehouse, world.tmp / "stage")
    conversion = "IF(pathTime >= '2025-04-01', 99999999999, code)"
    data["backfill"]["tables"] = [
        {
            "table": "uni_tracking_spath",
            "source_table": "dw_uni_tracking_spath",
            "columns": {"pathTime": SECONDS.format("pathTime"), "code": conversion},
        }
    ]
    cfg = Config.model_validate(data)
    (res,) = backfill(cfg, start=START, end=END)
    assert res.status == "failed" and res.loaded == 5, res
    error = str(res.error)
    assert "chunk 6 (2025-04)" in error and "'uni_tracking_spath'" in error, error
    assert "column 'code'" in error and "99999999999" in error, error
    before = world.legacy.query(
        "SELECT COUNT(*) FROM dw_uni_tracking_spath WHERE pathTime < '2025-04-01'"
    )[0][0]
    for wh in connect(cfg):
        (s,) = status(cfg, wh)
        raw = wh.scalar("SELECT COUNT(*) FROM raw.uni_tracking_spath_raw")
        claimed = wh.scalar(
            "SELECT SUM(row_count) FROM trackline.batches WHERE table_key = ?",
            ("raw.uni_tracking_spath_raw",),
        )
    assert s["done"] == 5 and s["failed_not_done"] == [6], s
    (failed,) = [c for c in s["chunk_rows"] if c["status"] == "failed"]
    assert "column 'code'" in failed["error"]
    assert int(raw) == int(claimed) == int(before)  # chunks 1-5 whole, nothing of chunk 6


@pytest.mark.parametrize("value", ["NULL", "'0000-00-00 00:00:00'"])
def test_legacy_rows_with_a_null_or_zero_time_are_refused_not_silently_left_out(
    world: World, duckdb_warehouse: DuckDBWarehouse, value: str
) -> None:
    """Found by: two legacy rows with a NULL (or zero-date) time column, in no chunk, were
    never loaded, and `backfill run` said ok with `status` showing legacy 32 / loaded 32 of
    the table's 34 rows."""
    world.legacy.execute("ALTER TABLE dw_ecs_order_info MODIFY add_time DATETIME NULL")
    world.legacy.execute("SET SESSION sql_mode = ''")  # (a legacy DW's zero dates)
    world.legacy.execute(f"UPDATE dw_ecs_order_info SET add_time = {value} WHERE id IN (7, 8)")
    cfg = Config.model_validate(world.data(duckdb_warehouse, world.tmp / "stage"))
    with pytest.raises(CdcError) as err:
        backfill(cfg, ["ecs_order_info"], start=START, end=END)
    msg = str(err.value)
    assert (
        "2 row(s) of uniods:" in msg
        and "dw_ecs_order_info have a NULL or zero (0000-00-00) 'add_time'" in msg
    )
    assert "backfill.tables[1].time" in msg and "Nothing was written" in msg, msg
    for wh in connect(cfg):
        assert status(cfg, wh) == []
        assert not wh.table_exists("raw", "ecs_order_info_raw")


def test_a_backfill_query_ending_in_a_line_comment_is_read(
    world: World, duckdb_warehouse: DuckDBWarehouse
) -> None:
    """(As `test_a_query_ending_in_a_line_comment_is_read`, for the legacy side's SELECT.)"""
    data = world.data(duckdb_warehouse, world.tmp / "stage")
    query = (
        "SELECT id, order_id, add_time AS t, "
        + SECONDS.format("add_time")
        + " AS add_time, partner_id FROM dw_ecs_order_info -- the whole table"
    )
    data["backfill"]["tables"] = [{"table": "ecs_order_info", "query": query, "time": "t"}]
    cfg = Config.model_validate(data)
    (res,) = backfill(cfg, start=START, end=END)
    assert res.status == "ok", res.error
    assert res.rows == world.legacy.query("SELECT COUNT(*) FROM dw_ecs_order_info")[0][0]


# --------------------------------------------------------------------------- source names


def test_a_source_column_that_is_no_plain_identifier_is_named_not_a_traceback(
    mysql_db: MySQLDb, tmp_path: Path
) -> None:
    """Found by: a MariaDB column `größe` (or a query's unaliased `v + 1`) ended `sync` and
    `consolidate` with a bare ValueError traceback from the quoting helper."""
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, ts DATETIME NOT NULL, `größe` INT)")
    mysql_db.execute("CREATE TABLE u (id INT PRIMARY KEY, ts DATETIME NOT NULL, v INT)")
    mysql_db.execute("INSERT INTO t VALUES (1, '2024-01-01', 5)")
    mysql_db.execute("INSERT INTO u VALUES (1, '2024-01-01', 5)")
    unaliased = {"name": "q", "query": "SELECT id, ts, v + 1 FROM u"}
    inputs = [{**unaliased, "cdc": {"cursor": "ts", "id": "id"}, "lag_seconds": 0}]
    data = small(
        mysql_db,
        tmp_path,
        tables=[hybrid("t"), {**hybrid("u"), **unaliased}],
        consolidations=[{"name": "k", "key": ["id"], "inputs": inputs}],
    )
    path = write(tmp_path, data)
    r = cli("sync", "-c", path, "--log-format", "quiet")
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.exception
    assert f"table {mysql_db.database}.t: column 'größe' is not a plain identifier" in r.output
    assert "query of table 'q': its output column 'v + 1' is not a plain identifier" in r.output
    r = cli("consolidate", "-c", path, "--json")
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    (res,) = json.loads(r.stdout)
    assert res["status"] == "failed"
    assert "input 'q'" in res["error"] and "'v + 1'" in res["error"], res
    cfg = parse_config(Path(path).read_text())
    for key in ("t_raw", "q_raw", "parcel_detail_tool", "parcel_detail_tool_staging"):
        assert not wh_exists(cfg, "public", key), key
    assert wh_query(cfg, "SELECT COUNT(*) FROM trackline.batches") == [(0,)]
    assert not list((tmp_path / "stage").rglob("*.parquet"))


def test_a_query_ending_in_a_line_comment_is_read(mysql_db: MySQLDb, tmp_path: Path) -> None:
    """Found by: a valid `query:` ending in `-- comment` (or `# comment`) failed in sync and
    consolidate with "You have an error in your SQL syntax ... near ''": the comment hid the
    `) AS _tl_src …` trackline wraps around the query."""
    mysql_db.execute("CREATE TABLE u (id INT PRIMARY KEY, ts DATETIME NOT NULL, v INT)")
    mysql_db.execute("INSERT INTO u VALUES (1, '2024-01-01', 5), (2, '2024-01-02', 6)")
    line = "SELECT id, ts, v FROM u -- every row"
    inputs = [{"name": "a", "query": "SELECT id, ts, v FROM u # every row"}]
    data = small(
        mysql_db,
        tmp_path,
        tables=[{**hybrid("q"), "query": line}],
        consolidations=[
            {
                "name": "k",
                "key": ["id"],
                "inputs": [
                    {**i, "cdc": {"cursor": "ts", "id": "id"}, "lag_seconds": 0} for i in inputs
                ],
            }
        ],
    )
    cfg = parse_config(yaml.safe_dump(data))
    (res,) = sync(cfg)
    assert res.status == "ok" and res.rows == 2, res
    for wh in connect(cfg):
        (c,) = consolidate(cfg, wh)
        assert c.ok and c.merged == 2, c.error


@pytest.mark.parametrize("kind", ["DOUBLE", "DECIMAL(13,3)"])
def test_a_cursor_of_fractional_seconds_is_refused_not_read_as_nothing(
    mysql_db: MySQLDb, tmp_path: Path, kind: str
) -> None:
    """Found by: unix seconds in a DOUBLE (or DECIMAL) cursor column: sync and consolidate
    said ok with 0 rows, run after run (the column was compared with a DATETIME bound)."""
    mysql_db.execute(f"CREATE TABLE u (id INT PRIMARY KEY, ts {kind} NOT NULL, v INT)")
    mysql_db.execute("INSERT INTO u VALUES (1, 1700000000.5, 5), (2, 1700000001.25, 6)")
    inputs = [{"name": "a", "table": "u", "cdc": {"cursor": "ts", "id": "id"}, "lag_seconds": 0}]
    data = small(
        mysql_db,
        tmp_path,
        tables=[hybrid("u")],
        consolidations=[{"name": "k", "key": ["id"], "inputs": inputs}],
    )
    cfg = parse_config(yaml.safe_dump(data))
    (res,) = sync(cfg)
    assert res.status == "failed", res
    says = f"the cursor column 'ts' is {kind.lower()}; a time cursor must be a DATETIME"
    assert f"table 'u': {says}" in str(res.error), res.error
    for wh in connect(cfg):
        (c,) = consolidate(cfg, wh)
        assert not c.ok and f"consolidation 'k', input 'a': {says}" in str(c.error), c.error
    assert not wh_exists(cfg, "public", "u_raw")
    assert not wh_exists(cfg, "public", "parcel_detail_tool_staging")


# --------------------------------------------------------------------------- passwords


def test_a_password_beyond_latin1_logs_in_and_a_wrong_one_is_never_shown(
    mysql_db: MySQLDb, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by: a source password with `€` ended every command with a bare
    UnicodeEncodeError (PyMySQL encodes a str password as Latin-1), although MariaDB and the
    data reader (connectorx, UTF-8) take it; one with `ä` was refused as a wrong login."""
    right, wrong = "Rïght-€-pässwörd", "Wrøng-€-pässwörd"
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, ts DATETIME NOT NULL, v INT)")
    mysql_db.execute("INSERT INTO t VALUES (1, '2024-01-01', 5), (2, '2024-01-02', 6)")
    inputs = [{"name": "a", "table": "t", "cdc": {"cursor": "ts", "id": "id"}, "lag_seconds": 0}]
    caplog.set_level("DEBUG")
    with mysql_user(mysql_db, right) as user:
        data = small(
            mysql_db,
            tmp_path,
            tables=[hybrid("t")],
            consolidations=[{"name": "k", "key": ["id"], "inputs": inputs}],
        )
        data["sources"]["s"].update(user=user, password="${TL_TEST_PW}")
        path = write(tmp_path, data)
        r = cli("sync", "-c", path, "--log-format", "quiet", env={"TL_TEST_PW": right})
        assert r.exit_code == 0, r.output
        cfg = parse_config(Path(path).read_text().replace("${TL_TEST_PW}", right))
        assert wh_query(cfg, "SELECT COUNT(*) FROM public.t_raw") == [(2,)]

        outputs = []
        data["sources"]["s"]["password"] = wrong  # literally in the file, then from the env
        literal = write(tmp_path, data)
        for args, env in (
            (("--debug", "sync", "-c", literal, "--log-format", "json"), None),
            (("consolidate", "-c", literal, "--json"), None),
            (("consolidate", "-c", path, "--log-format", "plain"), {"TL_TEST_PW": wrong}),
        ):
            r = cli(*args, env=env)
            assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
            assert "refused the login" in r.output and repr(user) in r.output, r.output
            outputs.append(r.output)
    state = wh_query(cfg, "SELECT * FROM trackline.runs") + wh_query(
        cfg, "SELECT * FROM trackline.watermarks"
    )
    assert [s for s in state if "refused the login" in repr(s)]  # the failures are recorded
    for text in (*outputs, repr(state), caplog.text):
        for secret in (right, wrong):
            assert secret not in text and urllib.parse.quote(secret) not in text
    assert wh_query(cfg, "SELECT COUNT(*) FROM public.t_raw") == [(2,)]  # nothing more


# --------------------------------------------------------------------------- cdc follow


@pytest.mark.parametrize("lacking", ["driver", "follower"])
def test_a_follow_key_missing_from_either_table_is_refused_before_any_read(
    mysql_db: MySQLDb, tmp_path: Path, lacking: str
) -> None:
    """Found by: a driving table without the `follow_key` column synced fine until its first
    change, then failed every sync with the warehouse's binder error on its raw table; a
    following table without it was told to CREATE INDEX on a column it does not have."""
    mysql_db.execute(
        "CREATE TABLE d (id INT PRIMARY KEY, ts DATETIME NOT NULL, "
        f"{'oid' if lacking == 'driver' else 'order_id'} INT)"
    )
    col = "oid" if lacking == "follower" else "order_id"
    mysql_db.execute(
        f"CREATE TABLE f (id INT PRIMARY KEY, ts DATETIME NOT NULL, {col} INT, KEY ix ({col}))"
    )
    mysql_db.execute("INSERT INTO d VALUES (1, '2024-01-01', 5)")
    mysql_db.execute("INSERT INTO f VALUES (1, '2024-01-01', 5)")
    follow = {"strategy": "follow", "cursor": "ts", "id": "id", "follow": "d"}
    data = small(
        mysql_db,
        tmp_path,
        tables=[hybrid("d"), {"name": "f", "cdc": {**follow, "follow_key": "order_id"}}],
    )
    cfg = parse_config(yaml.safe_dump(data))
    for _ in range(2):  # the second sync follows the driver's new row
        by_name = {r.table: r for r in sync(cfg)}
        assert by_name["d"].status == "ok"
        f = by_name["f"]
        assert f.status == "failed" and f.rows == 0, f
        assert "tables[].cdc.follow_key 'order_id' is not a column of" in str(f.error)
        assert ("driving table 'd'" in str(f.error)) == (lacking == "driver"), f.error
        assert "CREATE INDEX" not in str(f.error)
        mysql_db.execute("INSERT IGNORE INTO d VALUES (2, '2024-01-02', 5)")
    assert not wh_exists(cfg, "public", "f_raw")
    assert wh_query(
        cfg, "SELECT COUNT(*) FROM trackline.batches WHERE table_key = 'public.f_raw'"
    ) == [(0,)]


# --------------------------------------------------------------------------- marts


def _version(d: dict[str, Any]) -> None:
    d["marts"][0]["followers"][1].update(changes="newest", version="time_modified")


def _orphan_time(d: dict[str, Any]) -> None:
    d["marts"][0]["followers"][0]["time"] = "time_modified"


def _tie_breaker(d: dict[str, Any]) -> None:
    d["marts"][0]["anchor"] = {"tie_breaker": "time_modified"}


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (_version, "follower mart_uni_tracking_spath"),
        (_orphan_time, "follower mart_ecs_order_info"),
        (_tie_breaker, "anchor"),
    ],
)
def test_a_mart_column_the_raw_table_lacks_is_named_before_any_mart_is_built(
    world: World, duckdb_warehouse: DuckDBWarehouse, edit: Any, named: str
) -> None:
    """Found by: a `changes: newest` follower's `version`, a one_per_key follower's `time`
    or the anchor's `tie_breaker` naming a column its raw table lacks failed the cycle with
    the warehouse's binder error (no group, follower or key) after the marts were created;
    the other mart columns (key, time, event_key) were checked first already."""
    data = world.data(duckdb_warehouse, world.tmp / "stage")
    edit(data)
    cfg = Config.model_validate(data)
    with pytest.raises(MartError) as err:
        run_cycle(cfg)
    msg = str(err.value)
    assert f"mart group 'order_tracking': {named} column 'time_modified' is not in the raw" in msg
    for wh in connect(cfg):
        assert (
            wh.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'mart'")
            == []
        )


# --------------------------------------------------------------------------- compare


def test_compare_with_a_legacy_table_that_does_not_exist_names_the_entry(
    mysql_db: MySQLDb, tmp_path: Path
) -> None:
    """Found by: the error pointed at `tables[].name` and `source_db` (the sync's keys),
    exit 1 as for a source failure, where the compare entry's `legacy_table` is wrong."""
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, ts DATETIME NOT NULL, v INT)")
    mysql_db.execute("INSERT INTO t VALUES (1, '2024-01-01', 5)")
    entry = {"name": "c", "legacy_table": "t_gone", "table": "t_raw", "key": ["id"]}
    data = small(
        mysql_db,
        tmp_path,
        tables=[hybrid("t")],
        compare={"legacy": "s", "tables": [{**entry, "columns": ["v"]}]},
    )
    path = write(tmp_path, data)
    assert cli("sync", "-c", path, "--log-format", "quiet").exit_code == 0
    r = cli("compare", "-c", path, "--table", "c", "--json")
    assert r.exit_code == 2, r.output
    assert "compare table 'c': legacy_table 't_gone'" in r.output, r.output
    assert "compare.tables[].legacy_table" in r.output and "tables[].name" not in r.output
    cfg = parse_config(Path(path).read_text())
    assert not wh_exists(cfg, "trackline", "compare_results") or wh_query(
        cfg, "SELECT COUNT(*) FROM trackline.compare_results"
    ) == [(0,)]
