"""The mart layer under attack, on real DuckDB and PostgreSQL (the same scenarios on both).

Every test builds a small SQLite order-tracking source (tests/integration/marts_helpers.py),
moves its clock through simulated days and runs real cycles (`run_cycle_on`: sync → marts →
raw trim). Where a test can, it compares the warehouse with an oracle computed from the
source alone (`expected_state`): which orders are active, which are in which history period.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

import pytest
from click.testing import CliRunner

from tests.conftest import MySQLDb, PgDb
from tests.integration.marts_helpers import (
    DAY,
    ECS,
    RETENTION,
    UTI,
    UTS,
    Driver,
    Pipeline,
    Source,
    State,
    actual_state,
    busy_plan,
    config_dict,
    connect,
    day,
    expected_state,
    make_config,
    write_config,
)
from tests.integration.test_redshift_marts import RecordingRedshift
from tests.redshift_checks import redshift_problems
from trackline import faults
from trackline.cli import main
from trackline.config import Config, DuckDBWarehouse, PostgresWarehouse, RedshiftWarehouse
from trackline.errors import InjectedFault, LockBusy
from trackline.load import Warehouse
from trackline.load.redshift import Redshift
from trackline.marts.cycle import run_cycle_on, trim_raw
from trackline.marts.engine import GroupEngine
from trackline.marts.exceptions import Exceptions
from trackline.marts.invariants import check_all, missing_keys
from trackline.quality.run import run_checks
from trackline.state import pipeline_lock
from trackline.status import replay_table, reset_table
from trackline.sync import Syncer

WarehouseCfg: TypeAlias = DuckDBWarehouse | PostgresWarehouse


@pytest.fixture
def pipe(tmp_path: Path, warehouse_config: WarehouseCfg) -> Iterator[Pipeline]:
    p = Pipeline(tmp_path, warehouse_config)
    try:
        yield p
    finally:
        p.close()


def assert_state(p: Pipeline, retention: int = RETENTION) -> State:
    """The warehouse equals the oracle, G1 holds and mart ∪ history covers every key loaded."""
    exp, act = expected_state(p.src, retention), actual_state(p.wh, p.schema)
    for name in ("uti", "hist_uti", "ecs", "hist_ecs", "uts", "hist_uts"):
        assert getattr(act, name) == getattr(exp, name), name
    assert check_all(p.cfg, p.wh) == []
    assert missing_keys(p.wh, p.cfg.marts[0], p.src.keys()) == set()
    return act


def sync_only(cfg: Config, wh: Warehouse) -> None:
    syncer = Syncer(cfg, wh)
    try:
        assert all(r.status == "ok" for r in syncer.sync())
    finally:
        syncer.close()


def count(wh: Warehouse, schema: str, table: str, where: str = "", params: tuple = ()) -> int:
    return int(wh.scalar(f"SELECT COUNT(*) FROM {wh.t(schema, table)} {where}", params) or 0)


@contextlib.contextmanager
def released(p: Pipeline) -> Iterator[None]:
    """Close our connection while the CLI (its own process-level connection) runs."""
    p.wh.close()
    try:
        yield
    finally:
        p.wh = connect(p.cfg)


# ------------------------------------------------------------ G1: the windowed-delete bug


def test_seed001_order_updated_day_0_62_89_has_one_row(
    tmp_path: Path, warehouse_config: WarehouseCfg
) -> None:
    """The legacy pipeline's 20-day delete window left the day-62 row beside the day-89 one."""
    p = Pipeline(tmp_path, warehouse_config, retention=200 * DAY)
    try:
        p.src.touch(1, day(0), code=10)
        p.src.touch(2, day(0), code=10)  # a neighbour that must not be touched
        p.step(day(1))
        p.src.touch(1, day(62), code=200)
        p.step(day(63))
        # day 89: the mart consumes two raw versions of order 1 in one chunk (synced, not
        # yet built), the older one first: the newest wins, the old row goes, no window.
        p.src.touch(1, day(88), code=250)
        p.src.clock(day(88) + 1)
        sync_only(p.cfg, p.wh)
        p.src.touch(1, day(89), code=500)
        s = p.step(day(90))
        anchor = next(m for m in s.marts if m.mart == UTI)
        assert anchor.rows_in == 2 and anchor.inserted == 1
        assert p.rows(UTI, "order_id, update_time, status") == [
            (1, day(89), "s500"),
            (2, day(0), "s10"),
        ]
        assert p.rows(ECS, "order_id, add_time") == [(1, day(0)), (2, day(0))]
        assert p.join3(1) == 4  # ecs 1 x spath 4 x uti 1
        assert_state(p, 200 * DAY)
    finally:
        p.close()


def test_older_version_never_replaces_newer(pipe: Pipeline) -> None:
    """A replayed / late raw version older than the mart's row is dropped, not applied."""
    pipe.src.touch(1, day(0))
    pipe.step(day(1))
    pipe.src.touch(1, day(10), code=500)
    pipe.step(day(11))
    # A late row with an old time for the same order lands in raw (as a backfill would).
    _append_raw_batch(pipe, "uni_tracking_info", [(1, 1, day(5), "s_old", "T1")])
    s = pipe.step(day(12))
    assert {m.mart: m.rows_in for m in s.marts}[UTI] == 1
    assert pipe.rows(UTI, "order_id, update_time, status") == [(1, day(10), "s500")]
    # Two versions of one order with the SAME time in one chunk: the higher source id wins.
    _append_raw_batch(pipe, "uni_tracking_info", [(31, 4, day(11), "first", "T4")])
    _append_raw_batch(pipe, "uni_tracking_info", [(30, 4, day(11), "lower id", "T4")])
    _append_raw_batch(pipe, "uni_tracking_info", [(32, 4, day(11), "tie winner", "T4")])
    pipe.step(day(13))
    assert pipe.rows(UTI, "order_id, status") == [(1, "s500"), (4, "tie winner")]


