"""Where a read must stop so that no row can still commit behind it: the upper bounds.

A row is safe to pass only once nothing can commit another row below it later. Two things
commit late: transactions (InnoDB stamps NOW() and hands out AUTO_INCREMENT ids when a row is
written, but the row becomes visible only at COMMIT, in any order), and statements that waited
for a lock before their transaction began.

- Time cursors (`hybrid`, `timestamp`): ``upper = source clock - lag``, held at the start of
  every open write transaction and running write statement the source reports
  (`Source.write_transactions`). A transaction's InnoDB start (`trx_started`) is moved back by
  `defaults.lock_wait_margin_seconds`: a statement that waited for a metadata or table lock
  (`LOCK TABLES`, DDL) stamped its rows before InnoDB began the transaction, and once the
  statement has finished the server keeps no trace of that wait. A running or waiting
  statement is held at its own start, which the process list tells exactly.
- Ids (`id`): see `id_upper`.

Transactions older than `defaults.hold_ceiling_seconds` hold nothing: each is reported as a
warning, and the others still hold.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from trackline.config import Config, TableConfig
from trackline.errors import CdcError
from trackline.extract import Source
from trackline.extract.cdc import Watermark, shift
from trackline.extract.source import OpenTransaction
from trackline.extract.types import SourceColumn
from trackline.report import Reporter
from trackline.sync.tables import TableResult

FRESH_HOLD_BELOW_LAG_SECONDS = 1
"""Under this lag, the open-transaction hold is read fresh (`Source.write_transactions`):
a moment's staleness of the source's view would matter; with more lag it cannot."""

ID_SAMPLES_PER_CEILING = 60
"""The id hold keeps at most this many (time, max id) samples per hold ceiling."""


def _holding(
    src: Source,
    t: TableConfig,
    cfg: Config,
    trxs: list[OpenTransaction],
    res: TableResult,
    reporter: Reporter,
    warned: set[str] | None = None,
) -> list[OpenTransaction]:
    """The transactions that hold the bound: all but those older than the hold ceiling,
    which are reported (once per thread) instead. A source that cannot tell is reported:
    in each table's result, and on the reporter once per run (`warned`: the problems this
    run already told), not once per table."""
    if src.hold_problem:
        msg = f"{t.name}: {src.hold_problem}"
        res.warnings.append(msg)
        if warned is None or src.hold_problem not in warned:
            reporter.event("hold", src.hold_problem, table=t.name)
            if warned is not None:
                warned.add(src.hold_problem)
    ceiling = cfg.defaults.hold_ceiling_seconds
    live: list[OpenTransaction] = []
    stuck: dict[int, OpenTransaction] = {}
    for trx in trxs:
        if trx.age_seconds > ceiling:
            stuck.setdefault(trx.thread_id, trx)
        else:
            live.append(trx)
    for trx in stuck.values():
        msg = (
            f"{t.name}: an open transaction (thread {trx.thread_id}, started "
            f"{trx.started}) is older than the hold ceiling ({ceiling}s); proceeding "
            "without waiting for it: rows it commits later with older times may be missed"
        )
        res.warnings.append(msg)
        reporter.event("hold", msg, table=t.name, thread=trx.thread_id)
    return live


def check_time_cursor(what: str, column: SourceColumn) -> None:
    """A time cursor is a DATE/DATETIME/TIMESTAMP column or unix seconds in an integer one.
    A number of another type (a DOUBLE or DECIMAL of seconds) or a TIME compared with the
    time bound reads nothing or everything without an error: refused, naming it. (Text is
    let through: ISO times in it compare as the bound does.)"""
    a = column.arrow
    if pa.types.is_integer(a) or pa.types.is_timestamp(a) or pa.types.is_date(a):
        return
    if pa.types.is_string(a) or pa.types.is_large_string(a):
        return
    raise CdcError(
        f"{what}: the cursor column {column.name!r} is {column.column_type or a}; a time cursor "
        "must be a DATETIME, TIMESTAMP or DATE column, or unix seconds in an integer column "
        "(CAST it in a `query:`). Nothing was read"
    )


def time_upper(
    src: Source,
    t: TableConfig,
    cfg: Config,
    unix: bool,
    res: TableResult,
    reporter: Reporter,
    warned: set[str] | None = None,
) -> Any:
    """The upper bound of a time cursor (exclusive): the source clock minus the lag, held at
    the earliest moment an open write transaction or running statement may have stamped."""
    lag = t.lag_seconds if t.lag_seconds is not None else cfg.defaults.lag_seconds
    upper: Any = shift(src.now(unix), lag)
    if unix and isinstance(upper, int | float):
        upper = int(upper)
    # Under a second of lag, rows a transaction wrote just before `now()` would pass the
    # bound if the source's view of open transactions were a moment old: ask it fresh
    # (MySQL/MariaDB always read it fresh: a statement that waited for a lock stamped its
    # rows long before it shows up there, whatever the lag).
    trxs = src.write_transactions(unix, fresh=lag < FRESH_HOLD_BELOW_LAG_SECONDS)
    margin = cfg.defaults.lock_wait_margin_seconds
    held_by = None
    for trx in _holding(src, t, cfg, trxs, res, reporter, warned):
        start: Any = trx.started if trx.statement else shift(trx.started, margin)
        if start < upper:
            upper, held_by = start, trx
    if held_by is not None:
        what = "running statement" if held_by.statement else "open transaction"
        reporter.event(
            "hold",
            f"{t.name}: upper bound held at {upper} by {what} (thread {held_by.thread_id})",
            table=t.name,
        )
    return upper


@dataclass(frozen=True)
class IdBound:
    upper: Any
    """The highest id that may be read (inclusive); None: nothing may be read yet."""
    watermark: Watermark
    """The watermark with this run's (time, max id) sample added."""
    top: Any
    """The source's max id when the bound was taken (None: the table is empty)."""


