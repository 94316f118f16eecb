"""`trackline compare` against a real MariaDB legacy DW, on DuckDB, PostgreSQL and the
Redshift adapter in compat mode (PostgreSQL underneath).

The two sides hold the same rows in other types (DATETIME vs TIMESTAMP WITH TIME ZONE,
DECIMAL(10,2) vs NUMERIC(18,4), DOUBLE rounded, TINYINT(1) vs BOOLEAN, CHAR padding, empty
string vs NULL, zero dates vs NULL, emoji and CJK text): equal data must give no difference,
and each planted difference must be found and named, and nothing else.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import MySQLDb, PgDb
from tests.integration.test_redshift_marts import RecordingRedshift
from tests.redshift_checks import redshift_problems
from trackline.cli import main
from trackline.compare import CompareResult, compare
from trackline.config import (
    CompareConfig,
    CompareTable,
    Config,
    DuckDBWarehouse,
    RedshiftWarehouse,
)
from trackline.errors import ConfigError
from trackline.load import Warehouse, open_warehouse

DAY = dt.datetime(2024, 3, 1)
UTC = dt.UTC
SCHEMA = "settlement_ods"

LEGACY_DDL = (
    "CREATE TABLE dw_orders (order_id BIGINT UNSIGNED NOT NULL, line INT NOT NULL, "
    "name VARCHAR(64), amount DECIMAL(10,2), weight DOUBLE, flag TINYINT(1), note CHAR(12), "
    "closed_at DATETIME(3) NULL, update_time DATETIME NOT NULL, KEY (order_id, line))"
)
MART_COLUMNS = (
    "order_id BIGINT, line BIGINT, name VARCHAR(256), amount NUMERIC(18,4), "
    "weight DOUBLE PRECISION, flag BOOLEAN, note VARCHAR(40), "
    "closed_at TIMESTAMP WITH TIME ZONE, update_time TIMESTAMP WITH TIME ZONE"
)
NAMES = ["plain", "café", "😀 emoji", "中文名字", "mixed 中 😀 ok"]


def legacy_row(i: int) -> tuple[Any, ...]:
    """Order i (one line), updated on one of 4 days starting at DAY."""
    t = DAY + dt.timedelta(hours=(i * 7) % 96, minutes=i % 60, seconds=i % 60)
    return (
        i,
        1,
        NAMES[i % len(NAMES)] + f" {i}",
        f"{i}.{i % 100:02d}",
        i / 3,
        i % 2,
        "" if i % 11 == 0 else f"n{i}",  # '' on the legacy side: NULL in trackline
        None if i % 5 else t,
        t,
    )


def mart_row(r: tuple[Any, ...]) -> tuple[Any, ...]:
    """The same row as trackline holds it: other types, padding, NULL for '', UTC+2 zone."""
    i, line, name, amount, weight, flag, note, closed, upd = r
    plus2 = dt.timezone(dt.timedelta(hours=2))

    def aware(v: dt.datetime | None) -> dt.datetime | None:
        return None if v is None else v.replace(tzinfo=UTC).astimezone(plus2)

    return (
        i,
        line,
        name,
        amount,
        weight,
        bool(flag),
        None if note == "" else note + "  ",
        aware(closed),
        aware(upd),
    )


def insert(wh: Warehouse, table: str, rows: list[tuple[Any, ...]]) -> None:
    for start in range(0, len(rows), 500):
        part = rows[start : start + 500]
        marks = ", ".join("(" + ", ".join("?" for _ in part[0]) + ")" for _ in part)
        wh.execute(
            f"INSERT INTO {wh.t(SCHEMA, table)} VALUES {marks}", tuple(v for r in part for v in r)
        )


@pytest.fixture(
    params=[
        "duckdb",
        pytest.param("postgres", marks=pytest.mark.servers),
        pytest.param("redshift", marks=pytest.mark.servers),
    ]
)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "duckdb":
        return DuckDBWarehouse(path=tmp_path / "wh.duckdb")
    pg: PgDb = request.getfixturevalue("pg_db")
    if request.param == "postgres":
        return pg.warehouse_config()
    return RedshiftWarehouse(**pg.redshift_compat())


def connected(engine: Any) -> Warehouse:
    """An open connection to the engine's warehouse; on Redshift compat, the recording adapter
    (every statement it sends is checked against Redshift's rules)."""
    wh = RecordingRedshift(engine) if isinstance(engine, RedshiftWarehouse) else None
    wh = wh or open_warehouse(engine)
    wh.connect()
    return wh


def make_cfg(mysql_db: MySQLDb, wh_cfg: Any, **table: Any) -> Config:
    entry = {
        "name": "orders",
        "legacy_table": "dw_orders",
        "table": "mart_orders",
        "schema": SCHEMA,
        "key": ["order_id", "line"],
        "columns": ["name", "amount", "weight", "flag", "note", "closed_at", "update_time"],
        "time": "update_time",
        "chunk": 16,
    }
    entry.update(table)
    return Config(
        sources={"uniods": mysql_db.source_config()},
        warehouse=wh_cfg,
        compare=CompareConfig(tables=[CompareTable(**entry)]),
    )


@pytest.fixture
def world(mysql_db: MySQLDb, engine: Any) -> Iterator[tuple[Config, Warehouse]]:
    """200 equal orders: legacy dw_orders in MariaDB, mart_orders + its history in trackline
    (orders 1-20 archived into hist_orders_2024_h1, read through mart_orders_hist)."""
    mysql_db.execute(LEGACY_DDL)
    legacy = [legacy_row(i) for i in range(1, 201)]
    mysql_db.executemany("INSERT INTO dw_orders VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", legacy)
    # milliseconds only the legacy side keeps: times compare to the second
    mysql_db.execute("UPDATE dw_orders SET closed_at = closed_at + INTERVAL 0.25 SECOND")
    mysql_db.execute("SET SESSION sql_mode = ''")
    mysql_db.execute("UPDATE dw_orders SET closed_at = '0000-00-00 00:00:00' WHERE order_id = 7")
    cfg = make_cfg(mysql_db, engine)
    wh = connected(engine)
    wh.ensure_schema(SCHEMA)
    for t in ("mart_orders", "hist_orders_2024_h1"):
        wh.execute(f"CREATE TABLE {wh.t(SCHEMA, t)} ({MART_COLUMNS})")
    wh.execute(
        f"CREATE VIEW {wh.t(SCHEMA, 'mart_orders_hist')} AS "
        f"SELECT * FROM {wh.t(SCHEMA, 'hist_orders_2024_h1')}"
    )
    rows = [mart_row(r) for r in legacy]
    insert(wh, "hist_orders_2024_h1", rows[:20])
    insert(wh, "mart_orders", rows[20:])
    try:
        yield cfg, wh
    finally:
        wh.close()


def run(cfg: Config, wh: Warehouse, **kw: Any) -> CompareResult:
    before = len(getattr(wh, "sent", []))
    res = compare(cfg, wh, "orders", **kw)
    sent = getattr(wh, "sent", [])[before:]
    assert {s.sql: redshift_problems(s) for s in sent if redshift_problems(s)} == {}
    return res


def found(res: CompareResult) -> dict[str, Any]:
    """Every difference the result names (empty: none)."""
    out: dict[str, Any] = {}
    for k in ("missing_in_trackline", "missing_in_legacy", "duplicates"):
        if getattr(res, k):
            out[k] = getattr(res, f"{k}_sample")
    for c in res.columns.values():
        if c.mismatches:
            out[c.column] = c.sample
    return out


def test_equal_data_in_other_types_compares_equal(world: tuple[Config, Warehouse]) -> None:
    cfg, wh = world
    res = run(cfg, wh)
    assert found(res) == {}
    assert (res.legacy_rows, res.trackline_rows, res.ranges, res.ranges_fetched) == (
        200,
        200,
        1,
        0,
    )
    assert res.ok and res.rows_fetched == 0
    assert "∪ mart_orders_hist" in res.trackline  # archived rows count
    assert sum(a for a, _ in res.days.values()) == 200
    assert all(a == b for a, b in res.days.values())
    said = "; ".join(res.normalisations)
    for words in ("legacy column's scale", "UTC", "zero dates", "trailing", "empty string"):
        assert words in said


def test_empty_string_and_null_differ_when_asked(world: tuple[Config, Warehouse]) -> None:
    """`normalise.empty_as_null: false`: the legacy '' of every 11th order against trackline's
    NULL is a mismatch of that column, and nothing else is."""
    cfg, wh = world
    entry = cfg.compare.tables[0].model_copy(
        update={"normalise": cfg.compare.tables[0].normalise.model_copy(
            update={"empty_as_null": False}
        )}
    )  # fmt: skip
    cfg = cfg.model_copy(update={"compare": CompareConfig(tables=[entry])})
    res = run(cfg, wh)
    assert set(found(res)) == {"note"}
    assert res.columns["note"].mismatches == len(range(11, 201, 11))
    assert res.columns["note"].sample[0] == ("11, 1", "", None)
    assert "empty string as NULL" not in "; ".join(res.normalisations)


def test_each_planted_difference_is_found_and_named(
    world: tuple[Config, Warehouse], mysql_db: MySQLDb
) -> None:
    cfg, wh = world
    m, h = wh.t(SCHEMA, "mart_orders"), wh.t(SCHEMA, "hist_orders_2024_h1")
    wh.execute(f"DELETE FROM {m} WHERE order_id = 30")  # missing in trackline
    mysql_db.execute("DELETE FROM dw_orders WHERE order_id = 40")  # missing in legacy
    wh.execute(f"UPDATE {m} SET name = 'changed' WHERE order_id = 50")
    wh.execute(f"UPDATE {m} SET amount = amount + 0.01 WHERE order_id = 60")
    wh.execute(f"UPDATE {m} SET weight = weight + 1 WHERE order_id = 70")
    wh.execute(f"UPDATE {m} SET flag = NOT flag WHERE order_id = 80")
    wh.execute(f"UPDATE {m} SET note = NULL WHERE order_id = 90")  # NULL vs value
    wh.execute(f"UPDATE {h} SET closed_at = update_time WHERE order_id = 12")  # archived row
    mysql_db.execute("INSERT INTO dw_orders SELECT * FROM dw_orders WHERE order_id = 100")
    # a row both in the mart and in a history period: a duplicate on trackline's side
    wh.execute(f"INSERT INTO {h} SELECT * FROM {m} WHERE order_id = 120")
    # a row archived since (moved from the mart into history): not a difference
    wh.execute(f"INSERT INTO {h} SELECT * FROM {m} WHERE order_id = 110")
    wh.execute(f"DELETE FROM {m} WHERE order_id = 110")
    res = run(cfg, wh)
    upd = legacy_row(12)[-1].strftime("%Y-%m-%d %H:%M:%S")
    assert found(res) == {
        "missing_in_trackline": ["30, 1"],
        "missing_in_legacy": ["40, 1"],
        "duplicates": ["legacy: (100, 1) x2", "trackline: (120, 1) x2"],
        "name": [("50, 1", NAMES[0] + " 50", "changed")],
        "amount": [("60, 1", "60.60", "60.61")],
        "weight": [("70, 1", "23.333333", "24.333333")],
        "flag": [("80, 1", "0", "1")],
        "note": [("90, 1", "n90", None)],
        "closed_at": [("12, 1", None, upd)],
    }
    assert (res.legacy_rows, res.trackline_rows) == (200, 200)
    # one grouped first pass over the whole table (256 parts: one order each here); only the
    # parts holding a planted difference are fetched
    assert res.ranges == 1 and res.ranges_fetched == 10 and res.rows_fetched < 40
    assert not res.ok  # 3 key gaps in 200 rows, 1 mismatch per column in 200: past 0.1 % / 1 %
    kept = wh.query(
        "SELECT table_name, legacy_rows, trackline_rows, missing_in_trackline, "
        "missing_in_legacy, duplicates, mismatches, verdict FROM "
        f"{wh.t('trackline', 'compare_results')} ORDER BY run_at"
    )
    assert [tuple(r[:6]) + (json.loads(r[6])["amount"], r[7]) for r in kept] == [
        ("orders", 200, 200, 1, 1, 2, 1, "fail")
    ]


def test_window_edges_and_days(world: tuple[Config, Warehouse], mysql_db: MySQLDb) -> None:
    """--date D is [D, D+1): a row at D 00:00:00 is in, one at D+1 00:00:00 is out; a row
    whose time differs across the edge is missing on one side of that window."""
    cfg, wh = world
    m = wh.t(SCHEMA, "mart_orders")
    start, end = DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)
    mysql_db.execute("UPDATE dw_orders SET update_time = %s WHERE order_id = 150", (start,))
    mysql_db.execute("UPDATE dw_orders SET update_time = %s WHERE order_id IN (151, 152)", (end,))
    for i, t in ((150, start), (151, end), (152, end - dt.timedelta(seconds=1))):
        wh.execute(f"UPDATE {m} SET update_time = ? WHERE order_id = ?", (t.replace(tzinfo=UTC), i))
    res = run(cfg, wh, since=start, until=end)
    assert found(res) == {"missing_in_legacy": ["152, 1"]}
    legacy_in = sum(1 for i in range(1, 201) if start <= legacy_row(i)[-1] < end and i < 150)
    legacy_in += sum(1 for i in range(153, 201) if start <= legacy_row(i)[-1] < end) + 1
    assert res.legacy_rows == legacy_in and res.trackline_rows == legacy_in + 1
    assert list(res.days) == ["2024-03-02"]
    assert res.days["2024-03-02"] == [legacy_in, legacy_in + 1]


