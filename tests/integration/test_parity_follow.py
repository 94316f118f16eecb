"""Gap 1 (cdc strategy follow: ecs rows that change after creation) and gap 2 (spath events
rewritten in place), on a real MariaDB source, checked against the source's current rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import MySQLDb
from tests.integration.parity_world import DAY, ECS, T0, UTS, World
from trackline.config import DuckDBWarehouse, PostgresWarehouse
from trackline.status import reset_table

WhCfg = DuckDBWarehouse | PostgresWarehouse


@pytest.fixture
def world(tmp_path: Path, warehouse_config: WhCfg, mysql_db: MySQLDb):  # type: ignore[no-untyped-def]
    w = World(tmp_path, warehouse_config, mysql_db)
    yield w
    w.close()


def test_ecs_update_with_and_without_uti_update(world: World) -> None:
    w = world
    w.order(1, T0 + 10, partner=1)
    w.order(2, T0 + 20, partner=2)
    w.cycle()
    w.assert_equal_to_source()
    # ecs changes together with a uti change: read again in the same cycle
    w.ecs(1, partner_id=7, consignee="B")
    w.status(1, T0 + DAY)
    s = w.cycle()
    ecs = next(m for m in s.marts if m.mart == ECS)
    assert ecs.updated == 1
    w.assert_equal_to_source()
    # ecs changes without a uti change: seen at the order's next change, not before
    w.ecs(2, partner_id=9)
    w.cycle()
    assert w.rows(ECS, "partner_id") and (2,) not in w.rows(ECS, "order_id, partner_id")
    assert sorted(w.rows(ECS, "order_id, partner_id")) == [(1, 7), (2, 2)]
    w.status(2, T0 + 2 * DAY)
    w.cycle()
    w.assert_equal_to_source()


def test_uti_update_without_ecs_change_makes_no_new_version(world: World) -> None:
    w = world
    w.order(1, T0 + 10)
    w.cycle()
    before = w.rows(ECS, "id, order_id, add_time, partner_id, consignee")
    w.status(1, T0 + DAY)
    s = w.cycle()
    ecs = next(m for m in s.marts if m.mart == ECS)
    # the row was read again (a raw batch of the follow pass) but nothing changed
    assert next(r for r in s.sync if r.table == "ecs_order_info").rows == 1
    assert (ecs.updated, ecs.inserted) == (0, 0)
    assert w.rows(ECS, "id, order_id, add_time, partner_id, consignee") == before
    w.assert_equal_to_source()


def _archive_order_1(w: World) -> None:
    w.order(1, T0 + 10, partner=1)
    w.order(2, T0 + 20, partner=2)
    w.cycle()
    w.status(2, T0 + 40 * DAY)  # the data clock moves: order 1 is past the 30-day cutoff
    w.cycle()
    assert w.rows(ECS, "order_id") == [(2,)]
    assert [h for h in w.hist_tables("ecs")] == ["hist_ecs_2026_h1"]


def test_ecs_update_for_an_archived_order_that_comes_back(world: World) -> None:
    w = world
    _archive_order_1(w)
    w.ecs(1, partner_id=5)
    w.status(1, T0 + 41 * DAY)  # active again: its ecs row is restored with the new values
    w.cycle()
    assert sorted(w.rows(ECS, "order_id, partner_id")) == [(1, 5), (2, 2)]
    assert w.rows("hist_ecs_2026_h1", "order_id") == []
    w.assert_equal_to_source()


def test_ecs_update_for_an_order_that_stays_archived(world: World) -> None:
    w = world
    _archive_order_1(w)
    w.ecs(1, consignee="late fix")
    # a correction below the watermark, still past the cutoff: only a full re-read of uti
    # sees it, and the order stays archived
    w.status(1, T0 + 11, event=False)
    w.wh.close()
    reset_table(w.cfg, "uni_tracking_info")
    w.wh.connect()
    s = w.cycle()
    assert w.rows(ECS, "order_id") == [(2,)]
    assert w.rows("hist_ecs_2026_h1", "order_id, consignee") == [(1, "late fix")]
    assert next(m for m in s.marts if m.mart == ECS).updated == 1
    w.assert_equal_to_source()


@pytest.mark.parametrize(
    "step", ["sync.follow_before_commit", "sync.follow_after_commit", "mart.after_insert"]
)
def test_kill_mid_cycle_and_rerun(world: World, step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from trackline import faults
    from trackline.errors import InjectedFault
    from trackline.marts.cycle import run_cycle_on

    w = world
    for o in range(1, 6):
        w.order(o, T0 + o)
    w.cycle()
    for o in range(1, 6):
        w.ecs(o, partner_id=100 + o)
        w.status(o, T0 + DAY + o)
    w.rewrite(w.event_ids(3)[0], 999, T0 + DAY + 50)
    faults.reset()
    monkeypatch.setenv("TRACKLINE_FAIL_AT", f"{step}@1")
    try:
        with pytest.raises(InjectedFault):
            run_cycle_on(w.cfg, w.wh)
    finally:
        monkeypatch.delenv("TRACKLINE_FAIL_AT")
        faults.reset()
    w.cycle()
    w.assert_equal_to_source()
    w.cycle()  # and a cycle with nothing new changes nothing
    w.assert_equal_to_source()


def test_follow_key_without_an_index_is_refused_before_reading(world: World) -> None:
    w = world
    w.order(1, T0 + 10)
    w.cycle()
    w.db.execute("ALTER TABLE ecs_order_info DROP INDEX ix_ecs_order")
    w.status(1, T0 + DAY)
    from trackline.marts.cycle import run_cycle_on

    s = run_cycle_on(w.cfg, w.wh)
    ecs = next(r for r in s.sync if r.table == "ecs_order_info")
    assert ecs.status == "failed" and ecs.rows == 0
    assert "follow_key" in (ecs.error or "") and "CREATE INDEX" in (ecs.error or "")
    assert "order_id" in (ecs.error or "")


# --------------------------------------------------------------------------- gap 2: spath


def test_event_rewritten_once_and_twice(world: World) -> None:
    from trackline.sync import sync

    w = world
    w.order(1, T0 + 10)
    w.status(1, T0 + 20, code=100)
    w.cycle()
    first, second = w.event_ids(1)
    w.rewrite(first, 11, T0 + 100)
    s = w.cycle()
    assert next(m for m in s.marts if m.mart == UTS).updated == 1
    w.assert_equal_to_source()
    # twice before one cycle: only the last version is there to read
    w.rewrite(second, 101, T0 + 200)
    w.rewrite(second, 102, T0 + 201)
    w.cycle()
    w.assert_equal_to_source()
    # two versions in the raw batches one mart chunk consumes: the newest wins
    w.rewrite(first, 12, T0 + 300)
    sync(w.cfg, ["uni_tracking_spath"])
    w.rewrite(first, 13, T0 + 301)
    sync(w.cfg, ["uni_tracking_spath"])
    w.cycle()
    assert (13,) in w.rows(UTS, "code")
    w.assert_equal_to_source()
    # an older version read again later (a replay, a reset) never replaces a newer one
    w.wh.close()
    reset_table(w.cfg, "uni_tracking_spath")
    w.wh.connect()
    w.cycle()
    w.assert_equal_to_source()


def test_event_rewritten_after_archiving(world: World) -> None:
    w = world
    _archive_order_1(w)
    old = w.event_ids(1)[0]
    assert (old,) in w.rows("hist_uts_2026_h1", "id")
    w.rewrite(old, 77, T0 + 41 * DAY)
    s = w.cycle()
    assert next(m for m in s.marts if m.mart == UTS).updated == 1
    assert (old, 77, 1) in w.rows("hist_uts_2026_h1", "id, code, is_updated")
    assert (old,) not in w.rows(UTS, "id")
    w.assert_equal_to_source()


def test_events_sharing_a_path_time_and_null_trace_seq(world: World) -> None:
    w = world
    w.order(1, T0 + 10)
    w.event(1, T0 + 10, 20)  # same pathTime, next traceSeq: another event
    w.event(1, T0 + 30, 30, seq=None)  # no traceSeq
    w.event(1, T0 + 40, 40, seq=None)
    w.cycle()
    w.assert_equal_to_source()
    ids = w.event_ids(1)
    w.rewrite(ids[1], 21, T0 + 100)
    w.rewrite(ids[2], 31, T0 + 100)
    s = w.cycle()
    assert next(m for m in s.marts if m.mart == UTS).updated == 2
    w.assert_equal_to_source()
    # archived, then rewritten again: still one copy of each (NULL matches NULL)
    w.order(2, T0 + 40 * DAY)
    w.cycle()
    w.rewrite(ids[2], 32, T0 + 40 * DAY + 5)
    w.cycle()
    assert sorted(w.rows("hist_uts_2026_h1", "code")) == [(10,), (21,), (32,), (40,)]
    w.assert_equal_to_source()


def test_event_deleted_in_source_is_kept_by_newest(world: World) -> None:
    """A modified-time cursor cannot see a deleted row (there is nothing left to read): the
    event stays in the mart; `changes: follow` reports and removes it (next test)."""
    w = world
    w.order(1, T0 + 10)
    w.status(1, T0 + 20)
    w.cycle()
    gone = w.event_ids(1)[0]
    w.db.execute("DELETE FROM uni_tracking_spath WHERE id = %s", (gone,))
    w.status(1, T0 + 30)
    w.cycle()
    assert (gone,) in w.rows(UTS, "id")


@pytest.fixture
def follow_world(tmp_path: Path, warehouse_config: WhCfg, mysql_db: MySQLDb):  # type: ignore[no-untyped-def]
    w = World(tmp_path, warehouse_config, mysql_db, spath="follow")
    yield w
    w.close()


def _exceptions(w: World, check: str) -> list[tuple[str, str]]:
    return [
        (r[0], r[1])
        for r in w.wh.query(
            f"SELECT table_name, key_value FROM {w.t('order_tracking_exceptions')} "
            "WHERE check_name = ? AND status = 'open'",
            (check,),
        )
    ]


def test_follow_replaces_an_orders_events_and_reports_deleted_ones(follow_world: World) -> None:
    """Without a modified time: each change of an order re-reads all its events. A rewrite
    (same time_modified: the column is not read) is replaced; an event the re-read no longer
    finds is removed from the mart and reported, naming the order."""
    w = follow_world
    w.order(1, T0 + 10)
    w.status(1, T0 + 20, code=100)
    w.status(1, T0 + 30, code=200)
    w.order(2, T0 + 15)
    w.cycle()
    w.assert_equal_to_source()
    first, second, third = w.event_ids(1)
    w.db.execute("UPDATE uni_tracking_spath SET code = 11, is_updated = 1 WHERE id = %s", (first,))
    w.db.execute("DELETE FROM uni_tracking_spath WHERE id = %s", (second,))
    w.status(1, T0 + 40, code=300)
    s = w.cycle()
    uts = next(m for m in s.marts if m.mart == UTS)
    assert uts.gone == 1
    assert _exceptions(w, "deleted_in_source") == [("uni_tracking_spath", "1")]
    assert (second,) not in w.rows(UTS, "id")
    w.assert_equal_to_source()
    # the order's events are still trimmed normally: the report holds nothing back
    w.status(2, T0 + 60 * DAY)
    w.cycle()
    assert [r for r in w.rows(UTS, "order_id") if r == (1,)] == []
    w.assert_equal_to_source()


def test_follow_event_rewritten_after_archiving(follow_world: World) -> None:
    w = follow_world
    _archive_order_1(w)
    old = w.event_ids(1)[0]
    w.db.execute("UPDATE uni_tracking_spath SET code = 66, is_updated = 1 WHERE id = %s", (old,))
    w.status(1, T0 + 41 * DAY)  # the order moves again: all its events are read again
    w.cycle()
    assert (old, 66) in w.rows("hist_uts_2026_h1", "id, code")
    w.assert_equal_to_source()


def test_without_the_fixes_the_marts_keep_the_first_version(
    tmp_path: Path, warehouse_config: WhCfg, mysql_db: MySQLDb
) -> None:
    """The gap the two options close: with both off, a changed ecs row and a rewritten event
    keep their first version (what `trackline compare` reports against the legacy DW)."""
    w = World(tmp_path, warehouse_config, mysql_db, follow_ecs=False, spath="off")
    try:
        w.order(1, T0 + 10, partner=1)
        w.cycle()
        w.ecs(1, partner_id=2)
        w.rewrite(w.event_ids(1)[0], 99, T0 + 50)
        w.status(1, T0 + 60)
        w.cycle()
        assert w.rows(ECS, "partner_id") == [(1,)]
        assert (10,) in w.rows(UTS, "code") and (99,) not in w.rows(UTS, "code")
        with pytest.raises(AssertionError):
            w.assert_equal_to_source(("ecs",))
    finally:
        w.close()


def test_follow_pass_cut_into_batches_between_in_lists(
    tmp_path: Path, warehouse_config: WhCfg, mysql_db: MySQLDb
) -> None:
    """Batches of 2 rows, IN-lists of one key: the pass loads several batches (cut only
    between IN-lists, so a key's rows stay together), the last one possibly empty."""
    w = World(tmp_path, warehouse_config, mysql_db, spath="follow")
    try:
        for t in w.data["tables"][1:]:
            t["batch_size"] = 2
            t["cdc"]["follow_chunk_keys"] = 1
        from trackline.config import Config

        w.cfg = Config.model_validate(w.data)
        for o in range(1, 6):
            w.order(o, T0 + o)
            w.status(o, T0 + 100 + o)
        w.cycle()
        for o in range(1, 6):
            w.ecs(o, consignee=f"x{o}")
            w.db.execute(
                "UPDATE uni_tracking_spath SET code = 7 WHERE order_id = %s AND traceSeq = 1",
                (o,),
            )
            w.status(o, T0 + DAY + o, event=False)
        s = w.cycle()
        ecs = next(r for r in s.sync if r.table == "ecs_order_info")
        uts = next(r for r in s.sync if r.table == "uni_tracking_spath")
        assert (ecs.rows, uts.rows) == (5, 10)
        assert ecs.batches >= 3 and uts.batches >= 5
        w.assert_equal_to_source()
    finally:
        w.close()
