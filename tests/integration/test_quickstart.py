"""The README's Quick start, run as written on a fresh folder against the suite's MariaDB.

The commands are read from the ``bash`` block under "## Quick start" in README.md: the setup
lines (bootstrap, activate) are what this test environment already is; ``export`` lines set
the variables they name, with this server's values; every ``trackline`` line runs as written,
through the installed ``trackline`` command, in a fresh folder (DuckDB warehouse and local
stage next to the config `trackline init` writes). The source database holds the tables the
example config expects.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MySQLDb
from trackline.config import load_config
from trackline.load import open_warehouse

ROOT = Path(__file__).resolve().parents[2]
SETUP = ("scripts/bootstrap.sh", "source .venv/bin/activate")

TABLES_DDL = [
    """CREATE TABLE uni_tracking_info (id BIGINT AUTO_INCREMENT PRIMARY KEY,
       order_id BIGINT NOT NULL, state INT, update_time DATETIME(6) NOT NULL,
       KEY ix_cursor (update_time, id))""",
    """CREATE TABLE ecs_order_info (id BIGINT AUTO_INCREMENT PRIMARY KEY,
       order_id BIGINT NOT NULL, partner_id INT, add_time DATETIME(6) NOT NULL,
       KEY ix_cursor (add_time, id))""",
    """CREATE TABLE uni_tracking_spath (id BIGINT AUTO_INCREMENT PRIMARY KEY,
       order_id BIGINT NOT NULL, code INT, pathTime DATETIME(6) NOT NULL,
       KEY ix_cursor (pathTime, id))""",
    """CREATE TABLE settlement_claim_detail (ID BIGINT PRIMARY KEY, order_id BIGINT,
       amount DECIMAL(12,2), update_at DATETIME NOT NULL, KEY ix_cursor (update_at, ID))""",
    # dimensions, read whole every run
    "CREATE TABLE partners (partner_id INT PRIMARY KEY, name VARCHAR(50), country CHAR(2))",
    "CREATE TABLE staff (staff_id INT PRIMARY KEY, name VARCHAR(50), role VARCHAR(20))",
    "CREATE TABLE warehouses (warehouse_id INT PRIMARY KEY, city VARCHAR(50))",
    "CREATE TABLE status_codes (code INT PRIMARY KEY, label VARCHAR(50))",
    "CREATE TABLE regions (region_id INT PRIMARY KEY, province VARCHAR(50), city VARCHAR(50))",
]
DIMENSION_ROWS = [
    "INSERT INTO partners VALUES (7, 'Partner seven', 'CN'), (8, 'Partner eight', 'SG')",
    "INSERT INTO staff VALUES (1, 'Li', 'courier'), (2, 'Wang', 'driver')",
    "INSERT INTO warehouses VALUES (1, 'Shenzhen')",
    "INSERT INTO status_codes VALUES (100, 'picked up'), (300, 'in transit'), (500, 'signed')",
    "INSERT INTO regions VALUES (1, 'Guangdong', 'Shenzhen')",
]


def quick_start() -> list[str]:
    """The command lines of the README's Quick start block (comments and continuations
    resolved)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README.md: no ```bash block under ## Quick start"
    lines = block.group(1).replace("\\\n", " ").splitlines()
    return [" ".join(shlex.split(line, comments=True)) for line in lines if line.strip()]


def _seed(db: MySQLDb) -> int:
    """A day-old order history: 6 orders with their events and claims. Returns the orders."""
    for sql in [*TABLES_DDL, *DIMENSION_ROWS]:
        db.execute(sql)
    base = db.query("SELECT NOW(6)")[0][0] - dt.timedelta(days=1)
    orders = range(1001, 1007)
    for i, order in enumerate(orders):
        t = base + dt.timedelta(minutes=i)
        db.execute(
            "INSERT INTO ecs_order_info (order_id, partner_id, add_time) VALUES (%s, 7, %s)",
            (order, t),
        )
        last = t
        for step, code in enumerate((100, 300, 500)[: 1 + i % 3]):
            last = t + dt.timedelta(minutes=10 * (step + 1))
            db.execute(
                "INSERT INTO uni_tracking_spath (order_id, code, pathTime) VALUES (%s, %s, %s)",
                (order, code, last),
            )
        db.execute(
            "INSERT INTO uni_tracking_info (order_id, state, update_time) VALUES (%s, %s, %s)",
            (order, 1 + i % 3, last),
        )
        db.execute(
            "INSERT INTO settlement_claim_detail VALUES (%s, %s, 12.5, %s)", (i + 1, order, t)
        )
    return len(orders)


def _trackline() -> str:
    exe = Path(sys.executable).with_name("trackline")
    assert exe.exists(), f"{exe}: trackline is not installed in this environment"
    return str(exe)


def test_the_readme_quick_start_runs_as_written(mysql_db: MySQLDb, tmp_path: Path) -> None:
    orders = _seed(mysql_db)
    values = {  # what a user would export for this server
        "KUAISONG_HOST": mysql_db.host,
        "KUAISONG_PORT": str(mysql_db.port),
        "KUAISONG_USER": mysql_db.user,
        "KUAISONG_PASSWORD": mysql_db.password,
        "KUAISONG_DATABASE": mysql_db.database,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUAISONG_")}
    env["KUAISONG_PORT"] = values["KUAISONG_PORT"]  # a test server may listen elsewhere
    env["KUAISONG_DATABASE"] = values["KUAISONG_DATABASE"]  # one fresh database per test
    lines = quick_start()
    ran = []
    for line in lines:
        if line in SETUP:
            continue
        words = shlex.split(line)
        if words[0] == "export":
            for assignment in words[1:]:
                name = assignment.split("=", 1)[0]
                assert name in values, f"the Quick start exports {name}, unknown to this test"
                env[name] = values[name]
            continue
        assert words[0] == "trackline", f"unexpected Quick start line: {line}"
        res = subprocess.run(
            [_trackline(), *words[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert res.returncode == 0, f"`{line}` exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
        ran.append((words[1], res.stdout))
    commands = [c for c, _ in ran]
    assert commands[:3] == ["init", "sync", "status"] and "cycle" in commands, commands

    init_out = dict(ran)["init"]
    assert "trackline sync" in init_out and "trackline cycle" in init_out  # what to run next
    assert "settlement_p" in dict(ran)["status"]  # the synced tables are listed
    cfg = load_config(tmp_path / "trackline.yml")
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        mart = wh.t("settlement_ods", "mart_uni_tracking_info")
        assert wh.scalar(f"SELECT COUNT(*) FROM {mart}") == orders
        claims = wh.t("settlement_public", "settlement_claim_detail")
        assert wh.scalar(f"SELECT COUNT(*) FROM {claims}") == orders
        codes = wh.t("settlement_dim", "status_codes")
        assert wh.scalar(f"SELECT COUNT(*) FROM {codes}") == 3
    finally:
        wh.close()


def test_the_quick_start_block_is_found() -> None:
    lines = quick_start()
    assert any(line.startswith("trackline cycle") for line in lines)


@pytest.mark.parametrize("path", ["trackline.yml", "conf/pipeline.yml"])
def test_init_prints_the_next_commands_for_its_file(
    path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from trackline.cli import main

    (tmp_path / "conf").mkdir()
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["init", "--path", path])
    assert r.exit_code == 0, r.output
    c = "" if path == "trackline.yml" else f" -c {path}"
    for command in ("sync", "status", "cycle", "check"):
        assert f"trackline {command}{c} " in r.output
    assert "--source-db" in r.output
