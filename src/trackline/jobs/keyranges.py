"""Key ranges shared by the jobs that compare two databases range by range (`reconcile`,
`compare`): the half-open range condition and integer keys read back from any driver."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def range_where(key: str, start: int | None, end: int | None) -> tuple[list[str], list[int]]:
    """`start <= key < end` as conditions with `?` markers and their values (either bound may
    be open: None)."""
    cond, params = [], []
    for op, bound in ((">=", start), ("<", end)):
        if bound is not None:
            cond.append(f"{key} {op} ?")
            params.append(bound)
    return cond, params


def integral(v: Any) -> Any:
    """An integral Decimal (BIGINT UNSIGNED is DECIMAL(20,0) in some targets) as an int."""
    if isinstance(v, Decimal) and v == v.to_integral_value():
        return int(v)
    return v


def midpoint(lo: int, hi: int) -> int:
    """Where a range holding keys lo…hi (hi > lo) is split: [start, mid) holds lo…mid-1, so
    neither half is empty."""
    return lo + (hi - lo) // 2 + 1
