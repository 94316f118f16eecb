"""Kills × `defaults.workers: 2` × follow tables × events upserted by modified time (or re-read
by order), on DuckDB and PostgreSQL with a MariaDB source: a cycle stopped at a named step or
right after a warehouse statement, then rerun, must leave every mart (mart ∪ history) equal
to the source's current rows, no key twice (`check_all`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import MySQLDb, PgDb
from tests.integration.cross_world import precondition
from tests.integration.parity_world import DAY, T0, World
from trackline import faults
from trackline.config import Config, DuckDBWarehouse, PostgresWarehouse, RedshiftWarehouse
from trackline.errors import InjectedFault
from trackline.marts.cycle import run_cycle_on

Wh = DuckDBWarehouse | PostgresWarehouse


def two_workers(w: World) -> None:
    w.data["defaults"]["workers"] = 2
    w.data["defaults"]["batch_size"] = 5
    for t in w.data["tables"][1:]:
        t["cdc"]["follow_chunk_keys"] = 2
    w.cfg = Config.model_validate(w.data)


def setup(w: World) -> None:
    """Ten orders, a cycle; then the data clock moves and 1..9 are archived."""
    for o in range(1, 11):
        w.order(o, T0 + o * 100, partner=o)
        w.status(o, T0 + o * 100 + 50, code=20)
    w.cycle()
    w.status(10, T0 + 40 * DAY)
    w.cycle()


ROUNDS = [((2, 4, 6), 3, 11), ((5, 7, 9), 1, 15)]


def work(w: World, r: int) -> None:
    """The work of the cycle a test kills: ecs corrections with their uti change (orders
    coming back from history), an archived event rewritten (its order stays archived under
    `newest`; under `follow` it comes back: the rewrite is seen only with a change of its
    order) and an active one, new orders."""
    back, rewritten, new = ROUNDS[r]
    t = T0 + (41 + r) * DAY
    for o in back:
        w.ecs(o, partner_id=100 * (r + 1) + o, consignee=f"c{r}{o}")
        w.status(o, t + o, code=300 + r)
    w.rewrite(w.event_ids(rewritten)[0], 90 + r, t)
    w.rewrite(w.event_ids(10)[-1], 80 + r, t + 1)
    if w.data["tables"][2]["cdc"]["strategy"] == "follow":
        w.status(rewritten, t + 20, event=False)
        w.status(10, t + 21, event=False)
    for o in range(new, new + 4):
        w.order(o, t + o)
        w.status(o, t + o + 10)


def killed_cycle(w: World, monkeypatch: pytest.MonkeyPatch, env: str, value: str) -> None:
    faults.reset()
    monkeypatch.setenv(env, value)
    try:
        try:
            s = run_cycle_on(w.cfg, w.wh)
        except InjectedFault:
            pass
        else:  # a fault in a worker may be recorded as a failed table instead of raised
            assert not s.ok, f"{env}={value} never fired"
    finally:
        monkeypatch.delenv(env)
        faults.reset()
        # the killed process's connections die with it, and their session locks with them
        # (PostgreSQL's advisory locks are per connection: kept open, the main connection
        # would still hold the sync lock of the table its worker was killed in)
        w.wh.close()
        w.wh.connect()


STEPS = [
    ("newest", "sync.after_commit@2"),
    ("newest", "sync.follow_before_commit@2"),
    ("newest", "mart.after_reactivate@1"),
    ("newest", "mart.after_archive@1"),
    ("follow", "sync.follow_before_commit@1"),
    ("follow", "sync.follow_after_commit@2"),
    ("follow", "mart.after_insert@2"),
    ("follow", "mart.before_commit@3"),
]


@pytest.mark.parametrize(("spath", "step"), STEPS)
def test_a_cycle_with_two_workers_killed_at_a_step_reruns_to_the_source(
    tmp_path: Path,
    warehouse_config: Wh,
    mysql_db: MySQLDb,
    monkeypatch: pytest.MonkeyPatch,
    spath: str,
    step: str,
) -> None:
    w = World(tmp_path, warehouse_config, mysql_db, spath=spath)
    try:
        two_workers(w)
        setup(w)
        work(w, 0)
        killed_cycle(w, monkeypatch, "TRACKLINE_FAIL_AT", step)
        w.cycle()
        w.assert_equal_to_source()
        w.cycle()
        w.assert_equal_to_source()
    finally:
        w.close()


@pytest.mark.parametrize("at", [0.2, 0.5, 0.8])
def test_a_cycle_with_two_workers_killed_after_a_statement_reruns_to_the_source(
    tmp_path: Path,
    warehouse_config: Wh,
    mysql_db: MySQLDb,
    monkeypatch: pytest.MonkeyPatch,
    at: float,
) -> None:
    """A first round of work is cycled and its statements counted; a second round of the
    same shape is killed after the statement at fraction `at` of that count (two workers
    interleave their statements in an order that varies between runs: that only moves
    where the kill lands), then rerun."""
    w = World(tmp_path, warehouse_config, mysql_db, spath="newest")
    try:
        two_workers(w)
        setup(w)
        work(w, 0)
        faults.reset()
        w.cycle()
        n = faults.statements()
        assert n > 50
        w.assert_equal_to_source()
        work(w, 1)
        killed_cycle(w, monkeypatch, "TRACKLINE_FAIL_AT_STATEMENT", str(int(n * at)))
        w.cycle()
        w.assert_equal_to_source()
    finally:
        w.close()


def test_a_snapshot_resumed_after_a_kill_still_follows_what_changed_meanwhile(
    tmp_path: Path, warehouse_config: Wh, mysql_db: MySQLDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first sync of ecs (a snapshot, resumable) is killed after its first batch; order 1,
    read by that batch, is corrected together with its uti row; the next cycle reads uti's
    change, finishes the snapshot from where it stopped, and runs ecs's first follow pass.
    The correction must reach the mart (it would at the order's next change at the latest,
    which may never come)."""
    w = World(tmp_path, warehouse_config, mysql_db, spath="newest")
    try:
        w.data["defaults"]["batch_size"] = 3
        w.cfg = Config.model_validate(w.data)
        for o in range(1, 8):
            w.order(o, T0 + o * 100, partner=o)
        from trackline.sync import sync

        precondition(lambda: [r.status for r in sync(w.cfg, ["uni_tracking_info"])] == ["ok"])
        faults.reset()
        monkeypatch.setenv("TRACKLINE_FAIL_AT", "sync.after_commit@1")
        try:
            with pytest.raises(InjectedFault):
                sync(w.cfg, ["ecs_order_info"])
        finally:
            monkeypatch.delenv("TRACKLINE_FAIL_AT")
            faults.reset()
        raw = w.wh.query(f"SELECT order_id FROM {w.wh.t('raw', 'ecs_order_info_raw')}")
        if sorted(r[0] for r in raw) != [1, 2, 3]:  # the snapshot's first batch only
            raise RuntimeError(f"set-up: ecs raw holds {raw}")
        w.ecs(1, partner_id=99, consignee="moved")
        w.status(1, T0 + DAY)
        precondition(w.cycle)
        w.assert_equal_to_source()
    finally:
        w.close()


