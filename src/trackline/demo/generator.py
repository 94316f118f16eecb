"""A realistic, deterministic synthetic order-tracking source in a SQLite file.

`trackline demo` runs the whole pipeline against this file. It mimics the legacy MySQL tables
(times are unix integer seconds) closely enough to exercise every mart rule:

    ecs_order_info      one row per order, written at creation; no update time, yet now and
                        then its ``zipcode`` changes along with a status change of its order
    uni_tracking_info   ONE row per order, updated in place on every status change
                        (``update_time`` = the order's latest ``pathTime``; the id stays)
    uni_tracking_spath  scan events, many per order; now and then a status change corrects
                        the order's previous event in place (``pathInfo``, ``is_updated`` = 1,
                        ``time_modified`` = the time of the correction)
    partners            ~40 partners (382 is the big one); a name or country changes now and then
    trackline_clock     one row: the source's simulated "now"; the SQLite reader takes the
                        extraction upper bound (now - lag) from it

What the data contains on purpose: lifecycles from 2 days to 10+ months (most end within
15 days, a tail runs 60-300 days, a handful update during the whole run); many events in
the same second (bulk pickup scans, hub sweeps, vans leaving), so cursors must break ties
on id; a few orders that go dormant for more than 190 days and then move again (archive,
then reactivation); a small rate of rows whose ``order_id`` is NULL.

How it stays deterministic: day ``d`` is generated in full from its own RNG, seeded by
``(seed, d)``, when the clock first reaches that day: its orders with their whole
lifecycles, partner changes and NULL-key rows. Items due after the clock wait as rows of
``_demo_pending``; the day and order counters live in ``_demo_state``. So the file alone
carries the simulation: reopened by another process, `advance` continues where it stopped.
Due items are written in one sorted order and ids come from order numbers or follow that
order, so any split of a time range into `advance` calls gives identical tables.
"""

from __future__ import annotations

import bisect
import json
import random
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trackline.errors import ConfigError

DAY = 86_400
START_2026 = 1_767_225_600  # 2026-01-01 00:00:00 UTC
ORDER_ID_BASE = 3_000_000_000  # above 2**31: a reader that maps BIGINT to int32 fails loudly
DORMANCY_DAYS = 190  # reactivated orders stay silent longer than this (> 6-month retention)
BIG_PARTNER = 382
ECS_CHANGE_EVERY = 23  # about one status change in 23 also corrects the order's ecs row
SPATH_CORRECTION_EVERY = 29  # about one in 29 corrects the order's previous scan event
SCHEMA_VERSION = 2  # 2: spath time_modified / is_updated; later ecs and spath changes

# Status codes of a scan event; the uti ``state`` is ``code // 100``.
CREATED, PICKED_UP, IN_TRANSIT, HELD, OUT_FOR_DELIVERY = 10, 100, 200, 250, 300
DELIVERED, FAILED_ATTEMPT, RETURNED = 500, 800, 900

# Kinds of simulation item, in the order they apply within one second.
K_PARTNER, K_ORDER, K_NULL_UTI, K_EVENT, K_NULL_SPATH = 0, 1, 2, 3, 4

# An item (kept in ``_demo_pending`` until due): (due, kind, key, seq, n1, n2, n3, n4, t1, t2, t3).
# (due, kind, key, seq) is unique, so sorting never compares the payload.
#   K_ORDER       key=order number (= row id), n1=partner_id, n2=type, n3=order_status,
#                 n4=shipping_status, t1=extra_order_sn, t2=zipcode, t3=tno
#   K_EVENT       key=order number, seq=traceSeq, n1=code, n2=staff_id,
#                 n3=1 on the first event after a dormancy, t1=pathInfo, t2=second_delivery_sn
#   K_NULL_UTI    key=order number (a tracking row whose order_id was lost), n1=state, t1=tno
#   K_NULL_SPATH  key=serial, n1=code, n2=staff_id, t1=pathInfo
#   K_PARTNER     key=partner_id, t1=name, t2=country
Item = tuple[int, int, int, int, Any, Any, Any, Any, Any, Any, Any]
# One lifecycle event: (time, code, staff_id, pathInfo, second_delivery_sn, reactivation flag)
_Event = tuple[int, int, int, str, str | None, int]

