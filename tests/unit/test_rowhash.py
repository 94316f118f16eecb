"""The scd2 row hash: NULL-safe, unambiguous, unchanged by a column that is NULL."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa

from trackline.dims.rowhash import ROW_HASH_COL, row_hashes, with_row_hash


def test_null_empty_and_the_text_null_all_differ() -> None:
    t = pa.table({"a": pa.array([None, "", "NULL", "null"]), "b": pa.array([1, 1, 1, 1])})
    h = row_hashes(t, ["a", "b"]).to_pylist()
    assert len(set(h)) == 4


def test_values_cannot_shift_between_columns() -> None:
    t = pa.table({"a": pa.array(["x;b=1:", "x"]), "b": pa.array([None, "1:"])})
    t2 = pa.table({"a": pa.array(["ab", "a"]), "b": pa.array(["c", "bc"])})
    assert len(set(row_hashes(t, ["a", "b"]).to_pylist())) == 2
    assert len(set(row_hashes(t2, ["a", "b"]).to_pylist())) == 2


def test_a_null_column_adds_nothing_and_a_value_does() -> None:
    base = pa.table({"a": pa.array(["x", "y"])})
    more = base.append_column("tier", pa.array([None, "gold"]))
    assert row_hashes(more, ["a", "tier"])[0] == row_hashes(base, ["a"])[0]
    assert row_hashes(more, ["a", "tier"])[1] != row_hashes(base, ["a"])[1]


def test_every_type_hashes_and_equal_rows_hash_equal() -> None:
    t = pa.table(
        {
            "b": pa.array([True, False, None, True]),
            "bin": pa.array([b"\x00\xff", b"", None, b"\x00\xff"]),
            "ts": pa.array([dt.datetime(2024, 1, 1, 8), None, None, dt.datetime(2024, 1, 1, 8)]),
            "d": pa.array([decimal.Decimal("1.50"), None, None, decimal.Decimal("1.50")]),
            "f": pa.array([0.1, None, None, 0.1]),
            "day": pa.array([dt.date(2024, 1, 2), None, None, dt.date(2024, 1, 2)]),
        }
    )
    h = with_row_hash(t, t.column_names).column(ROW_HASH_COL).to_pylist()
    assert h[0] == h[3] and len({h[0], h[1], h[2]}) == 3
    assert all(len(x) == 32 for x in h)


def test_the_hash_is_the_md5_hex_of_the_documented_encoding() -> None:
    """Versions stored by earlier releases keep matching: pinned to hashlib's MD5 of the
    encoding, with multi-byte text (lengths count characters, MD5 the UTF-8 bytes)."""
    import hashlib

    t = pa.table({"a": pa.array(["é€x", None, ""]), "n": pa.array([7, None, -1])})
    expected = [hashlib.md5(e.encode()).hexdigest() for e in ("a=3:é€x;n=1:7;", "", "a=0:;n=2:-1;")]
    assert row_hashes(t, ["a", "n"]).to_pylist() == expected
    assert row_hashes(t.slice(0, 0), ["a", "n"]).to_pylist() == []
