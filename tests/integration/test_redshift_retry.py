"""Every warehouse transaction trackline runs reruns whole after a conflict (Redshift compat).

`ConflictOnce` is the Redshift adapter, unchanged, except that the first statement matching
its pattern inside a transaction fails at the driver boundary with the error a real cluster
sends (Redshift's SNAPSHOT isolation text under SQLSTATE XX000, or error 1023 under
SERIALIZABLE), before it runs. The adapter maps it to the retryable class, the transaction
rolls back, and `Warehouse.run_transaction` runs it again from its first statement. Each
transaction kind is hit once; the end state must equal what the source says (marts, history,
raw, checks, exceptions, reconcile), with no row lost or doubled and no counter doubled.
A real PostgreSQL serialization failure (two sessions) is in tests/integration/test_retry.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import PgDb
from tests.integration.marts_helpers import Driver, actual_state, busy_plan, day, expected_state
from tests.redshift_checks import norm
from tests.redshift_scenario import CLAIMS, scenario_config
from trackline.config import Config, RedshiftWarehouse
from trackline.jobs.reconcile import reconcile
from trackline.load.redshift import Redshift
from trackline.marts.cycle import run_cycle_on
from trackline.marts.exceptions import Exceptions
from trackline.quality.run import run_checks
from trackline.stage import Stage
from trackline.sync import Syncer, resolve

SNAPSHOT_CONFLICT = "could not complete because of conflict with concurrent transaction"
SERIALIZABLE_CONFLICT = "1023\nDETAIL:  Serializable isolation violation on table - 100234"


class ConflictOnce(Redshift):
    """Fails the first in-transaction statement that starts with `pattern` (normalised)."""

    def __init__(self, config: RedshiftWarehouse, pattern: str, text: str) -> None:
        super().__init__(config)
        self.pattern, self.text = norm(pattern), text
        self.fired: list[str] = []
        self.said: list[str] = []  # every notice (callers clear `notices` as they report)
        self.RETRY_BACKOFF = 0.0  # type: ignore[misc]

    def sibling(self) -> ConflictOnce:
        """The connection of another sync worker: the same single conflict, shared."""
        other = ConflictOnce(self.config, "", self.text)
        other.pattern, other.fired, other.said = self.pattern, self.fired, self.said
        other.stage = self.stage
        other.connect()
        return other

    def notice(self, message: str) -> None:
        self.said.append(message)
        super().notice(message)

    def _hit(self, sql: str) -> None:
        if not self.fired and self.in_transaction and norm(sql).startswith(self.pattern):
            self.fired.append(sql)
            raise psycopg.errors.InternalError_(self.text)

    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        self._hit(sql)
        super()._execute(sql, params)

    def _execute_count(self, sql: str, params: Sequence[Any]) -> int:
        self._hit(sql)
        return super()._execute_count(sql, params)

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        self._hit(sql)
        return super()._query(sql, params)


KINDS = {
    "state tables": 'CREATE TABLE IF NOT EXISTS "trackline"."schema_version"',
    "target creation": 'CREATE TABLE IF NOT EXISTS "raw".',
    "sync batch": 'INSERT INTO "trackline"."batches"',
    "watermark write": 'INSERT INTO "trackline"."watermarks"',
    "mart tables": 'CREATE TABLE IF NOT EXISTS "mart".',
    "anchor chunk": 'INSERT INTO "mart"."mart_uni_tracking_info"',
    "follower chunk": 'INSERT INTO "mart"."mart_ecs_order_info"',
    "events chunk": 'INSERT INTO "mart"."mart_uni_tracking_spath"',
    "archive": 'INSERT INTO "mart"."hist_',
    "raw trim": 'DELETE FROM "raw"."uni_tracking_info_raw" WHERE "_tl_batch_id" <=',
    "run record": 'INSERT INTO "trackline"."runs"',
    "check": 'INSERT INTO "trackline"."check_results"',
    "check with parameters": 'INSERT INTO "trackline"."_tl_chk_',
    "exception resolve": 'UPDATE "mart"."order_tracking_exceptions" SET status',
    "reconcile apply": 'DELETE FROM "raw"."claims" WHERE "id" IN',
}


def _drive(cfg: Config, wh: Redshift, src: Any) -> dict[str, Any]:
    """Cycles (sync, marts with archive/reactivation, raw trim), checks, an exception resolved,
    reconcile --apply; returns what the run reported."""
    drv = Driver(src, busy_plan())
    claim = 0
    archived = 0
    for c in range(1, 92, 10):
        drv.until(day(c))
        claim += 1
        src.con.execute(f"INSERT INTO {CLAIMS} VALUES (?, ?, ?, ?)", (claim, 1, 1, day(c) - 60))
        src.con.commit()
        summary = run_cycle_on(cfg, wh)
        assert summary.ok, summary.as_dict()
        archived += sum(m.archived for m in summary.marts)
    report = run_checks(cfg, wh, send_alerts=False)
    exc = Exceptions(wh, cfg.marts[0].schema_, cfg.marts[0].exceptions_table)
    (first, *_) = exc.list()
    exc.resolve(first["id"], "seen")
    src.con.execute(f"DELETE FROM {CLAIMS} WHERE id = 2")
    src.con.commit()
    applied = reconcile(cfg, wh, CLAIMS, apply=True)
    return {"report": report, "archived": archived, "applied": applied.applied, "claims": claim}


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_conflict_reruns_the_whole_transaction(tmp_path: Path, pg_db: PgDb, kind: str) -> None:
    # both documented error forms, alternately
    text = SERIALIZABLE_CONFLICT if list(KINDS).index(kind) % 2 else SNAPSHOT_CONFLICT
    cfg, src = scenario_config(tmp_path, pg_db.redshift_compat(), {"url": str(tmp_path / "st")})
    assert isinstance(cfg.warehouse, RedshiftWarehouse)
    wh = ConflictOnce(cfg.warehouse, KINDS[kind], text)
    wh.stage = Stage(cfg.stage)
    wh.connect()
    try:
        got = _drive(cfg, wh, src)
        assert wh.fired, f"no statement starting with {KINDS[kind]!r} was sent"
        assert any("retrying after a transient redshift error" in n for n in wh.said)
        # nothing lost, nothing doubled: marts and history are what the source says
        assert actual_state(wh, cfg.marts[0].schema_) == expected_state(src)
        assert got["archived"] > 0
        # every check ran once and recorded one result row (a rerun does not add a second)
        report = got["report"]
        assert not [r.name for r in report.results if r.status == "error"]
        rows = wh.query(
            f"SELECT check_name, COUNT(*) FROM {wh.t(cfg.state_schema, 'check_results')} "
            "WHERE run_id = ? GROUP BY check_name",
            (report.run_id,),
        )
        assert sorted(rows) == sorted((r.name, 1) for r in report.results)
        resolved = Exceptions(wh, cfg.marts[0].schema_, cfg.marts[0].exceptions_table).list(
            "resolved"
        )
        assert [e["note"] for e in resolved] == ["seen"]
        claims = resolve(cfg, cfg.table(CLAIMS), None, None)
        assert got["applied"] == 1
        assert wh.scalar(f"SELECT COUNT(*) FROM {wh.t(claims.target_schema, claims.target)}") == (
            got["claims"] - 1
        )
    finally:
        wh.close()
        src.close()


def test_a_conflict_on_every_attempt_gives_up_after_the_cap(tmp_path: Path, pg_db: PgDb) -> None:
    cfg, src = scenario_config(tmp_path, pg_db.redshift_compat(), {"url": str(tmp_path / "st")})
    assert isinstance(cfg.warehouse, RedshiftWarehouse)

    class Always(ConflictOnce):
        def _hit(self, sql: str) -> None:
            if self.in_transaction and norm(sql).startswith(self.pattern):
                self.fired.append(sql)
                raise psycopg.errors.InternalError_(self.text)

    wh = Always(cfg.warehouse, 'INSERT INTO "trackline"."batches"', SNAPSHOT_CONFLICT)
    wh.stage = Stage(cfg.stage)
    wh.connect()
    try:
        Driver(src, busy_plan()).until(day(5))
        (result,) = Syncer(cfg, wh).sync(["uni_tracking_info"])
        assert result.status != "ok" and "conflict" in (result.error or "")
        assert len(wh.fired) == wh.RETRY_ATTEMPTS  # the cap: no endless loop
        assert wh.scalar(f"SELECT COUNT(*) FROM {wh.t('trackline', 'batches')}") == 0
    finally:
        wh.close()
        src.close()
