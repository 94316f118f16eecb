"""Benchmark of one mart cycle against marts of growing size (G7: cost grows with the batch).

    .venv/bin/python bench/mart_bench.py                       # 1M, 5M, 20M orders, both engines
    .venv/bin/python bench/mart_bench.py --sizes 1000000,5000000 --engines duckdb
    .venv/bin/python bench/mart_bench.py --pg-sizes 1000000,10000000   # PostgreSQL's own sizes
    .venv/bin/python bench/mart_bench.py --short               # 100k and 400k orders (CI)
    .venv/bin/python bench/mart_bench.py --spread recent       # the batch's orders among the newest

For each engine and mart size N (orders):

1. a template warehouse is built once and kept (DuckDB: a file; PostgreSQL: a database used as
   `CREATE DATABASE … TEMPLATE`), rebuilt with `--rebuild`:
   - a tiny SQLite order-tracking source runs ONE real `trackline cycle` (sync + marts), which
     creates the raw tables, the marts, their indexes and the state rows the engine needs
     (the raw column schema in the watermark's `extra["schema"]`, the batch ledger);
   - then the marts are filled with SQL (DuckDB `range()`, PostgreSQL `generate_series`):
     N rows in mart_uni_tracking_info and mart_ecs_order_info, N × `--events-per-order` in
     mart_uni_tracking_spath, order times spread over the 6-month retention window, the
     oldest 1,000 orders in the 15 minutes that the measured cycle moves past the cutoff (so
     every size archives and trims the same ~1,000 orders);
2. a copy of the template gets one cycle's raw batch, inserted with SQL and registered in the
   batch ledger (`StateStore.record_batch`): 100,000 uni_tracking_info rows (80% existing orders
   spread over the mart, 20% new), their 20,000 new ecs_order_info rows and 500,000
   uni_tracking_spath events (5 per order of the uti batch). `--spread recent` draws the
   existing orders from the newest `--recent-orders` (400,000) instead: the same region of the
   mart at every size, as in a pipeline where the orders that move are the young ones; the
   default (`uniform`) is the worst case, where every vector of the anchor mart holds one;
3. a child process runs the mart phase only, `GroupEngine(cfg, group, wh).run()`, and reports
   its time, the per-mart step times, and its peak RSS (for PostgreSQL that is the client's:
   the server's memory is not counted).

The figure that matters is the ratio largest/smallest cycle time per engine (target ≤ 1.3,
medians of `--repeat 3`), measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
if (ROOT / "src").is_dir():
    sys.path.insert(0, str(ROOT / "src"))

from _common import Measured, cpu_seconds, machine, report, run_child, stamp, table  # noqa: E402

LAYOUT = 3  # bump when the template's content changes: old templates are then rebuilt
DAY = 86_400
RETENTION = 15_552_000  # 180 days: the default retention
T_END = 1_780_272_000  # 2026-06-01 00:00 UTC: the data clock before the measured cycle
T_START = T_END - RETENTION
STEP = 900  # the measured cycle's data is 15 minutes newer than the marts
ARCHIVED = 1_000  # orders in the slice the measured cycle moves past the cutoff
UTI, ECS, UTS = "mart_uni_tracking_info", "mart_ecs_order_info", "mart_uni_tracking_spath"
RAW, MART, STATE = "raw", "mart", "trackline"


# --------------------------------------------------------------------------- config


def config_dict(engine: str, target: str, work: Path) -> dict[str, Any]:
    if engine == "duckdb":
        wh: dict[str, Any] = {"type": "duckdb", "path": target}
    else:
        wh = {
            "type": "postgres",
            "host": "127.0.0.1",
            "port": 5432,
            "user": "postgres",
            "database": target,
        }

    def table(name: str, cursor: str) -> dict[str, Any]:
        return {
            "name": name,
            "target_schema": RAW,
            "cdc": {"strategy": "hybrid", "cursor": cursor, "id": "id"},
        }

    return {
        "sources": {"src": {"type": "sqlite", "path": str(work / "source.sqlite")}},
        "warehouse": wh,
        "stage": {"url": str(work / "stage")},
        "defaults": {"lag_seconds": 0},
        "state_schema": STATE,
        "tables": [
            table("uni_tracking_info", "update_time"),
            table("ecs_order_info", "add_time"),
            table("uni_tracking_spath", "pathTime"),
        ],
        "marts": [
            {
                "name": "order_tracking",
                "schema": MART,
                "retention_seconds": RETENTION,
                "followers": [
                    {
                        "table": ECS,
                        "source": "ecs_order_info",
                        "kind": "one_per_key",
                        "history_name": "ecs",
                    },
                    {
                        "table": UTS,
                        "source": "uni_tracking_spath",
                        "kind": "events",
                        "time": "pathTime",
                        "event_key": ["id"],
                        "history_name": "uts",
                    },
                ],
            }
        ],
    }


def load_config(engine: str, target: str, work: Path) -> Any:
    from trackline.config import Config

    return Config.model_validate(config_dict(engine, target, work))


def tiny_source(path: Path) -> None:
    """The order-tracking source of the first (real) cycle: 10 orders a day before T_END.
    Their ids are far above any generated id."""
    if path.exists():
        path.unlink()
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE uni_tracking_info (id INTEGER PRIMARY KEY, order_id INTEGER,
          update_time INTEGER NOT NULL, status TEXT, tno TEXT, partner_id INTEGER);
        CREATE TABLE ecs_order_info (id INTEGER PRIMARY KEY, order_id INTEGER,
          add_time INTEGER NOT NULL, partner_id INTEGER, amount_cents INTEGER);
        CREATE TABLE uni_tracking_spath (id INTEGER PRIMARY KEY, order_id INTEGER,
          pathTime INTEGER NOT NULL, code INTEGER, traceSeq INTEGER, pathInfo TEXT);
        CREATE TABLE trackline_clock (now INTEGER);
        """
    )
    base = 10**12
    for i in range(10):
        o, t = base + i, T_END - DAY + i
        con.execute(
            "INSERT INTO uni_tracking_info VALUES (?, ?, ?, 's200', ?, 382)", (o, o, t, f"T{o}")
        )
        con.execute("INSERT INTO ecs_order_info VALUES (?, ?, ?, 382, 1999)", (o, o, t))
        con.execute("INSERT INTO uni_tracking_spath VALUES (?, ?, ?, 200, 1, 'created')", (o, o, t))
    con.execute("INSERT INTO trackline_clock VALUES (?)", (T_END,))
    con.commit()
    con.close()


