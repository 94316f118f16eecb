"""Dimension loads: one scd2 run vs one atomic replace of the same snapshot.

A MariaDB table `dim_rows` of N rows (default 1,000,000: id, name, city, score, note) is read
whole (`cdc.strategy: full`) by two `tables:` entries of one config: `dim_replace`
(`write_mode: replace`) and `dim_scd2` (`write_mode: scd2`). Per engine (DuckDB, PostgreSQL):

1. a first sync of both (not measured: it builds the targets and the first versions);
2. per round: 1 % of the rows change in the source (score + 1 on every 100th id, a new
   residue each round), then, each in its own child process, `sync` of `dim_replace` and
   `sync` of `dim_scd2`, each reading, staging and loading the same N rows; the scd2 child
   also times its apply alone (every statement after the staging load: checks, the changes
   join, the hashes of the opened rows, close, open).

    .venv/bin/python bench/dims_bench.py                         # 1,000,000 rows, 2 rounds
    .venv/bin/python bench/dims_bench.py --rows 200000 --engines duckdb --repeat 1

Prints seconds, CPU seconds and peak RSS per step and the scd2 / replace ratio (median of
the rounds). Machine load moves absolute times; read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Measured, cpu_seconds, machine, report, run_child, stamp, table  # noqa: E402

DB = "tl_bench_dims"
DDL = """CREATE TABLE dim_rows (
  id INT NOT NULL PRIMARY KEY, name VARCHAR(40), city VARCHAR(40), score INT, note VARCHAR(40))"""


def mysql(args: argparse.Namespace) -> Any:
    import pymysql

    return pymysql.connect(host=args.mysql_host, port=args.mysql_port, user="root", autocommit=True)


def build_source(args: argparse.Namespace) -> None:
    con = mysql(args)
    with con.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{DB}`")
        con.select_db(DB)  # seq_1_to_N needs a current database
        cur.execute("DROP TABLE IF EXISTS dim_rows")
        cur.execute(DDL)
        cur.execute(
            "INSERT INTO dim_rows SELECT seq, CONCAT('partner ', seq), "
            "IF(seq % 10 = 0, NULL, CONCAT('city ', seq % 977)), seq % 1000, "
            f"IF(seq % 7 = 0, '', 'n') FROM seq_1_to_{args.rows}"
        )
    con.close()


def change(args: argparse.Namespace, residue: int) -> None:
    con = mysql(args)
    with con.cursor() as cur:
        cur.execute(
            f"UPDATE `{DB}`.dim_rows SET score = score + 1 WHERE MOD(id, 100) = %s", (residue,)
        )
    con.close()


def config(a: dict[str, Any]) -> Any:
    from trackline.config import Config

    wh: dict[str, Any] = {"type": "duckdb", "path": a["duckdb"], "memory_limit": "512MB"}
    if a["engine"] == "postgres":
        wh = {"type": "postgres", "host": "127.0.0.1", "user": "postgres", "database": DB}
    query = "SELECT id, name, city, score, note FROM dim_rows"
    return Config.model_validate(
        {
            "sources": {
                "src": {"host": a["mysql_host"], "port": a["mysql_port"], "user": "root",
                        "database": DB, "innodb_hold": False}
            },
            "warehouse": wh,
            "stage": {"url": a["stage"]},
            "defaults": {"batch_size": a["batch"], "lag_seconds": 0},
            "tables": [
                {"name": "dim_replace", "query": query, "primary_key": ["id"],
                 "cdc": {"strategy": "full"}, "write_mode": "replace"},
                {"name": "dim_scd2", "query": query, "primary_key": ["id"],
                 "cdc": {"strategy": "full"}, "write_mode": "scd2"},
            ],
        }
    )  # fmt: skip


def child(a: dict[str, Any]) -> None:
    """Sync one table; for scd2 also time the apply alone."""
    from trackline.dims import scd2
    from trackline.sync import sync

    applied: list[float] = []
    real = scd2.apply

    def timed_apply(*args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real(*args, **kw)
        finally:
            applied.append(time.perf_counter() - t0)

    scd2.apply = timed_apply  # type: ignore[assignment]
    cfg = config(a)
    c0, t0 = cpu_seconds(), time.perf_counter()
    res = sync(cfg, [a["table"]])
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    bad = [r.error for r in res if r.status != "ok"]
    if bad:
        raise SystemExit(f"sync failed: {bad}")
    report({"seconds": seconds, "cpu": cpu, "rows": res[0].rows, "apply": sum(applied)})


def pg_fresh() -> None:
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
    ) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{DB}"')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--engines", default="duckdb,postgres")
    ap.add_argument("--mysql-host", default="127.0.0.1")
    ap.add_argument("--mysql-port", type=int, default=3306)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return

    print(f"# dims_bench {stamp()} — {machine()}, load {os.getloadavg()[0]:.1f}")
    t0 = time.monotonic()
    build_source(args)
    print(f"source: {args.rows:,} rows built in {time.monotonic() - t0:.1f}s")
    out: dict[str, Any] = {"rows": args.rows, "batch": args.batch, "engines": {}}
    work = Path(tempfile.mkdtemp(prefix="tl_dims_bench_"))
    for engine in args.engines.split(","):
        if engine == "postgres":
            pg_fresh()
        base = {
            "engine": engine,
            "duckdb": str(work / f"{engine}.duckdb"),
            "stage": str(work / f"stage_{engine}"),
            "batch": args.batch,
            "mysql_host": args.mysql_host,
            "mysql_port": args.mysql_port,
        }

        def step(name: str, tbl: str, base: dict[str, Any] = base) -> Measured:
            a = json.dumps({**base, "table": tbl})
            return run_child(name, [sys.executable, __file__, "--child", a], timeout=3600)

        step("first replace", "dim_replace")
        step("first scd2", "dim_scd2")
        rounds: list[dict[str, Measured]] = []
        for r in range(args.repeat):
            change(args, r + 1)
            rounds.append(
                {"replace": step("replace", "dim_replace"), "scd2": step("scd2", "dim_scd2")}
            )
        rows = []
        for r, m in enumerate(rounds, 1):
            for kind in ("replace", "scd2"):
                x = m[kind]
                apply = f"{x.result['apply']:.2f}" if kind == "scd2" else "—"
                rows.append(
                    [r, kind, f"{x.seconds:.2f}", f"{x.work_cpu:.2f}", apply,
                     f"{x.peak_rss_mb:.0f}"]
                )  # fmt: skip
        ratio = statistics.median(m["scd2"].seconds / m["replace"].seconds for m in rounds)
        ratio_cpu = statistics.median(m["scd2"].work_cpu / m["replace"].work_cpu for m in rounds)
        apply_ratio = statistics.median(
            m["scd2"].result["apply"] / m["replace"].seconds for m in rounds
        )
        print(
            f"\n## {engine}: {args.rows:,} rows, 1 % changed per round, batch {args.batch:,} "
            f"({stamp()}, load {os.getloadavg()[0]:.1f} after the rounds)"
        )
        print(table(["round", "step", "seconds", "CPU s", "apply s", "peak RSS MB"], rows))
        print(
            f"scd2 / replace: {ratio:.2f}x wall, {ratio_cpu:.2f}x CPU (median); "
            f"the apply alone is {apply_ratio:.2f}x the whole replace"
        )
        out["engines"][engine] = {
            "rounds": [
                {k: {"seconds": v.seconds, "cpu": v.work_cpu, "peak_rss_mb": v.peak_rss_mb,
                     "apply": v.result.get("apply")} for k, v in m.items()}
                for m in rounds
            ],
            "ratio_wall": ratio,
            "ratio_cpu": ratio_cpu,
        }  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
