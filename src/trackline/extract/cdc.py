"""Change data capture: a table's strategy + its watermark → the next query and watermark.

`Watermark` owns the cursor rules:

- **hybrid** (ts, id): rows strictly after the cursor in (ts, id) order and strictly before the
  upper bound: ``(ts > :ts OR (ts = :ts AND id > :id)) AND ts < :upper ORDER BY ts, id``.
  Never misses same-second rows, never re-reads one. The upper bound is the source's clock minus
  a lag (and held at the oldest open write transaction), so a second is read only once no new
  row can land in it. ``id = None`` means "inclusive from ts" (right after a snapshot).
- **timestamp** (ts): ``ts >= :ts AND ts < :upper``: re-reads the boundary second, so the
  target must be idempotent by key (write_mode: merge).
- **id**: ``id > :id AND id <= :upper ORDER BY id``. AUTO_INCREMENT hands ids out at insert
  and transactions commit in any order, so ``:upper`` is held where no open write
  transaction can still commit a lower id (`id_samples`, `trackline.sync.hold`). If the
  source's max id falls below the watermark the table was truncated or its ids reset: stop
  with an error instead of silently skipping.
- **full**: no cursor; every run is a complete snapshot swapped in atomically.
- **snapshot** phase (first load of a table with a single integer primary key): rows with
  ``ts < :upper`` in primary-key order (server order, no random lookups), resumable at the last
  key; (ts, id) carries the greatest cursor read so far, and when done the cursor becomes that
  last row actually read (never the upper bound: a row written later with an older time than
  the bound but newer than every row read is still read) and hybrid continues from there.

The watermark never passes the last row actually read; a row that lands below it later (a
backdated write, a clock behind the database) is found by the `behind_watermark` check.

Values keep full precision: datetimes to the microsecond, integers exact; they are stored as
tagged JSON (`to_json`) so the type survives the round trip through the state table.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Literal

Phase = Literal["incremental", "snapshot"]
Value = int | Decimal | dt.datetime | dt.date | str | None


def _enc(v: Value) -> Any:
    if v is None:
        return None
    if isinstance(v, bool):
        return {"t": "int", "v": int(v)}
    if isinstance(v, int):
        return {"t": "int", "v": str(v)}
    if isinstance(v, Decimal):
        return {"t": "dec", "v": str(v)}
    if isinstance(v, dt.datetime):
        return {"t": "dt", "v": v.isoformat(timespec="microseconds")}
    if isinstance(v, dt.date):
        return {"t": "date", "v": v.isoformat()}
    return {"t": "str", "v": str(v)}


def _dec(d: Any) -> Value:
    if d is None:
        return None
    t, v = d["t"], d["v"]
    if t == "int":
        return int(v)
    if t == "dec":
        return Decimal(v)
    if t == "dt":
        return dt.datetime.fromisoformat(v)
    if t == "date":
        return dt.date.fromisoformat(v)
    return str(v)


@dataclass(frozen=True)
class Watermark:
    ts: Value = None
    id: Value = None
    phase: Phase = "incremental"
    snapshot_upper: Value = None
    snapshot_key: Value = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.ts is None and self.id is None and self.phase == "incremental"

    def to_json(self) -> str:
        return json.dumps(
            {
                "ts": _enc(self.ts),
                "id": _enc(self.id),
                "phase": self.phase,
                "snapshot_upper": _enc(self.snapshot_upper),
                "snapshot_key": _enc(self.snapshot_key),
                **({"extra": self.extra} if self.extra else {}),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> Watermark:
        if not text:
            return cls()
        d = json.loads(text)
        return cls(
            ts=_dec(d.get("ts")),
            id=_dec(d.get("id")),
            phase=d.get("phase", "incremental"),
            snapshot_upper=_dec(d.get("snapshot_upper")),
            snapshot_key=_dec(d.get("snapshot_key")),
            extra=d.get("extra", {}),
        )

    def describe(self) -> str:
        if self.phase == "snapshot":
            return f"snapshot below {self.snapshot_upper} at key {self.snapshot_key}"
        if self.empty:
            return "(start)"
        if self.ts is not None and self.id is not None:
            return f"{self.ts} / {self.id}"
        if self.ts is not None:
            return f"{self.ts} (inclusive)"
        return str(self.id)

    def advanced(self, **changes: Any) -> Watermark:
        return replace(self, **changes)

    # -- id strategy: (time, max id) samples, for the hold (`trackline.sync.hold`)

    def id_samples(self) -> list[tuple[dt.datetime, Value]]:
        """(source time t, max committed id at t): every id <= that id was handed out
        before t, so a transaction that started after t can only commit higher ids."""
        return [(dt.datetime.fromisoformat(at), _dec(v)) for at, v in self.extra.get("ids", [])]

    def with_id_sample(
        self, at: dt.datetime, top: Value, *, keep_after: dt.datetime, spacing: dt.timedelta
    ) -> Watermark:
        """Add the sample (at, top); keep the samples after `keep_after` (older ones can only
        serve a transaction the hold ignores) plus the newest one before it, at most one per
        `spacing` (a bounded list: dropping a sample only makes the hold wait longer)."""
        samples = self.id_samples()
        if samples and at - samples[-1][0] < spacing:
            return self
        samples.append((at, top))
        old = [s for s in samples if s[0] <= keep_after]
        samples = old[-1:] + [s for s in samples if s[0] > keep_after]
        ids = [[a.isoformat(timespec="microseconds"), _enc(v)] for a, v in samples]
        return replace(self, extra={**self.extra, "ids": ids})


@dataclass(frozen=True)
class BatchPlan:
    """One streaming read: the SQL and how to derive a watermark from a batch's last row."""

    sql: str
    strategy: str
    phase: Phase
    upper: Value


