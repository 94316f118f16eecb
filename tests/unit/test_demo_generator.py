"""The synthetic demo source: deterministic, resumable, and shaped like the legacy tables."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from trackline.demo.generator import (
    BIG_PARTNER,
    DAY,
    DORMANCY_DAYS,
    AdvanceStats,
    DemoSource,
    DemoSpec,
    ticks,
)
from trackline.errors import ConfigError

# Small but long enough for 6-month dormancy: ~6,000 orders, ~45,000 events.
SPEC = DemoSpec(orders_per_day=25, reactivation_orders=5, null_order_id_rate=0.005)
PUBLIC = (
    "ecs_order_info",
    "uni_tracking_info",
    "uni_tracking_spath",
    "partners",
    "trackline_clock",
)
SIX_MONTHS = 15_552_000


def query(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, params).fetchall()


def dump(path: Path) -> dict[str, Any]:
    """Every public table, the simulation state and the pending items, order-independent."""
    out: dict[str, Any] = {t: sorted(query(path, f"SELECT * FROM {t}")) for t in PUBLIC}
    out["_demo_state"] = sorted(query(path, "SELECT key, value FROM _demo_state"))
    out["_demo_pending"] = sorted(
        (slot, *item)
        for slot, items in query(path, "SELECT slot, items FROM _demo_pending")
        for item in json.loads(items)
    )
    return out


def run(path: Path, spec: DemoSpec = SPEC, step: int = DAY) -> list[AdvanceStats]:
    source = DemoSource(path, spec)
    return [source.advance(t) for t in ticks(spec, step)]


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[AdvanceStats]]:
    path = tmp_path_factory.mktemp("demo") / "source.sqlite"
    return path, run(path)


def test_ticks_cover_the_run_day_by_day() -> None:
    times = list(ticks(SPEC))
    assert times[0] == SPEC.start + DAY and times[-1] == SPEC.end == SPEC.start + 240 * DAY
    assert len(times) == 240
    assert list(ticks(DemoSpec(days=1), step_seconds=10 * DAY)) == [DemoSpec().start + DAY]


def test_same_seed_gives_identical_tables(
    tmp_path: Path, full: tuple[Path, list[AdvanceStats]]
) -> None:
    # Another file, and the whole run in one call instead of 240 daily ones: same rows, same ids.
    again = tmp_path / "again.sqlite"
    stats = DemoSource(again, SPEC).advance(SPEC.end)
    assert dump(again) == dump(full[0])
    for name in ("new_orders", "spath_events", "reactivations", "null_key_rows"):
        assert getattr(stats, name) == sum(getattr(s, name) for s in full[1])

    other = tmp_path / "other.sqlite"
    DemoSource(other, DemoSpec(**{**asdict(SPEC), "seed": 8})).advance(SPEC.start + 5 * DAY)
    assert query(other, "SELECT * FROM uni_tracking_spath LIMIT 50") != query(
        full[0], "SELECT * FROM uni_tracking_spath LIMIT 50"
    )


def test_advance_twice_equals_once(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    source = DemoSource(path, SPEC)
    until = SPEC.start + 20 * DAY + 12_345
    first = source.advance(until)
    assert first.new_orders > 0 and first.spath_events > 0
    before = dump(path)
    assert source.advance(until) == AdvanceStats(until=until)
    assert source.advance(until - 3 * DAY) == AdvanceStats(until=until - 3 * DAY)
    assert dump(path) == before
    assert source.now == until


def test_clock_is_one_row_equal_to_until(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    source = DemoSource(path, SPEC)
    assert source.now == SPEC.start
    for until in (SPEC.start + 3600, SPEC.start + 2 * DAY + 7, SPEC.start + 9 * DAY):
        source.advance(until)
        assert query(path, "SELECT now FROM trackline_clock") == [(until,)]
        assert source.now == until
        # Nothing is written ahead of the clock.
        assert (
            query(path, "SELECT coalesce(max(pathTime), 0) FROM uni_tracking_spath")[0][0] <= until
        )
        assert (
            query(path, "SELECT coalesce(max(update_time), 0) FROM uni_tracking_info")[0][0]
            <= until
        )
        assert query(path, "SELECT coalesce(max(add_time), 0) FROM ecs_order_info")[0][0] <= until


def test_reopen_and_continue_equals_one_continuous_run(
    tmp_path: Path, full: tuple[Path, list[AdvanceStats]]
) -> None:
    path = tmp_path / "resumed.sqlite"
    DemoSource(path, SPEC).advance(SPEC.start + 100 * DAY + 4321)  # stop mid-day, "exit"
    resumed = DemoSource(path, SPEC)  # a new process reopens the file
    resumed.advance(SPEC.start + 170 * DAY)
    resumed.advance(SPEC.end)
    assert dump(path) == dump(full[0])


def test_a_partial_run_is_a_prefix_of_the_full_run(
    tmp_path: Path, full: tuple[Path, list[AdvanceStats]]
) -> None:
    path = tmp_path / "partial.sqlite"
    until = SPEC.start + 61 * DAY + 50_000
    DemoSource(path, SPEC).advance(until)
    # (the columns a later status change may correct are left out: the full run went on)
    for table, time_col, cols in (
        ("uni_tracking_spath", "pathTime", "id, order_id, traceSeq, pathTime, code, staff_id"),
        ("ecs_order_info", "add_time", "id, order_id, partner_id, add_time, extra_order_sn"),
    ):
        sql = f"SELECT {cols} FROM {table} WHERE {time_col} <= ? ORDER BY id"
        assert query(path, sql, until) == query(full[0], sql, until)


def test_uti_has_one_row_per_order_at_its_latest_event(
    full: tuple[Path, list[AdvanceStats]],
) -> None:
    path = full[0]
    dupes = query(
        path,
        "SELECT order_id FROM uni_tracking_info WHERE order_id IS NOT NULL "
        "GROUP BY order_id HAVING count(*) > 1",
    )
    assert dupes == []
    latest = dict(
        query(
            path,
            "SELECT order_id, max(pathTime) FROM uni_tracking_spath WHERE order_id IS NOT NULL "
            "GROUP BY order_id",
        )
    )
    uti = dict(
        query(
            path, "SELECT order_id, update_time FROM uni_tracking_info WHERE order_id IS NOT NULL"
        )
    )
    ecs = {r[0] for r in query(path, "SELECT order_id FROM ecs_order_info")}
    assert uti == latest
    assert set(uti) == ecs
    # The state follows the last event's code (code // 100).
    last_code = dict(
        query(
            path,
            "SELECT order_id, code FROM uni_tracking_spath WHERE order_id IS NOT NULL "
            "ORDER BY order_id, traceSeq",
        )
    )
    states = query(path, "SELECT order_id, state FROM uni_tracking_info WHERE order_id IS NOT NULL")
    assert {o: s for o, s in states} == {o: c // 100 for o, c in last_code.items()}


def test_uti_rows_are_updated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    source = DemoSource(path, SPEC)
    source.advance(SPEC.start + DAY)
    before = dict(query(path, "SELECT id, update_time FROM uni_tracking_info"))
    stats = source.advance(SPEC.start + 4 * DAY)
    after = dict(query(path, "SELECT id, update_time FROM uni_tracking_info"))
    moved = [i for i in before if after[i] > before[i]]
    assert stats.uti_updates >= len(moved) > 0
    assert all(after[i] >= before[i] for i in before)


def test_lifecycles_are_skewed_from_days_to_months(full: tuple[Path, list[AdvanceStats]]) -> None:
    spans = [
        (last - first) / DAY
        for first, last in query(
            full[0],
            "SELECT min(pathTime), max(pathTime) FROM uni_tracking_spath "
            "WHERE order_id IS NOT NULL AND order_id IN (SELECT order_id FROM ecs_order_info "
            "WHERE add_time < ?) GROUP BY order_id",
            SPEC.start + 120 * DAY,  # orders old enough to have finished
        )
    ]
    short = sum(2 <= s <= 15 for s in spans) / len(spans)
    assert short > 0.7
    assert sum(60 <= s <= 300 for s in spans) > 0.01 * len(spans)
    assert sum(s > 200 for s in spans) >= 3
    assert min(spans) >= 1.5


def test_reactivated_orders_were_silent_for_more_than_190_days(
    full: tuple[Path, list[AdvanceStats]],
) -> None:
    path, stats = full
    rows = query(
        path,
        "SELECT order_id, pathTime FROM uni_tracking_spath WHERE order_id IS NOT NULL "
        "ORDER BY order_id, traceSeq",
    )
    gaps: dict[int, int] = {}
    for (prev_id, prev_t), (order_id, t) in zip(rows, rows[1:], strict=False):
        if order_id == prev_id:
            assert t >= prev_t
            gaps[order_id] = max(gaps.get(order_id, 0), t - prev_t)
    dormant = {o for o, gap in gaps.items() if gap > DORMANCY_DAYS * DAY}
    assert len(dormant) == SPEC.reactivation_orders
    assert sum(s.reactivations for s in stats) == SPEC.reactivation_orders
    # Nobody else is silent long enough to leave a 6-month mart by accident.
    assert all(gap < SIX_MONTHS for o, gap in gaps.items() if o not in dormant)


def test_null_order_ids_appear_in_uti_and_spath(full: tuple[Path, list[AdvanceStats]]) -> None:
    path, stats = full
    null_uti = query(path, "SELECT count(*) FROM uni_tracking_info WHERE order_id IS NULL")[0][0]
    null_uts = query(path, "SELECT count(*) FROM uni_tracking_spath WHERE order_id IS NULL")[0][0]
    assert null_uti > 0 and null_uts > 0
    assert sum(s.null_key_rows for s in stats) == null_uti + null_uts
    assert query(path, "SELECT count(*) FROM ecs_order_info WHERE order_id IS NULL") == [(0,)]


def test_many_events_share_a_second(full: tuple[Path, list[AdvanceStats]]) -> None:
    per_second = Counter(t for (t,) in query(full[0], "SELECT pathTime FROM uni_tracking_spath"))
    assert sum(1 for c in per_second.values() if c > 1) > 1000
    assert max(per_second.values()) >= 10  # a partner's bulk pickup scan
    ids_by_time = query(full[0], "SELECT id FROM uni_tracking_spath ORDER BY pathTime, id")
    assert ids_by_time == sorted(ids_by_time)  # ids follow time: the source's insert order


def test_partners_are_skewed_and_change_now_and_then(
    full: tuple[Path, list[AdvanceStats]],
) -> None:
    path, stats = full
    counts = dict(query(path, "SELECT partner_id, count(*) FROM ecs_order_info GROUP BY 1"))
    assert max(counts, key=lambda p: counts[p]) == BIG_PARTNER
    assert 0.2 < counts[BIG_PARTNER] / sum(counts.values()) < 0.4
    assert query(path, "SELECT count(*) FROM partners") == [(40,)]
    changed = query(path, "SELECT count(*) FROM partners WHERE update_time > ?", SPEC.start)[0][0]
    assert 0 < changed <= sum(s.partner_updates for s in stats)


def test_stats_count_the_rows_written(full: tuple[Path, list[AdvanceStats]]) -> None:
    path, stats = full
    assert (
        sum(s.new_orders for s in stats) == query(path, "SELECT count(*) FROM ecs_order_info")[0][0]
    )
    spath = query(path, "SELECT count(*) FROM uni_tracking_spath")[0][0]
    assert sum(s.spath_events for s in stats) == spath
    assert sum(s.uti_updates for s in stats) > sum(s.new_orders for s in stats)


def test_reopening_with_another_spec_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    DemoSource(path, SPEC).advance(SPEC.start + DAY)
    DemoSource(path, SPEC)  # same spec: fine, nothing changes
    with pytest.raises(ConfigError, match="delete the file"):
        DemoSource(path, DemoSpec(**{**asdict(SPEC), "seed": 99}))


def test_bad_spec_values_name_the_field() -> None:
    with pytest.raises(ConfigError, match="orders_per_day"):
        DemoSpec(orders_per_day=-1)
    with pytest.raises(ConfigError, match="null_order_id_rate"):
        DemoSpec(null_order_id_rate=1.5)


def test_some_ecs_rows_and_scan_events_change_after_creation(
    full: tuple[Path, list[AdvanceStats]],
) -> None:
    """The two changes the marts can follow only with the parity options: an ecs row's
    zipcode corrected with a later status change of its order (no time column of ecs moves),
    and a scan event corrected in place (time_modified moves, pathTime does not)."""
    path, stats = full
    assert sum(s.ecs_changes for s in stats) > 0
    corrected = query(
        path,
        "SELECT count(*), min(time_modified - pathTime) FROM uni_tracking_spath "
        "WHERE is_updated = 1",
    )[0]
    assert 0 < corrected[0] <= sum(s.spath_corrections for s in stats) and corrected[1] > 0
    assert query(
        path,
        "SELECT count(*) FROM uni_tracking_spath WHERE is_updated = 0 "
        "AND time_modified <> pathTime",
    ) == [(0,)]
