"""`trackline backfill`: history from a legacy DW, by chunk, handed over to the incremental sync.

Every scenario runs on the real MariaDB (one database standing in for the legacy DW `uniods`,
one for production `kuaisong`, one holding the union of both for the reference) and on DuckDB
and PostgreSQL. The end state after backfill + handoff + cycles must equal what one straight
load of the union gives, and hold G1/G2 (`check_group`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import MySQLDb, PgDb, S3Endpoint
from tests.integration.backfill_world import (
    World,
    connect,
    end_state,
    new_world,
    unix,
)
from tests.integration.test_sync_faults import second_warehouse
from trackline import faults
from trackline.backfill.handoff import HandoffOutcome, status
from trackline.backfill.handoff import handoff as handoff_on
from trackline.backfill.legacy import LegacyTable
from trackline.backfill.run import run
from trackline.config import (
    Config,
    DuckDBWarehouse,
    PostgresWarehouse,
    RedshiftWarehouse,
    parse_config,
)
from trackline.errors import BackfillRefused, ConfigError, InjectedFault
from trackline.load.redshift import Redshift
from trackline.marts.cycle import run_cycle
from trackline.marts.invariants import check_group
from trackline.sqlplan import plan_statements, render_plan
from trackline.sync import sync

Wh = DuckDBWarehouse | PostgresWarehouse
START, END = dt.datetime(2024, 11, 1), dt.datetime(2025, 8, 1)
CHUNKS = 9  # 2024-11 … 2025-07; November and December hold no row
TABLES = ["uni_tracking_info", "ecs_order_info", "uni_tracking_spath"]
LEGACY = {
    "uni_tracking_info": "dw_uni_tracking_info",
    "ecs_order_info": "dw_ecs_order_info",
    "uni_tracking_spath": "dw_uni_tracking_spath",
}


@pytest.fixture
def world(mysql_db: MySQLDb, request: pytest.FixtureRequest, tmp_path: Path) -> World:
    return new_world(mysql_db, request, tmp_path)


def config(world: World, wh: Wh, name: str, **kw: Any) -> Config:
    return Config.model_validate(world.data(wh, world.tmp / f"stage_{name}", **kw))


def backfill_ok(cfg: Config, names: list[str] | None = None, **kw: Any) -> None:
    res = run(cfg, names, start=START, end=END, **kw)
    bad = [(r.table, r.error) for r in res if r.status != "ok"]
    assert not bad, bad


def handoff(cfg: Config, names: list[str] | None, force: bool = False) -> list[HandoffOutcome]:
    for wh in connect(cfg):
        return handoff_on(cfg, wh, names, force=force)
    raise AssertionError


def cycle_ok(cfg: Config) -> None:
    s = run_cycle(cfg)
    assert s.ok, s.as_dict()


def reference(world: World, wh: Wh) -> dict[str, list[tuple[Any, ...]]]:
    """One straight load of the union, then a cycle."""
    cfg = config(world, wh, "ref", source=world.union)
    cycle_ok(cfg)
    return end_state(cfg)


def legacy_count(world: World, table: str) -> int:
    return int(world.legacy.query(f"SELECT COUNT(*) FROM `{LEGACY[table]}`")[0][0])


def assert_chunks_once(cfg: Config, world: World) -> None:
    """The ledgers prove it: every chunk has exactly one `done` row, the batches of each
    chunk were committed by one run, and raw holds each legacy row once."""
    for wh in connect(cfg):
        st = {s["table"]: s for s in status(cfg, wh)}
        for table in TABLES:
            s = st[table]
            done = [c for c in s["chunk_rows"] if c["status"] == "done"]
            assert sorted(c["chunk"] for c in done) == list(range(1, CHUNKS + 1))
            assert all(c["legacy_rows"] == c["loaded_rows"] for c in done)
            assert s["rows_loaded"] == legacy_count(world, table)
            rows = wh.query(
                "SELECT wm_to, run_id, row_count FROM trackline.batches WHERE table_key = ? "
                "AND source_db = ?",
                (f"raw.{table}_raw", world.legacy.database),
            )
            runs: dict[str, set[str]] = {}
            for wm_to, run_id, _ in rows:
                runs.setdefault(wm_to, set()).add(run_id)
            assert all(len(r) == 1 for r in runs.values()), runs
            assert sum(int(r[2]) for r in rows) == legacy_count(world, table)
            raw = wh.scalar(
                f"SELECT COUNT(*) FROM {wh.t('raw', table + '_raw')} WHERE _tl_batch_id IN "
                "(SELECT batch_id FROM trackline.batches WHERE table_key = ? AND source_db = ?)",
                (f"raw.{table}_raw", world.legacy.database),
            )
            assert int(raw) == legacy_count(world, table)


def finish_and_compare(world: World, cfg: Config, ref: dict[str, Any]) -> None:
    for h in handoff(cfg, None):
        assert h.status in ("set", "already")
    cycle_ok(cfg)
    cycle_ok(cfg)
    got = end_state(cfg)
    assert got == ref
    for wh in connect(cfg):
        assert check_group(wh, cfg.marts[0], cfg=cfg) == []


# --------------------------------------------------------------------------- the scenario


def test_backfill_handoff_and_cycles_equal_one_straight_load(
    world: World, warehouse_config: Wh, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ref = reference(world, second_warehouse(warehouse_config, tmp_path, request))
    cfg = config(world, warehouse_config, "a")
    backfill_ok(cfg, ["uni_tracking_info"])
    world.late_writes()  # production keeps writing while the backfill runs
    backfill_ok(cfg)
    assert_chunks_once(cfg, world)
    for wh in connect(cfg):
        st = {s["table"]: s for s in status(cfg, wh)}
    for table in TABLES:
        s = st[table]
        assert s["done"] == CHUNKS and s["failed_attempts"] == 0
        empty = [c for c in s["chunk_rows"] if c["chunk"] in (1, 2)]
        assert [c["loaded_rows"] for c in empty] == [0, 0]  # zero-row chunks are done too
        # the handoff point: the newest legacy row (older than production's upper bound)
        newest = world.legacy.query(
            f"SELECT MAX({_time(table)}) FROM `{LEGACY[table]}`"  # noqa: S608 - test names
        )[0][0]
        assert s["handoff_point"] == unix(newest)
    # rows at a chunk boundary (2025-03-01 00:00:00, to the second) are in once, by March
    for wh in connect(cfg):
        at = unix(dt.datetime(2025, 3, 1))
        rows = wh.query(
            f"SELECT b.wm_from FROM {wh.t('raw', 'ecs_order_info_raw')} r JOIN "
            "trackline.batches b ON b.batch_id = r._tl_batch_id AND b.table_key = ? "
            "WHERE r.add_time = ?",
            ("raw.ecs_order_info_raw", at),
        )
        assert len(rows) == 3 and all("2025-03-01T00:00:00" in r[0] for r in rows)
    finish_and_compare(world, cfg, ref)


def _time(table: str) -> str:
    return {"uni_tracking_info": "update_time", "ecs_order_info": "add_time"}.get(table, "pathTime")


def test_an_overlap_on_purpose_is_idempotent(
    world: World, duckdb_warehouse: DuckDBWarehouse, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """After handoff and a cycle, the incremental watermark is moved back into the legacy's
    range and production is read again from there: the marts stay equal."""
    world.late_writes()
    ref = reference(world, DuckDBWarehouse(path=tmp_path / "ref.duckdb"))
    cfg = config(world, duckdb_warehouse, "a")
    backfill_ok(cfg)
    finish_and_compare(world, cfg, ref)
    from trackline.extract.cdc import Watermark
    from trackline.state import StateStore

    for wh in connect(cfg):
        state = StateStore(wh, cfg.state_schema)
        for table in TABLES:
            key = f"raw.{table}_raw"
            st = state.get(key, world.prod.database)
            back = Watermark(ts=unix(dt.datetime(2025, 6, 1)), extra=st.watermark.extra)
            wh.run_transaction(
                lambda key=key, st=st, back=back, state=state: state.put(
                    key, world.prod.database, "hybrid", back, st.last_batch_id, 0
                )
            )
    cycle_ok(cfg)
    assert end_state(cfg) == ref


# --------------------------------------------------------------------------- kills


@pytest.mark.parametrize(
    "step",
    [
        "backfill.after_batch@2",
        "backfill.before_commit@3",
        "backfill.after_commit@2",
        "backfill.after_batch@5,backfill.after_commit@1",
    ],
)
def test_a_killed_backfill_resumes_to_the_same_end_state(
    world: World,
    warehouse_config: Wh,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    world.late_writes()
    ref = reference(world, second_warehouse(warehouse_config, tmp_path, request))
    cfg = config(world, warehouse_config, "a")
    for fault in step.split(","):
        monkeypatch.setenv("TRACKLINE_FAIL_AT", fault)
        faults.reset()
        with pytest.raises(InjectedFault):
            run(cfg, None, start=START, end=END, workers=1)
        monkeypatch.delenv("TRACKLINE_FAIL_AT")
        faults.reset()
    backfill_ok(cfg)
    assert_chunks_once(cfg, world)
    finish_and_compare(world, cfg, ref)


def test_chunks_run_one_by_one_through_n_load_in_time_order_and_equal_a_whole_run(
    world: World, warehouse_config: Wh, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`run(..., through=n)` (the Airflow DAG's tasks): 0 starts the backfill and loads
    nothing; n loads chunk n and any earlier chunk not done first (time order); a chunk done
    is skipped. Chunk by chunk, out of order, it ends where one whole run ends."""
    world.late_writes()
    ref = reference(world, second_warehouse(warehouse_config, tmp_path, request))
    cfg = config(world, warehouse_config, "a")
    table = "ecs_order_info"
    (r,) = run(cfg, [table], start=START, end=END, through=0)
    assert (r.status, r.chunks, r.loaded, r.skipped, r.rows) == ("ok", CHUNKS, 0, 0, 0)
    assert (r.start, r.end, r.unit) == (START, END, "month") and r.handoff["point"] is not None
    for wh in connect(cfg):
        (s,) = status(cfg, wh, [table])
        assert s["done"] == 0 and s["handoff_point"] == r.handoff["point"]  # recorded
    (r,) = run(cfg, [table], start=START, end=END, through=5)  # 1..4 not done: they go first
    assert (r.status, r.loaded, r.skipped) == ("ok", 5, 0), r
    (r,) = run(cfg, [table], start=START, end=END, through=3)  # done already: skipped
    assert (r.status, r.loaded, r.skipped, r.rows) == ("ok", 0, 3, 0), r
    for n in (7, 6, CHUNKS, 8):  # instances started out of order
        (r,) = run(cfg, [table], start=START, end=END, through=n)
        assert r.status == "ok", r
    for wh in connect(cfg):
        (s,) = status(cfg, wh, [table])
        done = [c for c in s["chunk_rows"] if c["status"] == "done"]
        assert [c["chunk"] for c in done] == list(range(1, CHUNKS + 1))
        firsts = [c["batches"][0] for c in done if c["batches"][0] is not None]
        assert firsts == sorted(firsts)  # batch ids handed out in time order
    backfill_ok(cfg)  # the other tables, whole; this one: every chunk skipped
    assert_chunks_once(cfg, world)
    finish_and_compare(world, cfg, ref)


