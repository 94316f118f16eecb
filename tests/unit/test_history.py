"""History periods (half-years) and the Arrow type names recorded by sync."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from trackline.marts.history import Period, arrow_type, periods_between

UTC = dt.UTC


def unix(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, sec, tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    ("value", "suffix"),
    [
        (unix(2026, 1, 1), "2026_h1"),
        (unix(2026, 6, 30, 23, 59, 59), "2026_h1"),
        (unix(2026, 7, 1), "2026_h2"),
        (unix(2026, 12, 31, 23, 59, 59), "2026_h2"),
        (unix(2027, 1, 1), "2027_h1"),
        (float(unix(2026, 7, 1)) - 0.5, "2026_h1"),
        (dt.datetime(2026, 6, 30, 23, 59, 59, 999999), "2026_h1"),
        (dt.datetime(2026, 7, 1), "2026_h2"),
        (dt.date(2025, 12, 31), "2025_h2"),
        (dt.date(2026, 7, 1), "2026_h2"),
    ],
)
def test_period_of_a_time(value: object, suffix: str) -> None:
    assert Period.of(value).suffix == suffix


def test_unix_times_are_placed_in_utc() -> None:
    # 2026-07-01 00:30 in UTC is still 30 June in America; the period must not depend on TZ.
    assert Period.of(unix(2026, 7, 1, 0, 30)) == Period(2026, 2)
    assert Period.of(unix(2026, 6, 30, 23, 30)) == Period(2026, 1)


def test_period_of_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="str"):
        Period.of("2026-01-01")


def test_bounds_in_the_column_type() -> None:
    h1, h2 = Period(2026, 1), Period(2026, 2)
    assert h1.bounds(unix=True) == (unix(2026, 1, 1), unix(2026, 7, 1))
    assert h2.bounds(unix=True) == (unix(2026, 7, 1), unix(2027, 1, 1))
    assert h2.bounds(unix=False) == (dt.datetime(2026, 7, 1), dt.datetime(2027, 1, 1))
    # consecutive periods tile time: each end is the next start, every value in exactly one
    p = Period(2025, 2)
    for _ in range(4):
        assert p.bounds(True)[1] == p.next().bounds(True)[0]
        s, e = p.bounds(True)
        assert Period.of(s) == p and Period.of(e - 1) == p and Period.of(e) == p.next()
        p = p.next()


def test_next_and_parse() -> None:
    assert Period(2026, 1).next() == Period(2026, 2)
    assert Period(2026, 2).next() == Period(2027, 1)
    assert Period.parse("2026_h2") == Period(2026, 2)
    for bad in ("2026_h3", "2026h1", "26_h1", "2026_h1_x", ""):
        with pytest.raises(ValueError):
            Period.parse(bad)


def test_periods_between() -> None:
    assert periods_between(unix(2026, 2, 1), unix(2026, 3, 1)) == [Period(2026, 1)]
    assert periods_between(unix(2025, 11, 1), unix(2027, 2, 1)) == [
        Period(2025, 2),
        Period(2026, 1),
        Period(2026, 2),
        Period(2027, 1),
    ]
    assert periods_between(dt.datetime(2026, 6, 30), dt.datetime(2026, 7, 1)) == [
        Period(2026, 1),
        Period(2026, 2),
    ]
    # lo after hi: just lo's period (callers pass MIN and MAX, never reversed)
    assert periods_between(unix(2026, 8, 1), unix(2026, 1, 1)) == [Period(2026, 2)]


@pytest.mark.parametrize(
    "t",
    [
        pa.bool_(),
        pa.int8(),
        pa.int16(),
        pa.int32(),
        pa.int64(),
        pa.uint8(),
        pa.uint16(),
        pa.uint32(),
        pa.uint64(),
        pa.float32(),
        pa.float64(),
        pa.string(),
        pa.large_string(),
        pa.binary(),
        pa.large_binary(),
        pa.date32(),
        pa.timestamp("us"),
        pa.time64("us"),
        pa.decimal128(10, 2),
        pa.decimal128(38, 10),
        pa.decimal256(65, 30),
    ],
)
def test_arrow_type_round_trips_str(t: pa.DataType) -> None:
    assert arrow_type(str(t)) == t


def test_arrow_type_timestamps_become_naive_microseconds() -> None:
    assert arrow_type("timestamp[ms]") == pa.timestamp("us")
    assert arrow_type("timestamp[us, tz=UTC]") == pa.timestamp("us")


def test_arrow_type_unknown_is_refused() -> None:
    with pytest.raises(ValueError, match="list<item: int64>"):
        arrow_type("list<item: int64>")
    with pytest.raises(ValueError):
        arrow_type("decimal(10, 2)")
