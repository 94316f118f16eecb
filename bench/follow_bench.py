"""What `cdc.strategy: follow` costs a cycle: the same cycle with and without it, same run.

    .venv/bin/python bench/follow_bench.py            # ecs 10,000,000 rows, 100,000 changed
    .venv/bin/python bench/follow_bench.py --short    # ecs 200,000 rows, 5,000 changed (CI)

MariaDB database `tl_follow_bench` (`_short`): `ecs_order_info` with N rows (index on
`order_id`, and on `(add_time, id)`) and `uni_tracking_info` with one row per changed order
(the driving table: M orders updated before each measured cycle). One first cycle loads both
into a DuckDB warehouse (the follow config's: its first pass only records its position); the
warehouse and the stage are then copied twice:

    plain   the cycle with ecs on `hybrid` (add_time, id): it reads the M uti rows, no ecs row
    follow  the same cycle with ecs on `follow` (uni_tracking_info by order_id): it also reads
            the M ecs rows of the changed orders by key (IN-lists of 10,000 keys) and the ecs
            mart replaces the rows that differ (a tenth of them were changed at the source)

Rounds alternate plain / follow (each on its own copy, the same source changes for both). The
ratio follow / plain is the median of the per-round ratios (target: at most 1.5). The script
prints the EXPLAIN of one IN-list on the source (it must use the `order_id` index).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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

T0 = 1_767_225_600  # 2026-01-01 UTC
DAY = 86_400


def config(db: str, work: Path, follow: bool) -> dict[str, Any]:
    ecs_cdc: dict[str, Any] = {"strategy": "hybrid", "cursor": "add_time", "id": "id"}
    if follow:
        ecs_cdc |= {"strategy": "follow", "follow": "uni_tracking_info", "follow_key": "order_id"}
    return {
        "sources": {
            "src": {
                "type": "mysql",
                "host": os.environ.get("BENCH_MYSQL_HOST", "127.0.0.1"),
                "user": "root",
                "password": "",
                "database": db,
                "innodb_hold": False,
            }
        },
        "warehouse": {"type": "duckdb", "path": str(work / "wh.duckdb")},
        "stage": {"url": str(work / "stage")},
        "defaults": {"lag_seconds": 0, "batch_size": 100_000},
        "tables": [
            {
                "name": "uni_tracking_info",
                "target_schema": "raw",
                "cdc": {"strategy": "hybrid", "cursor": "update_time", "id": "id"},
            },
            {"name": "ecs_order_info", "target_schema": "raw", "cdc": ecs_cdc},
        ],
        "marts": [
            {
                "name": "order_tracking",
                "schema": "mart",
                "followers": [
                    {
                        "table": "mart_ecs_order_info",
                        "source": "ecs_order_info",
                        "kind": "one_per_key",
                        "history_name": "ecs",
                    }
                ],
            }
        ],
    }


def load(db: str, work: Path, follow: bool) -> Any:
    from trackline.config import Config

    return Config.model_validate(config(db, work, follow))


def admin(db: str | None = None) -> Any:
    import pymysql

    return pymysql.connect(
        host=os.environ.get("BENCH_MYSQL_HOST", "127.0.0.1"),
        user="root",
        password="",
        database=db,
        autocommit=True,
    )


def changed_keys(n: int, m: int, spread: str) -> tuple[int, int]:
    """(step, offset) of the changed order ids `offset + i * step`, i = 1..m: `recent`: among
    the newest tenth of the orders (what moves in a 15-minute cycle: young orders, whose ecs
    rows sit together at the end of the table); `uniform`: over the whole table (the worst
    case: nearly every key on its own page)."""
    if spread == "uniform":
        return max(1, n // m), 0
    step = max(1, (n // 10) // m)
    return step, max(0, n - m * step)


def build_source(db: str, n: int, m: int, spread: str) -> float:
    """ecs with n rows (order ids 1..n), uti with the m orders the cycles change."""
    t0 = time.monotonic()
    con = admin()
    with con.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        cur.execute(f"CREATE DATABASE `{db}`")
        cur.execute(f"USE `{db}`")
        cur.execute(
            "CREATE TABLE ecs_order_info (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "order_id BIGINT NOT NULL, add_time INT NOT NULL, partner_id INT, "
            "consignee VARCHAR(40), zipcode VARCHAR(10))"
        )
        cur.execute(
            f"INSERT INTO ecs_order_info (order_id, add_time, partner_id, consignee, zipcode) "
            f"SELECT seq, {T0} + seq DIV 100, seq % 300, CONCAT('c', seq % 9973), "
            f"LPAD(seq % 99991, 5, '0') FROM seq_1_to_{n}"
        )
        cur.execute(
            "ALTER TABLE ecs_order_info ADD KEY ix_time (add_time, id), ADD KEY ix_order (order_id)"
        )
        cur.execute(
            "CREATE TABLE uni_tracking_info (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "order_id BIGINT NOT NULL, update_time INT NOT NULL, state INT, "
            "KEY ix_time (update_time, id))"
        )
        step, first = changed_keys(n, m, spread)
        cur.execute(
            f"INSERT INTO uni_tracking_info (order_id, update_time, state) "
            f"SELECT {first} + seq * {step}, {T0} + {n // 100} + 1, 1 FROM seq_1_to_{m}"
        )
    con.close()
    return time.monotonic() - t0


def change(db: str, n: int, m: int, rnd: int) -> None:
    """Round `rnd`: every uti order moves (update_time), a tenth of their ecs rows change."""
    con = admin(db)
    with con.cursor() as cur:
        t = T0 + n // 100 + 10 + rnd
        cur.execute("UPDATE uni_tracking_info SET update_time = %s, state = %s", (t, rnd + 2))
        cur.execute(
            "UPDATE ecs_order_info e JOIN uni_tracking_info u ON u.order_id = e.order_id "
            "SET e.zipcode = %s WHERE u.id %% 10 = 0",
            (f"R{rnd}",),
        )
    con.close()


def explain(db: str, n: int, m: int, spread: str) -> list[tuple[Any, ...]]:
    step, first = changed_keys(n, m, spread)
    keys = ", ".join(str(first + i * step) for i in range(1, min(m, 10_000) + 1))
    con = admin(db)
    with con.cursor() as cur:
        cur.execute(f"EXPLAIN SELECT * FROM ecs_order_info WHERE order_id IN ({keys}) ORDER BY id")
        cols = [d[0] for d in cur.description]
        rows = [cols, *cur.fetchall()]
    con.close()
    return rows


# --------------------------------------------------------------------------- child


def child(a: dict[str, Any]) -> None:
    from trackline.load import open_warehouse
    from trackline.marts.cycle import run_cycle_on

    cfg = load(a["db"], Path(a["work"]), a["follow"])
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        c0, t0 = cpu_seconds(), time.monotonic()
        s = run_cycle_on(cfg, wh)
        seconds, cpu = time.monotonic() - t0, cpu_seconds() - c0
    finally:
        wh.close()
    assert s.ok, s.as_dict()
    report(
        {
            "seconds": seconds,
            "cpu": cpu,
            "sync": {r.table: {"rows": r.rows, "seconds": r.seconds} for r in s.sync},
            "marts": {
                m.mart: {"seconds": m.seconds, "updated": m.updated, "inserted": m.inserted}
                for m in s.marts
            },
        }
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--short", action="store_true", help="200,000 ecs rows, 5,000 changed")
    p.add_argument("--rows", type=int, help="ecs rows (default 10,000,000; short 200,000)")
    p.add_argument("--changed", type=int, help="changed orders per cycle (100,000; short 5,000)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument(
        "--spread",
        choices=["recent", "uniform"],
        default="recent",
        help="where the changed orders are in ecs (see changed_keys)",
    )
    p.add_argument("--work", type=Path, default=Path("/tmp/tl_follow_bench"))
    p.add_argument("--json", type=Path)
    p.add_argument("--child-args", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_args:
        child(json.loads(args.child_args))
        return
    n = args.rows or (200_000 if args.short else 10_000_000)
    m = args.changed or (5_000 if args.short else 100_000)
    db = "tl_follow_bench_short" if args.short else "tl_follow_bench"
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(HERE)])}
    print(f"# follow_bench {stamp()}: {machine()}, load {os.getloadavg()[0]:.1f}")
    print(f"ecs_order_info {n:,} rows, {m:,} changed orders per cycle ({args.spread})\n")
    built = build_source(db, n, m, args.spread)
    base = args.work / "base"
    shutil.rmtree(args.work, ignore_errors=True)
    base.mkdir(parents=True)
    first = run_child(
        "first",
        [
            sys.executable,
            __file__,
            "--child-args",
            json.dumps({"db": db, "work": str(base), "follow": True}),
        ],
        env=env,
        timeout=7200,
    )
    print(f"source built in {built:.0f}s; first cycle (initial load) {first.seconds:.0f}s\n")
    works = {}
    for name in ("plain", "follow"):
        works[name] = args.work / name
        shutil.copytree(base, works[name])
    rounds: list[dict[str, Measured]] = []
    for rnd in range(args.repeat):
        change(db, n, m, rnd)
        got: dict[str, Measured] = {}
        order = ("plain", "follow") if rnd % 2 == 0 else ("follow", "plain")
        for name in order:
            a = {"db": db, "work": str(works[name]), "follow": name == "follow"}
            got[name] = run_child(
                name,
                [sys.executable, __file__, "--child-args", json.dumps(a)],
                env=env,
                timeout=3600,
            )
        rounds.append(got)
    rows = []
    for i, got in enumerate(rounds):
        for name in ("plain", "follow"):
            r = got[name]
            ecs_sync = r.result["sync"]["ecs_order_info"]
            ecs_mart = r.result["marts"]["mart_ecs_order_info"]
            rows.append(
                [
                    i + 1,
                    name,
                    f"{r.seconds:.2f}",
                    f"{r.work_cpu:.2f}",
                    f"{ecs_sync['rows']:,}",
                    f"{ecs_sync['seconds']:.2f}",
                    f"{ecs_mart['seconds']:.2f}",
                    f"{ecs_mart['updated']:,}",
                    f"{r.peak_rss_mb:.0f}",
                ]
            )
    print(
        table(
            ["round", "cycle", "seconds", "cpu s", "ecs rows read", "ecs sync s", "ecs mart s",
             "ecs rows replaced", "peak RSS MB"],
            rows,
        )
    )  # fmt: skip
    wall = statistics.median(g["follow"].seconds / g["plain"].seconds for g in rounds)
    cpu = statistics.median(g["follow"].work_cpu / g["plain"].work_cpu for g in rounds)
    verdict = "met" if wall <= 1.5 else "MISSED"
    print(f"\nfollow / plain: wall {wall:.2f}x, cpu {cpu:.2f}x (target <= 1.5x wall: {verdict})\n")
    plan = explain(db, n, m, args.spread)
    print("EXPLAIN of one IN-list (10,000 keys, the default follow_chunk_keys) on the source:\n")
    print(table([str(c) for c in plan[0]], [[str(v) for v in r] for r in plan[1:]]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "rows": n,
                    "changed": m,
                    "ratio_wall": wall,
                    "ratio_cpu": cpu,
                    "rounds": [{k: v.result for k, v in g.items()} for g in rounds],
                    "explain": plan,
                },
                default=str,
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
