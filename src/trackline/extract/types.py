"""MySQL declared type → (Arrow type, the SELECT expression that reads it faithfully).

The declared type from ``information_schema.columns`` decides the Arrow schema; batches from
the reader are cast to it. Where connectorx cannot read a type faithfully (measured with
connectorx 0.4.6 against MariaDB 10.11), the column is read through a SQL expression instead:

| MySQL                        | Arrow                 | how it is read                            |
|------------------------------|-----------------------|-------------------------------------------|
| TINYINT(1)                   | int8                  | as is: values other than 0/1 survive      |
| … UNSIGNED                   | next wider / uint64   | as is (BIGINT UNSIGNED above 2^63 kept)   |
| DECIMAL(p,s), s≤10, p-s≤18   | decimal128(p,s)       | as is (cx returns (38,10): cast back)     |
| other DECIMAL(p,s), p ≤ 38   | decimal128(p,s)       | CAST(… AS CHAR), cast by Arrow: cx cuts   |
| DECIMAL(p,s), p > 38         | string                | CAST(… AS CHAR): cx panics on these       |
| DATE / DATETIME / TIMESTAMP  | date32 / timestamp[us]| NULLIF(col, 0): cx panics on 0000-00-00   |
| TIME                         | string                | CAST(… AS CHAR): range is ±838 h          |
| BIT(1) / BIT(n)              | bool / uint64         | CAST(… AS UNSIGNED)                       |
| JSON, ENUM, SET, *TEXT       | string                | as is                                     |
| BINARY, VARBINARY, *BLOB     | binary                | as is                                     |

JSON columns (MySQL's JSON type; in MariaDB, where JSON is LONGTEXT, a JSON_VALID check; or a
table's `json_columns`) are text marked as JSON documents: `SourceColumn.json`, and on an Arrow
field the metadata `JSON_META` (`json_field`, `is_json`). A warehouse that stores JSON as
documents (Redshift SUPER) creates those columns with its JSON type, and the stage writes them
with Parquet's JSON logical type, which is what Redshift's COPY loads into SUPER as parsed
documents (a plain string would be stored as one string scalar).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from trackline.errors import SchemaDriftError

_INT = {
    "tinyint": (pa.int8(), pa.int16()),
    "smallint": (pa.int16(), pa.int32()),
    "mediumint": (pa.int32(), pa.int32()),
    "int": (pa.int32(), pa.int64()),
    "integer": (pa.int32(), pa.int64()),
    "bigint": (pa.int64(), pa.uint64()),
}
_STRING = {
    "char",
    "varchar",
    "tinytext",
    "text",
    "mediumtext",
    "longtext",
    "json",
    "enum",
    "set",
}
# connectorx 0.4.6 reads DECIMAL through rust_decimal (96-bit mantissa) rescaled to 10
# places: exact only up to 10 decimals and 18 integer digits (measured against MariaDB).
_CX_DECIMAL_SCALE = 10
_CX_DECIMAL_INT_DIGITS = 18
_SIZED_TEXT = {"char", "varchar"}
UTF8_MAX_CHAR_BYTES = 4
TEXT_MAX_BYTES = 65_535
"""The widest sized text column trackline declares (Redshift's VARCHAR limit, in bytes)."""
_BINARY = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
_ZERO_DATE = {"date", "datetime", "timestamp"}


@dataclass(frozen=True)
class SourceColumn:
    name: str
    data_type: str
    """information_schema DATA_TYPE, lower case (``decimal``)."""
    column_type: str
    """information_schema COLUMN_TYPE, lower case (``decimal(10,2) unsigned``)."""
    nullable: bool
    arrow: pa.DataType
    expr: str
    """The SELECT expression (already quoted) that reads this column."""
    zero_date_check: bool = False
    """DATE/DATETIME/TIMESTAMP: the reader also selects a flag for 0000-00-00 values."""
    ref: str = ""
    """The plain quoted column, for WHERE / ORDER BY: a cursor predicate on `expr` (e.g.
    NULLIF(col, 0)) could not use the (cursor, id) index and would scan the whole table."""
    json: bool = False
    """The column holds JSON documents (see the module docstring)."""

    @property
    def cursor_ref(self) -> str:
        return self.ref or self.expr

    @property
    def max_bytes(self) -> int | None:
        """The most UTF-8 bytes a value can take, from the declared length of a CHAR/VARCHAR
        (4 bytes a character: utf8mb4's worst case, and no charset needs more once converted
        to UTF-8), capped at `TEXT_MAX_BYTES`; None (unbounded) for every other type."""
        if self.data_type not in _SIZED_TEXT or self.json:
            return None
        m = re.search(r"\((\d+)\)", self.column_type)
        if not m:  # a `query:` column, whose result field states no declared length
            return None
        return min(max(int(m.group(1)), 1) * UTF8_MAX_CHAR_BYTES, TEXT_MAX_BYTES)


def map_mysql_column(
    name: str, data_type: str, column_type: str, nullable: bool, quoted: str
) -> SourceColumn:
    dt = data_type.lower()
    ct = column_type.lower()
    unsigned = "unsigned" in ct

    def col(arrow: pa.DataType, expr: str = quoted, zero: bool = False) -> SourceColumn:
        return SourceColumn(name, dt, ct, nullable, arrow, expr, zero, quoted, dt == "json")

    if dt in _INT:
        return col(_INT[dt][1] if unsigned else _INT[dt][0])
    if dt == "year":
        return col(pa.int16())
    if dt in ("decimal", "numeric"):
        m = re.search(r"\((\d+)(?:,(\d+))?\)", ct)
        p, s = (int(m.group(1)), int(m.group(2) or 0)) if m else (10, 0)
        if p > 38:
            return col(pa.string(), f"CAST({quoted} AS CHAR)")
        if s > _CX_DECIMAL_SCALE or p - s > _CX_DECIMAL_INT_DIGITS:
            # connectorx holds decimals as rust_decimal at scale 10: more decimals are cut
            # silently, more integer digits fail. Read the server's text; the cast is exact.
            return col(pa.decimal128(p, s), f"CAST({quoted} AS CHAR)")
        return col(pa.decimal128(p, s))
    if dt == "float":
        return col(pa.float32())
    if dt in ("double", "real"):
        return col(pa.float64())
    if dt == "date":
        return col(pa.date32(), f"NULLIF({quoted}, 0)", zero=True)
    if dt in ("datetime", "timestamp"):
        return col(pa.timestamp("us"), f"NULLIF({quoted}, 0)", zero=True)
    if dt == "time":
        return col(pa.string(), f"CAST({quoted} AS CHAR)")
    if dt == "bit":
        m = re.search(r"\((\d+)\)", ct)
        width = int(m.group(1)) if m else 1
        return col(pa.bool_() if width == 1 else pa.uint64(), f"CAST({quoted} AS UNSIGNED)")
    if dt in _STRING:
        return col(pa.string())
    if dt in _BINARY:
        return col(pa.binary())
    raise SchemaDriftError(
        f"column {name!r} has MySQL type {column_type!r}, which trackline cannot map yet; "
        "exclude it with a `query:` that casts it (e.g. CAST(col AS CHAR))"
    )


JSON_META_KEY = b"trackline.json"
JSON_META = {JSON_META_KEY: b"1"}


def json_field(name: str, type_: pa.DataType | None = None) -> pa.Field:
    """An Arrow field marked as holding JSON documents (as text)."""
    return pa.field(name, type_ or pa.string(), metadata=JSON_META)


def is_json(field: pa.Field) -> bool:
    return bool(field.metadata and field.metadata.get(JSON_META_KEY) == b"1")


_ARROW_TYPES: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "string": pa.string(),
    "large_string": pa.large_string(),
    "binary": pa.binary(),
    "large_binary": pa.large_binary(),
    "date32[day]": pa.date32(),
    "timestamp[us]": pa.timestamp("us"),
    "time64[us]": pa.time64("us"),
}


