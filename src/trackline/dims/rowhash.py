"""The row hash of an scd2 version: computed by the apply for the rows that open a version
only (`trackline.dims.scd2.hash_changes`: fetched from the warehouse as Arrow in the types the
source gave, a page at a time), and stored in the version's `row_hash`. Changes are found by
comparing the tracked columns in the warehouse, not by this hash.

Canonical encoding (its MD5 is the hash): for each tracked column, in the order of
`tracked`, whose value is not NULL, ``<column>=<length>:<text>;`` where text is Arrow's cast
of the value to a string (binary values: their hex) and length counts its characters; a NULL
column contributes nothing. So NULL, '' (``c=0:;``) and 'NULL' (``c=4:NULL;``) all differ, no
two different rows share an encoding (each part is self-delimiting), the hash is the same on
every engine, and a column added to the source (NULL in the current versions) leaves the
hashes as they were: a version opened later for another change hashes as it would have.

The encoding is built with Arrow compute kernels and its MD5 taken by DuckDB's ``md5`` over
the Arrow column (zero copy, one in-memory DuckDB connection per thread): both run outside
the GIL (a per-row ``hashlib`` loop held it: 1M rows took ~8 s on a loaded machine,
bench/README.md). ``md5`` hashes the text's UTF-8 bytes and returns lower-case hex, as
``hashlib.md5(text.encode()).hexdigest()`` does: the hashes of versions stored before are
unchanged (tests/unit/test_rowhash.py pins both).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

ROW_HASH_COL = "_tl_row_hash"

_local = threading.local()


def _duckdb() -> duckdb.DuckDBPyConnection:
    """This thread's in-memory DuckDB (a connection is not shared between threads)."""
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = duckdb.connect(":memory:", config={"threads": 1})
    return con


def release_thread_duckdb() -> None:
    """Close this thread's DuckDB, if it opened one. A worker thread calls it before it
    signals that it is done: left to the thread's end, the connection could be freed while
    the process exits, and DuckDB then aborts the process."""
    con = getattr(_local, "con", None)
    if con is not None:
        _local.con = None
        con.close()


def _text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    t = col.type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return pa.chunked_array(
            [pa.array([None if v is None else v.hex() for v in col.to_pylist()], pa.string())]
        )
    if pa.types.is_string(t):
        return col
    return pc.cast(col, pa.string())


def encodings(data: pa.Table, tracked: Sequence[str]) -> pa.Array | pa.ChunkedArray:
    """Each row's canonical encoding of the `tracked` columns (the text the hash is of)."""
    parts = []
    for name in tracked:
        text = _text(data.column(name))
        part = pc.binary_join_element_wise(
            f"{name}=", pc.cast(pc.utf8_length(text), pa.string()), ":", text, ";", ""
        )
        parts.append(pc.if_else(pc.is_null(text), "", part))
    if not parts:
        return pa.array([""] * data.num_rows, pa.string())
    return pc.binary_join_element_wise(*parts, "")


def row_hashes(data: pa.Table, tracked: Sequence[str]) -> pa.Array:
    """MD5 (hex) of each row's canonical encoding of the `tracked` columns."""
    text = pa.table({"e": encodings(data, tracked)})
    out = _duckdb().from_arrow(text).project("md5(e) AS h").to_arrow_table().column("h")
    return out.combine_chunks().cast(pa.string())


def with_row_hash(data: pa.Table, tracked: Sequence[str]) -> pa.Table:
    return data.append_column(ROW_HASH_COL, row_hashes(data, tracked))