# --------------------------------------------------------------------------- SQL


class Dialect:
    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.div = "//" if engine == "duckdb" else "/"

    def series(self, n: int, col: str = "o") -> str:
        if self.engine == "duckdb":
            return f"range(1, {n + 1}) s_{col}({col})"
        return f"generate_series(1::bigint, {n}) s_{col}({col})"

    def order_time(self, n: int, o: str = "o") -> str:
        """Order o's time: the oldest ARCHIVED orders inside the first STEP seconds of the
        window (past the cutoff once the measured cycle adds STEP), the rest spread evenly
        over the remaining window."""
        d = self.div
        lo = T_START + 60
        rest = RETENTION - STEP - 120
        return (
            f"(CASE WHEN {o} <= {ARCHIVED} THEN {lo} + ({o} - 1) * {STEP - 120} {d} {ARCHIVED} "
            f"ELSE {T_START + STEP} + ({o} - {ARCHIVED}) * {rest} {d} {max(1, n - ARCHIVED)} END)"
        )


# No `%` in the SQL below: trackline's PostgreSQL adapter doubles `%` in statements without
# parameters, which psycopg then sends as is (see bench/README.md, findings). `mod()` works on
# both engines.


def fill_marts(wh: Any, d: Dialect, n: int, k: int) -> None:
    m = lambda t: wh.t(MART, t)  # noqa: E731
    ot = d.order_time(n)
    pt, ts = wh.q("pathTime"), wh.q("traceSeq")
    wh.execute(
        f"INSERT INTO {m(UTI)} (id, order_id, update_time, status, tno, partner_id) "
        f"SELECT o, o, {ot}, 's200', 'T' || CAST(o AS VARCHAR(20)), 382 + mod(o, 50) "
        f"FROM {d.series(n)}"
    )
    wh.execute(
        f"INSERT INTO {m(ECS)} (id, order_id, add_time, partner_id, amount_cents) "
        f"SELECT o, o, {ot} - 3600, 382 + mod(o, 50), 500 + mod(o, 9000) FROM {d.series(n)}"
    )
    # k events per order, the last at the order's time, the others 10 s apart before it
    wh.execute(
        f"INSERT INTO {m(UTS)} (id, order_id, {pt}, code, {ts}, {wh.q('pathInfo')}) "
        f"SELECT (o - 1) * {k} + j, o, {ot} - ({k} - j) * 10, 100 * j, j, "
        f"'scanned at hub ' || CAST(mod(o, 977) AS VARCHAR(10)) "
        f"FROM {d.series(n)}, {d.series(k, 'j')}"
    )


