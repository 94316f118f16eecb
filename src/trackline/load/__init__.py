"""Warehouse adapters: a registry (plain dict) from `warehouse.type` to the engine class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trackline.config.airflow_conns import refuse_unread
from trackline.load.base import Column, StagedFiles, Warehouse

if TYPE_CHECKING:
    from trackline.stage import Stage


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


def open_warehouse(config: Any, *, stage: Stage | None = None) -> Warehouse:
    """Build (not yet connected) the adapter for a warehouse config.

    `stage` is where the batches' Parquet files live; engines that load from those files
    themselves (Redshift's COPY, and its PostgreSQL compatibility mode) need it.
    """
    refuse_unread("warehouse", config)
    wh = ENGINES[config.type]()(config)
    wh.stage = stage
    return wh


__all__ = ["Column", "ENGINES", "StagedFiles", "Warehouse", "open_warehouse"]
