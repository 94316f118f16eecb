"""The Airflow DAGs, run by a real Airflow (the current 3.x release) in its own virtualenv.

The venv is built once from tests/airflow/requirements.lock and cached (tests/airflow/venv.py);
each test drives Airflow through tests/airflow/driver.py in a subprocess of that venv, with the
checkout's ``src`` on PYTHONPATH, and asserts here on what Airflow reports and on what the
warehouse holds. Under CI=true a venv that cannot be built fails the test, never skips it.

- the example config gives DAGs with no import error (and a broken config does give one);
- the cycle DAG's graph is the seed flow: syncs in parallel (a pool per source), the anchor
  mart after all of them, the followers after it, then the raw trim;
- `dag.test()` runs the cycle DAG against MariaDB → PostgreSQL, and after each step the
  warehouse equals what `trackline cycle` makes of the same source, table by table:
  - a run whose locks another run holds skips its sync tasks and writes nothing, while its
    mart tasks wait for the pipeline's lock (`schedule.lock_wait_seconds`) and run once it
    is released;
  - a sync task that fails in the middle of a batch is retried by Airflow;
  - after more source writes, a worker that dies in the middle of a batch (``os._exit``),
    then its run again, forced to overlap a second Airflow's run of the same DAG: the
    second skips the table the first holds, and G1 / G2 hold at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import MySQLDb, PgDb
from tests.integration.marts_helpers import config_dict, connect
from tests.integration.test_cycle_workers import snapshot
from trackline.config import Config, load_config
from trackline.marts.cycle import run_cycle_on
from trackline.marts.invariants import check_all, covered_keys
from trackline.state import pipeline_lock
from trackline.sync import resolve

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "airflow" / "driver.py"
EXAMPLE = ROOT / "examples" / "order_tracking.yml"
DAG_FILE = """\
from trackline.airflow import dags_from_config

