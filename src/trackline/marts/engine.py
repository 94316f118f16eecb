"""The mart engine: one retention group = an anchor mart and its followers (DESIGN §7).

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from trackline.config import Config, FollowerConfig, RetentionGroupConfig
from trackline.errors import MartError
from trackline.extract.cdc import shift
from trackline.faults import checkpoint
from trackline.load import Column, Warehouse
from trackline.marts.exceptions import Exceptions, key_text
from trackline.marts.history import HistoryTables, Period, arrow_type, periods_between
from trackline.report import NullReporter, Reporter
from trackline.state import StateStore
from trackline.sync import BATCH_COL, resolve

DEPARTURES = "departures"


@dataclass
class MartStats:
    mart: str
    kind: str
    batches: int = 0
    rows_in: int = 0
    inserted: int = 0
    null_keys: int = 0
    reactivated: int = 0
    archived: int = 0
    exceptions: int = 0
    trimmed: int = 0
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)

    def add_step(self, name: str, t0: float) -> float:
        now = time.monotonic()
        self.steps[name] = self.steps.get(name, 0.0) + now - t0
        return now


@dataclass(frozen=True)
class RawRef:
    schema: str
    table: str
    key: str
    """The raw table's state key (``schema.table``)."""
    columns: list[Column]


@dataclass(frozen=True)
class MartPlan:
    """What plan mode needs instead of the warehouse's answers (see the module docstring)."""

    raw_columns: Callable[[str, str], list[Column]]
    """(schema, table) → the raw table's columns as the plan created them ([] if it did not)."""
    period: Period
    """The one history period that exists (e.g. the current half-year)."""

    def cutoff(self, unix: bool) -> Any:
        """A retention cutoff after the whole period: every step past the cutoff has work."""
        return self.period.bounds(unix)[1]