def _append_raw_batch(p: Pipeline, table: str, rows: list[tuple[Any, ...]]) -> int:
    """Write `rows` (id, order_id, time, status, tno) to raw as a new ledger batch, the way
    a backfill would: rows + ledger entry + watermark batch id in one transaction."""
    from trackline.extract.cdc import Watermark
    from trackline.state import StateStore
    from trackline.sync import resolve

    rt = resolve(p.cfg, p.cfg.table(table), None, None)
    state = StateStore(p.wh, p.cfg.state_schema)
    st = state.get(rt.key, rt.source_db)
    bid = state.next_batch_id(rt.key)
    ref = p.wh.t(rt.target_schema, rt.target)
    with p.wh.transaction():
        for r in rows:
            p.wh.execute(
                f"INSERT INTO {ref} (id, order_id, update_time, status, tno, _tl_batch_id) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (*r, bid),
            )
        state.record_batch(
            table_key=rt.key,
            source_db=rt.source_db,
            batch_id=bid,
            run_id="test",
            row_count=len(rows),
            checksum="",
            files=(),
            manifest=None,
            wm_from=Watermark(),
            wm_to=Watermark(),
        )
        state.put(rt.key, rt.source_db, "hybrid", st.watermark, bid, len(rows))
    return bid


# --------------------------------------------------------------------------- retention as a unit


def test_long_lifecycle_keeps_ecs_and_dormant_orders_leave_as_a_unit(pipe: Pipeline) -> None:
    src = pipe.src
    # L: created 8 months before the end, updated every 10 days until the end.
    # D: created day 0, dormant after day 5 -> history 2026_h1 for uti, ecs and spath.
    # E: created day 170 (June, h1), last update day 200 (July, h2) -> uti AND ecs in h2,
    #    its spath events by their own time: day 170 in h1, day 200 in h2.
    src.touch(100, day(0))  # L
    src.touch(200, day(0))  # D
    src.touch(200, day(5))
    for c in range(20, 261, 20):
        for t in (c - 20, c - 10):
            if t:
                src.touch(100, day(t) + 60)
        if c == 180:
            src.touch(300, day(170))
        if c == 220:
            src.touch(300, day(200))
        pipe.step(day(c))
        assert pipe.join3(100) >= 1, f"order L not joinable at day {c}"
        assert check_all(pipe.cfg, pipe.wh) == []
    act = assert_state(pipe)
    # L: ecs row from day 0 kept, joinable; its old events archived by their own time.
    assert pipe.rows(ECS, "order_id, add_time")[0] == (100, day(0))
    assert 100 in act.uti and 100 in act.ecs
    old = pipe.wh.query(
        f"SELECT id FROM {pipe.t(UTS)} WHERE order_id = 100 AND {pipe.wh.q('pathTime')} < ?",
        (day(240) + 60 - RETENTION,),
    )
    assert old == []
    l_hist = pipe.wh.query(
        f"SELECT {pipe.wh.q('pathTime')} FROM {pipe.t('hist_uts_2026_h1')} WHERE order_id = 100"
    )
    assert len(l_hist) == 19  # day 0 and days 10..180 (30 June): the first half-year
    # D: one unit in 2026_h1, gone from the marts.
    assert pipe.where_in_history("uti", 200) == ["hist_uti_2026_h1"]
    assert pipe.where_in_history("ecs", 200) == ["hist_ecs_2026_h1"]
    assert pipe.where_in_history("uts", 200) == ["hist_uts_2026_h1"]
    for table in (UTI, ECS, UTS):
        assert 200 not in pipe.keys(table)
    # E: the ecs row follows the anchor's period (h2), not its own add_time (h1).
    assert pipe.where_in_history("uti", 300) == ["hist_uti_2026_h2"]
    assert pipe.where_in_history("ecs", 300) == ["hist_ecs_2026_h2"]
    assert sorted(pipe.where_in_history("uts", 300)) == ["hist_uts_2026_h1", "hist_uts_2026_h2"]
    # the union views see every period
    for view, name in ((f"{UTI}_hist", "uti"), (f"{ECS}_hist", "ecs"), (f"{UTS}_hist", "uts")):
        total = sum(count(pipe.wh, pipe.schema, h) for h in pipe.hist_tables(name))
        assert count(pipe.wh, pipe.schema, view) == total > 0


# --------------------------------------------------------------------------- reactivation


def _archive_then_reactivate(p: Pipeline) -> None:
    """Order 7 lives days 0-3, goes dormant past the retention (archived), comes back on day
    70. Order 1 is a heartbeat that moves the data clock."""
    p.src.touch(7, day(0), code=10)
    p.src.touch(7, day(3), code=200)
    for c in range(5, 66, 10):
        p.src.touch(1, day(c - 1))
        p.step(day(c))
    assert p.where_in_history("uti", 7) == ["hist_uti_2026_h1"]
    assert p.where_in_history("ecs", 7) == ["hist_ecs_2026_h1"]
    assert len(p.rows("hist_uts_2026_h1", "id")) >= 2
    assert 7 not in p.keys(UTI) + p.keys(ECS) + p.keys(UTS)
    p.src.touch(7, day(70), code=300)
    p.src.touch(1, day(70))


def test_reactivation_restores_follower_and_the_join(pipe: Pipeline) -> None:
    _archive_then_reactivate(pipe)
    s = pipe.step(day(71))
    stats = {m.mart: m for m in s.marts}
    assert stats[UTI].reactivated == 1 and stats[ECS].reactivated == 1
    assert pipe.where_in_history("uti", 7) == []  # stale anchor row removed
    assert pipe.where_in_history("ecs", 7) == []  # restored, not duplicated
    assert pipe.rows(ECS, "order_id, add_time") == [(1, day(4)), (7, day(0))]
    assert pipe.rows(UTI, "order_id, update_time, status")[1] == (7, day(70), "s300")
    old = pipe.wh.query(
        f"SELECT {pipe.wh.q('pathTime')} FROM {pipe.t('hist_uts_2026_h1')} WHERE order_id = 7 "
        "ORDER BY 1"
    )
    assert old == [(day(0),), (day(3),)]  # old events stay history
    assert pipe.join3(7) == 1  # the day-70 event
    assert_state(pipe)
    # Dormant again, now into the second half-year: ecs follows the anchor to 2026_h2.
    pipe.src.touch(7, day(185))
    for c in range(186, 236, 10):
        pipe.src.touch(1, day(c - 1))
        pipe.step(day(c))
    assert pipe.where_in_history("uti", 7) == ["hist_uti_2026_h2"]
    assert pipe.where_in_history("ecs", 7) == ["hist_ecs_2026_h2"]
    assert_state(pipe)