_HUBS = ("Leipzig", "Venlo", "Poznan", "Lyon", "Milan", "Madrid", "Prague", "Vienna", "Liege")
_INFO: dict[int, tuple[str, ...]] = {
    CREATED: ("Order information received",),
    PICKED_UP: ("Picked up by courier", "Collected from sender warehouse"),
    IN_TRANSIT: tuple(
        f"{verb} {hub} sorting center" for hub in _HUBS for verb in ("Arrived at", "Departed")
    ),
    HELD: (
        "Held at customs for inspection",
        "Held: address incomplete, awaiting customer",
        "Held: consignee unreachable",
    ),
    OUT_FOR_DELIVERY: ("Out for delivery",),
    DELIVERED: (
        "Delivered, signed by recipient",
        "Delivered to parcel locker",
        "Delivered to neighbour",
    ),
    FAILED_ATTEMPT: (
        "Delivery attempt failed: recipient absent",
        "Delivery attempt failed: address not found",
    ),
    RETURNED: ("Returned to sender",),
}
_FOUND = "Parcel found in depot, re-entered network"
_UNREADABLE = "Scan without order: label unreadable"
_NAME_A = ("Nordic", "Blue", "Swift", "Golden", "Urban", "Pacific", "Alpine", "Metro", "Vita")
_NAME_B = ("Logistics", "Express", "Commerce", "Trading", "Retail", "Fulfilment", "Goods")
_COUNTRIES = ("DE", "FR", "NL", "PL", "ES", "IT", "GB", "SE", "CZ", "AT", "CN", "US")
# Orders per hour of day (UTC) and per weekday (Monday first): office hours, quiet Sundays.
_HOURLY = (1, 1, 1, 1, 1, 2, 3, 5, 8, 10, 11, 11, 10, 10, 10, 10, 9, 8, 7, 6, 5, 4, 3, 2)
_HOUR_CUM = tuple(sum(_HOURLY[: h + 1]) for h in range(24))
_WEEKDAY = (1.15, 1.1, 1.05, 1.0, 1.05, 0.85, 0.65)
_WEEKDAY_MEAN = sum(_WEEKDAY) / 7
_EVERGREEN_ORDERS = 5  # created on day 0, updated every few days for the whole run
_REACTIVATION_SPAN_DAYS = 10  # reactivation orders are created in the first days of the run