class GroupEngine:
    def __init__(
        self,
        cfg: Config,
        group: RetentionGroupConfig,
        wh: Warehouse,
        reporter: Reporter | None = None,
        chunk_rows: int = 500_000,
        plan: MartPlan | None = None,
    ) -> None:
        self.cfg, self.g, self.wh = cfg, group, wh
        self.plan = plan
        self.state = StateStore(wh, cfg.state_schema)
        self.exc = Exceptions(wh, group.schema_, group.exceptions_table)
        self.reporter = reporter or NullReporter()
        self.chunk_rows = chunk_rows
        self.schema = group.schema_

    # ------------------------------------------------------------------ helpers

    def t(self, table: str) -> str:
        return self.wh.t(self.schema, table)

    def q(self, name: str) -> str:
        return self.wh.q(name)

    def raw(self, source: str) -> RawRef | None:
        """The raw table of a `tables:` entry and its source columns (from the watermark)."""
        rt = resolve(self.cfg, self.cfg.table(source), None, None)
        if self.plan is not None:
            cols = self.plan.raw_columns(rt.target_schema, rt.target)
            cols = [c for c in cols if c.name != BATCH_COL]
        else:
            st = self.state.get(rt.key)
            schema = (st.watermark.extra or {}).get("schema") or {}
            cols = [Column(n, arrow_type(tp)) for n, tp in schema.items()]
        if not cols:
            return None
        return RawRef(rt.target_schema, rt.target, rt.key, cols)

    def _some(self, n: int) -> bool:
        """Whether a step has work: `n` rows, or always in plan mode (to show the statement)."""
        return n > 0 or self.plan is not None

    def _time_is_unix(self, cols: list[Column], time_col: str) -> bool:
        for c in cols:
            if c.name == time_col:
                return pa.types.is_integer(c.type)
        raise MartError(
            f"mart group {self.g.name!r}: time column {time_col!r} is not a column of the raw "
            f"table (columns: {', '.join(c.name for c in cols)})"
        )

    def _require(self, cols: list[Column], names: list[str], what: str) -> None:
        have = {c.name for c in cols}
        for n in names:
            if n not in have:
                raise MartError(
                    f"mart group {self.g.name!r}: {what} column {n!r} is not in the raw table "
                    f"(columns: {', '.join(sorted(have))})"
                )

    def history(
        self,
        name: str,
        mart: str,
        cols: list[Column],
        index_cols: list[str],
        sort_key: list[str] | None,
    ) -> HistoryTables:
        return HistoryTables(
            self.wh,
            self.schema,
            self.g.history_prefix,
            name,
            mart,
            cols,
            self.g.key,
            index_cols,
            sort_key,
            periods=[self.plan.period] if self.plan is not None else None,
        )

    def _ledger_chunks(self, raw_key: str, after: int) -> Iterator[tuple[int, int, int]]:
        """(lo, hi, rows): consecutive ledger batches (lo, hi] of about chunk_rows rows."""
        if self.plan is not None:  # the batches after the mart's progress, as one chunk
            yield after, after + 1, 0
            return
        lo, rows, hi = after, 0, after
        for b in self.state.batches(raw_key, after=after):
            hi = b["batch_id"]
            rows += b["row_count"]
            if rows >= self.chunk_rows:
                yield lo, hi, rows
                lo, rows = hi, 0
        if hi > lo:
            yield lo, hi, rows

    def _last_batch(self, raw_key: str) -> int:
        return int(self.state.get(raw_key).last_batch_id)

    # ------------------------------------------------------------------ setup

    def ensure(self) -> bool:
        """Create marts, indexes and the departures list. False while raw has no schema yet."""
        g, w = self.g, self.wh
        a_raw = self.raw(g.anchor.source)
        if a_raw is None:
            return False
        w.ensure_schema(self.schema)
        self.exc.ensure()
        self._require(a_raw.columns, [g.key, g.anchor.time], "anchor")
        self._ensure_mart(
            g.anchor.table,
            a_raw,
            g.anchor.sort_key or [g.anchor.time, g.key],
            unique=[g.key],
            index=[g.anchor.time],
        )
        key_col = next(c for c in a_raw.columns if c.name == g.key)
        if not w.table_exists(self.cfg.state_schema, self._dep_table()):
            w.create_table(
                self.cfg.state_schema,
                self._dep_table(),
                [
                    Column(g.key, key_col.type),
                    Column("period", pa.string()),
                    Column("seq", pa.int64()),
                ],
                dist_key=g.key,
            )
            w.create_index(self.cfg.state_schema, self._dep_table(), [g.key])
        for f in g.followers:
            f_raw = self.raw(f.source)
            if f_raw is None:
                continue
            self._require(f_raw.columns, [g.key], f"follower {f.table}")
            if f.kind == "events":
                ek = self._event_key(f)
                self._require(f_raw.columns, [*ek, f.time or ""], f"follower {f.table}")
                self._ensure_mart(
                    f.table,
                    f_raw,
                    f.sort_key or [f.time or "", g.key],
                    unique=ek,
                    index=[f.time or "", g.key],
                )
            else:
                self._ensure_mart(f.table, f_raw, f.sort_key or [g.key], unique=[g.key], index=[])
        return True

    def _dep_table(self) -> str:
        return f"{self.g.name}_{DEPARTURES}"

    def _ensure_mart(
        self, mart: str, raw: RawRef, sort_key: list[str], unique: list[str], index: list[str]
    ) -> None:
        w = self.wh
        if not w.table_exists(self.schema, mart):
            w.create_table(self.schema, mart, raw.columns, dist_key=self.g.key, sort_key=sort_key)
        else:  # columns added to raw by schema drift flow into the mart too
            have = set(w.column_names(self.schema, mart))
            for c in raw.columns:
                if c.name not in have:
                    w.add_column(self.schema, mart, c)
        if w.KEYED_INSERT == "on_conflict":
            w.create_unique_index(self.schema, mart, unique)
        w.create_index(self.schema, mart, index)
        w.create_index(raw.schema, raw.table, [BATCH_COL])

    def _event_key(self, f: FollowerConfig) -> list[str]:
        if f.event_key:
            return list(f.event_key)
        t = self.cfg.table(f.source)
        if t.cdc.id:
            return [t.cdc.id]
        raise MartError(f"follower {f.table!r}: set `event_key` (columns that identify an event)")

    # ------------------------------------------------------------------ run

    def run(self) -> list[MartStats]:
        with self.wh.transaction():
            ready = self.ensure()
        if not ready:
            self.reporter.event("warning", f"mart group {self.g.name}: anchor raw not loaded yet")
            return []
        out = [self.run_anchor()]
        for f in self.g.followers:
            if self.raw(f.source) is None:
                continue
            out.append(self.run_events(f) if f.kind == "events" else self.run_one_per_key(f))
        self.prune_departures()
        return out

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
        hist = self.history(
            a.history_name, a.table, raw.columns, [g.key], a.sort_key or [a.time, g.key]
        )
        last = self.state.mart_progress(a.table, raw.key)
        for lo, hi, _rows in self._ledger_chunks(raw.key, last):
            with w.transaction():
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
                )
                self.state.set_mart_progress(a.table, raw.key, hi)
                checkpoint("mart.before_commit")
            stats.batches += 1
        stats.seconds = time.monotonic() - t_start
        return stats

    def _new_rows(
        self,
        raw: RawRef,
        cols: list[str],
        lo: int,
        hi: int,
        part: list[str],
        order: str,
        stats: MartStats,
    ) -> str:
        """Temp table of the raw rows in batches (lo, hi], one per `part`, NULL keys counted."""
        w, k = self.wh, self.q(self.g.key)
        rref = w.t(raw.schema, raw.table)
        b = self.q(BATCH_COL)
        nulls = int(
            w.scalar(
                f"SELECT COUNT(*) FROM {rref} WHERE {b} > ? AND {b} <= ? AND {k} IS NULL", (lo, hi)
            )
            or 0
        )
        if self._some(nulls):
            stats.null_keys += nulls
            stats.exceptions += int(
                self.exc.record(
                    "null_key",
                    raw.table,
                    f"batches {lo + 1}-{hi}",
                    f"{nulls} raw row(s) with NULL {self.g.key} kept out of the marts",
                )
            )
        stats.rows_in += int(
            w.scalar(f"SELECT COUNT(*) FROM {rref} WHERE {b} > ? AND {b} <= ?", (lo, hi)) or 0
        )
        name = self._temp_table("_tl_new", raw.columns)
        c = w.cols(cols)
        w.execute(
            f"INSERT INTO {name} ({c}) SELECT {c} FROM ("
            f"SELECT {c}, ROW_NUMBER() OVER (PARTITION BY {w.cols(part)} ORDER BY {order}) "
            f"AS _tl_rn FROM {rref} WHERE {b} > ? AND {b} <= ? AND {k} IS NOT NULL"
            f") r WHERE _tl_rn = 1",
            (lo, hi),
        )
        return name

    def _temp_table(self, prefix: str, columns: list[Column]) -> str:
        """Create an empty session temp table (distributed by the group's key where the engine
        distributes); returns its quoted name. Created, then filled by an INSERT: DDL takes no
        bound parameters on Redshift (its PREPARE takes only SELECT, INSERT, UPDATE, DELETE)."""
        w = self.wh
        name = self.q(w.temp_name(prefix))
        typed = ", ".join(f"{self.q(c.name)} {w.sql_type(c.type)}" for c in columns)
        w.execute(f"CREATE TEMPORARY TABLE {name} ({typed}){w.table_options(self.g.key, None)}")
        return name

    def _drop(self, rel: str) -> None:
        self.wh.execute(f"DROP TABLE IF EXISTS {rel}")

    def _change(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one INSERT/DELETE; the rows it changed (the statement's own count: no second
        pass over the tables to count first)."""
        return max(self.wh.execute_count(sql, params), 0)

    def _open_exception(self, mart: str) -> str:
        """SQL: the mart row's key has no open exception (bind the mart's name)."""
        return (
            f"NOT EXISTS (SELECT 1 FROM {self.exc.ref} e WHERE e.status = 'open' "
            f"AND e.table_name = ? AND e.key_value = {key_text(f'{mart}.{self.q(self.g.key)}')})"
        )

    def _replace_by_key(self, mart: str, new: str, cols: list[str], key: str, time_col: str) -> int:
        """One row per key, the newest wins: an older version never replaces a newer one
        (replays, late backfills); no time window on the key match (seed 001's bug)."""
        w = self.wh
        c, k, tm = w.cols(cols), self.q(key), self.q(time_col)
        if w.KEYED_INSERT == "on_conflict":  # through the unique index: flat cost
            sets = ", ".join(f"{self.q(x)} = EXCLUDED.{self.q(x)}" for x in cols if x != key)
            return self._change(
                f"INSERT INTO {mart} AS m ({c}) SELECT {c} FROM {new} "
                f"ON CONFLICT ({k}) DO UPDATE SET {sets} WHERE m.{tm} <= EXCLUDED.{tm}"
            )
        w.execute(
            f"DELETE FROM {new} WHERE EXISTS (SELECT 1 FROM {mart} m "
            f"WHERE m.{k} = {new}.{k} AND m.{tm} > {new}.{tm})"
        )
        w.execute(
            f"DELETE FROM {mart} WHERE EXISTS (SELECT 1 FROM {new} n WHERE n.{k} = {mart}.{k})"
        )
        return self._change(f"INSERT INTO {mart} ({c}) SELECT {c} FROM {new}")

    def _insert_absent(self, mart: str, new: str, cols: list[str], match: list[str]) -> int:
        w = self.wh
        c = w.cols(cols)
        if w.KEYED_INSERT == "on_conflict":
            return self._change(
                f"INSERT INTO {mart} ({c}) SELECT {c} FROM {new} "
                f"ON CONFLICT ({w.cols(match)}) DO NOTHING"
            )
        # Drop the batch rows already present first, probing the mart with the batch's keys
        # (a semi-join the size of the batch), then insert the rest: an anti-join of the mart
        # against the batch would build a hash table over the whole mart.
        on = " AND ".join(f"m.{self.q(x)} = {new}.{self.q(x)}" for x in match)
        w.execute(f"DELETE FROM {new} WHERE EXISTS (SELECT 1 FROM {mart} m WHERE {on})")
        return self._change(f"INSERT INTO {mart} ({c}) SELECT {c} FROM {new}")

    # ------------------------------------------------------------------ time retention

    def _retention_by_time(
        self,
        stats: MartStats,
        *,
        mart_name: str,
        time_col: str,
        unix: bool,
        hist: HistoryTables,
        match: list[str],
        cols: list[str],
        departures_seq: int | None,
        t0: float,
    ) -> None:
        """Archive → check → trim for rows whose own time is past MAX(time) − retention."""
        w, k = self.wh, self.q(self.g.key)
        mart, tm = self.t(mart_name), self.q(time_col)
        past = self._past_cutoff(mart, tm, unix)
        if past is None:
            stats.add_step("archive", t0)
            return
        cutoff, periods = past
        c = w.cols(cols)
        old = self._temp_table("_tl_old", hist.columns)

        def pairs(left: str, right: str, names: list[str]) -> str:
            return " AND ".join(f"{left}.{self.q(x)} = {right}.{self.q(x)}" for x in names)

        # "In history" for check and trim means THIS version (key + time): a stale row of the
        # key in the period table makes the guard skip the archive, and must not let the trim
        # delete the only copy of the newest version.
        key_on, same_on = pairs("h", old, match), pairs("h", old, [*match, time_col])
        # Each step works on `old`, a temp copy of the (few) mart rows past the cutoff in one
        # period, and removes from it what history already holds with a semi-join probe:
        # an anti-join (NOT EXISTS) of those rows against a period table would build a hash
        # table over the whole history, so its cost would grow with the history (G7).
        in_period = f"m.{tm} >= ? AND m.{tm} < ? AND m.{tm} < ?"

        def fill(s: Any, e: Any) -> None:
            w.execute(f"DELETE FROM {old}")
            w.execute(
                f"INSERT INTO {old} ({c}) SELECT {w.cols(cols, 'm.')} FROM {mart} m "
                f"WHERE {in_period}",
                (s, e, cutoff),
            )

        for p in periods:
            s, e = p.bounds(unix)
            h = self.t(hist.ensure(p))
            fill(s, e)
            w.execute(f"DELETE FROM {old} WHERE EXISTS (SELECT 1 FROM {h} h WHERE {key_on})")
            stats.archived += self._change(f"INSERT INTO {h} ({c}) SELECT {c} FROM {old}")
        checkpoint("mart.after_archive")
        t0 = stats.add_step("archive", t0)
        unarchived: dict[Period, bool] = {}
        for p in periods:
            s, e = p.bounds(unix)
            h = self.t(hist.table(p))
            fill(s, e)
            w.execute(f"DELETE FROM {old} WHERE EXISTS (SELECT 1 FROM {h} h WHERE {same_on})")
            opened = self.exc.record_from(
                "unarchived_past_cutoff",
                mart_name,
                f"o.{k}",
                f"FROM {old} o",
                (),
                f"row past the retention cutoff is not in {hist.table(p)}; it is kept in the mart",
            )
            stats.exceptions += opened
            unarchived[p] = self._some(int(w.scalar(f"SELECT COUNT(*) FROM {old}") or 0))
        checkpoint("mart.after_check")
        t0 = stats.add_step("check", t0)
        open_exc = self._open_exception(mart)
        for p in periods:
            s, e = p.bounds(unix)
            h = self.t(hist.table(p))
            keep_out = ""
            if unarchived[p]:  # rows not (this version) in history stay; `old` holds them
                fill(s, e)
                w.execute(f"DELETE FROM {old} WHERE EXISTS (SELECT 1 FROM {h} h WHERE {same_on})")
                keep_out = (
                    f" AND NOT EXISTS (SELECT 1 FROM {old} o WHERE {pairs('o', mart, match)})"
                )
            cond = (
                f"{mart}.{tm} >= ? AND {mart}.{tm} < ? AND {mart}.{tm} < ?{keep_out} AND {open_exc}"
            )
            params = (s, e, cutoff, mart_name)
            if departures_seq is not None:
                w.execute(
                    f"INSERT INTO {w.t(self.cfg.state_schema, self._dep_table())} "
                    f"({k}, period, seq) SELECT {mart}.{k}, ?, ? FROM {mart} WHERE {cond}",
                    (p.suffix, departures_seq, *params),
                )
            stats.trimmed += self._change(f"DELETE FROM {mart} WHERE {cond}", params)
        self._drop(old)
        stats.add_step("trim", t0)

    def _past_cutoff(self, mart: str, tm: str, unix: bool) -> tuple[Any, list[Period]] | None:
        """The cutoff (the data clock MAX(time) − retention) and the periods holding rows past
        it, or None when no row is past it."""
        w, plan = self.wh, self.plan
        top = w.scalar(f"SELECT MAX({tm}) FROM {mart}")
        if top is None and plan is None:
            return None
        cutoff = plan.cutoff(unix) if plan else shift(top, self.g.retention_seconds)
        lo = w.scalar(f"SELECT MIN({tm}) FROM {mart} WHERE {tm} < ?", (cutoff,))
        if lo is None and plan is None:
            return None
        hi = w.scalar(f"SELECT MAX({tm}) FROM {mart} WHERE {tm} < ?", (cutoff,))
        return cutoff, [plan.period] if plan else periods_between(lo, hi)

    # ------------------------------------------------------------------ one_per_key

    def run_one_per_key(self, f: FollowerConfig) -> MartStats:
        g, w = self.g, self.wh
        raw = self.raw(f.source)
        a_raw = self.raw(g.anchor.source)
        assert raw is not None and a_raw is not None
        stats = MartStats(f.table, "one_per_key")
        t_start = time.monotonic()
        cols = [c.name for c in raw.columns]
        hist = self.history(f.history_name, f.table, raw.columns, [g.key], f.sort_key or [g.key])
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
        for lo, hi, _rows in chunks:
            with w.transaction():
                t0 = time.monotonic()
                if hi > lo:
                    order = f"{self.q(tie)} DESC" if tie else f"{k}"
                    new = self._new_rows(raw, cols, lo, hi, [g.key], order, stats)
                    # A key already in history is not new (a re-read, a reset + resync): it
                    # comes back only through reactivation, never as a second copy.
                    for p in hist.existing():
                        h = self.t(hist.table(p))
                        w.execute(
                            f"DELETE FROM {new} WHERE EXISTS (SELECT 1 FROM {h} h "
                            f"WHERE h.{k} = {new}.{k})"
                        )
                    stats.archived += self._follow_departed(new, hist, a_raw, cols)
                    stats.inserted += self._insert_absent(mart, new, cols, [g.key])
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
                # 2–4. keys that departed the anchor follow it into the same period
                periods = [
                    Period.parse(r[0])
                    for r in w.query(
                        f"SELECT DISTINCT period FROM {dep} WHERE seq > ? AND seq <= ?",
                        (d_last, d_hi),
                    )
                ]
                if self.plan is not None:
                    periods = [self.plan.period]
                # The departed keys still absent from the anchor, computed once (a batch-sized
                # set): archive, check and trim probe the mart with it.
                key_col = [c for c in a_raw.columns if c.name == g.key]
                gone_rel = self._temp_table("_tl_gone", [*key_col, Column("period", pa.string())])
                w.execute(
                    f"INSERT INTO {gone_rel} ({k}, period) SELECT DISTINCT d.{k}, d.period "
                    f"FROM {dep} d WHERE d.seq > ? AND d.seq <= ?",
                    (d_last, d_hi),
                )
                # (a semi-join probe of the anchor with these few keys, not an anti-join
                # that would hash the whole anchor)
                w.execute(
                    f"DELETE FROM {gone_rel} WHERE EXISTS (SELECT 1 FROM {anchor} a "
                    f"WHERE a.{k} = {gone_rel}.{k})"
                )
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
                for p in periods:
                    h = self.t(hist.table(p))
                    cond = (
                        f"{gone} AND EXISTS (SELECT 1 FROM {h} h WHERE h.{k} = {mart}.{k}) "
                        f"AND {self._open_exception(mart)}"
                    )
                    stats.trimmed += self._change(
                        f"DELETE FROM {mart} WHERE {cond}", (p.suffix, f.table)
                    )
                self._drop(gone_rel)
                stats.add_step("trim", t0)
                self.state.set_mart_progress(f.table, raw.key, hi)
                self.state.set_mart_progress(f.table, a_raw.key, a_hi)
                self.state.set_mart_progress(f.table, dep_mark, d_hi)
                checkpoint("mart.before_commit")
            a_last, d_last = a_hi, d_hi
            stats.batches += 1
        stats.seconds = time.monotonic() - t_start
        return stats

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
        g, w = self.g, self.wh
        raw = self.raw(f.source)
        assert raw is not None and f.time
        stats = MartStats(f.table, "events")
        t_start = time.monotonic()
        cols = [c.name for c in raw.columns]
        ek = self._event_key(f)
        unix = self._time_is_unix(raw.columns, f.time)
        hist = self.history(f.history_name, f.table, raw.columns, ek, f.sort_key or [f.time, g.key])
        mart = self.t(f.table)
        last = self.state.mart_progress(f.table, raw.key)
        for lo, hi, _rows in self._ledger_chunks(raw.key, last):
            with w.transaction():
                t0 = time.monotonic()
                new = self._new_rows(raw, cols, lo, hi, ek, f"{self.q(BATCH_COL)} DESC", stats)
                stats.inserted += self._insert_absent(mart, new, cols, ek)
                self._drop(new)
                checkpoint("mart.after_insert")
                t0 = stats.add_step("insert", t0)
                self._retention_by_time(
                    stats,
                    mart_name=f.table,
                    time_col=f.time,
                    unix=unix,
                    hist=hist,
                    match=ek,
                    cols=cols,
                    departures_seq=None,
                    t0=t0,
                )
                self.state.set_mart_progress(f.table, raw.key, hi)
                checkpoint("mart.before_commit")
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
        with self.wh.transaction():
            self.wh.execute(f"DELETE FROM {dep} WHERE seq <= ?", (upto,))
