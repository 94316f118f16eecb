"""The raw target of a table: created on first sync, checked for drift on every sync.

New source columns are added and reported; a dropped or retyped column stops that table
(G5). What the table stores as JSON documents (Redshift SUPER with ``json_as: super``) is
decided when it is created and read back from the table afterwards, and recorded in the
watermark (``extra.json``) for the marts built on it.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from trackline.config import TableConfig
from trackline.errors import ConfigError, SchemaDriftError
from trackline.extract.cdc import Watermark
from trackline.extract.types import SourceColumn
from trackline.load import Column, Warehouse
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
    w.ensure_schema(rt.target_schema)
    new_json = {c.name for c in cols if c.json} if w.stores_json else set()
    columns = [Column(c.name, c.arrow, json=c.name in new_json) for c in cols] + [
        Column(BATCH_COL, pa.int64())
    ]
    loaded = wm.extra.get("schema") if wm.extra else None
    current = {c.name: str(c.arrow) for c in cols}
    stored_json = new_json
    created = not w.table_exists(rt.target_schema, rt.target)
    if created:
        w.create_table(
            rt.target_schema,
            rt.target,
            columns,
            dist_key=rt.cfg.dist_key,
            sort_key=rt.cfg.sort_key,
        )
    else:
        # what the table stores as JSON is read from it: json_as applies to new tables
        stored_json = w.json_column_names(rt.target_schema, rt.target)
    if loaded and not created:
        dropped = [n for n in loaded if n not in current]
        changed = [
            (n, loaded[n], current[n]) for n in loaded if n in current and loaded[n] != current[n]
        ]
        if dropped or changed:
            what = "; ".join(
                [f"column {n!r} was dropped in the source" for n in dropped]
                + [f"column {n!r} changed type {a} → {b}" for n, a, b in changed]
            )
            raise SchemaDriftError(
                f"table {rt.cfg.name!r} → {rt.key}: {what}. Nothing was loaded for this "
                "table. Alter the target to match (or drop it) and run "
                f"`trackline reset {rt.cfg.name}` to reload it."
            )
        existing = set(w.column_names(rt.target_schema, rt.target))
        for c in cols:
            if c.name not in existing:
                w.add_column(
                    rt.target_schema,
                    rt.target,
                    Column(c.name, c.arrow, json=c.name in new_json),
                )
                stored_json |= {c.name} & new_json
                msg = f"{rt.cfg.name}: new source column {c.name!r} ({c.arrow}) added to {rt.key}"
                res.warnings.append(msg)
                reporter.event("drift", msg, table=rt.cfg.name, column=c.name)
    json_list = sorted(stored_json)
    if loaded != current or (wm.extra or {}).get("json", []) != json_list:
        st = state.get(rt.key)
        extra = {**st.watermark.extra, "schema": current, "json": json_list}
        if not json_list:
            extra.pop("json")
        state.put(
            rt.key,
            rt.cfg.cdc.strategy,
            st.watermark.advanced(extra=extra),
            st.last_batch_id,
            0,
        )
    return stored_json