class LocalStageRecorder(RecordingRedshift):
    """Records every statement but the COPY (compat mode loads the local stage's files)."""

    def _copy_manifest(
        self, target: str, names: list[str], manifest: str, *, documents: bool = False
    ) -> None:
        Redshift._copy_manifest(self, target, names, manifest, documents=documents)


def test_order_re_archived_into_another_half_year_takes_its_follower_along(
    tmp_path: Path, any_warehouse: DuckDBWarehouse | PostgresWarehouse | RedshiftWarehouse
) -> None:
    """A corrected update_time (seen by a full re-read) moves archived order 7 straight from
    2026_h1 to 2026_h2: its new time is already past the cutoff, so the anchor row never
    becomes active and the ecs row is never reactivated. The ecs row must still move to the
    anchor's new period (one archived order sits in one period), and not be copied into both.
    Through the Redshift adapter too, every statement checked against what Redshift takes."""
    p = Pipeline(tmp_path, any_warehouse)  # type: ignore[arg-type]
    if isinstance(any_warehouse, RedshiftWarehouse):
        p.wh.close()
        p.wh = LocalStageRecorder(any_warehouse)
        p.wh.connect()
    try:
        p.src.touch(7, day(3))
        for c in range(10, 231, 20):
            p.src.touch(1, day(c - 1))
            p.step(day(c))
        assert p.where_in_history("uti", 7) == ["hist_uti_2026_h1"]
        assert p.where_in_history("ecs", 7) == ["hist_ecs_2026_h1"]
        p.src.con.execute(  # the cutoff is now day 199
            "UPDATE uni_tracking_info SET update_time = ? WHERE order_id = 7", (day(185),)
        )
        p.src.touch(1, day(231))
        p.wh.close()
        reset_table(p.cfg, "uni_tracking_info")  # below the watermark: only a re-read sees it
        p.wh.connect()
        s = p.step(day(232))
        assert {m.mart: m.reactivated for m in s.marts}[ECS] == 0
        assert p.where_in_history("uti", 7) == ["hist_uti_2026_h2"]
        assert p.where_in_history("ecs", 7) == ["hist_ecs_2026_h2"]
        assert 7 not in p.keys(UTI) + p.keys(ECS)
        assert_state(p)
        if isinstance(p.wh, LocalStageRecorder):
            moves = [s for s in p.wh.sent if "hist_ecs_2026_h1" in s.sql and "_tl_stray" in s.sql]
            assert len(moves) == 2  # the copy into 2026_h2 and the delete from 2026_h1
            assert {s.sql: redshift_problems(s) for s in p.wh.sent if redshift_problems(s)} == {}
    finally:
        p.close()


def test_two_departures_of_one_order_in_one_follower_run_leave_one_copy(pipe: Pipeline) -> None:
    """The anchor archives order 7 into 2026_h1, then (after a full re-read, in a batch the
    follower has not read yet) moves it to 2026_h2. The follower, catching up over both
    departures in one run, must put its row in the latest period only."""
    p = pipe

    def anchor_only(t: int) -> None:
        p.src.clock(t)
        sync_only(p.cfg, p.wh)
        GroupEngine(p.cfg, p.cfg.marts[0], p.wh).run_anchor()

    p.src.touch(7, day(3))
    p.src.touch(1, day(9))
    p.step(day(10))
    for c in range(30, 231, 40):
        p.src.touch(1, day(c - 1))
        anchor_only(day(c))
    assert p.where_in_history("uti", 7) == ["hist_uti_2026_h1"]
    p.src.con.execute(
        "UPDATE uni_tracking_info SET update_time = ? WHERE order_id = 7", (day(185),)
    )
    p.src.touch(1, day(231))
    with released(p):
        reset_table(p.cfg, "uni_tracking_info")
    anchor_only(day(232))
    assert p.where_in_history("uti", 7) == ["hist_uti_2026_h2"]
    assert 7 in p.keys(ECS)  # the follower has not run since day 10
    p.step(day(233))
    assert p.where_in_history("ecs", 7) == ["hist_ecs_2026_h2"]
    assert_state(p)


def test_reactivation_report_mode_opens_exception(
    tmp_path: Path, warehouse_config: WarehouseCfg
) -> None:
    p = Pipeline(tmp_path, warehouse_config, on_reactivation="report")
    try:
        _archive_then_reactivate(p)
        s = p.step(day(71))
        stats = {m.mart: m for m in s.marts}
        assert stats[ECS].reactivated == 0 and stats[ECS].exceptions == 1
        assert [(e[1], e[2], e[3]) for e in p.exceptions()] == [("follower_reactivated", ECS, "7")]
        assert 7 in p.keys(UTI) and 7 not in p.keys(ECS)
        assert p.where_in_history("ecs", 7) == ["hist_ecs_2026_h1"]  # left for the operator
        assert p.join3(7) == 0
        # seen again: the same exception, not a new one
        p.src.touch(7, day(72))
        p.step(day(73))
        assert len(p.exceptions("follower_reactivated")) == 1
        assert check_all(p.cfg, p.wh) == []
    finally:
        p.close()


def test_report_mode_resync_of_archived_orders_is_not_a_reactivation(
    tmp_path: Path, warehouse_config: WarehouseCfg
) -> None:
    """A reset + full re-read brings archived orders' uti rows back unchanged: they go
    straight back to history in the same cycle, so no follower exception may be raised."""
    p = Pipeline(tmp_path, warehouse_config, on_reactivation="report")
    try:
        _archive_then_reactivate(p)  # leaves order 7 touched on day 70, not yet synced
        p.src.con.execute(
            "UPDATE uni_tracking_info SET update_time = ? WHERE order_id = 7", (day(3),)
        )
        p.src.touch(1, day(70))
        p.step(day(71))
        assert p.where_in_history("uti", 7) == ["hist_uti_2026_h1"]
        with released(p):
            reset_table(p.cfg, "uni_tracking_info")
        s = p.step(day(72))
        assert {m.mart: m.reactivated for m in s.marts}[UTI] >= 1  # 7 came back, and left
        assert p.exceptions("follower_reactivated") == []
        assert p.where_in_history("uti", 7) == ["hist_uti_2026_h1"]
        assert p.where_in_history("ecs", 7) == ["hist_ecs_2026_h1"]
        assert check_all(p.cfg, p.wh) == []
    finally:
        p.close()


