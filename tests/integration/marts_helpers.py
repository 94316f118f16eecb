"""A tiny order-tracking source in SQLite plus the config around it, for the mart tests.

The source mimics the legacy tables with unix-integer times:

    uni_tracking_info   ONE row per order, updated in place (same id, new update_time)
    ecs_order_info      one row per order, written once at creation (add_time)
    uni_tracking_spath  append-only scan events (pathTime)
    trackline_clock     the source's "now": the extraction upper bound is now - lag (lag 0)

`Source.touch(order, t)` is one status change: the order is created on its first touch (uti +
ecs), its uti row moves to `t`, and a scan event at `t` is appended. `Source.clock(t)` then
lets a cycle read everything strictly before `t`.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trackline.config import Config, DuckDBWarehouse, PostgresWarehouse, RedshiftWarehouse
from trackline.load import Warehouse, open_warehouse
from trackline.marts.cycle import CycleSummary, run_cycle_on
from trackline.marts.history import Period

DAY = 86_400
T0 = 1_767_225_600  # 2026-01-01 00:00:00 UTC
RETENTION = 30 * DAY

UTI, ECS, UTS = "mart_uni_tracking_info", "mart_ecs_order_info", "mart_uni_tracking_spath"


def day(n: float) -> int:
    return T0 + int(n * DAY)


class Source:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.con = sqlite3.connect(path)
        self.con.executescript(
            """
            PRAGMA synchronous = OFF;
            CREATE TABLE uni_tracking_info (
              id INTEGER PRIMARY KEY, order_id INTEGER, update_time INTEGER NOT NULL,
              status TEXT, tno TEXT);
            CREATE TABLE ecs_order_info (
              id INTEGER PRIMARY KEY, order_id INTEGER, add_time INTEGER NOT NULL,
              partner_id INTEGER);
            CREATE TABLE uni_tracking_spath (
              id INTEGER PRIMARY KEY, order_id INTEGER, pathTime INTEGER NOT NULL,
              code INTEGER, traceSeq INTEGER);
            CREATE TABLE trackline_clock (now INTEGER);
            INSERT INTO trackline_clock VALUES (0);
            """
        )
        self.con.commit()
        self.known: set[int] = set()
        self.seq: dict[int, int] = {}

    def close(self) -> None:
        self.con.close()

    def touch(self, order: int, t: int, code: int = 200, partner: int = 382) -> None:
        """One status change of `order` at `t` (creates the order on its first touch)."""
        c = self.con
        if order not in self.known:
            self.known.add(order)
            c.execute(
                "INSERT INTO uni_tracking_info (order_id, update_time, status, tno) "
                "VALUES (?, ?, ?, ?)",
                (order, t, f"s{code}", f"T{order}"),
            )
            c.execute(
                "INSERT INTO ecs_order_info (order_id, add_time, partner_id) VALUES (?, ?, ?)",
                (order, t, partner),
            )
        else:
            c.execute(
                "UPDATE uni_tracking_info SET update_time = ?, status = ? WHERE order_id = ?",
                (t, f"s{code}", order),
            )
        self.seq[order] = self.seq.get(order, 0) + 1
        c.execute(
            "INSERT INTO uni_tracking_spath (order_id, pathTime, code, traceSeq) "
            "VALUES (?, ?, ?, ?)",
            (order, t, code, self.seq[order]),
        )

    def null_rows(self, t: int, n: int = 1) -> None:
        """Rows whose order_id was lost: n in each of uti, ecs and spath."""
        for i in range(n):
            self.con.execute(
                "INSERT INTO uni_tracking_info (order_id, update_time, status, tno) "
                "VALUES (NULL, ?, 'lost', ?)",
                (t, f"N{t}_{i}"),
            )
            self.con.execute(
                "INSERT INTO ecs_order_info (order_id, add_time, partner_id) VALUES (NULL, ?, 1)",
                (t,),
            )
            self.con.execute(
                "INSERT INTO uni_tracking_spath (order_id, pathTime, code, traceSeq) "
                "VALUES (NULL, ?, 0, 0)",
                (t,),
            )

    def clock(self, t: int) -> None:
        """Set the source's now (and commit what was written: readers use their own
        connection)."""
        self.con.execute("UPDATE trackline_clock SET now = ?", (t,))
        self.con.commit()

    def keys(self, before: int | None = None) -> set[int]:
        """Every non-NULL order_id of the uti table (optionally with update_time < before)."""
        sql = "SELECT DISTINCT order_id FROM uni_tracking_info WHERE order_id IS NOT NULL"
        params: tuple[Any, ...] = ()
        if before is not None:
            sql += " AND update_time < ?"
            params = (before,)
        return {r[0] for r in self.con.execute(sql, params)}


def warehouse_dict(wh: DuckDBWarehouse | PostgresWarehouse | RedshiftWarehouse) -> dict[str, Any]:
    if isinstance(wh, DuckDBWarehouse):
        return {"type": "duckdb", "path": str(wh.path)}
    if isinstance(wh, RedshiftWarehouse):
        return wh.model_dump(mode="json", exclude={"password"})
    return {
        "type": "postgres",
        "host": wh.host,
        "port": wh.port,
        "user": wh.user,
        "database": wh.database,
    }


def config_dict(
    src: Path,
    wh: DuckDBWarehouse | PostgresWarehouse,
    stage: Path,
    *,
    prefix: str = "",
    retention: int = RETENTION,
    on_reactivation: str = "restore",
    tables: dict[str, dict[str, Any]] | None = None,
    raw_retention: int | None = None,
) -> dict[str, Any]:
    """The config as plain data (for YAML files): raw in `<prefix>raw`, marts in `<prefix>mart`,
    state in `<prefix>trackline`, so two pipelines can share one warehouse."""
    raw = f"{prefix}raw"
    extra = tables or {}

    def table(name: str, cursor: str, **kw: Any) -> dict[str, Any]:
        return {
            "name": name,
            "target_schema": raw,
            "cdc": {"strategy": "hybrid", "cursor": cursor, "id": "id"},
            **kw,
        }

    defaults: dict[str, Any] = {"lag_seconds": 0}
    if raw_retention is not None:
        defaults["raw_retention_seconds"] = raw_retention
    return {
        "sources": {"src": {"type": "sqlite", "path": str(src)}},
        "warehouse": warehouse_dict(wh),
        "stage": {"url": str(stage)},
        "defaults": defaults,
        "state_schema": f"{prefix}trackline",
        "tables": [
            table("uni_tracking_info", "update_time", **extra.get("uni_tracking_info", {})),
            table("ecs_order_info", "add_time", **extra.get("ecs_order_info", {})),
            table("uni_tracking_spath", "pathTime", **extra.get("uni_tracking_spath", {})),
        ],
        "marts": [
            {
                "name": "order_tracking",
                "schema": f"{prefix}mart",
                "retention_seconds": retention,
                "followers": [
                    {
                        "table": ECS,
                        "source": "ecs_order_info",
                        "kind": "one_per_key",
                        "history_name": "ecs",
                        "on_reactivation": on_reactivation,
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


def make_config(tmp: Path, src: Path, wh: DuckDBWarehouse | PostgresWarehouse, **kw: Any) -> Config:
    prefix = kw.get("prefix", "")
    return Config.model_validate(config_dict(src, wh, tmp / f"{prefix}stage", **kw))


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def connect(cfg: Config) -> Warehouse:
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    return wh


class Pipeline:
    """A source, a config and an open warehouse: `step(t)` = set the clock, run a cycle."""

    def __init__(self, tmp: Path, wh_cfg: DuckDBWarehouse | PostgresWarehouse, **kw: Any) -> None:
        self.tmp = tmp
        self.src = Source(tmp / "src.db")
        self.cfg = make_config(tmp, self.src.path, wh_cfg, **kw)
        self.wh = connect(self.cfg)
        self.schema = self.cfg.marts[0].schema_

    def close(self) -> None:
        self.wh.close()
        self.src.close()

    def step(self, t: int, cfg: Config | None = None) -> CycleSummary:
        self.src.clock(t)
        s = run_cycle_on(cfg or self.cfg, self.wh)
        assert s.ok, s.as_dict()
        return s

    # ---- reading the warehouse

    def t(self, table: str, schema: str | None = None) -> str:
        return self.wh.t(schema or self.schema, table)

    def rows(self, table: str, cols: str = "*", schema: str | None = None) -> list[tuple]:
        """Every row of a table (sorted), or [] when the table does not exist."""
        s = schema or self.schema
        if not self.wh.table_exists(s, table):
            return []
        return sorted(self.wh.query(f"SELECT {cols} FROM {self.t(table, s)}"), key=repr)

    def keys(self, table: str, schema: str | None = None) -> list[Any]:
        return [r[0] for r in self.rows(table, "order_id", schema=schema)]

    def hist_tables(self, name: str, schema: str | None = None) -> list[str]:
        prefix = f"hist_{name}_"
        return self.wh.list_tables(schema or self.schema, prefix)

    def where_in_history(self, name: str, order: int) -> list[str]:
        """The history tables of `name` that hold `order`."""
        out = []
        for h in self.hist_tables(name):
            n = self.wh.scalar(f"SELECT COUNT(*) FROM {self.t(h)} WHERE order_id = ?", (order,))
            if n:
                out.append(h)
        return out

    def join3(self, order: int) -> int:
        """Rows of the marts' primary 3-way join for one order."""
        return int(
            self.wh.scalar(
                f"SELECT COUNT(*) FROM {self.t(ECS)} eoi "
                f"JOIN {self.t(UTS)} uts ON eoi.order_id = uts.order_id "
                f"JOIN {self.t(UTI)} uti ON eoi.order_id = uti.order_id "
                "WHERE eoi.order_id = ?",
                (order,),
            )
            or 0
        )

    def exceptions(self, check: str | None = None, status: str = "open") -> list[tuple]:
        if not self.wh.table_exists(self.schema, "order_tracking_exceptions"):
            return []
        where, params = "WHERE status = ?", [status]
        if check:
            where += " AND check_name = ?"
            params.append(check)
        return self.wh.query(
            "SELECT id, check_name, table_name, key_value, detail, status FROM "
            f"{self.t('order_tracking_exceptions')} {where} ORDER BY id",
            params,
        )


