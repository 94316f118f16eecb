"""A legacy DW and a production source on the real MariaDB, for the backfill tests.

One deterministic history of orders (created, scanned, updated) is written three ways:

- ``legacy`` (stands in for uniods): everything before ``DW_END``, in the legacy DW's types:
  DATETIME times, ``tno`` as CHAR with '' for NULL, tables named ``dw_<table>``; its
  uni_tracking_info row of an order is the order as it was at DW_END;
- ``prod`` (stands in for kuaisong): the last days only (rows at or after ``PROD_START``,
  which is before DW_END: the two overlap), unix INT times, production names;
- ``union``: every row of the history in production form, the reference a straight load
  reads.

Orders live long: some are created in the DW's months and updated in production's days, so
their rows sit in both sources. Several rows share the instant of a month boundary.
"""

from __future__ import annotations

import calendar
import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.conftest import MYSQL_PASSWORD, MYSQL_USER, MySQLDb
from trackline.config import Config, DuckDBWarehouse, PostgresWarehouse
from trackline.load import Warehouse, open_warehouse

T0 = dt.datetime(2025, 1, 3)
BOUNDARY = dt.datetime(2025, 3, 1)  # a chunk boundary several rows share
PROD_START = dt.datetime(2025, 7, 1)
DW_END = dt.datetime(2025, 7, 20)
LATE = dt.datetime(2025, 8, 10)
"""Events from here on are written to production while the backfill runs."""

PROD_DDL = [
    "CREATE TABLE uni_tracking_info (id BIGINT PRIMARY KEY, order_id BIGINT, "
    "update_time INT NOT NULL, status VARCHAR(16), tno VARCHAR(12), KEY ix (update_time, id))",
    "CREATE TABLE ecs_order_info (id BIGINT PRIMARY KEY, order_id BIGINT, add_time INT NOT NULL, "
    "partner_id INT, KEY ix (add_time, id))",
    "CREATE TABLE uni_tracking_spath (id BIGINT PRIMARY KEY, order_id BIGINT, "
    "pathTime INT NOT NULL, code INT, traceSeq INT, KEY ix (pathTime, id))",
]
LEGACY_DDL = [
    "CREATE TABLE dw_uni_tracking_info (id BIGINT PRIMARY KEY, order_id BIGINT, "
    "update_time DATETIME NOT NULL, status VARCHAR(16), tno CHAR(12) NOT NULL DEFAULT '', "
    "etl_time DATETIME, KEY ix (update_time))",
    "CREATE TABLE dw_ecs_order_info (id BIGINT PRIMARY KEY, order_id BIGINT, "
    "add_time DATETIME NOT NULL, partner_id INT, KEY ix (add_time))",
    "CREATE TABLE dw_uni_tracking_spath (id BIGINT PRIMARY KEY, order_id BIGINT, "
    "pathTime DATETIME NOT NULL, code INT, traceSeq INT, KEY ix (pathTime))",
]
SECONDS = "TIMESTAMPDIFF(SECOND, '1970-01-01', {})"
"""A DATETIME as unix seconds whatever the session's time zone (UNIX_TIMESTAMP uses it)."""


def unix(t: dt.datetime) -> int:
    return calendar.timegm(t.timetuple())


@dataclass
class Event:
    id: int
    order: int
    at: dt.datetime
    code: int
    seq: int


@dataclass
class History:
    orders: dict[int, dt.datetime] = field(default_factory=dict)
    """order → creation time"""
    events: list[Event] = field(default_factory=list)

    def uti(self, before: dt.datetime | None = None, since: dt.datetime | None = None) -> list:
        """(id, order_id, update_time, status, tno) per order: its newest event before
        `before`; only orders whose row is at or after `since`."""
        out = {}
        for e in sorted(self.events, key=lambda e: e.at):
            if before is not None and e.at >= before:
                continue
            tno = None if e.order % 5 == 0 else f"T{e.order}"
            out[e.order] = (e.order, e.order, e.at, f"s{e.code}", tno)
        rows = list(out.values())
        return [r for r in rows if since is None or r[2] >= since]

    def ecs(self, before: dt.datetime | None = None, since: dt.datetime | None = None) -> list:
        return [
            (o, o, at, 300 + o % 7)
            for o, at in sorted(self.orders.items())
            if (before is None or at < before) and (since is None or at >= since)
        ]

    def spath(self, before: dt.datetime | None = None, since: dt.datetime | None = None) -> list:
        return [
            (e.id, e.order, e.at, e.code, e.seq)
            for e in self.events
            if (before is None or e.at < before) and (since is None or e.at >= since)
        ]


