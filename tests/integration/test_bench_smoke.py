"""The benchmarks' `--short` modes run end to end (a smoke test: they still work against the
current code and print their figures). No figure is asserted: a benchmark's times belong in
bench/README.md, measured with ratios against a reference of the same run, never in a test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MySQLDb
from tests.integration.synctools import wait_for_no_other_writers

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(BENCH.parent / "src")}
    done = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a guard against a hang, not a measure
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.servers
def test_sync_bench_short(mysql_db: MySQLDb, tmp_path: Path, hold_serial: None) -> None:
    wait_for_no_other_writers(mysql_db)
    out = _run(
        [
            str(BENCH / "sync_bench.py"),
            "--short",
            "--skip-dlt",
            "--database",
            mysql_db.database,
            "--mysql-host",
            mysql_db.host,
            "--mysql-port",
            str(mysql_db.port),
            "--workdir",
            str(tmp_path),
        ],
        tmp_path,
    )
    for figure in (
        "trackline sync, initial load",
        "trackline sync, nothing changed",
        "nothing changed: the table's own time",
    ):
        assert figure in out, out


def test_mart_bench_short_on_duckdb(tmp_path: Path) -> None:
    out = _run(
        [
            str(BENCH / "mart_bench.py"),
            "--short",
            "--engines",
            "duckdb",
            "--workdir",
            str(tmp_path),
        ],
        tmp_path,
    )
    assert "duckdb: 400,000 / 100,000 orders cycle time" in out, out
