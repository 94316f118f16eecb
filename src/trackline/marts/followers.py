"""The follower marts of a retention group: one row per key (follows its anchor into
history and back) and events (retention by their own time). See `trackline.marts.engine`."""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa

from trackline.config import FollowerConfig
from trackline.extract.cdc import shift
from trackline.faults import checkpoint
from trackline.load import Column
from trackline.marts.changes import EventChanges
from trackline.marts.history import HistoryTables, Period, periods_between
from trackline.marts.steps import DEPARTURES, MartStats, RawRef
from trackline.sync import BATCH_COL


class FollowerSteps(EventChanges):
    # ------------------------------------------------------------------ one_per_key

    def run_one_per_key(self, f: FollowerConfig) -> MartStats:
        g, w = self.g, self.wh
        raw = self.raw(f.source)
        a_raw = self.raw(g.anchor.source)
        assert raw is not None and a_raw is not None
        stats = MartStats(f.table, "one_per_key")
        t_start = time.monotonic()
        cols = [c.name for c in raw.columns]
        hist = self.follower_history(f, raw)
        mart, anchor, k = self.t(f.table), self.t(g.anchor.table), self.q(g.key)
        dep = w.t(self.cfg.state_schema, self._dep_table())
        dep_mark = f"{DEPARTURES}:{g.name}"
        last = self.state.mart_progress(f.table, raw.key)
        chunks = list(self._ledger_chunks(raw.key, last))
        a_last = self.state.mart_progress(f.table, a_raw.key)
        a_hi = self.state.mart_progress(g.anchor.table, a_raw.key)
        d_last = self.state.mart_progress(f.table, dep_mark)
        d_hi = int(w.scalar(f"SELECT COALESCE(MAX(seq), 0) FROM {dep}") or 0)
        if not chunks and (a_hi > a_last or d_hi > d_last):
            chunks = [(last, last, 0)]  # nothing new here, but the anchor moved: post-steps
        tie = self.cfg.table(f.source).cdc.id
        # A following table (cdc strategy follow) re-reads rows that changed: the last read
        # of a key replaces its row, in the mart or in the history period that holds it.
        follows = bool(self.cfg.table(f.source).cdc.follow)
        for lo, hi, _rows in chunks:
            self._stop_here(raw.key, lo)
            before = stats.saved()

            def chunk(
                lo: int = lo,
                hi: int = hi,
                a_last: int = a_last,
                d_last: int = d_last,
                before: MartStats = before,
            ) -> None:
                stats.restore(before)  # a rerun after a conflict counts afresh
                t0 = time.monotonic()
                newest = None
                if hi > lo:
                    order = f"{self.q(tie)} DESC" if tie else f"{k}"
                    if follows:  # the last read wins
                        order = f"{self.q(BATCH_COL)} DESC, {order}"
                    new = self._new_rows(raw, cols, lo, hi, [g.key], order, stats)
                    if f.time:
                        newest = self._newest(new, self.q(f.time))
                    # A key already in history is not new (a re-read, a reset + resync): it
                    # comes back only through reactivation, never as a second copy.
                    for p in hist.existing():
                        h = self.t(hist.table(p))
                        if follows:
                            stats.updated += self._replace_changed(h, new, raw.columns, copy=True)
                        w.execute(
                            f"DELETE FROM {new} WHERE EXISTS (SELECT 1 FROM {h} h "
                            f"WHERE h.{k} = {new}.{k})"
                        )
                    stats.archived += self._follow_departed(new, hist, a_raw, cols)
                    changed = self._replace_changed(mart, new, raw.columns) if follows else 0
                    stats.updated += changed
                    stats.inserted += self._insert_absent(mart, new, cols, [g.key]) - changed
                    self._drop(new)
                checkpoint("mart.after_insert")
                t0 = stats.add_step("insert", t0)
                # 1. reactivation: anchor keys (new since our last look) missing here
                if self._some(a_hi - a_last):
                    stats.reactivated += self._reactivate_follower(
                        f, hist, a_raw, a_last, a_hi, cols, stats
                    )
                checkpoint("mart.after_reactivate")
                t0 = stats.add_step("reactivate", t0)
                # 2–4. keys that departed the anchor follow it into the same period.
                # The departed keys still absent from the anchor, computed once (a batch-sized
                # set), each with the period of its LAST departure in this window (a key can
                # leave, come back and leave again into another half-year before we look):
                # archive, check and trim probe the mart with it.
                key_col = [c for c in a_raw.columns if c.name == g.key]
                gone_rel = self._temp_table("_tl_gone", [*key_col, Column("period", pa.string())])
                w.execute(
                    f"INSERT INTO {gone_rel} ({k}, period) SELECT DISTINCT d.{k}, d.period "
                    f"FROM {dep} d WHERE d.seq > ? AND d.seq <= ? AND NOT EXISTS "
                    f"(SELECT 1 FROM {dep} l WHERE l.{k} = d.{k} AND l.seq > d.seq "
                    f"AND l.seq <= ?)",
                    (d_last, d_hi, d_hi),
                )
                # (a semi-join probe of the anchor with these few keys, not an anti-join
                # that would hash the whole anchor)
                w.execute(
                    f"DELETE FROM {gone_rel} WHERE EXISTS (SELECT 1 FROM {anchor} a "
                    f"WHERE a.{k} = {gone_rel}.{k})"
                )
                periods = [
                    Period.parse(r[0])
                    for r in w.query(f"SELECT DISTINCT period FROM {gone_rel} ORDER BY period")
                ]
                if self.plan is not None:
                    periods = [self.plan.period]
                self._follow_into_period(gone_rel, hist, mart, periods, cols, a_raw, a_last, a_hi)
                gone = (
                    f"EXISTS (SELECT 1 FROM {gone_rel} d WHERE d.{k} = {mart}.{k} AND d.period = ?)"
                )
                for p in periods:
                    h = self.t(hist.ensure(p))
                    params: tuple[Any, ...] = (p.suffix,)
                    stats.archived += self._change(
                        f"INSERT INTO {h} ({w.cols(cols)}) SELECT {w.cols(cols, mart + '.')} "
                        f"FROM {mart} WHERE {gone} AND NOT EXISTS "
                        f"(SELECT 1 FROM {h} h WHERE h.{k} = {mart}.{k})",
                        params,
                    )
                checkpoint("mart.after_archive")
                t0 = stats.add_step("archive", t0)
                for p in periods:
                    h = self.t(hist.table(p))
                    stats.exceptions += self.exc.record_from(
                        "unarchived_past_cutoff",
                        f.table,
                        f"{mart}.{k}",
                        f"FROM {mart} WHERE {gone} AND NOT EXISTS "
                        f"(SELECT 1 FROM {h} h WHERE h.{k} = {mart}.{k})",
                        (p.suffix,),
                        f"row of a departed key is not in {hist.table(p)}; it is kept",
                    )
                checkpoint("mart.after_check")
                t0 = stats.add_step("check", t0)
                # The keys to trim are decided on the departed keys (batch-sized): in history
                # and without an open exception; the mart is then probed with them alone (the
                # three conditions on the mart's own rows made DuckDB join the whole mart:
                # 0.01 s at 1M rows, 0.20 s at 20M).
                trim_rel = self._temp_table("_tl_trim", key_col)
                for p in periods:
                    h = self.t(hist.table(p))
                    w.execute(f"DELETE FROM {trim_rel}")
                    w.execute(
                        f"INSERT INTO {trim_rel} ({k}) SELECT {gone_rel}.{k} FROM {gone_rel} "
                        f"WHERE {gone_rel}.period = ? AND EXISTS (SELECT 1 FROM {h} h "
                        f"WHERE h.{k} = {gone_rel}.{k}) AND {self._open_exception(gone_rel)}",
                        (p.suffix, f.table),
                    )
                    stats.trimmed += self._change(
                        f"DELETE FROM {mart} WHERE EXISTS (SELECT 1 FROM {trim_rel} x "
                        f"WHERE x.{k} = {mart}.{k})"
                    )
                self._drop(trim_rel)
                self._drop(gone_rel)
                t0 = stats.add_step("trim", t0)
                # 5. rows whose key never reached the anchor leave by their own time
                if f.time:
                    self._retention_by_time(
                        stats,
                        mart_name=f.table,
                        time_col=f.time,
                        unix=self._time_is_unix(raw.columns, f.time),
                        hist=hist,
                        match=[g.key],
                        cols=cols,
                        departures_seq=None,
                        t0=t0,
                        orphans_of=anchor,
                        clock_hint=newest,
                    )
                self.state.set_mart_progress(f.table, raw.key, hi)
                self.state.set_mart_progress(f.table, a_raw.key, a_hi)
                self.state.set_mart_progress(f.table, dep_mark, d_hi)
                checkpoint("mart.before_commit")

            w.run_transaction(chunk)  # the whole chunk reruns after a conflict
            a_last, d_last = a_hi, d_hi
            stats.batches += 1
        stats.seconds = time.monotonic() - t_start
        return stats

    def _replace_changed(
        self, table: str, new: str, columns: list[Column], copy: bool = False
    ) -> int:
        """Delete the rows of `table` whose key is in `new` with other values (NULL-safe);
        returns how many. `copy`: put the rows of `new` in their place at once (a history
        period: the row stays archived, with its new values); else the caller's insert of
        the absent keys does (the mart). A re-read that changed nothing changes nothing."""
        w, k = self.wh, self.q(self.g.key)
        cols = [c.name for c in columns]
        others = [c for c in cols if c != self.g.key]
        hit = f"t.{k} = n.{k} AND {self.differs('n', 't', others, columns)}"
        # The changed rows are found by probing `table` with the batch's keys (a semi-join
        # the size of the batch); the DELETE then matches keys only. One DELETE carrying the
        # value comparison made DuckDB scan a 10M-row mart for 3.7 s (0.5 s with this).
        kept = columns if copy else [c for c in columns if c.name == self.g.key]
        names = [c.name for c in kept]
        chg = self._temp_table("_tl_chg", kept)
        try:
            c = w.cols(names)
            n = self._change(
                f"INSERT INTO {chg} ({c}) SELECT {w.cols(names, 'n.')} FROM {new} n "
                f"WHERE EXISTS (SELECT 1 FROM {table} t WHERE {hit})"
            )
            if self._some(n):
                w.execute(
                    f"DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM {chg} x "
                    f"WHERE x.{k} = {table}.{k})"
                )
                if copy:
                    w.execute(f"INSERT INTO {table} ({c}) SELECT {c} FROM {chg}")
            return n
        finally:
            self._drop(chg)

    def _follow_into_period(
        self,
        gone_rel: str,
        hist: HistoryTables,
        mart: str,
        periods: list[Period],
        cols: list[str],
        a_raw: RawRef,
        a_last: int,
        a_hi: int,
    ) -> int:
        """Departed keys whose row is already in one of our history periods, but not the one
        their anchor row left into, move there (insert, then delete the old copy: idempotent).

        This happens when an archived anchor row is read again with a corrected time that is
        already past the cutoff: the anchor row moves straight from one period to another
        without ever being active, so our row was never reactivated. One archived order sits
        in one period across tables (docs/architecture.md). Only keys absent from our mart AND read
        into the anchor's raw table since our last look are probed: a follower row can sit in
        another period only if its anchor row moved or first arrived, which comes through the
        anchor's raw batches; so a steady cycle, whose departures are plain ones, probes no
        history."""
        w, k = self.wh, self.q(self.g.key)
        existing = hist.existing()
        if not periods or not any(q != p for q in existing for p in periods):
            return 0
        key_col = [c for c in a_raw.columns if c.name == self.g.key]
        stray = self._temp_table("_tl_stray", [*key_col, Column("period", pa.string())])
        try:
            araw, b = w.t(a_raw.schema, a_raw.table), self.q(BATCH_COL)
            # departed keys the anchor read in this window (the raw window is batch-sized)
            w.execute(
                f"INSERT INTO {stray} ({k}, period) SELECT g.{k}, g.period FROM {gone_rel} g "
                f"WHERE EXISTS (SELECT 1 FROM {araw} r WHERE r.{k} = g.{k} AND r.{b} > ? "
                f"AND r.{b} <= ?)",
                (a_last, a_hi),
            )
            # (a semi-join probe of our mart with the departed keys, not an anti-join)
            w.execute(
                f"DELETE FROM {stray} WHERE EXISTS (SELECT 1 FROM {mart} m "
                f"WHERE m.{k} = {stray}.{k})"
            )
            if not self._some(int(w.scalar(f"SELECT COUNT(*) FROM {stray}") or 0)):
                return 0
            moved = 0
            for p in periods:
                for q in existing:
                    if q == p:
                        continue
                    hp, hq = self.t(hist.ensure(p)), self.t(hist.table(q))
                    found = (
                        f"EXISTS (SELECT 1 FROM {stray} s WHERE s.{k} = {hq}.{k} AND s.period = ?)"
                    )
                    moved += self._change(
                        f"INSERT INTO {hp} ({w.cols(cols)}) SELECT {w.cols(cols, hq + '.')} "
                        f"FROM {hq} WHERE {found} AND NOT EXISTS "
                        f"(SELECT 1 FROM {hp} h WHERE h.{k} = {hq}.{k})",
                        (p.suffix,),
                    )
                    w.execute(
                        f"DELETE FROM {hq} WHERE {found} AND EXISTS "
                        f"(SELECT 1 FROM {hp} h WHERE h.{k} = {hq}.{k})",
                        (p.suffix,),
                    )
            return moved
        finally:
            self._drop(stray)

    def _follow_departed(
        self, new: str, hist: HistoryTables, a_raw: RawRef, cols: list[str]
    ) -> int:
        """Rows of `new` whose key already left the anchor (a follower row that arrived after
        its key was archived) go straight to the anchor row's history period."""
        g, w, k = self.g, self.wh, self.q(self.g.key)
        anchor = self.t(g.anchor.table)
        a_hist = self.history(g.anchor.history_name, g.anchor.table, a_raw.columns, [g.key], None)
        n = 0
        for p in a_hist.existing():
            gone = (
                f"EXISTS (SELECT 1 FROM {self.t(a_hist.table(p))} x WHERE x.{k} = {new}.{k}) "
                f"AND NOT EXISTS (SELECT 1 FROM {anchor} a WHERE a.{k} = {new}.{k})"
            )
            moved = int(w.scalar(f"SELECT COUNT(*) FROM {new} WHERE {gone}") or 0)
            if self._some(moved):
                h = self.t(hist.ensure(p))
                c = w.cols(cols)
                w.execute(f"INSERT INTO {h} ({c}) SELECT {c} FROM {new} WHERE {gone}")
                w.execute(f"DELETE FROM {new} WHERE {gone}")
                n += moved
        return n

    def _reactivate_follower(
        self,
        f: FollowerConfig,
        hist: HistoryTables,
        a_raw: RawRef,
        a_last: int,
        a_hi: int,
        cols: list[str],
        stats: MartStats,
    ) -> int:
        w, k = self.wh, self.q(self.g.key)
        mart = self.t(f.table)
        periods = hist.existing()
        if not periods:
            return 0
        araw = w.t(a_raw.schema, a_raw.table)
        b = self.q(BATCH_COL)
        name = self._temp_table("_tl_react", [c for c in a_raw.columns if c.name == self.g.key])
        # Only keys active in the anchor now: a re-read of an archived key that went straight
        # back to history in this cycle is not a reactivation.
        w.execute(
            f"INSERT INTO {name} ({k}) SELECT DISTINCT r.{k} FROM {araw} r "
            f"WHERE r.{b} > ? AND r.{b} <= ? AND r.{k} IS NOT NULL "
            f"AND EXISTS (SELECT 1 FROM {self.t(self.g.anchor.table)} a WHERE a.{k} = r.{k})",
            (a_last, a_hi),
        )
        # keys already here are no reactivation (semi-join probe, not an anti-join over the mart)
        w.execute(
            f"DELETE FROM {name} WHERE EXISTS (SELECT 1 FROM {mart} m WHERE m.{k} = {name}.{k})"
        )
        n = 0
        try:
            for p in periods:
                h = self.t(hist.table(p))
                found = f"EXISTS (SELECT 1 FROM {name} x WHERE x.{k} = {h}.{k})"
                if f.on_reactivation == "report":
                    stats.exceptions += self.exc.record_from(
                        "follower_reactivated",
                        f.table,
                        f"{h}.{k}",
                        f"FROM {h} WHERE {found}",
                        (),
                        f"key is active again in {self.g.anchor.table}; its {f.table} row "
                        f"is in {hist.table(p)} (on_reactivation: report)",
                    )
                    continue
                n += self._change(
                    f"INSERT INTO {mart} ({w.cols(cols)}) SELECT {w.cols(cols, h + '.')} "
                    f"FROM {h} WHERE {found} AND NOT EXISTS "
                    f"(SELECT 1 FROM {mart} m WHERE m.{k} = {h}.{k})",
                )
                w.execute(
                    f"DELETE FROM {h} WHERE {found} AND EXISTS "
                    f"(SELECT 1 FROM {mart} m WHERE m.{k} = {h}.{k})"
                )
        finally:
            self._drop(name)
        return n

    # ------------------------------------------------------------------ events

    def run_events(self, f: FollowerConfig) -> MartStats:
        w = self.wh
        raw = self.raw(f.source)
        assert raw is not None and f.time
        time_col = f.time
        stats = MartStats(f.table, "events")
        t_start = time.monotonic()
        cols = [c.name for c in raw.columns]
        ek = self._event_key(f)
        unix = self._time_is_unix(raw.columns, f.time)
        hist = self.follower_history(f, raw)
        mart = self.t(f.table)
        last = self.state.mart_progress(f.table, raw.key)
        for lo, hi, _rows in self._ledger_chunks(raw.key, last):
            before = stats.saved()

            def chunk(lo: int = lo, hi: int = hi, before: MartStats = before) -> None:
                stats.restore(before)  # a rerun after a conflict counts afresh
                t0 = time.monotonic()
                if f.changes == "newest":
                    new = self._new_rows(raw, cols, lo, hi, ek, self.order_newest(f), stats)
                    newest = self._newest(new, self.q(time_col))
                    self.upsert_newest(
                        f, new, mart, hist, ek, cols, unix, stats, columns=raw.columns
                    )
                    self._drop(new)
                else:
                    covered, temps = "", list[str]()
                    if f.changes == "follow":
                        covered, temps = self.replace_followed(
                            f, raw, lo, hi, mart, hist, ek, unix, stats
                        )
                    order = f"{self.q(BATCH_COL)} DESC"
                    new = self._new_rows(raw, cols, lo, hi, ek, order, stats, covered)
                    newest = self._newest(new, self.q(time_col))
                    self._drop_archived_events(new, mart, hist, time_col, unix, ek, newest)
                    if f.changes == "follow":
                        stats.inserted += self.insert_absent_null_safe(f, mart, new, cols, ek)
                    else:
                        stats.inserted += self._insert_absent(mart, new, cols, ek)
                    for rel in [new, *temps]:
                        self._drop(rel)
                checkpoint("mart.after_insert")
                t0 = stats.add_step("insert", t0)
                self._retention_by_time(
                    stats,
                    mart_name=f.table,
                    time_col=time_col,
                    unix=unix,
                    hist=hist,
                    match=ek,
                    cols=cols,
                    departures_seq=None,
                    t0=t0,
                    null_safe=self.event_null_safe(f, ek),
                    clock_hint=newest,
                )
                self.state.set_mart_progress(f.table, raw.key, hi)
                checkpoint("mart.before_commit")

            w.run_transaction(chunk)  # the whole chunk reruns after a conflict
            stats.batches += 1
        stats.seconds = time.monotonic() - t_start
        return stats

    def _drop_archived_events(
        self,
        new: str,
        mart: str,
        hist: HistoryTables,
        time_col: str,
        unix: bool,
        ek: list[str],
        newest: Any = None,
    ) -> int:
        """Re-read events that are already in history leave the batch (events are inserted
        once). Inserting them would be undone in the same transaction (archive
        finds them there, trim deletes them), but after a reset of the events table that is
        the whole history inserted into the mart and deleted again, and counted as inserted.

        An archived event was below the cutoff when it left, so only rows below the current
        cutoff are candidates, each probed in the period of its own time; in a steady cycle
        there are none and nothing is probed. The clock is the newer of the mart's and this
        batch's (`newest`, the batch's newest time): the rows at or above `newest` answer the
        mart's part from the newest row groups, where a plain MAX scans the whole column; a
        later cutoff only probes more candidates, and a probe drops nothing that history
        does not hold."""
        w, tm = self.wh, self.q(time_col)
        if newest is None:  # (plan mode, or a batch without times)
            top = w.extreme("MAX", tm, mart)
        else:
            above = w.extreme("MAX", tm, mart, f"{tm} >= ?", (newest,))
            top = newest if above is None else above
        if top is None and self.plan is None:
            return 0
        cutoff = self.plan.cutoff(unix) if self.plan else shift(top, self.g.retention_seconds)
        span = w.query(f"SELECT MIN({tm}), MAX({tm}) FROM {new} WHERE {tm} < ?", (cutoff,))
        lo, hi = span[0] if span else (None, None)  # plan mode answers no rows
        if lo is None and self.plan is None:
            return 0  # the steady case: no row of the batch is that old
        existing = hist.existing()
        probe = periods_between(lo, hi) if self.plan is None else existing
        on = " AND ".join(f"h.{self.q(c)} = {new}.{self.q(c)}" for c in ek)
        dropped = 0
        for p in (p for p in probe if p in existing):
            start, end = p.bounds(unix)
            dropped += self._change(
                f"DELETE FROM {new} WHERE {tm} >= ? AND {tm} < ? AND {tm} < ? AND EXISTS "
                f"(SELECT 1 FROM {self.t(hist.table(p))} h WHERE {on})",
                (start, end, cutoff),
            )
        return dropped
