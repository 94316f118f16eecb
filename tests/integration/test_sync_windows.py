"""A run reads a table in windows (`defaults.read_window_batches`): consecutive source
queries of at most batch × N rows, each continued after the last row the one before read.
The MySQL reader buffers a whole query as fast as the server sends it, so one query per run
would hold an initial load in memory whenever the warehouse loads slower than the source
sends (tests/integration/test_memory_bounds.py measures that). Here: the windows together
read exactly what one query would, for every strategy, with window edges inside runs of equal
cursor values, inside NULL cursors and across key gaps, and a run killed between two windows
resumes without a row lost or loaded twice.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MySQLDb
from tests.integration.synctools import (
    ORDER_COLS,
    make_config,
    norm,
    one,
    run_faulted,
    source_rows,
    sync_ok,
    warehouse,
    wh_query,
    wh_rows,
)
from trackline.config import ConsolidationConfig, DuckDBWarehouse, TableConfig
from trackline.consolidate import consolidate
from trackline.extract.mysql import MySQL

BATCH = 7
DDL = """
CREATE TABLE orders (
  id BIGINT NOT NULL PRIMARY KEY,
  order_no VARCHAR(32) NOT NULL,
  status VARCHAR(16),
  amount DECIMAL(10,2),
  update_time DATETIME(6) NULL,
  KEY ix_update (update_time, id)
)
"""
T0 = dt.datetime(2026, 1, 1)


def _source(db: MySQLDb, n: int = 100, nulls: int = 0) -> None:
    """n orders with ids 3, 6, 9, … (gaps), 20 orders per update_time (runs of equal
    cursors longer than a window), the first `nulls` with a NULL update_time."""
    db.execute(DDL)
    rows = [
        (3 * i, f"o{i}", "new", f"{i}.50", None if i <= nulls else T0 + dt.timedelta(hours=i // 20))
        for i in range(1, n + 1)
    ]
    db.executemany(
        "INSERT INTO orders (id, order_no, status, amount, update_time) VALUES (%s,%s,%s,%s,%s)",
        rows,
    )


def _change(db: MySQLDb) -> None:
    """30 orders moved to one new time (a run of 30 equal cursors), 20 new ones beside them."""
    when = T0 + dt.timedelta(days=30)
    db.execute(
        "UPDATE orders SET status = 'moved', update_time = %s WHERE MOD(id, 9) = 0 LIMIT 30",
        (when,),
    )
    db.executemany(
        "INSERT INTO orders (id, order_no, status, amount, update_time) VALUES (%s,%s,%s,%s,%s)",
        [(1000 + i, f"n{i}", "new", "1.00", when) for i in range(20)],
    )


def _table(strategy: str, **kw: Any) -> TableConfig:
    cdc: dict[str, Any] = {"strategy": strategy}
    if strategy in ("hybrid", "timestamp"):
        cdc["cursor"] = "update_time"
    if strategy != "full":
        cdc["id"] = "id"
    if kw.pop("nulls", False):
        cdc["null_cursor"] = "load"
    return TableConfig.model_validate(
        {"name": "orders", "cdc": cdc, "batch_size": BATCH, "lag_seconds": 0, **kw}
    )


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The data reads the runs send to MariaDB."""
    sent: list[str] = []
    stream = MySQL.stream

    def spy(self: MySQL, sql: str, *args: Any) -> Any:
        sent.append(sql)
        return stream(self, sql, *args)

    monkeypatch.setattr(MySQL, "stream", spy)
    return sent