def touch_all(src: Source, orders: Iterable[int], t: int, code: int = 200) -> None:
    for o in orders:
        src.touch(o, t, code)


# --------------------------------------------------------------------------- the oracle


@dataclass
class State:
    """Where every key / event is: the marts, and history as key → period suffix."""

    uti: dict[int, int] = field(default_factory=dict)
    """mart_uni_tracking_info: order → update_time"""
    hist_uti: dict[int, str] = field(default_factory=dict)
    ecs: set[int] = field(default_factory=set)
    hist_ecs: dict[int, str] = field(default_factory=dict)
    uts: set[int] = field(default_factory=set)
    """mart_uni_tracking_spath: event ids"""
    hist_uts: dict[int, str] = field(default_factory=dict)


def expected_state(src: Source, retention: int = RETENTION) -> State:
    """What the mart rules say the warehouse holds once every source row is loaded (restore mode).

    Anchor: an order is active iff its update_time >= MAX(update_time) - retention, else in
    the history period of its update_time. ecs: follows its order, into the SAME period.
    spath: each event by its own pathTime."""
    c = src.con
    uti = dict(
        c.execute(
            "SELECT order_id, update_time FROM uni_tracking_info WHERE order_id IS NOT NULL"
        ).fetchall()
    )
    out = State()
    if uti:
        cutoff = max(uti.values()) - retention
        for o, t in uti.items():
            if t >= cutoff:
                out.uti[o] = t
            else:
                out.hist_uti[o] = Period.of(t).suffix
    for (o,) in c.execute("SELECT order_id FROM ecs_order_info WHERE order_id IS NOT NULL"):
        if o in out.uti:
            out.ecs.add(o)
        else:
            out.hist_ecs[o] = out.hist_uti[o]
    events = c.execute(
        "SELECT id, pathTime FROM uni_tracking_spath WHERE order_id IS NOT NULL"
    ).fetchall()
    if events:
        cutoff = max(t for _, t in events) - retention
        for i, t in events:
            if t >= cutoff:
                out.uts.add(i)
            else:
                out.hist_uts[i] = Period.of(t).suffix
    return out


