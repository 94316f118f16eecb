"""A seeded random walk mixing both kinds of post-creation change (ecs rows re-read by the
follow pass, spath events rewritten or deleted) with new orders, status changes, archiving,
reactivation and kills at random steps; after every cycle the marts and their history must
equal the source's current rows, with no key twice (G1) and none lost (G2)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.conftest import MySQLDb, PgDb
from tests.integration.parity_world import DAY, T0, World
from trackline import faults
from trackline.config import DuckDBWarehouse, PostgresWarehouse, RedshiftWarehouse
from trackline.errors import InjectedFault
from trackline.marts.cycle import run_cycle_on

STEPS = (
    "sync.follow_before_commit",
    "sync.follow_after_commit",
    "sync.before_commit",
    "mart.after_insert",
    "mart.after_reactivate",
    "mart.after_archive",
    "mart.before_commit",
)


def run_walk(
    tmp: Path,
    wh_cfg: DuckDBWarehouse | PostgresWarehouse | RedshiftWarehouse,
    db: MySQLDb,
    seed: int,
    spath: str,
    monkeypatch: pytest.MonkeyPatch,
    cycles: int = 14,
) -> int:
    rng = random.Random(seed)
    w = World(tmp, wh_cfg, db, spath=spath)
    log: list[str] = []
    kills, clock, next_order = 0, T0 + DAY, 2
    w.order(1, clock)
    try:
        for c in range(cycles):
            prev, clock = clock, clock + rng.randint(3, 12) * DAY
            w.status(1, clock - 60)  # the heartbeat moves the data clock

            def between() -> int:
                return rng.randint(prev, clock - 120)  # noqa: B023

            for _ in range(rng.randint(1, 3)):
                w.order(next_order, between(), partner=rng.randint(1, 9))
                next_order += 1
            known = list(range(2, next_order))
            for o in rng.sample(known, min(len(known), rng.randint(0, 4))):
                t = between()
                if rng.random() < 0.5:  # the ecs row changes with the order
                    w.ecs(o, partner_id=rng.randint(10, 99), consignee=f"c{c}")
                    log.append(f"ecs {o}")
                w.status(o, t, code=rng.choice((200, 300, 500)))
            for o in rng.sample(known, min(len(known), rng.randint(0, 3))):
                ids = w.event_ids(o)
                e = rng.choice(ids)
                if spath == "newest":  # a rewrite stamps time_modified
                    w.rewrite(e, rng.randint(1000, 9999), clock - 30)
                    log.append(f"rewrite {e}")
                else:  # no modified time: the order's next change re-reads its events
                    active = {r[0] for r in w.rows("mart_uni_tracking_spath", "id")}
                    # (a deleted event is found among the order's events in the mart and the
                    # periods of its current events; one archived elsewhere is not: docs/cdc.md)
                    if rng.random() < 0.2 and len(ids) > 1 and e in active:
                        w.db.execute("DELETE FROM uni_tracking_spath WHERE id = %s", (e,))
                        log.append(f"delete {e}")
                    else:
                        w.db.execute(
                            "UPDATE uni_tracking_spath SET code = %s, is_updated = 1 WHERE id = %s",
                            (rng.randint(1000, 9999), e),
                        )
                        log.append(f"rewrite {e}")
                    w.status(o, clock - 90, event=False)
            if rng.random() < 0.3:
                step = rng.choice(STEPS)
                faults.reset()
                monkeypatch.setenv("TRACKLINE_FAIL_AT", f"{step}@{rng.randint(1, 2)}")
                try:
                    run_cycle_on(w.cfg, w.wh)
                except InjectedFault:
                    kills += 1
                    log.append(f"killed at {step}")
                finally:
                    monkeypatch.delenv("TRACKLINE_FAIL_AT")
                    faults.reset()
            log.append(f"cycle {c}")
            w.cycle()
            try:
                w.assert_equal_to_source()
            except AssertionError as e:
                raise AssertionError(f"seed {seed}: {'; '.join(log[-15:])}\n{e}") from e
        assert w.hist_tables("uti"), "the walk should archive orders"
        return kills
    finally:
        faults.reset()
        w.close()


@pytest.mark.parametrize("spath", ["newest", "follow"])
def test_walk_equals_the_source_after_every_cycle(
    tmp_path: Path,
    warehouse_config: DuckDBWarehouse | PostgresWarehouse,
    mysql_db: MySQLDb,
    spath: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kills = run_walk(tmp_path, warehouse_config, mysql_db, 3, spath, monkeypatch)
    assert kills >= 1


@pytest.mark.servers
@pytest.mark.parametrize("spath", ["newest", "follow"])
def test_walk_redshift_compat(
    tmp_path: Path, pg_db: PgDb, mysql_db: MySQLDb, spath: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh = RedshiftWarehouse(**pg_db.redshift_compat())
    assert run_walk(tmp_path, wh, mysql_db, 4, spath, monkeypatch) >= 1
