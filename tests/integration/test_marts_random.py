"""Random operation sequences against the mart layer, checked against the oracle every cycle.

The scenario tests in test_marts.py each pin one situation. Here a seeded random walk mixes
them over more than a year of simulated time (three history half-years): status changes,
new orders with and without their ecs record, ecs records that arrive after their order was
archived, corrected update_times that only a full re-read sees (an archived order moving
straight to another period), re-reads of the follower table, replays of staged batches,
NULL keys, and kills at a random mart step followed by a rerun. After every cycle the
warehouse must equal `expected_state` (computed from the source alone), G1 must hold for
every mart and history, and mart ∪ history must cover every key. A failure prints the seed
and the cycle, so it replays exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import PgDb
from tests.integration.marts_helpers import (
    DAY,
    ECS,
    T0,
    UTI,
    UTS,
    Pipeline,
    State,
    actual_state,
    config_dict,
    day,
    expected_state,
)
from trackline import faults
from trackline.config import Config, DuckDBWarehouse, PostgresWarehouse, RedshiftWarehouse
from trackline.errors import InjectedFault
from trackline.marts.cycle import run_cycle_on
from trackline.marts.exceptions import Exceptions
from trackline.marts.history import Period
from trackline.marts.invariants import check_all, missing_keys
from trackline.status import replay_table, reset_table

STEPS = (
    "mart.after_insert",
    "mart.after_reactivate",
    "mart.after_archive",
    "mart.after_check",
    "mart.before_commit",
)


@dataclass
class Walk:
    """What the random walk did (so a failure says which operations led there)."""

    seed: int
    log: list[str] = field(default_factory=list)
    kills: int = 0
    held: set[int] = field(default_factory=set)
    """Orders with an open exception (planted): kept in the mart past the cutoff."""
    planted: int = 0
    resolved: int = 0

    def note(self, text: str) -> None:
        self.log.append(text)

    def where(self) -> str:
        return f"seed {self.seed}; last operations: " + "; ".join(self.log[-12:])


def _no_ecs_order(p: Pipeline, order: int, t: int) -> None:
    """An order whose ecs record does not exist (yet)."""
    p.src.known.add(order)
    p.src.con.execute(
        "INSERT INTO uni_tracking_info (order_id, update_time, status, tno) VALUES (?, ?, 's1', ?)",
        (order, t, f"T{order}"),
    )


def _reset(p: Pipeline, table: str) -> None:
    p.wh.close()
    try:
        reset_table(p.cfg, table)
    finally:
        p.wh.connect()


def _replay(p: Pipeline, table: str, from_batch: int) -> None:
    p.wh.close()
    try:
        replay_table(p.cfg, table, from_batch)
    finally:
        p.wh.connect()


def assert_invariants(p: Pipeline) -> None:
    """G1 for every mart and its history (check_all), and G2: every key loaded from the source
    (orders, ecs rows, spath events) is in its mart or in its history."""
    assert check_all(p.cfg, p.wh) == []
    assert missing_keys(p.wh, p.cfg.marts[0], p.src.keys()) == set()
    for table, name, col, src_table in (
        (ECS, "ecs", "order_id", "ecs_order_info"),
        (UTS, "uts", "id", "uni_tracking_spath"),
    ):
        want = {
            r[0]
            for r in p.src.con.execute(
                f"SELECT {col} FROM {src_table} WHERE order_id IS NOT NULL"
            ).fetchall()
        }
        have = set(p.rows(table, col)) | {r[0] for h in p.hist_tables(name) for r in p.rows(h, col)}
        have = {k[0] if isinstance(k, tuple) else k for k in have}
        assert want - have == set(), f"{table}: source keys in neither mart nor history"


def expected_with_held(p: Pipeline, held: set[int]) -> State:
    """The oracle, plus what an open exception changes: an order past the cutoff whose key
    has one is archived (or has a stale row in its period) but not trimmed, so it stays in the
    anchor mart, and its follower row stays with it (it leaves only with its anchor row)."""
    exp = expected_state(p.src)
    times = dict(
        p.src.con.execute("SELECT order_id, update_time FROM uni_tracking_info").fetchall()
    )
    for o in held & set(exp.hist_uti):
        exp.uti[o] = times[o]
        if o in exp.hist_ecs:
            del exp.hist_ecs[o]
            exp.ecs.add(o)
    return exp


def assert_state_held(p: Pipeline, held: set[int]) -> None:
    """`assert_state` with planted exceptions: the oracle above, and G1's "in the mart and in
    history" reported for exactly the held orders past the cutoff (G2 as always)."""
    exp, act = expected_with_held(p, held), actual_state(p.wh, p.schema)
    for name in ("uti", "hist_uti", "ecs", "hist_ecs", "uts", "hist_uts"):
        assert getattr(act, name) == getattr(exp, name), name
    both = sorted((v.rule, v.table, v.key) for v in check_all(p.cfg, p.wh))
    assert both == sorted(("G1_active_and_archived", UTI, o) for o in held & set(exp.hist_uti))
    assert missing_keys(p.wh, p.cfg.marts[0], p.src.keys()) == set()


