"""G2 and G3 under real concurrency: writers change a MariaDB table while sync runs and dies.

Two writer threads, each on its own connection, insert and update rows stamped with the
source clock (`NOW(6)`) in short transactions, in transactions held open across several
syncs (they commit rows whose timestamps are older than rows committed meanwhile: the
classic lost-row case of timestamp CDC), and in transactions that roll back. Meanwhile the
main thread syncs over and over with small batches into a merge target, and one sync in two
is killed at a random step. After the writers stop and one last sync runs, the target must
equal the source row for row: nothing lost, nothing twice, every row at its last version.

The lag is 0, so the InnoDB hold (the upper bound held at the oldest open write
transaction) is all that keeps a late commit's rows above the watermark; and only a fresh
read of `information_schema.innodb_trx` makes that hold exact (its cache is refreshed at
most every 0.1 s). With the fresh read removed, or `innodb_hold: false`, these runs lose
rows.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import pymysql
import pytest

from tests.conftest import MySQLDb, S3Endpoint
from tests.integration.synctools import (
    create_orders,
    make_config,
    source_rows,
    sync_ok,
    table,
    wait_for_no_other_writers,
    wh_rows,
)
from trackline import faults
from trackline.config import Config, DuckDBWarehouse, PostgresWarehouse, StageConfig
from trackline.errors import InjectedFault
from trackline.sync import sync

Warehouse: TypeAlias = DuckDBWarehouse | PostgresWarehouse
STEPS = ("sync.after_extract", "sync.after_stage", "sync.before_commit", "sync.after_commit")


@dataclass
class Writers:
    """Writer threads on their own connections; `stop()` joins them and re-raises."""

    mysql_db: MySQLDb
    seed: int
    hold_seconds: tuple[float, float] = (0.3, 1.2)
    errors: list[BaseException] = field(default_factory=list)
    late_commits: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, n: int = 2) -> None:
        for i in range(n):
            t = threading.Thread(target=self._run, args=(self.seed * 10 + i,), daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        if self.errors:
            raise self.errors[0]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        con = self.mysql_db.connect()
        try:
            con.autocommit(False)
            n = 0
            while not self._stop.is_set():
                n += 1
                try:
                    self._transaction(con, rng, seed, n)
                except pymysql.err.OperationalError as e:
                    if e.args[0] not in (1205, 1213):  # lock wait timeout, deadlock: retry
                        raise
                    con.rollback()
                time.sleep(rng.uniform(0.02, 0.12))
        except BaseException as e:  # noqa: BLE001 - surfaced by stop()
            self.errors.append(e)
        finally:
            con.close()

    def _transaction(self, con: Any, rng: random.Random, seed: int, n: int) -> None:
        with con.cursor() as cur:
            cur.execute("BEGIN")
            for _ in range(rng.randint(1, 4)):
                if rng.random() < 0.5:
                    cur.execute(
                        "INSERT INTO orders (order_no, status, amount, update_time) "
                        "VALUES (%s, 'new', %s, NOW(6))",
                        (f"W{seed}-{n}-{rng.random():.9f}", rng.randint(1, 99)),
                    )
                else:  # an existing row, often one written moments ago
                    cur.execute(
                        "UPDATE orders SET status = %s, amount = amount + 1, "
                        "update_time = NOW(6) WHERE id = %s",
                        (f"u{seed}-{n}", rng.randint(1, 50 + 2 * n)),
                    )
        roll = rng.random()
        if roll < 0.15:  # held open across syncs, committed late
            time.sleep(rng.uniform(*self.hold_seconds))
            con.commit()
            self.late_commits += 1
        elif roll < 0.25:
            con.rollback()
        else:
            con.commit()


def _sync_with_kills(cfg: Config, rng: random.Random, monkeypatch: pytest.MonkeyPatch) -> int:
    """One sync, killed at a random step one time in two (then run again). Kills made."""
    kills = 0
    if rng.random() < 0.5:
        step = rng.choice(STEPS)
        faults.reset()
        monkeypatch.setenv("TRACKLINE_FAIL_AT", step)
        try:
            results = sync(cfg, None)
            kills += any(r.status != "ok" for r in results)
        except InjectedFault:
            kills += 1
        finally:
            monkeypatch.delenv("TRACKLINE_FAIL_AT")
            faults.reset()
    sync_ok(cfg)
    return kills


def _key_counts(cfg: Config) -> list[Any]:
    keys = [r[0] for r in wh_rows(cfg, "public.orders", ["id"])]
    return sorted({k for k in keys if keys.count(k) > 1})


def _run(
    mysql_db: MySQLDb,
    wh_cfg: Warehouse,
    stage: Path | StageConfig,
    monkeypatch: pytest.MonkeyPatch,
    *,
    hold: bool,
    seconds: float,
    seed: int,
) -> tuple[Config, Writers, int]:
    create_orders(mysql_db, 50, dt.datetime(2024, 3, 1, 8))
    # these writers never wait for a table lock: a short margin keeps the syncs moving rows
    cfg = make_config(
        mysql_db,
        wh_cfg,
        stage,
        [table(batch_size=7, write_mode="merge")],
        hold=hold,
        lock_wait_margin_seconds=1,
    )
    sync_ok(cfg)
    rng = random.Random(seed)
    writers = Writers(mysql_db, seed)
    writers.start()
    kills = 0
    try:
        # at least `seconds` of writing and at least 3 kills (a kill only lands in a sync
        # that has rows to move; on a loaded machine there are fewer of them per second)
        start = time.monotonic()
        while time.monotonic() - start < seconds or (
            kills < 3 and time.monotonic() - start < 6 * seconds
        ):
            kills += _sync_with_kills(cfg, rng, monkeypatch)
            assert _key_counts(cfg) == [], "a key held twice in the merge target"
    finally:
        writers.stop()
    wait_for_no_other_writers(mysql_db)
    time.sleep(0.2)  # information_schema.innodb_trx is refreshed every 0.1 s
    return cfg, writers, kills


@pytest.mark.servers
@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_concurrent_writers_and_killed_syncs_lose_nothing(
    mysql_db: MySQLDb,
    warehouse_config: Warehouse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    hold_serial: None,
    seed: int,
) -> None:
    cfg, writers, kills = _run(
        mysql_db, warehouse_config, tmp_path / "stage", monkeypatch, hold=True, seconds=8, seed=seed
    )
    sync_ok(cfg)
    assert wh_rows(cfg, "public.orders") == source_rows(mysql_db)
    assert writers.late_commits >= 3 and kills >= 3, (writers.late_commits, kills)


@pytest.mark.servers
@pytest.mark.slow
def test_concurrent_writers_and_killed_syncs_through_the_s3_stage(
    mysql_db: MySQLDb,
    s3: S3Endpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    hold_serial: None,
) -> None:
    """The same through a real S3 endpoint (moto over HTTP): staged files, manifests and
    replays of a killed batch on the object store."""
    wh = DuckDBWarehouse(path=tmp_path / "wh.duckdb")
    cfg, writers, kills = _run(
        mysql_db, wh, s3.stage_config("stage"), monkeypatch, hold=True, seconds=8, seed=3
    )
    sync_ok(cfg)
    assert wh_rows(cfg, "public.orders") == source_rows(mysql_db)
    assert writers.late_commits >= 3 and kills >= 3, (writers.late_commits, kills)
