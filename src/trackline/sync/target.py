"""The raw target of a table: created on first sync, checked for drift on every sync.

New source columns are added and reported; a type that widened without loss (INT → BIGINT, a
longer VARCHAR, a DECIMAL with more digits) is altered in place where the engine can (else
`trackline migrate` rebuilds the tables); a dropped or narrowed column stops that table (G5).
Text columns are sized from the source's declared length (`SourceColumn.max_bytes`, recorded
as ``extra.bytes``) on engines that size them (Redshift's VARCHAR(n)).

What the table stores as JSON documents (Redshift SUPER with ``json_as: super``) is decided
when it is created and read back from the table afterwards, and recorded in the watermark
(``extra.json``) for the marts built on it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pyarrow as pa

from trackline.config import TableConfig
from trackline.errors import ConfigError, SchemaDriftError
from trackline.extract.cdc import Watermark
from trackline.extract.types import SourceColumn, arrow_type, is_widening
from trackline.faults import checkpoint
from trackline.load import Column, Warehouse
from trackline.load.base import declared_bytes
from trackline.report import Reporter
from trackline.state import StateStore
from trackline.sync.tables import BATCH_COL, ResolvedTable, TableResult


def json_columns(t: TableConfig, cols: list[SourceColumn]) -> list[SourceColumn]:
    """Mark the columns `json_columns` names as JSON documents (they must be text)."""
    if not t.json_columns:
        return cols
    by_name = {c.name: c for c in cols}
    for name in t.json_columns:
        c = by_name.get(name)
        if c is None:
            raise ConfigError(
                f"table {t.name!r}: json_columns names {name!r}, which is not one of its "
                f"columns ({', '.join(by_name)})"
            )
        if not pa.types.is_string(c.arrow):
            raise ConfigError(
                f"table {t.name!r}: json_columns names {name!r}, a {c.column_type or c.arrow} "
                "column; only text columns can hold JSON documents"
            )
    names = set(t.json_columns)
    return [dataclasses.replace(c, json=True) if c.name in names else c for c in cols]


@dataclasses.dataclass
class Drift:
    """How the source's columns differ from what the raw table was built from (the schema
    recorded in the watermark, ``extra.schema``; text sizes in ``extra.bytes``)."""

    widened: list[SourceColumn]
    """Columns whose type widened without loss (`is_widening`) or whose text got longer."""
    sizes: dict[str, int]
    """Column → the bytes its raw column holds once widened (sized text columns only)."""
    refused: list[str]
    """Drops and changes that would lose data: the table stops with these."""


def drift(wm: Watermark, cols: list[SourceColumn], created: bool = False) -> Drift:
    extra = wm.extra or {}
    loaded: dict[str, str] = extra.get("schema") or {}
    # A table recorded before text was sized (no `bytes`) holds unbounded text columns
    recorded: dict[str, int] | None = extra.get("bytes") if "bytes" in extra else None
    if not loaded or created:
        return Drift([], {c.name: c.max_bytes for c in cols if c.max_bytes is not None}, [])
    widened, sizes, refused = [], {}, []
    for n in loaded:
        if n not in {c.name for c in cols}:
            refused.append(f"column {n!r} was dropped in the source")
    for c in cols:
        if c.name not in loaded:  # a new column: added as the source declares it
            if c.max_bytes is not None:
                sizes[c.name] = c.max_bytes
            continue
        old, new = arrow_type(loaded[c.name]), c.arrow
        if old != new and not is_widening(old, new):
            refused.append(f"column {c.name!r} changed type {loaded[c.name]} → {new}")
            continue
        had = recorded.get(c.name) if recorded is not None else None
        size = had
        if had is not None and (c.max_bytes is None or c.max_bytes > had):
            size = c.max_bytes  # longer text (a shorter declared length keeps the column)
        if size is not None:
            sizes[c.name] = size
        if old != new or size != had:
            widened.append(c)
    return Drift(widened, sizes, refused)


def _refuse(rt: ResolvedTable, what: list[str]) -> SchemaDriftError:
    return SchemaDriftError(
        f"table {rt.cfg.name!r} → {rt.key}: {'; '.join(what)}. Nothing was loaded for this "
        "table. Alter the target to match (or drop it) and run "
        f"`trackline reset {rt.cfg.name}` to reload it."
    )


def raw_column(c: SourceColumn, json: set[str], sizes: dict[str, int]) -> Column:
    return Column(c.name, c.arrow, json=c.name in json, max_bytes=sizes.get(c.name))


def table_schema(w: Warehouse, rt: ResolvedTable, cols: list[SourceColumn]) -> dict[str, Any]:
    """What the raw table in place holds, as the watermark records it: the source's types for
    its columns (a type change there goes unseen: recorded before the table was reset, it is
    gone), the text sizes the table declares."""
    specs = w.column_specs(rt.target_schema, rt.target).get(w.name(rt.target), {})
    stored = {c.name: specs[w.name(c.name)] for c in cols if w.name(c.name) in specs}
    schema = {c.name: str(c.arrow) for c in cols if c.name in stored}
    sizes = {n: b for n, spec in stored.items() if (b := declared_bytes(spec)) is not None}
    return {"schema": schema, "bytes": sizes}


def check_names(w: Warehouse, rt: ResolvedTable, cols: list[SourceColumn]) -> None:
    """Two source columns the warehouse would store under one name (an engine that folds
    names to lower case, `Warehouse.FOLDS_IDENTIFIERS`) stop the table before anything runs."""
    clash = w.name_clash([c.name for c in cols])
    if clash:
        first, second, stored = clash
        raise ConfigError(
            f"table {rt.cfg.name!r} → {rt.key}: source columns {first!r} and {second!r} would "
            f"both be the column {stored!r} ({w.ENGINE} stores names in lower case). Nothing "
            "was loaded for this table. Select one of them under another name with the "
            "table's `query:`"
        )


def stored_as(w: Warehouse, cols: list[SourceColumn], stored: set[str]) -> set[str]:
    """The names of `cols` that the warehouse lists (in its own case) in `stored`."""
    return {c.name for c in cols if w.name(c.name) in stored}


def widen_target(
    w: Warehouse, reporter: Reporter, rt: ResolvedTable, cols: list[SourceColumn], wm: Watermark
) -> None:
    """Apply the source's lossless type changes to the raw table (before `ensure_target`
    records them): ALTER … TYPE in `Warehouse.alter_type_scope`. A change the engine cannot
    make in place (Redshift: anything but a VARCHAR's length) stops the table and names
    `trackline migrate`. Drops and narrowing stop it too, before anything is altered."""
    check_names(w, rt, cols)
    if not w.table_exists(rt.target_schema, rt.target):
        return
    if not (wm.extra or {}).get("schema"):
        # a table in place with no recorded schema (after `trackline reset`): the text sizes
        # it declares are what a longer source VARCHAR is compared with
        wm = Watermark(extra=table_schema(w, rt, cols))
    d = drift(wm, cols)
    if d.refused:
        raise _refuse(rt, d.refused)
    if not d.widened:
        return
    specs = w.column_specs(rt.target_schema, rt.target).get(w.name(rt.target), {})
    json = stored_as(w, cols, w.json_column_names(rt.target_schema, rt.target))
    loaded, had = (wm.extra or {})["schema"], (wm.extra or {}).get("bytes") or {}
    todo = [
        new
        for c in d.widened
        if c.name not in json
        and w.column_type(new := raw_column(c, json, d.sizes))
        != w.column_type(Column(c.name, arrow_type(loaded[c.name]), max_bytes=had.get(c.name)))
    ]  # (a longer VARCHAR is the same TEXT where text is unbounded: nothing to alter)
    for c in todo:
        have = specs.get(w.name(c.name), "")
        if not w.can_alter_type(have, c):
            raise SchemaDriftError(
                f"table {rt.cfg.name!r} → {rt.key}: column {c.name!r} widened in the source "
                f"({have} → {w.column_type(c)}), which {w.ENGINE} cannot ALTER in place. "
                f"Nothing was loaded for this table. Run `trackline migrate {rt.cfg.name}` to "
                "rebuild its tables with the new type in one transaction"
            )
    with w.alter_type_scope():
        for c in todo:
            w.alter_column_type(rt.target_schema, rt.target, c)
    checkpoint("sync.after_widen")  # altered; the schema is recorded by `ensure_target`
    for c in todo:
        msg = f"{rt.cfg.name}: column {c.name!r} widened to {w.column_type(c)} in {rt.key}"
        reporter.event("drift", msg, table=rt.cfg.name, column=c.name)


def ensure_target(
    w: Warehouse,
    state: StateStore,
    reporter: Reporter,
    rt: ResolvedTable,
    cols: list[SourceColumn],
    pk: list[str],
    wm: Watermark,
    res: TableResult,
) -> set[str]:
    """Create or check the target; return its columns stored as JSON documents."""
    check_names(w, rt, cols)
    w.ensure_schema(rt.target_schema)
    new_json = {c.name for c in cols if c.json} if w.stores_json else set()
    current = {c.name: str(c.arrow) for c in cols}
    stored_json = new_json
    created = not w.table_exists(rt.target_schema, rt.target)
    d = drift(wm, cols, created)
    if d.refused:
        raise _refuse(rt, d.refused)
    if not created and not (wm.extra or {}).get("schema"):
        # a table in place with no recorded schema (after `trackline reset`): its text sizes
        # are what the table declares (`widen_target` made them fit the source)
        d.sizes = {**d.sizes, **table_schema(w, rt, cols)["bytes"]}
    if created:
        columns = [raw_column(c, new_json, d.sizes) for c in cols]
        w.create_table(
            rt.target_schema,
            rt.target,
            [*columns, Column(BATCH_COL, pa.int64())],
            dist_key=rt.cfg.dist_key,
            sort_key=rt.cfg.sort_key,
            write_heavy=rt.cfg.write_mode == "append",
        )
    else:
        # what the table stores as JSON is read from it: json_as applies to new tables
        stored_json = stored_as(w, cols, w.json_column_names(rt.target_schema, rt.target))
    if wm.extra and wm.extra.get("schema") and not created:
        existing = set(w.column_names(rt.target_schema, rt.target))
        kept = sorted(n for n in existing if w.name(n) != n)
        if kept:  # a table made when Redshift sessions kept the case (before names folded)
            raise SchemaDriftError(
                f"table {rt.cfg.name!r} → {rt.key}: column {kept[0]!r} keeps its case, and "
                f"trackline stores names in lower case on {w.ENGINE}. Nothing was loaded for "
                f'this table. Rename it (ALTER TABLE … RENAME COLUMN "{kept[0]}" TO '
                f"{w.name(kept[0])}, in a session with enable_case_sensitive_identifier set "
                "to true) and run again"
            )
        for c in cols:
            if w.name(c.name) not in existing:
                w.add_column(rt.target_schema, rt.target, raw_column(c, new_json, d.sizes))
                stored_json |= {c.name} & new_json
                msg = f"{rt.cfg.name}: new source column {c.name!r} ({c.arrow}) added to {rt.key}"
                res.warnings.append(msg)
                reporter.event("drift", msg, table=rt.cfg.name, column=c.name)
        for c in d.widened:
            msg = f"{rt.cfg.name}: column {c.name!r} widened in the source ({c.column_type})"
            res.warnings.append(msg)
    json_list = sorted(stored_json)
    extra = wm.extra or {}
    sizes = {n: b for n, b in d.sizes.items() if n not in stored_json}
    if (
        extra.get("schema") != current
        or extra.get("json", []) != json_list
        or extra.get("bytes") != sizes
    ):
        st = state.get(rt.key, rt.source_db)
        extra = {**st.watermark.extra, "schema": current, "json": json_list, "bytes": sizes}
        if not json_list:
            extra.pop("json")
        state.put(
            rt.key,
            rt.source_db,
            rt.cfg.cdc.strategy,
            st.watermark.advanced(extra=extra),
            st.last_batch_id,
            0,
        )
    return stored_json