globals().update(dags_from_config({path!r}{extra}))
"""


class Airflow:
    """One AIRFLOW_HOME (its own metadata database) with a DAG folder."""

    def __init__(self, venv: Path, home: Path) -> None:
        self.venv, self.home = venv, home
        self.dags = home / "dags"
        self.dags.mkdir(parents=True)
        shutil.copy(venv / "airflow-template.db", home / "airflow.db")

    def dag_file(self, name: str, config: Path, pipeline: str | None = None) -> None:
        extra = f", name={pipeline!r}" if pipeline else ""
        (self.dags / f"{name}.py").write_text(DAG_FILE.format(path=str(config), extra=extra))

    def run(
        self, steps: list[dict[str, Any]], env: dict[str, str] | None = None, *, exit_code: int = 0
    ) -> list[Any]:
        return self.wait(self.start(steps, env), exit_code=exit_code)

    def wait(self, proc: subprocess.Popen[str], *, exit_code: int = 0) -> list[Any]:
        """The started driver's results; its stdout and stderr are kept in `output`."""
        t0 = time.monotonic()
        try:
            stdout, stderr = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            raise AssertionError(f"driver still running after 300 s:\n{stderr[-3000:]}") from None
        self.output = stdout + stderr
        timing = [ln for ln in stderr.splitlines() if ln.startswith("DRIVER ")]
        print(f"driver process {time.monotonic() - t0:.1f}s:", *timing, sep="\n  ")
        if proc.returncode != exit_code:
            tail = stdout[-2000:] + "\n--- stderr:\n" + stderr[-3000:]
            raise AssertionError(f"driver exited {proc.returncode}, not {exit_code}:\n{tail}")
        return json.loads(stdout.strip().splitlines()[-1]) if exit_code == 0 else []

    def state(self, dag_id: str, task_id: str) -> str | None:
        """A task instance's state in this Airflow's metadata database (the latest run)."""
        import sqlite3

        con = sqlite3.connect(f"file:{self.home / 'airflow.db'}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute(
                "SELECT state FROM task_instance WHERE dag_id = ? AND task_id = ? "
                "ORDER BY start_date DESC LIMIT 1",
                (dag_id, task_id),
            ).fetchone()
        except sqlite3.OperationalError:  # locked by the driver's write, or not created yet
            return None
        finally:
            con.close()
        return row[0] if row else None

    def wait_for_state(
        self, proc: subprocess.Popen[str], dag_id: str, task_id: str, state: str
    ) -> None:
        """Until the task instance is in `state`; fails when it ends in another, or the
        driver exits first."""
        deadline = time.monotonic() + 120
        while (now := self.state(dag_id, task_id)) != state:
            assert now not in ("success", "failed", "skipped", "upstream_failed"), (
                f"{task_id} ended {now} before it was seen {state}"
            )
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{task_id} never {state} (last: {now})"
            time.sleep(0.1)

    def start(
        self, steps: list[dict[str, Any]], env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """The driver process, started (`run` waits for it)."""
        full = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TRACKLINE_FAIL")},
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "PYTHONPATH": str(ROOT / "src"),
            **(env or {}),
        }
        return subprocess.Popen(
            [str(self.venv / "bin" / "python"), str(DRIVER), json.dumps(steps)],
            env=full,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def _write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------- DAG shape


def test_example_config_imports_and_the_cycle_graph_is_the_seed_flow(
    airflow_venv: Path, tmp_path: Path
) -> None:
    af = Airflow(airflow_venv, tmp_path / "af")
    af.dag_file("trackline_dags", EXAMPLE)
    bad = _write_config(tmp_path / "bad.yml", {"sources": {}, "tables": [{"nme": "x"}]})
    af.dag_file("broken_dags", bad, "broken")
    two = yaml.safe_load(EXAMPLE.read_text())  # a second retention group beside the first
    second = {**two["marts"][0], "name": "second", "schema": "settlement_ods2"}
    second["anchor"] = {**second["anchor"], "table": "m2_uti"}
    second["followers"] = [{**f, "table": f"m2_{f['table']}"} for f in second["followers"]]
    two["marts"].append(second)
    del two["backfill"]  # and no `backfill:` section: no backfill DAG
    af.dag_file("two_dags", _write_config(tmp_path / "two.yml", two), "two")
    errors, dag_ids, cycle, checks, two_groups, backfill = af.run(
        [
            {"op": "import_errors"},
            {"op": "dag_ids"},
            {"op": "graph", "dag": "trackline_cycle"},
            {"op": "graph", "dag": "trackline_checks"},
            {"op": "graph", "dag": "two_cycle"},
            {"op": "graph", "dag": "trackline_backfill"},
        ]
    )
    # the example's file imports cleanly; the broken config is reported, naming the key
    assert [Path(e["filepath"]).name for e in errors] == ["broken_dags.py"], errors
    assert "tables[0].nme: unknown key" in errors[0]["error"]

    cfg = load_config(EXAMPLE)
    g = cfg.marts[0]
    syncs = {f"sync_{t.name}" for t in cfg.tables}
    followers = [f.table for f in g.followers]
    tasks = cycle["tasks"]
    assert set(tasks) == syncs | {g.anchor.table, *followers, "trim_raw"}
    assert cycle["max_active_runs"] == 1 and cycle["catchup"] is False
    for t in cfg.tables:  # in parallel (a following table after its driver); a pool per source
        s = f"sync_{t.name}"
        driver = [f"sync_{t.cdc.follow}"] if t.cdc.follow else []
        followers_of = sorted(f"sync_{o.name}" for o in cfg.tables if o.cdc.follow == t.name)
        assert tasks[s]["upstream"] == driver
        assert tasks[s]["downstream"] == sorted([g.anchor.table, *followers_of])
        assert tasks[s]["pool"] == f"trackline_{t.source}"
    anchor = tasks[g.anchor.table]
    assert set(anchor["upstream"]) == syncs and anchor["downstream"] == [followers[0]]
    assert anchor["trigger_rule"] == "all_done"  # a failed table does not stop the marts
    # the followers one after the other (each holds the pipeline's cycle lock), then the trim
    chain = [g.anchor.table, *followers, "trim_raw"]
    for before, f, after in zip(chain, chain[1:], chain[2:], strict=False):
        assert tasks[f]["upstream"] == [before] and tasks[f]["downstream"] == [after]
    assert tasks["trim_raw"]["upstream"] == [followers[-1]]
    # a second retention group's marts after the first one's (the same cycle lock), then trim
    t2 = two_groups["tasks"]
    assert t2["m2_uti"]["upstream"] == sorted([*syncs, followers[-1]])
    assert t2["trim_raw"]["upstream"] == [f"m2_{followers[-1]}"]
    for t in tasks.values():  # retries with backoff, the time limit from the config
        assert t["retries"] == cfg.schedule.task_retries and t["retry_exponential_backoff"] > 1
        assert t["execution_timeout"] == cfg.schedule.job_timeout_minutes * 60
    assert list(checks["tasks"]) == ["checks"] and checks["max_active_runs"] == 1
    assert cycle["schedule"] is not None

    # the backfill (the example has a `backfill:` section): manual only; per table a plan
    # task, then its mapped chunk task (one instance at a time), all of them → the handoff
    assert backfill["schedule"] is None  # manual trigger only
    assert backfill["max_active_runs"] == 1 and backfill["catchup"] is False
    bt = backfill["tasks"]
    names = [b.table for b in cfg.backfill.tables]
    plans, chunks = [f"plan_{n}" for n in names], [f"chunks_{n}" for n in names]
    assert set(bt) == {*plans, *chunks, "handoff"}
    for plan, chunk in zip(plans, chunks, strict=True):
        assert bt[plan]["upstream"] == [] and bt[plan]["downstream"] == [chunk]
        assert not bt[plan]["mapped"] and bt[chunk]["mapped"]
        assert bt[chunk]["upstream"] == [plan] and bt[chunk]["downstream"] == ["handoff"]
        assert bt[chunk]["max_active_tis_per_dagrun"] == 1  # a table's chunks one at a time
        assert bt[chunk]["pool"] == f"trackline_{cfg.backfill.source}"
        assert bt[chunk]["retries"] == cfg.schedule.task_retries
    assert bt["handoff"]["upstream"] == sorted(chunks) and not bt["handoff"]["mapped"]
    assert "trackline_backfill" in dag_ids and "two_cycle" in dag_ids
    assert "two_backfill" not in dag_ids  # a config without a `backfill:` section has none


# --------------------------------------------------------------------------- dag.test


DDL = (
    "CREATE TABLE uni_tracking_info (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT,"
    " update_time DATETIME(6) NOT NULL, status VARCHAR(16))",
    "CREATE TABLE ecs_order_info (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT,"
    " add_time DATETIME(6) NOT NULL, partner_id INT)",
    "CREATE TABLE uni_tracking_spath (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT,"
    " pathTime DATETIME(6) NOT NULL, code INT)",
)


def _orders(db: MySQLDb, orders: range, t: dt.datetime) -> None:
    for o in orders:
        db.execute(
            "INSERT INTO uni_tracking_info (order_id, update_time, status) VALUES (%s, %s, 'a')",
            (o, t),
        )
        db.execute(
            "INSERT INTO ecs_order_info (order_id, add_time, partner_id) VALUES (%s, %s, 1)",
            (o, t),
        )
        db.execute(
            "INSERT INTO uni_tracking_spath (order_id, pathTime, code) VALUES (%s, %s, 1)", (o, t)
        )


def _pipeline(tmp: Path, db: MySQLDb, pg: PgDb, prefix: str, **defaults: Any) -> dict[str, Any]:
    data = config_dict(
        tmp / "unused.db", pg.warehouse_config(), tmp / f"{prefix}stage", prefix=prefix
    )
    data["sources"] = {"kuaisong": db.source_config(innodb_hold=False).model_dump(mode="json")}
    data["sources"]["kuaisong"]["password"] = ""
    data["defaults"].update({"batch_size": 3, **defaults})
    data["schedule"] = {"task_retries": 2, "retry_delay_seconds": 0}
    return data


def _equal(ref: Config, af: Config, wh: Any) -> None:
    a, b = snapshot(ref, wh), snapshot(af, wh)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k], f"{k}: the Airflow cycle differs from `trackline cycle`"


