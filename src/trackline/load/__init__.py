"""Warehouse adapters: a registry (plain dict) from `warehouse.type` to the engine class."""

from __future__ import annotations

from typing import Any

from trackline.load.base import Column, StagedFiles, Warehouse


def _duckdb() -> type[Warehouse]:
    from trackline.load.duckdb import DuckDB

    return DuckDB


def _postgres() -> type[Warehouse]:
    from trackline.load.postgres import Postgres

    return Postgres


def _redshift() -> type[Warehouse]:
    from trackline.load.redshift import Redshift

    return Redshift


ENGINES = {"duckdb": _duckdb, "postgres": _postgres, "redshift": _redshift}


def open_warehouse(config: Any) -> Warehouse:
    """Build (not yet connected) the adapter for a warehouse config."""
    return ENGINES[config.type]()(config)


__all__ = ["Column", "ENGINES", "StagedFiles", "Warehouse", "open_warehouse"]