def test_follower_row_arriving_after_its_order_left_goes_to_history(pipe: Pipeline) -> None:
    """Order 9's ecs record is created (add_time day 50) after the order was archived (last
    update day 3): it must join the order's history period, not sit alone in mart_ecs."""
    p = pipe
    p.src.con.execute(
        "INSERT INTO uni_tracking_info (order_id, update_time, status, tno) "
        "VALUES (9, ?, 's1', 'T9')",
        (day(3),),
    )
    for c in range(10, 51, 10):
        p.src.touch(1, day(c - 1))
        p.step(day(c))
    assert p.where_in_history("uti", 9) == ["hist_uti_2026_h1"]
    p.src.con.execute(
        "INSERT INTO ecs_order_info (order_id, add_time, partner_id) VALUES (9, ?, 7)", (day(50),)
    )
    p.src.touch(1, day(51))
    p.step(day(52))
    assert 9 not in p.keys(ECS)
    assert p.where_in_history("ecs", 9) == ["hist_ecs_2026_h1"]
    assert check_all(p.cfg, p.wh) == []
    # and it comes back with its order
    p.src.touch(9, day(53))
    p.step(day(54))
    assert 9 in p.keys(ECS) and p.where_in_history("ecs", 9) == []
    assert p.join3(9) == 1


def test_orphan_follower_rows_leave_by_their_own_time_and_come_back(
    tmp_path: Path, warehouse_config: WarehouseCfg
) -> None:
    """An ecs row whose order never gets a uti row (an orphan) would stay in mart_ecs for
    ever: with the follower's `time`, it is archived by its own time once past the retention
    (its add_time's period), and restored when its order does appear after all. An ecs row
    whose order is still active stays however old it is."""
    data = config_dict(tmp_path / "src.db", warehouse_config, tmp_path / "stage")
    data["marts"][0]["followers"][0]["time"] = "add_time"
    p = Pipeline(tmp_path, warehouse_config)
    p.cfg = Config.model_validate(data)
    try:
        for order, t in ((20, day(1)), (21, day(2)), (22, day(40))):  # ecs only
            p.src.con.execute(
                "INSERT INTO ecs_order_info (order_id, add_time, partner_id) VALUES (?, ?, 5)",
                (order, t),
            )
        p.src.touch(1, day(0))  # order 1: active all along, its ecs row is old
        for c in range(5, 56, 5):
            p.src.touch(1, day(c - 1))
            p.step(day(c))
        assert sorted(p.keys(ECS)) == [1, 22]  # 22 is within the retention; 1 is active
        assert p.where_in_history("ecs", 20) == ["hist_ecs_2026_h1"]
        assert p.where_in_history("ecs", 21) == ["hist_ecs_2026_h1"]
        assert p.where_in_history("ecs", 1) == []
        assert check_all(p.cfg, p.wh) == []
        for order in (1, 20, 21, 22):  # every ecs row once, in the mart or in history (G2)
            copies = p.keys(ECS).count(order) + len(p.where_in_history("ecs", order))
            assert copies == 1, order
        # the order of orphan 21 shows up after all: its ecs row comes back with it
        p.src.touch(21, day(56))
        s = p.step(day(57))
        assert {m.mart: m.reactivated for m in s.marts}[ECS] == 1
        assert 21 in p.keys(ECS) and p.where_in_history("ecs", 21) == []
        assert p.join3(21) == 1
        # and 22 ages out too, without its order, as new orders move ecs's own data clock
        for c in range(60, 81, 5):
            p.src.touch(100 + c, day(c - 1))
            p.step(day(c))
        assert [o for o in sorted(p.keys(ECS)) if o < 100] == [1, 21]
        assert p.where_in_history("ecs", 22) == ["hist_ecs_2026_h1"]
        assert check_all(p.cfg, p.wh) == []
    finally:
        p.close()


def test_datetime_time_columns_from_mariadb(
    tmp_path: Path, warehouse_config: WarehouseCfg, mysql_db: MySQLDb
) -> None:
    """The same rules with DATETIME(6) time columns (periods bound as datetimes), read from a
    real MariaDB. The source clock is the server's, so times are placed relative to it."""
    for ddl in (
        "CREATE TABLE uni_tracking_info (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT,"
        " update_time DATETIME(6) NOT NULL, status VARCHAR(16))",
        "CREATE TABLE ecs_order_info (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT,"
        " add_time DATETIME(6) NOT NULL, partner_id INT)",
        "CREATE TABLE uni_tracking_spath (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT,"
        " pathTime DATETIME(6) NOT NULL, code INT)",
    ):
        mysql_db.execute(ddl)
    now = mysql_db.query("SELECT NOW(6)")[0][0]
    old, recent = now - dt.timedelta(days=100), now - dt.timedelta(hours=2)

    def order(o: int, t: dt.datetime) -> None:
        mysql_db.execute(
            "INSERT INTO uni_tracking_info (order_id, update_time, status) VALUES (%s, %s, 'a')",
            (o, t),
        )
        mysql_db.execute(
            "INSERT INTO ecs_order_info (order_id, add_time, partner_id) VALUES (%s, %s, 1)",
            (o, t),
        )
        mysql_db.execute(
            "INSERT INTO uni_tracking_spath (order_id, pathTime, code) VALUES (%s, %s, 1)", (o, t)
        )

    order(1, old)
    order(2, recent)
    order(None, recent)  # type: ignore[arg-type]
    data = config_dict(tmp_path / "unused.db", warehouse_config, tmp_path / "stage")
    data["sources"] = {"src": mysql_db.source_config(innodb_hold=False)}
    cfg = Config.model_validate(data)
    wh = connect(cfg)
    try:
        s = run_cycle_on(cfg, wh)
        assert s.ok, s.as_dict()
        assert {m.mart: (m.archived, m.null_keys) for m in s.marts} == {
            UTI: (1, 1),
            ECS: (1, 1),
            UTS: (1, 1),
        }
        from trackline.marts.history import Period

        suffix = Period.of(old).suffix
        schema = cfg.marts[0].schema_
        for name, mart in (("uti", UTI), ("ecs", ECS), ("uts", UTS)):
            assert wh.list_tables(schema, f"hist_{name}_") == [f"hist_{name}_{suffix}"]
            assert [r[0] for r in wh.query(f"SELECT order_id FROM {wh.t(schema, mart)}")] == [2]
        h = wh.t(schema, f"hist_uti_{suffix}")
        assert wh.query(f"SELECT order_id, update_time FROM {h}") == [(1, old)]
        # reactivate order 1: back in the anchor, ecs restored, history emptied
        mysql_db.execute("UPDATE uni_tracking_info SET update_time = NOW(6) WHERE order_id = 1")
        time.sleep(1.1)  # the upper bound is the server's NOW(): let it pass the update
        s = run_cycle_on(cfg, wh)
        assert s.ok
        assert {m.mart: m.reactivated for m in s.marts} == {UTI: 1, ECS: 1, UTS: 0}
        assert sorted(r[0] for r in wh.query(f"SELECT order_id FROM {wh.t(schema, ECS)}")) == [1, 2]
        assert wh.query(f"SELECT order_id FROM {h}") == []
        assert check_all(cfg, wh) == []
    finally:
        wh.close()


