"""G1 / G2 as queries: zero rows = the guarantee holds (reused by the quality checks)."""

from __future__ import annotations

from dataclasses import dataclass

from trackline.config import Config, RetentionGroupConfig
from trackline.load import Warehouse
from trackline.marts.history import HistoryTables


@dataclass(frozen=True)
class Violation:
    rule: str
    table: str
    key: object
    detail: str


def _hist_union(wh: Warehouse, g: RetentionGroupConfig, name: str, cols: list[str]) -> str | None:
    h = HistoryTables(wh, g.schema_, g.history_prefix, name, "", [], g.key, [], None)
    parts = [f"SELECT {wh.cols(cols)} FROM {wh.t(g.schema_, h.table(p))}" for p in h.existing()]
    return " UNION ALL ".join(parts) if parts else None


def check_group(
    wh: Warehouse, g: RetentionGroupConfig, limit: int = 20, cfg: Config | None = None
) -> list[Violation]:
    """G1: one row per key in the anchor and one_per_key followers, one row per event key
    in events; and no key (event key for events) is both in a mart and in its history, nor
    in two history periods. `cfg` supplies an events follower's default event key (its
    source's `cdc.id`) when `event_key` is not set."""
    out: list[Violation] = []
    marts = [(g.anchor.table, g.anchor.history_name, [g.key])]
    for f in g.followers:
        if f.kind == "one_per_key":
            marts.append((f.table, f.history_name, [g.key]))
            continue
        key = list(f.event_key or [])
        if not key and cfg is not None and cfg.table(f.source).cdc.id:
            key = [str(cfg.table(f.source).cdc.id)]
        marts.append((f.table, f.history_name, key))
    for table, hist_name, key in marts:
        if not key or not wh.table_exists(g.schema_, table):
            continue
        rows = wh.query(
            f"SELECT {wh.cols(key)}, COUNT(*) FROM {wh.t(g.schema_, table)} "
            f"GROUP BY {wh.cols(key)} HAVING COUNT(*) > 1 LIMIT {int(limit)}"
        )
        out += [Violation("G1_duplicate_key", table, _key(r[:-1]), f"{r[-1]} rows") for r in rows]
        # in the mart or in its history, never both, and in one period only
        out += _active_and_archived(wh, g, table, hist_name, key, limit)
    return out


def _key(values: tuple[object, ...] | list[object]) -> object:
    return values[0] if len(values) == 1 else tuple(values)


def _active_and_archived(
    wh: Warehouse,
    g: RetentionGroupConfig,
    table: str,
    hist_name: str,
    key: list[str],
    limit: int,
) -> list[Violation]:
    hist = _hist_union(wh, g, hist_name, key)
    if not hist or not wh.table_exists(g.schema_, table):
        return []
    mart, cols = wh.t(g.schema_, table), wh.cols(key)
    on = " AND ".join(f"a.{wh.q(c)} = h.{wh.q(c)}" for c in key)
    rows = wh.query(
        f"SELECT {wh.cols(key, 'h.')} FROM ({hist}) h WHERE EXISTS (SELECT 1 FROM {mart} a "
        f"WHERE {on}) LIMIT {int(limit)}"
    )
    out = [
        Violation("G1_active_and_archived", table, _key(r), "key is in the mart and in history")
        for r in rows
    ]
    rows = wh.query(
        f"SELECT {cols}, COUNT(*) FROM ({hist}) h GROUP BY {cols} HAVING COUNT(*) > 1 "
        f"LIMIT {int(limit)}"
    )
    return out + [
        Violation("G1_duplicate_in_history", table, _key(r[:-1]), f"{r[-1]} rows") for r in rows
    ]


def covered_keys(wh: Warehouse, g: RetentionGroupConfig) -> set[object]:
    """Every anchor key in the mart or in any history period (mart ∪ history)."""
    k = wh.q(g.key)
    keys = {r[0] for r in wh.query(f"SELECT {k} FROM {wh.t(g.schema_, g.anchor.table)}")}
    hist = _hist_union(wh, g, g.anchor.history_name, [g.key])
    if hist:
        keys |= {r[0] for r in wh.query(f"SELECT {k} FROM ({hist}) h")}
    return keys


def missing_keys(wh: Warehouse, g: RetentionGroupConfig, expected: set[object]) -> set[object]:
    """G2: expected keys (e.g. every non-NULL key loaded from the source) not in mart ∪ history."""
    return expected - covered_keys(wh, g)


def check_all(cfg: Config, wh: Warehouse) -> list[Violation]:
    out: list[Violation] = []
    for g in cfg.marts:
        out += check_group(wh, g, cfg=cfg)
    return out
