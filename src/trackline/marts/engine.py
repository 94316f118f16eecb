"""The mart engine: one retention group = an anchor mart and its followers (docs/architecture.md).

Every mart consumes its raw table by ledger batch id (`_tl_batch_id`), never by a time window,
and each chunk of raw batches is applied in ONE warehouse transaction together with the
post-steps and the mart's progress row:

  anchor (one row per key, latest time wins)
    insert   dedup the new raw rows by key (time desc, tie-breaker desc), drop rows older than
             the mart's, replace by key with no time window (delete+insert, or an upsert where
             the engine's KEYED_INSERT says so)
    1 reactivate  keys of this batch leave every history period
    2 archive     rows past the cutoff (MAX(time) − retention) → hist_<name>_<YYYY>_h<N>,
                  the period table created on demand, guarded by NOT EXISTS
    3 check       rows past the cutoff that are not in history → exceptions
    4 trim        rows past the cutoff whose version (key + time) IS in history and that
                  have no open exception;
                  each trimmed key is written to the group's departures list with its period
  one_per_key follower
    insert   keys not yet present here nor in this follower's history (a re-read is not
             new); a key whose anchor row is already in history goes straight to that period
    1 reactivate  keys of the new anchor batches that are active in the anchor and missing
                  here → restored from history (`on_reactivation: restore`) or reported
                  (`report`)
    2–4      keys that departed the anchor (and are still absent from it) are archived into
             the SAME period as their anchor row, checked, trimmed
  events follower
    insert   events whose event key is not yet present
    2–4      archive / check / trim purely by the event's own time

NULL keys never enter a mart: they are counted and logged to the exceptions table.

Plan mode (`MartPlan`, for ``trackline sql --engine redshift cycle``): the same code runs
against a recording adapter that answers no rows. Raw columns then come from the plan's own
sync instead of state, every chunk is "the batches after the mart's progress", every count is
taken to be non-zero (so each step shows its statements), and history holds one period.
"""

from __future__ import annotations

import time

from trackline.config import FollowerConfig
from trackline.faults import checkpoint
from trackline.marts.followers import FollowerSteps
from trackline.marts.steps import DEPARTURES, MartPlan, MartStats, MartSteps, RawRef

__all__ = ["DEPARTURES", "GroupEngine", "MartPlan", "MartStats", "MartSteps", "RawRef"]


class GroupEngine(FollowerSteps):
    """Runs one retention group: the anchor first, then each follower (one transaction per
    chunk of raw batches per mart)."""

    # ------------------------------------------------------------------ run

    def run(self) -> list[MartStats]:
        """The group's cycle: `prepare`, the anchor, each follower, `prune_departures`. (The
        Airflow cycle runs the same steps as tasks of their own, in this order.)"""
        if not self.prepare():
            return []
        out = [self.run_anchor()]
        for f in self.g.followers:
            stats = self.run_follower(f)
            if stats is not None:
                out.append(stats)
        self.prune_departures()
        return out

    def prepare(self, only: str | None = None) -> bool:
        """Follow widened raw types, create what is missing; False while the anchor's raw
        table has not been loaded yet (nothing to build). `only`: the anchor's or one
        follower's table, for a mart step that may start before the group's other tables
        have synced (it leaves their marts to their own steps)."""
        # source types that widened: raw was altered by sync, marts follow
        specs = self.widen(only)
        ready = self.wh.run_transaction(lambda: self.ensure(specs, only))
        if not ready:
            self.reporter.event("warning", f"mart group {self.g.name}: anchor raw not loaded yet")
        return bool(ready)

    def run_follower(self, f: FollowerConfig) -> MartStats | None:
        """One follower after the anchor (None: its raw table is not loaded yet)."""
        if self.raw(f.source) is None:
            return None
        return self.run_events(f) if f.kind == "events" else self.run_one_per_key(f)

    # ------------------------------------------------------------------ anchor

    def run_anchor(self) -> MartStats:
        g, w = self.g, self.wh
        a = g.anchor
        raw = self.raw(a.source)
        assert raw is not None
        stats = MartStats(a.table, "anchor")
        t_start = time.monotonic()
        cols = [c.name for c in raw.columns]
        unix = self._time_is_unix(raw.columns, a.time)
        hist = self.anchor_history(raw)
        last = self.state.mart_progress(a.table, raw.key)
        for lo, hi, _rows in self._ledger_chunks(raw.key, last):
            before = stats.saved()

            def chunk(lo: int = lo, hi: int = hi, before: MartStats = before) -> None:
                stats.restore(before)  # a rerun after a conflict counts afresh
                t0 = time.monotonic()
                order = f"{self.q(a.time)} DESC" + (
                    f", {self.q(a.tie_breaker)} DESC" if a.tie_breaker else ""
                )
                new = self._new_rows(raw, cols, lo, hi, [g.key], order, stats)
                mart = self.t(a.table)
                k = self.q(g.key)
                stats.inserted += self._replace_by_key(mart, new, cols, g.key, a.time)
                checkpoint("mart.after_insert")
                t0 = stats.add_step("insert", t0)
                for p in hist.existing():
                    h = self.t(hist.table(p))
                    stats.reactivated += self._change(
                        f"DELETE FROM {h} WHERE EXISTS (SELECT 1 FROM {new} n "
                        f"WHERE n.{k} = {h}.{k})",
                    )
                checkpoint("mart.after_reactivate")
                t0 = stats.add_step("reactivate", t0)
                newest = self._newest(new, self.q(a.time))
                self._drop(new)
                self._retention_by_time(
                    stats,
                    mart_name=a.table,
                    time_col=a.time,
                    unix=unix,
                    hist=hist,
                    match=[g.key],
                    cols=cols,
                    departures_seq=hi,
                    t0=t0,
                    clock_hint=newest,
                )
                self.state.set_mart_progress(a.table, raw.key, hi)
                checkpoint("mart.before_commit")

            w.run_transaction(chunk)  # the whole chunk reruns after a conflict
            stats.batches += 1
        stats.seconds = time.monotonic() - t_start
        return stats

    # ------------------------------------------------------------------ upkeep

    def prune_departures(self) -> None:
        """Forget departures every one_per_key follower has consumed."""
        followers = [f for f in self.g.followers if f.kind == "one_per_key"]
        dep = self.wh.t(self.cfg.state_schema, self._dep_table())
        marks = [
            self.state.mart_progress(f.table, f"{DEPARTURES}:{self.g.name}") for f in followers
        ]
        if not self.wh.table_exists(self.cfg.state_schema, self._dep_table()):
            return
        upto = (
            min(marks)
            if marks
            else int(self.wh.scalar(f"SELECT COALESCE(MAX(seq), 0) FROM {dep}") or 0)
        )
        self.wh.run_transaction(
            lambda: self.wh.execute(f"DELETE FROM {dep} WHERE seq <= ?", (upto,))
        )