def _cli(cfg: Config, tmp_path: Path, *args: str) -> Any:
    data = cfg.model_dump(mode="json", by_alias=True, exclude={"marts"})
    data["sources"]["uniods"]["password"] = ""
    path = tmp_path / "trackline.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return CliRunner().invoke(main, ["compare", "-c", str(path), *args])


def test_thresholds_and_exit_codes(mysql_db: MySQLDb, tmp_path: Path) -> None:
    """10,000 legacy rows: 9 missing in trackline is a 0.09 % gap (exit 0), 11 is 0.11 %
    (exit 1); 90 mismatching values of a column are 0.9 % (exit 0), 110 are 1.1 % (exit 1);
    an unknown table, an unknown legacy source or a bad config exits 2 naming it."""
    engine = DuckDBWarehouse(path=tmp_path / "wh.duckdb")
    mysql_db.execute(LEGACY_DDL)
    legacy = [legacy_row(i) for i in range(1, 10_001)]
    mysql_db.executemany("INSERT INTO dw_orders VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", legacy)
    cfg = make_cfg(mysql_db, engine, chunk=1000)
    wh = open_warehouse(engine)
    wh.connect()
    try:
        wh.ensure_schema(SCHEMA)
        wh.execute(f"CREATE TABLE {wh.t(SCHEMA, 'mart_orders')} ({MART_COLUMNS})")
        insert(wh, "mart_orders", [mart_row(r) for r in legacy if r[0] > 9])
    finally:
        wh.close()

    def in_mart(sql: str) -> None:
        wh = open_warehouse(engine)
        wh.connect()
        try:
            wh.execute(sql.format(mart=wh.t(SCHEMA, "mart_orders")))
        finally:
            wh.close()

    # 90 names changed: a 0.9 % mismatch passes (at most 1 %), with the 0.09 % key gap
    in_mart("UPDATE {mart} SET name = 'renamed' WHERE order_id BETWEEN 100 AND 189")
    ok = _cli(cfg, tmp_path, "--table", "orders", "--json")
    assert ok.exit_code == 0, ok.output
    out = json.loads(ok.output)
    assert out["missing_in_trackline"] == 9 and out["verdict"] == "pass"
    assert out["key_gap"] == pytest.approx(0.0009)
    assert out["columns"]["name"]["mismatches"] == 90
    assert out["columns"]["name"]["rate"] == pytest.approx(0.009)
    # 110 names changed: 1.1 % fails on that column alone
    in_mart("UPDATE {mart} SET name = 'renamed' WHERE order_id BETWEEN 100 AND 209")
    worse = _cli(cfg, tmp_path, "--table", "orders", "--json")
    assert worse.exit_code == 1, worse.output
    assert json.loads(worse.output)["failures"] == ["name mismatch 1.1000% > 1.0000%"]
    in_mart("DELETE FROM {mart} WHERE order_id IN (5000, 6000)")  # 11 missing: 0.11 %
    bad = _cli(cfg, tmp_path, "--table", "orders")
    assert bad.exit_code == 1, bad.output
    assert _cli(cfg, tmp_path, "--table", "orders", "--no-save").exit_code == 1
    wh = open_warehouse(engine)
    wh.connect()
    try:
        kept = wh.query(
            f"SELECT verdict FROM {wh.t('trackline', 'compare_results')} ORDER BY run_at"
        )
    finally:
        wh.close()
    assert [r[0] for r in kept] == ["pass", "fail", "fail"]
    report = CliRunner().invoke(
        main, ["report", "-c", str(tmp_path / "trackline.yml"), "--html", str(tmp_path / "r.html")]
    )
    assert report.exit_code == 0, report.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Legacy DW comparison (trackline compare)" in page
    assert 'data-series="orders key gap"' in page and "0.1100 %" in page and "0.0900 %" in page
    assert "missing in trackline: 11" in bad.output and "FAIL: key gap 0.1100%" in bad.output
    unknown = _cli(cfg, tmp_path, "--table", "nope")
    assert unknown.exit_code == 2 and "'nope' is not in the config's `compare.tables:`" in (
        unknown.output
    )
    other = _cli(cfg, tmp_path, "--table", "orders", "--legacy", "nope")
    assert other.exit_code == 2 and "the legacy source 'nope' must be a MySQL entry" in (
        other.output
    )
    both = _cli(cfg, tmp_path, "--table", "orders", "--date", "2024-03-01", "--since", "2024-03-01")
    assert both.exit_code == 2 and "--date or --since/--until" in both.output


