"""The staged Parquet layout: how every staged file is written and read, and why.

One layout serves every engine. DuckDB and PostgreSQL read the files back through pyarrow (a
replay); Redshift's ``COPY … FORMAT AS PARQUET`` reads them itself, through Redshift
Spectrum's reader ("COPY from columnar data formats",
https://docs.aws.amazon.com/redshift/latest/dg/copy-usage_notes-copy-from-columnar.html).
COPY documents which Parquet settings it reads only loosely, and public reports show it
misreading files pyarrow writes with its defaults (format 2.6, timestamps as INT64 with only the
newer TIMESTAMP logical type and no converted type):

- apache/arrow#38000: COPY of such a file loads 2023-09-11 10:39:00 as year 161065;
- dask/fastparquet#432: Spectrum reads INT64 timestamps as 2262-04-09 23:47:16.854776 (the
  nanosecond range's end), and reads INT96 ones correctly.

So the stage writes what AWS's own tools write for Redshift:

- Parquet format version 1.0 and snappy compression: Redshift's UNLOAD writes Parquet 1.0 files
  compressed with snappy (https://docs.aws.amazon.com/redshift/latest/dg/r_UNLOAD.html), and
  the AWS SDK for pandas' Redshift path (``wr.redshift.copy`` → ``wr.s3.to_parquet``) passes
  ``version="1.0"`` and ``compression="snappy"`` to pyarrow;
- timestamps as INT96: that SDK also passes ``flavor="spark"``, which makes pyarrow write
  timestamps as INT96 (nanoseconds of the day + Julian day; it takes priority over its
  ``coerce_timestamps="ms"``), the encoding fastparquet#432 found Spectrum reads. INT96 holds
  any DATETIME MySQL has (years 1000-9999) without the int64-nanosecond overflow; it is read
  back here with ``coerce_int96_timestamp_unit="us"``, so pyarrow returns the batch's own
  ``timestamp[us]`` (DuckDB reads INT96 natively);
- everything else as pyarrow writes it under format 1.0, which only uses types that have a
  Parquet 1.0 converted type (what Hive-era readers such as Spectrum know): DATE as INT32
  DATE; DECIMAL(p,s) as FIXED_LEN_BYTE_ARRAY DECIMAL(p,s) with the column's own precision and
  scale, p ≤ 38 as Redshift's DECIMAL (MySQL decimals wider than 38 arrive as text); text as
  UTF8 BYTE_ARRAY, binary as plain BYTE_ARRAY, which COPY loads into VARBYTE
  (https://docs.aws.amazon.com/redshift/latest/dg/copy-usage-varbyte.html); JSON documents as
  BYTE_ARRAY with the JSON type, which is how Redshift's UNLOAD writes SUPER
  (https://docs.aws.amazon.com/redshift/latest/dg/unload-super-parquet.html).
  What Redshift's reader does not map is cast before staging by the Redshift adapter
  (`Redshift.stage_form`): unsigned integers widened (uint64 as DECIMAL(20,0)), times of day
  as text (Spectrum has no TIME type:
  https://docs.aws.amazon.com/redshift/latest/dg/querying-iceberg-supported-data-types.html).

pyarrow reads each type back as it was written, but for one: Parquet 1.0 has no unsigned 32-bit
annotation, so a uint32 column (only DuckDB and PostgreSQL batches hold one: Redshift's are
widened) is written as INT64 and cast back on reading (`arrow_schema`).

Files staged by earlier versions (format 2.6, zstd, INT64 timestamps) stay readable: pyarrow
reads both layouts to the same Arrow types. `layout_problems` tells them apart, so the Redshift
adapter re-stages such a file in this layout instead of letting COPY read it.
"""

from __future__ import annotations

import base64
from typing import IO, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

FORMAT_VERSION = "1.0"
COMPRESSION = "snappy"
TIMESTAMP_PHYSICAL = "INT96"
READ_OPTIONS: dict[str, Any] = {"coerce_int96_timestamp_unit": "us"}
"""How every staged file is opened: INT96 timestamps come back as ``timestamp[us]``."""


def write(data: pa.Table, where: str | IO[bytes], **options: Any) -> None:
    """Write `data` in the staged layout (`options`: row groups, dictionaries)."""
    pq.write_table(
        data,
        where,
        version=FORMAT_VERSION,
        compression=COMPRESSION,
        use_deprecated_int96_timestamps=True,
        **options,
    )


def read_table(path: str, filesystem: pafs.FileSystem) -> pa.Table:
    """A staged file as the batch that was written: Arrow types as they were staged."""
    with filesystem.open_input_file(path) as f:
        pf = open_file(f)
        data = pf.read()
        want = arrow_schema(pf)
    if data.schema.equals(want, check_metadata=False):
        return data
    return data.cast(want)


def open_file(source: Any) -> pq.ParquetFile:
    return pq.ParquetFile(source, **READ_OPTIONS)


def arrow_schema(pf: pq.ParquetFile) -> pa.Schema:
    """The Arrow schema the file was written from. Parquet 1.0 has no unsigned 32-bit
    annotation, so pyarrow reads a uint32 column back as int64; the Arrow schema pyarrow
    stores in the footer (``ARROW:schema``) says what it was, and the values fit it."""
    read = pf.schema_arrow
    stored = (pf.metadata.metadata or {}).get(b"ARROW:schema")
    if stored is None:
        return read
    written = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(stored)))
    fields = []
    for field in read:
        was = written.field(field.name) if field.name in written.names else None
        if was is not None and pa.types.is_integer(was.type) and was.type != field.type:
            field = field.with_type(was.type)
        fields.append(field)
    return pa.schema(fields, read.metadata)


def layout_problems(meta: pq.FileMetaData) -> list[str]:
    """How a file's layout differs from the staged layout (nothing: it is in the layout).

    A file staged by an earlier version (Parquet 2.6, zstd, INT64 timestamps) reads the same
    through pyarrow, but not through Redshift's COPY (see the module docstring)."""
    problems = []
    if meta.format_version != FORMAT_VERSION:
        problems.append(f"Parquet format {meta.format_version}, not {FORMAT_VERSION}")
    schema = meta.schema
    arrow = schema.to_arrow_schema()
    for i in range(meta.num_columns):
        col = schema.column(i)
        field = arrow.field(col.name) if col.name in arrow.names else None
        if field is not None and pa.types.is_timestamp(field.type):
            if col.physical_type != TIMESTAMP_PHYSICAL:
                problems.append(f"timestamp column {col.name!r} as {col.physical_type}")
    codecs = {
        meta.row_group(g).column(c).compression
        for g in range(meta.num_row_groups)
        for c in range(meta.num_columns)
    }
    other = sorted(c for c in codecs if c.lower() != COMPRESSION)
    if other:
        problems.append(f"compressed with {', '.join(other)}, not {COMPRESSION}")
    return problems