def arrow_type(text: str) -> pa.DataType:
    """Parse the `str()` of an Arrow type as recorded by sync in the watermark."""
    if text in _ARROW_TYPES:
        return _ARROW_TYPES[text]
    m = re.fullmatch(r"decimal(128|256)\((\d+), (\d+)\)", text)
    if m:
        ctor = pa.decimal128 if m.group(1) == "128" else pa.decimal256
        return ctor(int(m.group(2)), int(m.group(3)))
    if text.startswith("timestamp["):
        return pa.timestamp("us")
    raise ValueError(f"unknown Arrow type {text!r}")


BYTES_META_KEY = b"trackline.max_bytes"


def source_field(col: SourceColumn, json: bool | None = None) -> pa.Field:
    """The column's Arrow field: JSON documents marked (`json` overrides `col.json`), and a
    sized text column's byte limit in the metadata (`max_bytes`)."""
    if col.json if json is None else json:
        return json_field(col.name, col.arrow)
    return with_max_bytes(pa.field(col.name, col.arrow), col.max_bytes)


def with_max_bytes(field: pa.Field, limit: int | None) -> pa.Field:
    """`field` with its byte limit recorded in the metadata (removed when `limit` is None)."""
    meta = {k: v for k, v in (field.metadata or {}).items() if k != BYTES_META_KEY}
    if limit is not None:
        meta[BYTES_META_KEY] = str(limit).encode()
    return field.with_metadata(meta) if meta else field.remove_metadata()


def max_bytes(field: pa.Field) -> int | None:
    """The byte limit `with_max_bytes` recorded on a text field, else None."""
    raw = (field.metadata or {}).get(BYTES_META_KEY)
    return int(raw) if raw else None


def is_widening(old: pa.DataType, new: pa.DataType) -> bool:
    """Whether every value of `old` is a value of `new` (a source type change that loses
    nothing): a wider signed integer (TINYINT → … → BIGINT; INT UNSIGNED is already int64),
    FLOAT → DOUBLE, or a DECIMAL with at least as many integer digits and decimals.
    Text length is not a type here (see `SourceColumn.max_bytes`)."""
    if old == new:
        return False
    if pa.types.is_signed_integer(old) and pa.types.is_signed_integer(new):
        return new.bit_width > old.bit_width
    if pa.types.is_floating(old) and pa.types.is_floating(new):
        return new.bit_width > old.bit_width
    if pa.types.is_decimal(old) and pa.types.is_decimal(new):
        return new.scale >= old.scale and new.precision - new.scale >= old.precision - old.scale
    return False


def cast_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Cast a reader batch to the declared schema (names must match, in order). A value that
    does not fit raises `pa.ArrowInvalid` naming its column."""
    arrays = []
    for field, arr in zip(schema, batch.columns, strict=True):
        if arr.type == field.type:
            arrays.append(arr)
            continue
        try:
            if pa.types.is_boolean(field.type) and pa.types.is_integer(arr.type):
                arrays.append(arr.cast(pa.bool_()))
            else:
                arrays.append(arr.cast(field.type))
        except pa.ArrowInvalid as exc:
            raise pa.ArrowInvalid(f"column {field.name!r} ({field.type}): {exc}") from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
