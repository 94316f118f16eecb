"""The staged Parquet layout (`trackline.stage.parquet`), pinned from the files' own metadata.

Every Arrow type a batch can hold is staged, as sync stages it for each engine (the Redshift
adapter first casts what COPY's reader does not map), and the file's footer must say: Parquet
format 1.0, snappy in every column chunk, timestamps as INT96, and per column the physical
type and annotation Redshift's COPY reads into the column trackline created. Reading the file
back gives the batch's own Arrow types and values (years 1000 and 9999, microseconds), and a
file in the layout of earlier versions (Parquet 2.6, zstd, INT64 timestamps) still reads back
the same, while `layout_problems` tells it apart.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trackline.config import RedshiftWarehouse, StageConfig
from trackline.extract.types import json_field
from trackline.load import stagefiles
from trackline.load.redshift import Redshift
from trackline.stage import Stage, parquet

ROLE = "arn:aws:iam::123456789012:role/trackline-copy"

EARLY = dt.datetime(1000, 1, 1, 0, 0, 0, 1)
LATE = dt.datetime(9999, 12, 31, 23, 59, 59, 999999)

# name: (Arrow type, values) — every type `extract.types` maps a MySQL column to.
COLUMNS: dict[str, tuple[pa.DataType | pa.Field, list[object]]] = {
    "flag": (pa.bool_(), [True, None, False]),
    "i8": (pa.int8(), [-128, None, 127]),
    "i16": (pa.int16(), [-32768, None, 32767]),
    "i32": (pa.int32(), [-(2**31), None, 2**31 - 1]),
    "i64": (pa.int64(), [-(2**63), None, 2**63 - 1]),
    "u8": (pa.uint8(), [0, None, 255]),
    "u16": (pa.uint16(), [0, None, 65535]),
    "u32": (pa.uint32(), [0, None, 2**32 - 1]),
    "u64": (pa.uint64(), [0, None, 2**64 - 1]),
    "f4": (pa.float32(), [1.5, None, -3.25]),
    "f8": (pa.float64(), [0.1, None, 1e308]),
    "d10": (pa.decimal128(10, 2), [Decimal("-12345678.90"), None, Decimal("0.01")]),
    "d38": (
        pa.decimal128(38, 10),
        [Decimal("1234567890123456789012345678.0123456789"), None, Decimal("-0.0000000001")],
    ),
    "day": (pa.date32(), [dt.date(1000, 1, 1), None, dt.date(9999, 12, 31)]),
    "at": (pa.timestamp("us"), [EARLY, None, LATE]),
    "tod": (pa.time64("us"), [dt.time(0, 0), None, dt.time(23, 59, 59, 999999)]),
    "txt": (pa.string(), ["派送中 😀", None, ""]),
    "blob": (pa.binary(), [b"\x00\x01\xff", None, b""]),
    "doc": (json_field("doc"), ['{"a": [1, 2.5]}', None, "null"]),
}

# What the staged file holds per column: (physical type, logical type, converted type),
# as pyarrow's ParquetFile(...).schema reports them. "engine" files are staged for DuckDB and
# PostgreSQL (the batch as is), "redshift" files after `Redshift.stage_form`.
COMMON = {
    "flag": ("BOOLEAN", "None", "NONE"),
    "i8": ("INT32", "Int(bitWidth=8, isSigned=true)", "INT_8"),
    "i16": ("INT32", "Int(bitWidth=16, isSigned=true)", "INT_16"),
    "i32": ("INT32", "None", "NONE"),
    "i64": ("INT64", "None", "NONE"),
    "f4": ("FLOAT", "None", "NONE"),
    "f8": ("DOUBLE", "None", "NONE"),
    "d10": ("FIXED_LEN_BYTE_ARRAY", "Decimal(precision=10, scale=2)", "DECIMAL"),
    "d38": ("FIXED_LEN_BYTE_ARRAY", "Decimal(precision=38, scale=10)", "DECIMAL"),
    "day": ("INT32", "Date", "DATE"),
    "at": ("INT96", "None", "NONE"),
    "txt": ("BYTE_ARRAY", "String", "UTF8"),
    "blob": ("BYTE_ARRAY", "None", "NONE"),
    "doc": ("BYTE_ARRAY", "JSON", "JSON"),
}
REDSHIFT = COMMON | {
    "u8": ("INT32", "Int(bitWidth=16, isSigned=true)", "INT_16"),
    "u16": ("INT32", "None", "NONE"),
    "u32": ("INT64", "None", "NONE"),
    "u64": ("FIXED_LEN_BYTE_ARRAY", "Decimal(precision=20, scale=0)", "DECIMAL"),
    "tod": ("BYTE_ARRAY", "String", "UTF8"),
}
# The column types Redshift gets for them (DDL), so the file's annotation is the column's.
REDSHIFT_DDL = {
    "u8": "SMALLINT",
    "u16": "INTEGER",
    "u32": "BIGINT",
    "u64": "DECIMAL(20,0)",
    "d10": "DECIMAL(10,2)",
    "d38": "DECIMAL(38,10)",
    "at": "TIMESTAMP",
    "day": "DATE",
}


def _batch() -> pa.Table:
    fields, arrays = [], []
    for name, (t, values) in COLUMNS.items():
        field = t if isinstance(t, pa.Field) else pa.field(name, t)
        fields.append(field)
        arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _redshift() -> Redshift:
    return Redshift(RedshiftWarehouse(host="example", user="u", iam_role=ROLE))


def _stage(tmp_path: Path, data: pa.Table) -> tuple[Stage, list[str], str]:
    stage = Stage(StageConfig(url=str(tmp_path)))
    staged = stage.write_batch(
        source_db="db", schema="s", table="t", batch_id=1, data=data, when=dt.datetime(2026, 1, 1)
    )
    assert staged.manifest_uri
    return stage, list(staged.uris), staged.manifest_uri


def _columns(path: str) -> dict[str, tuple[str, str, str]]:
    schema = pq.ParquetFile(path).schema
    out = {}
    for i in range(len(schema)):
        c = schema.column(i)
        out[c.name] = (c.physical_type, str(c.logical_type), c.converted_type)
    return out


@pytest.mark.parametrize("engine", ["engine", "redshift"])
def test_every_staged_type_has_the_layout_copy_reads(tmp_path: Path, engine: str) -> None:
    data = _batch() if engine == "engine" else _redshift().stage_form(_batch())
    _stage_, (path,), _ = _stage(tmp_path, data)
    meta = pq.ParquetFile(path).metadata
    assert meta.format_version == "1.0"
    codecs = {
        meta.row_group(g).column(c).compression
        for g in range(meta.num_row_groups)
        for c in range(meta.num_columns)
    }
    assert codecs == {"SNAPPY"}
    got = _columns(path)
    want = REDSHIFT if engine == "redshift" else COMMON
    assert {n: got[n] for n in want} == want
    if engine == "engine":
        # Parquet 1.0 keeps unsigned types as unsigned annotations (pyarrow reads them back);
        # Redshift's reader is never given these: `stage_form` widened them above.
        assert got["u8"] == ("INT32", "Int(bitWidth=8, isSigned=false)", "UINT_8")
        assert got["u64"] == ("INT64", "Int(bitWidth=64, isSigned=false)", "UINT_64")
        assert got["u32"] == ("INT64", "None", "NONE")  # read back as uint32 (`arrow_schema`)
        assert got["tod"] == ("INT64", "Time(isAdjustedToUTC=false, timeUnit=microseconds)",
                              "NONE")  # fmt: skip
    assert parquet.layout_problems(meta) == []


def test_redshift_columns_are_the_files_annotations() -> None:
    """COPY matches by position and converts each Parquet column to its table column: the
    DDL trackline creates carries the same decimal precision/scale and widened integers."""
    rs = _redshift()
    staged = rs.stage_form(_batch())
    ddl = {f.name: rs.sql_type(f.type) for f in staged.schema}
    assert {n: ddl[n] for n in REDSHIFT_DDL} == REDSHIFT_DDL
    assert ddl["tod"].startswith("VARCHAR") and ddl["txt"].startswith("VARCHAR")
    assert ddl["blob"].startswith("VARBYTE")


@pytest.mark.parametrize("engine", ["engine", "redshift"])
def test_staged_files_read_back_to_the_batch(tmp_path: Path, engine: str) -> None:
    data = _batch() if engine == "engine" else _redshift().stage_form(_batch())
    stage, uris, manifest = _stage(tmp_path, data)
    back = stage.read(uris)
    assert back.schema.equals(data.schema, check_metadata=False)
    assert back.equals(data)
    assert back.column("at").to_pylist() == [EARLY, None, LATE]
    schema, rows = stagefiles.staged_schema(stage, manifest)
    assert rows == 3 and stagefiles.columns(schema) == stagefiles.columns(data.schema)
    assert stagefiles.staged_footer(stage, manifest).layout_problems == ()


def test_a_file_in_the_earlier_layout_reads_the_same_and_is_told_apart(tmp_path: Path) -> None:
    data = _batch()
    stage, (path,), manifest = _stage(tmp_path, data)
    # what earlier versions wrote: pyarrow's defaults (format 2.6) with zstd
    pq.write_table(data, path, compression="zstd")
    old = pq.ParquetFile(path)
    assert old.metadata.format_version == "2.6"
    assert _columns(path)["at"] == (
        "INT64",
        "Timestamp(isAdjustedToUTC=false, timeUnit=microseconds, is_from_converted_type=false, "
        "force_set_converted_type=false)",
        "NONE",
    )  # the encoding of apache/arrow#38000
    assert stage.read([path]).equals(data)
    problems = parquet.layout_problems(old.metadata)
    assert problems == [
        "Parquet format 2.6, not 1.0",
        "timestamp column 'at' as INT64",
        "compressed with ZSTD, not snappy",
    ]
    assert stagefiles.staged_footer(stage, manifest).layout_problems == tuple(problems)
