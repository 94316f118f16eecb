"""Redshift's value limits, checked on the Arrow batch before COPY, so a value that would not
fit stops the batch with its column and row named (or, for text with ``varchar_policy:
truncate``, is cut at a character boundary and reported). Values never go into a message.

- VARCHAR: 65,535 bytes (`VARCHAR_MAX_BYTES`);
- VARBYTE: 1,024,000 bytes, the largest Redshift allows;
- SUPER: 16 MB per document, and each must be valid JSON (DuckDB's vectorised ``json_valid``).
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from trackline.errors import WarehouseError
from trackline.extract.types import is_json

VARCHAR_MAX_BYTES = 65_535
VARBYTE_MAX_BYTES = 1_024_000
SUPER_MAX_BYTES = 16 * 1024 * 1024


def fit_values(
    data: pa.Table, label: str, varchar_policy: str, notice: Callable[[str], None]
) -> tuple[pa.Table, list[str]]:
    """Check every value against its column's limit; return the batch (text cut if the policy
    says so) and what was cut."""
    changes: list[str] = []
    arrays = []
    for field, col in zip(data.schema, data.columns, strict=True):
        if is_json(field):
            check_json(col, field.name, label)
        elif pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            col, cut = fit_text(col, field.name, label, varchar_policy, notice)
            if cut:
                changes.append(f"{cut} value(s) of {field.name} cut")
        elif pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            hint = "; exclude or shorten the column with a `query:`"
            check_size(col, field.name, label, VARBYTE_MAX_BYTES, "VARBYTE", hint)
        arrays.append(col)
    if not changes:
        return data, changes
    return pa.Table.from_arrays(arrays, schema=data.schema), changes


def fit_text(
    col: pa.ChunkedArray,
    name: str,
    label: str,
    varchar_policy: str,
    notice: Callable[[str], None],
) -> tuple[pa.ChunkedArray | pa.Array, int]:
    lengths = pc.binary_length(col)
    over = pc.fill_null(pc.greater(lengths, VARCHAR_MAX_BYTES), False)
    count = pc.sum(over).as_py() or 0
    if not count:
        return col, 0
    first = pc.index(over, True).as_py()
    if varchar_policy == "error":
        more = f" ({count} such values in this batch)" if count > 1 else ""
        raise WarehouseError(
            f"{label}: column {name!r}, row {first} of the batch holds "
            f"{lengths[first].as_py():,} bytes, more than Redshift's VARCHAR limit of "
            f"{VARCHAR_MAX_BYTES:,} bytes{more}. Nothing was loaded. Set "
            "warehouse.varchar_policy: truncate to cut such values at a character "
            "boundary (reported), or shorten the column with a `query:`"
        )
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    mask = over.combine_chunks() if isinstance(over, pa.ChunkedArray) else over
    idx = pc.indices_nonzero(mask).to_pylist()
    cut = [utf8_prefix(arr[i].as_py(), VARCHAR_MAX_BYTES) for i in idx]
    notice(
        f"{label}: {count} value(s) of column {name!r} were longer than "
        f"{VARCHAR_MAX_BYTES:,} bytes and were cut at a character boundary "
        f"(varchar_policy: truncate; first at row {first} of the batch)"
    )
    return pc.replace_with_mask(arr, mask, pa.array(cut, arr.type)), count


def check_json(col: pa.ChunkedArray, name: str, label: str) -> None:
    """A SUPER column's values: each at most 16 MB and valid JSON."""
    import duckdb

    if len(col) == 0:
        return
    check_size(col, name, label, SUPER_MAX_BYTES, "SUPER", "")
    con = duckdb.connect()
    try:
        con.register("batch", pa.table({"v": col}))
        sql = "SELECT coalesce(json_valid(v), true) AS ok FROM batch"
        ok = con.sql(sql).to_arrow_table().column("ok")
    finally:
        con.close()
    if not pc.all(ok).as_py():
        first = pc.index(ok, False).as_py()
        raise WarehouseError(
            f"{label}: column {name!r}, row {first} of the batch is not valid JSON, and "
            "the column is stored as SUPER. Nothing was loaded. Fix the value in the "
            "source, or take the column out of the table's `json_columns`"
        )


def check_size(
    col: pa.ChunkedArray, name: str, label: str, limit: int, kind: str, hint: str
) -> None:
    """Refuse a batch holding a value over `limit` bytes, naming its column and row."""
    lengths = pc.binary_length(col)
    over = pc.fill_null(pc.greater(lengths, limit), False)
    if pc.any(over).as_py():
        first = pc.index(over, True).as_py()
        raise WarehouseError(
            f"{label}: column {name!r}, row {first} of the batch holds "
            f"{lengths[first].as_py():,} bytes, more than Redshift's {kind} limit of "
            f"{limit:,} bytes. Nothing was loaded{hint}"
        )


def utf8_prefix(text: str, limit: int) -> str:
    """The longest prefix of `text` that is at most `limit` bytes in UTF-8 (whole characters)."""
    return text.encode()[:limit].decode("utf-8", "ignore")
