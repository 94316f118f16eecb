"""Extract: read a source as Arrow batches, and the CDC rules that choose which rows."""

from __future__ import annotations

from typing import Any

from trackline.config.airflow_conns import refuse_unread
from trackline.extract.source import Relation, Source


def open_source(config: Any, database: str | None = None) -> Source:
    refuse_unread("source", config)
    if config.type == "mysql":
        from trackline.extract.mysql import MySQL

        return MySQL(config, database)
    from trackline.extract.sqlite import SQLite

    return SQLite(config, database)


__all__ = ["Relation", "Source", "open_source"]
