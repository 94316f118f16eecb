"""Hourly consolidation: does its cost follow the hour's rows or the target's size?

MariaDB source `tl_bench_cons`: `uni_tracking_info` (one row per order) and the scan events of
`uni_tracking_spath` and `uni_tracking_addon_spath` (index (update_time, id)), holding one
hour of events (`--hour-rows`, default 200,000, half in each table). The consolidation is the
shipped one: each events table LEFT JOINed to uni_tracking_info, keyed by
(source_kind, event_id).

Per engine (DuckDB, PostgreSQL) and target size (`--targets`, default 1,000,000 and
20,000,000 rows already in `parcel_detail_tool`, on a fresh warehouse each):

1. a first `consolidate` with the source window empty (creates target and staging);
2. the target filled with N rows in the warehouse (generated there, then VACUUM ANALYZE on
   PostgreSQL and a CHECKPOINT on both; not measured);
3. `consolidate` of the hour: measured (extract of both inputs + the merge).

Then, in the same run, the extraction of the two joins against two plain reads of the same
rows of the events tables (the same cursor window), streamed to Arrow and dropped; then, as a
what-if, the joins again with a covering index (order_id, tracking_no) added to
uni_tracking_info and forced in the join (FORCE INDEX).

    .venv/bin/python bench/consolidate_bench.py
    .venv/bin/python bench/consolidate_bench.py --targets 100000,2000000 --engines duckdb

Targets: 20M/1M time ratio <= 2.0 per engine; joins <= 1.5x the plain reads. Each size
prints its extract and merge seconds (the merge timed around `trackline.consolidate.merge`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DB = "tl_bench_cons"
EVENTS = ("uni_tracking_spath", "uni_tracking_addon_spath")


def mysql(args: argparse.Namespace, db: str | None = None) -> Any:
    import pymysql

    return pymysql.connect(
        host=args.mysql_host, port=args.mysql_port, user="root", autocommit=True, database=db
    )


def build_source(args: argparse.Namespace) -> None:
    con = mysql(args)
    with con.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{DB}`")
        cur.execute(f"CREATE DATABASE `{DB}`")
        con.select_db(DB)
        cur.execute(
            "CREATE TABLE uni_tracking_info (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
            "order_id BIGINT NOT NULL, tracking_no VARCHAR(32) NOT NULL, "
            "update_time DATETIME(6) NOT NULL, UNIQUE KEY ux_order (order_id))"
        )
        for t in EVENTS:
            cur.execute(
                f"CREATE TABLE {t} (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
                "order_id BIGINT NOT NULL, trace_seq INT NOT NULL, path_time DATETIME(6) NOT "
                "NULL, path_info VARCHAR(64), update_time DATETIME(6) NOT NULL, "
                "KEY ix_update (update_time, id))"
            )
        n = args.hour_rows // 2
        cur.execute(
            "INSERT INTO uni_tracking_info (order_id, tracking_no, update_time) "
            f"SELECT seq, CONCAT('TN', seq), NOW(6) - INTERVAL 1 DAY FROM seq_1_to_{n}"
        )
    con.close()


def fill_hour(args: argparse.Namespace) -> None:
    con = mysql(args, DB)
    n = args.hour_rows // 2
    with con.cursor() as cur:
        for t in EVENTS:
            cur.execute(
                f"INSERT INTO {t} (order_id, trace_seq, path_time, path_info, update_time) "
                f"SELECT seq, 1, NOW(6) - INTERVAL 2 HOUR, CONCAT('scan ', seq), "
                f"NOW(6) - INTERVAL (seq % 3000) SECOND - INTERVAL 10 SECOND FROM seq_1_to_{n}"
            )
            cur.execute(f"ANALYZE TABLE {t}")
    con.close()


def empty_hour(args: argparse.Namespace) -> None:
    con = mysql(args, DB)
    with con.cursor() as cur:
        for t in EVENTS:
            cur.execute(f"DELETE FROM {t}")
    con.close()


def join(events: str, hint: str = "") -> str:
    return (
        "SELECT e.id AS event_id, e.order_id, u.tracking_no, e.trace_seq, e.path_time, "
        f"e.path_info, e.update_time FROM {events} e "
        f"LEFT JOIN uni_tracking_info u {hint}ON u.order_id = e.order_id"
    )


COVERING = "ix_order_tracking"
"""What-if index: (order_id, tracking_no) on uni_tracking_info answers the join's lookup
from the index alone (the unique index on order_id needs the clustered row too)."""


def config(args: argparse.Namespace, engine: str, folder: Path) -> Any:
    from trackline.config import Config

    if engine == "duckdb":
        wh: dict[str, Any] = {"type": "duckdb", "path": str(folder / "wh.duckdb")}
    else:
        import psycopg

        name = f"tl_bench_cons_{int(time.time())}"
        with psycopg.connect(f"host={args.pg_host} user=postgres dbname=postgres") as c:
            c.autocommit = True
            c.execute(f'CREATE DATABASE "{name}"')
        wh = {"type": "postgres", "host": args.pg_host, "user": "postgres", "database": name}
    return Config.model_validate(
        {
            "sources": {
                "src": {"type": "mysql", "host": args.mysql_host, "port": args.mysql_port,
                        "user": "root", "database": DB, "innodb_hold": False}
            },
            "warehouse": wh,
            "stage": {"url": str(folder / "stage")},
            "defaults": {"lag_seconds": 0},
            "consolidations": [
                {"name": "parcel_detail", "key": ["source_kind", "event_id"],
                 "inputs": [
                     {"name": kind, "query": join(t),
                      "cdc": {"cursor": "update_time", "id": "event_id"},
                      "constants": {"source_kind": kind}}
                     for kind, t in (("spath", EVENTS[0]), ("addon", EVENTS[1]))
                 ]}
            ],
        }
    )  # fmt: skip


def drop_database(args: argparse.Namespace, cfg: Any) -> None:
    """The PostgreSQL database a size ran on (each size gets a fresh one)."""
    if cfg.warehouse.type != "postgres":
        return
    import psycopg

    with psycopg.connect(f"host={args.pg_host} user=postgres dbname=postgres") as c:
        c.autocommit = True
        c.execute(f'DROP DATABASE IF EXISTS "{cfg.warehouse.database}"')


def fill_target(wh: Any, rows: int) -> None:
    """N rows of older orders' events, generated in the warehouse."""
    gen = "range(?)" if wh.ENGINE == "duckdb" else "generate_series(0, ? - 1)"
    col = "i"
    with wh.transaction():
        wh.execute(
            'INSERT INTO "public"."parcel_detail_tool" (event_id, order_id, tracking_no, '
            "trace_seq, path_time, path_info, update_time, source_kind) "
            f"SELECT {col} + 10000000000, {col}, 'TN', 1, TIMESTAMP '2026-01-01 00:00:00', "
            f"'old scan', TIMESTAMP '2026-01-01 00:00:00', 'spath' FROM {gen} AS g(i)",
            (rows,),
        )
    # A target that has held its rows for a while: vacuumed, analyzed, on disk. Without this
    # the measured run shares the server with the autovacuum of the N new rows and with the
    # checkpoint writing them (PostgreSQL: even the extract, which never reads the target,
    # ran 1.9 s at 1M and 4.4 s at 20M).
    if wh.ENGINE == "postgres":
        wh.execute('VACUUM ANALYZE "public"."parcel_detail_tool"')
    wh.execute("CHECKPOINT")


