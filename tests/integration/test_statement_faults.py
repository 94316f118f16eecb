"""G3 at every warehouse statement: kill a command after its N-th statement, for every N.

The named kill points (TRACKLINE_FAIL_AT) sit where a developer thought a crash matters; a
transaction split in two by mistake (data committed, then the watermark in a second
transaction) has no named point between its two COMMITs, and no kill there. Here
TRACKLINE_FAIL_AT_STATEMENT=N stops the process right after its N-th warehouse statement
(BEGIN and COMMIT count), so a sweep over N kills a command between two statements it sends,
right after each COMMIT included.

Which N: every N of the short commands; for the long ones, every N after which the warehouse
can be in a state of its own (`durable_points`: after each COMMIT and each write outside a
transaction). A kill inside a transaction is rolled back to the state the COMMIT before it
left, so those add nothing the durable points miss but time (TRACKLINE_TEST_SWEEP=every runs
them all). PostgreSQL and the Redshift adapter sweep a fifth of the durable points each.

One world: a SQLite order-tracking source with a deterministic clock (so two runs compute the
same upper bounds and watermarks) and six tables, one per CDC strategy and write mode
(hybrid append → marts with archiving, timestamp merge, id append, full replace). A reference
warehouse runs a script of commands uninterrupted: sync, cycle, replay, reconcile --apply,
check, reset, cycle, then the side jobs: two syncs of dimensions (an scd2 table with a changed,
an ignored, a deleted and a new member; a replace table) and two consolidations (two inputs,
a rewritten event). Before each command its state is copied (a DuckDB file; a PostgreSQL
database made from it as a template); for each chosen N the copy runs the command killed after
statement N, then runs it again, and must then hold exactly what the reference holds: every
raw table, mart, history period, view and exception, the watermarks, the batch ledger and
the mart progress (wall-clock columns, run ids and staged-file paths aside).

The kill is in-process by default: the fault is raised and from then on every warehouse
statement of the process fails too (a killed process sends none; only a rollback runs, as
the server does for a dropped connection), so no cleanup can write what a crash would not.
`test_hard_kill_at_statements_in_a_subprocess` checks that model against a real death
(os._exit) at a sample of statements.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import PgDb
from tests.integration.marts_helpers import ECS, UTI, UTS, Source, config_dict, day, write_config
from tests.integration.synctools import run_faulted
from trackline import faults
from trackline.config import Config, DuckDBWarehouse, PostgresWarehouse, RedshiftWarehouse
from trackline.consolidate import consolidate
from trackline.errors import InjectedFault
from trackline.jobs.reconcile import reconcile
from trackline.load import Warehouse, open_warehouse
from trackline.marts.cycle import run_cycle
from trackline.quality import run as run_module
from trackline.quality.run import run_checks
from trackline.status import replay_table, reset_table
from trackline.sync import BATCH_COL, resolve, sync

WarehouseCfg = DuckDBWarehouse | PostgresWarehouse | RedshiftWarehouse

VOLATILE = frozenset(
    {
        # wall-clock times and durations: two honest runs differ in them
        "updated_at",
        "loaded_at",
        "applied_at",
        "started_at",
        "finished_at",
        "checked_at",
        "first_seen",
        "last_seen",
        "resolved_at",
        "seconds",
        "processed_at",  # a consolidation's merge stamps the staging rows it moved
        # random per run, or paths in each world's own stage folder
        "run_id",
        "files",
        "manifest",
        # A check killed after it recorded a failure, then rerun, finds the failure already
        # open: its alert counts it as not new, so that alert is never sent (at most once).
        # test_check_killed_after_recording_a_failure_still_alerts_it pins that gap.
        "new_count",
    }
)
LOGS = frozenset({"runs", "locks"})
"""Tables that log attempts rather than hold state: a killed attempt may leave its line. (A
Redshift lock row of a killed holder stays until the next run that takes the same lock
takes it over; test_redshift_compat.py tests that takeover.)"""


# --------------------------------------------------------------------------- the source


def _extra_tables(con: sqlite3.Connection) -> None:
    con.executescript(
        """
        CREATE TABLE parcels (id INTEGER PRIMARY KEY, update_time INTEGER NOT NULL,
                              weight INTEGER, state TEXT);
        CREATE TABLE scans (id INTEGER PRIMARY KEY, order_id INTEGER, code INTEGER);
        CREATE TABLE partners (id INTEGER PRIMARY KEY, name TEXT, tier INTEGER);
        CREATE TABLE staff (id INTEGER PRIMARY KEY, name TEXT, site TEXT, last_login INTEGER);
        CREATE TABLE carriers (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE scan_events (id INTEGER PRIMARY KEY, order_id INTEGER, code INTEGER,
                                  t INTEGER NOT NULL);
        CREATE TABLE addon_events (id INTEGER PRIMARY KEY, order_id INTEGER, code INTEGER,
                                   t INTEGER NOT NULL);
        """
    )


EXTRA_TABLES: list[dict[str, Any]] = [
    {
        "name": "parcels",
        "target_schema": "raw",
        "write_mode": "merge",
        "batch_size": 3,
        "cdc": {"strategy": "timestamp", "cursor": "update_time"},
    },
    {
        "name": "scans",
        "target_schema": "raw",
        "batch_size": 4,
        "cdc": {"strategy": "id", "id": "id"},
    },
    {"name": "partners", "target_schema": "raw", "cdc": {"strategy": "full"}},
    {
        "name": "staff",
        "target_schema": "raw",
        "batch_size": 2,
        "cdc": {"strategy": "full"},
        "write_mode": "scd2",
        "scd2": {"natural_key": ["id"], "ignored_columns": ["last_login"]},
    },
    {
        "name": "carriers",
        "target_schema": "raw",
        "batch_size": 2,
        "cdc": {"strategy": "full"},
        "write_mode": "replace",
    },
]

CONSOLIDATION: dict[str, Any] = {
    "name": "scan_detail",
    "target_table": "scan_detail",
    "target_schema": "raw",
    "key": ["source_kind", "id"],
    "inputs": [
        {
            "name": "scans",
            "table": "scan_events",
            "constants": {"source_kind": "scan"},
            "batch_size": 2,
            "lag_seconds": 0,
            "cdc": {"cursor": "t", "id": "id"},
        },
        {
            "name": "addons",
            "table": "addon_events",
            "constants": {"source_kind": "addon"},
            "batch_size": 2,
            "lag_seconds": 0,
            "cdc": {"cursor": "t", "id": "id"},
        },
    ],
}
"""Two inputs merged into one target by key (a SQLite `query:` reads every column as
text, so both are tables here; the joins are tested in test_consolidate.py)."""


def _round_1(src: Source) -> None:
    """Ten days of orders (two batches per table), parcels, scans, partners."""
    for o in range(1, 7):
        src.touch(o, day(o), code=100 + o)
        src.touch(o, day(o + 2), code=200 + o)
    src.null_rows(day(3))
    c = src.con
    c.executemany(
        "INSERT INTO parcels (id, update_time, weight, state) VALUES (?, ?, ?, 'new')",
        [(i, day(i) + 60, 10 * i) for i in range(1, 8)],
    )
    c.executemany(
        "INSERT INTO scans (id, order_id, code) VALUES (?, ?, ?)",
        [(i, i % 5 + 1, i) for i in range(1, 10)],
    )
    c.executemany(
        "INSERT INTO partners (id, name, tier) VALUES (?, ?, ?)",
        [(1, "north", 1), (2, "south", 2), (3, "east", 1)],
    )
    src.clock(day(11))


def _round_2(src: Source) -> None:
    """Seven weeks later: orders 1-3 go quiet past the retention (archived), 4-6 move on,
    new orders arrive, one archived order comes back (reactivation)."""
    for o in (4, 5, 6):
        src.touch(o, day(20 + o), code=300 + o)
        src.touch(o, day(45 + o), code=400 + o)
    for o in range(7, 10):
        src.touch(o, day(40 + o), code=500 + o)
    src.touch(2, day(55), code=600)  # archived at day 50, back now
    c = src.con
    c.execute("UPDATE parcels SET update_time = ?, state = 'moved' WHERE id IN (2, 5)", (day(30),))
    c.executemany(
        "INSERT INTO parcels (id, update_time, weight, state) VALUES (?, ?, ?, 'new')",
        [(i, day(30) + i, 10 * i) for i in range(8, 11)],
    )
    c.executemany(
        "INSERT INTO scans (id, order_id, code) VALUES (?, ?, ?)",
        [(i, i % 5 + 1, i) for i in range(10, 15)],
    )
    c.execute("UPDATE partners SET tier = 3 WHERE id = 2")
    c.execute("INSERT INTO partners (id, name, tier) VALUES (4, 'west', 2)")
    src.clock(day(60))


def _delete_parcels(src: Source) -> None:
    """Hard deletes that timestamp CDC cannot see: reconcile --apply removes them."""
    src.con.execute("DELETE FROM parcels WHERE id IN (3, 9)")
    src.clock(day(60))


def _more_scans(src: Source) -> None:
    src.con.executemany(
        "INSERT INTO scans (id, order_id, code) VALUES (?, ?, ?)",
        [(i, i % 5 + 1, i) for i in range(15, 18)],
    )
    src.touch(7, day(58), code=700)
    src.clock(day(61))


def _dims_round_1(src: Source) -> None:
    c = src.con
    c.executemany(
        "INSERT INTO staff (id, name, site, last_login) VALUES (?, ?, ?, ?)",
        [(i, f"s{i}", "north" if i % 2 else "south", i) for i in range(1, 6)],
    )
    c.executemany("INSERT INTO carriers (id, name) VALUES (?, ?)", [(1, "sf"), (2, "yt")])
    src.clock(day(62))


def _dims_round_2(src: Source) -> None:
    """A changed member, an ignored change, a deleted one, a new one; carriers replaced."""
    c = src.con
    c.execute("UPDATE staff SET site = 'east' WHERE id = 1")
    c.execute("UPDATE staff SET last_login = 99 WHERE id = 2")  # ignored: no new version
    c.execute("DELETE FROM staff WHERE id = 3")
    c.execute("INSERT INTO staff (id, name, site, last_login) VALUES (6, 's6', 'west', 6)")
    c.execute("DELETE FROM carriers WHERE id = 1")
    c.executemany("INSERT INTO carriers (id, name) VALUES (?, ?)", [(3, "zt"), (4, "jd")])
    src.clock(day(63))


def _events_round_1(src: Source) -> None:
    c = src.con
    c.executemany(
        "INSERT INTO scan_events (id, order_id, code, t) VALUES (?, ?, ?, ?)",
        [(i, i % 4 + 4, i, day(60) + i) for i in range(1, 6)],
    )
    c.executemany(
        "INSERT INTO addon_events (id, order_id, code, t) VALUES (?, ?, ?, ?)",
        [(i, i % 3 + 4, 100 + i, day(60) + i) for i in range(1, 5)],
    )
    src.clock(day(64))


def _events_round_2(src: Source) -> None:
    """New events, and a rewritten one (same key, later time): the newest wins."""
    c = src.con
    c.executemany(
        "INSERT INTO scan_events (id, order_id, code, t) VALUES (?, ?, ?, ?)",
        [(i, i % 4 + 4, i, day(64) + i) for i in range(6, 9)],
    )
    c.execute("UPDATE addon_events SET code = 999, t = ? WHERE id = 2", (day(64) + 30,))
    src.clock(day(65))


# --------------------------------------------------------------------------- the commands


def _sync(cfg: Config) -> None:
    bad = [(r.table, r.error) for r in sync(cfg) if r.status != "ok"]
    assert not bad, bad


def _cycle(cfg: Config) -> None:
    s = run_cycle(cfg)
    assert s.ok, s.as_dict()


@contextlib.contextmanager
def _opened(cfg: Config) -> Iterator[Warehouse]:
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        yield wh
    finally:
        wh.close()


def _reconcile(cfg: Config) -> None:
    with _opened(cfg) as wh:
        res = reconcile(cfg, wh, "parcels", apply=True)
    assert res.missing_count == 0, res.as_dict()


def _check(cfg: Config) -> None:
    with _opened(cfg) as wh:
        report = run_checks(cfg, wh, send_alerts=False)
    assert report.results


def _replay_merge(cfg: Config) -> None:
    assert replay_table(cfg, "parcels")[0] > 1


def _replay_append(cfg: Config) -> None:
    assert replay_table(cfg, "scans", from_batch=2)[0] > 1


def _reset(cfg: Config) -> None:
    reset_table(cfg, "scans")


def _consolidate(cfg: Config) -> None:
    with _opened(cfg) as wh:
        results = consolidate(cfg, wh)
    assert all(r.ok for r in results), [r.error for r in results]


Command = Callable[[Config], None]


@dataclass(frozen=True)
class Step:
    name: str
    command: Command
    before: Callable[[Source], None] | None = None
    tables: tuple[str, ...] | None = None
    """The config's tables this command runs with (None: all)."""


MARTS = ("uni_tracking_info", "ecs_order_info", "uni_tracking_spath")
ONE_OF_EACH = ("uni_tracking_info", "parcels", "scans", "partners")
DIMS = ("staff", "carriers")


SCRIPT = [
    Step("sync", _sync, _round_1, ONE_OF_EACH),
    Step("cycle", _cycle, _round_2, MARTS),
    Step("replay-merge", _replay_merge),
    Step("replay-append", _replay_append),
    Step("reconcile-apply", _reconcile, _delete_parcels),
    Step("check", _check),
    Step("reset", _reset),
    Step("cycle-after-reset", _cycle, _more_scans, MARTS),
    Step("dims-first", _sync, _dims_round_1, DIMS),
    Step("dims-changes", _sync, _dims_round_2, DIMS),
    Step("consolidate-first", _consolidate, _events_round_1),
    Step("consolidate-more", _consolidate, _events_round_2),
]


# --------------------------------------------------------------------------- copies of a world


@dataclass
class Worlds:
    """Warehouses of one engine that can be copied: DuckDB files, or PostgreSQL databases
    made from another as a template (the Redshift adapter in compat mode runs on those)."""

    engine: str
    tmp: Path
    src: Source
    pg: PgDb | None = None
    made: set[str] = field(default_factory=set)
    variant: Callable[[dict[str, Any]], None] | None = None
    """Changes the config data of every world (the follow script's strategies)."""

    def warehouse(self, name: str) -> WarehouseCfg:
        if self.engine == "duckdb":
            return DuckDBWarehouse(path=self.tmp / f"{name}.duckdb")
        assert self.pg is not None
        db = f"{self.pg.database}_{name}"
        if self.engine == "postgres":
            return self.pg.warehouse_config(database=db)
        return RedshiftWarehouse(**self.pg.redshift_compat(database=db))

    def data(self, name: str, tables: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The config of world `name` as YAML data, with `tables` only (None: all)."""
        data = config_dict(self.src.path, self.warehouse(name), self.tmp / f"stage_{name}")  # type: ignore[arg-type]
        data["tables"] += EXTRA_TABLES
        data["consolidations"] = [CONSOLIDATION]
        # one table after the other: the statements of a command come in one order, so the
        # n-th is the same statement in every run (test_cycle_workers kills parallel syncs)
        data["defaults"]["workers"] = 1
        if self.variant is not None:
            self.variant(data)
        if tables is not None:
            data["tables"] = [t for t in data["tables"] if t["name"] in tables]
            if not set(MARTS) <= set(tables):
                data["marts"] = []  # a sync-only config
        return data

    def config(self, name: str, tables: tuple[str, ...] | None = None) -> Config:
        return Config.model_validate(self.data(name, tables))

    @contextlib.contextmanager
    def _admin(self) -> Iterator[psycopg.Connection[Any]]:
        assert self.pg is not None
        with psycopg.connect(self.pg.dsn, autocommit=True) as con:
            yield con

    def create(self, name: str) -> None:
        self.drop(name)
        if self.engine == "duckdb":
            import duckdb

            duckdb.connect(str(self.tmp / f"{name}.duckdb")).close()
        else:
            with self._admin() as con:
                con.execute(f'CREATE DATABASE "{self.pg.database}_{name}"')  # type: ignore[union-attr]
        self.made.add(name)

    def copy(self, source: str, target: str) -> None:
        self.drop(target)
        if self.engine == "duckdb":
            shutil.copyfile(self.tmp / f"{source}.duckdb", self.tmp / f"{target}.duckdb")
        else:
            assert self.pg is not None
            with self._admin() as con:
                con.execute(
                    f'CREATE DATABASE "{self.pg.database}_{target}" '
                    f'TEMPLATE "{self.pg.database}_{source}"'
                )
        self.made.add(target)

    def drop(self, name: str) -> None:
        if self.engine == "duckdb":
            for suffix in (".duckdb", ".duckdb.wal"):
                (self.tmp / f"{name}{suffix}").unlink(missing_ok=True)
        elif name in self.made:
            with self._admin() as con:
                con.execute(f'DROP DATABASE IF EXISTS "{self.pg.database}_{name}" WITH (FORCE)')  # type: ignore[union-attr]
        self.made.discard(name)

    def close(self) -> None:
        for name in list(self.made):
            self.drop(name)


def snapshot(cfg: Config) -> dict[str, list[tuple[Any, ...]]]:
    """Every table and view of the raw, mart and state schemas, rows sorted (columns that
    hold wall-clock times, run ids or stage paths left out; the run log left out). Check
    results are a history: only the last check run's rows count.

    A `timestamp` table re-reads its boundary second on every run (its merge target absorbs
    it), and a `full` table is read whole on every run: a rerun cuts their batches elsewhere
    than one uninterrupted run (a rerun after a kill past the last commit reads once more).
    For them the target's rows and the cursor must be equal, not which batch brought a row."""
    rereads = {
        resolve(cfg, t, None, None).key
        for t in cfg.tables
        if t.cdc.strategy in ("timestamp", "full")
    }
    schemas = sorted({t.target_schema for t in cfg.tables} | {g.schema_ for g in cfg.marts})
    out: dict[str, list[tuple[Any, ...]]] = {}
    with _opened(cfg) as wh:
        marks = ", ".join("?" for _ in [*schemas, cfg.state_schema])
        catalog: dict[tuple[str, str], list[str]] = {}
        for schema, name, col in wh.query(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            f"WHERE table_schema IN ({marks}) ORDER BY table_schema, table_name, "
            "ordinal_position",
            (*schemas, cfg.state_schema),
        ):
            catalog.setdefault((schema, name), []).append(col)
        for (schema, name), columns in catalog.items():
            key = f"{schema}.{name}"
            if schema == cfg.state_schema and name in LOGS:
                continue
            cols = [c for c in columns if c not in VOLATILE]
            if key in rereads:
                cols.remove(BATCH_COL)
            sql = f"SELECT {wh.cols(cols)} FROM {wh.t(schema, name)}"
            params: tuple[Any, ...] = ()
            if name == "check_results":  # the latest run's (no LIMIT in a subquery: Redshift)
                latest = wh.query(
                    f"SELECT run_id FROM {wh.t(schema, name)} ORDER BY checked_at DESC LIMIT 1"
                )
                sql += " WHERE run_id = ?"
                params = (latest[0][0] if latest else None,)
            rows = [dict(zip(cols, map(_plain, r), strict=True)) for r in wh.query(sql, params)]
            if schema == cfg.state_schema and name == "batches":
                rows = [r for r in rows if r["table_key"] not in rereads]
            if schema == cfg.state_schema and name == "watermarks":
                rows = [_cursor_only(r) if r["table_key"] in rereads else r for r in rows]
            out[key] = sorted((tuple(r.items()) for r in rows), key=repr)
    return out


def _cursor_only(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k in ("table_key", "strategy", "value")}


def _plain(v: Any) -> Any:
    return bytes(v) if isinstance(v, memoryview) else v


def diff(a: dict[str, list[tuple[Any, ...]]], b: dict[str, list[tuple[Any, ...]]]) -> str:
    """A short account of where two snapshots differ (for the assertion message)."""
    lines = [f"only in one: {sorted(set(a) ^ set(b))}"] if set(a) ^ set(b) else []
    for k in sorted(set(a) & set(b)):
        if a[k] != b[k]:
            extra = [r for r in a[k] if r not in b[k]][:3]
            lost = [r for r in b[k] if r not in a[k]][:3]
            lines.append(f"{k}: {len(a[k])} rows vs {len(b[k])}; extra {extra}; missing {lost}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the sweep


def killed_at(n: int, command: Command, cfg: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run `command` until it dies after warehouse statement `n`."""
    faults.reset()
    monkeypatch.setenv("TRACKLINE_FAIL_AT_STATEMENT", str(n))
    try:
        with pytest.raises(InjectedFault):
            command(cfg)
        assert faults.statements() == n  # and not one statement after it
    finally:
        monkeypatch.delenv("TRACKLINE_FAIL_AT_STATEMENT")
        faults.reset()


@dataclass(frozen=True)
class Statement:
    n: int
    verb: str
    """The statement's first keyword: SELECT, INSERT, …, BEGIN, COMMIT."""
    in_transaction: bool
    """Whether a transaction is still open after it (else it is durable once it ran)."""


def traced(command: Command, cfg: Config) -> list[Statement]:
    """Run `command` uninterrupted; the statements it sent, in order."""
    log: list[Statement] = []
    plain = {m: getattr(Warehouse, m) for m in ("execute", "execute_count", "query", "query_arrow")}
    transaction = Warehouse.transaction

    def wrap(method: str) -> Callable[..., Any]:
        def run(self: Warehouse, sql: str, *args: Any) -> Any:
            out = plain[method](self, sql, *args)
            verb = sql.lstrip().split(None, 1)[0].upper()
            log.append(Statement(faults.statements(), verb, self.in_transaction))
            return out

        return run

    @contextlib.contextmanager
    def tx(self: Warehouse) -> Iterator[None]:
        outer = not self.in_transaction
        with transaction(self):
            if outer:
                log.append(Statement(faults.statements(), "BEGIN", True))
            yield
        if outer:
            log.append(Statement(faults.statements(), "COMMIT", False))

    faults.reset()
    with pytest.MonkeyPatch.context() as mp:
        for method in plain:
            mp.setattr(Warehouse, method, wrap(method))
        mp.setattr(Warehouse, "transaction", tx)
        command(cfg)
    assert [s.n for s in log] == list(range(1, faults.statements() + 1))
    faults.reset()
    return log


def durable_points(trace: list[Statement]) -> list[int]:
    """The kills after which the warehouse can be in different states: right after each
    COMMIT and each write outside a transaction. A kill anywhere inside a transaction is
    rolled back to what the durable statement before it left, and one after a read outside a
    transaction leaves the same; those kills differ only outside the warehouse (a staged file
    written, not yet loaded), which the named kill points of test_sync_faults.py cover."""
    return [
        s.n
        for s in trace
        if s.verb == "COMMIT" or (not s.in_transaction and s.verb not in ("SELECT", "WITH", "SHOW"))
    ]


EVERY_N_UP_TO = 30
"""Commands with at most this many statements are killed after every one of them."""


def every_or_durable(_step: str, trace: list[Statement]) -> list[int]:
    """Every N of a short command, the durable points of a long one; every N of every command
    with TRACKLINE_TEST_SWEEP=every (about ten times longer)."""
    if len(trace) <= EVERY_N_UP_TO or os.environ.get("TRACKLINE_TEST_SWEEP") == "every":
        return [s.n for s in trace]
    return durable_points(trace)


def sweep(
    worlds: Worlds,
    monkeypatch: pytest.MonkeyPatch,
    pick: Callable[[str, list[Statement]], list[int]],
    script: list[Step] | None = None,
) -> dict[str, tuple[int, int]]:
    """Run SCRIPT in the reference world; before each step, copy it; kill the copy after each
    statement N that `pick(step, statements)` chooses, rerun, compare. Returns step →
    (statements, kills)."""
    worlds.create("ref")
    done: dict[str, tuple[int, int]] = {}
    failures: list[str] = []
    for step in SCRIPT if script is None else script:
        if step.before:
            step.before(worlds.src)
        worlds.copy("ref", "before")
        ref = worlds.config("ref", step.tables)
        trace = traced(step.command, ref)
        total = len(trace)
        expected = snapshot(worlds.config("ref"))
        chosen = pick(step.name, trace)
        for n in chosen:
            worlds.copy("before", "a")
            a = worlds.config("a", step.tables)
            killed_at(n, step.command, a, monkeypatch)
            step.command(a)
            got = snapshot(worlds.config("a"))
            if got != expected:
                failures.append(
                    f"{step.name} killed after statement {n} of {total} "
                    f"({trace[n - 1].verb}), then rerun:\n" + diff(got, expected)
                )
        done[step.name] = (total, len(chosen))
    assert not failures, "\n".join(failures[:8])
    return done


@pytest.fixture(
    params=[
        pytest.param("duckdb", id="duckdb"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.servers),
        pytest.param("redshift", id="redshift-compat", marks=pytest.mark.servers),
    ]
)
def worlds(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Worlds]:
    # In memory where the machine offers it: the sweep commits DuckDB files some thousand
    # times, and a disk's fsync would be most of its time (same engine, same files).
    shm = Path("/dev/shm")
    home = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path
    src = Source(home / "src.db")
    _extra_tables(src.con)
    pg = request.getfixturevalue("pg_db") if request.param != "duckdb" else None
    w = Worlds(request.param, home, src, pg)
    try:
        yield w
    finally:
        faults.reset()
        w.close()
        src.close()
        if home != tmp_path:
            shutil.rmtree(home, ignore_errors=True)


SERVER_STRIDE = 5
"""PostgreSQL and the Redshift adapter: every fifth durable point (a database copied from a
template costs more than a file copy), a different fifth for each."""


@pytest.mark.slow
def test_kill_after_every_statement_of_every_command(
    worlds: Worlds, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command of the script, killed after each of its statements that can leave a
    different warehouse state (DuckDB: all of them, and every statement of the short
    commands; the servers: a sample), then rerun, ends as the uninterrupted run."""
    done = sweep(worlds, monkeypatch, engine_pick(worlds.engine))
    assert all(kills for _, kills in done.values()), done
    assert done["sync"][0] > 100 and done["cycle"][0] > 100, done  # a real run, not a stub


def engine_pick(engine: str) -> Callable[[str, list[Statement]], list[int]]:
    """DuckDB: `every_or_durable`; the servers: every SERVER_STRIDE-th durable point."""
    if engine == "duckdb":
        return every_or_durable
    offset = 0 if engine == "postgres" else 2

    def pick(_step: str, trace: list[Statement]) -> list[int]:
        points = durable_points(trace)
        return points[offset::SERVER_STRIDE] or points[-1:]

    return pick


def after_first_load(engine: str) -> Callable[[str, list[Statement]], list[int]]:
    """`engine_pick`, except for a script's first step: its first load is the shape the
    main script's sync and cycle are swept in already; it only sets the world up."""
    pick = engine_pick(engine)

    def chosen(step: str, trace: list[Statement]) -> list[int]:
        return [] if step.endswith("-first") else pick(step, trace)

    return chosen


# ----------------------------------------------------------- the follow strategies' cycles


def _follow_variant(data: dict[str, Any]) -> None:
    """ecs_order_info re-read by order for every order uni_tracking_info changed (`follow`),
    and uni_tracking_spath's events of those orders re-read and replaced (`changes: follow`)."""
    follow = {"strategy": "follow", "follow": "uni_tracking_info", "follow_key": "order_id"}
    for t in data["tables"]:
        if t["name"] in ("ecs_order_info", "uni_tracking_spath"):
            t["cdc"] = {**t["cdc"], **follow}
    for f in data["marts"][0]["followers"]:
        if f["source"] == "uni_tracking_spath":
            f["changes"] = "follow"


def _follow_round_1(src: Source) -> None:
    """Indexes for the re-reads by order; six orders, a first load."""
    src.con.executescript(
        """
        CREATE INDEX ix_ecs_order ON ecs_order_info (order_id);
        CREATE INDEX ix_spath_order ON uni_tracking_spath (order_id);
        """
    )
    for o in range(1, 7):
        src.touch(o, day(o), code=100 + o)
    src.clock(day(7))


def _follow_round_2(src: Source) -> None:
    """The first follow pass: orders 2-4 move; 2's and 3's ecs rows change in place (no
    time of their own moves), 3's first event is rewritten, 4's deleted; 5's ecs row changes
    without its order moving (not followed yet); a new order."""
    c = src.con
    for o in (2, 3, 4):
        src.touch(o, day(8 + o), code=200 + o)
    c.execute("UPDATE ecs_order_info SET partner_id = 900 + order_id WHERE order_id IN (2, 3, 5)")
    c.execute("UPDATE uni_tracking_spath SET code = 777 WHERE order_id = 3 AND traceSeq = 1")
    c.execute("DELETE FROM uni_tracking_spath WHERE order_id = 4 AND traceSeq = 1")
    src.touch(7, day(12), code=107)
    src.clock(day(13))


def _follow_round_3(src: Source) -> None:
    """Seven weeks on: the quiet orders are archived; 5 moves (its ecs change of round 2
    followed now), archived order 1 comes back with a changed ecs row and a rewritten event."""
    c = src.con
    src.touch(5, day(55), code=305)
    c.execute("UPDATE ecs_order_info SET partner_id = 901 WHERE order_id = 1")
    c.execute("UPDATE uni_tracking_spath SET code = 778 WHERE order_id = 1 AND traceSeq = 1")
    src.touch(1, day(56), code=301)
    src.touch(8, day(56), code=108)
    src.clock(day(57))


FOLLOW_SCRIPT = [
    Step("follow-first", _cycle, _follow_round_1, MARTS),
    Step("follow-pass", _cycle, _follow_round_2, MARTS),
    Step("follow-archived", _cycle, _follow_round_3, MARTS),
]


def _newest_variant(data: dict[str, Any]) -> None:
    """ecs_order_info followed as above; uni_tracking_spath read by its modified time and
    its events upserted by event key, the newest version winning (`changes: newest`)."""
    follow = {"strategy": "follow", "follow": "uni_tracking_info", "follow_key": "order_id"}
    for t in data["tables"]:
        if t["name"] == "ecs_order_info":
            t["cdc"] = {**t["cdc"], **follow}
        if t["name"] == "uni_tracking_spath":
            t["cdc"] = {**t["cdc"], "cursor": "time_modified"}
    for f in data["marts"][0]["followers"]:
        if f["source"] == "uni_tracking_spath":
            f |= {"changes": "newest", "version": "time_modified"}


REWRITE = (
    "UPDATE uni_tracking_spath SET code = ?, time_modified = ? WHERE order_id = ? AND traceSeq = 1"
)


def _newest_round_1(src: Source) -> None:
    """A modified time on the events (set to the event's time when it is written), the
    index for ecs's re-read; six orders."""
    src.con.executescript(
        """
        CREATE INDEX ix_ecs_order ON ecs_order_info (order_id);
        ALTER TABLE uni_tracking_spath ADD COLUMN time_modified INTEGER NOT NULL DEFAULT 0;
        CREATE TRIGGER spath_modified AFTER INSERT ON uni_tracking_spath BEGIN
          UPDATE uni_tracking_spath SET time_modified = NEW.pathTime WHERE id = NEW.id;
        END;
        """
    )
    for o in range(1, 7):
        src.touch(o, day(o), code=100 + o)
    src.clock(day(7))


def _newest_round_2(src: Source) -> None:
    """Events rewritten in place: 3's first twice (the newest wins), 5's without its order
    moving; orders 2-4 move, 2's ecs row changes; a new order."""
    c = src.con
    for o in (2, 3, 4):
        src.touch(o, day(8 + o), code=200 + o)
    c.execute("UPDATE ecs_order_info SET partner_id = 902 WHERE order_id = 2")
    c.execute(REWRITE, (776, day(12), 3))
    c.execute(REWRITE, (777, day(12) + 60, 3))
    c.execute(REWRITE, (775, day(12), 5))
    src.touch(7, day(12), code=107)
    src.clock(day(13))


def _newest_round_3(src: Source) -> None:
    """Seven weeks on: the quiet orders are archived; an archived order's event is rewritten
    without the order coming back (the history holds the new version), and archived order 1
    comes back with a rewritten event and a changed ecs row."""
    c = src.con
    c.execute(REWRITE, (779, day(54), 4))
    c.execute(REWRITE, (778, day(55), 1))
    c.execute("UPDATE ecs_order_info SET partner_id = 901 WHERE order_id = 1")
    src.touch(1, day(56), code=301)
    src.touch(8, day(56), code=108)
    src.clock(day(57))


NEWEST_SCRIPT = [
    Step("newest-first", _cycle, _newest_round_1, MARTS),
    Step("newest-pass", _cycle, _newest_round_2, MARTS),
    Step("newest-archived", _cycle, _newest_round_3, MARTS),
]


@pytest.mark.slow
def test_kill_after_every_statement_of_follow_cycles(
    worlds: Worlds, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cycles of the `follow` strategies (a one_per_key follower re-read by key, an
    events follower whose orders' events are re-read and replaced, rows changed in place,
    an event deleted, an archived order back with changes), killed after each statement
    that can leave a different state (DuckDB; a sample on the servers), then rerun, end as
    the uninterrupted cycles."""
    worlds.variant = _follow_variant
    done = sweep(worlds, monkeypatch, after_first_load(worlds.engine), FOLLOW_SCRIPT)
    assert all(kills for step, (_, kills) in done.items() if step != FOLLOW_SCRIPT[0].name), done
    assert done["follow-pass"][0] > 100, done  # a real cycle, not a stub
    ecs, events = _held(worlds)
    # the uninterrupted cycles did follow: the changes in place reached the marts, and the
    # history where the order was archived since (orders 2-4; order 1 came back)
    assert {o: ecs.get(o) for o in (1, 2, 3, 5)} == {1: 901, 2: 902, 3: 903, 5: 905}, ecs
    assert (3, 1, 777) in events and (1, 1, 778) in events, events
    assert not [e for e in events if e[:2] == (4, 1)], events  # deleted in the source


@pytest.mark.slow
def test_kill_after_every_statement_of_newest_event_cycles(
    worlds: Worlds, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for events read by their modified time and upserted by event key
    (`changes: newest`): an event rewritten twice between cycles, one rewritten without its
    order moving, one of an archived order, one of an order that comes back."""
    worlds.variant = _newest_variant
    done = sweep(worlds, monkeypatch, after_first_load(worlds.engine), NEWEST_SCRIPT)
    assert all(kills for step, (_, kills) in done.items() if step != NEWEST_SCRIPT[0].name), done
    assert done["newest-pass"][0] > 100, done  # a real cycle, not a stub
    ecs, events = _held(worlds)
    assert {o: ecs.get(o) for o in (1, 2)} == {1: 901, 2: 902}, ecs
    for event in ((3, 1, 777), (5, 1, 775), (4, 1, 779), (1, 1, 778)):
        assert event in events, (event, events)
    # one version per event: no key twice across the mart and its history
    assert len({e[:2] for e in events}) == len(events), events


def _drift_round_1(src: Source) -> None:
    """Six orders; seven weeks on, 1-3 have gone quiet (archived into history periods)."""
    for o in range(1, 7):
        src.touch(o, day(o), code=100 + o)
    for o in (4, 5, 6):
        src.touch(o, day(44 + o), code=200 + o)
    src.clock(day(51))


def _drift_round_2(src: Source) -> None:
    """A column appears in each of the three source tables once the marts and history
    periods exist; rows carry values in it, an archived order comes back with one, a new
    order arrives with them."""
    c = src.con
    c.executescript(
        """
        ALTER TABLE uni_tracking_info ADD COLUMN note TEXT;
        ALTER TABLE ecs_order_info ADD COLUMN channel INTEGER;
        ALTER TABLE uni_tracking_spath ADD COLUMN site TEXT;
        """
    )
    for o in (2, 4, 7):
        src.touch(o, day(52 + o / 10), code=300 + o)
        c.execute("UPDATE uni_tracking_info SET note = ? WHERE order_id = ?", (f"n{o}", o))
        c.execute("UPDATE uni_tracking_spath SET site = ? WHERE order_id = ?", (f"s{o}", o))
    c.execute("UPDATE ecs_order_info SET channel = order_id * 10 WHERE order_id = 7")
    src.clock(day(53))


DRIFT_SCRIPT = [
    Step("drift-first", _cycle, _drift_round_1, MARTS),
    Step("drift-columns-added", _cycle, _drift_round_2, MARTS),
]


@pytest.mark.slow
def test_kill_after_every_statement_of_a_cycle_whose_sources_gained_columns(
    worlds: Worlds, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Schema drift × history periods: a cycle that adds a new source column to the raw
    tables, the marts and every history period (its DDL partly outside transactions), while
    an archived order comes back, killed after each statement that can leave a different
    state, then rerun, ends as the uninterrupted cycle."""
    done = sweep(worlds, monkeypatch, after_first_load(worlds.engine), DRIFT_SCRIPT)
    assert all(kills for step, (_, kills) in done.items() if step != DRIFT_SCRIPT[0].name), done
    with _opened(worlds.config("ref")) as wh:
        notes = dict(wh.query(f"SELECT order_id, note FROM {wh.t('mart', UTI)}"))
        periods = wh.list_tables("mart", "hist_uts_")
        sites = {
            r[0]: r[1]
            for t in [UTS, *periods]
            for r in wh.query(
                f"SELECT order_id, site FROM {wh.t('mart', t)} WHERE site IS NOT NULL"
            )
        }
    assert periods, "no history period: the drift met no archived rows"
    assert {o: notes.get(o) for o in (2, 4, 7)} == {2: "n2", 4: "n4", 7: "n7"}, notes
    assert set(sites) == {2, 4, 7}, sites


def _held(worlds: Worlds) -> tuple[dict[Any, Any], list[tuple[Any, ...]]]:
    """The reference world's ecs (order → partner) and spath events (order, traceSeq,
    code), mart and history together."""
    with _opened(worlds.config("ref")) as wh:

        def held(mart: str, history: str, cols: str) -> list[tuple[Any, ...]]:
            tables = [mart, *wh.list_tables("mart", f"hist_{history}_")]
            return [r for t in tables for r in wh.query(f"SELECT {cols} FROM {wh.t('mart', t)}")]

        ecs = dict(held(ECS, "ecs", "order_id, partner_id"))
        events = held(UTS, "uts", wh.cols(["order_id", "traceSeq", "code"]))
    return ecs, events


@pytest.mark.servers
@pytest.mark.slow
def test_hard_kill_at_statements_in_a_subprocess(
    tmp_path: Path, pg_db: PgDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-process kill models a crash; here the process really dies (os._exit: no
    rollback handler, no finally, the connection drops) after a sample of the durable
    statements of `trackline sync` and `trackline cycle` on PostgreSQL, and the next run of
    the command ends as the uninterrupted one."""
    src = Source(tmp_path / "src.db")
    _extra_tables(src.con)
    worlds = Worlds("postgres", tmp_path, src, pg_db)
    exe = str(Path(sys.executable).with_name("trackline"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKLINE_")}

    def run(command: str, config: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [exe, command, "-c", str(config), "--log-format", "plain"],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=180,
        )

    try:
        worlds.create("ref")
        for step in (SCRIPT[0], SCRIPT[1]):
            assert step.before is not None
            step.before(src)
            worlds.copy("ref", "before")
            trace = traced(step.command, worlds.config("ref", step.tables))
            expected = snapshot(worlds.config("ref"))
            points = durable_points(trace)
            for n in (points[1], points[len(points) // 2]):
                worlds.copy("before", "a")
                path = write_config(tmp_path / "a.yml", worlds.data("a", step.tables))
                killed = run(
                    step.name,
                    path,
                    TRACKLINE_FAIL_AT_STATEMENT=str(n),
                    TRACKLINE_FAIL_MODE="exit",
                )
                assert killed.returncode == 99, (step.name, n, killed.stdout, killed.stderr)
                done = run(step.name, path)
                assert done.returncode == 0, (step.name, n, done.stdout, done.stderr)
                got = snapshot(worlds.config("a"))
                assert got == expected, f"{step.name} died after statement {n}:\n" + diff(
                    got, expected
                )
    finally:
        worlds.close()
        src.close()


@pytest.mark.slow
def test_check_killed_after_recording_a_failure_still_alerts_it(
    worlds: Worlds, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`trackline check` killed after any of its commits, then rerun: the failures the
    killed run recorded (and never alerted) must still reach the alert of the rerun."""
    if worlds.engine != "duckdb":
        pytest.skip("the gap is in the check runner, not in an engine")
    worlds.create("ref")
    cfg = worlds.config("ref")
    _round_1(worlds.src)
    _sync(cfg)
    _round_2(worlds.src)
    _cycle(cfg)
    worlds.copy("ref", "before")
    with _opened(cfg) as wh:
        clean = run_checks(cfg, wh, send_alerts=False)
    assert clean.alert is not None and "freshness" in clean.alert.subject
    worlds.copy("before", "traced")
    trace = traced(_check, worlds.config("traced"))
    composed: list[str] = []  # the alerts composed (then delivered) by the killed runs
    original = run_module.compose

    def compose(*args: Any) -> Any:
        alert = original(*args)
        composed.append(alert.subject if alert else "")
        return alert

    lost = []
    for n in durable_points(trace):
        worlds.copy("before", "a")
        a = worlds.config("a")
        composed.clear()
        with monkeypatch.context() as mp:
            mp.setattr(run_module, "compose", compose)
            killed_at(n, _check, a, monkeypatch)
        if any("freshness" in c for c in composed):
            continue  # killed after its alert went out
        with _opened(a) as wh:
            rerun = run_checks(a, wh, send_alerts=False)
        if rerun.alert is None or "freshness" not in rerun.alert.subject:
            lost.append(n)
    assert not lost, f"the freshness failure was never alerted when killed after {lost}"


def test_a_sync_stopped_early_closes_its_source_reader_in_the_reader_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync killed while its extraction thread still reads (batch 1 committed, more to
    come): the reader is closed in that thread. (It used to be left to the garbage collector
    in the loader's thread, where the SQLite reader's close fails: "SQLite objects created in
    a thread can only be used in that same thread", an unraisable error, on every such run.)"""
    src = Source(tmp_path / "src.db")
    try:
        for o in range(1, 9):
            src.touch(o, day(o))
        src.clock(day(10))
        data = config_dict(
            src.path,
            DuckDBWarehouse(path=tmp_path / "wh.duckdb"),
            tmp_path / "stage",
            tables={"uni_tracking_info": {"batch_size": 2}},
        )
        data["tables"], data["marts"] = data["tables"][:1], []
        cfg = Config.model_validate(data)
        run_faulted(cfg, "sync.after_commit@1", monkeypatch)
        gc.collect()
        _sync(cfg)
        assert snapshot(cfg)["raw.uni_tracking_info_raw"] != []
    finally:
        src.close()