def id_upper(
    src: Source,
    relation: str,
    id_ref: str,
    t: TableConfig,
    cfg: Config,
    wm: Watermark,
    res: TableResult,
    reporter: Reporter,
    warned: set[str] | None = None,
) -> IdBound:
    """The highest id of an `id` table that no open transaction can still commit below.

    AUTO_INCREMENT hands out ids when a row is written, and transactions commit in any order:
    reading to the max committed id would pass an id held by an open transaction (it commits
    later, below the watermark, and is never read). So each run samples (t, max committed
    id), reading the max FIRST and the clock after it: every id up to that max was handed out
    before t, and a transaction that began after t can only commit higher ids. The bound is
    the newest sample (this run's or a stored one) taken before the oldest open write
    transaction or running write statement began; with none open, this run's max.

    Why this hold and not a ledger of id gaps re-read until they fill: it is the same
    mechanism, settings and privilege as the time hold (`innodb_hold`, `hold_ceiling_seconds`,
    PROCESS), keeps a bounded state (at most ID_SAMPLES_PER_CEILING samples), and raises no
    false alarm where ids are not dense: rollbacks, InnoDB's bulk-insert id reservations,
    `auto_increment_increment` > 1 and deleted rows all leave gaps that never fill, which a
    gap ledger would re-read for an hour and then report. The cost: while a write
    transaction that began before this run's sample is open, the read stops at an older
    sample (at most one run behind, or until the transaction ends or passes the ceiling)."""
    top = src.scalar(f"SELECT MAX({id_ref}) FROM {relation}")
    now = src.now(False)  # after the max: the sample's time
    trxs = src.write_transactions(False, fresh=True)
    live = _holding(src, t, cfg, trxs, res, reporter, warned)
    ceiling = dt.timedelta(seconds=cfg.defaults.hold_ceiling_seconds)
    samples = wm.id_samples() + ([(now, top)] if top is not None else [])
    if live:
        oldest = min(live, key=lambda trx: trx.started)
        usable = [m for at, m in samples if at < oldest.started]
        upper = max(usable) if usable else None
        if upper is None or top is None or upper < top:
            reporter.event(
                "hold",
                f"{t.name}: ids held at {upper if upper is not None else wm.id} by open "
                f"transaction (thread {oldest.thread_id}, started {oldest.started})",
                table=t.name,
            )
    else:
        upper = top
    if upper is not None and wm.id is not None and upper < wm.id:
        upper = wm.id  # a sample from before the watermark's last advance: read nothing new
    out = wm
    if top is not None:
        out = wm.with_id_sample(
            now,
            top,
            keep_after=now - ceiling,
            spacing=ceiling / ID_SAMPLES_PER_CEILING,
        )
    return IdBound(upper, out, top)
