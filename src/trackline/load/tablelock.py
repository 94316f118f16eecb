"""`lock()` for engines without advisory locks (Redshift): one row per held lock in a table.

The row is inserted in a transaction of its own, after ``LOCK <table>`` has serialised the
acquirers (Redshift does not enforce PRIMARY KEY; a table lock is its documented cure for
concurrent read-then-write transactions). The release deletes the row. A row older than
`lock_stale_seconds` belongs to a run that died, and is taken over with a notice; a row left by
a failed release (lost connection) is therefore freed after that age at the latest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

from trackline.errors import LockBusy, RetryableWarehouseError, WarehouseError
from trackline.load.base import Warehouse


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
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + max(timeout, 0)
        while (busy := self._try_lock(table, name, holder)) is not None:
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

    def _lock_table(self) -> str:
        table = self.t(self.lock_schema, self.LOCK_TABLE)
        if not self._lock_ready:
            with self.transaction():
                self.ensure_schema(self.lock_schema)
                self.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} ({self.q('name')} VARCHAR(512) NOT NULL, "
                    f"holder VARCHAR(512) NOT NULL, acquired_at {self.TIMESTAMP_TYPE} NOT NULL, "
                    f"PRIMARY KEY ({self.q('name')}))"
                )
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
