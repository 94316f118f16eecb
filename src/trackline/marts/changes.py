"""Events whose source rows change after they were read (an events follower's `changes`).

`insert_once` (the default) keeps the first version of an event. The two others replace it:

newest   the table's cursor is a modified time, so a rewritten event is read again. The batch
         keeps one row per event key: the greatest `version`, then the greatest tie-breaker
         (the table's cdc id: two source rows sharing an event key), then the later read. A
         row replaces the event's current copy (mart or history period) unless that copy is
         newer; an identical re-read changes nothing. The replaced copy is deleted and the
         row goes into the mart; the archive → trim steps of the same transaction move it
         back into its period when its time is past the cutoff, so an event is never in the
         mart and in history at once.
follow   the table re-reads every event of each key its driving table changed (cdc strategy
         follow; the ledger marks those batches). For every key of such a batch, the mart's
         events of that key are replaced by the events read (the last read of the key in the
         chunk); an event the re-read no longer finds was deleted in the source: it is
         removed from the mart AND reported (exceptions table, check `deleted_in_source`,
         table = the source table, so the report holds nothing back from trimming). Rows the
         cursor read (new events) insert once, unless a later re-read of their key covers
         them.

History periods are probed only where an older version can be: with the event time in the
event key (order_id + traceSeq + pathTime), the periods of this batch's rows below the cutoff
(a version keeps its time, and a time at or after the cutoff was never archived); without
it, every period (a cost that grows with the history: put the time in the key).

Event-key columns other than the group's key and the tie-breaker match NULL to NULL
(`MartSteps.same`).
"""

from __future__ import annotations

import pyarrow as pa

from trackline.config import FollowerConfig
from trackline.extract.cdc import shift
from trackline.load import Column
from trackline.marts.history import HistoryTables, Period, periods_between
from trackline.marts.steps import MartStats, MartSteps, RawRef
from trackline.sync import BATCH_COL