def history(seed: int = 14, orders: int = 36) -> History:
    rnd = random.Random(seed)
    h = History()
    eid = 0
    for o in range(1, orders + 1):
        created = T0 + dt.timedelta(days=rnd.randrange(0, 215), seconds=rnd.randrange(86_400))
        if o <= 3:
            created = BOUNDARY  # three orders created at a chunk boundary, to the second
        if o in (4, 5):
            created = BOUNDARY - dt.timedelta(seconds=1)
        h.orders[o] = created
        at = created
        long_lived = o % 6 == 0
        for seq in range(1, rnd.randrange(2, 6) + 1):
            eid += 1
            h.events.append(Event(eid, o, at, rnd.choice([10, 20, 30, 50]), seq))
            at += dt.timedelta(days=rnd.randrange(40, 90) if long_lived else rnd.randrange(0, 9))
            at += dt.timedelta(seconds=rnd.randrange(3600))
    # late events: written to production during the backfill
    for o in range(orders + 1, orders + 5):
        h.orders[o] = LATE + dt.timedelta(hours=o)
    for o in (6, 12, orders + 1, orders + 2, orders + 3, orders + 4):
        eid += 1
        h.events.append(Event(eid, o, LATE + dt.timedelta(hours=o, minutes=5), 60, 9))
    # scan events get their ids in time order (as an AUTO_INCREMENT table loaded as they
    # happen): the backfill reads such chunks by primary-key range; the other tables' ids
    # do not follow their times, and are read through the time index
    h.events.sort(key=lambda e: (e.at, e.order, e.seq))
    for i, e in enumerate(h.events, start=1):
        e.id = i
    return h


def cap(h: History, before: dt.datetime) -> History:
    """The history as it was at `before` (what production held before the late writes)."""
    return History(
        {o: at for o, at in h.orders.items() if at < before},
        [e for e in h.events if e.at < before],
    )


# --------------------------------------------------------------------------- databases


def second_db(mysql_db: MySQLDb, suffix: str, request: pytest.FixtureRequest) -> MySQLDb:
    name = f"{mysql_db.database}_{suffix}"
    mysql_db.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")

    db = MySQLDb(mysql_db.host, mysql_db.port, MYSQL_USER, MYSQL_PASSWORD, name)

    def drop() -> None:
        db.close()
        admin = pymysql.connect(
            host=mysql_db.host, port=mysql_db.port, user=MYSQL_USER, password=MYSQL_PASSWORD
        )
        try:
            with admin.cursor() as cur:
                cur.execute(
                    "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> "
                    "CONNECTION_ID()",
                    (name,),
                )
                for (tid,) in cur.fetchall():
                    try:
                        cur.execute(f"KILL {int(tid)}")
                    except pymysql.MySQLError:
                        pass
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            admin.close()

    request.addfinalizer(drop)
    return db


def write_prod(db: MySQLDb, h: History, since: dt.datetime) -> None:
    """Production's tables as of `h`, rows at or after `since` (idempotent: REPLACE)."""
    db.executemany(
        "REPLACE INTO uni_tracking_info VALUES (%s, %s, %s, %s, %s)",
        [(a, b, unix(t), s, n) for a, b, t, s, n in h.uti(since=since)],
    )
    db.executemany(
        "REPLACE INTO ecs_order_info VALUES (%s, %s, %s, %s)",
        [(a, b, unix(t), p) for a, b, t, p in h.ecs(since=since)],
    )
    db.executemany(
        "REPLACE INTO uni_tracking_spath VALUES (%s, %s, %s, %s, %s)",
        [(a, b, unix(t), c, s) for a, b, t, c, s in h.spath(since=since)],
    )


def write_legacy(db: MySQLDb, h: History) -> None:
    for sql in LEGACY_DDL:
        db.execute(sql)
    db.executemany(
        "INSERT INTO dw_uni_tracking_info VALUES (%s, %s, %s, %s, %s, NOW())",
        [(a, b, t, s, n or "") for a, b, t, s, n in h.uti(before=DW_END)],
    )
    db.executemany("INSERT INTO dw_ecs_order_info VALUES (%s, %s, %s, %s)", h.ecs(before=DW_END))
    db.executemany(
        "INSERT INTO dw_uni_tracking_spath VALUES (%s, %s, %s, %s, %s)", h.spath(before=DW_END)
    )


