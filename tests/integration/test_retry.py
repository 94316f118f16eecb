"""A retryable warehouse error (serialization conflict) reruns the WHOLE transaction once more,
and only the outermost transaction is retried."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from trackline.config import DuckDBWarehouse
from trackline.errors import RetryableWarehouseError
from trackline.load import open_warehouse


def test_retry_rolls_back_the_failed_attempt(tmp_path: Path) -> None:
    wh = open_warehouse(DuckDBWarehouse(path=tmp_path / "w.duckdb"))
    wh.connect()
    try:
        wh.execute("CREATE TABLE t (x INTEGER)")
        calls: list[int] = []

        def work() -> None:
            wh.execute("INSERT INTO t VALUES (?)", (len(calls),))
            calls.append(1)
            if len(calls) == 1:
                raise RetryableWarehouseError("conflict on the first attempt")

        wh.run_transaction(work, backoff=0)
        assert wh.query("SELECT x FROM t") == [(1,)]  # attempt 1's row was rolled back
        assert len(calls) == 2 and wh.notices
    finally:
        wh.close()


def test_gives_up_after_the_last_attempt(tmp_path: Path) -> None:
    wh = open_warehouse(DuckDBWarehouse(path=tmp_path / "w.duckdb"))
    wh.connect()
    try:

        def work() -> None:
            raise RetryableWarehouseError("always")

        with pytest.raises(RetryableWarehouseError):
            wh.run_transaction(work, attempts=3, backoff=0)
    finally:
        wh.close()


def test_real_postgres_serialization_conflict_is_retried(pg_db) -> None:  # noqa: ANN001
    wh = open_warehouse(pg_db.warehouse_config())
    wh.connect()
    other = psycopg.connect(pg_db.dsn, autocommit=True)
    try:
        wh.execute("CREATE TABLE acct (id INTEGER PRIMARY KEY, n INTEGER)")
        wh.execute("INSERT INTO acct VALUES (1, 0)")
        wh.execute("SET default_transaction_isolation = 'serializable'")
        attempts: list[int] = []

        def work() -> None:
            attempts.append(1)
            n = wh.scalar("SELECT n FROM acct WHERE id = 1")
            if len(attempts) == 1:  # a concurrent writer commits in between: a real 40001
                other.execute("UPDATE acct SET n = n + 100 WHERE id = 1")
            wh.execute("UPDATE acct SET n = ? WHERE id = 1", (n + 1,))

        wh.run_transaction(work, backoff=0)
        assert len(attempts) == 2
        assert wh.scalar("SELECT n FROM acct WHERE id = 1") == 101  # nothing lost
    finally:
        other.close()
        wh.close()
