"""Rows that commit late: `id` tables and writes that waited for a lock (real MariaDB).

- `cdc: {strategy: id}`: InnoDB hands out AUTO_INCREMENT ids at insert and transactions commit
  in any order. A transaction holding id 4 open while 5 and 6 commit must not let the
  watermark pass 4 (`trackline.sync.hold.id_upper`).
- A statement that waited for a metadata lock (`LOCK TABLES u WRITE` in another session)
  stamps NOW() at its start, before InnoDB starts its transaction: the hold covers the wait
  while the statement runs (process list) and after it (`lock_wait_margin_seconds`).

The hold is server-wide, so every test here runs under `hold_serial` and waits until no other
connection writes.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

import pytest

from tests.conftest import MySQLDb
from tests.integration.synctools import (
    create_orders,
    insert_orders,
    make_config,
    one,
    source_rows,
    state_watermark,
    sync_ok,
    sync_when_quiet,
    table,
    wait_for_no_other_writers,
    wh_rows,
)
from trackline.config import DuckDBWarehouse, PostgresWarehouse
from trackline.extract.mysql import MySQL
from trackline.extract.source import OpenTransaction
from trackline.report import NullReporter
from trackline.sync.hold import time_upper
from trackline.sync.tables import TableResult

Warehouse: TypeAlias = DuckDBWarehouse | PostgresWarehouse
PAST = dt.datetime(2024, 3, 1, 8, 0, 0)
INNODB_TRX_REFRESH = 0.2  # information_schema.innodb_trx is a cache refreshed every 0.1 s

pytestmark = pytest.mark.usefixtures("hold_serial")


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    return tmp_path / "stage"


def _open(mysql_db: MySQLDb) -> Any:
    con = mysql_db.connect()
    con.autocommit(False)
    return con


@pytest.fixture
def session(mysql_db: MySQLDb) -> Iterator[Any]:
    """A second connection, rolled back and closed at the end."""
    con = _open(mysql_db)
    yield con
    try:
        con.rollback()
    finally:
        con.close()


def _insert_open(con: Any, order_no: str) -> int:
    """Insert one order in an open transaction of `con`; its AUTO_INCREMENT id."""
    with con.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute(
            "INSERT INTO orders (order_no, status, amount, update_time) "
            "VALUES (%s, 'late', 1, NOW(6))",
            (order_no,),
        )
        cur.execute("SELECT LAST_INSERT_ID()")
        return int(cur.fetchone()[0])


# --------------------------------------------------------------------------- id strategy


def test_id_row_committed_after_higher_ids_is_loaded(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, session: Any
) -> None:
    """The issue's interleaving: insert in A (id 4), commit 5 and 6 elsewhere, sync, commit
    A, sync: row 4 is loaded."""
    create_orders(mysql_db, 3, PAST)
    cfg = make_config(mysql_db, warehouse_config, stage, [table(strategy="id")], hold=True)
    assert sum(r.rows for r in sync_when_quiet(mysql_db, cfg, expect=3)) == 3

    assert _insert_open(session, "A") == 4
    insert_orders(mysql_db, [PAST, PAST])  # ids 5 and 6, committed
    time.sleep(INNODB_TRX_REFRESH)
    wait_for_no_other_writers(mysql_db, session.thread_id())

    held = one(sync_ok(cfg))
    assert held.rows == 0  # 5 and 6 wait: reading them would pass 4
    assert state_watermark(cfg, "public.orders_raw").id == 3
    session.commit()

    assert sum(r.rows for r in sync_when_quiet(mysql_db, cfg, expect=3)) == 3
    assert wh_rows(cfg, "public.orders_raw") == source_rows(mysql_db)
    assert state_watermark(cfg, "public.orders_raw").id == 6


def test_id_transaction_that_began_after_a_sample_holds_only_its_own_ids(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, session: Any
) -> None:
    """Ids committed before an open transaction began are read (the sample a run stored
    before it): the hold does not stop everything, only what the transaction may still
    commit below."""
    create_orders(mysql_db, 3, PAST)
    cfg = make_config(mysql_db, warehouse_config, stage, [table(strategy="id")], hold=True)
    assert sum(r.rows for r in sync_when_quiet(mysql_db, cfg, expect=3)) == 3
    insert_orders(mysql_db, [PAST, PAST])  # 4, 5
    assert sum(r.rows for r in sync_when_quiet(mysql_db, cfg, expect=2)) == 2
    insert_orders(mysql_db, [PAST])  # 6: committed before the next run's sample
    # stores a sample with max id 6, no transaction open (retried while another test's write
    # transaction on the server holds the run's bound: the hold is server-wide)
    assert sum(r.rows for r in sync_when_quiet(mysql_db, cfg, expect=1)) == 1
    assert state_watermark(cfg, "public.orders_raw").id == 6
    time.sleep(1.1)  # trx_started has whole seconds: begin in a later second than the sample
    assert _insert_open(session, "A") == 7
    insert_orders(mysql_db, [PAST])  # 8
    time.sleep(INNODB_TRX_REFRESH)
    wait_for_no_other_writers(mysql_db, session.thread_id())
    held = one(sync_ok(cfg))
    assert state_watermark(cfg, "public.orders_raw").id == 6  # up to the sample, not past 7
    assert held.rows == 0
    session.commit()
    assert sum(r.rows for r in sync_when_quiet(mysql_db, cfg, expect=2)) == 2
    assert wh_rows(cfg, "public.orders_raw") == source_rows(mysql_db)


def test_id_rolled_back_transaction_releases_the_hold(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, session: Any
) -> None:
    create_orders(mysql_db, 3, PAST)
    cfg = make_config(mysql_db, warehouse_config, stage, [table(strategy="id")], hold=True)
    assert sum(r.rows for r in sync_when_quiet(mysql_db, cfg, expect=3)) == 3
    _insert_open(session, "A")  # id 4, rolled back below
    insert_orders(mysql_db, [PAST, PAST])
    time.sleep(INNODB_TRX_REFRESH)
    wait_for_no_other_writers(mysql_db, session.thread_id())
    assert one(sync_ok(cfg)).rows == 0
    session.rollback()
    time.sleep(INNODB_TRX_REFRESH)

    tries = sync_when_quiet(mysql_db, cfg, expect=2)
    assert sum(r.rows for r in tries) == 2  # the gap of id 4 is no alarm:
    assert not [w for r in tries for w in r.warnings]
    assert wh_rows(cfg, "public.orders_raw") == source_rows(mysql_db)
    assert [r[0] for r in wh_rows(cfg, "public.orders_raw")] == [1, 2, 3, 5, 6]


def test_id_transaction_past_the_hold_ceiling_is_reported_not_waited_for(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, session: Any
) -> None:
    """An id transaction left open never stalls the table: past the ceiling the read goes
    on, with a warning naming the thread; a row it commits after that is behind the
    watermark, which `runs.behind_watermark` reports (test_sync_behind.py)."""
    create_orders(mysql_db, 3, PAST)
    cfg = make_config(
        mysql_db,
        warehouse_config,
        stage,
        [table(strategy="id")],
        hold=True,
        hold_ceiling_seconds=1,
    )
    assert sum(r.rows for r in sync_when_quiet(mysql_db, cfg, expect=3)) == 3
    _insert_open(session, "STUCK")
    insert_orders(mysql_db, [PAST, PAST])
    time.sleep(1.6)
    tries = sync_when_quiet(mysql_db, cfg, session.thread_id(), expect=2)
    res = tries[-1]
    assert sum(r.rows for r in tries) == 2
    assert len(res.warnings) == 1
    assert f"thread {session.thread_id()}" in res.warnings[0]
    assert "hold ceiling" in res.warnings[0]


# --------------------------------------------------------------------------- lock waits

T_DDL = (
    "CREATE TABLE t (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, code VARCHAR(16), "
    "ts INT NOT NULL, KEY (ts, id)) ENGINE=InnoDB"
)
U_DDL = "CREATE TABLE u (id INT NOT NULL PRIMARY KEY, flag INT) ENGINE=InnoDB"
WAITING_UPDATE = (
    "UPDATE t JOIN u ON u.id = t.id SET t.ts = UNIX_TIMESTAMP(), t.code = 'waited' WHERE t.id = 1"
)


class _Waiter:
    """Runs WAITING_UPDATE in an open transaction on its own connection, in a thread."""

    def __init__(self, mysql_db: MySQLDb) -> None:
        self.con = _open(mysql_db)
        self.error: BaseException | None = None
        self.started: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with self.con.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute(WAITING_UPDATE)
        except BaseException as e:  # noqa: BLE001 - re-raised by join()
            self.error = e

    def start(self) -> None:
        self._thread.start()

    def wait_until_waiting(self, mysql_db: MySQLDb) -> None:
        """Until the UPDATE waits for the metadata lock (the process list says so)."""
        deadline = time.monotonic() + 10
        while not mysql_db.query(
            "SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = %s "
            "AND STATE LIKE 'Waiting for table metadata lock'",
            (self.con.thread_id(),),
        ):
            assert time.monotonic() < deadline, "the UPDATE never waited for the lock"
            time.sleep(0.05)

    def join(self) -> None:
        self._thread.join(30)
        if self.error:
            raise self.error

    def close(self) -> None:
        try:
            self.con.rollback()
        finally:
            self.con.close()


def _unix_now(mysql_db: MySQLDb) -> int:
    return int(mysql_db.query("SELECT UNIX_TIMESTAMP()")[0][0])


def _next_second(mysql_db: MySQLDb) -> None:
    """Sleep until the source clock is in a later unix second than now."""
    now = _unix_now(mysql_db)
    while _unix_now(mysql_db) == now:
        time.sleep(0.05)


@pytest.mark.parametrize("write_mode", ["merge", "append"])
def test_update_that_waited_on_a_metadata_lock_is_not_passed(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, write_mode: str
) -> None:
    """The issue's interleaving: `UPDATE t JOIN u … SET t.ts = UNIX_TIMESTAMP()` waits on
    `LOCK TABLES u WRITE`; other sessions commit rows meanwhile; the lock goes; the UPDATE
    runs (InnoDB starts its transaction only now) and its transaction stays open across a
    sync. Its row, stamped before those rows, must still be loaded once it commits."""
    mysql_db.execute(T_DDL)
    mysql_db.execute(U_DDL)
    old = _unix_now(mysql_db) - 3600
    mysql_db.executemany(
        "INSERT INTO t (code, ts) VALUES (%s, %s)", [(f"c{i}", old + i) for i in range(5)]
    )
    mysql_db.execute("INSERT INTO u VALUES (1, 0)")
    t = table("t", cursor="ts", write_mode=write_mode)
    cfg = make_config(mysql_db, warehouse_config, stage, [t], hold=True)
    key = f"public.{t.target}"
    assert one(sync_ok(cfg)).rows == 5
    wait_for_no_other_writers(mysql_db)

    locker = _open(mysql_db)
    waiter = _Waiter(mysql_db)
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLES u WRITE")
        _next_second(mysql_db)
        stamp = _unix_now(mysql_db)
        waiter.start()
        waiter.wait_until_waiting(mysql_db)

        # Other sessions commit rows stamped after the waiting statement's start.
        _next_second(mysql_db)
        mysql_db.executemany(
            "INSERT INTO t (code, ts) VALUES (%s, UNIX_TIMESTAMP())", [("n1",), ("n2",)]
        )
        _next_second(mysql_db)
        # While it waits, the process list holds the bound at the statement's start.
        waiting = one(sync_ok(cfg))
        assert waiting.upper <= stamp + 1 and waiting.rows == 0

        with locker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        waiter.join()  # the UPDATE ran; its transaction is still open
        time.sleep(INNODB_TRX_REFRESH)
        _next_second(mysql_db)
        assert mysql_db.query(
            "SELECT UNIX_TIMESTAMP(trx_started) > %s FROM information_schema.innodb_trx "
            "WHERE trx_mysql_thread_id = %s",
            (stamp, waiter.con.thread_id()),
        ) == [(1,)], "InnoDB began the transaction after the wait"
        wait_for_no_other_writers(mysql_db, waiter.con.thread_id())

        held = one(sync_ok(cfg))  # without the margin: upper = trx_started, past the stamp
        assert held.upper <= stamp and held.rows == 0
        wm = state_watermark(cfg, key)
        assert wm.ts is not None and wm.ts < stamp
        waiter.con.commit()
    finally:
        locker.close()
        waiter.close()
    tries = sync_when_quiet(mysql_db, cfg, expect=3)
    assert sum(r.rows for r in tries) == 3
    got = wh_rows(cfg, key, ["id", "code", "ts"], ["id", "ts"])
    src = [tuple(r) for r in mysql_db.query("SELECT id, code, ts FROM t ORDER BY id")]
    if write_mode == "merge":
        assert got == src
    else:  # the old version of row 1 stays beside its new one
        assert sorted(set(got) - {(1, "c0", old)}) == src
    stamped = mysql_db.query("SELECT ts FROM t WHERE id = 1")[0][0]
    assert stamped < held.upper + 60 and stamped >= stamp  # stamped at the statement's start
    assert (1, "waited", stamped) in got


def test_lock_wait_margin_zero_loses_the_waiting_row(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path
) -> None:
    """The same interleaving with `lock_wait_margin_seconds: 0` (the hold of before): the
    watermark passes the stamp and the row is never read — the margin is what saves it,
    and `runs.behind_watermark` is what would report it.

    The loss needs InnoDB to begin the waiting UPDATE's transaction after the lock wait (its
    `trx_started` later than n1's stamp). Now and then MariaDB begins it before the wait ends
    (CI saw `trx_started` at n1's second, the process list showing nothing else): the hold
    then covers n1 as well, which is safe but shows nothing, so the interleaving is set up
    again (at most 5 times)."""
    mysql_db.execute(T_DDL)
    mysql_db.execute(U_DDL)
    old = _unix_now(mysql_db) - 3600
    mysql_db.execute("INSERT INTO t (code, ts) VALUES ('c0', %s)", (old,))
    mysql_db.execute("INSERT INTO u VALUES (1, 0)")
    t = table("t", cursor="ts", write_mode="merge")
    cfg = make_config(mysql_db, warehouse_config, stage, [t], hold=True, lock_wait_margin_seconds=0)
    sync_ok(cfg)
    seen: list[tuple[int, int]] = []
    for _attempt in range(5):
        wait_for_no_other_writers(mysql_db)
        locker = _open(mysql_db)
        waiter = _Waiter(mysql_db)
        try:
            with locker.cursor() as cur:
                cur.execute("LOCK TABLES u WRITE")
            _next_second(mysql_db)
            waiter.start()
            waiter.wait_until_waiting(mysql_db)
            _next_second(mysql_db)
            mysql_db.execute("INSERT INTO t (code, ts) VALUES ('n1', UNIX_TIMESTAMP())")
            n1 = one_value(mysql_db, "SELECT ts FROM t WHERE code = 'n1'")
            _next_second(mysql_db)
            with locker.cursor() as cur:
                cur.execute("UNLOCK TABLES")
            waiter.join()
            time.sleep(INNODB_TRX_REFRESH)
            began = one_value(
                mysql_db,
                "SELECT UNIX_TIMESTAMP(trx_started) FROM information_schema.innodb_trx "
                "WHERE trx_mysql_thread_id = %s",
                (waiter.con.thread_id(),),
            )
            if began <= n1:  # the transaction began before the wait ended: set up again
                seen.append((began, n1))
                waiter.con.rollback()
                mysql_db.execute("DELETE FROM t WHERE code = 'n1'")
                continue
            _next_second(mysql_db)
            tries = sync_when_quiet(mysql_db, cfg, waiter.con.thread_id(), expect=1)
            assert sum(r.rows for r in tries) == 1  # n1, past the waiting row's stamp
            waiter.con.commit()
            break
        finally:
            locker.close()
            waiter.close()
    else:
        raise AssertionError(f"InnoDB began the waiting UPDATE's transaction early 5 times: {seen}")
    wait_for_no_other_writers(mysql_db)
    sync_ok(cfg)
    got = dict(wh_rows(cfg, "public.t", ["id", "code"]))
    assert got[1] == "c0"  # the update is lost
    assert mysql_db.query("SELECT code FROM t WHERE id = 1") == [("waited",)]


def one_value(mysql_db: MySQLDb, sql: str, params: tuple[Any, ...] = ()) -> int:
    rows = mysql_db.query(sql, params)
    assert len(rows) == 1, rows
    return int(rows[0][0])


def test_waiting_statement_on_a_table_level_lock_holds_the_bound(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path
) -> None:
    """A non-InnoDB wait: an INSERT … SELECT from a MyISAM table locked by `LOCK TABLES …
    WRITE` in another session waits for the table-level lock (no InnoDB transaction at all);
    the process list holds the bound at its start."""
    create_orders(mysql_db, 3, PAST)
    mysql_db.execute("CREATE TABLE side (n INT) ENGINE=MyISAM")
    mysql_db.execute("INSERT INTO side VALUES (1)")
    cfg = make_config(mysql_db, warehouse_config, stage, [table()], hold=True)
    sync_ok(cfg)
    wait_for_no_other_writers(mysql_db)
    locker = _open(mysql_db)
    writer = _open(mysql_db)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with writer.cursor() as cur:
                cur.execute(
                    "INSERT INTO orders (order_no, status, amount, update_time) "
                    "SELECT 'SIDE', 'side', n, NOW(6) FROM side"
                )
            writer.commit()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLES side WRITE")
        before = mysql_db.query("SELECT NOW(6)")[0][0]
        thread.start()
        time.sleep(0.5)
        insert_orders(mysql_db, ["NOW"] * 2)
        time.sleep(0.3)
        states = mysql_db.query(
            "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = %s",
            (writer.thread_id(),),
        )
        assert states and "lock" in str(states[0][0]).lower(), states
        held = one(sync_ok(cfg))
        assert held.rows == 0 and held.upper <= before + dt.timedelta(seconds=0.5)
        with locker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        thread.join(30)
    finally:
        locker.close()
        writer.close()
    assert not errors, errors
    assert sum(r.rows for r in sync_when_quiet(mysql_db, cfg, expect=3)) == 3
    assert wh_rows(cfg, "public.orders_raw") == source_rows(mysql_db)


@pytest.mark.parametrize("lag", [0, 2])
def test_a_statement_that_ends_its_wait_between_the_two_hold_reads_is_held(
    mysql_db: MySQLDb, warehouse_config: Warehouse, stage: Path, lag: int
) -> None:
    """The hold reads the process list and innodb_trx one after the other. A statement that
    waited for a metadata lock and ends its wait between the two reads is in neither if the
    transactions are read first (it had modified nothing yet) and the statements second (it
    has finished): its row, stamped at the start of the wait, would pass the bound. Here the
    wait ends exactly between the reads; the bound must stay at or below the stamp, with a
    lag under a second (read fresh anyway) and above it (where it used not to be)."""
    mysql_db.execute(T_DDL)
    mysql_db.execute(U_DDL)
    mysql_db.execute("INSERT INTO t (code, ts) VALUES ('c0', %s)", (_unix_now(mysql_db) - 3600,))
    mysql_db.execute("INSERT INTO u VALUES (1, 0)")
    t = table("t", cursor="ts", write_mode="merge", lag_seconds=lag)
    cfg = make_config(mysql_db, warehouse_config, stage, [t], hold=True)
    wait_for_no_other_writers(mysql_db)
    locker = _open(mysql_db)
    waiter = _Waiter(mysql_db)

    ended: list[bool] = []

    def end_the_wait() -> None:  # the lock goes; the UPDATE runs to its end (transaction open)
        with locker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        waiter.join()
        ended.append(True)

    class EndsTheWaitBetweenTheReads(MySQL):
        """Ends the wait right after the first of the hold's two reads, whichever it is."""

        def _running_writes(self, unix: bool) -> tuple[list[OpenTransaction], float | None]:
            if not ended:
                end_the_wait()
            return super()._running_writes(unix)

        def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
            got = super().rows(sql, params)
            if "innodb_trx" in sql and not ended:
                end_the_wait()
            return got

    src = EndsTheWaitBetweenTheReads(cfg.sources["kuaisong"])
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLES u WRITE")
        _next_second(mysql_db)
        stamp = _unix_now(mysql_db)
        waiter.start()
        waiter.wait_until_waiting(mysql_db)
        time.sleep(lag + 1.2)  # the stamp is now older than the lag's bound
        res = TableResult(table="t", table_key="public.t")
        upper = time_upper(src, cfg.table("t"), cfg, True, res, NullReporter())
        assert ended  # the wait ended during the hold's reads
        assert mysql_db.query("SELECT code FROM t WHERE id = 1") == [("c0",)]  # not committed
        assert upper <= stamp, (upper, stamp)
        waiter.con.commit()
    finally:
        src.close()
        locker.close()
        waiter.close()
