"""`Warehouse.extreme`: DuckDB reads MIN/MAX as the first row in the column's order (its
ungrouped aggregates count every deleted vector's visible rows); the answer must equal the
aggregate's in every case the marts ask it: with a filter, with NULLs, with nothing matching,
after deletions in the same transaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackline.config import DuckDBWarehouse
from trackline.load import open_warehouse


@pytest.mark.parametrize("which", ["MIN", "MAX"])
def test_duckdb_extreme_equals_the_aggregate(tmp_path: Path, which: str) -> None:
    wh = open_warehouse(DuckDBWarehouse(path=tmp_path / "wh.duckdb"))
    wh.connect()
    try:
        wh.execute("CREATE TABLE t (k BIGINT, tm BIGINT)")
        wh.execute(
            "INSERT INTO t SELECT i, CASE WHEN i % 97 = 0 THEN NULL ELSE (i * 7919) % 100000 END "
            "FROM range(1, 300001) r(i)"
        )

        def both(where: str = "", params: tuple[object, ...] = ()) -> tuple[object, object]:
            cond = f" WHERE {where}" if where else ""
            agg = wh.scalar(f"SELECT {which}(tm) FROM t{cond}", params)
            return wh.extreme(which, "tm", "t", where, params), agg  # type: ignore[arg-type]

        cases: list[tuple[str, tuple[object, ...]]] = [
            ("", ()),
            ("tm >= ?", (50000,)),
            ("tm < ?", (123,)),
            ("tm < ?", (-1,)),  # nothing matches: None
            ("k > ? AND tm IS NULL", (0,)),  # only NULLs: None
            ("tm >= ? OR k = ?", (99990, 5)),  # an OR, kept whole in parentheses
        ]
        with wh.transaction():
            for where, params in cases:
                got, want = both(where, params)
                assert got == want, (where, params, got, want)
            wh.execute("DELETE FROM t WHERE k % 13 = 1 OR tm > 99000")
            for where, params in cases:
                got, want = both(where, params)
                assert got == want, ("after deletions", where, params, got, want)
        assert both("tm < ?", (-1,)) == (None, None)
    finally:
        wh.close()
