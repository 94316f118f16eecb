"""Benchmark of `trackline backfill run` (legacy MariaDB DW → Parquet stage → warehouse).

    .venv/bin/python bench/backfill_bench.py                   # 20,000,000 rows, 24 months
    .venv/bin/python bench/backfill_bench.py --rows 2000000 --engines duckdb,postgres
    .venv/bin/python bench/backfill_bench.py --short           # 200,000 rows, < 2 min (CI)

Builds (or reuses) the MariaDB database `tl_bench_backfill` (`_short`) holding a legacy
`dw_uni_tracking_spath` (pathTime DATETIME, indexed; `--rows` rows spread over 24 months)
and a production `uni_tracking_spath` (pathTime unix INT; a few rows: the handoff reads it),
then measures in ONE run, each step in its own child process:

  ceiling      `mariadb --quick` receiving the backfill's own SELECT (the converted columns,
               whole range) into /dev/null: what the server can send
  sync         `trackline sync` initial load of the same legacy table (read as a pipeline
               table of its own, DATETIME kept) into a fresh DuckDB: the cycle's loader
  backfill     `trackline.backfill.run` into a fresh warehouse per engine, workers 2,
               batch 500,000 (`--batch-size`), monthly chunks: rows/s and peak RSS
  resume       a backfill killed (os._exit) right after half of its chunks committed, then
               run again: the second run's seconds / a full run's seconds

The machine is shared and its speed drifts: read the figures as ratios between steps of
the same run (backfill / ceiling, resume / full), never as absolute times.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
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

LEGACY = "dw_uni_tracking_spath"
PROD = "uni_tracking_spath"
PROD2 = "uni_tracking_spath2"  # a second pipeline table on the same legacy table (2 workers)
START = dt.datetime(2024, 1, 1)
END = dt.datetime(2026, 1, 1)  # 24 monthly chunks
MID = dt.datetime(2025, 1, 1)  # two tables at once: 12 chunks each, the same rows in all
SPAN = int((END - START).total_seconds())
CONVERT = "TIMESTAMPDIFF(SECOND, '1970-01-01', pathTime)"


def sql(args: argparse.Namespace, text: str, db: str | None = None) -> list[tuple[Any, ...]]:
    import pymysql

    con = pymysql.connect(
        host=args.mysql_host, port=args.mysql_port, user=args.mysql_user, database=db
    )
    try:
        with con.cursor() as cur:
            cur.execute(text)
            rows = list(cur.fetchall())
        con.commit()
        return rows
    finally:
        con.close()


def prepare(args: argparse.Namespace) -> str:
    db, n = args.database, args.rows
    sql(args, f"CREATE DATABASE IF NOT EXISTS `{db}`")
    try:
        have = sql(args, f"SELECT COUNT(*) FROM `{LEGACY}`", db)[0][0]
    except Exception:  # noqa: BLE001 - not built yet
        have = -1
    if have == n:
        return "reused"
    sql(args, f"DROP TABLE IF EXISTS `{LEGACY}`", db)
    sql(args, f"DROP TABLE IF EXISTS `{PROD}`", db)
    sql(
        args,
        f"CREATE TABLE `{LEGACY}` (id BIGINT PRIMARY KEY, order_id BIGINT, traceSeq INT, "
        "pathTime DATETIME NOT NULL, code INT, staff_id INT, pathInfo VARCHAR(100), "
        "KEY ix_pathtime (pathTime)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        db,
    )
    sql(
        args,
        f"CREATE TABLE `{PROD}` (id BIGINT PRIMARY KEY, order_id BIGINT, traceSeq INT, "
        "pathTime INT NOT NULL, code INT, staff_id INT, pathInfo VARCHAR(100), "
        "KEY ix (pathTime, id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        db,
    )
    step = 1_000_000
    for lo in range(1, n + 1, step):
        hi = min(n, lo + step - 1)
        print(f"  building {LEGACY}: rows {lo:,}–{hi:,} of {n:,}", flush=True)
        sql(
            args,
            f"INSERT INTO `{LEGACY}` SELECT seq, 1000000000 + seq DIV 5, seq MOD 5 + 1, "
            f"TIMESTAMP'{START}' + INTERVAL (seq * {SPAN}) DIV {n} SECOND, "
            "ELT(1 + seq MOD 6, 10, 200, 300, 400, 500, 1000), 100000 + seq MOD 4999, "
            "CONCAT('Scanned at hub ', seq MOD 977, ', courier ', LEFT(MD5(seq), 10)) "
            f"FROM seq_{lo}_to_{hi}",
            db,
        )
    sql(
        args,
        f"INSERT INTO `{PROD}` SELECT seq + {n}, 2000000000 + seq, 1, "
        "UNIX_TIMESTAMP() - 86400 + seq, 10, 1, 'recent' FROM seq_1_to_1000",
        db,
    )
    sql(args, f"ANALYZE TABLE `{LEGACY}`", db)
    return "built"


def prepare_second(args: argparse.Namespace) -> None:
    """The second pipeline table's production side (the handoff reads it)."""
    db = args.database
    sql(args, f"CREATE TABLE IF NOT EXISTS `{PROD2}` LIKE `{PROD}`", db)
    sql(args, f"INSERT IGNORE INTO `{PROD2}` SELECT * FROM `{PROD}`", db)


