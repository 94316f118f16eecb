"""Helpers shared by the `trackline sync` integration tests (plain functions, no fixtures).

Every helper talks to the real servers: the source through PyMySQL (the `mysql_db` fixture),
the warehouse through trackline's own adapter (`open_warehouse`), so what is asserted is
what a user would see with `psql` or `duckdb`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from tests.conftest import MySQLDb
from trackline import faults
from trackline.config import (
    Config,
    Defaults,
    DuckDBWarehouse,
    PostgresWarehouse,
    StageConfig,
    TableConfig,
)
from trackline.errors import InjectedFault
from trackline.extract.cdc import Watermark
from trackline.extract.mysql import WRITE_STATEMENT
from trackline.load import Warehouse, open_warehouse
from trackline.sync import BATCH_COL, TableResult, sync

SOURCE = "kuaisong"

ORDERS_DDL = """
CREATE TABLE orders (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  order_no VARCHAR(32) NOT NULL,
  status VARCHAR(16),
  amount DECIMAL(10,2),
  update_time DATETIME(6) NOT NULL,
  KEY ix_update (update_time, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""
ORDER_COLS = ["id", "order_no", "status", "amount", "update_time"]


def table(
    name: str = "orders",
    *,
    strategy: str = "hybrid",
    cursor: str | None = "update_time",
    id: str | None = "id",  # noqa: A002 - the config key's name
    **kw: Any,
) -> TableConfig:
    cdc: dict[str, Any] = {"strategy": strategy}
    if cursor and strategy in ("hybrid", "timestamp"):
        cdc["cursor"] = cursor
    if id and strategy in ("hybrid", "id"):
        cdc["id"] = id
    kw.setdefault("lag_seconds", 0)
    return TableConfig.model_validate({"name": name, "cdc": cdc, **kw})


def make_config(
    mysql_db: MySQLDb,
    warehouse: DuckDBWarehouse | PostgresWarehouse,
    stage: Path | str | StageConfig,
    tables: Sequence[TableConfig],
    *,
    hold: bool = False,
    **defaults: Any,
) -> Config:
    """A config with the single source `kuaisong`. The InnoDB hold is off unless asked for:
    tests run in parallel on one MariaDB server, and another test's open transaction would
    otherwise hold this test's upper bound."""
    stage_cfg = stage if isinstance(stage, StageConfig) else StageConfig(url=str(stage))
    return Config(
        sources={SOURCE: mysql_db.source_config(innodb_hold=hold)},
        warehouse=warehouse,
        stage=stage_cfg,
        defaults=Defaults(**defaults),
        tables=list(tables),
    )


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def config_yaml(cfg: Config, **replace: Any) -> str:
    """The config as the YAML a user would write (for CLI tests); `replace` sets top-level
    keys verbatim (e.g. a source with `${ENV}` placeholders)."""
    data = _plain(cfg.model_dump(mode="python", by_alias=True, exclude={"marts"}))
    data.update(replace)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def write_config(path: Path, cfg: Config, **replace: Any) -> Path:
    path.write_text(config_yaml(cfg, **replace), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- warehouse


@contextlib.contextmanager
def warehouse(cfg: Config) -> Iterator[Warehouse]:
    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        yield wh
    finally:
        wh.close()


def wh_query(cfg: Config, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with warehouse(cfg) as wh:
        return wh.query(sql, params)


def wh_exists(cfg: Config, schema: str, name: str) -> bool:
    with warehouse(cfg) as wh:
        return wh.table_exists(schema, name)


def wh_rows(
    cfg: Config,
    key: str,
    columns: Sequence[str] = ORDER_COLS,
    order: Sequence[str] = ("id",),
) -> list[tuple[Any, ...]]:
    """Rows of `schema.table` (normalised: unsigned/decimal integers from PostgreSQL stay
    Decimal; callers compare with `norm`)."""
    schema, name = key.split(".")
    with warehouse(cfg) as wh:
        sql = (
            f"SELECT {wh.cols(list(columns))} FROM {wh.t(schema, name)} "
            f"ORDER BY {wh.cols(list(order))}"
        )
        return [tuple(norm(v) for v in r) for r in wh.query(sql)]


def wh_count(cfg: Config, key: str) -> int:
    schema, name = key.split(".")
    with warehouse(cfg) as wh:
        return int(wh.scalar(f"SELECT COUNT(*) FROM {wh.t(schema, name)}"))


def state_watermark(cfg: Config, key: str) -> Watermark:
    rows = wh_query(
        cfg, f"SELECT value FROM {cfg.state_schema}.watermarks WHERE table_key = ?", (key,)
    )
    return Watermark.from_json(rows[0][0]) if rows else Watermark()


def ledger(cfg: Config, key: str) -> list[tuple[int, int]]:
    """(batch_id, row_count) of every committed batch of a table."""
    rows = wh_query(
        cfg,
        f"SELECT batch_id, row_count FROM {cfg.state_schema}.batches WHERE table_key = ? "
        "ORDER BY batch_id",
        (key,),
    )
    return [(int(a), int(b)) for a, b in rows]


def batch_ids(cfg: Config, key: str) -> list[int]:
    schema, name = key.split(".")
    with warehouse(cfg) as wh:
        rows = wh.query(f"SELECT DISTINCT {wh.q(BATCH_COL)} FROM {wh.t(schema, name)} ORDER BY 1")
    return [int(r[0]) for r in rows]


def norm(v: Any) -> Any:
    """One Python value per meaning: integral Decimals (PostgreSQL DECIMAL(20,0) for unsigned
    BIGINT) become int, memoryview becomes bytes."""
    if isinstance(v, decimal.Decimal) and v == v.to_integral_value() and v.as_tuple().exponent == 0:
        return int(v)
    if isinstance(v, memoryview):
        return bytes(v)
    return v


# --------------------------------------------------------------------------- sync


def sync_ok(cfg: Config, tables: list[str] | None = None, **kw: Any) -> list[TableResult]:
    results = sync(cfg, tables, **kw)
    bad = [(r.table, r.error) for r in results if r.status != "ok"]
    assert not bad, bad
    return results


def run_faulted(cfg: Config, step: str, monkeypatch: Any) -> None:
    """A sync stopped at the named step (`TRACKLINE_FAIL_AT`, e.g. ``sync.after_commit@3``):
    it must raise `InjectedFault`; the fault is cleared afterwards."""
    import pytest

    monkeypatch.setenv("TRACKLINE_FAIL_AT", step)
    faults.reset()
    try:
        with pytest.raises(InjectedFault):
            sync(cfg)
    finally:
        monkeypatch.delenv("TRACKLINE_FAIL_AT")
        faults.reset()


def one(results: list[TableResult]) -> TableResult:
    assert len(results) == 1, results
    return results[0]


# --------------------------------------------------------------------------- source


def source_now(mysql_db: MySQLDb) -> dt.datetime:
    value = mysql_db.query("SELECT NOW(6)")[0][0]
    assert isinstance(value, dt.datetime)
    return value


def source_rows(
    mysql_db: MySQLDb, tbl: str = "orders", columns: Sequence[str] = ORDER_COLS
) -> list[tuple[Any, ...]]:
    cols = ", ".join(f"`{c}`" for c in columns)
    return [
        tuple(norm(v) for v in r) for r in mysql_db.query(f"SELECT {cols} FROM `{tbl}` ORDER BY id")
    ]


def insert_orders(
    mysql_db: MySQLDb, times: Sequence[dt.datetime | str], *, status: str = "new"
) -> None:
    """One order per time; `order_no` is unique; 'NOW' means the source clock at insert."""
    rows = []
    for i, ts in enumerate(times):
        rows.append((f"N{dt.datetime.now().timestamp():.6f}-{i}", status, f"{i}.25", ts))
    plain = [r for r in rows if r[3] != "NOW"]
    now = [r[:3] for r in rows if r[3] == "NOW"]
    if plain:
        mysql_db.executemany(
            "INSERT INTO orders (order_no, status, amount, update_time) VALUES (%s,%s,%s,%s)",
            plain,
        )
    if now:
        mysql_db.executemany(
            "INSERT INTO orders (order_no, status, amount, update_time) VALUES (%s,%s,%s,NOW(6))",
            now,
        )


def create_orders(mysql_db: MySQLDb, n: int, start: dt.datetime, step_seconds: float = 1) -> None:
    mysql_db.execute(ORDERS_DDL)
    insert_orders(mysql_db, [start + dt.timedelta(seconds=i * step_seconds) for i in range(n)])


def wait_for_no_other_writers(mysql_db: MySQLDb, *mine: int, timeout: float = 30.0) -> None:
    """The InnoDB hold is server-wide: before a test that asserts on it, wait until no other
    connection (another test, a benchmark) has an open transaction that modified rows or a
    write statement running."""
    import time

    deadline = time.monotonic() + timeout
    others: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline:
        others = [
            r
            for r in mysql_db.query(
                "SELECT trx_mysql_thread_id, trx_started FROM information_schema.innodb_trx "
                "WHERE trx_rows_modified > 0"
            )
            if r[0] not in mine
        ] + [  # running write statements hold the bound too (trackline.extract.mysql)
            r
            for r in mysql_db.query(
                "SELECT ID, INFO FROM information_schema.PROCESSLIST "
                "WHERE COMMAND = 'Query' AND ID <> CONNECTION_ID() AND INFO IS NOT NULL"
            )
            if r[0] not in mine and WRITE_STATEMENT.match(str(r[1]))
        ]
        if not others:
            return
        time.sleep(0.2)
    raise AssertionError(f"other write transactions stayed open for {timeout}s: {others}")


def sync_when_quiet(
    mysql_db: MySQLDb, cfg: Config, *mine: int, expect: int, within: float = 90.0
) -> list[TableResult]:
    """Sync one table once no other connection writes, until `expect` rows have been read.

    The hold is server-wide: another test's write transaction that opens between the wait
    and the read holds this sync too, and it reads less. Such a sync is retried after
    waiting again, for up to `within` seconds (a test on the other worker that writes in a
    loop, the demo's simulated months say, can hold several attempts in a row: CI once saw
    four). The rows of all attempts add up, so a row the sync lost (its watermark passed
    it) still fails the caller's assertion on the total, after `within` seconds."""
    import time

    results: list[TableResult] = []
    deadline = time.monotonic() + within
    pause = 0.1
    while True:
        wait_for_no_other_writers(mysql_db, *mine)
        results.append(one(sync_ok(cfg)))
        if sum(r.rows for r in results) >= expect:
            return results
        if time.monotonic() > deadline:
            # what held the bound, for the failure the caller's assertion will report
            held = mysql_db.query(
                "SELECT trx_mysql_thread_id, trx_started, trx_rows_modified, trx_query "
                "FROM information_schema.innodb_trx"
            )
            running = mysql_db.query(
                "SELECT ID, DB, COMMAND, TIME_MS, LEFT(INFO, 120) "
                "FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()"
            )
            warnings = [w for r in results for w in r.warnings]
            print(
                f"sync_when_quiet: {len(results)} tries read {sum(r.rows for r in results)} "
                f"of {expect} rows; mine {mine}; innodb_trx {held}; processlist {running}; "
                f"warnings {warnings}"
            )
            return results
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


@contextlib.contextmanager
def mysql_user(
    mysql_db: MySQLDb, password: str, privileges: str = "ALL PRIVILEGES"
) -> Iterator[str]:
    """A MariaDB user with `password` and `privileges` on the test database, dropped after."""
    import uuid

    name = f"tlu_{uuid.uuid4().hex[:8]}"
    hosts = ("%", "localhost", "127.0.0.1")
    try:
        for host in hosts:
            pattern = host.replace("%", "%%")  # PyMySQL formats the statement with `%`
            mysql_db.execute(f"CREATE USER '{name}'@'{pattern}' IDENTIFIED BY %s", (password,))
            mysql_db.execute(f"GRANT {privileges} ON `{mysql_db.database}`.* TO '{name}'@'{host}'")
        yield name
    finally:
        for host in hosts:
            with contextlib.suppress(Exception):
                mysql_db.execute(f"DROP USER IF EXISTS '{name}'@'{host}'")