def _plant(p: Pipeline, walk: Walk, rng: random.Random, *, stale_ok: bool) -> None:
    """Now and then, before a cycle: an order about to pass the cutoff (in the mart now, past
    it by the source) gets either a manual hold (an open exception: the trim keeps it) or a
    stale row of its key in the history period it is going to (the archive guard skips it, the
    safety check opens `unarchived_past_cutoff`, the trim keeps it). Now and then a held order
    is released: the stale row removed, its exceptions resolved; the next cycle archives it.
    No stale row when the anchor re-reads its raw table this cycle (`stale_ok` False): its
    reactivation step would rightly remove it before the archive (a key in the batch)."""
    exc = Exceptions(p.wh, p.schema, "order_tracking_exceptions")
    if walk.held and rng.random() < 0.3:
        o = rng.choice(sorted(walk.held))
        for h in p.hist_tables("uti"):
            with p.wh.transaction():
                p.wh.execute(f"DELETE FROM {p.t(h)} WHERE order_id = ? AND status = 'stale'", (o,))
        for e in p.exceptions():
            if e[2] == UTI and e[3] == str(o):
                exc.resolve(e[0], "released by the walk")
        walk.held.discard(o)
        walk.resolved += 1
        walk.note(f"order {o} released")
    archived = {k for h in p.hist_tables("uti") for k in p.keys(h)}
    leaving = sorted(
        (set(expected_state(p.src).hist_uti) & set(p.keys(UTI))) - archived - walk.held - {1}
    )
    if not leaving or rng.random() < 0.6:
        return
    o = rng.choice(leaving)
    (t,) = p.src.con.execute(
        "SELECT update_time FROM uni_tracking_info WHERE order_id = ?", (o,)
    ).fetchone()
    period = f"hist_uti_{Period.of(t).suffix}"
    if stale_ok and rng.random() < 0.5 and period in p.hist_tables("uti"):
        stale = t - 1 if Period.of(t - 1) == Period.of(t) else t + 1
        with p.wh.transaction():
            p.wh.execute(
                f"INSERT INTO {p.t(period)} (id, order_id, update_time, status, tno) "
                "VALUES (?, ?, ?, 'stale', ?)",
                (900_000 + o, o, stale, f"T{o}"),
            )
        walk.note(f"stale row of order {o} in {period}")
    else:
        with p.wh.transaction():
            exc.record("manual_hold", UTI, str(o), "held by the walk")
        walk.note(f"order {o} held")
    walk.held.add(o)
    walk.planted += 1


def _cycle(p: Pipeline, walk: Walk, rng: random.Random, monkeypatch: pytest.MonkeyPatch) -> None:
    if rng.random() < 0.25:
        step = rng.choice(STEPS)
        nth = rng.randint(1, 3)
        faults.reset()
        monkeypatch.setenv("TRACKLINE_FAIL_AT", f"{step}@{nth}")
        try:
            run_cycle_on(p.cfg, p.wh)
        except InjectedFault:
            walk.kills += 1
            walk.note(f"killed at {step}@{nth}")
        finally:
            monkeypatch.delenv("TRACKLINE_FAIL_AT")
            faults.reset()
    s = run_cycle_on(p.cfg, p.wh)
    assert s.ok, s.as_dict()


