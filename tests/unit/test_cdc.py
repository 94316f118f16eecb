"""CDC rules as pure logic: watermark round trip, the SQL of each strategy/phase, dedup."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from trackline.config import MySQLSource
from trackline.extract.cdc import CursorSpec, Watermark, plan_query, shift
from trackline.extract.mysql import MySQL
from trackline.sync import dedup_last

LIT = MySQL(MySQLSource(database="d")).lit  # the real literal renderer; never connects
TS = dt.datetime(2024, 5, 1, 12, 0, 0, 123456)
UPPER = dt.datetime(2024, 5, 2, 0, 0, 0)
U = "'2024-05-02 00:00:00.000000'"
W = "'2024-05-01 12:00:00.123456'"


# --------------------------------------------------------------------------- watermark


@pytest.mark.parametrize(
    "wm",
    [
        Watermark(),
        Watermark(ts=TS, id=18446744073709551615),
        Watermark(ts=dt.datetime(2024, 1, 1, 0, 0, 0, 1), id=None),
        Watermark(ts=1714564800, id=2**63 + 5),
        Watermark(ts=Decimal("1714564800.000100"), id=Decimal("12.3400")),
        Watermark(ts=dt.date(2024, 2, 29), id="A-'x\"\\"),
        Watermark(id=-1),
        Watermark(
            phase="snapshot",
            snapshot_upper=TS,
            snapshot_key=2**64 - 1,
            extra={"schema": {"id": "int64", "ts": "timestamp[us]"}},
        ),
    ],
)
def test_watermark_json_round_trip_keeps_type_and_precision(wm: Watermark) -> None:
    text = wm.to_json()
    back = Watermark.from_json(text)
    assert back == wm
    for a, b in [
        (back.ts, wm.ts),
        (back.id, wm.id),
        (back.snapshot_upper, wm.snapshot_upper),
        (back.snapshot_key, wm.snapshot_key),
    ]:
        assert type(a) is type(b) and repr(a) == repr(b)
    assert Watermark.from_json(back.to_json()).to_json() == text  # stable text
    json.loads(text)  # plain JSON, readable in the state table


def test_watermark_microseconds_and_big_ints_survive_as_text() -> None:
    text = Watermark(ts=TS, id=2**64 - 1).to_json()
    assert "12:00:00.123456" in text and str(2**64 - 1) in text
    assert Watermark(ts=dt.datetime(2024, 1, 1)).to_json().count(".000000") == 1


def test_empty_watermark() -> None:
    assert Watermark.from_json(None) == Watermark() == Watermark.from_json("")
    assert Watermark().empty and Watermark(extra={"schema": {}}).empty
    assert not Watermark(ts=TS).empty and not Watermark(id=0).empty
    assert not Watermark(phase="snapshot").empty


# --------------------------------------------------------------------------- plan_query


def plan(
    strategy: str,
    wm: Watermark | None = None,
    *,
    upper: Any = UPPER,
    idc: str | None = "`id`",
    snapshot_key: str | None = None,
    lookback: Any = None,
    null_cursor: str = "error",
) -> tuple[str, str, Any]:
    spec = CursorSpec(strategy, "`ts`" if strategy != "id" else None, idc, null_cursor)  # type: ignore[arg-type]
    p = plan_query(
        select="`id`, `ts`",
        relation="`d`.`t`",
        spec=spec,
        wm=wm or Watermark(),
        upper=upper,
        lit=LIT,
        snapshot_key=snapshot_key,
        lookback=lookback,
    )
    return p.sql.removeprefix("SELECT `id`, `ts` FROM `d`.`t`"), p.phase, p.upper


def test_hybrid_first_run_without_snapshot_key() -> None:
    assert plan("hybrid") == (f" WHERE `ts` < {U} ORDER BY `ts`, `id`", "incremental", UPPER)


def test_hybrid_first_run_is_a_snapshot_in_key_order() -> None:
    assert plan("hybrid", snapshot_key="`id`") == (
        f" WHERE `ts` < {U} AND `id` > {-(2**63)} ORDER BY `id`",
        "snapshot",
        UPPER,
    )


def test_snapshot_resumes_after_its_last_key_below_its_own_upper_bound() -> None:
    wm = Watermark(phase="snapshot", snapshot_upper=TS, snapshot_key=700)
    later = UPPER + dt.timedelta(days=1)
    assert plan("hybrid", wm, upper=later, snapshot_key="`id`") == (
        f" WHERE `ts` < {W} AND `id` > 700 ORDER BY `id`",
        "snapshot",
        TS,
    )


def test_hybrid_tie_safe_predicate() -> None:
    assert plan("hybrid", Watermark(ts=TS, id=41), snapshot_key="`id`") == (
        f" WHERE (`ts` > {W} OR (`ts` = {W} AND `id` > 41)) AND `ts` < {U} ORDER BY `ts`, `id`",
        "incremental",
        UPPER,
    )


def test_hybrid_after_snapshot_is_inclusive_from_the_snapshot_bound() -> None:
    assert plan("hybrid", Watermark(ts=TS), snapshot_key="`id`") == (
        f" WHERE `ts` >= {W} AND `ts` < {U} ORDER BY `ts`, `id`",
        "incremental",
        UPPER,
    )


def test_hybrid_lookback_rereads_a_window() -> None:
    lb = TS - dt.timedelta(seconds=60)
    sql, _, _ = plan("hybrid", Watermark(ts=TS, id=41), lookback=lb)
    assert sql == f" WHERE `ts` >= '2024-05-01 11:59:00.123456' AND `ts` < {U} ORDER BY `ts`, `id`"


def test_hybrid_unix_cursor_uses_integer_literals() -> None:
    sql, _, upper = plan("hybrid", Watermark(ts=1714564800, id=9), upper=1714600000)
    assert sql == (
        " WHERE (`ts` > 1714564800 OR (`ts` = 1714564800 AND `id` > 9)) AND `ts` < 1714600000 "
        "ORDER BY `ts`, `id`"
    )
    assert upper == 1714600000


def test_null_cursor_load_reads_null_rows_on_the_first_run_only() -> None:
    assert plan("hybrid", null_cursor="load")[0] == (
        f" WHERE (`ts` < {U} OR `ts` IS NULL) ORDER BY `ts`, `id`"
    )
    assert plan("hybrid", snapshot_key="`id`", null_cursor="load")[0] == (
        f" WHERE (`ts` < {U} OR `ts` IS NULL) AND `id` > {-(2**63)} ORDER BY `id`"
    )
    assert "IS NULL" not in plan("hybrid", Watermark(ts=TS, id=1), null_cursor="load")[0]
    # a batch of NULL-cursor rows only left its last id: a rerun reads on from there
    assert plan("hybrid", Watermark(id=7), null_cursor="load")[0] == (
        f" WHERE (`ts` < {U} OR (`ts` IS NULL AND `id` > 7)) ORDER BY `ts`, `id`"
    )


def test_timestamp_strategy_is_inclusive() -> None:
    assert plan("timestamp", idc=None) == (f" WHERE `ts` < {U} ORDER BY `ts`", "incremental", UPPER)
    assert plan("timestamp", Watermark(ts=TS), idc=None)[0] == (
        f" WHERE `ts` >= {W} AND `ts` < {U} ORDER BY `ts`"
    )
    lb = TS - dt.timedelta(seconds=1)
    assert plan("timestamp", Watermark(ts=TS), idc=None, lookback=lb)[0] == (
        f" WHERE `ts` >= '2024-05-01 11:59:59.123456' AND `ts` < {U} ORDER BY `ts`"
    )


def test_id_strategy() -> None:
    assert plan("id", upper=None) == (" ORDER BY `id`", "incremental", None)
    assert plan("id", Watermark(id=2**63 + 5), upper=None)[0] == (
        f" WHERE `id` > {2**63 + 5} ORDER BY `id`"
    )


def test_full_strategy_reads_everything() -> None:
    assert plan("full", Watermark(ts=TS, id=3), upper=None, idc=None) == ("", "incremental", None)


def test_literals_are_typed_and_escaped() -> None:
    assert LIT(dt.datetime(2024, 1, 1)) == "'2024-01-01 00:00:00.000000'"
    assert LIT(dt.date(2024, 1, 1)) == "'2024-01-01'"
    assert LIT(Decimal("1.50")) == "1.50" and LIT(True) == "1"
    quoted = LIT("a'b\\c")
    assert quoted.startswith("'") and quoted.endswith("'") and "a'b" not in quoted
    with pytest.raises(TypeError):
        LIT(object())


def test_shift_keeps_the_cursor_type() -> None:
    assert shift(TS, 300) == TS - dt.timedelta(seconds=300)
    assert shift(1714564800, 300) == 1714564500
    assert shift(Decimal("10.5"), 1) == Decimal("9.5")
    assert shift(None, 300) is None
    with pytest.raises(TypeError):
        shift("2024-01-01", 1)


# --------------------------------------------------------------------------- dedup


def test_dedup_last_keeps_the_newest_row_per_key_in_batch_order() -> None:
    data = pa.table({"k": [1, 2, 1, 3, 2], "v": ["a", "b", "c", "d", "e"]})
    assert dedup_last(data, ["k"]).to_pydict() == {"k": [1, 3, 2], "v": ["c", "d", "e"]}


def test_dedup_last_composite_key() -> None:
    data = pa.table({"a": [1, 1, 1, 2, 1], "b": ["x", "y", "x", "x", "y"], "v": [1, 2, 3, 4, 5]})
    assert dedup_last(data, ["a", "b"]).to_pydict() == {
        "a": [1, 2, 1],
        "b": ["x", "x", "y"],
        "v": [3, 4, 5],
    }


def test_dedup_last_without_duplicates_or_keys_changes_nothing() -> None:
    data = pa.table({"k": [3, 1, 2], "v": [1.5, None, 2.5]})
    assert dedup_last(data, ["k"]).equals(data)
    assert dedup_last(data, []).equals(data)
    empty = data.slice(0, 0)
    assert dedup_last(empty, ["k"]).num_rows == 0
    assert dedup_last(data.slice(0, 1), ["k"]).equals(data.slice(0, 1))