@dataclass(frozen=True)
class DemoSpec:
    """What to simulate. The same spec always gives the same tables."""

    start: int = START_2026
    days: int = 240
    """Days on which new orders arrive (~8 months); scheduled events go on after the end."""
    orders_per_day: int = 400
    seed: int = 7
    null_order_id_rate: float = 0.002
    """Share of new orders / events that also produce a uti / spath row with NULL order_id."""
    reactivation_orders: int = 12
    """Orders that go dormant for more than 190 days and then get new events."""

    def __post_init__(self) -> None:
        for name in ("days", "orders_per_day", "reactivation_orders"):
            if getattr(self, name) < 0:
                raise ConfigError(f"demo: {name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.null_order_id_rate <= 1.0:
            raise ConfigError(
                f"demo: null_order_id_rate must be between 0 and 1, got {self.null_order_id_rate}"
            )

    @property
    def end(self) -> int:
        """The last simulated cycle time: ``start + days * 86400``."""
        return self.start + self.days * DAY


@dataclass(frozen=True)
class AdvanceStats:
    """What one `DemoSource.advance` call wrote."""

    until: int
    new_orders: int = 0
    """ecs_order_info rows (each with its uni_tracking_info row) inserted."""
    uti_updates: int = 0
    """uni_tracking_info rows updated in place (orders created before this call that moved)."""
    spath_events: int = 0
    """uni_tracking_spath rows inserted, NULL-key rows included."""
    reactivations: int = 0
    """Orders that moved again after more than 190 days of silence."""
    null_key_rows: int = 0
    """Rows with a NULL order_id inserted into uni_tracking_info or uni_tracking_spath."""
    partner_updates: int = 0
    ecs_changes: int = 0
    """ecs_order_info rows whose zipcode a status change corrected (no time column moves)."""
    spath_corrections: int = 0
    """Scan events corrected in place (pathInfo, is_updated = 1, time_modified)."""


def ticks(spec: DemoSpec, step_seconds: int = DAY) -> Iterator[int]:
    """The simulated cycle times: ``start + step``, ``start + 2 * step``, ... ``spec.end``."""
    if step_seconds <= 0:
        raise ConfigError(f"demo: step_seconds must be > 0, got {step_seconds}")
    t = spec.start + step_seconds
    while t < spec.end:
        yield t
        t += step_seconds
    if spec.end > spec.start:
        yield spec.end


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS ecs_order_info (
        id INTEGER PRIMARY KEY, order_id BIGINT, partner_id INTEGER, add_time INTEGER NOT NULL,
        extra_order_sn TEXT, zipcode TEXT, type INTEGER, order_status INTEGER,
        shipping_status INTEGER)""",
    "CREATE INDEX IF NOT EXISTS idx_ecs_add_time ON ecs_order_info (add_time, id)",
    "CREATE INDEX IF NOT EXISTS idx_ecs_order_id ON ecs_order_info (order_id)",
    """CREATE TABLE IF NOT EXISTS uni_tracking_info (
        id INTEGER PRIMARY KEY, order_id BIGINT, tno TEXT, state INTEGER,
        update_time INTEGER NOT NULL, second_delivery_sn TEXT)""",
    "CREATE INDEX IF NOT EXISTS idx_uti_update_time ON uni_tracking_info (update_time, id)",
    "CREATE INDEX IF NOT EXISTS idx_uti_order_id ON uni_tracking_info (order_id)",
    """CREATE TABLE IF NOT EXISTS uni_tracking_spath (
        id INTEGER PRIMARY KEY, order_id BIGINT, traceSeq INTEGER, pathTime INTEGER NOT NULL,
        code INTEGER, staff_id INTEGER, pathInfo TEXT, is_updated INTEGER NOT NULL DEFAULT 0,
        time_modified INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS idx_uts_path_time ON uni_tracking_spath (pathTime, id)",
    "CREATE INDEX IF NOT EXISTS idx_uts_modified ON uni_tracking_spath (time_modified, id)",
    "CREATE INDEX IF NOT EXISTS idx_uts_order_id ON uni_tracking_spath (order_id)",
    """CREATE TABLE IF NOT EXISTS partners (
        partner_id INTEGER PRIMARY KEY, name TEXT, country TEXT, update_time INTEGER)""",
    "CREATE TABLE IF NOT EXISTS trackline_clock (now INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _demo_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # Items due in (start + slot * DAY, start + (slot + 1) * DAY], as JSON lists. One row per
    # slot and `advance` call: a row per item costs 3x more in inserts, deletes and reads.
    "CREATE TABLE IF NOT EXISTS _demo_pending (slot INTEGER NOT NULL, items TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS idx_demo_pending_slot ON _demo_pending (slot)",
)


class _Rng(random.Random):
    """`random.Random` with cheaper draws for the hot loops (randrange is ~4x slower)."""

    def between(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi)."""
        return lo + int(self.random() * (hi - lo))

    def pick(self, options: Sequence[str]) -> str:
        return options[int(self.random() * len(options))]


@dataclass(frozen=True)
class _Partner:
    partner_id: int
    name: str
    country: str
    pickups: tuple[int, ...]  # seconds after midnight of the daily bulk pickup scans
    courier: int


def _partners(seed: int) -> tuple[list[_Partner], list[float]]:
    """40 partners and cumulative order weights: 382 takes ~30%, the rest a Zipf tail."""
    rng = _Rng(f"trackline-demo:{seed}:partners")
    ids = [BIG_PARTNER, *rng.sample([i for i in range(100, 1000) if i != BIG_PARTNER], 39)]
    partners = []
    for rank, pid in enumerate(ids):
        pickups = tuple(sorted(rng.between(10 * 3600, 19 * 3600) for _ in range(1 + (rank < 5))))
        name = "Kuaisong Direct" if pid == BIG_PARTNER else _partner_name(rng)
        partners.append(_Partner(pid, name, rng.pick(_COUNTRIES), pickups, 1000 + rank))
    weights = [1.0 / rank**0.8 for rank in range(1, len(ids))]
    weights.insert(0, sum(weights) * 0.3 / 0.7)
    cum = [sum(weights[: i + 1]) for i in range(len(weights))]
    return partners, cum


def _partner_name(rng: _Rng) -> str:
    return f"{rng.pick(_NAME_A)} {rng.pick(_NAME_B)}"


def _next_slot(t: int, slots: Sequence[int]) -> int:
    """The first daily slot (seconds after UTC midnight) at or after `t`."""
    midnight = t - t % DAY
    return min(
        midnight + day * DAY + off
        for day in (0, 1)
        for off in slots
        if midnight + day * DAY + off >= t
    )


class _Writer:
    """Writes the due items of one `advance` call, step after step.

    ecs and uti ids are the order numbers, spath ids follow the (time, kind, key, seq) order
    of the items: either way they never depend on how time was split into calls. A uti row
    is written once per call, at its latest state (no reader sees the steps in between)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.new_uti: dict[int, list[Any]] = {}  # order number -> uti row inserted by this call
        self.latest: dict[int, tuple[int, int, str | None]] = {}  # number -> time, code, sds
        self.counts = dict.fromkeys(
            (
                "new_orders",
                "spath_events",
                "reactivations",
                "null_key_rows",
                "partner_updates",
                "ecs_changes",
                "spath_corrections",
            ),
            0,
        )

    def write(self, items: list[Item]) -> None:
        ecs: list[tuple[Any, ...]] = []
        spath: list[tuple[Any, ...]] = []
        partners: list[tuple[Any, ...]] = []
        latest, new_uti, counts = self.latest, self.new_uti, self.counts
        ecs_changes: list[tuple[Any, ...]] = []
        corrections: list[tuple[Any, ...]] = []
        for due, kind, key, seq, n1, n2, n3, n4, t1, t2, t3 in items:
            if kind == K_EVENT:
                spath.append((ORDER_ID_BASE + key, seq, due, n1, n2, t1, due))
                latest[key] = (due, n1, t2)
                counts["reactivations"] += n3
                # Changes after creation, made with this status change (same second), chosen
                # from the item alone so that any split of time into calls writes the same:
                if seq > 1 and (key * 7 + seq) % ECS_CHANGE_EVERY == 0:  # ecs corrected
                    ecs_changes.append((f"{(key * 31 + seq) % 90000 + 10000:05d}", key))
                if seq > 1 and (key * 5 + seq) % SPATH_CORRECTION_EVERY == 0:
                    corrections.append((due, ORDER_ID_BASE + key, seq - 1))
            elif kind == K_ORDER:
                ecs.append((key, ORDER_ID_BASE + key, n1, due, t1, t2, n2, n3, n4))
                new_uti[key] = [key, ORDER_ID_BASE + key, t3, 0, due, None]
            elif kind == K_NULL_UTI:
                new_uti[key] = [key, None, t1, n1, due, None]
                counts["null_key_rows"] += 1
            elif kind == K_NULL_SPATH:
                spath.append((None, seq, due, n1, n2, t1, due))
                counts["null_key_rows"] += 1
            else:
                partners.append((t1, t2, due, key))
        self.conn.executemany(
            "INSERT INTO ecs_order_info (id, order_id, partner_id, add_time, extra_order_sn, "
            "zipcode, type, order_status, shipping_status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ecs,
        )
        self.conn.executemany(
            "INSERT INTO uni_tracking_spath (order_id, traceSeq, pathTime, code, staff_id, "
            "pathInfo, time_modified) VALUES (?, ?, ?, ?, ?, ?, ?)",
            spath,
        )
        self.conn.executemany("UPDATE ecs_order_info SET zipcode = ? WHERE id = ?", ecs_changes)
        self.conn.executemany(
            "UPDATE uni_tracking_spath SET pathInfo = pathInfo || ' (corrected)', is_updated = 1, "
            "time_modified = ? WHERE order_id = ? AND traceSeq = ?",
            corrections,
        )
        counts["ecs_changes"] += len(ecs_changes)
        counts["spath_corrections"] += len(corrections)
        self.conn.executemany(
            "UPDATE partners SET name = ?, country = ?, update_time = ? WHERE partner_id = ?",
            partners,
        )
        counts["new_orders"] += len(ecs)
        counts["spath_events"] += len(spath)
        counts["partner_updates"] += len(partners)

    def finish(self) -> dict[str, int]:
        """Write the uti rows; return the counts for `AdvanceStats`."""
        updates = []
        for n, (t, code, sds) in self.latest.items():
            row = self.new_uti.get(n)
            if row is None:
                updates.append((code // 100, t, sds, n))
            else:
                row[3:] = code // 100, t, sds  # a new order's row starts at its latest state
        self.conn.executemany(
            "INSERT INTO uni_tracking_info (id, order_id, tno, state, update_time, "
            "second_delivery_sn) VALUES (?, ?, ?, ?, ?, ?)",
            sorted(self.new_uti.values()),
        )
        self.conn.executemany(
            "UPDATE uni_tracking_info SET state = ?, update_time = ?, second_delivery_sn = ? "
            "WHERE id = ?",
            updates,
        )
        return {**self.counts, "uti_updates": len(updates)}


class DemoSource:
    """The synthetic source file. Each call opens and closes its own connection, so the
    pipeline can read the file between calls (and another process can continue it)."""

    def __init__(self, path: Path, spec: DemoSpec = DemoSpec()) -> None:
        self.path = Path(path)
        self.spec = spec
        self._partners, self._partner_cum = _partners(spec.seed)
        spec_json = json.dumps(asdict(spec), sort_keys=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for ddl in _SCHEMA:
                    conn.execute(ddl)
                row = conn.execute("SELECT value FROM _demo_state WHERE key = 'spec'").fetchone()
                if row is None:
                    self._initialise(conn, spec_json)
                elif row[0] != spec_json:
                    raise ConfigError(
                        f"demo source {self.path} was generated with spec {row[0]}, not "
                        f"{spec_json}; use the same demo options or delete the file to start over"
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        # The file can be regenerated from its spec, so skip fsync: a killed process still
        # rolls back cleanly (the journal is kept), only a power loss could hurt.
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -65536")
        return conn

    def _initialise(self, conn: sqlite3.Connection, spec_json: str) -> None:
        if conn.execute("SELECT 1 FROM ecs_order_info LIMIT 1").fetchone():
            raise ConfigError(
                f"{self.path} already holds an ecs_order_info table that trackline demo did "
                "not create; choose another demo path"
            )
        conn.executemany(
            "INSERT INTO _demo_state (key, value) VALUES (?, ?)",
            [
                ("spec", spec_json),
                ("schema_version", str(SCHEMA_VERSION)),
                ("days_done", "0"),
                ("next_order_n", "1"),
            ],
        )
        conn.execute("DELETE FROM trackline_clock")
        conn.execute("INSERT INTO trackline_clock (now) VALUES (?)", (self.spec.start,))
        conn.executemany(
            "INSERT OR REPLACE INTO partners (partner_id, name, country, update_time) "
            "VALUES (?, ?, ?, ?)",
            [(p.partner_id, p.name, p.country, self.spec.start - 90 * DAY) for p in self._partners],
        )

    @property
    def now(self) -> int:
        """The source's simulated current time (``trackline_clock.now``)."""
        with closing(self._connect()) as conn:
            return int(conn.execute("SELECT now FROM trackline_clock").fetchone()[0])

    def advance(self, until: int) -> AdvanceStats:
        """Write every change with time <= `until` and set the clock to `until`, in one
        transaction. A call with `until` at or before the clock changes nothing."""
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                now = int(conn.execute("SELECT now FROM trackline_clock").fetchone()[0])
                counts: dict[str, int] = {}
                if until > now:
                    counts = self._advance(conn, now, until)
                    conn.execute("UPDATE trackline_clock SET now = ?", (until,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return AdvanceStats(until=until, **counts)

    def _advance(self, conn: sqlite3.Connection, now: int, until: int) -> dict[str, int]:
        """Apply (now, until] one simulated day at a time; items due later go (back) to
        ``_demo_pending``. Memory holds the items in flight (the events of orders still
        travelling), not the whole run."""
        spec = self.spec
        first = now - (now - spec.start) % DAY + DAY
        bounds = [*range(first, until, DAY), until]
        steps: dict[int, list[Item]] = {}  # step -> items due in that step
        later: dict[int, list[Item]] = {}  # pending slot -> items due after `until`

        def schedule(items: Iterable[Item]) -> None:
            for item in items:
                due = item[0]
                if due > until:
                    later.setdefault((due - spec.start - 1) // DAY, []).append(item)
                else:
                    steps.setdefault(bisect.bisect_left(bounds, due), []).append(item)

        last_slot = (until - spec.start - 1) // DAY
        for (items_json,) in conn.execute(
            "SELECT items FROM _demo_pending WHERE slot <= ?", (last_slot,)
        ):
            schedule(tuple(item) for item in json.loads(items_json))
        conn.execute("DELETE FROM _demo_pending WHERE slot <= ?", (last_slot,))

        state = dict(conn.execute("SELECT key, value FROM _demo_state").fetchall())
        day, next_n = int(state["days_done"]), int(state["next_order_n"])
        writer = _Writer(conn)
        for step, bound in enumerate(bounds):
            # A day is generated once its first second is reached. All its items are due at
            # or after that second, so none lands in a step already written.
            while day < spec.days and spec.start + day * DAY <= bound:
                items, next_n = self._generate_day(day, next_n)
                schedule(items)
                day += 1
            writer.write(sorted(steps.pop(step, [])))
        conn.executemany(
            "INSERT INTO _demo_pending (slot, items) VALUES (?, ?)",
            [(slot, json.dumps(items, separators=(",", ":"))) for slot, items in later.items()],
        )
        conn.executemany(
            "UPDATE _demo_state SET value = ? WHERE key = ?",
            [(str(day), "days_done"), (str(next_n), "next_order_n")],
        )
        return writer.finish()

    # ------------------------------------------------------------------ one simulated day

    def _generate_day(self, day: int, next_n: int) -> tuple[list[Item], int]:
        """Everything that starts on `day`: orders with their whole lifecycles, partner
        changes and NULL-key rows. Depends only on (seed, day) and the order counter."""
        spec = self.spec
        rng = _Rng(f"trackline-demo:{spec.seed}:{day}")
        midnight = spec.start + day * DAY
        weekday = (midnight // DAY + 3) % 7  # 1970-01-01 was a Thursday
        scale = _WEEKDAY[weekday] / _WEEKDAY_MEAN * rng.uniform(0.9, 1.1)
        count = round(spec.orders_per_day * scale)
        hours = rng.choices(range(24), cum_weights=_HOUR_CUM, k=count)
        times = sorted(midnight + h * 3600 + rng.between(0, 3600) for h in hours)
        items: list[Item] = []
        if rng.random() < 0.1:
            pid = self._partners[rng.between(0, len(self._partners))].partner_id
            name, country = _partner_name(rng), rng.pick(_COUNTRIES)
            due = midnight + rng.between(0, DAY)
            items.append((due, K_PARTNER, pid, 0, None, None, None, None, name, country, None))

        n_react = 0
        span = min(_REACTIVATION_SPAN_DAYS, spec.days)
        if day < span:
            n_react = spec.reactivation_orders // span + (day < spec.reactivation_orders % span)
        n_ever = _EVERGREEN_ORDERS if day == 0 else 0
        special = rng.sample(range(count), min(count, n_react + n_ever))
        profile = dict.fromkeys(special[:n_react], "reactivate")
        profile.update(dict.fromkeys(special[n_react:], "evergreen"))

        rate = spec.null_order_id_rate
        serial = day * 1_000_000
        partner_idx = rng.choices(
            range(len(self._partners)), cum_weights=self._partner_cum, k=count
        )
        for i, add_time in enumerate(times):
            n, next_n = next_n, next_n + 1
            partner = self._partners[partner_idx[i]]
            pid = partner.partner_id
            r = rng.random()
            kind_of_order = 1 if r < 0.8 else 2 if r < 0.95 else 3  # standard, express, return
            status = 0 if rng.random() < 0.03 else 1
            sn = None if rng.random() < 0.1 else f"{pid}-{rng.getrandbits(36):09X}"
            zipcode, tno = f"{rng.between(0, 100_000):05d}", f"UT{rng.between(10, 100)}{n:09d}"
            items.append((add_time, K_ORDER, n, 0, pid, kind_of_order, status, 0, sn, zipcode, tno))
            if rng.random() < rate:
                lost, next_n = next_n, next_n + 1  # a tracking row whose order_id got lost
                due, tno = add_time + rng.between(0, 600), f"UX{rng.between(10, 100)}{lost:09d}"
                items.append((due, K_NULL_UTI, lost, 0, 0, None, None, None, tno, None, None))
            events = self._lifecycle(rng, add_time, partner, profile.get(i, "normal"))
            for seq, (t, code, staff, info, sds, flag) in enumerate(events, start=1):
                items.append((t, K_EVENT, n, seq, code, staff, flag, None, info, sds, None))
                if rng.random() < rate:  # the same scan again, without its order
                    serial += 1
                    row = (t, K_NULL_SPATH, serial, 0, code, staff, None, None, _UNREADABLE)
                    items.append((*row, None, None))
        return items, next_n

    def _lifecycle(self, rng: _Rng, add_time: int, partner: _Partner, profile: str) -> list[_Event]:
        """Scan events of one order, strictly increasing in time."""
        events: list[_Event] = [(add_time, CREATED, 0, _INFO[CREATED][0], None, 0)]
        pickup = _next_slot(add_time + 1800, partner.pickups)  # bulk scan: one second, many orders
        events.append((pickup, PICKED_UP, partner.courier, rng.pick(_INFO[PICKED_UP]), None, 0))

        if profile == "evergreen":
            end, max_gap = self.spec.end + rng.between(2 * DAY, 20 * DAY), 8 * DAY
        else:
            u = rng.random()
            if u < 0.86 or profile == "reactivate":
                days = 2 + min(13.0, rng.expovariate(1 / 3.5))
            elif u < 0.965:
                days = rng.uniform(15, 60)
            else:
                days = rng.uniform(60, 300)
            end, max_gap = add_time + int(days * DAY), 30 * DAY
        long_haul = end - add_time > 15 * DAY

        # The van leaves on the last day, on a 15-minute grid (a whole van shares one second).
        out = max(end - end % DAY + 7 * 3600 + 900 * rng.between(0, 12), pickup + 12 * 3600)
        first_scan = pickup + rng.between(2 * 3600, 8 * 3600)
        n_scans = rng.between(1, 5) + (end - add_time) // (12 * DAY)
        scans = sorted(rng.between(first_scan, out) for _ in range(n_scans))
        # Fill long silences, so that only the designated orders ever go dormant.
        filled: list[int] = []
        prev = pickup
        for t in [*scans, out]:
            while t - prev > max_gap:
                prev += rng.between(max_gap // 2, max_gap)
                filled.append(prev)
            filled.append(t)
            prev = t
        prev = pickup
        for t in filled[:-1]:
            if rng.random() < 0.4:
                t -= t % 1800  # hub sweep: every parcel of the sweep gets the same second
            t = max(t, prev + 1)
            code = HELD if long_haul and rng.random() < 0.25 else IN_TRANSIT
            events.append((t, code, 5000 + rng.between(0, 90), rng.pick(_INFO[code]), None, 0))
            prev = t
        t = max(out, prev + 1)
        events.append((t, OUT_FOR_DELIVERY, rng.between(2000, 3000), "Out for delivery", None, 0))
        events.extend(self._outcome(rng, t))

        if profile == "reactivate":
            sds = events[-1][4]
            t = events[-1][0] + int(rng.uniform(DORMANCY_DAYS + 1, DORMANCY_DAYS + 16) * DAY)
            events.append((t, IN_TRANSIT, 5000 + rng.between(0, 90), _FOUND, sds, 1))
            t += rng.between(DAY // 2, 2 * DAY)
            events.append(
                (t, OUT_FOR_DELIVERY, rng.between(2000, 3000), "Out for delivery", sds, 0)
            )
            t += rng.between(3600, 8 * 3600)
            code = RETURNED if rng.random() < 0.5 else DELIVERED
            events.append((t, code, rng.between(2000, 3000), rng.pick(_INFO[code]), sds, 0))
        return events

    @staticmethod
    def _outcome(rng: _Rng, out: int) -> list[_Event]:
        """Delivery attempts after the van left at `out`: mostly delivered at the first."""
        t = out + rng.between(3600, 8 * 3600)
        courier = rng.between(2000, 3000)
        if rng.random() < 0.9:
            return [(t, DELIVERED, courier, rng.pick(_INFO[DELIVERED]), None, 0)]
        events: list[_Event] = []
        sds: str | None = None
        for _attempt in range(3):
            events.append((t, FAILED_ATTEMPT, courier, rng.pick(_INFO[FAILED_ATTEMPT]), sds, 0))
            if sds is None and rng.random() < 0.5:
                sds = f"SD{rng.getrandbits(40):013d}"  # handed over to a second delivery service
            t = t - t % DAY + DAY + 7 * 3600 + 900 * rng.between(0, 12)
            courier = rng.between(2000, 3000)
            events.append((t, OUT_FOR_DELIVERY, courier, "Out for delivery", sds, 0))
            t += rng.between(3600, 8 * 3600)
            if rng.random() < 0.6:
                events.append((t, DELIVERED, courier, rng.pick(_INFO[DELIVERED]), sds, 0))
                return events
        t += rng.between(3 * DAY, 10 * DAY)
        events.append((t, RETURNED, 5000 + rng.between(0, 90), _INFO[RETURNED][0], sds, 0))
        return events
