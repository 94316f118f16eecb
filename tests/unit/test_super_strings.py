"""Strings inside SUPER documents: at most 65,535 bytes each (Redshift's SUPER limitations),
checked before COPY like a VARCHAR value: an error naming table, column and row, or with
``varchar_policy: truncate`` the string cut at a character boundary, the document otherwise
unchanged (numbers keep their exact text), and the cut reported. Object keys are not values
and are not limited. And a COPY into a table with SUPER columns says SERIALIZETOJSON."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest

from trackline.config import RedshiftWarehouse
from trackline.errors import WarehouseError
from trackline.extract.types import is_json, json_field
from trackline.load.limits import SUPER_STRING_MAX_BYTES, VARCHAR_MAX_BYTES
from trackline.load.redshift import Redshift

ROLE = "arn:aws:iam::123456789012:role/trackline-copy"
LIMIT = SUPER_STRING_MAX_BYTES


def _adapter(**overrides: Any) -> Redshift:
    return Redshift(RedshiftWarehouse(**{"host": "h", "user": "u", "iam_role": ROLE, **overrides}))


def _docs(values: list[str | None], chunks: int = 1) -> pa.Table:
    schema = pa.schema([pa.field("k", pa.int64()), json_field("doc")])
    size = -(-len(values) // chunks)
    parts = [values[i : i + size] for i in range(0, len(values), size)]
    doc = pa.chunked_array([pa.array(p, pa.string()) for p in parts], pa.string())
    return pa.Table.from_arrays([pa.array(range(len(values))), doc], schema=schema)


def _doc(**fields: Any) -> str:
    return json.dumps(fields, ensure_ascii=False)


def test_the_limit_is_varchars() -> None:
    assert LIMIT == VARCHAR_MAX_BYTES == 65_535


def test_a_string_at_the_limit_passes_one_byte_more_is_an_error_naming_column_and_row() -> None:
    at = _doc(id=1, note="é" * (LIMIT // 2) + "x")  # 65,535 bytes, 32,768 characters
    data = _docs(['{"a": 1}', at, None, "null"])
    ready, changes = _adapter().copy_ready(data, "ods.orders")
    assert ready is data and changes == []

    secret = "€" * (LIMIT // 3) + "xy"  # 65,537 bytes
    bad = _docs(['{"a": 1}', at, _doc(nested={"deep": [1, {"secret": secret}]}), "[]"])
    with pytest.raises(WarehouseError) as err:
        _adapter().copy_ready(bad, "ods.orders")
    msg = str(err.value)
    assert msg.startswith("ods.orders: column 'doc', row 2 of the batch")
    assert "65,537 bytes" in msg and "65,535" in msg and "SUPER" in msg
    assert "varchar_policy: truncate" in msg and "Nothing was loaded" in msg
    assert "€" not in msg and "secret" not in msg  # neither values nor keys in the message


def test_every_long_string_counts_in_arrays_top_level_strings_and_later_chunks() -> None:
    long = "x" * (LIMIT + 1)
    rows = ['{"ok": "' + "y" * 60_000 + '"}', json.dumps(long), "[1, 2]", json.dumps([1, long])]
    with pytest.raises(WarehouseError, match=r"row 1 of the batch .* \(2 such documents"):
        _adapter().copy_ready(_docs(rows, chunks=2), "s.t")


def test_long_object_keys_are_not_values() -> None:
    key = "k" * (LIMIT + 10)
    data = _docs([json.dumps({key: 1})])
    ready, changes = _adapter().copy_ready(data, "s.t")
    assert ready is data and changes == []


def test_truncate_cuts_each_long_string_at_a_character_boundary_and_keeps_the_rest() -> None:
    long = "€" * 30_000  # 90,000 bytes
    doc = (
        '{"id": 12345678901234567890, "price": 1.10, "tiny": 1e-7, "flag": true, "none": null, '
        f'"note": "{long}", "list": ["{long}", "short", {{"k": "v"}}], "键": "值"}}'
    )
    data = _docs(['{"a": 1}', doc, None], chunks=2)
    rs = _adapter(varchar_policy="truncate")
    ready, changes = rs.copy_ready(data, "s.t")
    assert changes == ["2 string(s) inside documents of doc cut"]
    assert is_json(ready.schema.field("doc"))
    values = ready.column("doc").to_pylist()
    assert values[0] == '{"a": 1}' and values[2] is None  # other rows untouched
    cut = values[1]
    # numbers keep their text (no float rounding, no int → float), the rest is the same
    assert '"id":12345678901234567890' in cut and '"price":1.10' in cut and '"tiny":1e-7' in cut
    parsed = json.loads(cut)
    cut_note = "€" * (LIMIT // 3)  # 65,535 // 3 whole characters: 65,535 bytes
    assert parsed == {
        "id": 12345678901234567890,
        "price": 1.1,
        "tiny": 1e-7,
        "flag": True,
        "none": None,
        "note": cut_note,
        "list": [cut_note, "short", {"k": "v"}],
        "键": "值",
    }
    assert len(parsed["note"].encode()) <= LIMIT
    assert any("2 string value(s) inside 1 JSON document(s)" in n for n in rs.notices)
    assert any("first at row 1" in n and "varchar_policy: truncate" in n for n in rs.notices)


@pytest.mark.parametrize(
    ("schema", "documents"),
    [
        (pa.schema([pa.field("k", pa.int64()), json_field("doc")]), True),
        (pa.schema([pa.field("k", pa.int64()), pa.field("doc", pa.string())]), False),
    ],
)
def test_copy_into_super_columns_serializes_to_json(schema: pa.Schema, documents: bool) -> None:
    rs = _adapter()
    sql = rs.copy_sql('"s"."t"', schema.names, "s3://tl-stage/p/x.manifest", documents=documents)
    assert ("FORMAT AS PARQUET SERIALIZETOJSON\n" in sql) is documents
    assert sql.endswith("MANIFEST") and "REGION" not in sql


def test_trackline_sql_shows_serializetojson_for_super_tables(tmp_path: Any) -> None:
    import sqlite3

    from trackline.config import Config
    from trackline.sqlplan import render_plan

    db = tmp_path / "src.db"
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, doc TEXT, note TEXT, at DATETIME);"
        "CREATE TABLE plain (id INTEGER PRIMARY KEY, note TEXT, at DATETIME);"
    )
    con.close()
    cdc = {"strategy": "hybrid", "cursor": "at", "id": "id"}
    cfg = Config.model_validate(
        {
            "sources": {"src": {"type": "sqlite", "path": str(db)}},
            "warehouse": {"type": "redshift", "host": "rs.example", "user": "etl",
                          "iam_role": ROLE, "json_as": "super"},
            "stage": {"url": "s3://tl-stage/prod"},
            "tables": [
                {"name": "events", "target_schema": "ods", "cdc": cdc, "json_columns": ["doc"]},
                {"name": "plain", "target_schema": "ods", "cdc": cdc},
            ],
        }
    )  # fmt: skip
    copies = [s for s in render_plan(cfg, "sync") if s.startswith("COPY")]
    events = [c for c in copies if '"events_raw"' in c]
    plain = [c for c in copies if '"plain_raw"' in c]
    assert events and all("FORMAT AS PARQUET SERIALIZETOJSON\nMANIFEST" in c for c in events)
    assert plain and all("FORMAT AS PARQUET\nMANIFEST" in c for c in plain)
    ddl = next(s for s in render_plan(cfg, "sync") if '"events_raw" (' in s and "CREATE" in s)
    assert '"doc" SUPER' in ddl


def test_a_cluster_opted_in_to_large_strings_says_so_in_the_config() -> None:
    """``enable_large_strings_opt_in`` (parameter group) raises the per-string limit to
    16,000,000 bytes; ``warehouse.large_super_strings`` tells trackline so."""
    data = _docs([_doc(note="x" * 100_000)])
    with pytest.raises(WarehouseError, match="set warehouse.large_super_strings: true"):
        _adapter().copy_ready(data, "s.t")
    ready, changes = _adapter(large_super_strings=True).copy_ready(data, "s.t")
    assert ready is data and changes == []
