"""Shared machinery of the mart engine: setup of a retention group's tables, the raw
batches a mart consumes, and the steps every mart kind uses (new rows, keyed inserts, the
archive → check → trim of rows past a time cutoff). The steps themselves are described in
`trackline.marts.engine`."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import pyarrow as pa

from trackline.config import Config, FollowerConfig, RetentionGroupConfig
from trackline.errors import Interrupted, MartError
from trackline.extract.cdc import shift
from trackline.faults import checkpoint
from trackline.load import Column, Warehouse
from trackline.load.base import declared_bytes
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
    updated: int = 0
    """Rows replaced by a newer version (followed rows, changed events)."""
    gone: int = 0
    """Events a re-read no longer found in the source (changes: follow; reported)."""
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

    def saved(self) -> MartStats:
        """A copy to `restore` when a transaction that counts into these stats runs again."""
        return replace(self, steps=dict(self.steps))

    def restore(self, saved: MartStats) -> None:
        for f in fields(self):
            value = getattr(saved, f.name)
            setattr(self, f.name, dict(value) if isinstance(value, dict) else value)


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
    drift: bool = False
    """The raw tables changed since the marts were made (``trackline sql drift``): widening
    and new columns are planned from the plan's catalog like a real run's."""

    def cutoff(self, unix: bool) -> Any:
        """A retention cutoff after the whole period: every step past the cutoff has work."""
        return self.period.bounds(unix)[1]


class MartSteps:
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
        self.stop: threading.Event | None = None
        """Set when the run is asked to stop (marts on a cycle's workers): the mart stops
        after the chunk it commits (`Interrupted`), as a sync stops after its batch."""

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
            st = self.state.get(rt.key, rt.source_db)
            extra = st.watermark.extra or {}
            schema, json_cols = extra.get("schema") or {}, set(extra.get("json") or [])
            sizes = extra.get("bytes") or {}
            # JSON columns as the raw table stores them (SUPER on Redshift with json_as: super);
            # text sized as the raw table's (`bytes`: the declared length in bytes)
            cols = [
                Column(n, arrow_type(tp), json=n in json_cols, max_bytes=sizes.get(n))
                for n, tp in schema.items()
            ]
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
        hist = HistoryTables(
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
        if self.plan is not None:
            # the plan's one period exists before any step reads it, so the printed script
            # creates it before its first DELETE/probe and runs top to bottom
            for p in hist.existing():
                hist.ensure(p)
        return hist

    def anchor_history(self, raw: RawRef) -> HistoryTables:
        a = self.g.anchor
        return self.history(
            a.history_name, a.table, raw.columns, [self.g.key], a.sort_key or [a.time, self.g.key]
        )

    def follower_history(self, f: FollowerConfig, raw: RawRef) -> HistoryTables:
        g = self.g
        if f.kind == "events":
            return self.history(
                f.history_name,
                f.table,
                raw.columns,
                self._event_key(f),
                f.sort_key or [f.time or "", g.key],
            )
        return self.history(f.history_name, f.table, raw.columns, [g.key], f.sort_key or [g.key])

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
                self._stop_here(raw_key, lo)
                yield lo, hi, rows
                lo, rows = hi, 0
        if hi > lo:
            self._stop_here(raw_key, lo)
            yield lo, hi, rows

    def _stop_here(self, raw_key: str, done: int) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Interrupted(f"{self.g.name}: marts stopped after {raw_key} batch {done}")

    def _last_batch(self, raw_key: str) -> int:
        return self.state.last_batch_id(raw_key)

    # ------------------------------------------------------------------ setup

    def ensure(
        self, specs: dict[str, dict[str, str]] | None = None, only: str | None = None
    ) -> bool:
        """Create marts, indexes and the departures list. False while raw has no schema yet.
        `only`: one mart of the group (the anchor's table: with the exceptions table and the
        departures list; a follower's: that follower alone, after its anchor)."""
        g, w = self.g, self.wh
        a_raw = self.raw(g.anchor.source)
        if a_raw is None:
            return False
        tie = [g.anchor.tie_breaker] if g.anchor.tie_breaker else []
        self._require(a_raw.columns, [g.key, g.anchor.time, *tie], "anchor")
        if only not in (None, g.anchor.table):
            if specs is None:
                specs = w.column_specs(self.schema)
            self._ensure_followers([f for f in g.followers if f.table == only], specs)
            return True
        w.ensure_schema(self.schema)
        self.exc.ensure()
        if specs is None:  # marts, periods and views: one catalog query
            specs = w.column_specs(self.schema)
        self._ensure_mart(
            g.anchor.table,
            a_raw,
            g.anchor.sort_key or [g.anchor.time, g.key],
            unique=[g.key],
            index=[g.anchor.time],
            hist=self.anchor_history(a_raw),
            specs=specs,
        )
        if not w.table_exists(self.cfg.state_schema, self._dep_table()):
            w.create_table(
                self.cfg.state_schema,
                self._dep_table(),
                self.departure_columns(a_raw),
                dist_key=g.key,
            )
            w.create_index(self.cfg.state_schema, self._dep_table(), [g.key])
        if only is None:
            self._ensure_followers(g.followers, specs)
        return True

    def _ensure_followers(
        self, followers: Sequence[FollowerConfig], specs: dict[str, dict[str, str]]
    ) -> None:
        g = self.g
        for f in followers:
            f_raw = self.raw(f.source)
            if f_raw is None:
                continue
            # (`time` of a one_per_key follower and `version` are optional)
            more = [c for c in (f.time, f.version) if c]
            self._require(f_raw.columns, [g.key, *more], f"follower {f.table}")
            if f.kind == "events":
                ek = self._event_key(f)
                self._require(f_raw.columns, [*ek, f.time or ""], f"follower {f.table}")
                self._ensure_mart(
                    f.table,
                    f_raw,
                    f.sort_key or [f.time or "", g.key],
                    unique=ek,
                    index=[f.time or "", g.key],
                    hist=self.follower_history(f, f_raw),
                    specs=specs,
                )
            else:
                # (with `time`, orphans leave by it: MIN/MAX past the cutoff use the index)
                index = [f.time, g.key] if f.time else []
                self._ensure_mart(
                    f.table,
                    f_raw,
                    f.sort_key or [g.key],
                    unique=[g.key],
                    index=index,
                    hist=self.follower_history(f, f_raw),
                    specs=specs,
                )

    def departure_columns(self, a_raw: RawRef) -> list[Column]:
        key_col = next(c for c in a_raw.columns if c.name == self.g.key)
        return [
            Column(self.g.key, key_col.type, max_bytes=key_col.max_bytes),
            Column("period", pa.string()),
            Column("seq", pa.int64()),
        ]

    def _dep_table(self) -> str:
        return f"{self.g.name}_{DEPARTURES}"

    def _ensure_mart(
        self,
        mart: str,
        raw: RawRef,
        sort_key: list[str],
        unique: list[str],
        index: list[str],
        hist: HistoryTables,
        specs: dict[str, dict[str, str]],
    ) -> None:
        w = self.wh
        if w.name(mart) not in specs and not w.table_exists(self.schema, mart):
            w.create_table(self.schema, mart, raw.columns, dist_key=self.g.key, sort_key=sort_key)
        else:  # columns added to raw by schema drift flow into the mart, its periods, its view
            have = specs.get(w.name(mart)) or set(w.column_names(self.schema, mart))
            added = [c.name for c in raw.columns if w.name(c.name) not in have]
            for c in raw.columns:
                if w.name(c.name) not in have:
                    w.add_column(self.schema, mart, c)
            added += hist.align(specs)
            if added:
                msg = f"{mart}: new column(s) added from {raw.key}: {', '.join(added)}"
                self.reporter.event("drift", msg, table=mart)
        if w.KEYED_INSERT == "on_conflict":
            w.create_unique_index(self.schema, mart, unique)
        w.create_index(self.schema, mart, index)
        w.create_index(raw.schema, raw.table, [BATCH_COL])

    # ------------------------------------------------------------------ widening

    def widen(self, only: str | None = None) -> dict[str, dict[str, str]] | None:
        """Widen mart and history columns to their raw column's type after a source type
        widened (sync altered raw first): INT → BIGINT, a longer VARCHAR, a DECIMAL with more
        digits. The catalog says which columns differ from raw; the `_hist` view is dropped
        around the ALTERs (a column a view reads cannot change type) and created again. Runs
        before `ensure`, in `Warehouse.alter_type_scope` (Redshift: outside any transaction;
        each ALTER is then idempotent and a missing view is recreated by `ensure`).
        Returns the catalog of the mart schema when nothing changed (`ensure` reuses it).
        `only`: one mart of the group (its table name), as in `ensure`."""
        if self.plan is not None and not self.plan.drift:
            return None
        g, w = self.g, self.wh
        a_raw = self.raw(g.anchor.source)
        if a_raw is None:
            return None
        marts = []
        if only in (None, g.anchor.table):
            marts.append((g.anchor.table, g.anchor.source, a_raw, self.anchor_history(a_raw)))
        for f in g.followers:
            f_raw = self.raw(f.source) if only in (None, f.table) else None
            if f_raw is not None:
                marts.append((f.table, f.source, f_raw, self.follower_history(f, f_raw)))
        specs = w.column_specs(self.schema)  # (names as stored: `Warehouse.name`)
        n = w.name
        raw_specs: dict[str, dict[str, dict[str, str]]] = {}  # one catalog query per schema
        changed = False
        for mart, source, raw, hist in marts:
            if n(mart) not in specs:
                continue
            if raw.schema not in raw_specs:
                raw_specs[raw.schema] = w.column_specs(raw.schema)
            want = raw_specs[raw.schema].get(n(raw.table), {})
            # each column as raw declares it (its text size read from raw itself: a state
            # that disagrees with the table must not make the ALTER miss and repeat each cycle)
            as_raw = [
                dataclasses.replace(c, max_bytes=declared_bytes(want[n(c.name)]))
                if n(c.name) in want and pa.types.is_string(c.type) and not c.json
                else c
                for c in raw.columns
            ]
            todo = [
                (table, c, specs[n(table)][n(c.name)])
                for table in [mart, *hist.present(specs)]
                for c in as_raw
                if n(c.name) in specs[n(table)]
                and want.get(n(c.name)) not in (None, specs[n(table)][n(c.name)])
            ]
            if not todo:
                continue
            for table, c, have in todo:
                if not w.can_alter_type(have, c):
                    raise MartError(
                        f"{self.schema}.{table}: column {c.name!r} is {have}, and the raw table "
                        f"{raw.key} now holds {want[n(c.name)]}; {w.ENGINE} cannot change this "
                        f"type in place. Nothing was changed. Run `trackline migrate {source}` "
                        "to rebuild the tables with the new type in one transaction"
                    )
            with w.alter_type_scope():
                w.drop_view(self.schema, hist.view_name())
                self.add_missing_columns(mart, hist, raw, specs)  # the view lists them all
                for table, c, _ in todo:
                    w.alter_column_type(self.schema, table, c)
                checkpoint("mart.after_widen")  # (Redshift: altered, the view still dropped)
                hist.rebuild_view(new_columns=True)
            changed = True
            what = ", ".join(sorted({f"{c.name} → {want[n(c.name)]}" for _, c, _ in todo}))
            self.reporter.event("drift", f"{mart}: widened {what} (mart and history)", table=mart)
        if only in (None, g.anchor.table):
            key_spec = (
                raw_specs.get(a_raw.schema, {}).get(w.name(a_raw.table), {}).get(w.name(g.key))
            )
            self._widen_departures(a_raw, key_spec)
        return None if changed else specs

    def add_missing_columns(
        self, mart: str, hist: HistoryTables, raw: RawRef, specs: dict[str, dict[str, str]]
    ) -> list[str]:
        """Add the raw columns the mart or one of its periods lacks (per `specs`, the catalog);
        returns ``table.column`` of each added."""
        added = []
        for table in [mart, *hist.present(specs)]:
            for c in raw.columns:
                if self.wh.name(c.name) not in specs.get(self.wh.name(table), {}):
                    self.wh.add_column(self.schema, table, c)
                    added.append(f"{table}.{c.name}")
        return added

    def _widen_departures(self, a_raw: RawRef, want: str | None) -> None:
        """The departures list copies the anchor's key column (`want`: its spec in raw): it
        widens with it."""
        w, key, dep = self.wh, self.g.key, self._dep_table()
        if want is None:
            return
        have = w.column_specs(self.cfg.state_schema, dep).get(w.name(dep), {}).get(w.name(key))
        if have is None or have == want:
            return
        col = next(c for c in a_raw.columns if c.name == key)
        if not w.can_alter_type(have, col):
            raise MartError(
                f"{self.cfg.state_schema}.{dep}: column {key!r} is {have}, and the raw table "
                f"{a_raw.key} now holds {want}; {w.ENGINE} cannot change this type in place. "
                f"Nothing was changed. Run `trackline migrate {self.g.anchor.source}`"
            )
        with w.alter_type_scope():
            w.alter_column_type(self.cfg.state_schema, dep, col)

    def _event_key(self, f: FollowerConfig) -> list[str]:
        if f.event_key:
            return list(f.event_key)
        t = self.cfg.table(f.source)
        if t.cdc.id:
            return [t.cdc.id]
        raise MartError(f"follower {f.table!r}: set `event_key` (columns that identify an event)")

    def _new_rows(
        self,
        raw: RawRef,
        cols: list[str],
        lo: int,
        hi: int,
        part: list[str],
        order: str,
        stats: MartStats,
        where: str = "",
    ) -> str:
        """Temp table of the raw rows in batches (lo, hi], one per `part`, NULL keys counted;
        `where`: a further condition on the raw rows (named by the raw table's reference)."""
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
            f"{' AND ' + where if where else ''}) r WHERE _tl_rn = 1",
            (lo, hi),
        )
        return name

    def _temp_table(self, prefix: str, columns: list[Column]) -> str:
        """Create an empty session temp table (distributed by the group's key where the engine
        distributes); returns its quoted name. Created, then filled by an INSERT: DDL takes no
        bound parameters on Redshift (its PREPARE takes only SELECT, INSERT, UPDATE, DELETE)."""
        w = self.wh
        name = self.q(w.temp_name(prefix))
        typed = ", ".join(f"{self.q(c.name)} {w.column_type(c)}" for c in columns)
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
        (replays, late backfills); no time window on the key match (a windowed delete leaves
        old copies of a key behind)."""
        w = self.wh
        c, k, tm = w.cols(cols), self.q(key), self.q(time_col)
        if w.KEYED_INSERT == "on_conflict":  # through the unique index: flat cost
            # In key order: the unique index's leaf pages (and the heap pages, where the mart
            # lies in key order) are visited one after the other, each once; in the batch's
            # own order every row lands on another page, and each first write of a page
            # after a checkpoint logs the whole page (bench/README.md, session 8).
            sets = ", ".join(f"{self.q(x)} = EXCLUDED.{self.q(x)}" for x in cols if x != key)
            return self._change(
                f"INSERT INTO {mart} AS m ({c}) SELECT {c} FROM {new} ORDER BY {k} "
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

    def same(
        self, left: str, right: str, names: list[str], null_safe: frozenset[str] | None = None
    ) -> str:
        """SQL: the rows `left` and `right` agree on `names`, a NULL matching a NULL in the
        columns of `null_safe` (default: all but the group's key, never NULL in a mart).
        Event keys may hold NULLs (a traceSeq the source never set). The key's plain equality
        keeps the join a hash or index join."""
        safe = null_safe if null_safe is not None else frozenset(names) - {self.g.key}
        out = []
        for x in names:
            a, b = f"{left}.{self.q(x)}", f"{right}.{self.q(x)}"
            out.append(
                f"({a} = {b} OR ({a} IS NULL AND {b} IS NULL))" if x in safe else f"{a} = {b}"
            )
        return " AND ".join(out)

    def differs(
        self, left: str, right: str, names: list[str], columns: list[Column] | None = None
    ) -> str:
        """SQL: the rows differ in one of `names` (NULL-safe, without IS DISTINCT FROM, which
        Redshift lacks). With the `columns`' types, on an engine whose `=` ignores trailing
        blanks (Redshift), each column is compared by `Warehouse.distinct`, which also
        compares text lengths: 'A' and 'A ' differ there too."""
        if not names:
            return "1 = 0"
        typed = {c.name: c for c in columns or []} if self.wh.BLANK_PADDED_EQUALITY else {}
        parts = []
        for x in names:
            a, b = f"{left}.{self.q(x)}", f"{right}.{self.q(x)}"
            if x in typed:
                parts.append(self.wh.distinct(a, b, typed[x]))
                continue
            parts.append(
                f"{a} <> {b} OR ({a} IS NULL AND {b} IS NOT NULL) "
                f"OR ({a} IS NOT NULL AND {b} IS NULL)"
            )
        return "(" + " OR ".join(parts) + ")"

    def _insert_absent(self, mart: str, new: str, cols: list[str], match: list[str]) -> int:
        w = self.wh
        c = w.cols(cols)
        if w.KEYED_INSERT == "on_conflict":
            return self._change(  # in key order, as in `_replace_by_key`
                f"INSERT INTO {mart} ({c}) SELECT {c} FROM {new} ORDER BY {w.cols(match)} "
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
        orphans_of: str | None = None,
        null_safe: frozenset[str] = frozenset(),
        clock_hint: Any = None,
    ) -> None:
        """Archive → check → trim for rows whose own time is past MAX(time) − retention.

        `orphans_of` (a quoted anchor table): only rows whose key is not in it, i.e. the rows
        of a one_per_key follower whose key never reached the anchor (others follow their
        anchor row). `clock_hint`: see `_past_cutoff`."""
        w, k = self.wh, self.q(self.g.key)
        mart, tm = self.t(mart_name), self.q(time_col)
        past = self._past_cutoff(mart, tm, unix, clock_hint)
        if past is None:
            stats.add_step("archive", t0)
            return
        cutoff, periods = past
        c = w.cols(cols)
        old = self._temp_table("_tl_old", hist.columns)

        def pairs(left: str, right: str, names: list[str]) -> str:
            return self.same(left, right, names, null_safe)

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
            if orphans_of:  # keys still in the anchor stay: they leave with their anchor row
                w.execute(
                    f"DELETE FROM {old} WHERE EXISTS (SELECT 1 FROM {orphans_of} a "
                    f"WHERE a.{k} = {old}.{k})"
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
            if orphans_of:
                keep_out += (
                    f" AND NOT EXISTS (SELECT 1 FROM {orphans_of} a WHERE a.{k} = {mart}.{k})"
                )
            cond = (
                f"{mart}.{tm} >= ? AND {mart}.{tm} < ? AND {mart}.{tm} < ?{keep_out} AND {open_exc}"
            )
            params = (s, e, cutoff, mart_name)
            if departures_seq is not None:  # select-list parameters cast: see Exceptions
                w.execute(
                    f"INSERT INTO {w.t(self.cfg.state_schema, self._dep_table())} "
                    f"({k}, period, seq) SELECT {mart}.{k}, CAST(? AS {w.TEXT_TYPE}), "
                    f"CAST(? AS BIGINT) FROM {mart} WHERE {cond}",
                    (p.suffix, departures_seq, *params),
                )
            stats.trimmed += self._change(f"DELETE FROM {mart} WHERE {cond}", params)
        self._drop(old)
        stats.add_step("trim", t0)

    def _past_cutoff(
        self, mart: str, tm: str, unix: bool, hint: Any = None
    ) -> tuple[Any, list[Period]] | None:
        """The cutoff (the data clock MAX(time) − retention) and the periods holding rows past
        it, or None when no row is past it.

        `hint`: a time this chunk just wrote (the newest of its batch). The data clock is then
        read as the MAX of the rows at or above it, which zone maps answer from the few newest
        row groups (a plain MAX after this transaction's own writes scans the whole column:
        0.15 s at 20M rows in DuckDB); no row at or above it → the plain MAX, so the clock is
        exactly MAX(time) either way."""
        w, plan = self.wh, self.plan
        top = self._clock(mart, tm, hint)
        if top is None and plan is None:
            return None
        cutoff = plan.cutoff(unix) if plan else shift(top, self.g.retention_seconds)
        lo = w.extreme("MIN", tm, mart, f"{tm} < ?", (cutoff,))
        if lo is None and plan is None:
            return None
        hi = w.extreme("MAX", tm, mart, f"{tm} < ?", (cutoff,))
        return cutoff, [plan.period] if plan else periods_between(lo, hi)

    def _clock(self, mart: str, tm: str, hint: Any = None) -> Any:
        """MAX(`tm`) of `mart`, read from the rows at or above `hint` first (`_past_cutoff`)."""
        if hint is not None:
            top = self.wh.extreme("MAX", tm, mart, f"{tm} >= ?", (hint,))
            if top is not None:
                return top
        return self.wh.extreme("MAX", tm, mart)

    def _newest(self, new: str, tm: str) -> Any:
        """The newest time of a chunk's new rows (a batch-sized temp table): the hint of
        `_past_cutoff`; None in plan mode (the plan shows the plain MAX)."""
        if self.plan is not None:
            return None
        return self.wh.scalar(f"SELECT MAX({tm}) FROM {new}")
