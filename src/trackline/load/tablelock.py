"""`lock()` for engines without advisory locks (Redshift): one row per held lock in a table.

The row is inserted in a transaction of its own, after ``LOCK <table>`` has serialised the
acquirers (Redshift does not enforce PRIMARY KEY; a table lock is its documented cure for
concurrent read-then-write transactions). The release deletes the row.

A run that dies without releasing (killed, out of memory, the machine rebooted) leaves its
row behind. The holder names its database session (``session <backend pid> of <user>``); a
run that finds the lock busy asks the warehouse whether that session still exists
(`session_alive`: Redshift's ``stv_sessions``, PostgreSQL's ``pg_stat_activity``) and takes
over at once when it does not, so the next 15-minute run is not blocked. The check is only
trusted for a holder of the same database user (a regular Redshift user sees only its own
sessions); otherwise, and when the check cannot run, a row older than `lock_stale_seconds` is
taken over with a notice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

from trackline.errors import LockBusy, RetryableWarehouseError, WarehouseError
from trackline.load.base import Warehouse

_SESSION = re.compile(r" \(session (\d+) of (.+)\)$")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class TableLock(Warehouse):
    """Mix in before the engine class: ``class Redshift(TableLock, Postgres)``."""

    LOCK_TABLE: ClassVar[str] = "locks"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.lock_schema = "trackline"
        self.lock_stale_seconds: float = getattr(config, "lock_stale_seconds", 6 * 3600)
        self._lock_ready = False
        self._held: dict[str, int] = {}

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 0) -> Iterator[None]:
        """Hold `name` for the block; re-entrant within this adapter, like a PostgreSQL
        advisory lock within one session."""
        held = self._held
        if name in held:
            held[name] += 1
            try:
                yield
            finally:
                held[name] -= 1
            return
        if self.in_transaction:
            raise WarehouseError(
                f"lock {name!r} must be taken before a transaction is opened (on "
                f"{self.ENGINE} a lock is a row committed in its own transaction)"
            )
        table = self._lock_table()
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}{self._session()}"
        deadline = time.monotonic() + max(timeout, 0)
        while (busy := self._try_lock(table, name, holder)) is not None:
            if self._holder_gone(busy[0], holder) and self._take_over(table, name, busy[0], holder):
                break
            if time.monotonic() >= deadline:
                other, since = busy
                raise LockBusy(
                    f"another trackline run ({other}) holds the lock {name!r} on "
                    f"{self.ENGINE} since {since or '?'} UTC; it is released when that run "
                    "ends, or taken over after warehouse.lock_stale_seconds "
                    f"({self.lock_stale_seconds:,.0f} s)"
                )
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        held[name] = 1
        try:
            yield
        finally:
            del held[name]
            with contextlib.suppress(Exception), self.transaction():
                self.execute(
                    f"DELETE FROM {table} WHERE {self.q('name')} = ? AND holder = ?",
                    (name, holder),
                )

    # ------------------------------------------------------------------ dead holders

    def sessions_sql(self) -> str:
        """How many sessions have this backend pid (Redshift's ``stv_sessions``)."""
        return "SELECT COUNT(*) FROM stv_sessions WHERE process = ?"

    def _session(self) -> str:
        """`` (session <pid> of <user>)`` for this connection, or '' when unknown."""
        try:
            rows = self.query("SELECT pg_backend_pid(), current_user")
        except WarehouseError:
            return ""
        return f" (session {int(rows[0][0])} of {rows[0][1]})" if rows else ""

    def session_alive(self, pid: int) -> bool | None:
        """Whether the warehouse still has a session with this backend pid (None: unknown)."""
        try:
            return bool(self.scalar(self.sessions_sql(), (pid,)))
        except WarehouseError:
            return None

    def _holder_gone(self, other: str, holder: str) -> bool:
        """`other`'s session is gone (it died without releasing), as far as `holder` (this
        run) can tell."""
        m = _SESSION.search(other)
        mine = _SESSION.search(holder)
        if not m or not mine or m.group(2) != mine.group(2):
            return False  # another user's sessions may be invisible to us: rely on age
        if int(m.group(1)) == int(mine.group(1)):
            return False  # our own session (re-entrancy is handled before)
        return self.session_alive(int(m.group(1))) is False

    def _take_over(self, table: str, name: str, other: str, holder: str) -> bool:
        """Replace `other`'s row by ours if it is still `other`'s (compare and swap)."""
        try:
            with self.transaction():
                self.execute(f"LOCK {table}")
                n = self.execute_count(
                    f"DELETE FROM {table} WHERE {self.q('name')} = ? AND holder = ?",
                    (name, other),
                )
                if n == 0:
                    return False
                self.execute(
                    f"INSERT INTO {table} ({self.q('name')}, holder, acquired_at) VALUES (?, ?, ?)",
                    (name, holder, _utcnow()),
                )
        except RetryableWarehouseError:
            return False
        self.notice(
            f"lock {name!r}: its holder {other} has no session in the warehouse any more (the "
            "run died without releasing it); taking it over"
        )
        return True

    def _lock_table(self) -> str:
        table = self.t(self.lock_schema, self.LOCK_TABLE)
        if not self._lock_ready:

            def create() -> None:
                self.ensure_schema(self.lock_schema)
                self.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} ({self.q('name')} VARCHAR(512) NOT NULL, "
                    f"holder VARCHAR(512) NOT NULL, acquired_at {self.TIMESTAMP_TYPE} NOT NULL, "
                    f"PRIMARY KEY ({self.q('name')}))"
                )

            self.run_transaction(create)
            self._lock_ready = True
        return table

    def _try_lock(self, table: str, name: str, holder: str) -> tuple[str, Any] | None:
        """Take the lock, or return (holder, since) of the run that has it."""
        now = _utcnow()
        try:
            with self.transaction():
                self.execute(f"LOCK {table}")
                rows = self.query(
                    f"SELECT holder, acquired_at FROM {table} WHERE {self.q('name')} = ?", (name,)
                )
                if rows:
                    other, since = rows[0]
                    age = (now - since).total_seconds() if since is not None else math.inf
                    if age < self.lock_stale_seconds:
                        return str(other), since
                    self.notice(
                        f"lock {name!r}: its holder {other} took it at {since} UTC, {age:,.0f} s "
                        "ago (more than warehouse.lock_stale_seconds); taking it over"
                    )
                    self.execute(f"DELETE FROM {table} WHERE {self.q('name')} = ?", (name,))
                self.execute(
                    f"INSERT INTO {table} ({self.q('name')}, holder, acquired_at) VALUES (?, ?, ?)",
                    (name, holder, now),
                )
        except RetryableWarehouseError:
            return "a concurrent run", None
        return None
