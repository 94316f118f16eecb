"""Reconcile a synced table with its source, range by range of its key.

Timestamp CDC cannot see a row deleted in the source, and nothing in a sync proves that every
row it should have read arrived. This job compares the key sets of a one-row-per-key target
(`write_mode: merge`) and its source:

- both databases first answer three aggregates over the whole key space (``COUNT(*)`` and
  two sums of residues of the key; pushed down, no rows move). A range
  whose figures agree is done; one that differs and holds more than `chunk` rows is split at
  the middle of its keys and each half asked again; a differing range of at most `chunk` rows
  is compared key by key. An unchanged table costs one query per side; memory is bounded by
  `chunk`; sparse keys (snowflake ids) cost no more than dense ones;
- keys in the target but not in the source were **deleted** there: reported, or with `apply`
  deleted from the target (one transaction per range, under the table's sync lock, so no sync
  of that table runs meanwhile);
- keys in the source but not in the target are **missing** when the sync should already have
  read them (cursor below the watermark; for `id` below its id; for `full` always): a G2
  failure, reported with the keys. Newer ones are **pending** (the next sync brings them).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from trackline.config import Config
from trackline.errors import ConfigError
from trackline.extract import Relation, Source, open_source
from trackline.extract.cdc import Watermark
from trackline.jobs.keyranges import integral, midpoint, range_where
from trackline.load import Warehouse
from trackline.report import NullReporter, Reporter
from trackline.state import LEGACY_SOURCE, StateStore
from trackline.sync import resolve

SAMPLE = 20
"""Most keys of each kind a result lists (the counts are complete)."""

_DELETE_PARAMS = 500
"""Keys per DELETE statement when applying (bound parameters)."""


@dataclass
class ReconcileResult:
    table_key: str
    key: str
    ranges: int = 0
    ranges_compared: int = 0
    deleted_count: int = 0
    deleted: list[Any] = field(default_factory=list)
    missing_count: int = 0
    missing: list[Any] = field(default_factory=list)
    pending_count: int = 0
    applied: int = 0

    @property
    def ok(self) -> bool:
        """No missing key (deleted keys are the source's doing, not a loss)."""
        return self.missing_count == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table_key,
            "key": self.key,
            "ranges": self.ranges,
            "ranges_compared": self.ranges_compared,
            "deleted": self.deleted_count,
            "deleted_sample": [str(k) for k in self.deleted],
            "missing": self.missing_count,
            "missing_sample": [str(k) for k in self.missing],
            "pending": self.pending_count,
            "applied": self.applied,
        }


def reconcile(
    cfg: Config,
    wh: Warehouse,
    name: str,
    *,
    apply: bool = False,
    chunk: int = 1_000_000,
    source_db: str | None = None,
    target_schema: str | None = None,
    reporter: Reporter | None = None,
    open_src: Source | None = None,
) -> ReconcileResult:
    """`open_src`: a source to ask instead of opening the table's own (`trackline sql`)."""
    reporter = reporter or NullReporter()
    if chunk < 1:
        raise ConfigError(f"reconcile: chunk must be at least 1 (got {chunk})")
    t = cfg.table(name)
    rt = resolve(cfg, t, source_db, target_schema)
    if t.write_mode != "merge":
        raise ConfigError(
            f"table {t.name!r}: reconcile compares one row per key, and write_mode is "
            f"{t.write_mode!r}; only `merge` targets hold one row per key"
        )
    if not wh.table_exists(rt.target_schema, rt.target):
        raise ConfigError(
            f"table {t.name!r}: its target {rt.key} does not exist yet; run "
            f"`trackline sync {t.name}` first"
        )
    state = StateStore(wh, cfg.state_schema)
    others = [db for db in state.source_dbs(rt.key) if db not in (rt.source_db, LEGACY_SOURCE)]
    if others:
        raise ConfigError(
            f"table {t.name!r}: its target {rt.key} was also loaded from source database(s) "
            f"{', '.join(others)}; reconcile compares the target with one source database "
            f"({rt.source_db}) and would count their keys as deleted"
        )
    wm = state.get(rt.key, rt.source_db).watermark
    with contextlib.ExitStack() as opened:
        src = open_src or opened.enter_context(
            open_source(cfg.sources[rt.source_name], rt.source_db)
        )
        rel = Relation(t.name, rt.source_db if not t.query else None, t.query)
        pk = t.primary_key or src.primary_key(rel)
        if len(pk) != 1:
            raise ConfigError(
                f"table {t.name!r}: reconcile needs a single-column integer key "
                f"(primary_key is {pk or 'not set and the source has none'})"
            )
        side = _Sides(src, src.relation_sql(rel), wh, wh.t(rt.target_schema, rt.target), pk[0])
        res = ReconcileResult(rt.key, pk[0])
        side.check_integer(t.name)
        cursor = t.cdc.cursor if t.cdc.strategy in ("hybrid", "timestamp") else None
        todo: list[tuple[int | None, int | None]] = [(None, None)]
        while todo:
            start, end = todo.pop()
            res.ranges += 1
            s_fig, t_fig = side.figures(start, end)
            if s_fig == t_fig:
                continue
            if max(s_fig[0], t_fig[0]) > chunk:
                lo, hi = side.span(start, end)
                if hi > lo:  # (one key value held many times cannot be split: compare it)
                    mid = midpoint(lo, hi)
                    todo += [(mid, end), (start, mid)]  # the lower half first
                    continue
            res.ranges_compared += 1
            source = side.source_keys(start, end, cursor)
            target = side.target_keys(start, end)
            gone = sorted(target - source.keys())
            absent = sorted(source.keys() - target)
            late = [k for k in absent if _should_have_loaded(t.cdc.strategy, wm, k, source[k])]
            res.deleted_count += len(gone)
            res.deleted += gone[: SAMPLE - len(res.deleted)]
            res.missing_count += len(late)
            res.missing += late[: SAMPLE - len(res.missing)]
            res.pending_count += len(absent) - len(late)
            if apply and gone:
                res.applied += side.delete(gone, f"sync:{rt.key}")
    reporter.event(
        "reconcile",
        f"{t.name}: {res.ranges} key ranges, {res.ranges_compared} compared; "
        f"{res.deleted_count} deleted in the source ({res.applied} applied), "
        f"{res.missing_count} missing, {res.pending_count} pending",
        table=t.name,
    )
    return res