def _unique(rows: list[tuple[Any, ...]], what: str) -> list[tuple[Any, ...]]:
    keys = [r[0] for r in rows]
    dups = {k for k in keys if keys.count(k) > 1}
    assert not dups, f"{what}: keys held twice: {sorted(dups)[:10]}"
    return rows


def actual_state(wh: Warehouse, schema: str) -> State:
    """The warehouse's marts and history periods; fails on any key held twice."""

    def mart(table: str, cols: str) -> list[tuple[Any, ...]]:
        if not wh.table_exists(schema, table):
            return []
        return _unique(wh.query(f"SELECT {cols} FROM {wh.t(schema, table)}"), table)

    def hist(name: str, col: str) -> dict[Any, str]:
        out: dict[Any, str] = {}
        stem = f"hist_{name}_"
        for table in wh.list_tables(schema, stem):
            for (k,) in wh.query(f"SELECT {wh.q(col)} FROM {wh.t(schema, table)}"):
                assert k not in out, f"{col} {k} is in {table} and in hist_{name}_{out[k]}"
                out[k] = table[len(stem) :]
        return out

    return State(
        uti=dict(mart(UTI, "order_id, update_time")),  # type: ignore[arg-type]
        hist_uti=hist("uti", "order_id"),
        ecs={r[0] for r in mart(ECS, "order_id")},
        hist_ecs=hist("ecs", "order_id"),
        uts={r[0] for r in mart(UTS, "id")},
        hist_uts=hist("uts", "id"),
    )