# --------------------------------------------------------------------------- G3: re-reads


def _busy(p: Pipeline, until: int, every: int = 8, check: bool = True) -> Driver:
    d = Driver(p.src, busy_plan())
    for c in range(1, until, every):
        d.until(day(c))
        s = run_cycle_on(p.cfg, p.wh)
        assert s.ok
        if check:
            assert_state(p)
    return d


def test_busy_months_match_the_oracle_after_every_cycle(pipe: Pipeline) -> None:
    """G1 + G2 (+ the exact place of every key) after every cycle of ~4 simulated months
    with short and long lifecycles, reactivations, same-second touches and NULL keys."""
    _busy(pipe, 135, every=10)
    assert pipe.hist_tables("uti") == ["hist_uti_2026_h1"]


def test_lookback_merge_rereads_create_no_duplicates(
    tmp_path: Path, warehouse_config: WarehouseCfg
) -> None:
    """Every table re-reads the last 20 days each cycle (lookback + merge)."""
    merge = {"lookback_seconds": 20 * DAY, "write_mode": "merge"}
    p = Pipeline(
        tmp_path,
        warehouse_config,
        tables={n: merge for n in ("uni_tracking_info", "ecs_order_info", "uni_tracking_spath")},
    )
    try:
        assert p.cfg.table("uni_tracking_info").target == "uni_tracking_info"
        _busy(p, 135, every=12)
    finally:
        p.close()


def test_reset_and_resync_everything_creates_no_duplicates(pipe: Pipeline) -> None:
    """`trackline reset` + a full re-read: every raw row comes back in NEW batches, including
    those of orders already archived. Marts and history must not change."""
    _busy(pipe, 90, every=12, check=False)
    before = actual_state(pipe.wh, pipe.schema)
    assert before.hist_uti and before.hist_ecs and before.hist_uts
    with released(pipe):
        for name in ("uni_tracking_info", "ecs_order_info", "uni_tracking_spath"):
            reset_table(pipe.cfg, name)
    s = run_cycle_on(pipe.cfg, pipe.wh)
    assert s.ok and sum(r.rows for r in s.sync) > 0
    assert actual_state(pipe.wh, pipe.schema) == before
    assert_state(pipe)
    # Archived events read again are not inserted (to be archived and trimmed again in the
    # same transaction): the re-read leaves the events mart untouched.
    uts = {m.mart: m for m in s.marts}[UTS]
    assert uts.rows_in >= len(before.hist_uts) + len(before.uts)
    assert (uts.inserted, uts.archived, uts.trimmed) == (0, 0, 0)


def test_replayed_raw_batches_create_no_duplicates(pipe: Pipeline) -> None:
    _busy(pipe, 60, every=12, check=False)
    before = actual_state(pipe.wh, pipe.schema)
    raw_before = count(pipe.wh, "raw", "uni_tracking_spath_raw")
    with released(pipe):  # replay opens its own connection
        for name in ("uni_tracking_info", "ecs_order_info", "uni_tracking_spath"):
            n, rows = replay_table(pipe.cfg, name, from_batch=1)
            assert n > 1 and rows > 0
    # replayed rows are back in raw (trimmed ones too) ...
    assert count(pipe.wh, "raw", "uni_tracking_spath_raw") > raw_before
    s = run_cycle_on(pipe.cfg, pipe.wh)
    assert s.ok
    # ... but no mart consumes a batch twice, and the raw buffer is trimmed again
    assert actual_state(pipe.wh, pipe.schema) == before
    assert count(pipe.wh, "raw", "uni_tracking_spath_raw") == raw_before
    assert_state(pipe)


# --------------------------------------------------------------------------- NULL keys


def test_null_keys_never_enter_a_mart(pipe: Pipeline) -> None:
    src = pipe.src
    src.null_rows(day(0), n=2)
    src.touch(1, day(0))
    src.touch(2, day(0))
    s1 = pipe.step(day(1))
    src.null_rows(day(2), n=3)
    src.touch(2, day(2))
    s2 = pipe.step(day(3))
    s3 = pipe.step(day(4))  # nothing new: nothing counted, nothing logged again
    for s, n in ((s1, 2), (s2, 3), (s3, 0)):
        assert {m.mart: m.null_keys for m in s.marts} == {UTI: n, ECS: n, UTS: n}
    exc = pipe.exceptions("null_key")
    assert len(exc) == 6  # once per raw table per chunk of batches
    assert sorted(e[2] for e in exc) == sorted(
        ["uni_tracking_info_raw", "ecs_order_info_raw", "uni_tracking_spath_raw"] * 2
    )
    assert sorted(e[4].split()[0] for e in exc) == ["2", "2", "2", "3", "3", "3"]
    for table in (UTI, ECS, UTS):
        assert count(pipe.wh, pipe.schema, table, "WHERE order_id IS NULL") == 0
    # NULLs on the raw side of every anti-join: no wrong delete, no wrong restore.
    for c in range(5, 80, 10):
        src.null_rows(day(c - 1))
        src.touch(1, day(c - 1))
        pipe.step(day(c))
        assert_state(pipe)
    assert 2 in pipe.src.keys() and pipe.where_in_history("ecs", 2) == ["hist_ecs_2026_h1"]
    for name in ("uti", "ecs", "uts"):
        for h in pipe.hist_tables(name):
            assert count(pipe.wh, pipe.schema, h, "WHERE order_id IS NULL") == 0