# --------------------------------------------------------------------------- children


def _config(a: dict[str, Any], *, sync_legacy: bool = False, two: bool = False) -> Any:
    from trackline.config import parse_config

    def source(db: str) -> dict[str, Any]:
        return {
            "type": "mysql",
            "host": a["host"],
            "port": a["port"],
            "user": a["user"],
            "database": db,
            "innodb_hold": False,
        }

    name = LEGACY if sync_legacy else PROD
    cfg: dict[str, Any] = {
        "sources": {"kuaisong": source(a["database"]), "uniods": source(a["database"])},
        "warehouse": a["warehouse"],
        "stage": {"url": a["stage"]},
        "defaults": {"batch_size": a["batch"], "lag_seconds": 0},
        "tables": [
            {
                "name": name,
                "source": "uniods" if sync_legacy else "kuaisong",
                "target_schema": "raw",
                "target_table": "spath_raw",
                "cdc": {"strategy": "hybrid", "cursor": "pathTime", "id": "id"},
            }
        ],
        "backfill": {
            "workers": 2,
            "batch_size": a["batch"],
            "tables": [
                {
                    "table": PROD,
                    "source_table": LEGACY,
                    "columns": {"pathTime": CONVERT},
                }
            ],
        },
    }
    if sync_legacy:
        del cfg["backfill"]
    if two:
        cfg["tables"].append({**cfg["tables"][0], "name": PROD2, "target_table": "spath2_raw"})
        cfg["backfill"]["tables"].append({**cfg["backfill"]["tables"][0], "table": PROD2})
    return parse_config(json.dumps(cfg))


def child_backfill(a: dict[str, Any]) -> None:
    from trackline.backfill.run import run

    cfg = _config(a)
    s0, c0, t0 = server_cpu_seconds(), cpu_seconds(), time.monotonic()
    res = run(cfg, start=START, end=END)[0]
    seconds, cpu, s1 = time.monotonic() - t0, cpu_seconds() - c0, server_cpu_seconds()
    if res.status != "ok":
        raise SystemExit(f"backfill failed: {res.error}")
    report(
        {
            "seconds": seconds,
            "cpu": cpu,
            "server_cpu": None if s0 is None or s1 is None else s1 - s0,
            "rows": res.rows,
            "chunks": res.loaded,
            "skipped": res.skipped,
        }
    )


def child_backfill2(a: dict[str, Any]) -> None:
    """Two tables at once (workers 2), each the legacy table's first 12 months."""
    from trackline.backfill.run import run

    cfg = _config(a, two=True)
    s0, c0, t0 = server_cpu_seconds(), cpu_seconds(), time.monotonic()
    res = run(cfg, start=START, end=MID)
    seconds, cpu, s1 = time.monotonic() - t0, cpu_seconds() - c0, server_cpu_seconds()
    bad = [(r.table, r.error) for r in res if r.status != "ok"]
    if bad:
        raise SystemExit(f"backfill failed: {bad}")
    server = None if s0 is None or s1 is None else s1 - s0
    report({"seconds": seconds, "cpu": cpu, "server_cpu": server, "rows": sum(r.rows for r in res)})