# --------------------------------------------------------------------------- a busy month or four

NULL = -1
"""A plan entry with this order stands for one NULL-order_id row in each source table."""


def busy_plan(seed: int = 11, orders: int = 30, span_days: int = 60) -> list[tuple[int, int]]:
    """(time, order) touches: short lifecycles, long ones, orders that go dormant for longer
    than the retention and come back, a heartbeat order that moves the data clock every few
    days, and a few NULL-key rows. Deterministic for a seed."""
    rng = random.Random(seed)
    plan: list[tuple[int, int]] = [(day(d) + 600, 1) for d in range(0, span_days + 70, 3)]
    for o in range(2, orders + 2):
        start = day(rng.uniform(0, span_days))
        kind = o % 4
        if kind == 0:  # short
            times = [start + i * rng.randint(3600, 2 * DAY) for i in range(rng.randint(1, 4))]
        elif kind == 1:  # long: every week for ~100 days
            times = [start + i * 7 * DAY + rng.randint(0, 3600) for i in range(15)]
        elif kind == 2:  # dormant > retention, then back
            gap = RETENTION + rng.randint(10, 25) * DAY
            times = [start, start + DAY, start + DAY + gap, start + 2 * DAY + gap]
        else:  # two touches in the same second (tie on time, broken by id)
            times = [start, start, start + 5 * DAY]
        plan += [(t, o) for t in times]
    plan += [(day(d), NULL) for d in (5, 33, 71)]
    return sorted(plan)


class Driver:
    """Feeds a plan into a Source as its clock moves."""

    def __init__(self, src: Source, plan: list[tuple[int, int]]) -> None:
        self.src, self.plan, self.i = src, plan, 0

    def until(self, clock: int) -> None:
        """Write every planned touch before `clock` and set the clock."""
        while self.i < len(self.plan) and self.plan[self.i][0] < clock:
            t, o = self.plan[self.i]
            if o == NULL:
                self.src.null_rows(t)
            else:
                self.src.touch(o, t, code=100 + self.i % 7)
            self.i += 1
        self.src.clock(clock)
