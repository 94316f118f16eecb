"""Three MariaDB databases for the feature-combination tests (test_cross_*.py):

- ``truth``: every order ever written, as it is now: the reference (mart ∪ history must hold
  exactly its rows, computed independently of the warehouse);
- ``legacy`` (the DW `uniods`): a copy of `truth` taken once (`snapshot_legacy`), tables
  named ``dw_<table>``, the same unix INT times;
- ``prod`` (`kuaisong`): only the orders active since `PROD_START`, from the copy on; every
  later write goes to `truth` and `prod` both.

The tables are the order-tracking ones of `parity_world` (ecs on `follow` by uti's order_id,
spath read on its modified time and upserted by its event key).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import MySQLDb
from tests.integration.parity_world import DDL, ECS, ECS_COLS, UTS, UTS_COLS, config_data
from trackline.config import Config, DuckDBWarehouse, PostgresWarehouse
from trackline.load import Warehouse, open_warehouse
from trackline.marts.invariants import check_all

DAY = 86_400
B = 1_735_689_600  # 2025-01-01 UTC
PROD_START = B + 100 * DAY
DW_END = B + 170 * DAY
UTI = "mart_uni_tracking_info"
UTI_COLS = "order_id, update_time, status"
TABLES = ("uni_tracking_info", "ecs_order_info", "uni_tracking_spath")


def mysql_source(db: MySQLDb) -> dict[str, Any]:
    return db.source_dict()


class CrossWorld:
    def __init__(
        self,
        tmp: Path,
        wh_cfg: DuckDBWarehouse | PostgresWarehouse,
        prod: MySQLDb,
        legacy: MySQLDb,
        truth: MySQLDb,
        **kw: Any,
    ) -> None:
        self.prod, self.legacy, self.truth = prod, legacy, truth
        self.spath = kw.get("spath", "newest")
        for db in (prod, truth):
            for ddl in DDL:
                db.execute(ddl)
        for ddl in DDL:
            legacy.execute(ddl.replace("CREATE TABLE ", "CREATE TABLE dw_"))
        self.data = config_data(prod, wh_cfg, tmp / "stage", **kw)
        self.data["sources"] = {"kuaisong": self.data["sources"]["src"]}
        self.data["sources"]["uniods"] = mysql_source(legacy)
        for t in self.data["tables"]:
            t["source"] = "kuaisong"
        self.data["backfill"] = {
            "source": "uniods",
            "batch_size": 20,
            "workers": 2,
            "tables": [{"table": t, "source_table": f"dw_{t}"} for t in TABLES],
        }
        self.cfg = Config.model_validate(self.data)
        self.copied = False
        self.ids = {t: 0 for t in TABLES}
        self.seq: dict[int, int] = {}

    # ---- writing the source

    def _dbs(self, o: int) -> list[MySQLDb]:
        if not self.copied:
            return [self.truth]
        live = self.prod.query("SELECT 1 FROM uni_tracking_info WHERE order_id = %s", (o,))
        return [self.truth, self.prod] if live or o not in self.known() else [self.truth]

    def known(self) -> set[int]:
        return {r[0] for r in self.truth.query("SELECT order_id FROM uni_tracking_info")}

    def _next(self, table: str) -> int:
        self.ids[table] += 1
        return self.ids[table]

    def order(self, o: int, t: int, partner: int = 1) -> None:
        dbs = self._dbs(o)
        i, j = self._next("uni_tracking_info"), self._next("ecs_order_info")
        for db in dbs:
            db.execute(
                "INSERT INTO uni_tracking_info (id, order_id, update_time, status) "
                "VALUES (%s, %s, %s, 's0')",
                (i, o, t),
            )
            db.execute(
                "INSERT INTO ecs_order_info (id, order_id, add_time, partner_id, consignee) "
                "VALUES (%s, %s, %s, %s, 'A')",
                (j, o, t, partner),
            )
        self.event(o, t, 10)

    def event(self, o: int, t: int, code: int) -> int:
        seq = self.seq[o] = self.seq.get(o, 0) + 1
        i = self._next("uni_tracking_spath")
        for db in self._dbs(o):
            db.execute(
                "INSERT INTO uni_tracking_spath (id, order_id, traceSeq, pathTime, code, "
                "time_modified) VALUES (%s, %s, %s, %s, %s, %s)",
                (i, o, seq, t, code, t),
            )
        return i

    def status(self, o: int, t: int, code: int = 200, event: bool = True) -> None:
        for db in self._dbs(o):
            db.execute(
                "UPDATE uni_tracking_info SET update_time = %s, status = %s WHERE order_id = %s",
                (t, f"s{code}", o),
            )
        if event:
            self.event(o, t, code)

    def ecs(self, o: int, **values: Any) -> None:
        sets = ", ".join(f"{k} = %s" for k in values)
        for db in self._dbs(o):
            db.execute(
                f"UPDATE ecs_order_info SET {sets} WHERE order_id = %s", (*values.values(), o)
            )

    def rewrite(self, event_id: int, code: int, t_mod: int) -> None:
        o = self.truth.query("SELECT order_id FROM uni_tracking_spath WHERE id = %s", (event_id,))
        for db in self._dbs(int(o[0][0])):
            db.execute(
                "UPDATE uni_tracking_spath SET code = %s, is_updated = 1, time_modified = %s "
                "WHERE id = %s",
                (code, t_mod, event_id),
            )

    def event_ids(self, o: int) -> list[int]:
        rows = self.truth.query(
            "SELECT id FROM uni_tracking_spath WHERE order_id = %s ORDER BY id", (o,)
        )
        return [int(r[0]) for r in rows]

    def snapshot_legacy(self) -> None:
        """The legacy DW gets everything `truth` holds now; production only the orders
        active since PROD_START. Later writes go to both `truth` and production."""
        src = self.truth.database
        for t in TABLES:
            self.legacy.execute(f"INSERT INTO dw_{t} SELECT * FROM `{src}`.{t}")
        live = f"SELECT order_id FROM `{src}`.uni_tracking_info WHERE update_time >= {PROD_START}"
        for t in TABLES:
            self.prod.execute(
                f"INSERT INTO {t} SELECT * FROM `{src}`.{t} WHERE order_id IN ({live})"
            )
        self.copied = True

    # ---- the warehouse

    def open(self) -> Warehouse:
        wh = open_warehouse(self.cfg.warehouse)
        wh.connect()
        return wh

    def held(self, wh: Warehouse, mart: str, name: str, cols: str) -> list[tuple[Any, ...]]:
        """Every row of the mart and of its history periods (duplicates kept)."""
        sel = ", ".join(wh.q(c.strip()) for c in cols.split(","))
        out: list[tuple[Any, ...]] = []
        tables = [mart] if wh.table_exists("mart", mart) else []
        tables += wh.list_tables("mart", f"hist_{name}_")
        for t in tables:
            out += [tuple(r) for r in wh.query(f"SELECT {sel} FROM {wh.t('mart', t)}")]
        return norm(out)

    def reference(self, table: str, cols: str) -> list[tuple[Any, ...]]:
        return norm([tuple(r) for r in self.truth.query(f"SELECT {cols} FROM {table}")])

    def assert_equal_to_truth(self) -> None:
        """No key twice (mart, history, across both) and mart ∪ history = truth, per table."""
        wh = self.open()
        try:
            assert check_all(self.cfg, wh) == []
            for mart, name, table, cols in (
                (ECS, "ecs", "ecs_order_info", ECS_COLS),
                (UTS, "uts", "uni_tracking_spath", UTS_COLS),
                (UTI, "uti", "uni_tracking_info", UTI_COLS),
            ):
                got, want = self.held(wh, mart, name, cols), self.reference(table, cols)
                missing = [r for r in want if r not in got]
                extra = [r for r in got if r not in want]
                assert (missing, extra) == ([], []), f"{mart}: missing {missing}, extra {extra}"
                assert got == want, mart  # (and nothing twice)
        finally:
            wh.close()


def norm(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(
        (tuple(int(v) if v is not None and not isinstance(v, str) else v for v in r) for r in rows),
        key=repr,
    )


def precondition(check: Callable[[], object]) -> None:
    """Run the set-up check `check` (failing by an AssertionError or by returning False): its
    failure raises RuntimeError, so an xfail(raises=AssertionError) test cannot pass for a
    broken set-up."""
    try:
        ok = check()
    except AssertionError as exc:
        raise RuntimeError(f"set-up check failed: {exc}") from exc
    if ok is False:
        raise RuntimeError("set-up check failed")
