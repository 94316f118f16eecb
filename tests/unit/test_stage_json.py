"""JSON-marked columns on the stage: written with Parquet's JSON logical type, read back as
the same marked text; unmarked tables are written exactly as before."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from trackline.config import StageConfig
from trackline.extract.types import is_json, json_field
from trackline.load import stagefiles
from trackline.stage import Stage


def _batch(marked: bool) -> pa.Table:
    doc = json_field("doc") if marked else pa.field("doc", pa.string())
    schema = pa.schema([pa.field("id", pa.int64()), doc, pa.field("note", pa.string())])
    return pa.table(
        {
            "id": [1, 2, 3, 4],
            "doc": ['{"a": [1, 2]}', None, "null", '"派送中"'],
            "note": ["x", None, "{}", "y"],
        },
        schema=schema,
    )


def _write(tmp_path: Path, data: pa.Table, parts: int = 1) -> tuple[Stage, list[str], str]:
    stage = Stage(StageConfig(url=str(tmp_path), files_per_batch=parts))
    staged = stage.write_batch(
        source_db="db", schema="s", table="t", batch_id=1, data=data, when=dt.datetime(2026, 1, 1)
    )
    assert staged.manifest_uri
    return stage, list(staged.uris), staged.manifest_uri


def _logical(path: str) -> dict[str, str]:
    schema = pq.ParquetFile(path).schema
    return {schema.column(i).name: str(schema.column(i).logical_type) for i in range(len(schema))}


def test_marked_columns_round_trip_through_the_json_logical_type(tmp_path: Path) -> None:
    data = _batch(marked=True)
    stage, uris, manifest = _write(tmp_path, data, parts=2)
    for uri in uris:
        assert _logical(uri) == {"id": "None", "doc": "JSON",
                                 "note": "String"}  # fmt: skip
    back = stage.read(uris)
    assert back.equals(data)
    assert [is_json(f) for f in back.schema] == [False, True, False]
    schema, rows = stagefiles.staged_schema(stage, manifest)
    assert rows == 4 and stagefiles.json_names(schema) == ["doc"]
    assert stagefiles.columns(schema) == stagefiles.columns(data.schema)


def test_unmarked_tables_stay_plain_strings(tmp_path: Path) -> None:
    data = _batch(marked=False)
    stage, uris, manifest = _write(tmp_path, data)
    assert _logical(uris[0])["doc"] == "String"
    back = stage.read(uris)
    assert back.equals(data) and not any(is_json(f) for f in back.schema)
    assert stagefiles.json_names(stagefiles.staged_schema(stage, manifest)[0]) == []
