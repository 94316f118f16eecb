"""Every run is recorded, however it ends: real `trackline` processes and real signals.

The process under test is the real CLI, started through a small wrapper that stops it at a
named step (after a batch committed, inside a mart transaction) and tells the test so on
stderr; the test then sends SIGINT, SIGTERM or SIGKILL. Nothing here waits for a time to
pass: each step waits for what the process said, and asserts what the warehouse holds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.quality_world import STATE, UTI, World, day
from trackline.config import Config, DuckDBWarehouse, PostgresWarehouse
from trackline.load import Warehouse, open_warehouse
from trackline.marts.cycle import run_cycle_on

WRAPPER = """
import os, sys, time
import trackline.marts.engine as engine
import trackline.marts.followers as followers
import trackline.sync.syncer as syncer

step, _, nth = os.environ["PAUSE_AT"].partition("@")
release = os.environ.get("PAUSE_RELEASE")
hits = 0


def wrap(original):
    def checkpoint(name):
        global hits
        original(name)
        if name != step:
            return
        hits += 1
        if hits != int(nth or 1):
            return
        print(f"PAUSED at {name}", file=sys.stderr, flush=True)
        while not (release and os.path.exists(release)):
            time.sleep(0.02)

    return checkpoint


for module in (syncer, engine, followers):
    module.checkpoint = wrap(module.checkpoint)
from trackline.cli import main