def one(args: argparse.Namespace, engine: str, rows: int) -> float:
    from trackline.consolidate import consolidate
    from trackline.consolidate import run as cons_run
    from trackline.load import open_warehouse

    merging: list[float] = []
    real_merge = cons_run.merge

    def timed_merge(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real_merge(*a, **kw)
        finally:
            merging.append(time.perf_counter() - t0)

    cons_run.merge = timed_merge  # type: ignore[assignment]

    empty_hour(args)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(args, engine, Path(tmp))
        wh = open_warehouse(cfg.warehouse)
        wh.connect()
        try:
            (first,) = consolidate(cfg, wh)
            assert first.ok, first.error
            fill_target(wh, rows)
            fill_hour(args)
            merging.clear()
            t0 = time.perf_counter()
            (res,) = consolidate(cfg, wh)
            took = time.perf_counter() - t0
            assert res.ok and res.merged == args.hour_rows, (res.error, res.merged)
        finally:
            cons_run.merge = real_merge  # type: ignore[assignment]
            wh.close()
            drop_database(args, cfg)
    merged = sum(merging)
    print(
        f"  {engine:<8} target {rows:>11,}: {took:7.2f} s  (extract {took - merged:.2f} s, "
        f"merge {merged:.2f} s; {res.merged:,} rows merged; load {os.getloadavg()[0]:.1f})"
    )
    return took


def reads(args: argparse.Namespace) -> tuple[float, float, float]:
    """Seconds to stream the two joins vs the two plain tables, same window; then the joins
    again with a covering index on the lookup table, forced (MariaDB prefers the unique
    index's eq_ref otherwise)."""
    import pyarrow as pa

    from trackline.config import MySQLSource
    from trackline.extract import Relation, open_source

    src = open_source(
        MySQLSource(host=args.mysql_host, port=args.mysql_port, user="root", database=DB), DB
    )
    try:

        def stream(rel: Relation) -> float:
            cols = src.columns(rel)
            sql = (
                f"SELECT {', '.join(c.expr + ' AS ' + src.q(c.name) for c in cols)} "
                f"FROM {src.relation_sql(rel)} WHERE update_time > NOW(6) - INTERVAL 2 HOUR "
                "ORDER BY update_time, " + ("event_id" if rel.query else "id")
            )
            schema = pa.schema([pa.field(c.name, c.arrow) for c in cols])
            t0 = time.perf_counter()
            n = sum(b.num_rows for b in src.stream(sql, schema, 100_000))
            assert n == args.hour_rows // 2, n
            return time.perf_counter() - t0

        joins = sum(stream(Relation(t, None, join(t))) for t in EVENTS)
        plain = sum(stream(Relation(t, DB)) for t in EVENTS)
        con = mysql(args, DB)
        with con.cursor() as cur:
            cur.execute(
                f"ALTER TABLE uni_tracking_info ADD INDEX {COVERING} (order_id, tracking_no)"
            )
        con.close()
        hint = f"FORCE INDEX ({COVERING}) "
        covered = sum(stream(Relation(t, None, join(t, hint))) for t in EVENTS)
    finally:
        src.close()
    return joins, plain, covered


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hour-rows", type=int, default=200_000)
    p.add_argument("--targets", default="1000000,20000000")
    p.add_argument("--engines", default="duckdb,postgres")
    p.add_argument("--mysql-host", default="127.0.0.1")
    p.add_argument("--mysql-port", type=int, default=3306)
    p.add_argument("--pg-host", default="127.0.0.1")
    args = p.parse_args()
    sizes = [int(x) for x in args.targets.split(",")]
    build_source(args)
    try:
        run(args, sizes)
    finally:
        con = mysql(args)
        with con.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{DB}`")
        con.close()


def run(args: argparse.Namespace, sizes: list[int]) -> None:
    print(f"hourly consolidation of {args.hour_rows:,} new events")
    for engine in args.engines.split(","):
        times = [one(args, engine, n) for n in sizes]
        print(f"  {engine}: {sizes[-1]:,} / {sizes[0]:,} rows: {times[-1] / times[0]:.2f}x")
    joins, plain, covered = reads(args)
    print(f"extraction: two joins {joins:.2f} s, two plain reads {plain:.2f} s: "
          f"{joins / plain:.2f}x (load {os.getloadavg()[0]:.1f})")  # fmt: skip
    print(f"  what-if: the joins with a covering ({COVERING}) index forced: {covered:.2f} s: "
          f"{covered / plain:.2f}x the plain reads")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