def child_sync(a: dict[str, Any]) -> None:
    from trackline.sync import sync

    cfg = _config(a, sync_legacy=True)
    s0, c0, t0 = server_cpu_seconds(), cpu_seconds(), time.monotonic()
    r = sync(cfg)[0]
    seconds, cpu, s1 = time.monotonic() - t0, cpu_seconds() - c0, server_cpu_seconds()
    if r.status != "ok":
        raise SystemExit(f"sync failed: {r.error}")
    server = None if s0 is None or s1 is None else s1 - s0
    report({"seconds": seconds, "cpu": cpu, "server_cpu": server, "rows": r.rows})


CHILDREN = {"backfill": child_backfill, "backfill2": child_backfill2, "sync": child_sync}


# --------------------------------------------------------------------------- parent


def ceiling(args: argparse.Namespace) -> tuple[float, float | None]:
    """Seconds for the `mariadb` client to receive the backfill's rows (to /dev/null), and
    the server's CPU seconds meanwhile (None: no local server process visible)."""
    query = (
        f"SELECT id, order_id, traceSeq, {CONVERT} AS pathTime, code, staff_id, pathInfo "
        f"FROM `{LEGACY}` WHERE pathTime >= '{START}' AND pathTime < '{END}'"
    )
    s0, t0 = server_cpu_seconds(), time.monotonic()
    with open(os.devnull, "wb") as devnull:
        subprocess.run(
            [
                "mariadb",
                "--quick",
                "-h",
                args.mysql_host,
                "-P",
                str(args.mysql_port),
                "-u",
                args.mysql_user,
                args.database,
                "-e",
                query,
            ],
            stdout=devnull,
            check=True,
        )
    seconds, s1 = time.monotonic() - t0, server_cpu_seconds()
    return seconds, None if s0 is None or s1 is None else s1 - s0


