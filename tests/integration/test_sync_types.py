"""Every MySQL column type round-trips MariaDB → Arrow → Parquet → DuckDB / PostgreSQL.

One table holds the quirks users hit with other tools; each column's value read back from the
warehouse must equal the source value under the documented conversion. What the warehouse
holds, per type (DuckDB / PostgreSQL):

| MySQL                         | warehouse                         | compared as                 |
|-------------------------------|-----------------------------------|-----------------------------|
| BIGINT UNSIGNED (2^64-1)      | UBIGINT / DECIMAL(20,0)           | int                         |
| INT/SMALLINT/TINYINT (±, uns.)| the next type that holds the range| int                         |
| TINYINT(1) holding 2          | TINYINT / SMALLINT                | int (2 stays 2, not True)   |
| DECIMAL(p,s), p ≤ 38          | DECIMAL(p,s)                      | Decimal, exact              |
| (incl. scale > 10, 20 digits) | (connectorx would cut/fail these) |                             |
| DECIMAL(50,5)                 | text                              | the server's CAST AS CHAR   |
| FLOAT / DOUBLE                | REAL / DOUBLE                     | float (FLOAT: float32-equal)|
| DATE, DATETIME(0/6), TS(3)    | DATE / TIMESTAMP (µs)             | date / naive datetime       |
| 0000-00-00 (DATE, DATETIME)   | NULL + a warning (or an error)    | None                        |
| TIME (−838:59:59 … 838:59:59) | text                              | the server's CAST AS CHAR   |
| YEAR                          | SMALLINT                          | int                         |
| BIT(1) / BIT(10)              | BOOLEAN / UBIGINT, DECIMAL(20,0)  | bool / int                  |
| JSON, ENUM, SET, *TEXT, CHAR  | text                              | str, byte for byte          |
| BINARY/VARBINARY/BLOB         | BLOB / BYTEA                      | bytes (zero bytes kept)     |
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MySQLDb
from tests.integration.synctools import (
    ledger,
    make_config,
    norm,
    one,
    state_watermark,
    sync_ok,
    table,
    warehouse,
    wh_count,
    wh_exists,
    wh_query,
)
from trackline.config import DuckDBWarehouse, PostgresWarehouse
from trackline.sync import sync

Warehouse = DuckDBWarehouse | PostgresWarehouse

DDL = """
CREATE TABLE types (
  id INT NOT NULL PRIMARY KEY,
  u64 BIGINT UNSIGNED,
  i64 BIGINT,
  u32 INT UNSIGNED,
  i32 INT,
  u16 SMALLINT UNSIGNED,
  i16 SMALLINT,
  u24 MEDIUMINT UNSIGNED,
  u8 TINYINT UNSIGNED,
  i8 TINYINT,
  flag TINYINT(1),
  d10 DECIMAL(10,2),
  d38 DECIMAL(38,10),
  d50 DECIMAL(50,5),
  d2015 DECIMAL(20,15),
  d200 DECIMAL(20,0),
  f4 FLOAT,
  f8 DOUBLE,
  d DATE,
  dtm DATETIME,
  dt6 DATETIME(6),
  ts3 TIMESTAMP(3) NULL DEFAULT NULL,
  tm TIME,
  yr YEAR,
  b1 BIT(1),
  b10 BIT(10),
  js JSON,
  en ENUM('new','paid','void'),
  st SET('a','b','c'),
  ch CHAR(4),
  vc VARCHAR(200),
  tx TEXT,
  bn BINARY(4),
  vb VARBINARY(16),
  bl BLOB,
  update_time DATETIME(6) NOT NULL,
  KEY (update_time, id)
) DEFAULT CHARSET=utf8mb4
"""

TEXT = "😀 emoji, 漢字, 'single' \"double\" back\\slash,\ttab\nnewline; DROP TABLE x; --"
ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "u64": 18446744073709551615,
        "i64": -9223372036854775808,
        "u32": 4294967295,
        "i32": -2147483648,
        "u16": 65535,
        "i16": -32768,
        "u24": 16777215,
        "u8": 255,
        "i8": -128,
        "flag": 2,
        "d10": Decimal("-12345678.90"),
        "d38": Decimal("1234567890123456789012345678.0123456789"),
        "d50": Decimal("123456789012345678901234567890123456789012345.12345"),
        "d2015": Decimal("12345.123456789012345"),
        "d200": Decimal("99999999999999999999"),
        "f4": 1.5,
        "f8": 0.1 + 0.2,
        "d": "2024-02-29",
        "dtm": "2024-02-29 23:59:59",
        "dt6": "2024-01-01 12:34:56.123456",
        "ts3": "2024-01-01 12:34:56.789",
        "tm": "-838:59:59",
        "yr": 2155,
        "b1": 1,
        "b10": 0b1010101011,
        "js": '{"a": [1, 2.5, {"b": null}], "s": "😀 \\"q\\""}',
        "en": "paid",
        "st": "a,c",
        "ch": "ab",
        "vc": TEXT,
        "tx": "",
        "bn": b"\x00\x01\x00\xff",
        "vb": b"\x00\x00abc\x00",
        "bl": b"\x00" * 3 + bytes(range(256)),
    },
    {
        "id": 2,
        "u64": 2**63 + 5,
        "i64": 9223372036854775807,
        "u32": 0,
        "i32": 2147483647,
        "u16": 0,
        "i16": 32767,
        "u24": 0,
        "u8": 0,
        "i8": 127,
        "flag": 0,
        "d10": Decimal("0.01"),
        "d38": Decimal("-0.0000000001"),
        "d50": Decimal("-0.00001"),
        "d2015": Decimal("-0.000000000000001"),
        "d200": Decimal("-12345678901234567890"),
        "f4": -3.25,
        "f8": 1e308,
        "d": "0000-00-00",
        "dtm": "0000-00-00 00:00:00",
        "dt6": "1000-01-01 00:00:00.000001",
        "ts3": "2038-01-19 03:14:07.999",
        "tm": "838:59:59",
        "yr": 1901,
        "b1": 0,
        "b10": 1023,
        "js": "[]",
        "en": "new",
        "st": "",
        "ch": "abcd",
        "vc": "",
        "tx": "x" * 5000,
        "bn": b"\x00\x00\x00\x00",
        "vb": b"",
        "bl": b"",
    },
    {"id": 3},  # NULL in every column
    {
        "id": 4,
        "d": "9999-12-31",
        "dtm": "9999-12-31 23:59:59",
        "dt6": "9999-12-31 23:59:59.999999",
        "tm": "00:00:00",
        "f8": -2.2250738585072014e-308,
        "js": "null",
    },
]
COLUMNS = [c for c in ROWS[0] if c != "id"]

# How the source value is read for comparison (PyMySQL's own conversion otherwise).
SOURCE_EXPR = {
    "d50": "CAST(d50 AS CHAR)",
    "tm": "CAST(tm AS CHAR)",
    "b1": "CAST(b1 AS UNSIGNED) = 1",
    "b10": "CAST(b10 AS UNSIGNED)",
    "d": "NULLIF(d, 0)",
    "dtm": "NULLIF(dtm, 0)",
}


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _source_values(mysql_db: MySQLDb) -> dict[int, dict[str, Any]]:
    select = ", ".join(SOURCE_EXPR.get(c, f"`{c}`") for c in COLUMNS)
    out = {}
    for row in mysql_db.query(f"SELECT id, {select} FROM types ORDER BY id"):
        vals = dict(zip(COLUMNS, [norm(v) for v in row[1:]], strict=True))
        if vals["b1"] is not None:
            vals["b1"] = bool(vals["b1"])
        out[row[0]] = vals
    return out


def _warehouse_values(cfg: Any) -> dict[int, dict[str, Any]]:
    with warehouse(cfg) as wh:
        rows = wh.query(
            f"SELECT {wh.cols(['id', *COLUMNS])} FROM {wh.t('public', 'types_raw')} ORDER BY id"
        )
    return {r[0]: dict(zip(COLUMNS, [norm(v) for v in r[1:]], strict=True)) for r in rows}


def _fill(mysql_db: MySQLDb) -> None:
    mysql_db.execute(DDL)
    mysql_db.execute("SET SESSION sql_mode = ''")  # allows 0000-00-00
    for i, row in enumerate(ROWS):
        cols = [*row, "update_time"]
        values = [*row.values(), dt.datetime(2024, 5, 1, 10, 0, i)]
        placeholders = ", ".join("%s" for _ in cols)
        mysql_db.execute(f"INSERT INTO types ({', '.join(cols)}) VALUES ({placeholders})", values)
    mysql_db.execute("SET SESSION sql_mode = DEFAULT")


def test_every_type_round_trips(
    mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path
) -> None:
    _fill(mysql_db)
    cfg = make_config(
        mysql_db, warehouse_config, tmp_path / "stage", [table("types", batch_size=3)]
    )
    res = one(sync_ok(cfg))
    assert res.rows == len(ROWS)

    src = _source_values(mysql_db)
    got = _warehouse_values(cfg)
    assert got.keys() == src.keys() == {1, 2, 3, 4}
    for key, want in src.items():
        for col, value in want.items():
            have = got[key][col]
            if col == "f4" and value is not None:
                assert have == pytest.approx(_f32(value), rel=1e-7), (key, col)
            elif isinstance(value, float):
                assert have == value and math.copysign(1, have) == math.copysign(1, value)
            else:
                assert have == value, (key, col, have, value)
                assert type(have) is type(value), (key, col, type(have), type(value))

    # The quirks, spelled out against the literal values written.
    one_ = got[1]
    assert one_["u64"] == 18446744073709551615 and got[2]["u64"] == 2**63 + 5
    assert one_["flag"] == 2 and got[2]["flag"] == 0
    assert one_["d50"] == "123456789012345678901234567890123456789012345.12345"
    assert one_["d38"] == Decimal("1234567890123456789012345678.0123456789")
    assert one_["d2015"] == Decimal("12345.123456789012345")
    assert got[2]["d200"] == -12345678901234567890
    assert one_["tm"] == "-838:59:59" and got[2]["tm"] == "838:59:59"
    assert one_["b1"] is True and one_["b10"] == 683 and got[2]["b10"] == 1023
    assert one_["bn"] == b"\x00\x01\x00\xff" and one_["vb"] == b"\x00\x00abc\x00"
    assert one_["bl"] == b"\x00\x00\x00" + bytes(range(256)) and got[2]["vb"] == b""
    assert one_["vc"] == TEXT and got[2]["vc"] == "" and got[3]["vc"] is None
    assert one_["dt6"] == dt.datetime(2024, 1, 1, 12, 34, 56, 123456)
    assert one_["ts3"] == dt.datetime(2024, 1, 1, 12, 34, 56, 789000)
    assert got[4]["dt6"] == dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    assert one_["d"] == dt.date(2024, 2, 29) and got[4]["d"] == dt.date(9999, 12, 31)
    assert got[2]["d"] is None and got[2]["dtm"] is None  # the zero dates
    assert all(v is None for v in got[3].values())

    # Zero dates are reported with table, column and row key.
    zero = [w for w in res.warnings if "zero date" in w]
    assert len(zero) == 2
    assert any("types.d:" in w and "id=2" in w for w in zero)
    assert any("types.dtm:" in w and "id=2" in w for w in zero)


def test_zero_date_policy_error_stops_and_writes_nothing(
    mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path
) -> None:
    _fill(mysql_db)
    cfg = make_config(
        mysql_db,
        warehouse_config,
        tmp_path / "stage",
        [table("types", batch_size=2)],
        zero_date="error",
    )
    res = one(sync(cfg))
    assert res.status == "failed"
    assert res.error is not None
    assert "'d'" in res.error and "id=2" in res.error and "0000-00-00" in res.error
    assert "zero_date" in res.error  # says how to proceed
    # Nothing written: no rows, no batch in the ledger, no cursor.
    assert not wh_exists(cfg, "public", "types_raw") or wh_count(cfg, "public.types_raw") == 0
    assert ledger(cfg, "public.types_raw") == []
    wm = state_watermark(cfg, "public.types_raw")
    assert wm.ts is None and wm.id is None and wm.phase == "incremental"
    runs = wh_query(cfg, "SELECT status, error FROM trackline.runs")
    assert [r[0] for r in runs] == ["failed"] and "id=2" in runs[0][1]


def test_query_source_reads_every_type_like_the_table(
    mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path
) -> None:
    """A `query:` source has no information_schema entry: its column types come from the
    result metadata, and must give the same values as reading the table."""
    _fill(mysql_db)
    select = ", ".join(["id", *COLUMNS, "update_time"])
    cfg = make_config(
        mysql_db,
        warehouse_config,
        tmp_path / "stage",
        [table("types", batch_size=3), table("types_q", query=f"SELECT {select} FROM types")],
    )
    sync_ok(cfg)
    by_table = _warehouse_values(cfg)
    with warehouse(cfg) as wh:
        rows = wh.query(
            f"SELECT {wh.cols(['id', *COLUMNS])} FROM {wh.t('public', 'types_q_raw')} ORDER BY id"
        )
    by_query = {r[0]: dict(zip(COLUMNS, [norm(v) for v in r[1:]], strict=True)) for r in rows}
    assert by_query.keys() == by_table.keys()
    for key in by_table:
        for col in COLUMNS:
            a, b = by_query[key][col], by_table[key][col]
            assert a == b and type(a) is type(b), (key, col, a, b)


def test_zero_date_in_the_cursor_counts_as_a_null_cursor(
    mysql_db: MySQLDb, warehouse_config: Warehouse, tmp_path: Path
) -> None:
    mysql_db.execute(
        "CREATE TABLE ev (id INT PRIMARY KEY, update_time DATETIME NOT NULL, KEY (update_time))"
    )
    mysql_db.execute("SET SESSION sql_mode = ''")
    mysql_db.execute("INSERT INTO ev VALUES (1, '2024-01-01 00:00:00'), (2, '0000-00-00 00:00:00')")
    mysql_db.execute("SET SESSION sql_mode = DEFAULT")
    cfg = make_config(mysql_db, warehouse_config, tmp_path / "stage", [table("ev")])
    res = one(sync(cfg))
    assert res.status == "failed" and res.error is not None
    assert "1 row(s) have a NULL or zero-date update_time" in res.error
    assert "null_cursor: load" in res.error
    assert ledger(cfg, "public.ev_raw") == []

    loads = make_config(
        mysql_db,
        warehouse_config,
        tmp_path / "stage",
        [
            table(
                "ev",
                cdc={
                    "strategy": "hybrid",
                    "cursor": "update_time",
                    "id": "id",
                    "null_cursor": "load",
                },
            )
        ],
    )
    res = one(sync_ok(loads))
    assert res.rows == 2
    assert any("zero date" in w and "id=2" in w for w in res.warnings)
    with warehouse(loads) as wh:
        got = wh.query(f"SELECT id, update_time FROM {wh.t('public', 'ev_raw')} ORDER BY id")
    assert got == [(1, dt.datetime(2024, 1, 1)), (2, None)]