@dataclass(frozen=True)
class CursorSpec:
    strategy: Literal["hybrid", "timestamp", "id", "full"]
    ts: str | None
    """Quoted cursor expression (e.g. `update_time`)."""
    id: str | None
    null_cursor: Literal["error", "load"] = "error"


KEY_FLOOR = -(2**63)
"""Below every integer key (signed or not): the snapshot's first lower bound."""


def plan_query(
    *,
    select: str,
    relation: str,
    spec: CursorSpec,
    wm: Watermark,
    upper: Value,
    lit: Any,
    snapshot_key: str | None = None,
    lookback: Value = None,
    nothing: bool = False,
    order_key: str | None = None,
    after: tuple[Value, ...] | None = None,
) -> BatchPlan:
    """Build the streaming query for the next run of one table.

    `lit` renders a typed watermark value as a SQL literal for readers that cannot bind
    parameters (connectorx); it accepts only ints, Decimals, dates and datetimes, and strings
    escaped by the dialect, never raw text from config. `nothing`: the id hold allows no row
    yet (the query reads none).

    A run may read in windows (`ReadWindows`): the same query continued after the last row
    a window read. Hybrid and id tables continue from the watermark reached (`wm`); a
    timestamp table from its last row's (cursor, id), `after`, strictly (its watermark is
    the cursor alone, re-read on a rerun); a full table is read in `order_key` order (its
    integer primary key) and continues after the key `after`.
    """
    base = f"SELECT {select} FROM {relation}"
    ts, idc = spec.ts, spec.id
    if spec.strategy == "full":
        if order_key is None:
            return BatchPlan(base, "full", "incremental", None)
        where = f" WHERE {order_key} > {lit(after[0])}" if after else ""
        return BatchPlan(f"{base}{where} ORDER BY {order_key}", "full", "incremental", None)
    if spec.strategy == "id":
        assert idc
        conds = [] if wm.id is None else [f"{idc} > {lit(wm.id)}"]
        if nothing:
            conds = ["1 = 0"]
        elif upper is not None:
            conds.append(f"{idc} <= {lit(upper)}")
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        return BatchPlan(f"{base}{where} ORDER BY {idc}", "id", "incremental", upper)
    assert ts
    if wm.phase == "snapshot" or (wm.empty and snapshot_key and spec.strategy == "hybrid"):
        su = wm.snapshot_upper if wm.phase == "snapshot" else upper
        cond = f"{ts} < {lit(su)}"
        if spec.null_cursor == "load":
            cond = f"({cond} OR {ts} IS NULL)"
        if wm.phase == "snapshot" and wm.snapshot_key is not None:
            cond += f" AND {snapshot_key} > {lit(wm.snapshot_key)}"
        else:
            # a lower bound on the key from the first read on: with only the cursor's range,
            # MariaDB 10.11 read a LIMITed window through the cursor's index and sorted the
            # whole table (14 s for the first window of 5M rows, against 0.5 s by the key)
            cond += f" AND {snapshot_key} > {lit(KEY_FLOOR)}"
        return BatchPlan(
            f"{base} WHERE {cond} ORDER BY {snapshot_key}", spec.strategy, "snapshot", su
        )
    conds = [f"{ts} < {lit(upper)}"]
    if spec.strategy == "timestamp" and after is not None and idc:
        a, b = after
        conds.insert(0, f"({ts} > {lit(a)} OR ({ts} = {lit(a)} AND {idc} > {lit(b)}))")
        order = f"{ts}, {idc}"
    elif spec.strategy == "timestamp" or (wm.ts is not None and wm.id is None):
        start = wm.ts
        if lookback is not None and start is not None:
            start = lookback
        if start is not None:
            conds.insert(0, f"{ts} >= {lit(start)}")
        order = f"{ts}" + (f", {idc}" if idc else "")
    else:
        assert idc
        if lookback is not None and wm.ts is not None:
            conds.insert(0, f"{ts} >= {lit(lookback)}")
        elif wm.ts is not None:
            conds.insert(
                0, f"({ts} > {lit(wm.ts)} OR ({ts} = {lit(wm.ts)} AND {idc} > {lit(wm.id)}))"
            )
        elif spec.null_cursor == "load":
            # NULL-cursor rows sort first; `wm.id` (with no `wm.ts`) is how far they were read
            nulls = f"{ts} IS NULL"
            if wm.id is not None:
                nulls = f"({nulls} AND {idc} > {lit(wm.id)})"
            conds = [f"({conds[0]} OR {nulls})"]
        order = f"{ts}, {idc}"
    return BatchPlan(
        f"{base} WHERE {' AND '.join(conds)} ORDER BY {order}", spec.strategy, "incremental", upper
    )


def shift(value: Value, seconds: int) -> Value:
    """value - seconds, in the value's own type (unix int or datetime)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value - dt.timedelta(seconds=seconds)
    if isinstance(value, int):
        return value - seconds
    if isinstance(value, Decimal):
        return value - seconds
    raise TypeError(f"cannot shift a {type(value).__name__} cursor by seconds")
