"""One member's versions (`trackline dims history TABLE KEY…`), and the natural key of a
dimension as the commands that do not sync find it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trackline.config import Config, TableConfig
from trackline.dims.scd2 import META, VALID_FROM
from trackline.errors import ConfigError
from trackline.extract import Relation, open_source
from trackline.load import Warehouse


def scd2_table(cfg: Config, name: str) -> TableConfig:
    t = cfg.table(name)
    if t.write_mode != "scd2":
        raise ConfigError(
            f"table {name!r} has write_mode {t.write_mode!r}; history is kept for "
            "write_mode: scd2 tables only"
        )
    return t


def natural_key_of(cfg: Config, t: TableConfig, source_db: str | None = None) -> list[str]:
    """`scd2.natural_key`, else `primary_key`, else the source's primary key (read from it)."""
    assert t.scd2 is not None
    if t.scd2.natural_key or t.primary_key:
        return list(t.scd2.natural_key or t.primary_key or [])
    name, src_cfg = cfg.source_for(t)
    db = source_db or t.source_db or src_cfg.database
    with open_source(cfg.sources[name], db) as src:
        pk = src.primary_key(Relation(t.name, db if not t.query else None, t.query))
    if not pk:
        raise ConfigError(
            f"table {t.name!r}: write_mode scd2 needs a natural key; set `scd2.natural_key:`"
        )
    return pk


@dataclass
class History:
    table: str
    key: dict[str, str]
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "key": self.key,
            "versions": [
                {c: (v if isinstance(v, int | float | bool | None) else str(v)) for c, v in
                 zip(self.columns, r, strict=True)}
                for r in self.rows
            ],
        }  # fmt: skip


def history(
    cfg: Config,
    wh: Warehouse,
    name: str,
    values: Sequence[str],
    *,
    source_db: str | None = None,
    target_schema: str | None = None,
) -> History:
    """The versions of the member whose natural key is `values` (compared as text, one value
    per key column), oldest first."""
    t = scd2_table(cfg, name)
    assert t.scd2 is not None
    key = natural_key_of(cfg, t, source_db)
    if len(values) != len(key):
        raise ConfigError(
            f"table {name!r}: its natural key has {len(key)} column(s) ({', '.join(key)}); "
            f"give one value for each (got {len(values)})"
        )
    schema = target_schema or t.target_schema
    if not wh.table_exists(schema, t.dimension):
        raise ConfigError(f"dimension {schema}.{t.dimension} does not exist yet: run a sync first")
    names = wh.column_names(schema, t.dimension)
    where = " AND ".join(f"CAST({wh.q(k)} AS {wh.TEXT_TYPE}) = ?" for k in key)
    rows = wh.query(
        f"SELECT {wh.cols(names)} FROM {wh.t(schema, t.dimension)} WHERE {where} "
        f"ORDER BY {wh.q(VALID_FROM)}, {wh.q(t.scd2.surrogate_key)}",
        tuple(values),
    )
    # the history columns first, then the member's own
    first = [wh.name(n) for n in (t.scd2.surrogate_key, *META)]  # (names as stored)
    order = [*first, *[n for n in names if n not in first]]
    idx = [names.index(n) for n in order if n in names]
    return History(
        f"{schema}.{t.dimension}",
        dict(zip(key, values, strict=True)),
        [names[i] for i in idx],
        [tuple(r[i] for i in idx) for r in rows],
    )
