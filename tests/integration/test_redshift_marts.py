"""The mart post-steps through the Redshift adapter, proven without a cluster.

One multi-cycle scenario (the busy months of marts_helpers: short and long lifecycles, orders
archived and reactivated, NULL keys, events archived by their own time; plus an exception
that holds a row in the mart until it is resolved, and a stale history row the safety check
must catch) runs twice from the same SQLite source:

- on DuckDB, with a local stage;
- through the Redshift adapter in ``compat_postgres`` mode against the real PostgreSQL, staged
  on the moto S3 endpoint (the adapter loads by COPY from the staged files).

After every cycle both warehouses hold the same marts, history periods, ``<mart>_hist`` views,
exceptions (timestamps aside), raw tables and mart progress.

`RecordingRedshift` keeps every statement the adapter sends (and runs it: nothing is mocked;
the S3 COPY, which compat mode replaces by a client-side COPY of the same files, is recorded
as Redshift would receive it). Each one is then checked against what Redshift accepts
(tests/redshift_checks.py): it parses with sqlglot's redshift dialect; no TRUNCATE inside a
transaction; no ``NOT IN (SELECT``, ``IS DISTINCT FROM`` or ``ON CONFLICT``; no index; bound
parameters only in SELECT/INSERT/UPDATE/DELETE (the statements Redshift can prepare); windows
ordered; no LIMIT in a subquery; no correlated subquery Redshift cannot decorrelate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REDSHIFT_TEST_ROLE, PgDb, S3Endpoint
from tests.integration.marts_helpers import (
    ECS,
    UTI,
    UTS,
    Driver,
    Source,
    busy_plan,
    config_dict,
    connect,
    day,
)
from tests.redshift_checks import Sent, norm, redshift_problems, shape
from trackline.config import Config, DuckDBWarehouse, RedshiftWarehouse
from trackline.load import Warehouse
from trackline.load.redshift import Redshift
from trackline.marts.cycle import run_cycle_on
from trackline.marts.exceptions import Exceptions
from trackline.marts.history import HistoryTables, Period
from trackline.marts.invariants import check_all
from trackline.stage import Stage

ROLE = REDSHIFT_TEST_ROLE
EXC = "order_tracking_exceptions"


class RecordingRedshift(Redshift):
    """The Redshift adapter, unchanged, keeping every statement it runs."""

    def __init__(self, config: RedshiftWarehouse) -> None:
        super().__init__(config)
        self.sent: list[Sent] = []

    def sibling(self) -> RecordingRedshift:
        """The connection of another sync worker (`defaults.workers`): its statements are
        kept in the same list, so every statement the run sends is checked."""
        other = super().sibling()
        assert isinstance(other, RecordingRedshift)
        other.sent = self.sent
        return other

    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        self.sent.append(Sent(sql, tuple(params), self.in_transaction))
        super()._execute(sql, params)

    def _execute_count(self, sql: str, params: Sequence[Any]) -> int:
        self.sent.append(Sent(sql, tuple(params), self.in_transaction))
        return super()._execute_count(sql, params)

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        self.sent.append(Sent(sql, tuple(params), self.in_transaction))
        return super()._query(sql, params)

    def _copy_manifest(
        self, target: str, names: list[str], manifest: str, *, documents: bool = False
    ) -> None:
        # compat mode loads the manifest's files client-side; Redshift would get this COPY
        sql = self.copy_sql(target, names, manifest, documents=documents)
        self.sent.append(Sent(sql, (), self.in_transaction))
        super()._copy_manifest(target, names, manifest, documents=documents)


# --------------------------------------------------------------------------- the two warehouses


def _configs(
    tmp: Path, src: Path, pg: PgDb, s3: S3Endpoint, on_reactivation: str
) -> tuple[Config, Config]:
    duck = config_dict(
        src,
        DuckDBWarehouse(path=tmp / "wh.duckdb"),
        tmp / "stage",
        on_reactivation=on_reactivation,
    )
    red = config_dict(src, pg.warehouse_config(), tmp / "unused", on_reactivation=on_reactivation)
    red["warehouse"] = pg.redshift_compat()
    stage = s3.stage_config()
    red["stage"] = {
        "url": stage.url,
        "endpoint_url": stage.endpoint_url,
        "region": stage.region,
        "access_key_id": s3.access_key_id,
        "secret_access_key": s3.secret_access_key,
    }
    return Config.model_validate(duck), Config.model_validate(red)


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Source]:
    src = Source(tmp_path / "src.db")
    yield src
    src.close()


def snapshot(wh: Warehouse, cfg: Config) -> dict[str, list[tuple[Any, ...]]]:
    """Marts, history periods, union views, exceptions (minus timestamps), raw, progress."""
    g = cfg.marts[0]
    out: dict[str, list[tuple[Any, ...]]] = {}
    for schema in (g.schema_, cfg.tables[0].target_schema):
        for table in wh.list_tables(schema):
            cols = "*"
            if table == g.exceptions_table:
                cols = "id, check_name, table_name, key_value, detail, status, note"
            out[f"{schema}.{table}"] = wh.query(f"SELECT {cols} FROM {wh.t(schema, table)}")
    for mart in (UTI, ECS, UTS):
        view = f"{mart}_hist"
        if wh.table_exists(g.schema_, view):
            out[f"view {view}"] = wh.query(f"SELECT * FROM {wh.t(g.schema_, view)}")
    out["mart_progress"] = wh.query(
        f"SELECT mart, raw_table, last_batch_id FROM {wh.t(cfg.state_schema, 'mart_progress')}"
    )
    return {k: sorted(v, key=repr) for k, v in out.items()}


def _short_orders(plan: list[tuple[int, int]], after: int, before: int) -> list[int]:
    """Orders with a short lifecycle (no reactivation) whose last touch is in [after, before)."""
    last: dict[int, int] = {}
    for t, o in plan:
        last[o] = t
    return sorted(o for o, t in last.items() if o > 1 and o % 4 == 0 and after <= t < before)


def _hold_and_plant(wh: Warehouse, cfg: Config, held: int, stale: int) -> None:
    """An open exception that keeps `held` in the mart, and a stale history row for `stale`
    that makes the archive guard skip its real row (the check must then report it)."""
    g = cfg.marts[0]
    cols = _uti_columns(wh, cfg)
    hist = HistoryTables(wh, g.schema_, g.history_prefix, "uti", UTI, cols, g.key, [], None)
    with wh.transaction():
        Exceptions(wh, g.schema_, EXC).record("manual_hold", UTI, str(held), "kept for an audit")
        h = wh.t(g.schema_, hist.ensure(Period.of(day(0))))
        wh.execute(
            f"INSERT INTO {h} (id, order_id, update_time, status, tno) "
            "VALUES (-1, ?, ?, 'stale', 'stale')",
            (stale, day(0)),
        )


def _uti_columns(wh: Warehouse, cfg: Config) -> list[Any]:
    from trackline.marts.engine import GroupEngine

    raw = GroupEngine(cfg, cfg.marts[0], wh).raw("uni_tracking_info")
    assert raw is not None
    return raw.columns


def _resolve_hold(wh: Warehouse, cfg: Config) -> None:
    exc = Exceptions(wh, cfg.marts[0].schema_, EXC)
    (hold,) = [e for e in exc.list() if e["check_name"] == "manual_hold"]
    exc.resolve(hold["id"], "audit done")


@pytest.mark.parametrize("on_reactivation", ["restore", "report"])
def test_mart_cycles_on_redshift_compat_equal_duckdb_and_send_only_redshift_sql(
    tmp_path: Path, source: Source, pg_db: PgDb, s3: S3Endpoint, on_reactivation: str
) -> None:
    duck_cfg, red_cfg = _configs(tmp_path, source.path, pg_db, s3, on_reactivation)
    assert isinstance(red_cfg.warehouse, RedshiftWarehouse)
    red = RecordingRedshift(red_cfg.warehouse)
    red.stage = Stage(red_cfg.stage)
    red.connect()
    duck = connect(duck_cfg)
    plan = busy_plan()
    held, stale = _short_orders(plan, day(12), day(38))[:2]
    drv = Driver(source, plan)
    totals: Counter[str] = Counter()
    try:
        for c in range(1, 135, 10):
            drv.until(day(c))
            for cfg, wh in ((duck_cfg, duck), (red_cfg, red)):
                if c == 41:
                    _hold_and_plant(wh, cfg, held, stale)
                if c == 91:
                    _resolve_hold(wh, cfg)
                summary = run_cycle_on(cfg, wh)
                assert summary.ok, summary.as_dict()
            for m in summary.marts:  # the Redshift side's
                for what in ("archived", "reactivated", "trimmed", "null_keys", "exceptions"):
                    totals[f"{m.mart}.{what}"] += getattr(m, what)
            assert snapshot(red, red_cfg) == snapshot(duck, duck_cfg), f"after the day-{c} cycle"
        assert check_all(red_cfg, red) == check_all(duck_cfg, duck)
        got = snapshot(red, red_cfg)
    finally:
        red.close()
        duck.close()

    # The scenario reached every post-step, on the Redshift side too.
    for mart in (UTI, ECS, UTS):
        assert totals[f"{mart}.archived"] and totals[f"{mart}.trimmed"], mart
        assert totals[f"{mart}.null_keys"], mart
    assert totals[f"{UTI}.reactivated"]
    if on_reactivation == "restore":
        assert totals[f"{ECS}.reactivated"]
    checks = {r[1] for r in got[f"mart.{EXC}"]}
    expected = {"null_key", "manual_hold", "unarchived_past_cutoff"}
    if on_reactivation == "report":
        expected.add("follower_reactivated")
    assert checks == expected
    held_rows = [r for r in got[f"mart.{EXC}"] if r[1] == "manual_hold"]
    assert [r[5] for r in held_rows] == ["resolved"]
    assert held not in {r[1] for r in got[f"mart.{UTI}"]}  # trimmed once resolved
    assert stale in {r[1] for r in got[f"mart.{UTI}"]}  # kept: its history row is stale
    assert any(r[3] == str(stale) for r in got[f"mart.{EXC}"] if r[1] == "unarchived_past_cutoff")
    assert {t for t in got if "hist_" in t} >= {
        f"mart.hist_{n}_2026_h1" for n in ("uti", "ecs", "uts")
    }

    assert_redshift_sql(red.sent)


# --------------------------------------------------------------------------- what was sent


def assert_redshift_sql(sent: list[Sent]) -> None:
    assert len(sent) > 1000
    shapes: dict[tuple[str, bool, bool], Sent] = {}
    for s in sent:
        shapes.setdefault((shape(s.sql), bool(s.params), s.in_transaction), s)
    bad = {s.sql: p for s in shapes.values() if (p := redshift_problems(s))}
    assert not bad, bad
    text = [norm(s.sql) for s in shapes.values()]
    # what the proof covered: COPY from manifests, every post-step, the union views
    for start in (
        "COPY ",
        "CREATE TEMPORARY TABLE",
        'DELETE FROM "MART"."HIST_UTI_',  # reactivation
        'INSERT INTO "MART"."HIST_',  # archive
        'INSERT INTO "MART"."ORDER_TRACKING_EXCEPTIONS"',  # safety check, NULL keys
        'DELETE FROM "MART"."MART_',  # trim (and the anchor's replace by key)
        'DELETE FROM "RAW".',  # raw trim
        "CREATE OR REPLACE VIEW",
    ):
        assert any(t.startswith(start) for t in text), start
    assert all("IAM_ROLE" in t and "MANIFEST" in t for t in text if t.startswith("COPY "))