def pg_database(args: argparse.Namespace, name: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(
        host=args.pg_host, port=args.pg_port, user="postgres", dbname="postgres", autocommit=True
    ) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        con.execute(f'CREATE DATABASE "{name}"')
    return {
        "type": "postgres",
        "host": args.pg_host,
        "port": args.pg_port,
        "user": "postgres",
        "database": name,
    }


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=20_000_000)
    p.add_argument("--short", action="store_true", help="200,000 rows, DuckDB and PostgreSQL")
    p.add_argument("--batch-size", type=int, default=500_000)
    p.add_argument("--engines", default="duckdb,postgres")
    p.add_argument(
        "--no-two-tables",
        dest="two_tables",
        action="store_false",
        help="skip the step with two tables at once (workers 2: the memory of both busy)",
    )
    p.add_argument("--mysql-host", default="127.0.0.1")
    p.add_argument("--mysql-port", type=int, default=3306)
    p.add_argument("--mysql-user", default="root")
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", type=int, default=5432)
    p.add_argument("--database", default=None)
    p.add_argument("--workdir", default=str(HERE / "out" / "backfill"))
    p.add_argument("--json", help="write every figure to this file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-args", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.short:
        args.rows = 200_000
        args.batch_size = min(args.batch_size, 50_000)
    args.database = args.database or (
        "tl_bench_backfill_short" if args.short else "tl_bench_backfill"
    )
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        CHILDREN[args.child](json.loads(args.child_args))
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    print(f"trackline backfill benchmark, {stamp()}, {machine()}")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"legacy table {prepare(args)}: {args.rows:,} rows over 24 months", flush=True)
    prepare_second(args)
    common = {
        "host": args.mysql_host,
        "port": args.mysql_port,
        "user": args.mysql_user,
        "database": args.database,
        "batch": args.batch_size,
    }

    def fresh(name: str, engine: str) -> dict[str, Any]:
        d = work / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        if engine == "duckdb":
            wh: dict[str, Any] = {"type": "duckdb", "path": str(d / "wh.duckdb")}
        else:
            wh = pg_database(args, f"tl_bench_backfill_{name}")
        return {"warehouse": wh, "stage": str(d / "stage")}

    def child(kind: str, extra: dict[str, Any], env: dict[str, str] | None = None) -> Measured:
        payload = json.dumps({**common, **extra})
        return run_child(
            kind,
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                kind,
                "--child-args",
                payload,
            ],
            env={"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(HERE)]), **(env or {})},
            timeout=7200,
        )

    n = args.rows
    send, send_server = ceiling(args)
    cores = os.cpu_count() or 1
    limits: list[list[Any]] = []

    def limit(name: str, m: Measured, share: float = 1.0) -> None:
        """The machine's limit for a step: the server cannot send its rows faster than the
        ceiling, nor can trackline and the server together use more than the cores."""
        server = m.result.get("server_cpu")
        cpu = float(m.result.get("cpu", m.cpu))
        shared = (cpu + server) / cores if server is not None else 0.0
        bound = max(send * share, shared)
        limits.append(
            [name, f"{send * share:.1f}", f"{cpu:.1f}",
             "-" if server is None else f"{server:.1f}", f"{bound:.1f}", f"{m.seconds:.1f}",
             f"{m.seconds / bound:.2f}"]
        )  # fmt: skip
        figures[f"limit_{name}"] = {"cpu": cpu, "server_cpu": server, "bound": bound}

    rows: list[list[Any]] = [
        ["ceiling: mariadb --quick", f"{send:.1f}", f"{n / send:,.0f}", "-", "1.00"]
    ]
    figures: dict[str, Any] = {
        "rows": n,
        "ceiling_s": send,
        "ceiling_server_cpu": send_server,
        "when": stamp(),
        "machine": machine(),
    }
    s = child("sync", fresh("sync", "duckdb"))
    rows.append(
        ["sync initial load (DuckDB)", f"{s.seconds:.1f}", f"{n / s.seconds:,.0f}",
         f"{s.peak_rss_mb:.0f}", f"{send / s.seconds:.2f}"]
    )  # fmt: skip
    figures["sync_s"] = s.seconds
    limit("sync initial load (DuckDB)", s)
    for engine in args.engines.split(","):
        m = child("backfill", fresh(f"full_{engine}", engine))
        rows.append(
            [f"backfill ({engine})", f"{m.seconds:.1f}", f"{n / m.seconds:,.0f}",
             f"{m.peak_rss_mb:.0f}", f"{send / m.seconds:.2f}"]
        )  # fmt: skip
        figures[f"backfill_{engine}_s"] = m.seconds
        figures[f"backfill_{engine}_rss_mb"] = m.peak_rss_mb
        limit(f"backfill ({engine})", m)
        if engine != "duckdb":
            continue
        # resume after a kill at half the chunks
        where = fresh("resume", engine)
        try:
            child("backfill", where, {"TRACKLINE_FAIL_AT": "backfill.after_commit@12",
                                      "TRACKLINE_FAIL_MODE": "exit"})  # fmt: skip
        except RuntimeError:
            pass  # the kill (exit 99) is the point
        r = child("backfill", where)
        # wall time drifts with the machine's load between the two runs; trackline's CPU
        # seconds (all its threads) much less
        cpu_ratio = float(r.result["cpu"]) / float(m.result["cpu"])
        rows.append(
            [f"resume after a kill at 12/24 chunks ({r.result.get('skipped')} skipped, "
             f"{r.result.get('chunks')} loaded)", f"{r.seconds:.1f}", "-",
             f"{r.peak_rss_mb:.0f}",
             f"{r.seconds / m.seconds:.2f} of a full run (CPU {cpu_ratio:.2f})"]
        )  # fmt: skip
        figures["resume_s"] = r.seconds
        figures["resume_ratio"] = r.seconds / m.seconds
        figures["resume_cpu_ratio"] = cpu_ratio
        if args.two_tables:
            # memory with both workers busy: two tables, each the first 12 months
            m2 = child("backfill2", fresh("two", engine))
            rows2 = int(m2.result.get("rows", 0))
            rows.append(
                ["backfill, 2 tables at once (12 months each)", f"{m2.seconds:.1f}",
                 f"{rows2 / m2.seconds:,.0f}", f"{m2.peak_rss_mb:.0f}",
                 f"{send * rows2 / n / m2.seconds:.2f}"]
            )  # fmt: skip
            figures["two_tables_s"] = m2.seconds
            figures["two_tables_rss_mb"] = m2.peak_rss_mb
            limit("backfill, 2 tables at once", m2, rows2 / n)
    print()
    print(table(["step", "seconds", "rows/s", "peak RSS MB", "ceiling s / step s"], rows))
    print()
    print(
        f"the machine's limit: bound = max(ceiling, (trackline CPU + server CPU) / {cores} "
        f"cores); the ceiling's own server CPU: "
        + ("-" if send_server is None else f"{send_server:.1f} s")
    )
    print(
        table(
            ["step", "ceiling s", "trackline CPU s", "server CPU s", "bound s", "step s",
             "step / bound"],
            limits,
        )
    )  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
