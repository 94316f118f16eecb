"""What `trackline status` and `trackline exceptions list` print is complete and readable:
unix watermarks carry their UTC time, table names are never cut, and a list cut at --limit
says so and how to see the rest."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from click.testing import CliRunner

from trackline.cli import main
from trackline.config import load_config
from trackline.demo.generator import DemoSpec
from trackline.demo.run import run_demo
from trackline.load import open_warehouse
from trackline.marts.exceptions import Exceptions
from trackline.marts.status import list_exceptions
from trackline.quality.results import ResultsStore
from trackline.quality.run import run_checks, run_level_alerts
from trackline.quality.status import status_section
from trackline.report import progress_text
from trackline.status import table_status


def test_status_and_exceptions_list_tell_everything(tmp_path: Path) -> None:
    res = run_demo(tmp_path / "d", DemoSpec(days=12, orders_per_day=20), step_days=3)
    cfg_path = res.workdir / "trackline.yml"
    cfg = load_config(cfg_path)
    runner = CliRunner()

    shown = runner.invoke(main, ["status", "-c", str(cfg_path)])
    assert shown.exit_code == 0, shown.output
    rows = table_status(cfg)
    for r in rows:
        # the whole name on one line (not cut at 160 columns, not wrapped)
        assert r["table"] in shown.output, (r["table"], shown.output)
        # a unix watermark is followed by its date and time in UTC
        ts = re.match(r"(\d{9,10})\b", r["watermark"])
        if ts:
            when = dt.datetime.fromtimestamp(int(ts.group(1)), dt.UTC)
            assert f"{when:%Y-%m-%d %H:%M:%S} UTC" in r["watermark"]
    assert any("UTC" in r["watermark"] for r in rows)

    g = cfg.marts[0]
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        exc = Exceptions(wh, g.schema_, g.exceptions_table)
        with wh.transaction():
            for k in range(3):
                exc.record("planted", g.anchor.table, str(900_000 + k), "for the list test")
    finally:
        wh.close()
    everything = list_exceptions(cfg, "open", limit=10_000)
    by_place: dict[str, int] = {}
    for r in everything:
        by_place[r["where"]] = by_place.get(r["where"], 0) + 1
    place, total = max(by_place.items(), key=lambda kv: kv[1])
    assert total >= 3, by_place
    listed = runner.invoke(main, ["exceptions", "list", "--limit", "1", "-c", str(cfg_path)])
    assert listed.exit_code == 0, listed.output
    assert f"-- {place} (the first 1 of {total:,})" in listed.output, listed.output
    assert f"--limit {total} shows them all" in listed.output
    full = runner.invoke(main, ["exceptions", "list", "--limit", "10000", "-c", str(cfg_path)])
    assert "the first" not in full.output and "shows them all" not in full.output


def test_progress_text_names_the_total() -> None:
    assert progress_text(12, 240, "days") == "12 of 240 days"
    assert progress_text(1234, None, "rows") == "1,234 rows"


def test_status_and_report_show_every_checks_latest_result(tmp_path: Path) -> None:
    """`trackline run` evaluates the four run-level checks after every job and every check
    once a day: the latest run alone would hide the daily group checks until the next day."""
    res = run_demo(tmp_path / "d", DemoSpec(days=12, orders_per_day=20), step_days=3)
    cfg = load_config(res.workdir / "trackline.yml")
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        full = run_checks(cfg, wh, send_alerts=False)
        run_level_alerts(cfg, wh)  # what `trackline run` does after a cycle
        latest = ResultsStore(wh, cfg.state_schema).latest_per_check()
        section = status_section(cfg, wh)
    finally:
        wh.close()
    names = {r.name for r in full.results}
    assert len(names) > 5
    assert {c["check_name"] for c in latest} == names
    assert len(latest) == len(names)  # one row per check: its newest
    assert {c["check_name"] for c in section["last_checks"]} == names