def add_batch(
    wh: Any,
    cfg: Any,
    d: Dialect,
    n: int,
    k: int,
    uti_rows: int,
    spath_per: int,
    new_share: float,
    recent: int = 0,
) -> dict[str, int]:
    """One cycle's raw batch, written straight into the raw tables + ledger rows. `recent`:
    the existing orders are drawn from the newest `recent` orders of the mart (0: from all)."""
    from trackline.state import StateStore
    from trackline.sync import BATCH_COL, resolve

    state = StateStore(wh, cfg.state_schema)
    new = int(uti_rows * new_share)
    old = uti_rows - new
    m_range = min(recent, n - ARCHIVED) if recent else n - ARCHIVED
    # existing orders spread over the mart or its newest `recent` orders (a prime stride),
    # never the oldest ARCHIVED ones
    order = (
        f"(CASE WHEN i <= {old} THEN {n - m_range + 1} + mod(i * 104729, {m_range}) "
        f"ELSE {n} + (i - {old}) END)"
    )
    t = f"{T_END + 1} + mod(i, {STEP - 1})"
    pt, ts = wh.q("pathTime"), wh.q("traceSeq")
    counts = {}
    with wh.transaction():
        keys = {}
        dbs = {}
        for name in ("uni_tracking_info", "ecs_order_info", "uni_tracking_spath"):
            rt = resolve(cfg, cfg.table(name), None, None)
            keys[name] = (rt.key, state.next_batch_id(rt.key), wh.t(rt.target_schema, rt.target))
            dbs[rt.key] = rt.source_db
        b = wh.q(BATCH_COL)
        key, bid, ref = keys["uni_tracking_info"]
        wh.execute(
            f"INSERT INTO {ref} (id, order_id, update_time, status, tno, partner_id, {b}) "
            f"SELECT o, o, tm, 's300', 'T' || CAST(o AS VARCHAR(20)), 382 + mod(o, 50), {bid} "
            f"FROM (SELECT {order} AS o, {t} AS tm FROM {d.series(uti_rows, 'i')}) x"
        )
        counts[key] = uti_rows
        key, bid, ref = keys["ecs_order_info"]
        wh.execute(
            f"INSERT INTO {ref} (id, order_id, add_time, partner_id, amount_cents, {b}) "
            f"SELECT o, o, tm, 382 + mod(o, 50), 1999, {bid} "
            f"FROM (SELECT {order} AS o, {t} AS tm FROM {d.series(uti_rows, 'i')}) x "
            f"WHERE o > {n}"
        )
        counts[key] = new
        key, bid, ref = keys["uni_tracking_spath"]
        first = n * k + 1
        wh.execute(
            f"INSERT INTO {ref} (id, order_id, {pt}, code, {ts}, {wh.q('pathInfo')}, {b}) "
            f"SELECT {first} + (i - 1) * {spath_per} + (j - 1), o, tm + j, 300, {k} + j, "
            f"'in transit', {bid} "
            f"FROM (SELECT i, {order} AS o, {t} AS tm FROM {d.series(uti_rows, 'i')}) x, "
            f"{d.series(spath_per, 'j')}"
        )
        counts[key] = uti_rows * spath_per
        for key, bid, _ in keys.values():
            st = state.get(key, dbs[key])
            state.record_batch(
                table_key=key,
                source_db=dbs[key],
                batch_id=bid,
                run_id="bench",
                row_count=counts[key],
                checksum="",
                files=(),
                manifest=None,
                wm_from=st.watermark,
                wm_to=st.watermark,
            )
            state.put(key, dbs[key], "hybrid", st.watermark, bid, counts[key])
    return counts


# --------------------------------------------------------------------------- engines


