"""Redshift upkeep in compat mode: a VACUUM refused because another one runs is a skip.

Redshift runs one VACUUM per cluster at a time and refuses a second with an error ("VACUUM is
running", hint "re-execute after other vacuum finished"). PostgreSQL has no such limit, so the
refusal is injected at the adapter's driver boundary (the error a cluster sends, SQLSTATE
0A000). ``svv_table_info`` (Redshift's view that tells maintenance what a table needs) is a
plain view in the test database, so the adapter takes its real VACUUM path; every other
statement runs on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from tests.conftest import PgDb
from trackline.config import Config, RedshiftWarehouse
from trackline.errors import WarehouseError
from trackline.load import Column
from trackline.load.redshift import Redshift
from trackline.report import NullReporter
from trackline.schedule import maintenance_job

BUSY = "VACUUM is running\nHINT:  re-execute after other vacuum finished"


class OtherVacuumRunning(Redshift):
    """Every VACUUM meets another VACUUM already running on the cluster (`error`: another
    refusal instead)."""

    def __init__(self, config: RedshiftWarehouse, error: Exception | None = None) -> None:
        super().__init__(config)
        self.error = error or psycopg.errors.FeatureNotSupported(BUSY)
        self.refused: list[str] = []

    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        if sql.startswith("VACUUM"):
            self.refused.append(sql)
            raise self.error
        super()._execute(sql, params)


def _needs_upkeep(pg: PgDb, wh: Redshift) -> None:
    with wh.transaction():
        wh.ensure_schema("raw")
        wh.create_table("raw", "t", [Column("k", pa.int64())])
        wh.execute('INSERT INTO "raw"."t" (k) VALUES (1), (2)')
    pg.execute(
        "CREATE VIEW svv_table_info AS SELECT 'raw'::text AS schema, 't'::text AS \"table\", "
        "40.0 AS unsorted, 25.0 AS stats_off, 2 AS estimated_visible_rows, 2 AS tbl_rows"
    )


def test_vacuum_refused_because_another_runs_is_skipped_with_a_notice(pg_db: PgDb) -> None:
    wh = OtherVacuumRunning(RedshiftWarehouse(**pg_db.redshift_compat()))
    wh.connect()
    try:
        _needs_upkeep(pg_db, wh)
        ran = wh.maintenance("raw", "t")
        assert wh.refused == ['VACUUM "raw"."t"']
        assert ran == ['skipped VACUUM "raw"."t": another VACUUM is running', 'ANALYZE "raw"."t"']
        assert any("VACUUM skipped, another VACUUM is running" in n for n in wh.notices)
    finally:
        wh.close()


def test_the_maintenance_job_does_not_fail_on_a_busy_vacuum(pg_db: PgDb) -> None:
    cfg = Config.model_validate(
        {
            "sources": {"s": {"type": "sqlite", "path": "unused.db"}},
            "warehouse": pg_db.redshift_compat(),
            "stage": {"url": "unused"},
            "tables": [{"name": "t", "target_schema": "raw", "cdc": {"strategy": "full"}}],
        }
    )
    assert isinstance(cfg.warehouse, RedshiftWarehouse)
    wh = OtherVacuumRunning(cfg.warehouse)
    wh.connect()
    try:
        _needs_upkeep(pg_db, wh)
        job = maintenance_job(cfg, wh, NullReporter())
        assert job.status == "ok", job.error
        assert job.detail["ran"] == {
            "raw.t": ['skipped VACUUM "raw"."t": another VACUUM is running', 'ANALYZE "raw"."t"']
        }
    finally:
        wh.close()


def test_other_vacuum_errors_still_fail(pg_db: PgDb) -> None:
    denied = psycopg.errors.InsufficientPrivilege("permission denied for relation t")
    wh = OtherVacuumRunning(RedshiftWarehouse(**pg_db.redshift_compat()), denied)
    wh.connect()
    try:
        _needs_upkeep(pg_db, wh)
        with pytest.raises(WarehouseError, match="permission denied"):
            wh.maintenance("raw", "t")
    finally:
        wh.close()


def test_without_another_vacuum_it_really_runs(pg_db: PgDb) -> None:
    wh = Redshift(RedshiftWarehouse(**pg_db.redshift_compat()))
    wh.connect()
    try:
        _needs_upkeep(pg_db, wh)
        assert wh.maintenance("raw", "t") == ['VACUUM "raw"."t"', 'ANALYZE "raw"."t"']
    finally:
        wh.close()
