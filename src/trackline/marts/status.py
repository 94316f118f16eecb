"""Read-side helpers for the mart commands (history sizes, exceptions)."""

from __future__ import annotations

from typing import Any

from trackline.config import Config, RetentionGroupConfig
from trackline.errors import ConfigError
from trackline.load import open_warehouse
from trackline.marts.exceptions import Exceptions
from trackline.marts.history import HistoryTables


def _groups(cfg: Config, name: str | None = None) -> list[RetentionGroupConfig]:
    if not cfg.marts:
        raise ConfigError("the config has no `marts:` retention group")
    if name is None:
        return list(cfg.marts)
    for g in cfg.marts:
        if g.name == name:
            return [g]
    raise ConfigError(f"no retention group named {name!r} under `marts:`")


def history_tables(cfg: Config) -> list[dict[str, Any]]:
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    out = []
    try:
        for g in _groups(cfg):
            marts = [(g.anchor.table, g.anchor.history_name)] + [
                (f.table, f.history_name) for f in g.followers
            ]
            for mart, name in marts:
                h = HistoryTables(wh, g.schema_, g.history_prefix, name, mart, [], g.key, [], None)
                for p in h.existing():
                    table = h.table(p)
                    n = wh.scalar(f"SELECT COUNT(*) FROM {wh.t(g.schema_, table)}")
                    out.append(
                        {
                            "schema": g.schema_,
                            "table": table,
                            "rows": int(n or 0),
                            "mart": mart,
                            "period": p.suffix,
                        }
                    )
        return out
    finally:
        wh.close()


def list_exceptions(cfg: Config, status: str | None, limit: int = 100) -> list[dict[str, Any]]:
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        from trackline.quality.checks import STATE_EXCEPTIONS

        out: list[dict[str, Any]] = []
        # each group's table, then the run-level failures `trackline check` records
        places = [(g.schema_, g.exceptions_table) for g in _groups(cfg)]
        places.append((cfg.state_schema, STATE_EXCEPTIONS))
        for schema, table in places:
            if wh.table_exists(schema, table):
                exc = Exceptions(wh, schema, table)
                rows = exc.list(status, limit)
                # how many match in all, so a list cut at `limit` says so
                total = exc.count(status) if len(rows) >= limit else len(rows)
                out += [{**r, "where": f"{schema}.{table}", "where_total": total} for r in rows]
        return out
    finally:
        wh.close()


def resolve_exception(
    cfg: Config, exc_id: int, note: str, group: str | None, run_level: bool = False
) -> str:
    """Resolve in the group's exceptions table, or (`run_level`) in the one `trackline check`
    keeps for run-level failures. Returns the table (`schema.table`): ids repeat across
    them."""
    from trackline.quality.checks import STATE_EXCEPTIONS

    g = _groups(cfg, group)[0]
    schema, table = (
        (cfg.state_schema, STATE_EXCEPTIONS) if run_level else (g.schema_, g.exceptions_table)
    )
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        Exceptions(wh, schema, table).resolve(exc_id, note)
    finally:
        wh.close()
    return f"{schema}.{table}"