def run_walk(
    tmp: Path,
    wh_cfg: DuckDBWarehouse | PostgresWarehouse,
    seed: int,
    monkeypatch: pytest.MonkeyPatch,
    cycles: int = 50,
    *,
    variant: str = "restore",
) -> Walk:
    """`variant`: "restore" (the oracle after every cycle), or "report" (on_reactivation:
    report) / "orphans" (mart_ecs with `time: add_time`, ecs rows whose order never comes):
    their end state depends on the path, so these are held to the invariants instead."""
    rng = random.Random(seed)
    walk = Walk(seed)
    p = Pipeline(tmp, wh_cfg, on_reactivation="report" if variant == "report" else "restore")
    if variant == "orphans":
        data = config_dict(p.src.path, wh_cfg, tmp / "stage")
        data["marts"][0]["followers"][0]["time"] = "add_time"
        p.cfg = Config.model_validate(data)
    plant = variant == "restore"
    next_order, clock = 2, day(1)
    no_ecs: set[int] = set()
    try:
        for c in range(cycles):
            prev, clock = clock, clock + rng.randint(4, 14) * DAY
            p.src.touch(1, clock - 600)  # the heartbeat moves the data clock

            def between() -> int:
                return rng.randint(prev, clock - 1)  # noqa: B023

            for _ in range(rng.randint(0, 4)):  # new orders
                if rng.random() < 0.2:
                    _no_ecs_order(p, next_order, between())
                    no_ecs.add(next_order)
                    walk.note(f"order {next_order} without ecs")
                else:
                    p.src.touch(next_order, between())
                next_order += 1
            known = sorted(p.src.known - {1})
            for o in rng.sample(known, min(len(known), rng.randint(0, 5))):  # status changes
                if o in walk.held:
                    continue  # a held order stays put until it is released
                p.src.touch(o, between(), code=rng.choice((200, 300, 400)))
            if no_ecs and rng.random() < 0.3:  # an ecs record arrives late
                o = rng.choice(sorted(no_ecs))
                no_ecs.discard(o)
                p.src.con.execute(
                    "INSERT INTO ecs_order_info (order_id, add_time, partner_id) VALUES (?, ?, 9)",
                    (o, between()),
                )
                walk.note(f"late ecs for {o}")
            if rng.random() < 0.1:
                p.src.null_rows(between())
            if variant == "orphans" and rng.random() < 0.3:  # an ecs row, its order never comes
                orphan = 100_000 + c
                p.src.con.execute(
                    "INSERT INTO ecs_order_info (order_id, add_time, partner_id) VALUES (?, ?, 9)",
                    (orphan, between()),
                )
                walk.note(f"orphan ecs {orphan}")
            reread = False
            movable = [k for k in known if k not in walk.held]
            if movable and rng.random() < 0.25:
                # a corrected update_time below the watermark: only a full re-read sees it
                o = rng.choice(movable)
                (old,) = p.src.con.execute(
                    "SELECT update_time FROM uni_tracking_info WHERE order_id = ?", (o,)
                ).fetchone()
                new = rng.randint(old, max(old, clock - 40 * DAY))
                p.src.con.execute(
                    "UPDATE uni_tracking_info SET update_time = ? WHERE order_id = ?", (new, o)
                )
                _reset(p, "uni_tracking_info")
                reread = True
                walk.note(f"order {o} corrected {(old - T0) / DAY:.1f}→{(new - T0) / DAY:.1f}d")
            if rng.random() < 0.05:
                _reset(p, "ecs_order_info")
                walk.note("ecs re-read")
            if c > 3 and rng.random() < 0.05:
                _replay(p, "uni_tracking_spath", rng.randint(1, 3))
                walk.note("spath replayed")
            p.src.clock(clock)
            if plant and c > 3:
                _plant(p, walk, rng, stale_ok=not reread)
            walk.note(f"cycle {c} at day {(clock - T0) / DAY:.1f}")
            _cycle(p, walk, rng, monkeypatch)
            try:
                if plant:
                    assert_state_held(p, walk.held)
                else:
                    assert_invariants(p)
            except AssertionError as e:
                raise AssertionError(f"{walk.where()}\n{e}") from e
        periods = {h[-7:] for h in p.hist_tables("uti")}
        assert len(periods) >= 3, f"the walk should span three half-years: {periods}"
        return walk
    finally:
        faults.reset()
        p.close()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_walk_equals_the_oracle_after_every_cycle_duckdb(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    walk = run_walk(tmp_path, DuckDBWarehouse(path=tmp_path / "wh.duckdb"), seed, monkeypatch)
    assert walk.kills >= 5, walk.where()
    assert walk.planted >= 3 and walk.resolved >= 1, walk.where()


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["report", "orphans"])
def test_random_walk_report_mode_and_orphans_keep_the_invariants(
    tmp_path: Path, variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    walk = run_walk(
        tmp_path, DuckDBWarehouse(path=tmp_path / "wh.duckdb"), 7, monkeypatch, variant=variant
    )
    assert walk.kills >= 5, walk.where()


@pytest.mark.servers
@pytest.mark.slow
@pytest.mark.parametrize("engine", ["postgres", "redshift-compat"])
def test_random_walk_equals_the_oracle_after_every_cycle_servers(
    tmp_path: Path, pg_db: PgDb, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same walk on PostgreSQL, and through the Redshift adapter in compat mode (its marts
    share no insert path with PostgreSQL's upsert)."""
    wh_cfg = (
        pg_db.warehouse_config()
        if engine == "postgres"
        else RedshiftWarehouse(**pg_db.redshift_compat())
    )
    walk = run_walk(tmp_path, wh_cfg, 5, monkeypatch)  # type: ignore[arg-type]
    assert walk.kills >= 5, walk.where()
    assert walk.planted >= 3 and walk.resolved >= 1, walk.where()
