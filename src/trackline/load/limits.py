"""Redshift's value limits, checked on the Arrow batch before COPY, so a value that would not
fit stops the batch with its column and row named (or, for text with ``varchar_policy:
truncate``, is cut at a character boundary and reported). Values never go into a message.

- VARCHAR: the column's declared bytes (sized from the source's declared length), at most
  65,535 (`VARCHAR_MAX_BYTES`);
- VARBYTE: 1,024,000 bytes, the largest Redshift allows;
- SUPER: 16 MB per document, each must be valid JSON (DuckDB's vectorised ``json_valid``),
  and no string value inside a document may pass 65,535 bytes, VARCHAR's limit ("an individual
  value within a SUPER object is limited to the maximum length of the corresponding Amazon
  Redshift type … a single string value loaded to SUPER is limited to … 65535 bytes":
  https://docs.aws.amazon.com/redshift/latest/dg/limitations-super.html). The limit is on
  values: object keys are not values, and the page sets them no limit, so they are not
  checked. A string over it follows ``varchar_policy`` like a VARCHAR value: the batch stops
  naming the column and row, or (``truncate``) the string is cut at a character boundary and
  the document re-written (numbers keep their own text), and the cut is reported. Only
  documents longer than the limit are parsed: a string inside a document is never longer
  than the document's text. A cluster whose parameter group opts in to 16,000,000-byte SUPER
  strings (``enable_large_strings_opt_in``) says so with ``warehouse.large_super_strings``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from trackline.errors import WarehouseError
from trackline.extract.types import is_json, max_bytes

VARCHAR_MAX_BYTES = 65_535
VARBYTE_MAX_BYTES = 1_024_000
SUPER_MAX_BYTES = 16 * 1024 * 1024
SUPER_STRING_MAX_BYTES = VARCHAR_MAX_BYTES
"""One string value inside a SUPER document (see the module docstring)."""
SUPER_LARGE_STRING_MAX_BYTES = 16_000_000
"""The same with ``enable_large_strings_opt_in`` (``warehouse.large_super_strings``):
https://docs.aws.amazon.com/redshift/latest/dg/r_enable_large_strings_opt_in.html"""