def test_a_handoff_killed_before_its_commit_moves_nothing(
    world: World, duckdb_warehouse: DuckDBWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.late_writes()
    ref = reference(world, DuckDBWarehouse(path=tmp_path / "ref.duckdb"))
    cfg = config(world, duckdb_warehouse, "a")
    backfill_ok(cfg)
    monkeypatch.setenv("TRACKLINE_FAIL_AT", "backfill.handoff_before_commit@2")
    faults.reset()
    with pytest.raises(InjectedFault):
        handoff(cfg, None)
    monkeypatch.delenv("TRACKLINE_FAIL_AT")
    faults.reset()
    for wh in connect(cfg):
        st = {s["table"]: s for s in status(cfg, wh)}
    handed = [t for t in TABLES if st[t]["handed_off_at"] is not None]
    assert handed == ["uni_tracking_info"]  # the second table's transaction rolled back
    assert st["ecs_order_info"]["incremental_watermark"] == "(start)"
    finish_and_compare(world, cfg, ref)


# --------------------------------------------------------------------------- counts


def test_a_chunk_whose_counts_differ_is_rolled_back_and_retried(
    world: World, duckdb_warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The legacy DW gets a row inside the chunk between its COUNT and its read (a load
    job still writing): the chunk is rolled back, recorded failed, and the retry loads it
    whole."""
    cfg = config(world, duckdb_warehouse, "a")
    count = LegacyTable.count
    written: list[int] = []

    def racing(self: LegacyTable, lo: Any, hi: Any) -> int:
        n = count(self, lo, hi)
        if self.b.table == "ecs_order_info" and lo == dt.datetime(2025, 3, 1) and not written:
            world.legacy.execute(
                "INSERT INTO dw_ecs_order_info VALUES (9001, 9001, '2025-03-09 10:00:00', 1)"
            )
            written.append(n)
        return n

    monkeypatch.setattr(LegacyTable, "count", racing)
    backfill_ok(cfg, ["ecs_order_info"])
    for wh in connect(cfg):
        s = status(cfg, wh)[0]
        raw = wh.scalar(f"SELECT COUNT(*) FROM {wh.t('raw', 'ecs_order_info_raw')}")
    failed = [c for c in s["chunk_rows"] if c["status"] == "failed"]
    assert [c["chunk"] for c in failed] == [5]
    assert "counts" in failed[0]["error"] and failed[0]["loaded_rows"] is None
    assert s["rows_loaded"] == legacy_count(world, "ecs_order_info") == int(raw)


def test_a_chunk_that_never_matches_fails_the_table_and_keeps_nothing(
    world: World, duckdb_warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(world, duckdb_warehouse, "a")
    count = LegacyTable.count
    monkeypatch.setattr(LegacyTable, "count", lambda self, lo, hi: count(self, lo, hi) + 1)
    res = run(cfg, ["ecs_order_info"], start=START, end=END)
    assert res[0].status == "failed" and "rolled back" in str(res[0].error)
    assert res[0].retried == cfg.backfill.attempts
    for wh in connect(cfg):
        raw = wh.scalar(f"SELECT COUNT(*) FROM {wh.t('raw', 'ecs_order_info_raw')}")
        s = status(cfg, wh)[0]
    assert int(raw) == 0
    assert s["done"] == 0 and s["failed_not_done"] == [1]  # the first chunk never matched
    assert len(s["chunk_rows"]) == cfg.backfill.attempts


# --------------------------------------------------------------------------- refusals


def test_an_overlapping_backfill_of_one_table_is_refused(
    world: World, duckdb_warehouse: DuckDBWarehouse
) -> None:
    cfg = config(world, duckdb_warehouse, "a")
    backfill_ok(cfg, ["ecs_order_info"])
    res = run(cfg, ["ecs_order_info"], start=START, end=END, unit="week")
    assert res[0].status == "failed" and "overlaps" in str(res[0].error)
    res = run(cfg, ["ecs_order_info"], start=dt.datetime(2025, 5, 1), end=END)
    assert res[0].status == "failed" and "overlaps" in str(res[0].error)
    for wh in connect(cfg):
        assert len(status(cfg, wh)) == 1
        raw = wh.scalar(f"SELECT COUNT(*) FROM {wh.t('raw', 'ecs_order_info_raw')}")
    assert int(raw) == legacy_count(world, "ecs_order_info")
    backfill_ok(cfg, ["ecs_order_info"])  # the same range again: resumed, nothing to load
    for wh in connect(cfg):
        raw = wh.scalar(f"SELECT COUNT(*) FROM {wh.t('raw', 'ecs_order_info_raw')}")
    assert int(raw) == legacy_count(world, "ecs_order_info")


def test_a_sync_already_past_the_handoff_needs_force(
    world: World, duckdb_warehouse: DuckDBWarehouse
) -> None:
    cfg = config(world, duckdb_warehouse, "a")
    assert all(r.status == "ok" for r in sync(cfg, ["ecs_order_info"]))
    res = run(cfg, ["ecs_order_info"], start=START, end=END)
    assert res[0].status == "failed" and "--force" in str(res[0].error)
    for wh in connect(cfg):
        assert status(cfg, wh) == []  # nothing recorded
    backfill_ok(cfg, ["ecs_order_info"], force=True)
    with pytest.raises(BackfillRefused, match="past the handoff point"):
        handoff(cfg, ["ecs_order_info"])
    (h,) = handoff(cfg, ["ecs_order_info"], force=True)
    assert h.status == "set"


def test_handoff_refuses_a_gap_between_the_legacy_range_and_production(
    world: World, duckdb_warehouse: DuckDBWarehouse
) -> None:
    """A backfill whose range ends months before production's oldest row: the rows between
    are in neither source. The run warned; the handoff used to go ahead all the same."""
    cfg = config(world, duckdb_warehouse, "a")
    res = run(cfg, ["ecs_order_info"], start=START, end=dt.datetime(2025, 5, 1))
    assert res[0].status == "ok", res[0].error
    with pytest.raises(BackfillRefused, match="in neither source") as refused:
        handoff(cfg, ["ecs_order_info"])
    assert "--force" in str(refused.value)
    for wh in connect(cfg):
        assert [s["handed_off_at"] for s in status(cfg, wh)] == [None]
    (h,) = handoff(cfg, ["ecs_order_info"], force=True)
    assert h.status == "set"


def test_handoff_refuses_a_backfill_with_chunks_left(
    world: World, duckdb_warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(world, duckdb_warehouse, "a")
    monkeypatch.setenv("TRACKLINE_FAIL_AT", "backfill.after_commit@4")
    faults.reset()
    with pytest.raises(InjectedFault):
        run(cfg, ["ecs_order_info"], start=START, end=END)
    monkeypatch.delenv("TRACKLINE_FAIL_AT")
    faults.reset()
    with pytest.raises(BackfillRefused, match="5 of 9 chunks not loaded"):
        handoff(cfg, ["ecs_order_info"])


# --------------------------------------------------------------------------- config


def _with(world: World, wh: Wh, **table: Any) -> dict[str, Any]:
    data = world.data(wh, world.tmp / "stage")
    data["backfill"]["tables"] = [{"table": "uni_tracking_spath", **table}]
    return data


def test_a_type_the_target_cannot_hold_names_the_column_and_the_fix(
    world: World, duckdb_warehouse: DuckDBWarehouse
) -> None:
    cfg = Config.model_validate(
        _with(world, duckdb_warehouse, source_table="dw_uni_tracking_spath")
    )
    with pytest.raises(ConfigError) as err:
        run(cfg, start=START, end=END)
    msg = str(err.value)
    assert "backfill.tables[0]" in msg and "'pathTime'" in msg
    assert "datetime" in msg and "int" in msg and "TIMESTAMPDIFF" not in msg
    assert "UNIX_TIMESTAMP(`pathTime`)" in msg


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"source_table": "dw_nope"}, "source_table: 'dw_nope' not found"),
        ({"source_table": "dw_uni_tracking_spath", "columns": {"pathtim": "1"}}, "'pathtim'"),
        ({"source_table": "dw_uni_tracking_spath", "time": "code2"}, ".time: 'code2'"),
        (
            {"source_table": "dw_uni_tracking_spath", "columns": {"pathTime": "NOW() +"}},
            "columns.pathTime",
        ),
    ],
)
def test_bad_backfill_config_is_refused_with_its_key(
    world: World, duckdb_warehouse: DuckDBWarehouse, table: dict[str, Any], needle: str
) -> None:
    data = _with(world, duckdb_warehouse, **table)
    with pytest.raises(ConfigError) as err:
        cfg = parse_config(yaml.safe_dump(data))
        run(cfg, start=START, end=END)
    assert needle in str(err.value)
    for wh in connect(Config.model_validate(world.data(duckdb_warehouse, world.tmp / "s"))):
        assert not wh.table_exists("raw", "uni_tracking_spath_raw")


# --------------------------------------------------------------------------- Redshift


def _s3_stage(s3: S3Endpoint) -> dict[str, Any]:
    return {
        "url": s3.url("stage"),
        "endpoint_url": s3.endpoint_url,
        "region": s3.region,
        "access_key_id": s3.access_key_id,
        "secret_access_key": s3.secret_access_key,
    }


def test_backfill_into_redshift_compat_equals_a_straight_load(
    world: World, pg_db: PgDb, s3: S3Endpoint, tmp_path: Path
) -> None:
    """Redshift's load path (COPY from the S3 stage, run on PostgreSQL in compat mode; every
    statement checked against Redshift's rules by the session's recorder)."""
    world.late_writes()
    ref = reference(world, DuckDBWarehouse(path=tmp_path / "ref.duckdb"))
    cfg = Config.model_validate(world.data(pg_db.redshift_compat(), _s3_stage(s3)))
    backfill_ok(cfg)
    assert_chunks_once(cfg, world)
    finish_and_compare(world, cfg, ref)


def test_sql_plan_shows_the_backfill_and_its_script_runs(world: World, pg_db: PgDb) -> None:
    """`trackline sql backfill`: the first chunk of each table as Redshift would get it, and
    its compat script runs on PostgreSQL after the state's (a backfill comes first)."""
    from tests.integration.test_sql_plans_run import (
        ROW_ESTIMATE,
        _stable,
        as_compat_sends,
        run_script,
    )

    cfg = Config.model_validate(world.data(pg_db.redshift_compat(), {"url": "s3://tl-stage/prod"}))
    printed = render_plan(cfg, "backfill")
    for table in TABLES:
        raw = f'"raw"."{table}_raw"'
        assert any(s.startswith(f"COPY {raw}") for s in printed), table
        assert any(s.startswith("SELECT COUNT(*) FROM " + raw) for s in printed), table
    assert sum(s.startswith('INSERT INTO "trackline"."backfills"') for s in printed) == 3
    assert sum(s.startswith('INSERT INTO "trackline"."backfill_chunks"') for s in printed) == 3
    sent = plan_statements(cfg, "backfill", compat=True)
    assert [s for p in printed if (s := as_compat_sends(p)) is not None] == [
        _stable(s.sql) for s in sent if not ROW_ESTIMATE.match(s.sql)
    ]
    assert isinstance(cfg.warehouse, RedshiftWarehouse)
    compat = Redshift(cfg.warehouse)
    compat.connect()
    try:
        run_script(compat, plan_statements(cfg, "state", compat=True))
        assert run_script(compat, sent) > 0
        assert not compat.in_transaction
    finally:
        compat.close()


# --------------------------------------------------------------------------- the CLI, killed

PAUSING = """
import os, sys, time
import trackline.backfill.run as run

step, _, nth = os.environ["PAUSE_AT"].partition("@")
hits = 0
original = run.checkpoint


def checkpoint(name):
    global hits
    original(name)
    if name != step:
        return
    hits += 1
    if hits == int(nth or 1):
        print(f"PAUSED at {name}", file=sys.stderr, flush=True)
        while True:
            time.sleep(1)


run.checkpoint = checkpoint
from trackline.cli import main

main()
"""


def _cli(path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-c", "from trackline.cli import main; main()", *args, "-c", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,  # a guard against a hang, not a measure
    )


def test_the_cli_killed_by_exit_and_sigkill_resumes_to_the_same_end_state(
    world: World, duckdb_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    world.late_writes()
    ref = reference(world, DuckDBWarehouse(path=tmp_path / "ref.duckdb"))
    data = world.data(duckdb_warehouse, tmp_path / "stage")
    path = tmp_path / "trackline.yml"
    path.write_text(yaml.safe_dump(data))
    cfg = Config.model_validate(data)
    span = ["--start", "2024-11", "--end", "2025-08"]

    planned = _cli(path, "backfill", "plan", *span, "--exact")
    assert planned.returncode == 0, planned.stderr
    assert "[2024-11-01 00:00:00, 2025-08-01 00:00:00) in 9 month chunks" in planned.stdout
    assert "convert tno: NULLIF(tno, '')" in planned.stdout
    assert "rows counted" in planned.stdout and "handoff: " in planned.stdout
    for wh in connect(cfg):  # the plan wrote nothing
        assert not wh.table_exists("raw", "uni_tracking_info_raw")

    killed = _cli(
        path,
        "backfill",
        "run",
        *span,
        "--workers",
        "1",
        env={"TRACKLINE_FAIL_AT": "backfill.after_batch@9", "TRACKLINE_FAIL_MODE": "exit"},
    )
    assert killed.returncode == 99, killed.stderr
    wrapper = tmp_path / "pausing.py"
    wrapper.write_text(PAUSING)
    proc = subprocess.Popen(
        [sys.executable, str(wrapper), "backfill", "run", "-c", str(path), *span],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PAUSE_AT": "backfill.after_batch@4"},
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "PAUSED at" in line:
            break
    proc.send_signal(signal.SIGKILL)  # inside a chunk's transaction: no handler, no rollback
    assert proc.wait(timeout=60) == -signal.SIGKILL, "".join(seen)

    again = _cli(path, "backfill", "run", *span)
    assert again.returncode == 0, again.stderr
    assert_chunks_once(cfg, world)
    shown = _cli(path, "backfill", "status")
    assert shown.stdout.count("9/9 chunks done, 0 failed attempts") == 3, shown.stdout
    handed = _cli(path, "backfill", "handoff")
    assert handed.returncode == 0 and handed.stdout.count("incremental watermark set") == 3
    cycle_ok(cfg)
    cycle_ok(cfg)
    assert end_state(cfg) == ref


def test_chunks_with_dense_ids_are_read_by_primary_key_range(
    world: World, duckdb_warehouse: DuckDBWarehouse
) -> None:
    """spath's ids rise with its times: its chunks are read as primary-key ranges (still
    filtered by time); uti's do not: its chunks are read through the time index."""
    from trackline.backfill.setup import setup

    cfg = config(world, duckdb_warehouse, "a")
    for table, dense in (("uni_tracking_spath", True), ("uni_tracking_info", False)):
        s = setup(cfg, table, START, END, None)
        try:
            c = s.chunks[5]  # 2025-04
            lo, hi = s.bounds(c)
            n = s.legacy.count(lo, hi)
            ids = s.legacy.id_span(lo, hi, n)
            assert (ids is not None) is dense, (table, ids, n)
            sql = s.legacy.rows_sql(lo, hi, False, None, ids)
            assert ("FORCE INDEX (PRIMARY)" in sql) is dense
            got = s.legacy.src.rows(f"SELECT COUNT(*) FROM ({sql}) AS x")
            assert got[0][0] == n > 0
        finally:
            s.close()


def test_a_merge_table_is_backfilled_one_row_per_key(world: World, warehouse_config: Wh) -> None:
    """`write_mode: merge`: each chunk replaces by key (the newest row of a key within a chunk
    wins), counts are the rows read; a rerun of the same range loads nothing again."""
    data = world.data(warehouse_config, world.tmp / "stage")
    uti = data["tables"][0]
    uti.update({"write_mode": "merge", "primary_key": ["order_id"], "target_table": "uti"})
    data.pop("marts")
    data["backfill"]["tables"] = data["backfill"]["tables"][:1]
    cfg = Config.model_validate(data)
    backfill_ok(cfg)
    backfill_ok(cfg)
    want = sorted(
        (r[0], unix(r[1]), r[2], r[3] or None)
        for r in world.legacy.query(
            "SELECT order_id, update_time, status, tno FROM dw_uni_tracking_info"
        )
    )
    for wh in connect(cfg):
        got = sorted(
            tuple(int(v) if i in (0, 1) else v for i, v in enumerate(r))
            for r in wh.query(
                f"SELECT {wh.cols(['order_id', 'update_time', 'status', 'tno'])} "
                f"FROM {wh.t('raw', 'uti')}"
            )
        )
        s = status(cfg, wh)[0]
    assert got == want
    assert s["done"] == CHUNKS and s["rows_loaded"] == len(want)


def test_the_next_chunk_is_counted_before_this_one_commits(
    world: World, duckdb_warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The legacy reader runs a chunk ahead: when a chunk reaches its commit, the next
    chunk's COUNT has been taken (the commit waits for it here; without the read-ahead it
    never comes and the run fails). What was read ahead is still loaded once, in order."""
    import threading

    import trackline.backfill.run as run_mod

    cfg = config(world, duckdb_warehouse, "a")
    count = LegacyTable.count
    counted: list[dt.datetime] = []
    seen = threading.Condition()

    def recording(self: LegacyTable, lo: Any, hi: Any) -> int:
        n = count(self, lo, hi)
        with seen:
            counted.append(lo)
            seen.notify_all()
        return n

    commits = 0
    original = run_mod.checkpoint

    def waiting(name: str) -> None:
        nonlocal commits
        original(name)
        if name != "backfill.before_commit":
            return
        commits += 1
        if commits < CHUNKS:
            with seen:  # a guard against a hang, not a measure
                assert seen.wait_for(lambda: len(counted) > commits, timeout=60), counted

    monkeypatch.setattr(LegacyTable, "count", recording)
    monkeypatch.setattr(run_mod, "checkpoint", waiting)
    backfill_ok(cfg, ["uni_tracking_spath"])
    assert counted == sorted(counted) and len(counted) == CHUNKS
    for wh in connect(cfg):
        s = status(cfg, wh)[0]
        rows = wh.query(
            "SELECT batch_id, wm_to FROM trackline.batches WHERE table_key = ? ORDER BY batch_id",
            ("raw.uni_tracking_spath_raw",),
        )
    assert s["done"] == CHUNKS and s["rows_loaded"] == legacy_count(world, "uni_tracking_spath")
    chunk_of_batch = [json.loads(r[1])["extra"]["chunk"] for r in rows]
    assert chunk_of_batch == sorted(chunk_of_batch)  # batch ids follow the chunks' order


def test_a_chunk_run_again_after_a_transient_error_is_read_again(
    world: World, duckdb_warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retryable warehouse error in the middle of a chunk reruns its transaction: the
    chunk is counted and read again from the legacy side (what the reader had read ahead is
    dropped), and every legacy row is loaded once."""
    from trackline.errors import RetryableWarehouseError
    from trackline.load.duckdb import DuckDB

    cfg = config(world, duckdb_warehouse, "a")
    count = LegacyTable.count
    counted: list[Any] = []

    def recording(self: LegacyTable, lo: Any, hi: Any) -> int:
        counted.append(lo)
        return count(self, lo, hi)

    append = DuckDB.append_arrow
    calls = 0

    def flaky(self: DuckDB, *a: Any, **kw: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 4:  # the 4th batch loaded: inside a chunk, after 3 chunks with rows
            raise RetryableWarehouseError("connection reset (injected)")
        return append(self, *a, **kw)

    monkeypatch.setattr(LegacyTable, "count", recording)
    monkeypatch.setattr(DuckDB, "append_arrow", flaky)
    backfill_ok(cfg, ["uni_tracking_spath"])
    # the interrupted chunk was counted again; the next one or two too when the reader had
    # already counted them ahead (it reads a chunk ahead, and counts the chunk after the one
    # it reads): what it read ahead is dropped with the restart
    again = sorted({lo for lo in counted if counted.count(lo) > 1})
    assert 1 <= len(again) <= 3 and len(counted) == CHUNKS + len(again), counted
    assert all(counted.count(lo) == 2 for lo in again)
    restart = len(counted) - 1 - counted[::-1].index(again[0])
    assert counted[restart:] == sorted(counted[restart:])  # from there in order again
    assert counted[:restart] == sorted(counted[:restart])
    for wh in connect(cfg):
        s = status(cfg, wh)[0]
        raw = wh.scalar(f"SELECT COUNT(*) FROM {wh.t('raw', 'uni_tracking_spath_raw')}")
        dup = wh.scalar(
            f"SELECT COUNT(*) - COUNT(DISTINCT id) FROM {wh.t('raw', 'uni_tracking_spath_raw')}"
        )
    assert s["done"] == CHUNKS and not [c for c in s["chunk_rows"] if c["status"] == "failed"]
    assert int(raw) == s["rows_loaded"] == legacy_count(world, "uni_tracking_spath")
    assert int(dup) == 0


def test_a_dense_chunk_is_read_in_key_pieces_of_a_batch_each(
    world: World, duckdb_warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk read by primary-key range is fetched as consecutive key ranges of at most a
    batch of ids, each read whole (`MySQL.fetch`, which lets the stager and the loader run
    meanwhile), and regrouped into batches of exactly the batch size. With every third
    legacy row gone (the ids still dense enough), each piece holds fewer rows than a batch:
    every row is still loaded once, and each chunk's batches but its last are full."""
    import trackline.backfill.run as run_mod
    from trackline.extract.mysql import MySQL

    world.legacy.execute("DELETE FROM dw_uni_tracking_spath WHERE id % 3 = 0")
    cfg = config(world, duckdb_warehouse, "a")
    fetch = MySQL.fetch
    fetched: list[int] = []

    def recording(self: MySQL, sql: str, schema: Any) -> Any:
        got = fetch(self, sql, schema)
        fetched.append(got.num_rows)
        return got

    monkeypatch.setattr(MySQL, "fetch", recording)
    monkeypatch.setattr(run_mod, "MIN_BATCH", 1)
    backfill_ok(cfg, ["uni_tracking_spath"], batch_size=7)
    total = legacy_count(world, "uni_tracking_spath")
    assert sum(fetched) == total and max(fetched) <= 7
    assert len(fetched) > CHUNKS  # several pieces a chunk
    for wh in connect(cfg):
        s = status(cfg, wh)[0]
        rows = wh.query(
            "SELECT wm_to, row_count FROM trackline.batches WHERE table_key = ? ORDER BY batch_id",
            ("raw.uni_tracking_spath_raw",),
        )
        dup = wh.scalar(
            f"SELECT COUNT(*) - COUNT(DISTINCT id) FROM {wh.t('raw', 'uni_tracking_spath_raw')}"
        )
    assert s["done"] == CHUNKS and s["rows_loaded"] == total and int(dup) == 0
    per_chunk: dict[int, list[int]] = {}
    for wm_to, n in rows:
        per_chunk.setdefault(json.loads(wm_to)["extra"]["chunk"], []).append(int(n))
    assert any(len(sizes) > 2 for sizes in per_chunk.values())
    for sizes in per_chunk.values():
        assert all(n == sizes[0] for n in sizes[:-1]) and sizes[-1] <= sizes[0], per_chunk


def test_fetch_lets_other_python_threads_run_while_the_server_works(mysql_db: MySQLDb) -> None:
    """connectorx's streaming read holds Python's GIL while it waits for the server; the
    whole-result read the backfill uses for its key pieces releases it: a Python thread keeps
    running through a one-second statement (a progress check with a wide margin: ten steps
    of 10 ms in a second, not a timing)."""
    import threading
    import time

    import pyarrow as pa

    from trackline.config import MySQLSource
    from trackline.extract.mysql import MySQL

    src = MySQL(
        MySQLSource(
            type="mysql",
            host=mysql_db.host,
            port=mysql_db.port,
            user=mysql_db.user,
            password=mysql_db.password,
            database=mysql_db.database,
        )
    )
    try:
        src.rows("SELECT 1")  # connected: the server's kind decides the statement's limits
        steps = 0
        done = threading.Event()
        got: list[Any] = []

        def read() -> None:
            try:
                got.append(src.fetch("SELECT SLEEP(1) AS s", pa.schema([("s", pa.int64())])))
            finally:
                done.set()

        reader = threading.Thread(target=read)
        reader.start()
        while not done.is_set():
            time.sleep(0.01)
            steps += 1
        reader.join()
    finally:
        src.close()
    assert got[0].column("s").to_pylist() == [0]
    assert steps >= 10, steps