class Engine:
    """Template (build once, keep) → work copy → batch → measured child."""

    def __init__(self, name: str, work: Path) -> None:
        self.name = name
        self.work = work / name
        self.work.mkdir(parents=True, exist_ok=True)
        self.d = Dialect(name)

    def tpl_name(self, n: int, k: int) -> str:
        return f"tpl_v{LAYOUT}_{n}_{k}"

    # the hooks each engine implements
    def exists(self, tpl: str) -> bool:
        raise NotImplementedError

    def target(self, tpl: str) -> str:
        raise NotImplementedError

    def copy(self, tpl: str) -> str:
        raise NotImplementedError

    def drop(self, name: str) -> None:
        raise NotImplementedError

    def empty(self, tpl: str) -> None:
        """Remove any earlier (maybe half-built) template and make an empty one."""
        self.drop(tpl)

    def build(self, n: int, k: int, rebuild: bool) -> tuple[str, float, str]:
        tpl = self.tpl_name(n, k)
        t0 = time.monotonic()
        if self.exists(tpl) and not rebuild:
            return tpl, time.monotonic() - t0, "reused"
        self.empty(tpl)
        tiny_source(self.work / "source.sqlite")
        from trackline.load import open_warehouse
        from trackline.marts.cycle import run_cycle_on

        cfg = load_config(self.name, self.building(tpl), self.work)
        wh = open_warehouse(cfg.warehouse)
        wh.connect()
        try:
            s = run_cycle_on(cfg, wh)
            assert s.ok, s.as_dict()
            with wh.transaction():
                fill_marts(wh, self.d, n, k)
            self.after_fill(wh)
            counts = {
                t: wh.scalar(f"SELECT COUNT(*) FROM {wh.t(MART, t)}") for t in (UTI, ECS, UTS)
            }
            assert counts[UTI] == n + 10 and counts[UTS] == n * k + 10, counts
        finally:
            wh.close()
        self.finish(tpl)
        return tpl, time.monotonic() - t0, "built"

    def building(self, tpl: str) -> str:
        """Where the template is built (finish() makes it the template)."""
        return self.target(tpl)

    def after_fill(self, wh: Any) -> None:
        return None

    def finish(self, tpl: str) -> None:
        return None


class DuckDBEngine(Engine):
    def path(self, name: str) -> Path:
        return self.work / f"{name}.duckdb"

    def exists(self, tpl: str) -> bool:
        return self.path(tpl).exists()

    def target(self, tpl: str) -> str:
        return str(self.path(tpl))

    def drop(self, name: str) -> None:
        for p in (self.path(name), Path(str(self.path(name)) + ".wal")):
            if p.exists():
                p.unlink()

    def empty(self, tpl: str) -> None:
        self.drop(tpl)
        self.drop(f"{tpl}.building")

    def building(self, tpl: str) -> str:
        return str(self.path(f"{tpl}.building"))

    def finish(self, tpl: str) -> None:
        os.replace(self.building(tpl), self.path(tpl))

    def copy(self, tpl: str) -> str:
        dst = self.path("run")
        self.drop("run")
        shutil.copyfile(self.path(tpl), dst)
        return str(dst)

    def after_fill(self, wh: Any) -> None:
        wh.execute("CHECKPOINT")


class PostgresEngine(Engine):
    def admin(self) -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", autocommit=True
        )

    def db(self, name: str) -> str:
        return f"tl_mbench_{name}"

    def exists(self, tpl: str) -> bool:
        """A template counts only once finished (its database comment says so)."""
        with self.admin() as c:
            row = c.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                (self.db(tpl),),
            ).fetchone()
        return bool(row and row[0] == "complete")

    def target(self, tpl: str) -> str:
        return self.db(tpl)

    def drop(self, name: str) -> None:
        with self.admin() as c:
            c.execute(f'DROP DATABASE IF EXISTS "{self.db(name)}" WITH (FORCE)')

    def empty(self, tpl: str) -> None:
        self.drop(tpl)
        with self.admin() as c:
            c.execute(f'CREATE DATABASE "{self.db(tpl)}"')

    def after_fill(self, wh: Any) -> None:
        # Long-lived marts have statistics (autovacuum); the raw batch and temp tables don't.
        for t in (UTI, ECS, UTS):
            wh.execute(f"VACUUM ANALYZE {wh.t(MART, t)}")

    def finish(self, tpl: str) -> None:
        with self.admin() as c:
            c.execute(f"COMMENT ON DATABASE \"{self.db(tpl)}\" IS 'complete'")

    def copy(self, tpl: str) -> str:
        self.drop("run")
        with self.admin() as c:
            c.execute(
                f'CREATE DATABASE "{self.db("run")}" TEMPLATE "{self.db(tpl)}" STRATEGY FILE_COPY'
            )
        return self.db("run")


ENGINES = {"duckdb": DuckDBEngine, "postgres": PostgresEngine}


# --------------------------------------------------------------------------- child


