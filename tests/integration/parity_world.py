"""A MariaDB order-tracking source whose ecs rows and spath events change after creation,
the config that follows them, and the checks: current-value equality with the source.

    uni_tracking_info    one row per order, updated in place (update_time, status)
    ecs_order_info       one row per order; no update time, yet partner_id / consignee change
    uni_tracking_spath   scan events; a rewrite sets code, is_updated = 1 and time_modified

`spath` picks how the events mart sees rewrites: "newest" (cursor on time_modified, upsert by
order_id + traceSeq + pathTime), "follow" (re-read every event of each changed order) or
"off" (insert once, as before). `follow_ecs` turns the ecs follow on or off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import MySQLDb
from tests.integration.marts_helpers import warehouse_dict
from trackline.config import Config, DuckDBWarehouse, PostgresWarehouse, RedshiftWarehouse
from trackline.load import Warehouse, open_warehouse
from trackline.marts.cycle import CycleSummary, run_cycle_on
from trackline.marts.invariants import check_all

DAY = 86_400
T0 = 1_767_225_600  # 2026-01-01 UTC: every simulated time lies before the server's clock
RETENTION = 30 * DAY
ECS, UTS, UTI = "mart_ecs_order_info", "mart_uni_tracking_spath", "mart_uni_tracking_info"
ECS_COLS = "id, order_id, add_time, partner_id, consignee"
UTS_COLS = "id, order_id, traceSeq, pathTime, code, is_updated, time_modified"

DDL = [
    "CREATE TABLE uni_tracking_info (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT, "
    "update_time INT NOT NULL, status VARCHAR(20), KEY ix_uti_time (update_time, id))",
    "CREATE TABLE ecs_order_info (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT, "
    "add_time INT NOT NULL, partner_id INT, consignee VARCHAR(40), "
    "KEY ix_ecs_time (add_time, id), KEY ix_ecs_order (order_id))",
    "CREATE TABLE uni_tracking_spath (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT, "
    "traceSeq INT NULL, pathTime INT NOT NULL, code INT, is_updated TINYINT NOT NULL DEFAULT 0, "
    "time_modified INT NOT NULL, KEY ix_uts_mod (time_modified, id), "
    "KEY ix_uts_time (pathTime, id), KEY ix_uts_order (order_id, pathTime))",
]


def config_data(
    db: MySQLDb,
    wh: DuckDBWarehouse | PostgresWarehouse | RedshiftWarehouse,
    stage: Path,
    *,
    follow_ecs: bool = True,
    spath: str = "newest",
) -> dict[str, Any]:
    ecs_cdc: dict[str, Any] = {"strategy": "hybrid", "cursor": "add_time", "id": "id"}
    if follow_ecs:
        ecs_cdc = {**ecs_cdc, "strategy": "follow", "follow": "uni_tracking_info"}
        ecs_cdc["follow_key"] = "order_id"
    uts_cdc: dict[str, Any] = {"strategy": "hybrid", "cursor": "pathTime", "id": "id"}
    uts: dict[str, Any] = {
        "table": UTS,
        "source": "uni_tracking_spath",
        "kind": "events",
        "time": "pathTime",
        "event_key": ["order_id", "traceSeq", "pathTime"],
        "history_name": "uts",
    }
    if spath == "newest":
        uts_cdc["cursor"] = "time_modified"
        uts |= {"changes": "newest", "version": "time_modified"}
    elif spath == "follow":
        uts_cdc |= {"strategy": "follow", "follow": "uni_tracking_info", "follow_key": "order_id"}
        uts |= {"changes": "follow"}
    return {
        "sources": {"src": db.source_dict()},
        "warehouse": warehouse_dict(wh),
        "stage": {"url": str(stage)},
        "defaults": {"lag_seconds": 0},
        "tables": [
            {
                "name": "uni_tracking_info",
                "target_schema": "raw",
                "cdc": {"strategy": "hybrid", "cursor": "update_time", "id": "id"},
            },
            {"name": "ecs_order_info", "target_schema": "raw", "cdc": ecs_cdc},
            {"name": "uni_tracking_spath", "target_schema": "raw", "cdc": uts_cdc},
        ],
        "marts": [
            {
                "name": "order_tracking",
                "schema": "mart",
                "retention_seconds": RETENTION,
                "followers": [
                    {
                        "table": ECS,
                        "source": "ecs_order_info",
                        "kind": "one_per_key",
                        "history_name": "ecs",
                    },
                    uts,
                ],
            }
        ],
    }


class World:
    def __init__(
        self,
        tmp: Path,
        wh_cfg: DuckDBWarehouse | PostgresWarehouse | RedshiftWarehouse,
        db: MySQLDb,
        **kw: Any,
    ) -> None:
        self.db = db
        for ddl in DDL:
            db.execute(ddl)
        self.data = config_data(db, wh_cfg, tmp / "stage", **kw)
        self.cfg = Config.model_validate(self.data)
        self.wh: Warehouse = open_warehouse(self.cfg.warehouse)
        self.wh.connect()
        self.seq: dict[int, int] = {}

    def close(self) -> None:
        self.wh.close()

    # ---- the source

    def order(self, o: int, t: int, partner: int = 1, consignee: str = "A") -> None:
        self.db.execute(
            "INSERT INTO uni_tracking_info (order_id, update_time, status) VALUES (%s, %s, 's0')",
            (o, t),
        )
        self.db.execute(
            "INSERT INTO ecs_order_info (order_id, add_time, partner_id, consignee) "
            "VALUES (%s, %s, %s, %s)",
            (o, t, partner, consignee),
        )
        self.event(o, t, 10)

    def event(self, o: int, t: int, code: int, seq: int | None = -1) -> None:
        if seq == -1:
            seq = self.seq[o] = self.seq.get(o, 0) + 1
        self.db.execute(
            "INSERT INTO uni_tracking_spath (order_id, traceSeq, pathTime, code, time_modified) "
            "VALUES (%s, %s, %s, %s, %s)",
            (o, seq, t, code, t),
        )

    def status(self, o: int, t: int, code: int = 200, event: bool = True) -> None:
        self.db.execute(
            "UPDATE uni_tracking_info SET update_time = %s, status = %s WHERE order_id = %s",
            (t, f"s{code}", o),
        )
        if event:
            self.event(o, t, code)

    def ecs(self, o: int, **values: Any) -> None:
        sets = ", ".join(f"{k} = %s" for k in values)
        self.db.execute(
            f"UPDATE ecs_order_info SET {sets} WHERE order_id = %s", (*values.values(), o)
        )

    def rewrite(self, event_id: int, code: int, t_mod: int) -> None:
        self.db.execute(
            "UPDATE uni_tracking_spath SET code = %s, is_updated = 1, time_modified = %s "
            "WHERE id = %s",
            (code, t_mod, event_id),
        )

    def event_ids(self, o: int) -> list[int]:
        return [
            r[0]
            for r in self.db.query(
                "SELECT id FROM uni_tracking_spath WHERE order_id = %s ORDER BY id", (o,)
            )
        ]

    # ---- the warehouse

    def cycle(self) -> CycleSummary:
        s = run_cycle_on(self.cfg, self.wh)
        assert s.ok, s.as_dict()
        return s

    def t(self, table: str) -> str:
        return self.wh.t("mart", table)

    def hist_tables(self, name: str) -> list[str]:
        return self.wh.list_tables("mart", f"hist_{name}_")

    def rows(self, table: str, cols: str) -> list[tuple[Any, ...]]:
        if not self.wh.table_exists("mart", table):
            return []
        sel = ", ".join(self.wh.q(c.strip()) for c in cols.split(","))
        return [tuple(r) for r in self.wh.query(f"SELECT {sel} FROM {self.t(table)}")]

    def held(self, mart: str, name: str, cols: str) -> list[tuple[Any, ...]]:
        """Every row of the mart and its history periods (sorted; duplicates kept)."""
        out = self.rows(mart, cols)
        for h in self.hist_tables(name):
            out += self.rows(h, cols)
        return sorted(out, key=repr)

    def source(self, table: str, cols: str) -> list[tuple[Any, ...]]:
        rows = self.db.query(f"SELECT {cols} FROM {table} WHERE order_id IS NOT NULL")
        return sorted(
            (
                tuple(int(v) if v is not None and not isinstance(v, str) else v for v in r)
                for r in rows
            ),
            key=repr,
        )

    def norm(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return sorted(
            (
                tuple(int(v) if v is not None and not isinstance(v, str) else v for v in r)
                for r in rows
            ),
            key=repr,
        )

    def assert_equal_to_source(self, what: tuple[str, ...] = ("ecs", "uts")) -> None:
        """G1 (no key twice, in a mart or across mart and history) and, for each table, mart
        ∪ history holding exactly the source's current rows."""
        assert check_all(self.cfg, self.wh) == []
        if "ecs" in what:
            assert self.norm(self.held(ECS, "ecs", ECS_COLS)) == self.source(
                "ecs_order_info", ECS_COLS
            )
        if "uts" in what:
            assert self.norm(self.held(UTS, "uts", UTS_COLS)) == self.source(
                "uni_tracking_spath", UTS_COLS
            )
        uti = self.norm(self.held(UTI, "uti", "order_id, update_time, status"))
        assert uti == self.source("uni_tracking_info", "order_id, update_time, status")
