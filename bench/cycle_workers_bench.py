"""Benchmark of `trackline cycle` with `defaults.workers: 1` against `workers: 2`.

    .venv/bin/python bench/cycle_workers_bench.py                  # 1,000,000 rows per table
    .venv/bin/python bench/cycle_workers_bench.py --warehouses duckdb,postgres --repeat 3
    .venv/bin/python bench/cycle_workers_bench.py --short          # 50,000 rows per table (CI)

Builds (or reuses, when it already holds the right number of rows) the MariaDB database
`tl_cbench` with the four incremental tables of the example config (`trackline init`):
`uni_tracking_info`, `ecs_order_info`, `uni_tracking_spath` (the demo source's columns, unix
INT times) and `settlement_claim_detail` (DATETIME cursor, `write_mode: merge`), N rows
each. The config is the example config itself with its source pointed at that database, its
dimension tables, consolidations, compare and backfill sections left out (they need other
source tables), and the warehouse / stage replaced by fresh ones per measurement.

Each measurement is ONE `trackline cycle` (`run_cycle`, what the command calls) in its own
child process: the initial load of the four tables into an empty warehouse, then the
order_tracking marts (anchor, then followers) and the raw trim. workers=1 and workers=2 run
in alternating order over the rounds (1 2, 2 1, 1 2 …) on the same machine in the same run,
so the speed-up is a ratio between neighbours; the figure is the median of the per-round
ratios. The child also times its sync phase (from the cycle's start until its last table is
synced; with workers=2 the marts may build before that, beside the table no mart reads) and
the marts (the sum of the three marts' own times), and reports its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
if (ROOT / "src").is_dir():
    sys.path.insert(0, str(ROOT / "src"))

from _common import (  # noqa: E402
    Measured,
    cpu_seconds,
    machine,
    report,
    run_child,
    server_cpu_seconds,
    stamp,
    table,
)

SPAN = 30 * 86_400  # orders created over 30 days, ending a week before the build
LAYOUT = 2  # bumped when the tables' shape or contents change: a rebuild follows
ORDER_BASE = 3_000_000_000  # above 2**31, as the demo's order ids

# The demo source's columns (src/trackline/demo/generator.py) in MySQL types, with the
# indexes a hybrid cursor needs; claims as in the README's Quick start.
DDL = {
    "ecs_order_info": """(
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, order_id BIGINT, partner_id INT,
        add_time INT NOT NULL, extra_order_sn VARCHAR(32), zipcode VARCHAR(16), type TINYINT,
        order_status TINYINT, shipping_status TINYINT,
        KEY ix_cursor (add_time, id), KEY ix_order (order_id))""",
    "uni_tracking_info": """(
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, order_id BIGINT, tno VARCHAR(32),
        state INT, update_time INT NOT NULL, second_delivery_sn VARCHAR(32),
        KEY ix_cursor (update_time, id), KEY ix_order (order_id))""",
    "uni_tracking_spath": """(
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, order_id BIGINT, traceSeq INT,
        pathTime INT NOT NULL, code INT, staff_id INT, pathInfo VARCHAR(100),
        is_updated TINYINT NOT NULL DEFAULT 0, time_modified INT NOT NULL,
        KEY ix_cursor (pathTime, id), KEY ix_order (order_id))""",
    "settlement_claim_detail": """(
        ID BIGINT NOT NULL PRIMARY KEY, order_id BIGINT, amount DECIMAL(12,2),
        currency CHAR(3), reason VARCHAR(64), update_at DATETIME NOT NULL,
        KEY ix_cursor (update_at, ID))""",
}


def _fill(table: str, n: int, base: int, lo: int, hi: int) -> str:
    """INSERT … SELECT of rows lo..hi from MariaDB's SEQUENCE engine: N orders created over
    30 days (one ecs and one uti row each, one claim each) and N scan events, 4 per order."""
    t = f"{base} + (seq * {SPAN}) DIV {n}"  # creation time of order `seq`
    rows = {
        "ecs_order_info": (
            "id, order_id, partner_id, add_time, extra_order_sn, zipcode, type, "
            "order_status, shipping_status",
            f"seq, {ORDER_BASE} + seq, IF(seq MOD 7 = 0, 382, seq MOD 40), {t}, "
            "CONCAT('EX', seq), LPAD(seq MOD 99991, 5, '0'), seq MOD 3, seq MOD 6, seq MOD 4",
        ),
        "uni_tracking_info": (
            "id, order_id, tno, state, update_time, second_delivery_sn",
            f"seq, {ORDER_BASE} + seq, CONCAT('TN', LPAD(seq, 12, '0')), 1 + seq MOD 5, "
            f"{t} + (seq * 7919) MOD 432000, IF(seq MOD 50 = 0, CONCAT('SD', seq), NULL)",
        ),
        "uni_tracking_spath": (
            "id, order_id, traceSeq, pathTime, code, staff_id, pathInfo, is_updated, time_modified",
            f"seq, {ORDER_BASE} + 1 + (seq - 1) DIV 4, 1 + (seq - 1) MOD 4, "
            f"{base} + (((seq - 1) DIV 4) * {SPAN}) DIV {n} + ((seq - 1) MOD 4) * 21600, "
            "ELT(1 + (seq - 1) MOD 4, 10, 100, 200, 500), 100000 + seq MOD 4999, "
            "CONCAT('Scanned at hub ', seq MOD 977, ', next stop ', seq MOD 131, "
            "', courier ', LEFT(MD5(seq), 10)), 0, "
            f"{base} + (((seq - 1) DIV 4) * {SPAN}) DIV {n} + ((seq - 1) MOD 4) * 21600",
        ),
        "settlement_claim_detail": (
            "ID, order_id, amount, currency, reason, update_at",
            f"seq, {ORDER_BASE} + seq, (seq MOD 100000) / 100, ELT(1 + seq MOD 3, 'EUR', "
            "'USD', 'CNY'), ELT(1 + seq MOD 4, 'lost', 'damaged', 'late', 'returned'), "
            f"FROM_UNIXTIME({t} + 3600)",
        ),
    }
    cols, select = rows[table]
    return f"INSERT INTO {table} ({cols}) SELECT {select} FROM seq_{lo}_to_{hi}"


# --------------------------------------------------------------------------- source


class Source:
    def __init__(self, args: argparse.Namespace) -> None:
        import pymysql

        self.args = args
        self.db = args.database
        self.con = pymysql.connect(
            host=args.mysql_host, port=args.mysql_port, user=args.mysql_user, autocommit=True
        )

    def sql(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.con.cursor() as cur:
            cur.execute(sql, params or None)
            return list(cur.fetchall())

    def prepare(self, n: int, rebuild: bool) -> tuple[str, float]:
        """Build the four tables, or keep the ones an earlier run built (the bench only reads
        them). Returns (what, seconds)."""
        t0 = time.monotonic()
        self.sql(f"CREATE DATABASE IF NOT EXISTS `{self.db}`")
        self.con.select_db(self.db)
        try:
            meta = dict(self.sql("SELECT k, v FROM bench_meta"))
        except Exception:  # noqa: BLE001 - no table yet
            meta = {}
        if not rebuild and meta.get("rows") == n and meta.get("layout") == LAYOUT:
            return "reused", time.monotonic() - t0
        self.sql("DROP TABLE IF EXISTS bench_meta")
        self.sql("CREATE TABLE bench_meta (k VARCHAR(32) PRIMARY KEY, v BIGINT)")
        base = int(self.sql("SELECT UNIX_TIMESTAMP()")[0][0]) - SPAN - 7 * 86_400
        for name, ddl in DDL.items():
            self.sql(f"DROP TABLE IF EXISTS {name}")
            self.sql(f"CREATE TABLE {name} {ddl} ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
            for lo in range(1, n + 1, 500_000):
                hi = min(n, lo + 499_999)
                print(f"  building {name}: rows {lo:,}–{hi:,} of {n:,}", flush=True)
                self.sql(_fill(name, n, base, lo, hi))
            self.sql(f"ANALYZE TABLE {name}")
        self.sql("INSERT INTO bench_meta VALUES ('rows', %s), ('layout', %s)", (n, LAYOUT))
        return "built", time.monotonic() - t0


def bench_config(a: dict[str, Any]) -> dict[str, Any]:
    """The example config (`trackline init`), pointed at the bench source and a fresh
    warehouse and stage, its four incremental tables and its marts only."""
    import yaml

    from trackline.examples import EXAMPLE_CONFIG

    cfg = yaml.safe_load(EXAMPLE_CONFIG)
    cfg["sources"] = {
        "kuaisong": {
            "type": "mysql",
            "host": a["host"],
            "port": a["port"],
            "user": a["user"],
            "database": a["database"],
        }
    }
    cfg["tables"] = [t for t in cfg["tables"] if t["cdc"]["strategy"] == "hybrid"]
    assert len(cfg["tables"]) == 4, [t["name"] for t in cfg["tables"]]
    for key in ("consolidations", "compare", "backfill", "quality"):
        cfg.pop(key, None)
    cfg["stage"] = {"url": a["stage"]}
    cfg["defaults"]["workers"] = a["workers"]
    cfg["defaults"]["batch_size"] = a["batch"]
    if a["warehouse"] == "duckdb":
        cfg["warehouse"] = {"type": "duckdb", "path": a["duckdb"]}
    else:
        cfg["warehouse"] = {
            "type": "postgres",
            "host": "127.0.0.1",
            "port": 5432,
            "user": "postgres",
            "database": a["pg_database"],
        }
    return cfg


# --------------------------------------------------------------------------- child


def postgres_cpu_seconds() -> float | None:
    """CPU seconds so far of the local PostgreSQL server: its live processes plus, from the
    postmaster's cutime/cstime, the backends that have exited (a closed connection's backend
    takes its CPU with it otherwise). None when no server process is visible."""
    tick = os.sysconf("SC_CLK_TCK")
    total, found = 0.0, False
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            if Path(f"/proc/{fields[1]}/comm").read_text().strip() != "postgres":
                total += (int(fields[13]) + int(fields[14])) / tick  # the postmaster's reaped
            found = True
        except (OSError, IndexError, ValueError):
            continue
    return total if found else None


def child_cycle(a: dict[str, Any]) -> None:
    from trackline.config import parse_config
    from trackline.load import open_warehouse
    from trackline.marts.cycle import run_cycle_on
    from trackline.sync.parallel import ParallelSyncer

    cfg = parse_config(json.dumps(bench_config(a)))
    phase: dict[str, float] = {}
    if a.get("serial_followers"):
        from trackline.load.postgres import Postgres

        Postgres.PARALLEL_MARTS = False
    if a.get("shared_tx_lock"):
        # What-if (bench only): the code before session 6, where the DuckDB workers' cursors
        # shared one transaction lock, so their batch transactions took turns.
        from trackline.load.duckdb import DuckDB

        own = DuckDB.sibling

        def sibling(self: Any) -> Any:
            other = own(self)
            other._tx_lock = self._tx_lock
            return other

        DuckDB.sibling = sibling  # type: ignore[method-assign]

    import trackline.sync.parallel as parallel

    table_sync = parallel.Syncer.sync

    def timed_table_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return table_sync(self, *args, **kwargs)
        finally:  # the sync phase ends when the last table's sync returns
            phase["last_table"] = max(phase.get("last_table", 0.0), time.monotonic())

    parallel.Syncer.sync = timed_table_sync  # type: ignore[method-assign]

    class TimedSyncer(ParallelSyncer):
        """The cycle's own syncer (`defaults.workers`), with its sync phase timed: from its
        start until the last table is synced (with workers >= 2 the marts may build before
        that, beside tables they do not read)."""

        def sync(self, *args: Any, **kwargs: Any) -> Any:
            t = time.monotonic()
            try:
                return super().sync(*args, **kwargs)
            finally:
                phase["sync"] = phase.get("last_table", time.monotonic()) - t

    p0 = postgres_cpu_seconds()
    s0, c0, t0 = server_cpu_seconds(), cpu_seconds(), time.monotonic()
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        summary = run_cycle_on(cfg, wh, syncer=TimedSyncer(cfg, wh))  # type: ignore[arg-type]
        seconds, cpu, s1 = time.monotonic() - t0, cpu_seconds() - c0, server_cpu_seconds()
        p1 = postgres_cpu_seconds()
        if not summary.ok:
            raise SystemExit(f"cycle failed: {[(r.table, r.error) for r in summary.sync]}")
        marts = {}
        g = cfg.marts[0]
        for m in [g.anchor.table, *(f.table for f in g.followers)]:
            marts[m] = wh.scalar(f"SELECT COUNT(*) FROM {wh.t(g.schema_, m)}")
    finally:
        wh.close()
    report(
        {
            "seconds": seconds,
            "cpu": cpu,
            "server_cpu": None if s0 is None or s1 is None else s1 - s0,
            "pg_cpu": None if p0 is None or p1 is None else p1 - p0,
            "sync_seconds": phase["sync"],
            "mart_seconds": sum(m.seconds for m in summary.marts),
            "marts_each": {m.mart: round(m.seconds, 2) for m in summary.marts},
            "tables": {r.table: round(r.seconds, 2) for r in summary.sync},
            "rows": sum(r.rows for r in summary.sync),
            "moved": {r.table: r.rows for r in summary.sync},
            "marts": marts,
        }
    )


# --------------------------------------------------------------------------- parent


def machine_bound(m: Measured, engine: str) -> float:
    """The shortest this run could take on this machine: the CPU it used (trackline's, the
    MariaDB server's, PostgreSQL's backends') spread over every core. The servers' CPU read
    from /proc includes what they served other sessions meanwhile (a shared machine)."""
    used = m.work_cpu + float(m.result["server_cpu"] or 0)
    if engine == "postgres":
        used += float(m.result["pg_cpu"] or 0)
    return used / (os.cpu_count() or 1)


def median(xs: list[float]) -> float:
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


class Postgres:
    """Fresh PostgreSQL databases for the children (dropped again at the end)."""

    def __init__(self) -> None:
        import psycopg

        self.con = psycopg.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", autocommit=True
        )
        self.made: set[str] = set()

    def fresh(self, name: str) -> str:
        self.con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.con.execute(f'CREATE DATABASE "{name}"')
        self.made.add(name)
        return name

    def close(self) -> None:
        for name in self.made:
            self.con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.con.close()


VARIANTS: dict[str, dict[str, Any]] = {
    "workers=1": {"workers": 1},
    "workers=2": {"workers": 2},
    # what-ifs (DuckDB only; patched into the bench child, never in src/)
    "shared-tx-lock": {"workers": 2, "shared_tx_lock": True},
    # PostgreSQL only: a group's followers one after the other (as on DuckDB)
    "serial-followers": {"workers": 2, "serial_followers": True},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows per source table")
    p.add_argument(
        "--short", action="store_true", help="50,000 rows per table, one round (CI: < 60 s)"
    )
    p.add_argument("--batch-size", type=int, default=100_000)
    p.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="rounds of workers=1 and workers=2, in alternating order (default 2)",
    )
    p.add_argument(
        "--warmup",
        action="store_true",
        help="one unmeasured workers=1 cycle per warehouse first (reads the source into the "
        "page cache; on by default with --short, where the first run is otherwise slowest)",
    )
    p.add_argument("--warehouses", default="duckdb", help="duckdb, postgres or duckdb,postgres")
    p.add_argument(
        "--what-if",
        action="append",
        default=[],
        choices=[v for v in VARIANTS if not v.startswith("workers=")],
        help="also measure a variant, each round: 'shared-tx-lock' (DuckDB: workers=2 as "
        "before session 6: the workers' DuckDB transactions take turns), 'serial-followers' "
        "(PostgreSQL: workers=2 with a group's followers one after the other)",
    )
    p.add_argument("--workdir", default="/tmp/trackline-bench/cycle_workers")
    p.add_argument("--database", default="tl_cbench")
    p.add_argument("--mysql-host", default="127.0.0.1")
    p.add_argument("--mysql-port", type=int, default=3306)
    p.add_argument("--mysql-user", default="root")
    p.add_argument("--rebuild", action="store_true", help="rebuild the source tables")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-args", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.short:
        args.rows, args.repeat, args.warmup = 50_000, 1, True
        args.batch_size = min(args.batch_size, 20_000)  # several batches per table
        if args.database == "tl_cbench":
            args.database = "tl_cbench_short"
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        child_cycle(json.loads(args.child_args))
        return
    n = args.rows
    engines = [e.strip() for e in args.warehouses.split(",") if e.strip()]
    for e in engines:
        if e not in ("duckdb", "postgres"):
            raise SystemExit(f"--warehouses: unknown warehouse {e!r} (duckdb, postgres)")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"trackline cycle workers benchmark, {stamp()}, {machine()}")
    print(
        f"source: MariaDB {args.mysql_host}:{args.mysql_port} `{args.database}`, 4 tables × "
        f"{n:,} rows; batch {args.batch_size:,}; {args.repeat} round(s); {', '.join(engines)}"
    )
    loads = [os.getloadavg()]
    print(f"load average at start: {loads[0][0]:.2f} {loads[0][1]:.2f} {loads[0][2]:.2f}")
    what, secs = Source(args).prepare(n, args.rebuild)
    print(f"source tables {what} in {secs:.1f}s", flush=True)
    pg = Postgres() if "postgres" in engines else None
    common = {
        "host": args.mysql_host,
        "port": args.mysql_port,
        "user": args.mysql_user,
        "database": args.database,
        "batch": args.batch_size,
    }

    def measure(engine: str, variant: str) -> Measured:
        d = work / f"{engine}_{variant.replace(' ', '_')}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        a = {
            **common,
            **VARIANTS[variant],
            "warehouse": engine,
            "stage": str(d / "stage"),
            "duckdb": str(d / "warehouse.duckdb"),
        }
        if pg is not None and engine == "postgres":
            a["pg_database"] = pg.fresh(f"tl_cbench_{variant.replace(' ', '_')}")
        m = run_child(
            f"{engine} {variant}",
            [sys.executable, str(Path(__file__).resolve()), "--child", "cycle", "--child-args"]
            + [json.dumps(a)],
            env={"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(HERE)])},
        )
        assert all(v == n for v in m.result["moved"].values()), m.result["moved"]
        return m

    figures: dict[str, Any] = {"rows": n, "machine": machine(), "when": stamp(), "engines": {}}
    verdicts: list[list[str]] = []
    rows_out: list[list[str]] = []
    try:
        for engine in engines:
            variants = ["workers=1", "workers=2"]
            pg_only = engine != "duckdb"
            variants += [w for w in args.what_if if (w == "serial-followers") == pg_only]
            runs: dict[str, list[Measured]] = {v: [] for v in variants}
            if args.warmup:
                measure(engine, "workers=1")
            for i in range(max(1, args.repeat)):
                order = variants if i % 2 == 0 else variants[::-1]
                for v in order:
                    runs[v].append(measure(engine, v))
                one = runs["workers=1"][-1]
                line = f"  {engine} round {i + 1} ({', '.join(order)}): "
                for v in variants:
                    m = runs[v][-1]
                    # all end with the same marts: the parallel sync changes nothing in them
                    assert m.result["marts"] == one.result["marts"], (one.result, m.result)
                    line += f"{v} {m.seconds:.1f}s (sync {m.result['sync_seconds']:.1f})"
                    if v != "workers=1":
                        line += (
                            f" ratio {one.seconds / m.seconds:.2f} (sync "
                            f"{one.result['sync_seconds'] / m.result['sync_seconds']:.2f})"
                        )
                    line += "; "
                print(line + f"load {os.getloadavg()[0]:.2f}", flush=True)
                loads.append(os.getloadavg())
            for v, ms in runs.items():
                rows_out.append(
                    [
                        engine,
                        v,
                        f"{median([m.seconds for m in ms]):.2f}",
                        f"{median([m.result['sync_seconds'] for m in ms]):.2f}",
                        f"{median([m.result['mart_seconds'] for m in ms]):.2f}",
                        f"{median([m.work_cpu for m in ms]):.1f}",
                        "-"
                        if ms[0].result["server_cpu"] is None
                        else f"{median([m.result['server_cpu'] for m in ms]):.1f}",
                        "-"
                        if engine != "postgres" or ms[0].result["pg_cpu"] is None
                        else f"{median([m.result['pg_cpu'] for m in ms]):.1f}",
                        f"{median([machine_bound(m, engine) for m in ms]):.1f}",
                        f"{max(m.peak_rss_mb for m in ms):.0f}",
                        ", ".join(f"{k} {t}" for k, t in ms[-1].result["tables"].items()),
                    ]
                )
            figures["engines"][engine] = {
                v: {
                    "seconds": [m.seconds for m in ms],
                    "sync_seconds": [m.result["sync_seconds"] for m in ms],
                    "mart_seconds": [m.result["mart_seconds"] for m in ms],
                    "cpu": [m.work_cpu for m in ms],
                    "server_cpu": [m.result["server_cpu"] for m in ms],
                    "pg_cpu": [m.result["pg_cpu"] for m in ms],
                    "cpu_bound": [machine_bound(m, engine) for m in ms],
                    "peak_rss_mb": [m.peak_rss_mb for m in ms],
                    "tables": [m.result["tables"] for m in ms],
                    "marts_each": [m.result["marts_each"] for m in ms],
                }
                for v, ms in runs.items()
            }
            for v in variants[1:]:
                pairs = list(zip(runs["workers=1"], runs[v], strict=True))
                ratios = [a.seconds / b.seconds for a, b in pairs]
                sync_ratios = [
                    a.result["sync_seconds"] / b.result["sync_seconds"] for a, b in pairs
                ]
                r, sr = median(ratios), median(sync_ratios)
                target = v == "workers=2"
                verdicts.append(
                    [
                        f"{engine}: cycle time workers=1 / {v}",
                        f"{r:.2f}",
                        "≥ 1.4" if target else "(what-if)",
                        ("PASS" if r >= 1.4 else "FAIL") if target else "-",
                        "per round: " + ", ".join(f"{x:.2f}" for x in ratios),
                    ]
                )
                verdicts.append(
                    [
                        f"{engine}: sync phase workers=1 / {v}",
                        f"{sr:.2f}",
                        "(context)",
                        "-",
                        "per round: " + ", ".join(f"{x:.2f}" for x in sync_ratios),
                    ]
                )
                figures["engines"][engine][f"ratio {v}"] = ratios
                figures["engines"][engine][f"sync_ratio {v}"] = sync_ratios
    finally:
        if pg is not None:
            pg.close()
    print()
    print(
        table(
            [
                "warehouse",
                "workers",
                "cycle s",
                "sync phase s",
                "marts s",
                "CPU s",
                "MariaDB CPU s",
                "PostgreSQL CPU s",
                f"(CPU sum) / {os.cpu_count()} cores s",
                "peak RSS MB",
                "per table s (last round)",
            ],
            rows_out,
        )
    )
    print()
    print(table(["figure", "value", "target", "verdict", "note"], verdicts))
    print(
        "\nload average (1/5/15 min) at start and after each round: "
        + "; ".join(f"{x[0]:.2f}/{x[1]:.2f}/{x[2]:.2f}" for x in loads)
    )
    print(f"benchmark took {time.monotonic() - started:.0f}s")
    figures["verdicts"] = verdicts
    figures["load_average"] = loads
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