main()
"""

NEW_ORDERS = range(30, 36)


@pytest.fixture
def world(tmp_path: Path, warehouse_config: DuckDBWarehouse | PostgresWarehouse) -> Iterator[World]:
    w = World(tmp_path, warehouse_config).build()
    for i, order in enumerate(NEW_ORDERS):  # six new orders: three batches of two per table
        w.touch(order, day(46) + 60 + i)
    w.clock(day(46) + 3600)
    w.data["defaults"]["batch_size"] = 2
    # one table after the other: a signal interrupts the step it reaches, mid-batch (tables
    # synced in parallel stop at their next batch boundary: test_cycle_workers)
    w.data["defaults"]["workers"] = 1
    w.cfg = Config.model_validate(w.data)
    w.wh.close()  # DuckDB admits one writing process: the CLI's
    try:
        yield w
    finally:
        w.close()


class Proc:
    """A `trackline` process paused at a step; `lines` is what it wrote to stderr so far."""

    def __init__(self, world: World, args: list[str], pause_at: str) -> None:
        cfg_path = world.tmp / "trackline.yml"
        cfg_path.write_text(yaml.safe_dump(world.data))
        wrapper = world.tmp / "pausing_trackline.py"
        wrapper.write_text(WRAPPER)
        self.release = world.tmp / "release"
        env = {**os.environ, "PAUSE_AT": pause_at, "PAUSE_RELEASE": str(self.release)}
        self.p = subprocess.Popen(
            [sys.executable, str(wrapper), *args, "-c", str(cfg_path), "--log-format", "plain"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []

    def wait_for(self, text: str) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            self.lines.append(line)
            if text in line:
                return
        raise AssertionError(f"the process ended before saying {text!r}: {''.join(self.lines)}")

    def finish(self) -> tuple[int, str]:
        out, err = self.p.communicate(timeout=120)  # a guard against a hang, not a measure
        return self.p.returncode, "".join(self.lines) + err + out


def warehouse(world: World) -> Warehouse:
    wh = open_warehouse(world.cfg.warehouse)
    wh.connect()
    return wh


def runs(wh: Warehouse, command: str) -> list[dict[str, Any]]:
    rows = wh.query(
        f"SELECT run_id, status, rows_moved, error, finished_at FROM {wh.t(STATE, 'runs')} "
        "WHERE command = ? ORDER BY started_at",
        (command,),
    )
    return [
        dict(zip(["run_id", "status", "rows", "error", "finished_at"], r, strict=True))
        for r in rows
    ]


def committed(wh: Warehouse, run_id: str) -> int:
    n = wh.scalar(
        f"SELECT SUM(row_count) FROM {wh.t(STATE, 'batches')} WHERE run_id = ?", (run_id,)
    )
    return int(n or 0)


def mart_keys(wh: Warehouse) -> set[int]:
    return {r[0] for r in wh.query(f"SELECT order_id FROM {wh.t('mart', UTI)}")}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_cycle_is_recorded_with_what_it_committed(
    world: World, sig: signal.Signals
) -> None:
    wh = warehouse(world)
    before = len(runs(wh, "cycle"))
    wh.close()
    proc = Proc(world, ["cycle"], "sync.after_commit@2")  # uti: two batches of two committed
    proc.wait_for("PAUSED at sync.after_commit")
    proc.p.send_signal(sig)
    code, output = proc.finish()
    name = signal.Signals(sig).name
    assert code == 128 + sig, output
    assert f"interrupted (received {name}): committed work stays" in output

    wh = warehouse(world)
    try:
        cycles = runs(wh, "cycle")
        assert len(cycles) == before + 1
        last = cycles[-1]
        assert last["status"] == "interrupted" and last["error"] == f"received {name}"
        assert last["finished_at"] is not None
        assert last["rows"] == committed(wh, last["run_id"]) == 4
        syncs = {r["status"]: r["rows"] for r in runs(wh, "sync") if r["run_id"] == last["run_id"]}
        assert syncs == {"interrupted": 4}  # the table it was in; the others never started
        assert not set(NEW_ORDERS) & mart_keys(wh)  # the marts had not run yet
        # the next cycle carries on from the committed batches and completes
        world.wh = wh
        summary = run_cycle_on(world.cfg, wh)
        assert summary.ok and set(NEW_ORDERS) <= mart_keys(wh)
        assert [r["status"] for r in runs(wh, "cycle")][-2:] == ["interrupted", "ok"]
    finally:
        wh.close()


def test_an_interrupt_inside_a_mart_transaction_rolls_it_back_and_is_recorded(
    world: World,
) -> None:
    proc = Proc(world, ["cycle"], "mart.after_insert")  # the anchor's insert, not committed
    proc.wait_for("PAUSED at mart.after_insert")
    proc.p.send_signal(signal.SIGTERM)
    code, output = proc.finish()
    assert code == 128 + signal.SIGTERM, output
    wh = warehouse(world)
    try:
        last = runs(wh, "cycle")[-1]
        assert last["status"] == "interrupted"
        assert last["rows"] == committed(wh, last["run_id"]) == 18  # 6 orders x 3 tables
        assert not set(NEW_ORDERS) & mart_keys(wh)  # rolled back
        world.wh = wh
        assert run_cycle_on(world.cfg, wh).ok and set(NEW_ORDERS) <= mart_keys(wh)
    finally:
        wh.close()


def test_a_killed_cycle_is_marked_killed_by_the_next_one(world: World) -> None:
    proc = Proc(world, ["cycle"], "sync.after_commit@3")
    proc.wait_for("PAUSED at sync.after_commit")
    proc.p.send_signal(signal.SIGKILL)  # no handler, no finally: the row stays `running`
    code, _ = proc.finish()
    assert code == -signal.SIGKILL
    wh = warehouse(world)
    try:
        dead = runs(wh, "cycle")[-1]
        assert dead["status"] == "running" and dead["finished_at"] is None
        world.wh = wh
        summary = run_cycle_on(world.cfg, wh)  # takes the lock: the dead run holds none
        assert summary.ok
        cycles = {r["run_id"]: r for r in runs(wh, "cycle")}
        killed = cycles[dead["run_id"]]
        assert killed["status"] == "killed" and killed["finished_at"] is not None
        assert killed["rows"] == committed(wh, dead["run_id"]) == 6
        assert "ended without recording" in killed["error"]
        assert cycles[summary.run_id]["status"] == "ok"
        # found once: a later cycle does not touch it again
        assert run_cycle_on(world.cfg, wh).ok
        assert [r["status"] for r in runs(wh, "cycle")].count("killed") == 1
    finally:
        wh.close()


def test_sigterm_to_run_finishes_the_cycle_and_exits_0_despite_an_earlier_failure(
    world: World,
) -> None:
    # A blocking check fails in the daily `checks` job of the first round ...
    wh = warehouse(world)
    wh.execute(f"DELETE FROM {wh.t('mart', 'mart_ecs_order_info')} WHERE order_id = 6")
    wh.close()
    proc = Proc(world, ["run"], "sync.after_commit@1")  # ... after a cycle stopped half-way
    proc.wait_for("PAUSED at sync.after_commit")
    proc.p.send_signal(signal.SIGTERM)  # the flag is set; the cycle goes on when released
    proc.wait_for("received SIGTERM: finishing the running step")
    proc.release.touch()
    code, output = proc.finish()
    assert code == 0, output
    assert "received SIGTERM: finished the running step and stopped" in output
    wh = warehouse(world)
    try:
        last = runs(wh, "cycle")[-1]
        assert last["status"] == "ok" and last["rows"] == 18  # finished cleanly
        jobs = wh.query(
            f"SELECT table_key, status, detail FROM {wh.t(STATE, 'runs')} "
            "WHERE command = 'schedule' ORDER BY started_at"
        )
        assert [(j[0], j[1]) for j in jobs] == [("cycle", "ok")]  # nothing new started
        assert json.loads(jobs[0][2])["stop_requested"] is True
    finally:
        wh.close()

    # the next start runs the checks that were due: one fails (exit 1 on a plain stop is
    # still 0, but a --once run reports its own failure)
    proc = Proc(world, ["run"], "never.reached")
    proc.wait_for("checks: failed")
    proc.p.send_signal(signal.SIGTERM)
    code, output = proc.finish()
    assert code == 0, output
    assert "received SIGTERM" in output
