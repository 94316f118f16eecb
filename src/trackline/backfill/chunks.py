"""Cutting a time range into chunks: calendar months, ISO weeks or days, in UTC.

Chunks are half-open, ``[lo, hi)``, and consecutive: every value of the time column in the
backfill's range falls in exactly one chunk, whatever its precision, and rows that share a
timestamp always share a chunk (a boundary is a value, never a row position).
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from trackline.errors import ConfigError

Unit = Literal["month", "week", "day"]


@dataclass(frozen=True)
class Chunk:
    no: int
    """1-based, in time order."""
    start: dt.datetime
    end: dt.datetime
    """[start, end) in UTC."""

    @property
    def label(self) -> str:
        return label(self.start, self.end)


def label(start: dt.datetime, end: dt.datetime) -> str:
    whole = start.time() == dt.time() and end.time() == dt.time()
    if whole and start.day == 1 and _next_month(start) == end:
        return f"{start:%Y-%m}"
    if whole and end - start == dt.timedelta(days=1):
        return f"{start:%Y-%m-%d}"
    return f"{start:%Y-%m-%d %H:%M:%S}..{end:%Y-%m-%d %H:%M:%S}"


def parse_when(option: str, text: str) -> dt.datetime:
    """`YYYY-MM` (the month's first instant), `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS`, UTC."""
    value = text.strip()
    try:
        if len(value) == 7:
            return dt.datetime.strptime(value, "%Y-%m")
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"{option}: {text!r} is not a month (YYYY-MM), a date (YYYY-MM-DD) or a time "
            "(YYYY-MM-DD HH:MM:SS)"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def _next_month(t: dt.datetime) -> dt.datetime:
    return dt.datetime(t.year + (t.month == 12), t.month % 12 + 1, 1)


def floor(t: dt.datetime, unit: Unit) -> dt.datetime:
    day = dt.datetime(t.year, t.month, t.day)
    if unit == "month":
        return day.replace(day=1)
    if unit == "week":
        return day - dt.timedelta(days=day.weekday())
    return day


def following(t: dt.datetime, unit: Unit) -> dt.datetime:
    """The next boundary strictly after `t`."""
    base = floor(t, unit)
    if unit == "month":
        return _next_month(base)
    return base + dt.timedelta(days=7 if unit == "week" else 1)


def plan_chunks(start: dt.datetime, end: dt.datetime, unit: Unit) -> list[Chunk]:
    """The chunks covering [start, end): the first starts at `start`, the others on a
    calendar boundary, the last ends at `end`."""
    if end <= start:
        raise ConfigError(f"--end {end} is not after --start {start}: nothing to backfill")
    out: list[Chunk] = []
    lo = start
    while lo < end:
        hi = min(following(lo, unit), end)
        out.append(Chunk(len(out) + 1, lo, hi))
        lo = hi
    return out


def to_unix(t: dt.datetime) -> int:
    return calendar.timegm(t.timetuple())


def from_value(v: Any) -> dt.datetime:
    """A time column's value (datetime, date or unix seconds) as a UTC datetime."""
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=None)
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day)
    return dt.datetime.fromtimestamp(int(v), dt.UTC).replace(tzinfo=None)


def bound(t: dt.datetime, unix: bool, date_only: bool = False) -> Any:
    """A chunk boundary in the time column's own type."""
    if unix:
        return to_unix(t)
    if date_only:
        if t.time() != dt.time():
            # a DATE column compared with a time inside a day: the next whole day
            return (t + dt.timedelta(days=1)).date()
        return t.date()
    return t