# --------------------------------------------------------------------------- G3: kill anywhere

STEPS = [
    "mart.after_insert",
    "mart.after_reactivate",
    "mart.after_archive",
    "mart.after_check",
    "mart.before_commit",
]


def _snapshot(wh: Warehouse, cfg: Config) -> dict[str, Any]:
    """Every mart, history table, exception (minus timestamps and id: followers building at
    once take ids in either order) and progress row."""
    g = cfg.marts[0]
    out: dict[str, Any] = {}
    for table in wh.list_tables(g.schema_):
        if table == g.exceptions_table:
            rows = wh.query(
                "SELECT check_name, table_name, key_value, detail, status, note "
                f"FROM {wh.t(g.schema_, table)}"
            )
        else:
            rows = wh.query(f"SELECT * FROM {wh.t(g.schema_, table)}")
        out[table] = sorted(rows, key=repr)
    raw = cfg.tables[0].target_schema
    progress = wh.query(
        f"SELECT mart, raw_table, last_batch_id FROM {wh.t(cfg.state_schema, 'mart_progress')}"
    )
    out["mart_progress"] = sorted((m, r.replace(raw, "raw"), n) for m, r, n in progress)
    return out


@pytest.fixture(
    params=[
        pytest.param("duckdb", id="duckdb"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.servers),
        pytest.param("redshift", id="redshift-compat", marks=pytest.mark.servers),
    ]
)
def any_warehouse(
    request: pytest.FixtureRequest, tmp_path: Path
) -> DuckDBWarehouse | PostgresWarehouse | RedshiftWarehouse:
    """`warehouse_config` plus the Redshift adapter in compat mode (PostgreSQL underneath,
    loading by its COPY path from the local stage)."""
    if request.param == "duckdb":
        return DuckDBWarehouse(path=tmp_path / "wh.duckdb")
    pg: PgDb = request.getfixturevalue("pg_db")
    if request.param == "postgres":
        return pg.warehouse_config()
    return RedshiftWarehouse(**pg.redshift_compat())


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_every_mart_step_then_rerun_equals_uninterrupted(
    tmp_path: Path,
    any_warehouse: DuckDBWarehouse | PostgresWarehouse | RedshiftWarehouse,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    """Pipeline A is killed at `step` in every mart (1st, 2nd, 3rd time the step is reached)
    of every cycle and rerun; pipeline B (same source, same warehouse server, other schemas)
    runs uninterrupted. After every cycle: same marts, history, exceptions, progress; G1/G2.
    Also through the Redshift adapter, whose marts share no code path with PostgreSQL's
    upsert (anti-join inserts, a lock table, temp tables created then filled)."""
    src = Source(tmp_path / "src.db")
    a = make_config(tmp_path, src.path, any_warehouse, prefix="a_")  # type: ignore[arg-type]
    b = make_config(tmp_path, src.path, any_warehouse, prefix="b_")  # type: ignore[arg-type]
    wh = connect(a)
    drv = Driver(src, busy_plan(seed=5, orders=16, span_days=30))
    kills = 0
    try:
        for c in (1, 9, 25, 41, 49, 57, 73):
            drv.until(day(c))
            # kill where it matters: first NULL keys, first archive, reactivations
            n = 1 if c in (9, 41, 73) else 0
            while n:
                faults.reset()
                monkeypatch.setenv("TRACKLINE_FAIL_AT", f"{step}@{n}")
                try:
                    run_cycle_on(a, wh)
                except InjectedFault:
                    kills += 1
                    n += 1
                    continue
                finally:
                    monkeypatch.delenv("TRACKLINE_FAIL_AT")
                break
            if not n:
                assert run_cycle_on(a, wh).ok
            assert run_cycle_on(b, wh).ok
            assert _snapshot(wh, a) == _snapshot(wh, b), f"cycle at day {c}"
            assert check_all(a, wh) == []
            assert missing_keys(wh, a.marts[0], src.keys()) == set()
        assert kills >= 5  # at least the anchor and one follower in every killed cycle
        exp = expected_state(src)
        for cfg in (a, b):
            act = actual_state(wh, cfg.marts[0].schema_)
            assert act == exp
    finally:
        faults.reset()
        wh.close()
        src.close()
    assert "TRACKLINE_FAIL_AT" not in os.environ


# --------------------------------------------------------------------------- exceptions


def _yaml_config(p: Pipeline, **kw: Any) -> Path:
    data = config_dict(p.src.path, p.cfg.warehouse, p.tmp / "stage", **kw)  # type: ignore[arg-type]
    return write_config(p.tmp / "trackline.yml", data)


def test_hard_kill_of_a_cycle_process_then_rerun_equals_uninterrupted(
    tmp_path: Path, any_warehouse: DuckDBWarehouse | PostgresWarehouse | RedshiftWarehouse
) -> None:
    """`trackline cycle` in a subprocess dies by os._exit (TRACKLINE_FAIL_MODE=exit: no
    rollback handler, no finally, the connection just drops) in the middle of a mart
    transaction, twice per cycle where it matters (the follower at its archive step, then the
    rerun of it at its insert); the next `trackline cycle` must leave the
    same marts, history, exceptions and progress as pipeline B, which never dies."""
    src = Source(tmp_path / "src.db")
    data = config_dict(src.path, any_warehouse, tmp_path / "a_stage", prefix="a_")  # type: ignore[arg-type]
    path = write_config(tmp_path / "a.yml", data)
    a = Config.model_validate(data)
    b = make_config(tmp_path, src.path, any_warehouse, prefix="b_")  # type: ignore[arg-type]
    exe = str(Path(sys.executable).with_name("trackline"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKLINE_")}

    def cycle_a(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [exe, "cycle", "-c", str(path), "--log-format", "plain"],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=180,
        )

    drv = Driver(src, busy_plan(seed=5, orders=16, span_days=30))
    kills = 0
    for c in (1, 9, 41, 57, 73):
        drv.until(day(c))
        if c in (41, 73):  # the first archive; reactivations
            for step in ("mart.after_archive@2", "mart.after_insert@1"):
                killed = cycle_a(TRACKLINE_FAIL_AT=step, TRACKLINE_FAIL_MODE="exit")
                assert killed.returncode == 99, (step, killed.stdout, killed.stderr)
                kills += 1
        done = cycle_a()
        assert done.returncode == 0, done.stderr
        wh = connect(b)
        try:
            assert run_cycle_on(b, wh).ok
            assert _snapshot(wh, a) == _snapshot(wh, b), f"cycle at day {c}"
            assert check_all(a, wh) == []
            assert missing_keys(wh, a.marts[0], src.keys()) == set()
        finally:
            wh.close()
    assert kills == 4


@pytest.mark.servers
@pytest.mark.parametrize("engine", ["postgres", "redshift-compat"])
def test_two_pipelines_share_a_warehouse_database_without_blocking_each_other(
    tmp_path: Path, pg_db: PgDb, engine: str
) -> None:
    """Pipelines with their own state schema (here a_ and b_) run their cycles and checks in
    one warehouse database at the same time; a second run of the SAME pipeline is refused.
    Running beside the other changes nothing: a's marts, history, exceptions, progress and
    check results equal b's, which ran alone, and the oracle's."""
    wh_cfg = (
        pg_db.warehouse_config()
        if engine == "postgres"
        else RedshiftWarehouse(**pg_db.redshift_compat())
    )
    src = Source(tmp_path / "src.db")
    a = make_config(tmp_path, src.path, wh_cfg, prefix="a_")  # type: ignore[arg-type]
    b = make_config(tmp_path, src.path, wh_cfg, prefix="b_")  # type: ignore[arg-type]
    src.touch(1, day(0))
    src.touch(2, day(0), code=100)
    src.clock(day(1))
    wa, wb = connect(a), connect(b)

    def results(report: Any) -> list[tuple[Any, ...]]:
        return sorted((r.name, r.status, r.failing_count) for r in report.results)

    try:
        with wb.lock(pipeline_lock(b.state_schema, "cycle")):  # b's cycle is running
            assert run_cycle_on(a, wa).ok
            checks_a = run_checks(a, wa)
            assert checks_a.results
        with wb.lock(pipeline_lock(a.state_schema, "cycle")):  # a's own cycle is running
            with pytest.raises(LockBusy, match="cycle:a_trackline"):
                run_cycle_on(a, wa)
        assert run_cycle_on(b, wb).ok
        assert results(run_checks(b, wb)) == results(checks_a)
        src.touch(2, day(40))  # order 1 goes to history
        src.touch(3, day(40))
        src.clock(day(41))
        with wa.lock(pipeline_lock(a.state_schema, "cycle")):  # now a's cycle is running
            assert run_cycle_on(b, wb).ok
        assert run_cycle_on(a, wa).ok
        assert _snapshot(wa, a) == _snapshot(wb, b)
        assert actual_state(wa, a.marts[0].schema_) == expected_state(src)
        assert actual_state(wa, a.marts[0].schema_).hist_uti == {1: "2026_h1"}
    finally:
        wa.close()
        wb.close()
        src.close()


def test_open_exception_keeps_row_until_resolved_via_cli(pipe: Pipeline) -> None:
    p = pipe
    path = _yaml_config(p)
    p.src.touch(5, day(0))
    p.src.touch(6, day(0))
    p.src.null_rows(day(0))
    p.step(day(1))
    exc = Exceptions(p.wh, p.schema, "order_tracking_exceptions")
    with p.wh.transaction():
        assert exc.record("manual_hold", UTI, "5", "kept for an audit")
    for c in range(10, 51, 10):
        p.src.touch(1, day(c - 1))
        p.step(day(c))
    # 6 left as a unit; 5 was archived but its open exception keeps it in the mart
    assert p.where_in_history("uti", 6) == ["hist_uti_2026_h1"]
    assert 6 not in p.keys(UTI)
    assert 5 in p.keys(UTI) and p.where_in_history("uti", 5) == ["hist_uti_2026_h1"]
    hold = [e for e in p.exceptions() if e[1] == "manual_hold"]
    assert len(hold) == 1
    runner = CliRunner()
    with released(p):
        out = runner.invoke(main, ["exceptions", "list", "--config", str(path)])
        assert out.exit_code == 0, out.output
        assert "manual_hold" in out.output and "key=5" in out.output
        assert out.output.count("null_key") == 3
        out = runner.invoke(
            main,
            ["exceptions", "resolve", str(hold[0][0]), "--note", "audit done", "-c", str(path)],
        )
        assert out.exit_code == 0, out.output
        assert f"exception {hold[0][0]} resolved" in out.output
        out = runner.invoke(main, ["exceptions", "resolve", "9999", "--note", "x", "-c", str(path)])
        assert out.exit_code == 1 and "9999" in out.output
        out = runner.invoke(main, ["exceptions", "list", "--status", "resolved", "-c", str(path)])
        assert "manual_hold" in out.output and "null_key" not in out.output
    p.src.touch(1, day(55))
    p.step(day(56))
    assert 5 not in p.keys(UTI) and p.where_in_history("uti", 5) == ["hist_uti_2026_h1"]
    assert 5 not in p.keys(ECS) and p.where_in_history("ecs", 5) == ["hist_ecs_2026_h1"]
    assert_state(p)


def test_conflicting_history_row_is_caught_not_trimmed(pipe: Pipeline) -> None:
    """A stale row for the key already sits in the period table (planted by hand): the archive
    guard skips the key, so the mart row is NOT in history. The safety check must open an
    exception and trim must keep the row -- never delete the only copy of the newest version."""
    p = pipe
    p.src.touch(5, day(3), code=500)
    p.src.touch(1, day(3))
    p.step(day(4))
    schema = p.schema
    from trackline.marts.history import HistoryTables, Period

    g = p.cfg.marts[0]
    engine = GroupEngine(p.cfg, g, p.wh)
    raw = engine.raw(g.anchor.source)
    assert raw is not None
    hist = HistoryTables(p.wh, schema, "hist_", "uti", UTI, raw.columns, "order_id", [], None)
    with p.wh.transaction():
        h = hist.ensure(Period(2026, 1))
        p.wh.execute(
            f"INSERT INTO {p.t(h)} (id, order_id, update_time, status, tno) "
            "VALUES (99, 5, ?, 'stale', 'T5')",
            (day(1),),
        )
    for c in range(10, 51, 10):
        p.src.touch(1, day(c - 1))
        p.step(day(c))
    assert p.rows(UTI, "order_id, update_time, status")[1] == (5, day(3), "s500")
    exc = p.exceptions("unarchived_past_cutoff")
    assert [(e[2], e[3]) for e in exc] == [(UTI, "5")]  # once, though seen every cycle
    assert 5 in p.keys(ECS)  # the anchor kept it, so the follower does too
    assert [(v.rule, v.key) for v in check_all(p.cfg, p.wh)] == [("G1_active_and_archived", 5)]
    # The operator removes the stale row and resolves: the next cycle archives the real one.
    with p.wh.transaction():
        p.wh.execute(f"DELETE FROM {p.t(h)} WHERE order_id = 5")
    Exceptions(p.wh, schema, "order_tracking_exceptions").resolve(exc[0][0], "stale row removed")
    p.src.touch(1, day(55))
    p.step(day(56))
    assert p.wh.query(f"SELECT order_id, update_time, status FROM {p.t(h)} WHERE order_id = 5") == [
        (5, day(3), "s500")
    ]
    assert p.exceptions("unarchived_past_cutoff") == []
    assert_state(p)


# --------------------------------------------------------------------------- raw buffer


def test_raw_trimmed_only_after_every_reader_consumed_it(pipe: Pipeline) -> None:
    p = pipe
    for d in range(0, 10):
        p.src.touch(d % 3 + 1, day(d))
    p.src.clock(day(10))
    sync_only(p.cfg, p.wh)
    raws = ("uni_tracking_info_raw", "ecs_order_info_raw", "uni_tracking_spath_raw")
    before = {r: count(p.wh, "raw", r) for r in raws}
    assert before["uni_tracking_spath_raw"] == 10
    assert set(trim_raw(p.cfg, p.wh).values()) == {0}  # no mart has read anything
    g = p.cfg.marts[0]
    engine = GroupEngine(p.cfg, g, p.wh)
    with p.wh.transaction():
        assert engine.ensure()
    engine.run_anchor()
    # the anchor consumed uti raw, but the ecs follower also reads it (reactivation): keep
    assert set(trim_raw(p.cfg, p.wh).values()) == {0}
    engine.run_one_per_key(g.followers[0])
    trimmed = trim_raw(p.cfg, p.wh)
    assert trimmed["raw.uni_tracking_spath_raw"] == 0  # spath not consumed yet
    assert trimmed["raw.ecs_order_info_raw"] == 0  # every ecs row is newer than the buffer
    # uti: the buffer is 2 days of data time behind MAX(update_time) = day 9
    top = day(9)
    assert (
        count(p.wh, "raw", "uni_tracking_info_raw", "WHERE update_time < ?", (top - 2 * DAY,)) == 0
    )
    assert count(p.wh, "raw", "uni_tracking_info_raw") == 3
    engine.run_events(g.followers[1])
    trim_raw(p.cfg, p.wh)
    left = p.wh.query(f"SELECT {p.wh.q('pathTime')} FROM {p.wh.t('raw', 'uni_tracking_spath_raw')}")
    assert sorted(r[0] for r in left) == [day(7), day(8), day(9)]
    # the marts still have everything
    assert len(p.keys(UTS)) == 10 and len(p.keys(UTI)) == 3


def test_raw_not_trimmed_while_a_batch_is_unconsumed(pipe: Pipeline) -> None:
    p = pipe
    for d in range(0, 10):
        p.src.touch(1, day(d))
    p.step(day(10))
    # A raw batch with an old-looking row (a late backfill) that no mart has read yet.
    _append_raw_batch(p, "uni_tracking_info", [(50, 3, day(2), "late", "T3")])
    assert trim_raw(p.cfg, p.wh)["raw.uni_tracking_info_raw"] == 0
    assert count(p.wh, "raw", "uni_tracking_info_raw", "WHERE order_id = 3") == 1
    s = run_cycle_on(p.cfg, p.wh, sync_tables=False)  # consumed, then past the buffer: gone
    assert s.raw_trimmed["raw.uni_tracking_info_raw"] == 1
    assert count(p.wh, "raw", "uni_tracking_info_raw", "WHERE order_id = 3") == 0
    assert p.rows(UTI, "order_id, update_time") == [(1, day(9)), (3, day(2))]


# --------------------------------------------------------------------------- the CLI


def test_cli_cycle_and_history(pipe: Pipeline) -> None:
    p = pipe
    path = _yaml_config(p)
    runner = CliRunner()
    for c in range(0, 60, 5):
        p.src.touch(c // 5 + 1, day(c))
    p.src.clock(day(60))
    with released(p):
        out = runner.invoke(main, ["cycle", "--config", str(path), "--log-format", "quiet"])
        assert out.exit_code == 0, out.output
        assert "sync  raw.uni_tracking_info_raw: 12 rows" in out.output
        assert "mart  mart_uni_tracking_info: in 12, inserted 12" in out.output
        # cutoff = day 55 - 30 days: the orders of days 0, 5, 10, 15, 20 leave
        assert "reactivated 0, archived 5, trimmed 5" in out.output
        assert "finished in" in out.output
        out = runner.invoke(main, ["history", "--config", str(path)])
        assert out.exit_code == 0, out.output
        lines = out.output.strip().splitlines()
    assert len(lines) == 3
    for line, name in zip(lines, ("uti", "ecs", "uts"), strict=True):
        table = f"hist_{name}_2026_h1"
        assert line.split()[0] == f"{p.schema}.{table}"
        assert int(line.split()[1].replace(",", "")) == count(p.wh, p.schema, table) == 5
    assert_state(p)
