"""Schema drift, bad input, secrets and concurrency (G5, G6) for `trackline sync`.

Bad input goes through the real CLI (click's CliRunner): each case must end with a one-line
error naming the thing to fix, a non-zero exit code, and nothing written to the target.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from pydantic import SecretStr

from tests.conftest import MySQLDb
from tests.integration.synctools import (
    ORDER_COLS,
    create_orders,
    insert_orders,
    ledger,
    make_config,
    mysql_user,
    one,
    source_rows,
    state_watermark,
    sync_ok,
    table,
    warehouse,
    wh_count,
    wh_exists,
    wh_query,
    wh_rows,
    write_config,
)
from trackline.cli import main
from trackline.config import Config, DuckDBWarehouse, PostgresWarehouse
from trackline.load import open_warehouse
from trackline.sync import sync

Warehouse = DuckDBWarehouse | PostgresWarehouse
PAST = dt.datetime(2024, 3, 1, 8, 0, 0)


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def error_lines(result: Result) -> list[str]:
    return [ln for ln in result.output.splitlines() if "error" in ln.lower()]


def nothing_written(cfg: Config, key: str = "public.orders_raw") -> None:
    schema, name = key.split(".")
    if isinstance(cfg.warehouse, DuckDBWarehouse) and not cfg.warehouse.path.exists():
        return
    assert not wh_exists(cfg, schema, name)
    if wh_exists(cfg, cfg.state_schema, "watermarks"):
        assert ledger(cfg, key) == []
        wm = state_watermark(cfg, key)
        assert wm.ts is None and wm.id is None
    assert not list(Path(cfg.stage.url).rglob("*.parquet"))


# --------------------------------------------------------------------------- drift


def _two_tables(mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path) -> Config:
    create_orders(mysql_db, 6, PAST)
    mysql_db.execute(
        "CREATE TABLE parcels (id INT PRIMARY KEY, weight DECIMAL(8,3), "
        "update_time DATETIME(6) NOT NULL)"
    )
    mysql_db.executemany(
        "INSERT INTO parcels VALUES (%s, %s, %s)", [(i, f"{i}.5", PAST) for i in range(1, 4)]
    )
    return make_config(mysql_db, warehouse_config, tmp_path / "stage", [table(), table("parcels")])


def test_new_nullable_column_is_added_and_reported(
    mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path
) -> None:
    cfg = _two_tables(mysql_db, warehouse_config, tmp_path)
    sync_ok(cfg)
    mysql_db.execute("ALTER TABLE orders ADD COLUMN carrier VARCHAR(16) NULL")
    mysql_db.execute("UPDATE orders SET carrier = 'SF', update_time = NOW(6) WHERE id = 2")
    insert_orders(mysql_db, ["NOW"])
    mysql_db.execute("UPDATE orders SET carrier = 'YTO' WHERE id = 7")

    res = {r.table: r for r in sync_ok(cfg)}
    assert res["orders"].rows == 2
    assert any("carrier" in w and "added" in w for w in res["orders"].warnings)
    assert not res["parcels"].warnings
    rows = wh_rows(cfg, "public.orders_raw", ["id", "carrier"], ["id", "_tl_batch_id"])
    assert rows == [
        (1, None),
        (2, None),
        (2, "SF"),
        (3, None),
        (4, None),
        (5, None),
        (6, None),
        (7, "YTO"),
    ]
    # The next run knows the column: no second warning.
    assert not one(sync_ok(cfg, ["orders"])).warnings


@pytest.mark.parametrize(
    ("alter", "said"),
    [
        ("ALTER TABLE orders DROP COLUMN status", "column 'status' was dropped"),
        (  # fewer decimals: narrowing (more digits is a widening, applied: test_drift_widening)
            "ALTER TABLE orders MODIFY amount DECIMAL(10,1)",
            "column 'amount' changed type decimal128(10, 2) → decimal128(10, 1)",
        ),
        ("ALTER TABLE orders MODIFY id INT NOT NULL AUTO_INCREMENT", "column 'id' changed type"),
        ("ALTER TABLE orders MODIFY order_no BIGINT NOT NULL", "column 'order_no' changed type"),
    ],
    ids=["drop", "decimal", "bigint-to-int", "string-to-int"],
)
def test_dropped_or_changed_column_stops_that_table_only(
    mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path, alter: str, said: str
) -> None:
    cfg = _two_tables(mysql_db, warehouse_config, tmp_path)
    sync_ok(cfg)
    if "order_no" in alter:
        mysql_db.execute("UPDATE orders SET order_no = id")
    before = wh_rows(cfg, "public.orders_raw", [*ORDER_COLS, "_tl_batch_id"])
    wm_before = state_watermark(cfg, "public.orders_raw")
    mysql_db.execute(alter)
    insert_orders_compatible(mysql_db)
    mysql_db.execute("INSERT INTO parcels VALUES (9, 1.25, NOW(6))")

    res = {r.table: r for r in sync(cfg)}
    assert res["parcels"].status == "ok" and res["parcels"].rows == 1
    assert wh_count(cfg, "public.parcels_raw") == 4
    bad = res["orders"]
    assert bad.status == "failed" and bad.error is not None
    assert said in bad.error
    assert "orders" in bad.error and "trackline reset orders" in bad.error
    assert "\n" not in bad.error
    # Nothing half-written: rows, columns, cursor and ledger as before.
    assert wh_rows(cfg, "public.orders_raw", [*ORDER_COLS, "_tl_batch_id"]) == before
    wm = state_watermark(cfg, "public.orders_raw")
    assert (wm.ts, wm.id, wm.extra) == (wm_before.ts, wm_before.id, wm_before.extra)
    assert len(ledger(cfg, "public.orders_raw")) == 1

    # The CLI says the same and exits non-zero.
    path = write_config(tmp_path / "trackline.yml", cfg)
    r = cli("sync", "-c", str(path), "--log-format", "quiet")
    assert r.exit_code == 1
    assert any(said in ln for ln in r.output.splitlines())


def insert_orders_compatible(mysql_db: MySQLDb) -> None:
    cols = [r[0] for r in mysql_db.query("SHOW COLUMNS FROM orders")]
    values = {"order_no": "42", "status": "new", "amount": "1.5"}
    use = [c for c in cols if c in values]
    mysql_db.execute(
        f"INSERT INTO orders ({', '.join(use)}, update_time) VALUES "
        f"({', '.join('%s' for _ in use)}, NOW(6))",
        [values[c] for c in use],
    )


# --------------------------------------------------------------------------- bad input


def _orders_cfg(mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path) -> Config:
    create_orders(mysql_db, 5, PAST)
    return make_config(mysql_db, warehouse_config, tmp_path / "stage", [table()])


def _yaml_with(cfg: Config, path: Path, edit: Any) -> Path:
    data = yaml.safe_load(write_config(path, cfg).read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_malformed_yaml(mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path) -> None:
    cfg = _orders_cfg(mysql_db, warehouse_config, tmp_path)
    path = write_config(tmp_path / "trackline.yml", cfg)
    text = path.read_text()
    path.write_text(text.replace("tables:", "tables: [\n  oops: {", 1))
    r = cli("sync", "-c", str(path))
    assert r.exit_code == 2
    (line,) = error_lines(r)
    assert "malformed YAML" in line and str(path) in line
    nothing_written(cfg)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda d: d["tables"][0]["cdc"].update(strategy="upsert"), "tables[0].cdc.strategy"),
        (lambda d: d["tables"][0].update(name="orders; DROP TABLE orders"), "tables[0].name"),
        (lambda d: d["tables"][0].update(target_schema='pub"lic'), "tables[0].target_schema"),
        (lambda d: d["tables"][0]["cdc"].update(cursor="update_time`--"), "tables[0].cdc.cursor"),
        (lambda d: d["tables"][0].update(primary_key=["id'; --"]), "tables[0].primary_key[0]"),
        (
            lambda d: d["sources"]["kuaisong"].update(database="x`; DROP"),
            "sources.kuaisong.database",
        ),
    ],
    ids=["strategy", "name", "schema", "cursor", "primary-key", "database"],
)
def test_config_errors_name_the_key(
    mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path, edit: Any, named: str
) -> None:
    cfg = _orders_cfg(mysql_db, warehouse_config, tmp_path)
    path = _yaml_with(cfg, tmp_path / "trackline.yml", edit)
    r = cli("sync", "-c", str(path))
    assert r.exit_code == 2, r.output
    (line,) = error_lines(r)
    assert f"{path}:" in line and named in line
    nothing_written(cfg)
    assert mysql_db.query("SELECT COUNT(*) FROM orders") == [(5,)]  # nothing ran on the source


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (
            lambda d, db: d["tables"][0]["cdc"].update(cursor="changed_at"),
            "cdc.cursor column 'changed_at' does not exist",
        ),
        (
            lambda d, db: d["tables"][0]["cdc"].update(id="order_key"),
            "cdc.id column 'order_key' does not exist",
        ),
        (lambda d, db: d["tables"][0].update(name="nope"), "table {db}.nope not found"),
        (
            lambda d, db: d["sources"]["kuaisong"].update(port=1),
            "cannot reach MySQL at 127.0.0.1:1",
        ),
        (
            lambda d, db: d["sources"]["kuaisong"].update(database="tl_no_such_db"),
            "database does not exist",
        ),
    ],
    ids=["cursor-column", "id-column", "table", "unreachable", "database"],
)
def test_source_errors_are_one_line_and_write_nothing(
    mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path, edit: Any, named: str
) -> None:
    cfg = _orders_cfg(mysql_db, warehouse_config, tmp_path)
    path = _yaml_with(cfg, tmp_path / "trackline.yml", lambda d: edit(d, mysql_db.database))
    r = cli("sync", "-c", str(path), "--log-format", "quiet")
    assert r.exit_code == 1, r.output
    (line,) = error_lines(r)
    assert named.format(db=mysql_db.database) in line
    key = "public.nope_raw" if "nope" in named else "public.orders_raw"
    nothing_written(cfg, key)
    runs = wh_query(cfg, "SELECT status, error FROM trackline.runs")
    assert [r[0] for r in runs] == ["failed"]


def test_wrong_password(mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path) -> None:
    cfg = _orders_cfg(mysql_db, warehouse_config, tmp_path)
    with mysql_user(mysql_db, "right-password") as user:
        path = _yaml_with(
            cfg,
            tmp_path / "trackline.yml",
            lambda d: d["sources"]["kuaisong"].update(user=user, password="wrong-password"),
        )
        r = cli("sync", "-c", str(path), "--log-format", "quiet")
    assert r.exit_code == 1
    (line,) = error_lines(r)
    assert "refused the login" in line and repr(user) in line
    assert "password" in line  # says what to check
    assert "wrong-password" not in r.output
    nothing_written(cfg)


# --------------------------------------------------------------------------- secrets

SECRET = "Zq9!pw/S3cr3t@x%"


def test_passwords_appear_nowhere(
    mysql_db: MySQLDb,
    warehouse_config: Warehouse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_orders(mysql_db, 5, PAST)
    monkeypatch.setenv("TL_TEST_SECRET", SECRET)
    forms = {SECRET, urllib.parse.quote(SECRET, safe=""), urllib.parse.quote(SECRET)}
    with mysql_user(mysql_db, SECRET) as user, mysql_user(mysql_db, "other") as other:
        cfg = make_config(mysql_db, warehouse_config, tmp_path / "stage", [table()])
        base = yaml.safe_load(write_config(tmp_path / "base.yml", cfg).read_text())
        base["sources"]["kuaisong"].update(user=user, password="${TL_TEST_SECRET}")
        if base["warehouse"]["type"] == "postgres":  # trust auth: any password is accepted
            base["warehouse"]["password"] = "${TL_TEST_SECRET}"

        def variant(name: str, edit: Any) -> str:
            data = yaml.safe_load(yaml.safe_dump(base))
            edit(data)
            p = tmp_path / f"{name}.yml"
            p.write_text(yaml.safe_dump(data, sort_keys=False))
            return str(p)

        outputs: list[str] = []
        runs = [
            ("ok", lambda d: None, 0),
            ("no-table", lambda d: d["tables"][0].update(name="nope"), 1),
            ("no-column", lambda d: d["tables"][0]["cdc"].update(cursor="nope"), 1),
            ("login", lambda d: d["sources"]["kuaisong"].update(user=other), 1),
            ("bad-db", lambda d: d["sources"]["kuaisong"].update(database="${TL_TEST_SECRET}"), 2),
            ("bad-port", lambda d: d["sources"]["kuaisong"].update(port="${TL_TEST_SECRET}"), 2),
        ]
        for name, edit, code in runs:
            path = variant(name, edit)
            for fmt in ("json", "plain"):
                r = cli("--debug", "sync", "-c", path, "--log-format", fmt)
                assert r.exit_code == code, (name, r.output)
                outputs.append(r.output)
        r = cli("status", "-c", variant("status", lambda d: None))
        assert r.exit_code == 0, r.output
        outputs.append(r.output)

    assert any('"event": "done"' in o for o in outputs)  # the JSON log was produced
    state = []
    with warehouse(cfg) as wh:
        for tbl in ("runs", "batches", "watermarks"):
            state += [repr(row) for row in wh.query(f"SELECT * FROM trackline.{tbl}")]
    assert len(state) > 5
    for text in [*outputs, *state]:
        for form in forms:
            assert form not in text


# --------------------------------------------------------------------------- concurrency


def test_second_sync_exits_when_the_lock_is_held(
    mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path
) -> None:
    cfg = _orders_cfg(mysql_db, warehouse_config, tmp_path)
    path = write_config(tmp_path / "trackline.yml", cfg)
    if isinstance(warehouse_config, PostgresWarehouse):
        holder = open_warehouse(warehouse_config)
        holder.connect()
        try:
            with holder.lock("sync:public.orders_raw"):
                r = cli("sync", "-c", str(path), "--log-format", "quiet")
        finally:
            holder.close()
        message = "another trackline run holds the lock 'sync:public.orders_raw'"
    else:
        code = (
            "import duckdb, sys, time\n"
            f"con = duckdb.connect({str(warehouse_config.path)!r})\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            r = cli("sync", "-c", str(path), "--log-format", "quiet")
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)
        message = f", PID {proc.pid}), and DuckDB lets one process write a file"  # named
    assert r.exit_code == 75, r.output
    (line,) = error_lines(r)
    assert message in line
    if isinstance(warehouse_config, PostgresWarehouse):
        nothing_written(cfg)

    # Once the other run is gone, the same command works.
    r = cli("sync", "-c", str(path), "--log-format", "quiet")
    assert r.exit_code == 0, r.output
    assert wh_rows(cfg, "public.orders_raw") == source_rows(mysql_db)


def test_no_process_privilege_reports_the_hold_is_off(
    mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path
) -> None:
    create_orders(mysql_db, 3, PAST)
    with mysql_user(mysql_db, "pw-select-only", "SELECT") as user:
        cfg = make_config(mysql_db, warehouse_config, tmp_path / "stage", [table()], hold=True)
        src = cfg.sources["kuaisong"].model_copy(
            update={"user": user, "password": SecretStr("pw-select-only")}
        )
        cfg = cfg.model_copy(update={"sources": {"kuaisong": src}})
        res = one(sync_ok(cfg))
    assert res.rows == 3
    assert any("innodb_trx" in w and "PROCESS" in w for w in res.warnings), res.warnings