def _states(result: dict[str, Any]) -> dict[str, str]:
    return {t: s.rsplit(".", 1)[-1].lower() for t, (s, _) in result["tasks"].items()}


def _world(
    tmp: Path, db: MySQLDb, pg: PgDb, **defaults: Any
) -> tuple[Config, Config, Path, dt.datetime]:
    """Source tables with 13 orders (5 of them 100 days old: archived at once), the
    reference pipeline (`trackline cycle`) and the Airflow one (its config file written),
    both in the same PostgreSQL database. Returns (ref, af, af's config file, source now)."""
    for ddl in DDL:
        db.execute(ddl)
    now = db.query("SELECT NOW(6)")[0][0]
    _orders(db, range(1, 6), now - dt.timedelta(days=100))
    _orders(db, range(6, 14), now - dt.timedelta(hours=2))
    time.sleep(1.1)  # the upper bound is the server's NOW() (lag 0): let it pass the writes
    ref = Config.model_validate(_pipeline(tmp, db, pg, "ref_", **defaults))
    af_data = _pipeline(tmp, db, pg, "af_", **defaults)
    return ref, Config.model_validate(af_data), _write_config(tmp / "af.yml", af_data), now


def _airflow(venv: Path, home: Path, config: Path) -> Airflow:
    af = Airflow(venv, home)
    af.dag_file("trackline_dags", config)
    return af