def test_a_follower_failing_for_cycles_still_follows_the_pruned_drivers_changes(
    tmp_path: Path, warehouse_config: Wh, mysql_db: MySQLDb
) -> None:
    """raw_retention_seconds 0: raw rows go as soon as every reader consumed them. ecs's
    follow pass fails for three cycles (its key index was dropped) while uti keeps changing,
    and the marts and the raw pruning go on; once the index is back, the pass must still find
    every key uti loaded meanwhile (its progress holds the driver's rows)."""
    w = World(tmp_path, warehouse_config, mysql_db, spath="newest")
    try:
        w.data["defaults"]["raw_retention_seconds"] = 0
        two_workers(w)
        for o in range(1, 6):
            w.order(o, T0 + o * 100, partner=o)
        w.cycle()
        w.db.execute("ALTER TABLE ecs_order_info DROP INDEX ix_ecs_order")
        for k, o in enumerate((1, 2, 3), start=1):
            w.ecs(o, partner_id=100 + o)
            w.status(o, T0 + k * DAY)
            s = run_cycle_on(w.cfg, w.wh)
            ecs = next(r for r in s.sync if r.table == "ecs_order_info")
            assert ecs.status == "failed" and "follow_key" in (ecs.error or "")
        kept = w.wh.query(f"SELECT DISTINCT order_id FROM {w.wh.t('raw', 'uni_tracking_info_raw')}")
        assert {1, 2, 3} <= {int(r[0]) for r in kept}  # held for the follow pass
        w.db.execute("CREATE INDEX ix_ecs_order ON ecs_order_info (order_id)")
        w.cycle()
        w.assert_equal_to_source()
    finally:
        w.close()


@pytest.mark.servers
@pytest.mark.parametrize(
    ("spath", "step"),
    [
        ("newest", "sync.follow_before_commit@2"),
        ("newest", "mart.after_archive@1"),
        ("follow", "mart.before_commit@2"),
    ],
)
def test_redshift_compat_cycle_with_two_workers_killed_at_a_step_reruns_to_the_source(
    tmp_path: Path,
    pg_db: PgDb,
    mysql_db: MySQLDb,
    monkeypatch: pytest.MonkeyPatch,
    spath: str,
    step: str,
) -> None:
    """The same on the Redshift adapter (compat mode): its locks are rows, its marts never
    build side by side, its ALTERs run outside transactions."""
    wh = RedshiftWarehouse(**pg_db.redshift_compat())
    w = World(tmp_path, wh, mysql_db, spath=spath)
    try:
        two_workers(w)
        setup(w)
        work(w, 0)
        killed_cycle(w, monkeypatch, "TRACKLINE_FAIL_AT", step)
        w.cycle()
        w.assert_equal_to_source()
    finally:
        w.close()