def test_config_errors_name_the_key_and_line(tmp_path: Path) -> None:
    from trackline.config import load_config

    path = tmp_path / "t.yml"
    path.write_text(
        "sources:\n  kuaisong: {host: 127.0.0.1, database: legacy}\n"
        "compare:\n  tables:\n"
        "    - name: uti\n      legacy_table: dw_uni_tracking_info\n"
        "      table: mart_uni_tracking_info\n      key: [order_id]\n"
        "      columns: [status]\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "compare.legacy" in str(exc.value) and "'uniods'" in str(exc.value)
    path.write_text(
        "sources:\n  uniods: {host: 127.0.0.1, database: legacy}\n"
        "compare:\n  tables:\n"
        "    - name: uti\n      legacy_table: dw_uni_tracking_info\n"
        "      table: somewhere\n      key: [order_id]\n"
        "      columns: [status]\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "compare.tables[0].table" in str(exc.value) and "t.yml:7:" in str(exc.value)
    assert "`schema:`" in str(exc.value)


@pytest.mark.servers
def test_sql_plan_shows_compare_and_its_script_runs(
    tmp_path: Path, pg_db: PgDb, mysql_db: MySQLDb
) -> None:
    """`trackline sql compare`: right after a first cycle, the key span, the first pass
    (figures per part and per day), a differing part's split and the fetch of one of its
    parts, all Redshift SQL; the script runs on PostgreSQL (compat) after the cycle's."""
    from tests.integration.test_sql_plans_run import (
        ODS,
        as_compat_sends,
        empty,
        plan_config,
        run_script,
    )
    from trackline.load.redshift import Redshift
    from trackline.sqlplan import plan_statements, render_plan

    mysql_db.execute(
        "CREATE TABLE dw_uni_tracking_info (order_id BIGINT NOT NULL, status VARCHAR(16), "
        "update_time DATETIME NOT NULL)"
    )
    base = plan_config(tmp_path, pg_db.redshift_compat(), "s3://tl-stage/prod")
    entry = CompareTable(
        name="uti",
        legacy_table="dw_uni_tracking_info",
        table="mart_uni_tracking_info",
        key=["order_id"],
        columns=["status"],
        time="update_time",
    )
    cfg = base.model_copy(
        update={
            "sources": {**base.sources, "uniods": mysql_db.source_config()},
            "compare": CompareConfig(tables=[entry]),
        }
    )
    printed = render_plan(cfg, "compare")
    mart = f'"{ODS}"."mart_uni_tracking_info"'
    assert any(s.startswith('SELECT MIN("order_id"), MAX("order_id")') for s in printed)
    first = 'SELECT "_tl_b", "_tl_d", COUNT(*), SUM('  # figures per part and per day
    assert any(
        s.startswith(first) and mart in s and 'GROUP BY "_tl_b", "_tl_d"' in s for s in printed
    ), printed
    assert any('CAST("update_time" AS DATE) AS "_tl_d"' in s for s in printed)
    assert any("SUM(" in s and "SHA2(" in s for s in printed)  # compat mode: PostgreSQL's form
    assert any(s.startswith('SELECT "_tl_b", COUNT(*), SUM(') and "GROUP BY" in s for s in printed)
    fetch = 'SELECT CAST("order_id" AS VARCHAR), NULLIF(RTRIM("status")'
    assert any(s.startswith(fetch) for s in printed)
    assert any(s.startswith('INSERT INTO "trackline"."compare_results"') for s in printed)
    sent = plan_statements(cfg, "compare", compat=True)
    as_pg = {"SHA2(": "ENCODE(SHA256(CONVERT_TO(", ", 256)": ", 'UTF8')), 'hex')"}
    printed = [functools.reduce(lambda t, kv: t.replace(*kv), as_pg.items(), p) for p in printed]
    assert [s for p in printed if (s := as_compat_sends(p)) is not None] == [s.sql for s in sent]
    assert {s.sql: redshift_problems(s) for s in sent if redshift_problems(s)} == {}  # type: ignore[arg-type]
    assert isinstance(cfg.warehouse, RedshiftWarehouse)
    wh = Redshift(cfg.warehouse)
    wh.connect()
    try:
        empty(wh, cfg)
        run_script(wh, plan_statements(cfg, "cycle", compat=True))
        assert run_script(wh, sent) == len(sent)
    finally:
        wh.close()


def test_string_keys_compare_by_their_text_not_a_collation(mysql_db: MySQLDb, engine: Any) -> None:
    """A VARCHAR key in a case- and accent-insensitive legacy collation ('a', 'A', 'á' are
    three keys), emoji and CJK among them: ranges are split on a number computed from the
    key's SHA-256 on both sides, so each key is found whatever the engines' collations."""
    mysql_db.execute(
        "CREATE TABLE dw_codes (code VARCHAR(32) COLLATE utf8mb4_general_ci NOT NULL, "
        "label VARCHAR(32), update_time DATETIME NOT NULL)"
    )
    keys = ["a", "A", "á", "😀", "中", "b ", *[f"k{i:03d}" for i in range(60)]]
    rows = [(k, f"label {i}", DAY + dt.timedelta(minutes=i)) for i, k in enumerate(keys)]
    mysql_db.executemany("INSERT INTO dw_codes VALUES (%s, %s, %s)", rows)
    cfg = Config(
        sources={"uniods": mysql_db.source_config()},
        warehouse=engine,
        compare=CompareConfig(
            tables=[
                CompareTable(
                    name="codes",
                    legacy_table="dw_codes",
                    table="codes",
                    schema=SCHEMA,
                    key=["code"],
                    columns=["label"],
                    time="update_time",
                    chunk=8,
                )
            ]
        ),
    )
    wh = connected(engine)
    try:
        wh.ensure_schema(SCHEMA)
        wh.execute(
            f"CREATE TABLE {wh.t(SCHEMA, 'codes')} (code VARCHAR(64), label VARCHAR(64), "
            "update_time TIMESTAMP)"
        )
        insert(wh, "codes", [r for r in rows if r[0] != "A"])  # 'A' missing in trackline
        insert(wh, "codes", [("B", "extra", DAY)])  # 'B' missing in the legacy DW
        codes = wh.t(SCHEMA, "codes")
        wh.execute(f"UPDATE {codes} SET label = 'changed' WHERE code = ?", ("中",))
        before = len(getattr(wh, "sent", []))
        res = compare(cfg, wh, "codes")
        sent = getattr(wh, "sent", [])[before:]
        assert {s.sql: redshift_problems(s) for s in sent if redshift_problems(s)} == {}
    finally:
        wh.close()
    assert found(res) == {
        "missing_in_trackline": ["A"],
        "missing_in_legacy": ["B"],
        "label": [("中", "label 4", "changed")],
    }
    # split on the keys' hash: only the few parts holding a difference are fetched
    assert res.ranges_fetched <= 3 and res.rows_fetched < 16


def test_trackline_check_runs_a_configured_compare_over_yesterday(
    mysql_db: MySQLDb, tmp_path: Path
) -> None:
    """`compare.tables[].check: true`: `trackline check` compares the previous UTC day
    (blocking); rows of other days are outside its window."""
    from trackline.quality.run import run_checks
    from trackline.state import utcnow

    yesterday = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    mysql_db.execute(
        "CREATE TABLE dw_codes (id INT NOT NULL, label VARCHAR(32), update_time DATETIME NOT NULL)"
    )
    rows = [(i, f"l{i}", yesterday + dt.timedelta(hours=i)) for i in range(1, 21)]
    rows += [(100, "older", yesterday - dt.timedelta(days=3))]  # outside the window
    mysql_db.executemany("INSERT INTO dw_codes VALUES (%s, %s, %s)", rows)
    entry = CompareTable(
        name="codes",
        legacy_table="dw_codes",
        table="codes",
        schema=SCHEMA,
        key=["id"],
        columns=["label"],
        time="update_time",
        check=True,
    )
    cfg = Config(
        sources={"uniods": mysql_db.source_config()},
        warehouse=DuckDBWarehouse(path=tmp_path / "wh.duckdb"),
        compare=CompareConfig(tables=[entry]),
    )
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        wh.ensure_schema(SCHEMA)
        wh.execute(
            f"CREATE TABLE {wh.t(SCHEMA, 'codes')} (id INTEGER, label TEXT, update_time TIMESTAMP)"
        )
        insert(wh, "codes", rows[:-1])
        report = run_checks(cfg, wh, send_alerts=False)
        r = {x.name: x for x in report.results}["compare.codes"]
        assert (r.status, r.severity) == ("pass", "blocking")
        wh.execute(f"DELETE FROM {wh.t(SCHEMA, 'codes')} WHERE id = 3")
        report = run_checks(cfg, wh, send_alerts=False)
        r = {x.name: x for x in report.results}["compare.codes"]
        assert r.status == "fail" and report.exit_code == 1
        assert r.sample_keys == ["key gap 5.0000% > 0.1000%"]
        kept = wh.query(
            f"SELECT since, legacy_rows, verdict FROM {wh.t('trackline', 'compare_results')}"
        )
        assert sorted(kept, key=lambda k: k[2]) == [
            (yesterday, 20, "fail"),
            (yesterday, 20, "pass"),
        ]
    finally:
        wh.close()


def test_legacy_aggregates_are_held_to_the_stream_limit_not_the_metadata_one(
    mysql_db: MySQLDb,
) -> None:
    """A comparison's figures over a big legacy table run longer than a metadata query may:
    `long_rows` holds them to `stream_timeout_seconds` (server and client socket), while
    `rows` still ends at `read_timeout_seconds`."""
    from trackline.errors import SourceTimeout
    from trackline.extract import open_source

    src = open_source(mysql_db.source_config(read_timeout_seconds=1, stream_timeout_seconds=30))
    try:
        assert src.long_rows("SELECT SLEEP(3)") == [(0,)]
        with pytest.raises(SourceTimeout, match="read_timeout_seconds = 1"):
            src.rows("SELECT SLEEP(3)")
    finally:
        src.close()


def test_part_numbers_are_exact_for_wide_parts_and_decimal_keys(
    mysql_db: MySQLDb, engine: Any
) -> None:
    """A BIGINT UNSIGNED key (DECIMAL(20,0) in the warehouse) whose 256 first-pass parts are
    6.25 * 10^13 keys wide, every 16th holding the last key of its part: a rounded quotient
    (DuckDB divides a DECIMAL into a DOUBLE: 15.999999999999999 became 16) put those keys in
    the next part on one side only, and equal parts differed and were fetched. Only the part
    holding the planted difference is fetched."""
    w = 10**15
    keys = [0, *[b * w + w - 1 for b in range(16)]]
    mysql_db.execute(
        "CREATE TABLE dw_wide (id BIGINT UNSIGNED NOT NULL, label VARCHAR(16), "
        "update_time DATETIME NOT NULL)"
    )
    rows = [(k, f"l{i}", DAY) for i, k in enumerate(keys)]
    mysql_db.executemany("INSERT INTO dw_wide VALUES (%s, %s, %s)", rows)
    entry = CompareTable(
        name="wide",
        legacy_table="dw_wide",
        table="wide",
        schema=SCHEMA,
        key=["id"],
        columns=["label"],
        chunk=2,
    )
    cfg = Config(
        sources={"uniods": mysql_db.source_config()},
        warehouse=engine,
        compare=CompareConfig(tables=[entry]),
    )
    wh = connected(engine)
    try:
        wh.ensure_schema(SCHEMA)
        wh.execute(
            f"CREATE TABLE {wh.t(SCHEMA, 'wide')} (id DECIMAL(20,0), label VARCHAR(16), "
            "update_time TIMESTAMP)"
        )
        insert(wh, "wide", [(k, "changed" if k == 0 else lab, t) for k, lab, t in rows])
        res = compare(cfg, wh, "wide", save=False)
        sent = getattr(wh, "sent", [])
        assert {s.sql: redshift_problems(s) for s in sent if redshift_problems(s)} == {}
    finally:
        wh.close()
    assert found(res) == {"label": [("0", "l0", "changed")]}
    assert (res.ranges, res.ranges_fetched, res.rows_fetched) == (1, 1, 2)


def test_newer_by_counts_keys_whose_legacy_row_changed_later(
    world: tuple[Config, Warehouse], mysql_db: MySQLDb
) -> None:
    """`newer_by: update_time`: a key changed in the legacy DW after trackline read it (its
    legacy update time is later) is counted as legacy newer; one changed only in trackline
    (same update time) is a mismatch but not legacy newer."""
    cfg, wh = world
    entry = cfg.compare.tables[0].model_copy(update={"newer_by": "update_time"})
    cfg = cfg.model_copy(update={"compare": CompareConfig(tables=[entry])})
    later = legacy_row(50)[-1] + dt.timedelta(minutes=5)
    mysql_db.execute(
        "UPDATE dw_orders SET name = 'renamed', update_time = %s WHERE order_id = 50", (later,)
    )
    wh.execute(f"UPDATE {wh.t(SCHEMA, 'mart_orders')} SET name = 'x' WHERE order_id = 60")
    res = run(cfg, wh)
    assert set(found(res)) == {"name", "update_time"}
    assert (res.legacy_newer, res.legacy_newer_sample) == (1, ["50, 1"])


def test_json_key_order_and_float_significant_digits(mysql_db: MySQLDb, engine: Any) -> None:
    """JSON documents equal but for key order and spacing compare equal (PostgreSQL JSONB and
    DuckDB JSON found by type; a Redshift VARCHAR listed in `normalise.json_columns`); floats
    compare at `float_digits` significant digits, at any magnitude. One planted difference
    each: a changed document, a large value off in the 4th digit, a tiny one off in the 5th
    (equal at 6 decimal places: the fixed-places rule would hide it)."""
    mysql_db.execute(
        "CREATE TABLE dw_docs (id BIGINT NOT NULL PRIMARY KEY, doc JSON, reading DOUBLE)"
    )
    redshift = isinstance(engine, RedshiftWarehouse)
    doc_type = {"duckdb": "JSON", "postgres": "JSONB"}.get(engine.type, "VARCHAR(400)")

    def legacy_doc(i: int) -> str:
        return json.dumps({"b": i, "a": [1, 2], "c": {"y": "中 😀", "x": None}}, ensure_ascii=False)

    def mart_doc(i: int) -> str:
        return '{"c":{"x":null,"y":"中 😀"},  "a":[1,2], "b":' + str(i) + "}"

    readings: dict[int, tuple[float | None, float | None]] = {
        i: (i * 1234.5678901, i * 1234.5678901 * (1 + 1e-12)) for i in range(1, 41)
    }
    readings[9] = (9 * 1234.5678901, 9 * 1234.5678901 * 1.001)
    readings[11] = (1.2345e-9, 1.2346e-9)
    readings[13] = (0.0, 0.0)
    readings[15] = (-987.654321, -987.654321)
    readings[17] = (None, None)
    readings[19] = (9.999999999, 9.9999999991)  # rounds up to 1.0000000e1 on both sides
    readings[21] = (3.2e15, 3.2000000000001e15)
    mysql_db.executemany(
        "INSERT INTO dw_docs VALUES (%s, %s, %s)",
        [(i, legacy_doc(i), readings[i][0]) for i in range(1, 41)],
    )
    wh = connected(engine)
    try:
        wh.ensure_schema(SCHEMA)
        wh.execute(
            f"CREATE TABLE {wh.t(SCHEMA, 'docs')} (id BIGINT, doc {doc_type}, "
            "reading DOUBLE PRECISION)"
        )
        rows = [(i, mart_doc(i if i != 7 else 700), readings[i][1]) for i in range(1, 41)]
        cast = "CAST(? AS JSON)" if engine.type == "duckdb" else "?"
        for r in rows:
            wh.execute(f"INSERT INTO {wh.t(SCHEMA, 'docs')} VALUES (?, {cast}, ?)", r)
        entry: dict[str, Any] = {
            "name": "docs",
            "legacy_table": "dw_docs",
            "table": "docs",
            "schema": SCHEMA,
            "key": ["id"],
            "columns": ["doc", "reading"],
            "chunk": 8,
            "normalise": {"float_digits": 8, "json_columns": ["doc"] if redshift else []},
        }
        cfg = Config(
            sources={"uniods": mysql_db.source_config()},
            warehouse=engine,
            compare=CompareConfig(tables=[CompareTable(**entry)]),
        )
        before = len(getattr(wh, "sent", []))
        res = compare(cfg, wh, "docs")
        sent = getattr(wh, "sent", [])[before:]
        assert {s.sql: redshift_problems(s) for s in sent if redshift_problems(s)} == {}
        got = found(res)
        assert sorted(got) == ["doc", "reading"], got
        assert [k for k, _, _ in got["doc"]] == ["7"]
        assert '"b":7,' in got["doc"][0][1] and '"b":700' in got["doc"][0][2]
        assert sorted(k for k, _, _ in got["reading"]) == ["11", "9"]
        assert dict((k, (a, b)) for k, a, b in got["reading"])["11"] == (
            "1.2345000e-9",
            "1.2346000e-9",
        )
        said = "; ".join(res.normalisations)
        assert "8 significant digits" in said and "JSON compared with its keys sorted" in said
        assert not res.missing_in_legacy and not res.missing_in_trackline
    finally:
        wh.close()


@pytest.mark.servers
@pytest.mark.parametrize("kind", ["postgres", "redshift"])
def test_plain_timestamps_compare_whatever_the_session_time_zone(
    mysql_db: MySQLDb, pg_db: PgDb, kind: str
) -> None:
    """A warehouse TIMESTAMP (`timestamp without time zone`) is read as it is: in a database
    whose sessions run in Asia/Shanghai it was once taken for a zoned column, converted
    from UTC and printed 8 hours later, and the window moved with it: every row differed."""
    pg_db.execute(f"ALTER DATABASE \"{pg_db.database}\" SET timezone TO 'Asia/Shanghai'")
    mysql_db.execute(
        "CREATE TABLE dw_scans (id INT NOT NULL, seen DATETIME, update_time DATETIME NOT NULL)"
    )
    rows = [(i, DAY + dt.timedelta(hours=i), DAY + dt.timedelta(hours=i)) for i in range(48)]
    mysql_db.executemany("INSERT INTO dw_scans VALUES (%s, %s, %s)", rows)
    engine = pg_db.warehouse_config() if kind == "postgres" else None
    engine = engine or RedshiftWarehouse(**pg_db.redshift_compat())
    entry = CompareTable(
        name="scans",
        legacy_table="dw_scans",
        table="scans",
        schema=SCHEMA,
        key=["id"],
        columns=["seen"],
        time="update_time",
        chunk=4,
    )
    cfg = Config(
        sources={"uniods": mysql_db.source_config()},
        warehouse=engine,
        compare=CompareConfig(tables=[entry]),
    )
    wh = connected(engine)
    try:
        assert wh.query("SELECT current_setting('TimeZone')") == [("Asia/Shanghai",)]
        wh.ensure_schema(SCHEMA)
        wh.execute(
            f"CREATE TABLE {wh.t(SCHEMA, 'scans')} (id BIGINT, seen TIMESTAMP, "
            "update_time TIMESTAMP)"
        )
        insert(wh, "scans", rows)
        whole = compare(cfg, wh, "scans", save=False)
        day = compare(cfg, wh, "scans", since=DAY, until=DAY + dt.timedelta(days=1), save=False)
    finally:
        wh.close()
    assert found(whole) == {} and (whole.legacy_rows, whole.trackline_rows) == (48, 48)
    assert found(day) == {} and (day.legacy_rows, day.trackline_rows) == (24, 24)
    assert day.days == {"2024-03-01": [24, 24]}
    assert not any("TIME ZONE" in n for n in whole.normalisations)


def test_uts_event_key_with_a_time_in_it(mysql_db: MySQLDb, engine: Any) -> None:
    """The `uts` key (order_id, pathTime, code): 20 events per order, more than `chunk`, so
    a differing order is fetched whole once its part holds that order alone; an event only
    the legacy DW has (gap 2), an event the legacy DW changed later, and an event whose
    time differs (missing on both sides) are named by their full key. The config's mixed-case
    names (`pathTime`) are found on Redshift, which keeps them lower-cased."""
    mysql_db.execute(
        "CREATE TABLE dw_spath (order_id BIGINT NOT NULL, pathTime DATETIME NOT NULL, "
        "code INT NOT NULL, pathInfo VARCHAR(64), PRIMARY KEY (order_id, pathTime, code))"
    )
    rows = [
        (o, DAY + dt.timedelta(minutes=5 * e), 100 * (e % 7 + 1), f"{o} 已签收 {e}")
        for o in range(1001, 1011)
        for e in range(20)
    ]
    mysql_db.executemany("INSERT INTO dw_spath VALUES (%s, %s, %s, %s)", rows)
    plus2 = dt.timezone(dt.timedelta(hours=2))
    mart = [(o, t.replace(tzinfo=UTC).astimezone(plus2), c, i) for o, t, c, i in rows]
    at10, at15 = DAY.replace(minute=10, tzinfo=UTC), DAY.replace(minute=15, tzinfo=UTC)
    mart = [r for r in mart if (r[0], r[1]) != (1003, at10)]  # gap 2
    mart = [
        (o, t + dt.timedelta(seconds=1), c, i) if (o, t) == (1007, at15) else (o, t, c, i)
        for o, t, c, i in mart
    ]
    mysql_db.execute(
        "UPDATE dw_spath SET pathInfo = 'updated' WHERE order_id = 1005 AND code = 300"
    )
    entry = CompareTable(
        name="uts",
        legacy_table="dw_spath",
        table="spath",
        schema=SCHEMA,
        key=["order_id", "pathTime", "code"],
        columns=["pathInfo"],
        time="pathTime",
        chunk=4,
    )
    cfg = Config(
        sources={"uniods": mysql_db.source_config()},
        warehouse=engine,
        compare=CompareConfig(tables=[entry]),
    )
    wh = connected(engine)
    try:
        wh.ensure_schema(SCHEMA)
        wh.execute(
            f"CREATE TABLE {wh.t(SCHEMA, 'spath')} (order_id BIGINT, "
            f"{wh.q('pathTime')} TIMESTAMP WITH TIME ZONE, code INTEGER, "
            f"{wh.q('pathInfo')} VARCHAR(64))"
        )
        insert(wh, "spath", mart)
        res = compare(cfg, wh, "uts", save=False)
        sent = getattr(wh, "sent", [])
        assert {s.sql: redshift_problems(s) for s in sent if redshift_problems(s)} == {}
    finally:
        wh.close()
    assert found(res) == {
        "missing_in_trackline": [
            "1003, 2024-03-01 00:10:00, 300",
            "1007, 2024-03-01 00:15:00, 400",
        ],
        "missing_in_legacy": ["1007, 2024-03-01 00:15:01, 400"],
        "pathInfo": [
            ("1005, 2024-03-01 00:10:00, 300", "updated", "1005 已签收 2"),
            ("1005, 2024-03-01 00:45:00, 300", "updated", "1005 已签收 9"),
            ("1005, 2024-03-01 01:20:00, 300", "updated", "1005 已签收 16"),
        ],
    }
    assert (res.legacy_rows, res.trackline_rows) == (200, 199)
    assert res.ranges_fetched == 3 and res.rows_fetched == 3 * 40 - 1


def test_rows_whose_first_key_column_is_null_are_named(mysql_db: MySQLDb, engine: Any) -> None:
    """Rows with a NULL order_id fall outside every range of order_id: 43 of them (more than
    `chunk`, so they are split on their whole key's hash) beside 100 keyed orders. One only
    the legacy DW has, one only trackline has, one with another name: each is named (key
    `NULL, <line>`) and counts in the key gap; the 40 equal ones are not reported."""
    mysql_db.execute(
        "CREATE TABLE dw_events (order_id BIGINT NULL, line INT NOT NULL, name VARCHAR(32), "
        "update_time DATETIME NOT NULL)"
    )
    keyed = [(o, 1, f"order {o}", DAY + dt.timedelta(minutes=o)) for o in range(1, 101)]
    nulls = [(None, n, f"loose {n}", DAY + dt.timedelta(hours=n)) for n in range(10, 50)]
    legacy = [*keyed, *nulls, (None, 1, "a"), (None, 2, "b"), (None, 3, "only legacy")]
    legacy = [r if len(r) == 4 else (*r, DAY) for r in legacy]
    mart = [*keyed, *nulls, (None, 1, "a", DAY), (None, 2, "b changed", DAY)]
    mart.append((None, 4, "only trackline", DAY))
    mysql_db.executemany("INSERT INTO dw_events VALUES (%s, %s, %s, %s)", legacy)
    cfg = make_cfg(
        mysql_db, engine, legacy_table="dw_events", table="mart_events", columns=["name"]
    )
    wh = connected(engine)
    try:
        wh.ensure_schema(SCHEMA)
        wh.execute(
            f"CREATE TABLE {wh.t(SCHEMA, 'mart_events')} (order_id BIGINT, line BIGINT, "
            "name VARCHAR(32), update_time TIMESTAMP)"
        )
        insert(wh, "mart_events", mart)
        res = run(cfg, wh)
    finally:
        wh.close()
    assert found(res) == {
        "missing_in_trackline": ["NULL, 3"],
        "missing_in_legacy": ["NULL, 4"],
        "name": [("NULL, 2", "b", "b changed")],
    }
    assert (res.legacy_rows, res.trackline_rows) == (143, 143)
    assert res.key_gap == pytest.approx(2 / 143) and not res.ok
    assert res.rows_fetched < 2 * 43  # the NULL-key rows were split before they were fetched


def test_a_legacy_datetime_against_unix_seconds(mysql_db: MySQLDb, engine: Any) -> None:
    """A DATETIME in the legacy DW held as BIGINT unix seconds in trackline compares equal
    (both are hashed as seconds since 1970), a changed one is named with both times written
    alike; such a column cannot be the window's time column."""
    mysql_db.execute(
        "CREATE TABLE dw_stamps (order_id BIGINT NOT NULL, line INT NOT NULL, "
        "closed_at DATETIME NULL, update_time DATETIME NOT NULL)"
    )
    rows = [(o, 1, DAY + dt.timedelta(days=o, seconds=o), DAY) for o in range(1, 41)]
    rows[4] = (5, 1, None, DAY)
    mysql_db.executemany("INSERT INTO dw_stamps VALUES (%s, %s, %s, %s)", rows)
    epoch = dt.datetime(1970, 1, 1)
    mart = [(o, n, t if t is None else int((t - epoch).total_seconds()), u) for o, n, t, u in rows]
    cfg = make_cfg(
        mysql_db, engine, legacy_table="dw_stamps", table="mart_stamps", columns=["closed_at"]
    )
    wh = connected(engine)
    try:
        wh.ensure_schema(SCHEMA)
        wh.execute(
            f"CREATE TABLE {wh.t(SCHEMA, 'mart_stamps')} (order_id BIGINT, line BIGINT, "
            "closed_at BIGINT, update_time TIMESTAMP)"
        )
        insert(wh, "mart_stamps", mart)
        equal = run(cfg, wh, save=False)
        wh.execute(
            f"UPDATE {wh.t(SCHEMA, 'mart_stamps')} SET closed_at = closed_at + 1 WHERE order_id = 7"
        )
        changed = run(cfg, wh, save=False)
        as_time = make_cfg(
            mysql_db,
            engine,
            legacy_table="dw_stamps",
            table="mart_stamps",
            columns=["closed_at"],
            time="closed_at",
        )
        with pytest.raises(ConfigError, match="unix seconds compare as a column only"):
            compare(as_time, wh, "orders", save=False)
    finally:
        wh.close()
    assert found(equal) == {} and equal.rows_fetched == 0 and equal.legacy_rows == 40
    assert found(changed) == {"closed_at": [("7, 1", "2024-03-08 00:00:07", "2024-03-08 00:00:08")]}