def child_cycle(a: dict[str, Any]) -> None:
    from trackline.load import open_warehouse
    from trackline.marts.engine import GroupEngine

    cfg = load_config(a["engine"], a["target"], Path(a["work"]))
    timings = os.environ.get("TL_BENCH_STATEMENTS")
    if timings:  # each statement's seconds, appended to that file: where a cycle's time goes
        from trackline.load.base import Warehouse

        own = Warehouse._statement

        def timed(self: Any, sql: str, run: Any) -> Any:
            t = time.monotonic()
            try:
                return own(self, sql, run)
            finally:
                with open(timings, "a") as f:
                    line = {"pid": os.getpid(), "s": time.monotonic() - t, "sql": sql[:300]}
                    f.write(json.dumps(line) + "\n")

        Warehouse._statement = timed  # type: ignore[method-assign]
        own_commit = Warehouse.transaction

        @contextlib.contextmanager
        def timed_tx(self: Any) -> Any:  # the COMMIT (with what the engine does in it) too
            outer = not self._depth
            with own_commit(self):
                yield
                t = time.monotonic()
            if outer:
                with open(timings, "a") as f:
                    line = {"pid": os.getpid(), "s": time.monotonic() - t, "sql": "COMMIT"}
                    f.write(json.dumps(line) + "\n")

        Warehouse.transaction = timed_tx  # type: ignore[method-assign,assignment]
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        c0, t0 = cpu_seconds(), time.monotonic()
        stats = GroupEngine(cfg, cfg.marts[0], wh).run()
        seconds, cpu = time.monotonic() - t0, cpu_seconds() - c0
        sizes = {t: wh.scalar(f"SELECT COUNT(*) FROM {wh.t(MART, t)}") for t in (UTI, ECS, UTS)}
    finally:
        wh.close()
    report(
        {
            "seconds": seconds,
            "cpu": cpu,
            "marts": {
                s.mart: {
                    "seconds": s.seconds,
                    "rows_in": s.rows_in,
                    "inserted": s.inserted,
                    "archived": s.archived,
                    "trimmed": s.trimmed,
                    "exceptions": s.exceptions,
                    "steps": s.steps,
                }
                for s in stats
            },
            "sizes_after": sizes,
        }
    )


# --------------------------------------------------------------------------- parent


