"""The shrink guard: a full snapshot far smaller than what the table holds is refused.

A source that answers a nightly full read with a fraction of its rows (a half-restored
database, a replica that lost a table, a filter gone wrong) would otherwise empty the
dimension (``replace``) or close most of its members (``scd2``). The guard runs inside the
load's transaction, after the snapshot was loaded and before it commits: raising rolls the
whole load back, so the table is left untouched.
"""

from __future__ import annotations

from trackline.errors import DimensionError


def check_shrink(table: str, key: str, before: int, after: int, ratio: float) -> None:
    """Refuse a snapshot of `after` rows where the table held `before`, when `after` is below
    `ratio` · `before` (`shrink_guard`; 0 = off)."""
    if ratio <= 0 or before <= 0 or after >= ratio * before:
        return
    raise DimensionError(
        f"table {table!r} → {key}: the source returned {after:,} rows, "
        f"{after / before:.0%} of the {before:,} the table holds (shrink_guard: {ratio:g}); "
        "nothing was changed. If the source really shrank, set `shrink_guard: 0` on this "
        "table for one run"
    )
