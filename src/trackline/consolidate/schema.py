"""What every input of a consolidation must produce: the same column names with compatible
types. Checked before anything is read, every run (a source that changed is found before its
rows reach the staging table); nothing is ever cast to make inputs agree.

Compatible means the same Arrow type; text and binary may differ only in declared length
(the staging and target columns take the longest). Integers of different widths, a DECIMAL
of another scale, DATE against DATETIME: all refused, with the input, the column and both
types, so the fix (a CAST in the input's `query`, or a `columns:` mapping) is the user's
explicit choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from trackline.config import ConsolidationConfig, ConsolidationInput
from trackline.errors import SchemaDriftError
from trackline.extract.types import SourceColumn
from trackline.load import Column
from trackline.sync.hold import check_time_cursor

INPUT_COL = "_tl_input"
"""Staging: the input a row came from."""
BATCH_COL = "_tl_batch"
"""Staging: the consolidation's batch that staged the row (increasing over runs)."""
ROW_COL = "_tl_row"
"""Staging: the row's position in its batch (read in cursor order)."""
PROCESSED_COL = "processed_at"
"""Staging: when the merge moved the row into the target; NULL until then."""
STAGING_ONLY = (INPUT_COL, BATCH_COL, ROW_COL, PROCESSED_COL)


@dataclass(frozen=True)
class InputShape:
    """One input's output: target column → where its value comes from."""

    input: ConsolidationInput
    columns: dict[str, SourceColumn]
    """Target column → the input's column (mapped or same-named)."""
    constants: dict[str, str | int]
    read: list[SourceColumn]
    """The input's columns to select: the mapped ones plus the cursor and id."""
    cursor: SourceColumn
    id: SourceColumn


def constant_type(value: str | int) -> pa.DataType:
    return pa.int64() if isinstance(value, int) else pa.string()


def shape_of(
    c: ConsolidationConfig, inp: ConsolidationInput, cols: list[SourceColumn]
) -> InputShape:
    """The input's output columns, from its source columns (`Source.columns`)."""
    by_name = {col.name: col for col in cols}

    def need(name: str, what: str) -> SourceColumn:
        if name not in by_name:
            raise SchemaDriftError(
                f"consolidation {c.name!r}, input {inp.name!r}: {what} {name!r} is not a column "
                f"of the input (it has: {', '.join(list(by_name)[:30])})"
            )
        return by_name[name]

    if inp.columns is not None:
        mapped = {tgt: need(src, f"columns.{tgt} →") for tgt, src in inp.columns.items()}
    else:
        mapped = dict(by_name)
    clash = sorted(set(mapped) & set(inp.constants))
    if clash:
        raise SchemaDriftError(
            f"consolidation {c.name!r}, input {inp.name!r}: constant column(s) {clash} are also "
            "columns of the input; rename one with an explicit `columns:` list"
        )
    reserved = sorted((set(mapped) | set(inp.constants)) & set(STAGING_ONLY))
    if reserved:
        raise SchemaDriftError(
            f"consolidation {c.name!r}, input {inp.name!r}: column(s) {reserved} are reserved "
            "for the staging table; map them to other names with `columns:`"
        )
    cursor, idc = need(inp.cdc.cursor, "cdc.cursor"), need(inp.cdc.id, "cdc.id")
    check_time_cursor(f"consolidation {c.name!r}, input {inp.name!r}", cursor)
    read = list({col.name: col for col in [*mapped.values(), cursor, idc]}.values())
    return InputShape(inp, mapped, dict(inp.constants), read, cursor, idc)


def unify(c: ConsolidationConfig, shapes: list[InputShape]) -> list[Column]:
    """The columns every input produces, in the first input's order, or a `SchemaDriftError`
    naming the input, the column and both types."""
    first = shapes[0]
    names = [*first.columns, *first.constants]
    out: dict[str, Column] = {}
    for name in names:
        if name in first.columns:
            col = first.columns[name]
            out[name] = Column(name, col.arrow, True, col.json, col.max_bytes)
        else:
            out[name] = Column(name, constant_type(first.constants[name]))
    for s in shapes[1:]:
        mine = [*s.columns, *s.constants]
        missing = [n for n in names if n not in mine]
        extra = [n for n in mine if n not in out]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"lacks {missing} (which input {first.input.name!r} has)")
            if extra:
                parts.append(f"has {extra} (which input {first.input.name!r} lacks)")
            raise SchemaDriftError(
                f"consolidation {c.name!r}: input {s.input.name!r} "
                + " and ".join(parts)
                + "; every input must produce the same columns (map names with `columns:`, "
                "add values with `constants:`)"
            )
        for name in names:
            if name in s.columns:
                theirs = s.columns[name].arrow
                their_bytes = s.columns[name].max_bytes
            else:
                theirs, their_bytes = constant_type(s.constants[name]), None
            have = out[name]
            if theirs != have.type:
                raise SchemaDriftError(
                    f"consolidation {c.name!r}: column {name!r} is {have.type} in input "
                    f"{first.input.name!r} but {theirs} in input {s.input.name!r}; nothing is "
                    "cast silently: CAST it in the input's `query` so both agree"
                )
            if have.max_bytes is not None and (their_bytes is None or their_bytes > have.max_bytes):
                out[name] = Column(name, have.type, True, have.json, their_bytes)
    for k in c.key:
        if k not in out:
            raise SchemaDriftError(
                f"consolidation {c.name!r}: key column {k!r} is not produced by the inputs "
                f"(they produce: {', '.join(out)})"
            )
    for k in [*(c.newest_by or []), *(c.sort_key or []), *([c.dist_key] if c.dist_key else [])]:
        if k not in out:
            raise SchemaDriftError(
                f"consolidation {c.name!r}: column {k!r} (newest_by / sort_key / dist_key) is "
                f"not produced by the inputs (they produce: {', '.join(out)})"
            )
    return list(out.values())


def newest_by(c: ConsolidationConfig, shapes: list[InputShape]) -> list[str]:
    """The columns that order two staged rows of one key: `newest_by`, else the cursor
    columns when every input outputs its (time, id) under the same target names."""
    if c.newest_by is not None:
        return list(c.newest_by)
    pairs = set()
    for s in shapes:
        back = {col.name: tgt for tgt, col in s.columns.items()}
        pairs.add((back.get(s.cursor.name), back.get(s.id.name)))
    if len(pairs) == 1:
        ts, idc = next(iter(pairs))
        return [n for n in (ts, idc) if n is not None]
    return []


def staging_columns(columns: list[Column]) -> list[Column]:
    return [
        *columns,
        Column(INPUT_COL, pa.string(), False),
        Column(BATCH_COL, pa.int64(), False),
        Column(ROW_COL, pa.int64(), False),
        Column(PROCESSED_COL, pa.timestamp("us")),
    ]