CASES = {
    # strategy, table settings, rows with a NULL cursor
    "hybrid": ("hybrid", {}, 0),
    "hybrid-null-cursors": ("hybrid", {"nulls": True}, 10),
    "timestamp-merge": ("timestamp", {"write_mode": "merge"}, 0),
    "id": ("id", {}, 0),
    "full-replace": ("full", {"write_mode": "replace"}, 0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_windows_read_what_one_query_reads(
    case: str, mysql_db: MySQLDb, tmp_path: Path, queries: list[str]
) -> None:
    strategy, settings, nulls = CASES[case]
    _source(mysql_db, nulls=nulls)
    wh = DuckDBWarehouse(path=tmp_path / "wh.duckdb")
    t = _table(strategy, **settings)
    cfg = make_config(mysql_db, wh, tmp_path / "stage", [t], read_window_batches=2)
    assert one(sync_ok(cfg)).rows == 100
    # 100 rows in windows of 14: 8 queries (the last one short), plus what the strategy
    # adds (the hybrid snapshot's incremental read after it)
    windows = [q for q in queries if "LIMIT 14" in q]
    assert len(windows) >= 8, queries
    key = f"{t.target_schema}.{t.target}"
    loaded = wh_rows(cfg, key, order=("id", "update_time"))
    assert loaded == source_rows(mysql_db)  # every row once

    _change(mysql_db)
    queries.clear()
    sync_ok(cfg)
    assert len(queries) >= 2 or strategy == "id", queries  # 50 changed rows: several windows
    loaded = wh_rows(cfg, key, order=("id", "update_time"))
    expected = source_rows(mysql_db)
    if strategy == "hybrid":
        # append raw buffer: each version once, the 30 moved orders twice
        assert sorted(set(loaded)) == sorted(loaded)
        assert set(expected) <= set(loaded)
        assert len(loaded) == 100 + 30 + 20
    elif strategy == "id":
        # ids only grow: the 20 new orders are read, the moved ones are not (by design)
        assert [r[0] for r in loaded] == [r[0] for r in expected]
    else:
        assert loaded == expected


def test_a_run_killed_between_two_windows_resumes_exactly(
    mysql_db: MySQLDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, queries: list[str]
) -> None:
    """The snapshot is killed after its second window's first batch committed (the third
    query has been opened by then); the rerun continues from the watermark: each row once."""
    _source(mysql_db)
    wh = DuckDBWarehouse(path=tmp_path / "wh.duckdb")
    t = _table("hybrid")
    cfg = make_config(mysql_db, wh, tmp_path / "stage", [t], read_window_batches=2)
    run_faulted(cfg, "sync.after_commit@3", monkeypatch)
    key = f"{t.target_schema}.{t.target}"
    assert [norm(r[0]) for r in wh_query(cfg, f"SELECT COUNT(*) FROM {key}")] == [3 * BATCH]
    queries.clear()
    sync_ok(cfg)
    assert "> 63 " in queries[0], queries[0]  # the snapshot goes on after id 63 (3 × 21)
    assert wh_rows(cfg, key, ORDER_COLS) == source_rows(mysql_db)


def test_a_consolidation_input_is_read_in_windows(
    mysql_db: MySQLDb, tmp_path: Path, queries: list[str]
) -> None:
    """A consolidation input's backlog (100 rows, runs of 20 equal cursors) read in windows
    of one 7-row batch: 15 queries, and the target holds every row once."""
    _source(mysql_db)
    wh = DuckDBWarehouse(path=tmp_path / "wh.duckdb")
    cfg = make_config(mysql_db, wh, tmp_path / "stage", [], read_window_batches=1)
    spec = {
        "name": "detail",
        "key": ["id"],
        "inputs": [
            {
                "name": "orders",
                "table": "orders",
                "cdc": {"cursor": "update_time", "id": "id"},
                "batch_size": BATCH,
                "lag_seconds": 0,
            }
        ],
    }
    cfg = cfg.model_copy(update={"consolidations": [ConsolidationConfig.model_validate(spec)]})
    with warehouse(cfg) as w:
        (res,) = consolidate(cfg, w)
    assert res.ok, res.error
    assert len([q for q in queries if f"LIMIT {BATCH}" in q]) == 15, queries
    c = cfg.consolidations[0]
    got = wh_rows(cfg, f"{c.target_schema}.{c.target_table}", ORDER_COLS)
    assert got == source_rows(mysql_db)


def test_every_snapshot_window_reads_the_key_in_order(
    mysql_db: MySQLDb, tmp_path: Path, queries: list[str]
) -> None:
    """Each window of a snapshot is a range of the primary key, read in key order, never the
    cursor's index and a sort: the first window once had no key bound, and MariaDB read it
    through (update_time, id) and sorted the table (14 s against 0.5 s for 5M rows)."""
    mysql_db.execute(DDL)
    mysql_db.execute(
        "INSERT INTO orders (id, order_no, status, amount, update_time) SELECT seq, "
        "CONCAT('o', seq), 'new', 1, TIMESTAMP'2026-01-01 00:00:00' + INTERVAL seq SECOND "
        "FROM seq_1_to_20000"
    )
    mysql_db.execute("ANALYZE TABLE orders")
    wh = DuckDBWarehouse(path=tmp_path / "wh.duckdb")
    t = _table("hybrid", batch_size=2000)
    cfg = make_config(mysql_db, wh, tmp_path / "stage", [t], read_window_batches=2)
    assert one(sync_ok(cfg)).rows == 20_000
    by_key = [
        q for q in queries if q.rpartition(" ORDER BY ")[2].endswith("`orders`.`id` LIMIT 4000")
    ]
    windows = [q for q in by_key if "update_time`, " not in q.rpartition(" ORDER BY ")[2]]
    assert len(windows) >= 5, queries
    for sql in windows:
        plan = mysql_db.query(f"EXPLAIN {sql}")
        assert plan[0][5] == "PRIMARY" and "filesort" not in (plan[0][9] or ""), (sql, plan)