POOLS = {"op": "pools", "pools": {"af_trackline_kuaisong": 2}}
DAG = "af_trackline_cycle"


def _g1_g2(cfg: Config, wh: Any, db: MySQLDb) -> None:
    assert check_all(cfg, wh) == []  # G1: one row per key, no key twice
    keys = {r[0] for r in db.query("SELECT order_id FROM uni_tracking_info")}
    assert covered_keys(wh, cfg.marts[0]) >= keys  # G2: mart ∪ history holds all


def test_cycle_dag_runs_against_mariadb_and_postgres_like_trackline_cycle(
    airflow_venv: Path, tmp_path: Path, mysql_db: MySQLDb, pg_db: PgDb
) -> None:
    """One pipeline through a held run, a retried task, a dead worker and two overlapping
    runs (one Airflow process each: they are what costs time); after each, the warehouse
    equals what `trackline cycle` makes of the same source, table by table."""
    ref, af_cfg, config, now = _world(tmp_path, mysql_db, pg_db)
    af = _airflow(airflow_venv, tmp_path / "af", config)
    other = _airflow(airflow_venv, tmp_path / "af2", config)  # a second scheduler's world
    dag = DAG
    wh = connect(ref)
    ready, go = tmp_path / "first-is-held", tmp_path / "first-may-go"
    held_run: subprocess.Popen[str] | None = None
    try:
        # 1. another run holds every table's lock and the marts' lock. The sync tasks skip
        # at once (warehouse.lock_timeout_seconds: 0: another run is syncing the table); the
        # anchor task waits for the marts' lock (schedule.lock_wait_seconds: by default half
        # the task time limit). Released while it waits, the mart tasks run, and trim_raw
        # records the cycle: nothing was synced, nothing is in the ledger.
        held = [f"sync:{resolve(af_cfg, t, None, None).key}" for t in af_cfg.tables]
        held.append(pipeline_lock(af_cfg.state_schema, "cycle"))
        anchor = af_cfg.marts[0].anchor.table
        with _holding(af_cfg, held):
            held_run = af.start([POOLS, {"op": "test", "dag": dag}])
            af.wait_for_state(held_run, dag, anchor, "running")
            time.sleep(1)  # well inside its wait: the lock is still held
            assert af.state(dag, anchor) == "running"
        pools, first = af.wait(held_run)
        states = _states(first)
        syncs = {t for t in states if t.startswith("sync_")}
        assert {states[t] for t in syncs} == {"skipped"}, first
        assert {s for t, s in states.items() if t not in syncs} == {"success"}, first
        assert first["state"].endswith("success")
        ledger = wh.t(af_cfg.state_schema, "batches")
        assert not wh.table_exists(af_cfg.state_schema, "batches") or not wh.query(
            f"SELECT 1 FROM {ledger}"
        )

        # 2. a sync task fails at the cycle's second batch commit; Airflow retries it
        assert run_cycle_on(ref, wh).ok
        (second,) = af.run(
            [{"op": "test", "dag": dag}], {"TRACKLINE_FAIL_AT": "sync.before_commit@2"}
        )
        assert set(_states(second).values()) == {"success"}, second
        tries = {t: n for t, (_, n) in second["tasks"].items() if t.startswith("sync_")}
        assert sorted(tries.values()) == [1, 1, 2], tries  # exactly one was retried
        _equal(ref, af_cfg, wh)

        # 3. more writes; the worker itself dies (os._exit: no rollback, no `finally`, no
        # lock release) inside the cycle's second batch, its transaction open. The
        # PostgreSQL session's end rolls that batch back and frees the table's lock.
        mysql_db.execute("UPDATE uni_tracking_info SET update_time = NOW(6) WHERE order_id <= 2")
        _orders(mysql_db, range(14, 20), now)  # old orders move again (reactivation), new ones
        mysql_db.execute(
            "INSERT INTO uni_tracking_spath (order_id, pathTime, code) "
            "SELECT order_id, NOW(6), 2 FROM ecs_order_info WHERE order_id % 3 = 0"
        )
        time.sleep(1.1)
        batches = wh.scalar(f"SELECT COUNT(*) FROM {ledger}")
        af.run(
            [{"op": "test", "dag": dag}],
            {"TRACKLINE_FAIL_AT": "sync.before_commit@2", "TRACKLINE_FAIL_MODE": "exit"},
            exit_code=99,
        )
        assert wh.scalar(f"SELECT COUNT(*) FROM {ledger}") == batches + 1  # the first only

        # 4. the next run (the dead task run again) is forced to overlap another: it is held
        # right after its first batch commit, that table's lock held, while a run of a
        # second Airflow installation runs whole. That one skips the held table, syncs the
        # others and builds the marts over what is committed; then the first goes on.
        held_run = af.start(
            [
                {
                    "op": "test",
                    "dag": dag,
                    "pause": {"at": "sync.after_commit", "ready": str(ready), "go": str(go)},
                }
            ]
        )
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert held_run.poll() is None, held_run.communicate()
            assert time.monotonic() < deadline, "the run never reached its first commit"
            time.sleep(0.1)
        _, overlapping = other.run([POOLS, {"op": "test", "dag": dag}])
        go.touch()
        stdout, stderr = held_run.communicate(timeout=240)
        assert held_run.returncode == 0, stderr[-3000:]
        (rerun,) = json.loads(stdout.strip().splitlines()[-1])
        states = _states(overlapping)
        skipped = [t for t, s in states.items() if s == "skipped"]
        assert len(skipped) == 1 and skipped[0].startswith("sync_"), states  # the held table
        assert {s for t, s in states.items() if t not in skipped} == {"success"}, states
        assert set(_states(rerun).values()) == {"success"}, rerun  # no lock left by the dead

        assert run_cycle_on(ref, wh).ok
        _equal(ref, af_cfg, wh)
        _g1_g2(af_cfg, wh, mysql_db)
        runs = wh.t(af_cfg.state_schema, "runs")
        cycles = wh.query(f"SELECT status FROM {runs} WHERE command = 'cycle'")
        assert cycles == [("ok",)] * 4  # each DAG run that reached trim_raw recorded its cycle
    finally:
        go.touch()
        if held_run is not None and held_run.poll() is None:
            held_run.kill()
            held_run.communicate()
        wh.close()