def _should_have_loaded(strategy: str, wm: Watermark, key: Any, cursor: Any) -> bool:
    """Whether the sync should already have read this source row (else it is pending)."""
    if strategy == "full":
        return True
    if strategy == "id":
        return wm.id is not None and key <= wm.id
    if wm.ts is None or cursor is None:  # never read yet / NULL cursors: not judged
        return False
    try:
        return bool(cursor < wm.ts)  # strictly below: rows AT the watermark may still come
    except TypeError:
        return False


class _Sides:
    """The same range questions, asked of the source and of the target."""

    def __init__(self, src: Source, rel: str, wh: Warehouse, target: str, key: str) -> None:
        self.src, self.rel, self.wh, self.target = src, rel, wh, target
        self.skey, self.tkey, self.name = src.q(key), wh.q(key), key

    def check_integer(self, table: str) -> None:
        row = self.src.rows(f"SELECT MIN({self.skey}) FROM {self.rel}")
        value = integral(row[0][0]) if row else None
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ConfigError(
                f"table {table!r}: reconcile needs an integer key; {self.name!r} holds "
                f"{type(value).__name__} values"
            )

    @staticmethod
    def _where(key: str, start: int | None, end: int | None) -> tuple[str, tuple[int, ...]]:
        """`WHERE start <= key < end` with `?` markers (either bound may be open)."""
        cond, params = range_where(key, start, end)
        return (" WHERE " + " AND ".join(cond)) if cond else "", tuple(params)

    def _source(self, select: str, start: int | None, end: int | None) -> list[tuple[Any, ...]]:
        where, params = self._where(self.skey, start, end)
        sql = f"{select} FROM {self.rel}{where}"
        return self.src.rows(self.src.bind(sql, params), params)

    def _target(self, select: str, start: int | None, end: int | None) -> list[tuple[Any, ...]]:
        where, params = self._where(self.tkey, start, end)
        return self.wh.query(f"{select} FROM {self.target}{where}", params)

    def _both(
        self, select: str, start: int | None, end: int | None
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        s = self._source(select.format(k=self.skey, i64=self.src.INT64_TYPE), start, end)[0]
        t = self._target(select.format(k=self.tkey, i64=self.wh.sql_type(pa.int64())), start, end)
        return tuple(s), tuple(t[0])

    def figures(self, start: int | None, end: int | None) -> tuple[tuple, tuple]:
        """(rows, sum of key residues, sum of mixed residues) on each side: equal figures mean
        equal key sets but for a coincidence of all three. `%` truncates toward zero alike in
        MySQL, SQLite, DuckDB, PostgreSQL and Redshift.

        Each residue is cast to a 64-bit integer before it is multiplied or summed: an
        arithmetic result keeps its operands' type, so the product of two residues of an INT
        key (up to ~10^12) overflowed INTEGER on PostgreSQL, Redshift and DuckDB. The key itself
        is never cast: a BIGINT UNSIGNED key above 2^63 (DECIMAL(20,0) or UBIGINT in the
        warehouse) would not fit, while its residues always do. The products stay below 10^12
        and every sum within a BIGINT (Redshift sums BIGINT as BIGINT) for any table of fewer
        than 9 x 10^9 rows."""
        s, t = self._both(
            "SELECT COUNT(*), SUM(CAST({k} % 1000000007 AS {i64})), "
            "SUM((CAST({k} % 1000003 AS {i64}) * CAST({k} % 999983 AS {i64})) % 1000000007)",
            start,
            end,
        )
        return tuple(int(v or 0) for v in s), tuple(int(v or 0) for v in t)

    def span(self, start: int | None, end: int | None) -> tuple[int, int]:
        s, t = self._both("SELECT MIN({k}), MAX({k})", start, end)
        lows = [integral(v) for v in (s[0], t[0]) if v is not None]
        highs = [integral(v) for v in (s[1], t[1]) if v is not None]
        return int(min(lows)), int(max(highs))

    def source_keys(self, start: int | None, end: int | None, cursor: str | None) -> dict[Any, Any]:
        cur = self.src.q(cursor) if cursor else "NULL"
        rows = self._source(f"SELECT {self.skey}, {cur}", start, end)
        return {integral(r[0]): r[1] for r in rows}

    def target_keys(self, start: int | None, end: int | None) -> set[Any]:
        rows = self._target(f"SELECT {self.tkey}", start, end)
        return {integral(r[0]) for r in rows}

    def delete(self, keys: list[Any], lock: str) -> int:
        with self.wh.lock(lock):
            return self.wh.run_transaction(lambda: self._delete(keys))  # rerun whole on conflict

    def _delete(self, keys: list[Any]) -> int:
        n = 0
        for i in range(0, len(keys), _DELETE_PARAMS):
            part = keys[i : i + _DELETE_PARAMS]
            marks = ", ".join("?" for _ in part)
            n += max(
                self.wh.execute_count(
                    f"DELETE FROM {self.target} WHERE {self.tkey} IN ({marks})", tuple(part)
                ),
                0,
            )
        return n
