"""Which running statements hold the sync's upper bound (trackline.extract.mysql)."""

from __future__ import annotations

import pytest

from trackline.extract.mysql import WRITE_STATEMENT


@pytest.mark.parametrize(
    ("sql", "writes"),
    [
        ("INSERT INTO orders SELECT * FROM staging", True),
        ("  update orders set status = 'x'", True),
        ("/* batch job 7 */ DELETE FROM orders WHERE id < 5", True),
        ("-- nightly\nREPLACE INTO t VALUES (1)", True),
        ("# legacy comment\nLOAD DATA INFILE 'x' INTO TABLE t", True),
        ("CALL refresh_orders()", True),
        ("WITH s AS (SELECT 1) UPDATE orders SET a = 1", True),
        ("SELECT * FROM orders", False),
        ("select id from orders where id = 1 for update", False),
        ("SHOW PROCESSLIST", False),
        ("SET time_zone = '+00:00'", False),
        ("/* INSERT */ SELECT 1", False),
    ],
)
def test_write_statements_are_recognised_after_leading_comments(sql: str, writes: bool) -> None:
    assert bool(WRITE_STATEMENT.match(sql)) is writes