# --------------------------------------------------------------------------- backfill DAG


def test_backfill_dag_loads_every_chunk_and_hands_off_like_a_straight_load(
    airflow_venv: Path,
    tmp_path: Path,
    mysql_db: MySQLDb,
    pg_db: PgDb,
    request: pytest.FixtureRequest,
) -> None:
    """The backfill DAG run once by `dag.test()`: legacy DW (MariaDB) → PostgreSQL by chunk,
    one chunk task failing before its commit and retried by Airflow, then the handoff; after
    the cycles, the warehouse equals one straight load of the union of both sources (the
    backfill tests' reference), and every chunk is in once."""
    from tests.integration.backfill_world import end_state, new_world
    from tests.integration.test_backfill import (
        CHUNKS,
        END,
        START,
        assert_chunks_once,
        finish_and_compare,
        reference,
    )
    from tests.integration.test_sync_faults import second_warehouse
    from trackline.backfill.handoff import status

    world = new_world(mysql_db, request, tmp_path)
    ref = reference(world, second_warehouse(pg_db.warehouse_config(), tmp_path, request))
    data = world.data(pg_db.warehouse_config(), tmp_path / "stage")
    data["schedule"] = {"task_retries": 1, "retry_delay_seconds": 0}
    cfg = Config.model_validate(data)
    af = _airflow(airflow_venv, tmp_path / "af", _write_config(tmp_path / "bf.yml", data))
    conf = {"start": START.isoformat(), "end": END.isoformat()}  # the run conf's range
    _, result = af.run(  # the 4th chunk to commit fails before its commit: Airflow retries it
        [
            {"op": "pools", "pools": {"trackline_uniods": 2}},
            {"op": "test", "dag": "trackline_backfill", "conf": conf},
        ],
        {"TRACKLINE_FAIL_AT": "backfill.before_commit@4"},
    )
    assert result["state"].endswith("success"), result
    states = _states(result)
    assert set(states.values()) == {"success"}, states
    retried = [t for t, (_, n) in result["tasks"].items() if n != 1]
    assert len(retried) == 1 and retried[0].startswith("chunks_"), result["tasks"]
    assert result["tasks"][retried[0]][1] == 2
    for b in cfg.backfill.tables:  # one mapped instance per chunk
        mapped = sorted(t for t in states if t.startswith(f"chunks_{b.table}["))
        assert mapped == sorted(f"chunks_{b.table}[{i}]" for i in range(CHUNKS)), states
    wh = connect(cfg)
    try:
        st = {s["table"]: s for s in status(cfg, wh)}
    finally:
        wh.close()
    for b in cfg.backfill.tables:
        s = st[b.table]
        assert s["chunks"] == s["done"] == CHUNKS and s["failed_attempts"] == 0, s
        assert s["handed_off_at"] is not None  # the DAG's handoff task ran
        assert s["incremental_watermark"] == f"{s['handoff_point']} (inclusive)", s
    assert_chunks_once(cfg, world)  # every chunk once, raw holds each legacy row once
    world.late_writes()
    finish_and_compare(world, cfg, ref)  # handoff again: "already"; cycles; == straight load
    assert end_state(cfg) == ref


class _holding:
    """Hold warehouse locks from this process (another run), optionally released after a
    moment from a thread."""

    def __init__(self, cfg: Config, names: list[str], release_after: float | None = None):
        self.cfg, self.names, self.after = cfg, names, release_after
        self.done = threading.Event()

    def __enter__(self) -> None:
        wh = connect(self.cfg)
        stack = [wh.lock(n, 0) for n in self.names]
        for cm in stack:
            cm.__enter__()
        self.wh, self.stack = wh, stack

        def release() -> None:
            for cm in reversed(self.stack):
                cm.__exit__(None, None, None)
            self.wh.close()
            self.done.set()

        if self.after is not None:
            self.timer = threading.Timer(self.after, release)
            self.timer.start()
        else:
            self.release = release

    def __exit__(self, *exc: object) -> None:
        if self.after is None:
            self.release()
        else:
            self.timer.join()
        assert self.done.is_set()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
