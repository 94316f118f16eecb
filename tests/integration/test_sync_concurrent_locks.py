"""The concurrent random walk with lock waits and an `id` table (sibling of
test_sync_concurrent.py).

Two writer threads change `orders` (hybrid, merge target) and append to `events` (`id`,
append target) in transactions that commit at once, commit late (held open across syncs) or
roll back. Some of their statements are `UPDATE orders JOIN side …`, and a third thread takes
`LOCK TABLES side WRITE` now and then: those statements wait for the metadata lock, stamped
before InnoDB starts their transaction (the case `lock_wait_margin_seconds` covers). Events
commit their AUTO_INCREMENT ids out of order (the case the id hold covers). Meanwhile the
main thread syncs both tables over and over, one sync in two killed at a random step. After
the writers stop and a last sync runs, both targets equal their source row for row, and
`runs.behind_watermark` finds nothing.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.conftest import MySQLDb
from tests.integration.synctools import (
    create_orders,
    make_config,
    source_rows,
    sync_ok,
    table,
    wait_for_no_other_writers,
    warehouse,
    wh_rows,
)
from tests.integration.test_sync_concurrent import Warehouse, _sync_with_kills
from trackline.quality.behind import behind_watermark_check
from trackline.quality.run import run_checks

EVENTS_DDL = (
    "CREATE TABLE events (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, order_id BIGINT, "
    "code VARCHAR(40)) ENGINE=InnoDB"
)
EVENT_COLS = ["id", "order_id", "code"]
LOCK_WAIT_TIMEOUT = 3
"""Seconds a writer's statement may wait for the metadata lock (`lock_wait_timeout`): the
margin below must be longer."""


@dataclass
class LockingWriters:
    mysql_db: MySQLDb
    seed: int
    errors: list[BaseException] = field(default_factory=list)
    late_commits: int = 0
    lock_waits: int = 0
    id_late_commits: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        # writer 0 also updates through `side` (and may wait for its lock); writer 1 never
        # does, so it keeps committing newer rows while writer 0 waits
        targets = [(self._writer, self.seed * 10), (self._writer, self.seed * 10 + 1)]
        targets.append((self._locker, self.seed * 10 + 2))
        for fn, s in targets:
            t = threading.Thread(target=fn, args=(s,), daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        if self.errors:
            raise self.errors[0]

    def _connect(self) -> Any:
        con = self.mysql_db.connect()
        con.autocommit(False)
        with con.cursor() as cur:
            cur.execute(f"SET SESSION lock_wait_timeout = {LOCK_WAIT_TIMEOUT}")
            cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
        return con

    def _locker(self, seed: int) -> None:
        rng = random.Random(seed)
        con = self._connect()
        try:
            while not self._stop.is_set():
                time.sleep(rng.uniform(0.3, 1.2))
                try:
                    with con.cursor() as cur:
                        cur.execute("LOCK TABLES side WRITE")
                        time.sleep(rng.uniform(0.8, 2.0))
                        cur.execute("UNLOCK TABLES")
                except pymysql.err.OperationalError as e:
                    if e.args[0] not in (1205, 1213):
                        raise
                    with con.cursor() as cur:
                        cur.execute("UNLOCK TABLES")
        except BaseException as e:  # noqa: BLE001 - surfaced by stop()
            self.errors.append(e)
        finally:
            con.close()

    def _writer(self, seed: int) -> None:
        rng = random.Random(seed)
        con = self._connect()
        try:
            n = 0
            while not self._stop.is_set():
                n += 1
                try:
                    self._transaction(con, rng, seed, n)
                except pymysql.err.OperationalError as e:
                    if e.args[0] not in (1205, 1213):  # lock wait timeout, deadlock
                        raise
                    con.rollback()
                time.sleep(rng.uniform(0.02, 0.1))
        except BaseException as e:  # noqa: BLE001 - surfaced by stop()
            self.errors.append(e)
        finally:
            con.close()

    def _transaction(self, con: Any, rng: random.Random, seed: int, n: int) -> None:
        if seed % 10 == 0 and rng.random() < 0.35:
            self._joined(con, rng, seed, n)
            return
        wrote_event = False
        with con.cursor() as cur:
            cur.execute("BEGIN")
            for _ in range(rng.randint(1, 4)):
                roll = rng.random()
                if roll < 0.3:
                    cur.execute(
                        "INSERT INTO orders (order_no, status, amount, update_time) "
                        "VALUES (%s, 'new', %s, NOW(6))",
                        (f"W{seed}-{n}-{rng.random():.9f}", rng.randint(1, 99)),
                    )
                elif roll < 0.5:
                    cur.execute(
                        "UPDATE orders SET status = %s, amount = amount + 1, "
                        "update_time = NOW(6) WHERE id = %s",
                        (f"u{seed}-{n}", rng.randint(1, 40 + n)),
                    )
                elif roll < 0.6:
                    cur.execute(
                        "INSERT INTO orders (order_no, status, amount, update_time) "
                        "VALUES (%s, 'new', %s, NOW(6))",
                        (f"X{seed}-{n}-{rng.random():.9f}", rng.randint(1, 99)),
                    )
                else:
                    cur.execute(
                        "INSERT INTO events (order_id, code) VALUES (%s, %s)",
                        (rng.randint(1, 40 + n), f"e{seed}-{n}-{rng.random():.6f}"),
                    )
                    wrote_event = True
        self._finish(con, rng, wrote_event)

    def _joined(self, con: Any, rng: random.Random, seed: int, n: int) -> None:
        """An UPDATE through `side`, which waits while the locker holds it (stamped NOW() at
        its start, before InnoDB begins the transaction), then the transaction stays open
        across syncs before it commits."""
        with con.cursor() as cur:
            cur.execute("BEGIN")
            t0 = time.monotonic()
            cur.execute(
                "UPDATE orders JOIN side ON side.id = 1 SET orders.status = %s, "
                "orders.update_time = NOW(6) WHERE orders.id = %s",
                (f"j{seed}-{n}", rng.randint(1, 40 + n)),
            )
            waited = time.monotonic() - t0 > 0.15
        time.sleep(rng.uniform(0.5, 1.5))
        con.commit()
        self.lock_waits += waited
        self.late_commits += 1

    def _finish(self, con: Any, rng: random.Random, wrote_event: bool) -> None:
        roll = rng.random()
        if roll < 0.15:  # held open across syncs, committed late
            time.sleep(rng.uniform(0.3, 1.2))
            con.commit()
            self.late_commits += 1
            self.id_late_commits += wrote_event
        elif roll < 0.25:
            con.rollback()
        else:
            con.commit()


@pytest.mark.servers
@pytest.mark.slow
@pytest.mark.parametrize("seed", [5, 6])
def test_random_walk_with_lock_waits_and_late_id_commits_ends_equal_to_the_source(
    mysql_db: MySQLDb,
    warehouse_config: Warehouse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    hold_serial: None,
    seed: int,
) -> None:
    create_orders(mysql_db, 40, dt.datetime(2024, 3, 1, 8))
    mysql_db.execute(EVENTS_DDL)
    mysql_db.execute("CREATE TABLE side (id INT NOT NULL PRIMARY KEY, n INT) ENGINE=InnoDB")
    mysql_db.execute("INSERT INTO side VALUES (1, 0)")
    cfg = make_config(
        mysql_db,
        warehouse_config,
        tmp_path / "stage",
        [
            table(batch_size=7, write_mode="merge"),
            table("events", strategy="id", batch_size=5),
        ],
        hold=True,
        lock_wait_margin_seconds=LOCK_WAIT_TIMEOUT + 1,
    )
    wait_for_no_other_writers(mysql_db)
    sync_ok(cfg)
    rng = random.Random(seed)
    writers = LockingWriters(mysql_db, seed)
    writers.start()
    kills = 0
    try:
        start = time.monotonic()
        while time.monotonic() - start < 10 or (kills < 3 and time.monotonic() - start < 60):
            kills += _sync_with_kills(cfg, rng, monkeypatch)
    finally:
        writers.stop()
    wait_for_no_other_writers(mysql_db)
    time.sleep(0.2)  # information_schema.innodb_trx is refreshed every 0.1 s
    sync_ok(cfg)

    assert wh_rows(cfg, "public.orders") == source_rows(mysql_db)
    events = wh_rows(cfg, "public.events_raw", EVENT_COLS)
    assert events == source_rows(mysql_db, "events", EVENT_COLS)
    with warehouse(cfg) as wh:
        report = run_checks(cfg, wh, send_alerts=False, checks=[behind_watermark_check(cfg)])
    assert report.ok, report.results
    assert kills >= 3 and writers.late_commits >= 3, (kills, writers.late_commits)
    assert writers.lock_waits >= 1 and writers.id_late_commits >= 1, writers
