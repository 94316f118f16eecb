"""The row hash of an scd2 member: computed once per staged row, from the Arrow batch, in the
extract thread (overlapped with the load of the previous batch), and stored in the staging
table's `ROW_HASH_COL`; the apply only compares it.

Canonical encoding (its MD5 is the hash): for each tracked column, in the order of
`tracked`, whose value is not NULL, ``<column>=<length>:<text>;`` where text is Arrow's cast
of the value to a string (binary values: their hex) and length counts its characters; a NULL
column contributes nothing. So NULL, '' (``c=0:;``) and 'NULL' (``c=4:NULL;``) all differ, no
two different rows share an encoding (each part is self-delimiting), the hash is the same on
every engine, and a column added to the source (NULL in the current versions) leaves the
hashes as they were: only members whose new column gets a value open a version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

ROW_HASH_COL = "_tl_row_hash"


def _text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    t = col.type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return pa.chunked_array(
            [pa.array([None if v is None else v.hex() for v in col.to_pylist()], pa.string())]
        )
    if pa.types.is_string(t):
        return col
    return pc.cast(col, pa.string())


def row_hashes(data: pa.Table, tracked: Sequence[str]) -> pa.Array:
    """MD5 (hex) of each row's canonical encoding of the `tracked` columns."""
    parts = []
    for name in tracked:
        text = _text(data.column(name))
        part = pc.binary_join_element_wise(
            f"{name}=", pc.cast(pc.utf8_length(text), pa.string()), ":", text, ";", ""
        )
        parts.append(pc.if_else(pc.is_null(text), "", part))
    if not parts:
        joined = pa.array([""] * data.num_rows, pa.string())
    else:
        joined = pc.binary_join_element_wise(*parts, "")
    return pa.array(
        [hashlib.md5(v.encode(), usedforsecurity=False).hexdigest() for v in joined.to_pylist()],
        pa.string(),
    )


def with_row_hash(data: pa.Table, tracked: Sequence[str]) -> pa.Table:
    return data.append_column(ROW_HASH_COL, row_hashes(data, tracked))