@dataclass
class World:
    prod: MySQLDb
    legacy: MySQLDb
    union: MySQLDb
    h: History
    tmp: Path

    def build(self) -> World:
        for db in (self.prod, self.union):
            for sql in PROD_DDL:
                db.execute(sql)
        write_prod(self.prod, cap(self.h, LATE), PROD_START)
        write_prod(self.union, self.h, dt.datetime(1970, 1, 2))
        write_legacy(self.legacy, self.h)
        return self

    def late_writes(self) -> None:
        """Production goes on while the backfill runs."""
        write_prod(self.prod, self.h, LATE)

    def data(
        self,
        wh: DuckDBWarehouse | PostgresWarehouse | dict[str, Any],
        stage: Path | dict[str, Any],
        *,
        source: MySQLDb | None = None,
    ) -> dict[str, Any]:
        src = source or self.prod

        def mysql(db: MySQLDb) -> dict[str, Any]:
            return db.source_dict()

        def table(name: str, cursor: str) -> dict[str, Any]:
            return {
                "name": name,
                "source": "kuaisong",
                "target_schema": "raw",
                "cdc": {"strategy": "hybrid", "cursor": cursor, "id": "id"},
            }

        return {
            "sources": {"kuaisong": mysql(src), "uniods": mysql(self.legacy)},
            "warehouse": wh if isinstance(wh, dict) else warehouse_dict(wh),
            "stage": stage if isinstance(stage, dict) else {"url": str(stage)},
            "defaults": {"lag_seconds": 0, "batch_size": 1000},
            "tables": [
                table("uni_tracking_info", "update_time"),
                table("ecs_order_info", "add_time"),
                table("uni_tracking_spath", "pathTime"),
            ],
            "marts": [
                {
                    "name": "order_tracking",
                    "schema": "mart",
                    "retention_seconds": 60 * 86_400,
                    "followers": [
                        {
                            "table": "mart_ecs_order_info",
                            "source": "ecs_order_info",
                            "kind": "one_per_key",
                            "history_name": "ecs",
                        },
                        {
                            "table": "mart_uni_tracking_spath",
                            "source": "uni_tracking_spath",
                            "kind": "events",
                            "time": "pathTime",
                            "event_key": ["id"],
                            "history_name": "uts",
                        },
                    ],
                }
            ],
            "backfill": {
                "source": "uniods",
                "batch_size": 7,
                "workers": 2,
                "tables": [
                    {
                        "table": "uni_tracking_info",
                        "source_table": "dw_uni_tracking_info",
                        "columns": {
                            "update_time": SECONDS.format("update_time"),
                            "tno": "NULLIF(tno, '')",
                        },
                    },
                    {
                        "table": "ecs_order_info",
                        "source_table": "dw_ecs_order_info",
                        "columns": {"add_time": SECONDS.format("add_time")},
                    },
                    {
                        "table": "uni_tracking_spath",
                        "source_table": "dw_uni_tracking_spath",
                        "columns": {"pathTime": SECONDS.format("pathTime")},
                    },
                ],
            },
        }


def warehouse_dict(wh: DuckDBWarehouse | PostgresWarehouse) -> dict[str, Any]:
    if isinstance(wh, DuckDBWarehouse):
        return {"type": "duckdb", "path": str(wh.path)}
    return {
        "type": "postgres",
        "host": wh.host,
        "port": wh.port,
        "user": wh.user,
        "database": wh.database,
    }


@dataclass(frozen=True)
class Mart:
    table: str
    cols: tuple[str, ...]


MARTS = [
    Mart("mart_uni_tracking_info", ("order_id", "id", "update_time", "status", "tno")),
    Mart("mart_ecs_order_info", ("order_id", "id", "add_time", "partner_id")),
    Mart("mart_uni_tracking_spath", ("id", "order_id", "pathTime", "code", "traceSeq")),
]


def connect(cfg: Config) -> Iterator[Warehouse]:
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        yield wh
    finally:
        wh.close()


def end_state(cfg: Config) -> dict[str, list[tuple[Any, ...]]]:
    """Every mart and `<mart>_hist` view's rows (sorted), and each history period's keys."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for wh in connect(cfg):
        for m in MARTS:
            for name in (m.table, f"{m.table}_hist"):
                if name.endswith("_hist"):
                    rows = _view_rows(wh, name, wh.cols(list(m.cols)))
                else:
                    rows = wh.query(f"SELECT {wh.cols(list(m.cols))} FROM {wh.t('mart', name)}")
                out[name] = sorted(tuple(_plain(v) for v in r) for r in rows)
        for name in wh.list_tables("mart", "hist_"):
            out[name] = sorted(
                tuple(_plain(v) for v in r)
                for r in wh.query(f"SELECT order_id FROM {wh.t('mart', name)}")
            )
    return out


def _view_rows(wh: Warehouse, name: str, cols: str) -> list[tuple[Any, ...]]:
    try:
        return wh.query(f"SELECT {cols} FROM {wh.t('mart', name)}")
    except Exception:  # noqa: BLE001 - no history yet: no view
        return []


def _plain(v: Any) -> Any:
    import decimal

    if isinstance(v, decimal.Decimal) and v == v.to_integral_value():
        return int(v)
    return v


def new_world(mysql_db: MySQLDb, request: pytest.FixtureRequest, tmp_path: Path) -> World:
    """A built world: production in `mysql_db`, the legacy DW and the union in databases of
    their own (dropped after the test)."""
    legacy = second_db(mysql_db, "dw", request)
    union = second_db(mysql_db, "all", request)
    return World(mysql_db, legacy, union, history(), tmp_path).build()