class EventChanges(MartSteps):
    def event_null_safe(self, f: FollowerConfig, ek: list[str]) -> frozenset[str]:
        """Event-key columns that may be NULL (all but the group key and the cdc id)."""
        return frozenset(ek) - {self.g.key, self.cfg.table(f.source).cdc.id or ""}

    def _probe_periods(
        self, rel: str, mart: str, hist: HistoryTables, time_col: str, unix: bool, ek: list[str]
    ) -> list[Period]:
        """The history periods that may hold an older version of a row of `rel`."""
        w, tm = self.wh, self.q(time_col)
        existing = hist.existing()
        if self.plan is not None or time_col not in ek:
            return existing
        top = w.extreme("MAX", tm, mart)
        if top is None:
            return existing
        cutoff = shift(top, self.g.retention_seconds)
        span = w.query(f"SELECT MIN({tm}), MAX({tm}) FROM {rel} WHERE {tm} < ?", (cutoff,))
        lo, hi = span[0] if span else (None, None)
        if lo is None:
            return []
        return [p for p in periods_between(lo, hi) if p in existing]

    def order_newest(self, f: FollowerConfig) -> str:
        tie = self.cfg.table(f.source).cdc.id
        parts = [f"{self.q(f.version or '')} DESC NULLS LAST"]
        if tie:
            parts.append(f"{self.q(tie)} DESC")
        return ", ".join([*parts, f"{self.q(BATCH_COL)} DESC"])

    def upsert_newest(
        self,
        f: FollowerConfig,
        new: str,
        mart: str,
        hist: HistoryTables,
        ek: list[str],
        cols: list[str],
        unix: bool,
        stats: MartStats,
        *,
        columns: list[Column] | None = None,
    ) -> None:
        """`changes: newest`: the batch's versions replace older copies (see the module);
        `columns`: the raw columns' types, for engines that compare text specially
        (`MartSteps.differs`)."""
        w = self.wh
        ns = self.event_null_safe(f, ek)
        tie = self.cfg.table(f.source).cdc.id
        v = self.q(f.version or "")
        others = [c for c in cols if c not in ek]

        def newer(n: str, m: str) -> str:
            """SQL: row `n` is a newer version than `m`, or the same version read again with
            other values (NULL versions are the oldest)."""
            vn, vm = f"{n}.{v}", f"{m}.{v}"
            same_v = f"({vn} = {vm} OR ({vn} IS NULL AND {vm} IS NULL))"
            changed = self.differs(n, m, others, columns)
            later = changed
            if tie:
                tn, tm_ = f"{n}.{self.q(tie)}", f"{m}.{self.q(tie)}"
                later = f"{tn} > {tm_} OR ({tn} = {tm_} AND {changed})"
            return (
                f"({vn} > {vm} OR ({vm} IS NULL AND {vn} IS NOT NULL) OR ({same_v} AND ({later})))"
            )

        # stale and identical re-reads leave the batch (probing with the batch's keys)
        w.execute(
            f"DELETE FROM {new} WHERE EXISTS (SELECT 1 FROM {mart} m "
            f"WHERE {self.same('m', new, ek, ns)} AND NOT {newer(new, 'm')})"
        )
        replaced = 0
        for p in self._probe_periods(new, mart, hist, f.time or "", unix, ek):
            ht = self.t(hist.table(p))
            w.execute(
                f"DELETE FROM {new} WHERE EXISTS (SELECT 1 FROM {ht} h "
                f"WHERE {self.same('h', new, ek, ns)} AND NOT {newer(new, 'h')})"
            )
            replaced += self._change(
                f"DELETE FROM {ht} WHERE EXISTS (SELECT 1 FROM {new} n "
                f"WHERE {self.same('n', ht, ek, ns)})"
            )
        replaced += self._change(
            f"DELETE FROM {mart} WHERE EXISTS (SELECT 1 FROM {new} n "
            f"WHERE {self.same('n', mart, ek, ns)})"
        )
        c = w.cols(cols)
        inserted = self._change(f"INSERT INTO {mart} ({c}) SELECT {c} FROM {new}")
        stats.updated += replaced
        stats.inserted += inserted - replaced

    def replace_followed(
        self,
        f: FollowerConfig,
        raw: RawRef,
        lo: int,
        hi: int,
        mart: str,
        hist: HistoryTables,
        ek: list[str],
        unix: bool,
        stats: MartStats,
    ) -> tuple[str, list[str]]:
        """`changes: follow`: replace the events of every key re-read in batches (lo, hi].
        Returns the condition (on the raw table) that keeps the cursor-read rows a later
        re-read covers out of the insert, and the temp tables to drop after it."""
        w, g = self.wh, self.g
        followed = [hi] if self.plan is not None else self.state.followed_batches(raw.key, lo, hi)
        if not followed:
            return "", []
        k, b = self.q(g.key), self.q(BATCH_COL)
        rref = w.t(raw.schema, raw.table)
        cols = [c.name for c in raw.columns]
        ns = self.event_null_safe(f, ek)
        key_col = [c for c in raw.columns if c.name == g.key]
        fk = self._temp_table("_tl_fk", [*key_col, Column(BATCH_COL, pa.int64())])
        marks = ", ".join("?" for _ in followed)
        w.execute(
            f"INSERT INTO {fk} ({k}, {b}) SELECT {k}, MAX({b}) FROM {rref} "
            f"WHERE {b} IN ({marks}) AND {k} IS NOT NULL GROUP BY {k}",
            tuple(followed),
        )
        fset = self._temp_table("_tl_fset", raw.columns)
        tie = self.cfg.table(f.source).cdc.id
        order = f"{self.q(tie)} DESC" if tie else k
        c = w.cols(cols)
        w.execute(
            f"INSERT INTO {fset} ({c}) SELECT {c} FROM (SELECT {w.cols(cols, 'r.')}, "
            f"ROW_NUMBER() OVER (PARTITION BY {w.cols(ek, 'r.')} ORDER BY r.{order}) AS _tl_rn "
            f"FROM {rref} r WHERE EXISTS (SELECT 1 FROM {fk} x WHERE x.{k} = r.{k} "
            f"AND x.{b} = r.{b})) r WHERE _tl_rn = 1"
        )
        gone_from = (
            f"FROM {mart} m WHERE EXISTS (SELECT 1 FROM {fk} x WHERE x.{k} = m.{k}) "
            f"AND NOT EXISTS (SELECT 1 FROM {fset} n WHERE {self.same('n', 'm', ek, ns)})"
        )
        gone = int(w.scalar(f"SELECT COUNT(*) {gone_from}") or 0)
        if self._some(gone):
            stats.gone += gone
            stats.exceptions += self.exc.record_from(
                "deleted_in_source",
                f.source,
                f"m.{k}",
                gone_from,
                (),
                f"an event of this key in {f.table} is gone from {f.source} (a re-read of the "
                "key no longer returns it): removed from the mart with the key's other events",
            )
        replaced = 0
        for p in self._probe_periods(fset, mart, hist, f.time or "", unix, ek):
            ht = self.t(hist.table(p))
            replaced += self._change(
                f"DELETE FROM {ht} WHERE EXISTS (SELECT 1 FROM {fset} n "
                f"WHERE {self.same('n', ht, ek, ns)})"
            )
        replaced += self._change(
            f"DELETE FROM {mart} WHERE EXISTS (SELECT 1 FROM {fk} x WHERE x.{k} = {mart}.{k})"
        )
        inserted = self._change(f"INSERT INTO {mart} ({c}) SELECT {c} FROM {fset}")
        replaced -= gone
        stats.updated += replaced
        stats.inserted += inserted - replaced
        covered = (
            f"NOT EXISTS (SELECT 1 FROM {fk} x WHERE x.{k} = {rref}.{k} AND {rref}.{b} <= x.{b})"
        )
        return covered, [fk, fset]

    def insert_absent_null_safe(
        self, f: FollowerConfig, mart: str, new: str, cols: list[str], ek: list[str]
    ) -> int:
        """Insert the events of `new` not yet in the mart, NULL matching NULL in the key."""
        w = self.wh
        ns = self.event_null_safe(f, ek)
        w.execute(
            f"DELETE FROM {new} WHERE EXISTS (SELECT 1 FROM {mart} m "
            f"WHERE {self.same('m', new, ek, ns)})"
        )
        c = w.cols(cols)
        return self._change(f"INSERT INTO {mart} ({c}) SELECT {c} FROM {new}")
