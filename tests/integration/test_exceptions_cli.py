"""`trackline exceptions list|resolve` covers both places exceptions live: the retention
group's table (written by the mart engine and the group checks) and the run-level table of
`trackline check`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import CliRunner

from trackline.cli import main
from trackline.config import load_config
from trackline.demo.generator import DemoSpec
from trackline.demo.run import run_demo
from trackline.marts.cycle import run_cycle
from trackline.marts.status import list_exceptions


def test_list_and_resolve_group_and_run_level_exceptions(tmp_path: Path) -> None:
    res = run_demo(tmp_path / "d", DemoSpec(days=12, orders_per_day=20), step_days=3)
    cfg_path = res.workdir / "trackline.yml"
    cfg = load_config(cfg_path)
    con = sqlite3.connect(res.workdir / "source.db")  # a source table goes: a failed cycle
    con.execute("ALTER TABLE ecs_order_info RENAME TO ecs_gone")
    con.commit()
    assert not run_cycle(cfg).ok
    con.execute("ALTER TABLE ecs_gone RENAME TO ecs_order_info")
    con.commit()
    con.close()
    runner = CliRunner()
    checked = runner.invoke(main, ["check", "-c", str(cfg_path), "--no-alerts"])
    assert "runs.failed_cycle" in checked.output, checked.output

    listed = runner.invoke(main, ["exceptions", "list", "-c", str(cfg_path)])
    assert listed.exit_code == 0, listed.output
    assert "-- settlement_ods.order_tracking_exceptions" in listed.output  # NULL keys
    assert "-- trackline.check_exceptions" in listed.output
    run_level = [r for r in list_exceptions(cfg, "open") if r["where"].startswith("trackline.")]
    assert run_level and all(r["check_name"] == "runs.failed_cycle" for r in run_level)

    target = run_level[0]["id"]
    done = runner.invoke(
        main,
        [
            "exceptions",
            "resolve",
            str(target),
            "--run-level",
            "--note",
            "clock",
            "-c",
            str(cfg_path),
        ],
    )
    assert done.exit_code == 0, done.output
    still_open = {(r["where"], r["id"]) for r in list_exceptions(cfg, "open")}
    assert ("trackline.check_exceptions", target) not in still_open
    # the group's exception with the same id is untouched
    assert ("settlement_ods.order_tracking_exceptions", target) in still_open