def parse_sizes(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="1000000,5000000,20000000", help="orders per mart")
    p.add_argument("--pg-sizes", help="PostgreSQL's own sizes (default: --sizes)")
    p.add_argument("--engines", default="duckdb,postgres")
    p.add_argument(
        "--short", action="store_true", help="100k and 400k orders, batch 10k uti + 50k spath (CI)"
    )
    p.add_argument("--events-per-order", type=int, default=2, help="spath mart rows per order")
    p.add_argument("--uti-batch", type=int, default=100_000)
    p.add_argument(
        "--spath-per-order",
        type=int,
        default=5,
        help="spath events per uti batch row (500,000 for the default batch)",
    )
    p.add_argument("--new-share", type=float, default=0.2, help="share of new orders in the batch")
    p.add_argument(
        "--spread",
        choices=("uniform", "recent"),
        default="uniform",
        help="where the batch's existing orders lie: anywhere in the mart (uniform, the worst "
        "case: every vector of the anchor mart holds one), or among its newest "
        "--recent-orders orders (recent: the same region at every size, as in a pipeline "
        "where the orders that move are the young ones)",
    )
    p.add_argument("--recent-orders", type=int, default=400_000)
    p.add_argument(
        "--repeat", type=int, default=1, help="measured cycles per size (fresh copy each)"
    )
    p.add_argument("--workdir", default="/tmp/trackline-bench/marts")
    p.add_argument("--rebuild", action="store_true", help="rebuild the templates")
    p.add_argument("--keep-run", action="store_true", help="keep the last work copy for a look")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--child-args", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_args:
        child_cycle(json.loads(args.child_args))
        return
    if args.short:
        args.sizes, args.pg_sizes = "100000,400000", None
        args.uti_batch = 10_000
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    k = args.events_per_order
    print(f"trackline mart benchmark, {stamp()}, {machine()}")
    print(
        f"batch: {args.uti_batch:,} uti rows ({args.new_share:.0%} new orders) + "
        f"{args.uti_batch * args.spath_per_order:,} spath events; spath mart = "
        f"{k} events per order; {args.repeat} measured cycle(s) per size; existing orders "
        + (
            f"among the newest {args.recent_orders:,}"
            if args.spread == "recent"
            else "spread over the whole mart"
        )
    )
    try:
        print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    except OSError:
        pass
    results: list[dict[str, Any]] = []
    for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
        eng = ENGINES[name](name, work)
        sizes = parse_sizes(args.pg_sizes if name == "postgres" and args.pg_sizes else args.sizes)
        for n in sizes:
            tpl, secs, what = eng.build(n, k, args.rebuild)
            print(f"{name} {n:,} orders: template {what} in {secs:.0f}s", flush=True)
        for rnd in range(args.repeat):
            for n in sizes:
                tpl = eng.tpl_name(n, k)
                t0 = time.monotonic()
                target = eng.copy(tpl)
                from trackline.load import open_warehouse

                cfg = load_config(name, target, eng.work)
                wh = open_warehouse(cfg.warehouse)
                wh.connect()
                try:
                    counts = add_batch(
                        wh,
                        cfg,
                        eng.d,
                        n,
                        k,
                        args.uti_batch,
                        args.spath_per_order,
                        args.new_share,
                        args.recent_orders if args.spread == "recent" else 0,
                    )
                finally:
                    wh.close()
                prep = time.monotonic() - t0
                m: Measured = run_child(
                    f"{name}-{n}",
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "--child-args",
                        json.dumps({"engine": name, "target": target, "work": str(eng.work)}),
                    ],
                    env={"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(HERE)])},
                )
                marts = m.result["marts"]
                results.append(
                    {
                        "engine": name,
                        "orders": n,
                        "round": rnd + 1,
                        "seconds": m.seconds,
                        "cpu": m.work_cpu,
                        "peak_rss_mb": m.peak_rss_mb,
                        "marts": marts,
                        "batch": counts,
                        "prepare_seconds": prep,
                        "sizes_after": m.result["sizes_after"],
                    }
                )
                steps = "; ".join(
                    f"{mt.removeprefix('mart_')} {v['seconds']:.2f}s" for mt, v in marts.items()
                )
                print(
                    f"  {name} {n:>12,} orders: cycle {m.seconds:.2f}s ({steps}); "
                    f"peak RSS {m.peak_rss_mb:.0f} MB (copy + batch {prep:.0f}s)",
                    flush=True,
                )
        if not args.keep_run:
            eng.drop("run")

    # ---------------------------------------------------------------- tables
    def med(xs: list[float]) -> float:
        s = sorted(xs)
        return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2

    rows = []
    verdicts = []
    for name in dict.fromkeys(r["engine"] for r in results):
        mine = [r for r in results if r["engine"] == name]
        sizes = sorted({r["orders"] for r in mine})
        base = med([r["seconds"] for r in mine if r["orders"] == sizes[0]])
        for n in sizes:
            rs = [r for r in mine if r["orders"] == n]
            sec = med([r["seconds"] for r in rs])
            r0 = rs[-1]
            mt = r0["marts"]

            def step(mart: str, r0: dict[str, Any] = r0) -> str:
                v = r0["marts"].get(mart, {})
                top = sorted(v.get("steps", {}).items(), key=lambda kv: -kv[1])[:2]
                return (
                    f"{v.get('seconds', 0):.2f} (" + ", ".join(f"{a} {b:.2f}" for a, b in top) + ")"
                )

            rows.append(
                [
                    name,
                    f"{n:,}",
                    f"{r0['sizes_after'][UTS]:,}",
                    f"{sec:.2f}",
                    step(UTI),
                    step(ECS),
                    step(UTS),
                    f"{mt[UTI]['archived']}/{mt[ECS]['archived']}/{mt[UTS]['archived']}",
                    f"{max(r['peak_rss_mb'] for r in rs):.0f}",
                    f"{sec / base:.2f}",
                ]
            )
        big = med([r["seconds"] for r in mine if r["orders"] == sizes[-1]])
        ratio = big / base
        verdicts.append(
            [
                f"{name}: {sizes[-1]:,} / {sizes[0]:,} orders cycle time",
                f"{ratio:.2f}",
                "≤ 1.3",
                "PASS" if ratio <= 1.3 else "FAIL",
            ]
        )
    print()
    print(
        table(
            [
                "engine",
                "orders",
                "spath mart rows",
                "cycle s",
                "uti s (top steps)",
                "ecs s (top steps)",
                "spath s (top steps)",
                "archived uti/ecs/spath",
                "peak RSS MB",
                "time / smallest",
            ],
            rows,
        )
    )
    print()
    print(table(["figure", "value", "target", "verdict"], verdicts))
    print(f"\nbenchmark took {time.monotonic() - started:.0f}s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {"when": stamp(), "machine": machine(), "results": results, "verdicts": verdicts},
                indent=1,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
