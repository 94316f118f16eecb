"""A small order-tracking pipeline with history, for the quality, alert and report tests.

SQLite source (unix-integer times, lag 0, the clock in `trackline_clock`), marts in schema
`mart` with a 30-day retention, raw in `raw`, state in `trackline`. `World.build()` runs five
cycles over ~46 days so that anchor rows, follower rows and events have reached history.

Keys: order 1 is archived whole; order 2's first event is in history while its anchor row is
active; orders 3-8 are recent; order 9 is a heartbeat touched every three days.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from tests.integration.marts_helpers import warehouse_dict
from trackline.config import Config, DuckDBWarehouse, PostgresWarehouse
from trackline.load import Warehouse, open_warehouse
from trackline.marts.cycle import CycleSummary, run_cycle_on

DAY = 86_400
T0 = 1_767_225_600  # 2026-01-01 00:00:00 UTC
UTI, ECS, UTS = "mart_uni_tracking_info", "mart_ecs_order_info", "mart_uni_tracking_spath"
MART, RAW, STATE = "mart", "raw", "trackline"
EXCEPTIONS = "order_tracking_exceptions"


def day(n: float) -> int:
    return T0 + int(n * DAY)


class World:
    def __init__(
        self, tmp: Path, wh_cfg: DuckDBWarehouse | PostgresWarehouse, **quality: Any
    ) -> None:
        self.tmp = tmp
        self.src_path = tmp / "src.db"
        self.con = sqlite3.connect(self.src_path)
        self.con.executescript(
            """
            CREATE TABLE uni_tracking_info (id INTEGER PRIMARY KEY, order_id INTEGER,
              update_time INTEGER NOT NULL, status TEXT);
            CREATE TABLE ecs_order_info (id INTEGER PRIMARY KEY, order_id INTEGER,
              add_time INTEGER NOT NULL, partner_id INTEGER);
            CREATE TABLE uni_tracking_spath (id INTEGER PRIMARY KEY, order_id INTEGER,
              pathTime INTEGER NOT NULL, code INTEGER);
            CREATE TABLE trackline_clock (now INTEGER);
            INSERT INTO trackline_clock VALUES (0);
            """
        )
        self.con.commit()
        self.known: set[int] = set()
        self.data = self.config_dict(wh_cfg, quality)
        self.cfg = Config.model_validate(self.data)
        self.wh: Warehouse = open_warehouse(self.cfg.warehouse)
        self.wh.connect()

    def config_dict(
        self, wh_cfg: DuckDBWarehouse | PostgresWarehouse, quality: dict[str, Any]
    ) -> dict[str, Any]:
        def table(name: str, cursor: str) -> dict[str, Any]:
            return {
                "name": name,
                "target_schema": RAW,
                "cdc": {"strategy": "hybrid", "cursor": cursor, "id": "id"},
            }

        return {
            "sources": {"src": {"type": "sqlite", "path": str(self.src_path)}},
            "warehouse": warehouse_dict(wh_cfg),
            "stage": {"url": str(self.tmp / "stage")},
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
                    "retention_seconds": 30 * DAY,
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
            "quality": {"freshness_seconds": 2 * DAY, **quality},
        }

    def reconfigure(self, **quality: Any) -> Config:
        data = dict(self.data)
        data["quality"] = {**data["quality"], **quality}
        self.cfg = Config.model_validate(data)
        return self.cfg

    def close(self) -> None:
        self.wh.close()
        self.con.close()

    # ------------------------------------------------------------------ the source

    def touch(self, order: int, t: int, status: str = "moving") -> None:
        """One status change: the uti row moves to `t`, one scan event at `t`."""
        c = self.con
        if order not in self.known:
            self.known.add(order)
            c.execute(
                "INSERT INTO uni_tracking_info (order_id, update_time, status) VALUES (?, ?, ?)",
                (order, t, status),
            )
            c.execute(
                "INSERT INTO ecs_order_info (order_id, add_time, partner_id) VALUES (?, ?, 382)",
                (order, t),
            )
        else:
            c.execute(
                "UPDATE uni_tracking_info SET update_time = ?, status = ? WHERE order_id = ?",
                (t, status, order),
            )
        c.execute(
            "INSERT INTO uni_tracking_spath (order_id, pathTime, code) VALUES (?, ?, 200)",
            (order, t),
        )
        c.commit()

    def clock(self, t: int) -> None:
        self.con.execute("UPDATE trackline_clock SET now = ?", (t,))
        self.con.commit()

    def step(self, t: int) -> CycleSummary:
        self.clock(t)
        return run_cycle_on(self.cfg, self.wh)

    def build(self) -> World:
        plan = [(day(0), 1), (day(1), 1), (day(2), 2), (day(40), 2)]
        plan += [(day(35 + i), o) for i, o in enumerate(range(3, 9))]
        plan += [(day(d) + 600, 9) for d in range(0, 46, 3)]
        plan.sort()
        i = 0
        for clock in (day(10), day(20), day(30), day(40), day(46)):
            while i < len(plan) and plan[i][0] < clock:
                self.touch(plan[i][1], plan[i][0])
                i += 1
            summary = self.step(clock)
            assert summary.ok, summary.as_dict()
        return self

    # ------------------------------------------------------------------ the warehouse

    def t(self, table: str, schema: str = MART) -> str:
        return self.wh.t(schema, table)

    def open_exceptions(self, check: str) -> list[str | None]:
        schema, table = (
            (MART, EXCEPTIONS)
            if not check.startswith(("runs.", "custom"))
            else (STATE, "check_exceptions")
        )
        rows = self.wh.query(
            f"SELECT key_value FROM {self.wh.t(schema, table)} WHERE status = 'open' "
            "AND check_name = ? ORDER BY key_value",
            (check,),
        )
        return [r[0] for r in rows]
