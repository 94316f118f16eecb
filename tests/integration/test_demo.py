"""`trackline demo` end to end on the embedded default (SQLite → local stage → DuckDB)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from trackline.cli import main
from trackline.demo.generator import DemoSpec
from trackline.demo.run import run_demo


def test_demo_archives_reactivates_and_keeps_invariants(tmp_path: Path) -> None:
    # 220 simulated days in 5-day cycles: long enough for 6-month retention to archive and for
    # the dormant orders (> 190 days silent) to come back.
    res = run_demo(tmp_path / "d", DemoSpec(days=220, orders_per_day=25), step_days=5)
    assert res.violations == 0  # G1 and G2 were checked after every cycle
    # ecs rows and scan events corrected after creation: the marts hold the current values
    assert res.changed["ecs_order_info"] > 0 and res.changed["uni_tracking_spath"] > 0
    assert res.parity_gap == {"ecs_order_info": 0, "uni_tracking_spath": 0}
    assert res.cycles == 44
    assert res.archived > 0
    assert any(name.startswith("hist_uti_") for name in res.history)
    assert any(name.startswith("hist_ecs_") for name in res.history)
    assert any(name.startswith("hist_uts_") for name in res.history)
    assert res.reactivated > 0 and res.restored > 0
    assert res.exceptions.get("null_key", 0) > 0  # NULL order_ids were kept out and logged
    assert res.primary_result and res.primary_result[0][:2] == (382, "Kuaisong Direct")
    # partners is an scd2 dimension: some partner changed, its versions chain without gaps
    versions = res.partner_history
    assert len(versions) > 1
    assert [v[5] for v in versions] == [False] * (len(versions) - 1) + [True]
    assert all(a[4] == b[3] for a, b in zip(versions, versions[1:], strict=False))
    assert all(a[1:3] != b[1:3] for a, b in zip(versions, versions[1:], strict=False))
    # bounded: the anchor stops growing once retention trims as fast as orders arrive
    sizes = [row["mart_uni_tracking_info"] for row in res.sizes]
    assert sizes[-1] < 1.2 * max(sizes[: len(sizes) // 2 + 2]) + 500


def test_demo_command_is_rerunnable(tmp_path: Path) -> None:
    runner = CliRunner()
    args = [
        "demo",
        "--workdir",
        str(tmp_path / "w"),
        "--days",
        "20",
        "--orders-per-day",
        "10",
        "--step-days",
        "5",
    ]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "0 violations" in first.output
    again = runner.invoke(main, args)  # from scratch: same result, no leftovers
    assert again.exit_code == 0, again.output
    assert "4 cycles" in again.output
    # the suggested query runs as printed (one line, never wrapped), with no DuckDB CLI
    line = next(x for x in again.output.splitlines() if x.startswith("Query the warehouse: "))
    argv = shlex.split(line.removeprefix("Query the warehouse: "))
    assert Path(argv[0]) == Path(sys.executable) and argv[1] == "-c"
    ran = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stderr
    assert "orders" in ran.stdout


def test_demo_without_the_parity_options_shows_the_gap(tmp_path: Path) -> None:
    res = run_demo(tmp_path / "d", DemoSpec(days=40, orders_per_day=25), step_days=5, parity=False)
    assert res.violations == 0
    assert res.parity_gap["ecs_order_info"] > 0
    assert res.parity_gap["uni_tracking_spath"] > 0
    on = run_demo(tmp_path / "e", DemoSpec(days=40, orders_per_day=25), step_days=5)
    assert on.parity_gap == {"ecs_order_info": 0, "uni_tracking_spath": 0}