def fit_values(
    data: pa.Table,
    label: str,
    varchar_policy: str,
    notice: Callable[[str], None],
    super_string_max: int = SUPER_STRING_MAX_BYTES,
) -> tuple[pa.Table, list[str]]:
    """Check every value against its column's limit; return the batch (text cut if the policy
    says so) and what was cut."""
    changes: list[str] = []
    arrays = []
    for field, col in zip(data.schema, data.columns, strict=True):
        if is_json(field):
            check_json(col, field.name, label)
            col, cut = fit_super_strings(
                col, field.name, label, varchar_policy, notice, super_string_max
            )
            if cut:
                changes.append(f"{cut} string(s) inside documents of {field.name} cut")
        elif pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            limit = max_bytes(field) or VARCHAR_MAX_BYTES  # the column's VARCHAR(n)
            col, cut = fit_text(col, field.name, label, varchar_policy, notice, limit)
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
    limit: int = VARCHAR_MAX_BYTES,
) -> tuple[pa.ChunkedArray | pa.Array, int]:
    lengths = pc.binary_length(col)
    over = pc.fill_null(pc.greater(lengths, limit), False)
    count = pc.sum(over).as_py() or 0
    if not count:
        return col, 0
    first = pc.index(over, True).as_py()
    if varchar_policy == "error":
        more = f" ({count} such values in this batch)" if count > 1 else ""
        raise WarehouseError(
            f"{label}: column {name!r}, row {first} of the batch holds "
            f"{lengths[first].as_py():,} bytes, more than its VARCHAR({limit}) holds "
            f"({limit:,} bytes){more}. Nothing was loaded. Set "
            "warehouse.varchar_policy: truncate to cut such values at a character "
            "boundary (reported), or shorten the column with a `query:`"
        )
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    mask = over.combine_chunks() if isinstance(over, pa.ChunkedArray) else over
    idx = pc.indices_nonzero(mask).to_pylist()
    cut = [utf8_prefix(arr[i].as_py(), limit) for i in idx]
    notice(
        f"{label}: {count} value(s) of column {name!r} were longer than "
        f"{limit:,} bytes and were cut at a character boundary "
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


def fit_super_strings(
    col: pa.ChunkedArray | pa.Array,
    name: str,
    label: str,
    varchar_policy: str,
    notice: Callable[[str], None],
    limit: int = SUPER_STRING_MAX_BYTES,
) -> tuple[pa.ChunkedArray | pa.Array, int]:
    """Every string value inside the documents of a SUPER column: at most `limit` bytes, or
    `varchar_policy` decides. Returns the column (with those strings cut under ``truncate``)
    and how many strings were cut."""
    # A JSON string's text is its quotes plus at least its UTF-8 bytes (escapes only lengthen
    # it), so a document of at most limit + 2 bytes cannot hold a longer string.
    long_docs = pc.fill_null(pc.greater(pc.binary_length(col), limit + 2), False)
    if not pc.any(long_docs).as_py():
        return col, 0
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    mask = long_docs.combine_chunks() if isinstance(long_docs, pa.ChunkedArray) else long_docs
    rows = pc.indices_nonzero(mask).to_pylist()
    over: list[tuple[int, int]] = []  # (row, bytes of its longest string)
    for row in rows:
        longest = _longest_string(_parse(arr[row].as_py(), name, label, row))
        if longest > limit:
            over.append((row, longest))
    if not over:
        return col, 0
    first, size = over[0]
    if varchar_policy == "error":
        more = f" ({len(over)} such documents in this batch)" if len(over) > 1 else ""
        raise WarehouseError(
            f"{label}: column {name!r}, row {first} of the batch holds a JSON document with a "
            f"string value of {size:,} bytes, more than the {limit:,} bytes Redshift allows "
            f"for one string inside a SUPER value{more}. Nothing was loaded. Set "
            "warehouse.varchar_policy: truncate to cut such strings at a character boundary "
            "(reported), or shorten them in the source"
            + (
                "; if the cluster opted in to 16,000,000-byte SUPER strings "
                "(enable_large_strings_opt_in), set warehouse.large_super_strings: true"
                if limit < SUPER_LARGE_STRING_MAX_BYTES
                else ""
            )
        )
    cut_strings, values, replace = 0, [], [False] * len(arr)
    for row, _ in over:
        counter = [0]
        values.append(_dump(_parse(arr[row].as_py(), name, label, row), limit, counter))
        replace[row] = True
        cut_strings += counter[0]
    cut = pc.replace_with_mask(arr, pa.array(replace, pa.bool_()), pa.array(values, arr.type))
    notice(
        f"{label}: {cut_strings} string value(s) inside {len(over)} JSON document(s) of "
        f"column {name!r} were longer than {limit:,} bytes (Redshift's limit for one string "
        "in a SUPER value here) and were cut at a character boundary (varchar_policy: truncate; "
        f"first at row {first} of the batch)"
    )
    return cut, cut_strings


class _Number(str):
    """A JSON number's own text, written back as it was (no float rounding)."""


def _parse(text: str, name: str, label: str, row: int) -> Any:
    try:
        return json.loads(text, parse_int=_Number, parse_float=_Number, parse_constant=_Number)
    except RecursionError:
        raise WarehouseError(
            f"{label}: column {name!r}, row {row} of the batch holds a JSON document nested "
            "too deeply to check (SUPER allows 1,000 levels). Nothing was loaded"
        ) from None


def _longest_string(doc: Any) -> int:
    """The UTF-8 length of the longest string value in `doc` (object keys are not values)."""
    longest, todo = 0, [doc]
    while todo:
        v = todo.pop()
        if isinstance(v, dict):
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)
        elif isinstance(v, str) and not isinstance(v, _Number):
            longest = max(longest, len(v.encode()))
    return longest


def _dump(doc: Any, limit: int, cut: list[int]) -> str:
    """`doc` as compact JSON text, each string value cut to `limit` bytes (counted in `cut`)."""
    if isinstance(doc, _Number):
        return str(doc)
    if isinstance(doc, str):
        if len(doc.encode()) > limit:
            doc = utf8_prefix(doc, limit)
            cut[0] += 1
        return json.dumps(doc, ensure_ascii=False)
    if isinstance(doc, dict):
        items = (
            f"{json.dumps(k, ensure_ascii=False)}:{_dump(v, limit, cut)}" for k, v in doc.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(doc, list):
        return "[" + ",".join(_dump(v, limit, cut) for v in doc) + "]"
    return json.dumps(doc)


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
