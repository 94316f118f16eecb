"""`defaults.workers`: a cycle syncing its tables in parallel ends where one syncing them one
after the other ends, table by table (raw rows with their batch ids, watermarks, ledger,
marts and history), on DuckDB and PostgreSQL; a fault in one worker stops the cycle, and a
rerun equals an uninterrupted run."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.integration.marts_helpers import (
    DAY,
    ECS,
    UTI,
    UTS,
    Driver,
    Source,
    actual_state,
    busy_plan,
    config_dict,
    connect,
    day,
    expected_state,
)
from trackline import faults
from trackline.config import Config, DuckDBWarehouse, PostgresWarehouse
from trackline.errors import InjectedFault
from trackline.load import Warehouse
from trackline.marts.cycle import run_cycle_on
from trackline.report import NullReporter
from trackline.sync import resolve


class ThreadsSeen(NullReporter):
    """Remembers which thread reported each table done."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()

    def event(self, kind: str, message: str, **fields: Any) -> None:
        super().event(kind, message, **fields)
        if kind == "done" and "table" in fields:
            self.threads.add(threading.current_thread().name)


class HoldUntilMartsBegin(NullReporter):
    """Holds `table`'s first synced batch until a mart step reaches its first checkpoint (up
    to 60 s): `waited` is then `[True]` if a mart began while that table was still syncing.
    `arm(monkeypatch)` patches the mart engine's checkpoint to signal the start."""

    def __init__(self, table: str) -> None:
        super().__init__()
        self.table = table
        self.began = threading.Event()
        self.waited: list[bool] = []

    def arm(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import trackline.marts.engine as engine

        real = engine.checkpoint

        def mart_checkpoint(step: str) -> None:
            self.began.set()
            real(step)

        monkeypatch.setattr(engine, "checkpoint", mart_checkpoint)

    def progress(
        self, task: str, advance: int, total: int | None = None, unit: str = "rows"
    ) -> None:
        if task == self.table and not self.waited:
            self.waited.append(self.began.wait(60))


def _config(
    tmp: Path, src: Path, wh: DuckDBWarehouse | PostgresWarehouse, prefix: str, workers: int
) -> Config:
    data = config_dict(src, wh, tmp / f"{prefix}stage", prefix=prefix)
    data["defaults"]["workers"] = workers
    data["defaults"]["batch_size"] = 7  # several batches per table and cycle
    return Config.model_validate(data)


def snapshot(cfg: Config, wh: Warehouse) -> dict[str, Any]:
    """Everything a cycle writes, per table, in a form two pipelines can be compared by."""
    out: dict[str, Any] = {}
    st = wh.t(cfg.state_schema, "watermarks")
    ledger = wh.t(cfg.state_schema, "batches")
    for t in cfg.tables:
        rt = resolve(cfg, t, None, None)
        cols = wh.column_names(rt.target_schema, rt.target)
        rows = wh.query(f"SELECT {wh.cols(cols)} FROM {wh.t(rt.target_schema, rt.target)}")
        out[f"raw:{t.name}"] = sorted(rows, key=repr)
        out[f"watermark:{t.name}"] = wh.query(
            f"SELECT value, last_batch_id, rows_total FROM {st} WHERE table_key = ?", (rt.key,)
        )
        out[f"ledger:{t.name}"] = wh.query(
            f"SELECT batch_id, row_count FROM {ledger} WHERE table_key = ? ORDER BY batch_id",
            (rt.key,),
        )
    schema = cfg.marts[0].schema_
    for table in wh.list_tables(schema):
        if table.startswith("order_tracking_exceptions"):
            continue
        cols = wh.column_names(schema, table)
        rows = wh.query(f"SELECT {wh.cols(cols)} FROM {wh.t(schema, table)}")
        out[f"mart:{table}"] = sorted(rows, key=repr)
    return out


def test_two_workers_end_where_one_worker_ends_table_by_table(
    tmp_path: Path, warehouse_config: DuckDBWarehouse | PostgresWarehouse
) -> None:
    src = Source(tmp_path / "src.db")
    one = _config(tmp_path, src.path, warehouse_config, "w1_", 1)
    two = _config(tmp_path, src.path, warehouse_config, "w2_", 2)
    wh = connect(one)
    seen = ThreadsSeen()
    driver = Driver(src, busy_plan(seed=5, orders=24, span_days=50))
    trimmed = 0
    try:
        for clock in range(day(2), day(130), 9 * DAY):
            driver.until(clock)
            s1 = run_cycle_on(one, wh)
            s2 = run_cycle_on(two, wh, seen)
            assert s1.ok and s2.ok, [(r.table, r.error) for r in s1.sync + s2.sync if r.error]
            # the same tables in the same (config) order, with the same rows
            assert [(r.table, r.rows, r.batches) for r in s2.sync] == [
                (r.table, r.rows, r.batches) for r in s1.sync
            ]
            a, b = snapshot(one, wh), snapshot(two, wh)
            assert a.keys() == b.keys()
            for k in a:
                assert a[k] == b[k], f"{k} differs between workers=1 and workers=2"
            # each raw buffer trimmed on a worker once its readers were done: the same rows
            strip = {k.split(".")[-1]: n for k, n in s1.raw_trimmed.items()}
            assert {k.split(".")[-1]: n for k, n in s2.raw_trimmed.items()} == strip
            trimmed += sum(strip.values())
        assert trimmed > 0  # the raw buffers were trimmed
        moved = sum(n for k, v in a.items() if k.startswith("ledger:") for _, n in v)
        assert moved > 100, moved  # real work: many batches of 7 rows
        # G1 / G2: each key once, nothing lost (the marts' oracle)
        assert actual_state(wh, two.marts[0].schema_) == expected_state(src)
        # the second pipeline did sync on two threads (over many cycles, both took tables)
        assert len(seen.threads) == 2, seen.threads
    finally:
        wh.close()
        src.close()


def test_a_fault_in_one_worker_stops_the_cycle_and_a_rerun_equals_no_fault(
    tmp_path: Path,
    warehouse_config: DuckDBWarehouse | PostgresWarehouse,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = Source(tmp_path / "src.db")
    ref = _config(tmp_path, src.path, warehouse_config, "r_", 2)
    hit = _config(tmp_path, src.path, warehouse_config, "k_", 2)
    wh = connect(ref)
    driver = Driver(src, busy_plan(seed=9, orders=20, span_days=40))
    try:
        for n, clock in enumerate(range(day(3), day(100), 12 * DAY)):
            driver.until(clock)
            s = run_cycle_on(ref, wh)
            assert s.ok
            batches = sum(r.batches for r in s.sync)  # the faulty run commits as many
            assert batches > 0
            faults.reset()
            # the k-th commit of the cycle dies (some table, some worker), once per cycle
            monkeypatch.setenv("TRACKLINE_FAIL_AT", f"sync.before_commit@{1 + (3 * n) % batches}")
            with pytest.raises(InjectedFault):
                run_cycle_on(hit, wh)
            monkeypatch.delenv("TRACKLINE_FAIL_AT")
            faults.reset()
            assert run_cycle_on(hit, wh).ok
            a, b = snapshot(ref, wh), snapshot(hit, wh)
            assert a.keys() == b.keys()
            for k in a:
                assert a[k] == b[k], f"{k} differs after a killed parallel sync and its rerun"
        runs = wh.query(
            f"SELECT status FROM {wh.t(hit.state_schema, 'runs')} WHERE command = 'cycle'"
        )
        assert sorted({r[0] for r in runs}) == ["failed", "ok"]
    finally:
        wh.close()
        src.close()


def test_ctrl_c_during_a_parallel_sync_stops_every_worker_and_a_rerun_equals_no_stop(
    tmp_path: Path,
    warehouse_config: DuckDBWarehouse | PostgresWarehouse,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGINT reaches the main thread while the workers sync: each worker unwinds as a
    single-threaded sync would (its transaction rolled back, its table recorded interrupted),
    the cycle is recorded interrupted, nothing keeps a lock, and the next cycle ends where an
    uninterrupted one ends."""
    import os
    import signal

    import trackline.sync.syncer as syncer
    from trackline.errors import Interrupted
    from trackline.interrupts import interrupt_on_signals

    src = Source(tmp_path / "src.db")
    ref = _config(tmp_path, src.path, warehouse_config, "r_", 2)
    hit = _config(tmp_path, src.path, warehouse_config, "k_", 2)
    wh = connect(ref)
    Driver(src, busy_plan(seed=3, orders=20, span_days=40)).until(day(45))
    real = syncer.checkpoint
    sent = threading.Event()

    def busy(step: str) -> None:
        real(step)
        if step == "sync.after_commit":
            if not sent.is_set():
                sent.set()
                os.kill(os.getpid(), signal.SIGINT)
            for _ in range(200):  # a worker busy in Python code when the stop arrives
                threading.Event().wait(0.01)

    try:
        assert run_cycle_on(ref, wh).ok
        monkeypatch.setattr(syncer, "checkpoint", busy)
        with interrupt_on_signals(), pytest.raises(Interrupted):
            run_cycle_on(hit, wh)
        monkeypatch.setattr(syncer, "checkpoint", real)
        runs = wh.t(hit.state_schema, "runs")
        assert wh.query(f"SELECT status FROM {runs} WHERE command = 'cycle'") == [("interrupted",)]
        stopped = wh.query(f"SELECT status FROM {runs} WHERE command = 'sync'")
        assert ("interrupted",) in stopped, stopped
        assert run_cycle_on(hit, wh).ok  # no lock left behind
        a, b = snapshot(ref, wh), snapshot(hit, wh)
        for k in a:
            assert a[k] == b[k], f"{k} differs after an interrupted parallel sync and its rerun"
    finally:
        wh.close()
        src.close()


def test_parallel_sync_output_is_whole_lines_and_one_done_line_per_table(
    tmp_path: Path,
) -> None:
    """Two workers report from their threads at once: each line of `--log json` stays one
    whole JSON object, and each table ends with exactly one `done` line."""
    import io
    import json

    from trackline.report import LogReporter

    src = Source(tmp_path / "src.db")
    cfg = _config(tmp_path, src.path, DuckDBWarehouse(path=tmp_path / "wh.duckdb"), "", 2)
    Driver(src, busy_plan(seed=4, orders=20, span_days=40)).until(day(45))
    out = io.StringIO()
    wh = connect(cfg)
    try:
        assert run_cycle_on(cfg, wh, LogReporter("json", out)).ok
    finally:
        wh.close()
        src.close()
    events = [json.loads(line) for line in out.getvalue().splitlines()]  # no torn line
    done = sorted(e["table"] for e in events if e["event"] == "done" and "table" in e)
    assert done == sorted(t.name for t in cfg.tables), done


def _with_unread_table(
    tmp: Path, src: Source, wh: DuckDBWarehouse | PostgresWarehouse, prefix: str, workers: int
) -> Config:
    """The test config with a fourth table, `claims`, that no mart reads (in the source with
    40 rows the first time)."""
    src.con.execute("CREATE TABLE IF NOT EXISTS claims (id INTEGER PRIMARY KEY, t INTEGER)")
    src.con.executemany(
        "INSERT OR IGNORE INTO claims VALUES (?, ?)", [(i, i) for i in range(1, 41)]
    )
    src.con.commit()
    data = config_dict(src.path, wh, tmp / f"{prefix}stage", prefix=prefix)
    data["defaults"]["workers"] = workers
    data["defaults"]["batch_size"] = 7
    data["tables"].append(
        {
            "name": "claims",
            "target_schema": f"{prefix}raw",
            "cdc": {"strategy": "hybrid", "cursor": "t", "id": "id"},
        }
    )
    return Config.model_validate(data)


def test_marts_build_while_a_table_no_mart_reads_still_syncs(
    tmp_path: Path,
    warehouse_config: DuckDBWarehouse | PostgresWarehouse,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With two workers the retention group's marts start once the group's own tables have
    synced, on a free worker, while a table none of the marts reads is still syncing: the
    unread table's first batch waits (up to 60 s) for the marts to begin, which a cycle that
    builds its marts after the whole sync never does. The end state equals workers=1."""
    src = Source(tmp_path / "src.db")
    ref = _with_unread_table(tmp_path, src, warehouse_config, "r_", 1)
    two = _with_unread_table(tmp_path, src, warehouse_config, "p_", 2)
    Driver(src, busy_plan(seed=6, orders=20, span_days=40)).until(day(45))
    hold = HoldUntilMartsBegin("claims")
    wh = connect(ref)
    try:
        assert run_cycle_on(ref, wh).ok
        hold.arm(monkeypatch)
        s = run_cycle_on(two, wh, hold)
        assert s.ok
        assert hold.waited == [True], "the marts did not begin while the unread table synced"
        assert [m.mart for m in s.marts] == [UTI, ECS, UTS]
        a, b = snapshot(ref, wh), snapshot(two, wh)
        for k in a:
            assert a[k] == b[k], f"{k} differs between serial marts and marts beside the sync"
    finally:
        wh.close()
        src.close()


@pytest.mark.parametrize("how", ["fault", "ctrl-c"])
def test_marts_on_a_worker_stopped_midway_rerun_to_the_uninterrupted_end_state(
    tmp_path: Path,
    warehouse_config: DuckDBWarehouse | PostgresWarehouse,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """The marts of a cycle run on a sync worker: an error in one (an injected fault before a
    mart commits) or a Ctrl-C while they build (the anchor committed, the followers stop
    before their first transaction) ends the cycle as in a serial one (recorded failed /
    interrupted, the raised error the same), and the next cycle ends where an uninterrupted
    pipeline ends."""
    import os
    import signal

    import trackline.marts.engine as engine
    from trackline.errors import Interrupted
    from trackline.interrupts import interrupt_on_signals

    src = Source(tmp_path / "src.db")
    ref = _with_unread_table(tmp_path, src, warehouse_config, "r_", 2)
    hit = _with_unread_table(tmp_path, src, warehouse_config, "k_", 2)
    driver = Driver(src, busy_plan(seed=8, orders=20, span_days=40))
    real = engine.checkpoint
    wh = connect(ref)
    try:
        for clock in (day(20), day(45)):
            driver.until(clock)
            assert run_cycle_on(ref, wh).ok
            if how == "fault":
                faults.reset()
                monkeypatch.setenv("TRACKLINE_FAIL_AT", "mart.before_commit@1")
                with pytest.raises(InjectedFault):
                    run_cycle_on(hit, wh)
                monkeypatch.delenv("TRACKLINE_FAIL_AT")
                faults.reset()
            else:
                sent = threading.Event()

                def ctrl_c(step: str, sent: threading.Event = sent) -> None:
                    real(step)
                    if step == "mart.before_commit" and not sent.is_set():
                        sent.set()
                        os.kill(os.getpid(), signal.SIGINT)

                monkeypatch.setattr(engine, "checkpoint", ctrl_c)
                with interrupt_on_signals(), pytest.raises(Interrupted):
                    run_cycle_on(hit, wh)
                monkeypatch.setattr(engine, "checkpoint", real)
            runs = wh.t(hit.state_schema, "runs")
            last = wh.query(
                f"SELECT status FROM {runs} WHERE command = 'cycle' ORDER BY started_at DESC"
            )[0]
            assert last == ("failed" if how == "fault" else "interrupted",)
            assert run_cycle_on(hit, wh).ok  # no lock left behind
            a, b = snapshot(ref, wh), snapshot(hit, wh)
            for k in a:
                assert a[k] == b[k], f"{k} differs after marts stopped on a worker ({how})"
    finally:
        wh.close()
        src.close()


@pytest.mark.servers
def test_postgres_anchor_builds_while_a_followers_table_syncs_and_the_follower_sees_its_drift(
    tmp_path: Path, pg_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL (followers build side by side) the anchor mart starts once the anchor's
    own table has synced: the events table's first batch waits (up to 60 s) for the anchor
    to begin. A column added to the events table at the source reaches its mart through the
    follower's own step (which widens and creates only its mart, after its table synced):
    after every cycle the warehouse equals a serial pipeline's, the new column included."""
    src = Source(tmp_path / "src.db")
    ref = _config(tmp_path, src.path, pg_db.warehouse_config(), "r_", 1)
    two = _config(tmp_path, src.path, pg_db.warehouse_config(), "p_", 2)
    driver = Driver(src, busy_plan(seed=9, orders=20, span_days=40))
    hold = HoldUntilMartsBegin("uni_tracking_spath")
    wh = connect(ref)
    try:
        driver.until(day(20))
        assert run_cycle_on(ref, wh).ok and run_cycle_on(two, wh).ok
        # drift: the events table gains a column; the next cycle's events carry values in it
        src.con.execute("ALTER TABLE uni_tracking_spath ADD COLUMN note TEXT")
        driver.until(day(45))
        src.con.execute("UPDATE uni_tracking_spath SET note = 'n' || id WHERE note IS NULL")
        src.con.commit()
        assert run_cycle_on(ref, wh).ok
        hold.arm(monkeypatch)
        s = run_cycle_on(two, wh, hold)
        assert s.ok, [(r.table, r.error) for r in s.sync if r.error]
        assert hold.waited == [True], "the anchor did not begin while the events table synced"
        assert [m.mart for m in s.marts] == [UTI, ECS, UTS]
        schema = two.marts[0].schema_
        assert "note" in wh.column_names(schema, UTS)
        noted = wh.scalar(f"SELECT COUNT(note) FROM {wh.t(schema, UTS)}")
        assert noted and int(noted) > 0
        a, b = snapshot(ref, wh), snapshot(two, wh)
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == b[k], f"{k} differs between serial marts and the anchor-first marts"
        assert actual_state(wh, schema) == expected_state(src)
    finally:
        wh.close()
        src.close()
