"""Benchmark of `trackline compare`: a legacy MariaDB DW table against trackline's mart ∪ history.

    .venv/bin/python bench/compare_bench.py                       # 5,000,000 rows, DuckDB + PG
    .venv/bin/python bench/compare_bench.py --rows 20000000 --engines duckdb
    .venv/bin/python bench/compare_bench.py --short               # 200,000 rows (CI smoke)

Builds (or reuses) uts-shaped tables holding the same `--rows` scan events on both sides:

  legacy     MariaDB `tl_bench_compare` (`_short`).`dw_uni_tracking_spath`: PRIMARY KEY
             (order_id, pathTime, code), pathTime DATETIME, create_time TIMESTAMP, weight
             DECIMAL(10,2), pathInfo VARCHAR(100) with CJK and emoji; 5 events per order
  trackline  `mart_uni_tracking_spath` (98 %) + `hist_spath_2025` behind the view
             `mart_uni_tracking_spath_hist` (the oldest 2 %: archived rows), pathTime
             TIMESTAMP, create_time TIMESTAMP WITH TIME ZONE, weight NUMERIC(18,4), on DuckDB
             (file under bench/out/compare) and on PostgreSQL (database `tl_bench_compare_<n>`,
             primary key (order_id, pathTime, code) on both tables)

Every row is a function of its sequence number s, computed in each engine's SQL (MariaDB's
seq_1_to_N tables, DuckDB's range(), PostgreSQL's generate_series), so both sides are built
without moving a row through Python. Then, per engine, each step in its own child process:

  floor      `SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', <every column>)))` over the legacy
             table and, at the same time (as compare asks both sides at once), the warehouse's
             equivalent full-scan aggregate over mart UNION ALL history (DuckDB: SUM(hash(
             concat_ws(…))); PostgreSQL: SUM(hashtext(concat_ws(…)))): the time of one scan
             of each side, the slower side sets it
  equal      `trackline.compare.compare` of the whole table (the `uts` preset's key, plus
             weight and create_time among the compared columns, `time: pathTime`)
  100 diffs  the same after planting `--differences` differences spread over the key space
             (a fifth each: missing in trackline, missing in the legacy DW, weight changed,
             pathInfo changed, create_time changed); they are removed again afterwards (each
             planted row is regenerated from its s), so the tables can be reused

CPU: the MariaDB server's and the child's (DuckDB runs in it), against the floor's.
Bytes fetched are measured three ways: `Bytes_sent` of the legacy connection's session
(MariaDB's own count of what it sent this client), the kernel's count of bytes received on
the client's TCP socket (TCP_INFO tcpi_bytes_received; the legacy connection, and the
PostgreSQL one), and, for every side including in-process DuckDB, the text size of the
values the client fetched (Σ len(str(value)) over every fetched row: no protocol overhead).

The machine is shared and its speed drifts: read the figures as ratios to the floor measured
in the same run, just before each compare.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import threading
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
MART = "mart_uni_tracking_spath"
HIST = "hist_spath_2025"
SCHEMA = "ods"
SPAN = 360 * 86_400  # pathTime spread over 360 days from 2025-01-01
COLUMNS = ["order_id", "pathTime", "code", "traceSeq", "staff_id", "weight", "create_time",
           "pathInfo"]  # fmt: skip
KEY = ["order_id", "pathTime", "code"]
COMPARED = ["traceSeq", "staff_id", "weight", "create_time", "pathInfo"]
KINDS = ["missing in trackline", "missing in legacy", "weight", "pathInfo", "create_time"]


def hist_rows(n: int) -> int:
    """Rows s ≤ this are archived (history); the rest are in the mart."""
    return n // 50


# --------------------------------------------------------------------------- row generators
# One row per s in 1..n. order_id: 5 events per order; code: distinct within an order, so
# (order_id, code) alone names a row (used to plant and to undo differences).


def mysql_select(n: int, src: str) -> str:
    return (
        "SELECT 1000000000 + (seq - 1) DIV 5, "
        f"TIMESTAMP'2025-01-01 00:00:00' + INTERVAL (seq * {SPAN}) DIV {n} SECOND, "
        "(seq MOD 6 + 1) * 100, (seq - 1) MOD 5 + 1, 100000 + seq MOD 4999, "
        "(seq MOD 100000) / 100, "
        f"TIMESTAMP'2025-01-01 00:00:00' + INTERVAL (seq * {SPAN}) DIV {n} - seq MOD 3600 SECOND, "
        "CONCAT(ELT(1 + seq MOD 4, '已签收 ', '📦 ', '', ''), 'Scanned at hub ', seq MOD 977, "
        f"', courier ', LEFT(MD5(seq), 10)) FROM {src}"
    )


def wh_select(engine: str, n: int, src: str) -> str:
    """The same rows in DuckDB / PostgreSQL SQL over a relation with an integer column s."""
    if engine == "duckdb":
        at = f"TIMESTAMP '2025-01-01 00:00:00' + to_seconds((s * {SPAN}) // {n})"
        weight = "CAST(CAST(s % 100000 AS DOUBLE) / 100 AS DECIMAL(18, 4))"
        created = f"CAST({at} - to_seconds(s % 3600) AS TIMESTAMP) AT TIME ZONE 'UTC'"
        tail = "md5(CAST(s AS VARCHAR))"
    else:
        at = f"TIMESTAMP '2025-01-01 00:00:00' + ((s * {SPAN}) / {n}) * INTERVAL '1 second'"
        weight = "CAST(CAST(s % 100000 AS NUMERIC) / 100 AS NUMERIC(18, 4))"
        created = f"({at} - (s % 3600) * INTERVAL '1 second') AT TIME ZONE 'UTC'"
        tail = "md5(CAST(s AS TEXT))"
    label = "(ARRAY['已签收 ', '📦 ', '', ''])[1 + s % 4]"
    div = "//" if engine == "duckdb" else "/"  # integer division (PostgreSQL: `/` of integers)
    return (
        f"SELECT 1000000000 + (s - 1) {div} 5, {at}, (s % 6 + 1) * 100, (s - 1) % 5 + 1, "
        f"100000 + s % 4999, {weight}, {created}, "
        f"{label} || 'Scanned at hub ' || CAST(s % 977 AS VARCHAR) || ', courier ' "
        f"|| left({tail}, 10) FROM {src}"
    )


def planted(n: int, count: int) -> list[tuple[int, str]]:
    """(s, kind) of each planted difference, spread evenly over the key space."""
    return [(1 + (k * n) // count + n // (2 * count), KINDS[k % len(KINDS)]) for k in range(count)]


def key_of(s: int) -> tuple[int, int]:
    """(order_id, code) of row s."""
    return 1_000_000_000 + (s - 1) // 5, (s % 6 + 1) * 100


# --------------------------------------------------------------------------- MariaDB


def mysql_con(args: argparse.Namespace, db: str | None = None) -> Any:
    import pymysql

    con = pymysql.connect(
        host=args.mysql_host,
        port=args.mysql_port,
        user=args.mysql_user,
        database=db,
        charset="utf8mb4",
        autocommit=True,
    )
    with con.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
    return con


def msql(con: Any, text: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    with con.cursor() as cur:
        cur.execute(text, params)
        return list(cur.fetchall())


def meta_state(run: Any, table_sql: str) -> tuple[int, int] | None:
    try:
        rows = run(f"SELECT n, planted FROM {table_sql}")
    except Exception:  # noqa: BLE001 - not built yet
        return None
    return (int(rows[0][0]), int(rows[0][1])) if rows else None


def prepare_legacy(args: argparse.Namespace) -> str:
    n = args.rows
    con = mysql_con(args)
    try:
        msql(con, f"CREATE DATABASE IF NOT EXISTS `{args.database}`")
        msql(con, f"USE `{args.database}`")
        state = meta_state(lambda q: msql(con, q), "bench_meta")
        if state is not None and state[0] == n:
            if state[1]:
                undo_legacy(con, n, args.differences)
            return "reused"
        msql(con, "DROP TABLE IF EXISTS bench_meta")
        msql(con, f"DROP TABLE IF EXISTS `{LEGACY}`")
        msql(
            con,
            f"CREATE TABLE `{LEGACY}` (order_id BIGINT NOT NULL, pathTime DATETIME NOT NULL, "
            "code INT NOT NULL, traceSeq INT, staff_id INT, weight DECIMAL(10,2), "
            "create_time TIMESTAMP NULL, pathInfo VARCHAR(100), "
            "PRIMARY KEY (order_id, pathTime, code)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        )
        step = 1_000_000
        for lo in range(1, n + 1, step):
            hi = min(n, lo + step - 1)
            print(f"  legacy: rows {lo:,}–{hi:,} of {n:,}", flush=True)
            msql(con, f"INSERT INTO `{LEGACY}` {mysql_select(n, f'seq_{lo}_to_{hi}')}")
        msql(con, f"ANALYZE TABLE `{LEGACY}`")
        msql(con, "CREATE TABLE bench_meta (n BIGINT, planted INT)")
        msql(con, "INSERT INTO bench_meta VALUES (%s, 0)", (n,))
        return "built"
    finally:
        con.close()


def plant_legacy(con: Any, n: int, count: int) -> None:
    msql(con, "UPDATE bench_meta SET planted = 1")
    for s, kind in planted(n, count):
        if kind == "missing in legacy":
            msql(con, f"DELETE FROM `{LEGACY}` WHERE order_id = %s AND code = %s", key_of(s))


def undo_legacy(con: Any, n: int, count: int) -> None:
    seqs = [s for s, _ in planted(n, count)]
    for s in seqs:
        msql(con, f"DELETE FROM `{LEGACY}` WHERE order_id = %s AND code = %s", key_of(s))
    listed = ", ".join(str(s) for s in seqs)
    msql(con, f"INSERT INTO `{LEGACY}` {mysql_select(n, f'seq_1_to_{n}')} WHERE seq IN ({listed})")
    msql(con, "UPDATE bench_meta SET planted = 0")


# --------------------------------------------------------------------------- warehouses

DDL = (
    'order_id BIGINT NOT NULL, "pathTime" TIMESTAMP NOT NULL, code INTEGER NOT NULL, '
    '"traceSeq" INTEGER, staff_id INTEGER, weight NUMERIC(18,4), '
    'create_time TIMESTAMP WITH TIME ZONE, "pathInfo" VARCHAR(100)'
)


class Wh:
    """A bench connection to one warehouse (its own SQL, not trackline's adapter)."""

    def __init__(self, engine: str, where: dict[str, Any]) -> None:
        self.engine = engine
        if engine == "duckdb":
            import duckdb

            self.con = duckdb.connect(where["path"])
            self.con.execute("SET TimeZone = 'UTC'")
        else:
            import psycopg

            self.con = psycopg.connect(
                host=where["host"], port=where["port"], user="postgres",
                dbname=where["database"], autocommit=True,
            )  # fmt: skip
            self.con.execute("SET TimeZone = 'UTC'")

    def run(self, text: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        if self.engine == "duckdb":
            cur = self.con.execute(text, params or [])
        else:
            cur = self.con.execute(text.replace("?", "%s"), params)
        try:
            return list(cur.fetchall())
        except Exception:  # noqa: BLE001 - a statement without a result
            return []

    def close(self) -> None:
        self.con.close()

    def t(self, name: str) -> str:
        return f"{SCHEMA}.{name}"


def prepare_warehouse(args: argparse.Namespace, engine: str, where: dict[str, Any]) -> str:
    n = args.rows
    wh = Wh(engine, where)
    try:
        state = meta_state(wh.run, wh.t("bench_meta"))
        if state is not None and state[0] == n:
            if state[1]:
                undo_warehouse(wh, n, args.differences)
            return "reused"
        wh.run(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        wh.run(f"DROP VIEW IF EXISTS {wh.t(MART + '_hist')}")
        for t in ("bench_meta", MART, HIST):
            wh.run(f"DROP TABLE IF EXISTS {wh.t(t)}")
        wh.run(f"CREATE TABLE {wh.t(MART)} ({DDL})")
        wh.run(f"CREATE TABLE {wh.t(HIST)} ({DDL})")
        h = hist_rows(n)
        step = 5_000_000 if engine == "duckdb" else 1_000_000
        for lo in range(1, n + 1, step):
            hi = min(n, lo + step - 1)
            print(f"  {engine}: rows {lo:,}–{hi:,} of {n:,}", flush=True)
            series = (
                f"range({lo}, {hi + 1}) r(s)"
                if engine == "duckdb"
                else f"generate_series({lo}::bigint, {hi}::bigint) r(s)"
            )
            for table_name, cond in ((HIST, f"s <= {h}"), (MART, f"s > {h}")):
                wh.run(
                    f"INSERT INTO {wh.t(table_name)} {wh_select(engine, n, series)} WHERE {cond}"
                )
        if engine == "postgres":
            for t in (MART, HIST):
                wh.run(f'ALTER TABLE {wh.t(t)} ADD PRIMARY KEY (order_id, "pathTime", code)')
                wh.run(f"ANALYZE {wh.t(t)}")
        wh.run(f"CREATE VIEW {wh.t(MART + '_hist')} AS SELECT * FROM {wh.t(HIST)}")
        wh.run(f"CREATE TABLE {wh.t('bench_meta')} (n BIGINT, planted INTEGER)")
        wh.run(f"INSERT INTO {wh.t('bench_meta')} VALUES ({n}, 0)")
        if engine == "duckdb":
            wh.run("CHECKPOINT")
        return "built"
    finally:
        wh.close()


def plant_warehouse(wh: Wh, n: int, count: int) -> None:
    wh.run(f"UPDATE {wh.t('bench_meta')} SET planted = 1")
    change = {
        "weight": "weight = weight + 1",
        "pathInfo": '"pathInfo" = "pathInfo" || \'x\'',
        "create_time": "create_time = create_time + INTERVAL '1 hour'",
    }
    for s, kind in planted(n, count):
        for t in (MART, HIST):
            where = "WHERE order_id = ? AND code = ?"
            if kind == "missing in trackline":
                wh.run(f"DELETE FROM {wh.t(t)} {where}", key_of(s))
            elif kind in change:
                wh.run(f"UPDATE {wh.t(t)} SET {change[kind]} {where}", key_of(s))


def undo_warehouse(wh: Wh, n: int, count: int) -> None:
    seqs = [s for s, _ in planted(n, count)]
    for s in seqs:
        for t in (MART, HIST):
            wh.run(f"DELETE FROM {wh.t(t)} WHERE order_id = ? AND code = ?", key_of(s))
    h = hist_rows(n)
    listed = ", ".join(f"({s})" for s in seqs)
    rel = f"(SELECT CAST(x AS BIGINT) AS s FROM (VALUES {listed}) v(x)) r"
    for table_name, cond in ((HIST, f"s <= {h}"), (MART, f"s > {h}")):
        wh.run(f"INSERT INTO {wh.t(table_name)} {wh_select(wh.engine, n, rel)} WHERE {cond}")
    wh.run(f"UPDATE {wh.t('bench_meta')} SET planted = 0")


# --------------------------------------------------------------------------- children


def tcp_bytes_received(fd: int) -> int:
    """Bytes this client's TCP socket has received (Linux TCP_INFO tcpi_bytes_received, at
    offset 128 of struct tcp_info)."""
    s = socket.socket(fileno=os.dup(fd))
    try:
        info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 192)
    finally:
        s.close()
    return int(struct.unpack_from("Q", info, 128)[0])


def text_bytes(rows: list[tuple[Any, ...]]) -> int:
    return sum(len(str(v).encode()) for r in rows for v in r if v is not None)


def child_floor(a: dict[str, Any]) -> None:
    """One aggregate full scan of each side, both at once."""
    import pymysql

    out: dict[str, Any] = {}

    def legacy() -> None:
        con = pymysql.connect(
            host=a["host"], port=a["port"], user=a["user"], database=a["database"]
        )
        cols = ", ".join(f"`{c}`" for c in COLUMNS)
        t0 = time.monotonic()
        with con.cursor() as cur:
            cur.execute(f"SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', {cols}))) FROM `{LEGACY}`")
            out["legacy_rows"] = int(cur.fetchone()[0])
        out["legacy_s"] = time.monotonic() - t0
        con.close()

    wh = Wh(a["engine"], a["warehouse"])
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    fn = "hash" if a["engine"] == "duckdb" else "hashtext"
    rel = f"(SELECT * FROM {wh.t(MART)} UNION ALL SELECT * FROM {wh.t(HIST)}) u"
    c0, t0 = cpu_seconds(), time.monotonic()
    worker = threading.Thread(target=legacy)
    worker.start()
    w0 = time.monotonic()
    row = wh.run(f"SELECT COUNT(*), SUM({fn}(concat_ws('|', {cols}))) FROM {rel}")[0]
    out["warehouse_s"] = time.monotonic() - w0
    worker.join()
    wh.close()
    seconds = time.monotonic() - t0
    report({**out, "seconds": seconds, "cpu": cpu_seconds() - c0, "warehouse_rows": row[0]})


def timed_sides() -> dict[str, list[float]]:
    """Seconds and calls per (side, step) of the compare's `_Side` methods: `first` (the first
    pass), `split` (a differing range's grouped parts), `span`, `fetch`."""
    from trackline.compare import job

    spent: dict[str, list[float]] = {}
    for method in ("parts", "span", "rows"):
        orig = getattr(job._Side, method)

        def timed(self: Any, *args: Any, _orig: Any = orig, _m: str = method, **kw: Any) -> Any:
            t0 = time.monotonic()
            try:
                return _orig(self, *args, **kw)
            finally:
                step = {"rows": "fetch", "span": "span"}.get(_m) or (
                    "first" if kw.get("by_day") else "split"
                )
                side = "legacy" if self.canon.INLINE_HASH else "warehouse"
                got = spent.setdefault(f"{side} {step}", [0.0, 0])
                got[0] += time.monotonic() - t0
                got[1] += 1

        setattr(job._Side, method, timed)
    return spent


def child_compare(a: dict[str, Any]) -> None:
    from trackline.compare import compare
    from trackline.config import parse_config
    from trackline.extract import open_source
    from trackline.load import open_warehouse

    source = {
        "type": "mysql",
        "host": a["host"],
        "port": a["port"],
        "user": a["user"],
        "database": a["database"],
        "innodb_hold": False,
        "stream_timeout_seconds": 7200,
    }
    cfg = parse_config(
        json.dumps(
            {
                "sources": {"uniods": source},
                "warehouse": a["warehouse"],
                "compare": {
                    "tables": [
                        {
                            "name": "uts",
                            "legacy_table": LEGACY,
                            "table": MART,
                            "schema": SCHEMA,
                            "key": KEY,
                            "columns": COMPARED,
                            "time": "pathTime",
                            **({"chunk": a["chunk"]} if a.get("chunk") else {}),
                        }
                    ]
                },
            }
        )
    )
    steps = timed_sides()
    src = open_source(cfg.sources["uniods"])
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    fetched = {"legacy": 0, "warehouse": 0}
    queries = {"legacy": 0, "warehouse": 0}
    long_rows, query = src.long_rows, wh.query

    def counted_long_rows(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        rows = long_rows(sql, params)
        fetched["legacy"] += text_bytes(rows)
        queries["legacy"] += 1
        return rows

    def counted_query(sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        rows = query(sql, params)
        fetched["warehouse"] += text_bytes(rows)
        queries["warehouse"] += 1
        return rows

    src.long_rows = counted_long_rows  # type: ignore[method-assign]
    wh.query = counted_query  # type: ignore[method-assign]

    def sent() -> int:
        return int(src.rows("SHOW SESSION STATUS LIKE 'Bytes_sent'")[0][1])

    pg_fd = wh.con.pgconn.socket if a["engine"] == "postgres" else None
    lsock0 = tcp_bytes_received(src.con._sock.fileno())
    sent0 = sent()
    pg0 = tcp_bytes_received(pg_fd) if pg_fd is not None else 0
    c0, t0 = cpu_seconds(), time.monotonic()
    res = compare(cfg, wh, "uts", open_src=src, save=False)
    seconds, cpu = time.monotonic() - t0, cpu_seconds() - c0
    pg1 = tcp_bytes_received(pg_fd) if pg_fd is not None else 0
    sent1 = sent()
    lsock1 = tcp_bytes_received(src.con._sock.fileno())
    src.close()
    wh.close()
    d = res.as_dict()
    report(
        {
            "seconds": seconds,
            "cpu": cpu,
            "legacy_rows": res.legacy_rows,
            "trackline_rows": res.trackline_rows,
            "differences": res.differences,
            "missing_in_trackline": res.missing_in_trackline,
            "missing_in_legacy": res.missing_in_legacy,
            "mismatches": {c: v["mismatches"] for c, v in d["columns"].items()},
            "ranges": res.ranges,
            "ranges_fetched": res.ranges_fetched,
            "rows_fetched": res.rows_fetched,
            # the SHOW itself is counted once in the difference (its own result)
            "legacy_bytes_sent": sent1 - sent0,
            "legacy_socket_bytes": lsock1 - lsock0,
            "pg_socket_bytes": pg1 - pg0 if pg_fd is not None else None,
            "legacy_text_bytes": fetched["legacy"],
            "warehouse_text_bytes": fetched["warehouse"],
            "steps": {k: [round(v[0], 2), v[1]] for k, v in sorted(steps.items())},
            "legacy_queries": queries["legacy"],
            "warehouse_queries": queries["warehouse"],
        }
    )


CHILDREN = {"floor": child_floor, "compare": child_compare}


# --------------------------------------------------------------------------- parent


def pg_where(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg

    name = f"tl_bench_compare_{args.rows}"
    with psycopg.connect(
        host=args.pg_host, port=args.pg_port, user="postgres", dbname="postgres", autocommit=True
    ) as con:
        if not con.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
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
    p.add_argument("--rows", type=int, default=5_000_000)
    p.add_argument("--short", action="store_true", help="200,000 rows (CI smoke)")
    p.add_argument("--engines", default="duckdb,postgres")
    p.add_argument("--differences", type=int, default=100, help="planted differences")
    p.add_argument("--chunk", type=int, default=None, help="compare chunk (default: config's)")
    p.add_argument("--mysql-host", default="127.0.0.1")
    p.add_argument("--mysql-port", type=int, default=3306)
    p.add_argument("--mysql-user", default="root")
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", type=int, default=5432)
    p.add_argument("--database", default=None)
    p.add_argument("--workdir", default=str(HERE / "out" / "compare"))
    p.add_argument("--fresh", action="store_true", help="rebuild the tables")
    p.add_argument("--json", help="write every figure to this file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-args", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.short:
        args.rows = 200_000
    args.database = args.database or f"tl_bench_compare_{args.rows}"
    return args


def kb(v: Any) -> str:
    return "-" if v is None else f"{v / 1024:,.1f}"


def main() -> None:
    args = parse_args()
    if args.child:
        CHILDREN[args.child](json.loads(args.child_args))
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    n = args.rows
    print(f"trackline compare benchmark, {stamp()}, {machine()}")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if args.fresh:
        con = mysql_con(args)
        msql(con, f"DROP DATABASE IF EXISTS `{args.database}`")
        con.close()
    t0 = time.monotonic()
    print(f"legacy table {prepare_legacy(args)}: {n:,} rows ({time.monotonic() - t0:.0f} s)")
    common = {
        "host": args.mysql_host,
        "port": args.mysql_port,
        "user": args.mysql_user,
        "database": args.database,
        "chunk": args.chunk,
    }

    def child(kind: str, extra: dict[str, Any]) -> Measured:
        """The step in its own process; `extra["cpu"]`: CPU seconds of the MariaDB server and
        of the child (DuckDB runs in it) while it ran (on a shared machine, the server's
        figure includes other clients' queries)."""
        before = server_cpu_seconds()
        m = run_child(
            kind,
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                kind,
                "--child-args",
                json.dumps({**common, **extra}),
            ],
            env={"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(HERE)])},
            timeout=7200,
        )
        after = server_cpu_seconds()
        m.extra["cpu"] = {"mariadb": (after or 0) - (before or 0), "child": m.cpu}
        return m

    def cpu_ratio(m: Measured, f: Measured, side: str) -> str:
        a, b = m.extra["cpu"][side], f.extra["cpu"][side]
        return f"{a / b:.1f}" if b > 0.05 else "-"

    rows: list[list[Any]] = []
    figures: dict[str, Any] = {"rows": n, "when": stamp(), "machine": machine(), "runs": []}
    for engine in args.engines.split(","):
        if engine == "duckdb":
            path = work / f"wh_{n}.duckdb"
            if args.fresh:
                path.unlink(missing_ok=True)
            where: dict[str, Any] = {"type": "duckdb", "path": str(path)}
        else:
            where = pg_where(args)
            if args.fresh:
                Wh(engine, where).run(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        t0 = time.monotonic()
        built = prepare_warehouse(args, engine, where)
        print(f"{engine} tables {built}: {n:,} rows ({time.monotonic() - t0:.0f} s)", flush=True)
        extra = {"engine": engine, "warehouse": where}
        for label in ("equal", f"{args.differences} differences"):
            if label != "equal":
                con = mysql_con(args, args.database)
                wh = Wh(engine, where)
                plant_legacy(con, n, args.differences)
                plant_warehouse(wh, n, args.differences)
                wh.close()
            try:
                print(f"  {engine} {label}: floor …", flush=True)
                f = child("floor", extra)
                print(f"  {engine} {label}: compare …", flush=True)
                m = child("compare", extra)
            finally:
                if label != "equal":
                    wh = Wh(engine, where)
                    undo_warehouse(wh, n, args.differences)
                    wh.close()
                    undo_legacy(con, n, args.differences)
                    con.close()
            r = m.result
            ratio = m.seconds / f.seconds
            # PostgreSQL's CPU is not read: each connection (and parallel worker) is a process
            # of its own, gone before the parent could read it
            wh_cpu = cpu_ratio(m, f, "child") if engine == "duckdb" else "-"
            cpu = f"{cpu_ratio(m, f, 'mariadb')} / {wh_cpu}"
            load = os.getloadavg()[0]
            rows.append(
                [f"{engine}, {label}", f"{f.result['legacy_s']:.1f} / "
                 f"{f.result['warehouse_s']:.1f}", f"{f.seconds:.1f}", f"{m.seconds:.1f}",
                 f"{ratio:.2f}", cpu, f"{m.peak_rss_mb:.0f}", f"{r['differences']}",
                 f"{r['ranges']} / {r['ranges_fetched']} / {r['rows_fetched']:,}",
                 f"{kb(r['legacy_bytes_sent'])} / {kb(r['legacy_socket_bytes'])}",
                 f"{kb(r['pg_socket_bytes'])}",
                 f"{kb(r['legacy_text_bytes'])} / {kb(r['warehouse_text_bytes'])}",
                 f"{load:.1f}"]
            )  # fmt: skip
            figures["runs"].append(
                {"engine": engine, "label": label, "floor": f.result, "floor_s": f.seconds,
                 "compare": r, "compare_s": m.seconds, "ratio": ratio,
                 "peak_rss_mb": m.peak_rss_mb, "load": load, "cpu": m.extra["cpu"],
                 "floor_cpu": f.extra["cpu"]}
            )  # fmt: skip
            print(f"    steps (seconds, calls): {r['steps']}")
            print(f"    floor {f.seconds:.1f} s, compare {m.seconds:.1f} s ({ratio:.2f}x), "
                  f"{r['differences']} differences, RSS {m.peak_rss_mb:.0f} MB",
                  flush=True)  # fmt: skip
    print()
    print(
        table(
            ["run", "floor legacy / wh s", "floor s", "compare s", "compare / floor",
             "CPU / floor CPU: MariaDB / DuckDB", "peak RSS MB", "differences",
             "ranges / fetched / rows", "legacy KiB (Bytes_sent / socket)", "PG socket KiB",
             "text KiB legacy / wh", "load"],
            rows,
        )
    )  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
