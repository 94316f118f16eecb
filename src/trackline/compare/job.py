"""`trackline compare`: a legacy DW table (MySQL/MariaDB) against trackline's table, with a
pass/fail verdict.

Both databases hold the same logical rows in different types. Each row becomes one canonical
text (`canonical`), and both databases answer, per part of the span of the first key column
(an integer; for any other key, of a 60-bit number both compute from the SHA-256 of the key's
canonical text, so string keys need no common collation), two figures pushed down in SQL:
COUNT(*) and the sum of integers taken from the SHA-256 of that text. The first pass is one
grouped query per side over the whole window, by 1024 parts and by day (the per-day counts
come from it); equal parts are done. A differing part holding more than `chunk` rows is cut
into parts of about `chunk`/8 rows, all answered by one grouped query per side; a differing
part of at most `chunk` rows is fetched (canonical texts only) and compared row by row: keys
missing on each side, keys held twice on one side, and mismatching values per column. An
equal table costs one scan per side; what is fetched grows with the differences, not with
the table. Rows whose first key column is NULL lie in no part: when their figures differ they
are walked on the hash of their whole key's text, as a string key is.

trackline's side is the table plus its `<table>_hist` view when there is one, so a row the
mart archived into a history period still counts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from trackline.compare.canonical import (
    INTEGER_TYPES,
    WAREHOUSE_CANON,
    Canon,
    Kind,
    MySQLCanon,
    applied,
    canonical_json,
    kind_of,
    zoned,
)
from trackline.compare.outcome import ColumnDiff, CompareResult
from trackline.compare.results import save as save_result
from trackline.config import CompareTable, Config
from trackline.errors import ConfigError, SourceError, SourceTimeout, SourceUnreachable
from trackline.extract import Relation, Source, open_source
from trackline.jobs.keyranges import integral, range_where
from trackline.load import Warehouse
from trackline.report import NullReporter, Reporter


class _Side:
    """One database's answers: figures, key span, canonical rows and per-day counts of the
    compared relation, restricted to a key range and the window."""

    def __init__(
        self,
        canon: Canon,
        relation: str,
        q: Any,
        run: Any,
        key: list[str],
        columns: list[str],
        kinds: dict[str, Kind],
        types: dict[str, str],
        time: str | None,
        window: tuple[Any, Any],
        *,
        null_first: bool = False,
    ) -> None:
        self.canon, self.q, self.run = canon, q, run
        self._args = (canon, relation, q, run, key, columns, kinds, types, time, window)
        names = [*key, *columns]
        exprs = [canon.value(q(c), kinds[c], types.get(c, "")) for c in names]
        self.hashed = null_first or kinds[key[0]].name != "number" or kinds[key[0]].scale != 0
        if not self.hashed:
            self.relation, self.first = relation, q(key[0])
        else:  # split on a number both sides compute alike from the key's canonical text
            kh = q("_tl_kh")
            text = canon.digest(canon.concat(exprs[: len(key)]))
            keyed = relation_as(relation, q)
            only = f" WHERE {q('_tl_k')}.{q(key[0])} IS NULL" if null_first else ""
            self.relation = (
                f"(SELECT {text} AS {kh}, {q('_tl_k')}.* FROM {keyed}{only}{canon.FENCE}) "
                f"{q('_tl_keyed')}"
            )
            self.first = canon.hex_int(kh)
        self.exprs = exprs
        self.row_text = canon.concat(
            [canon.hash_value(q(c), kinds[c], types.get(c, "")) for c in names]
        )
        self.day = canon.day(q(time), kinds[time], types.get(time, "")) if time else None
        self.time, self.window = (q(time) if time else None), window

    def null_first(self) -> _Side:
        """The same relation restricted to the rows whose first key column is NULL (outside
        every range of that column), split on the hash of the whole key's text."""
        return _Side(*self._args, null_first=True)

    def _where(self, start: int | None, end: int | None) -> tuple[str, tuple[Any, ...]]:
        cond, params = range_where(self.first, start, end)
        values: list[Any] = list(params)
        if self.time:
            for op, bound in ((">=", self.window[0]), ("<", self.window[1])):
                if bound is not None:
                    cond.append(f"{self.time} {op} ?")
                    values.append(bound)
        return (" WHERE " + " AND ".join(cond)) if cond else "", tuple(values)

    def parts(
        self, start: int, end: int | None, width: int, *, by_day: bool = False
    ) -> dict[Any, tuple[int, int]]:
        """Figures of each part `[start + b*width, start + (b+1)*width)` that holds rows: part
        number b → (rows, sum); with `by_day`, (b, day) → (rows, sum), the day being the
        `YYYY-MM-DD` of the time column. `end` None: no key bound in the WHERE (the first
        pass, over the whole window). `start` and `width` are integers this job computed,
        written as literals (a bound parameter in a select list needs a type)."""
        where, params = self._where(start if end is not None else None, end)
        part = self.canon.int_div(f"{self.first} - {int(start)}", int(width))
        digest = self.canon.digest(self.row_text)
        day = self.day if by_day else None
        groups = [part, *([day] if day else [])]
        if self.canon.INLINE_HASH:
            sql = (
                f"SELECT {', '.join(groups)}, {self.canon.figures(digest)} FROM {self.relation}"
                f"{where} GROUP BY {', '.join(str(i + 1) for i in range(len(groups)))}"
                f"{self.canon.GROUP_TAIL}"
            )
        else:
            names = [self.q("_tl_b"), *([self.q("_tl_d")] if day else [])]
            h = self.q("_tl_h")
            derived = ", ".join(f"{g} AS {n}" for g, n in zip(groups, names, strict=True))
            sql = (
                f"SELECT {', '.join(names)}, {self.canon.figures(h)} FROM (SELECT {derived}, "
                f"{digest} AS {h} FROM {self.relation}{where}{self.canon.HASH_FENCE}) "
                f"{self.q('_tl_rows')} GROUP BY {', '.join(names)}"
            )
        out: dict[Any, tuple[int, int]] = {}
        n = len(groups)
        for r in self.run(sql, params):
            b = None if r[0] is None else int(r[0])  # a NULL first key column
            k = (b, self.canon.day_label(r[1])) if n == 2 else b
            out[k] = (int(r[n] or 0), int(r[n + 1] or 0))
        return out

    def span(self, start: int | None, end: int | None) -> tuple[Any, Any]:
        where, params = self._where(start, end)
        row = self.run(
            f"SELECT MIN({self.first}), MAX({self.first}) FROM {self.relation}{where}", params
        )
        return integral(row[0][0]), integral(row[0][1])

    def rows(self, start: int | None, end: int | None) -> list[tuple[Any, ...]]:
        where, params = self._where(start, end)
        return self.run(f"SELECT {', '.join(self.exprs)} FROM {self.relation}{where}", params)


def compare(
    cfg: Config,
    wh: Warehouse,
    name: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    legacy: str | None = None,
    chunk: int | None = None,
    save: bool = True,
    reporter: Reporter | None = None,
    open_src: Source | None = None,
) -> CompareResult:
    """Compare the `compare.tables` entry `name`; `legacy` overrides `compare.legacy`.
    `save`: append the result to `<state_schema>.compare_results`."""
    reporter = reporter or NullReporter()
    c = cfg.compare_table(name)
    if (since is not None or until is not None) and c.time is None:
        raise ConfigError(
            f"compare table {name!r}: a window needs `time:` (the column to filter on)"
        )
    if since is not None and until is not None and until <= since:
        raise ConfigError(f"compare: --until ({until}) must be after --since ({since})")
    source_name = legacy or cfg.compare.legacy
    source = cfg.sources.get(source_name)
    if source is None or source.type != "mysql":
        raise ConfigError(
            f"compare: the legacy source {source_name!r} must be a MySQL entry of `sources:` "
            f"(known: {sorted(cfg.sources)})"
        )
    schema = c.schema_ or cfg.compare_schema(c.table)
    if schema is None:
        raise ConfigError(f"compare table {name!r}: say which schema holds {c.table!r} (`schema:`)")
    if not wh.table_exists(schema, c.table):
        raise ConfigError(
            f"compare table {name!r}: {schema}.{c.table} does not exist in the warehouse"
        )
    wanted = list(dict.fromkeys([*c.key, *c.columns, *([c.time] if c.time else [])]))
    stored = wh.column_types(schema, c.table)
    # by the config's names: Redshift keeps `pathTime` as `pathtime`
    lacking = [col for col in wanted if wh.name(col) not in stored]
    if lacking:
        raise ConfigError(
            f"compare table {name!r}: {schema}.{c.table} has no column(s) {', '.join(lacking)}"
        )
    wh_types = {col: stored[wh.name(col)] for col in wanted}
    hist = f"{c.table}_hist"
    parts = [f"SELECT {wh.cols(wanted)} FROM {wh.t(schema, c.table)}"]
    if c.history and wh.table_exists(schema, hist):  # a view counts (information_schema)
        parts.append(f"SELECT {wh.cols(wanted)} FROM {wh.t(schema, hist)}")
    t_rel = f"({' UNION ALL '.join(parts)}) {wh.q('_tl_side')}"
    with contextlib.ExitStack() as opened:
        db = c.legacy_db or getattr(source, "database", None)
        src = open_src or opened.enter_context(open_source(source, db))
        rel = Relation(c.legacy_table, db)
        try:
            legacy_cols = {col.name: col for col in src.columns(rel)}
        except (SourceUnreachable, SourceTimeout):
            raise
        except SourceError as exc:  # (no such table): name the entry and its keys
            raise ConfigError(
                f"compare table {name!r}: legacy_table {c.legacy_table!r} cannot be read in "
                f"database {db!r} of source {source_name!r} (compare.tables[].legacy_table / "
                f"legacy_db): {exc}"
            ) from None
        lacking = [col for col in wanted if c.legacy(col) not in legacy_cols]
        if lacking:
            raise ConfigError(
                f"compare table {name!r}: legacy table {db}.{c.legacy_table} has no column(s) "
                + ", ".join(c.legacy(col) for col in lacking)
            )
        kinds = {
            col: kind_of(
                legacy_cols[c.legacy(col)].data_type,
                legacy_cols[c.legacy(col)].column_type,
                c.normalise,
            )
            for col in wanted
        }
        for col in wanted:  # JSON by the warehouse's type, or listed (text on both sides)
            if col in c.normalise.json_columns or any(
                t in wh_types[col] for t in ("json", "super")
            ):
                kinds[col] = Kind("json")
        if c.time and kinds[c.time].name not in ("datetime", "date"):
            raise ConfigError(
                f"compare table {name!r}: time column {c.time!r} must be a DATE, DATETIME or "
                "TIMESTAMP in the legacy table"
            )
        if c.time and wh_types[c.time] in INTEGER_TYPES:
            raise ConfigError(
                f"compare table {name!r}: time column {c.time!r} must be a DATE or TIMESTAMP in "
                f"the warehouse, not {wh_types[c.time]} (unix seconds compare as a column only)"
            )
        src.rows("SET time_zone = '+00:00'")  # legacy TIMESTAMP columns read in UTC
        tz = [col for col in wanted if zoned(wh_types[col])]
        aware = bool(c.time and c.time in tz)
        wh_window = (_utc(since, aware), _utc(until, aware))

        def legacy_run(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            return src.long_rows(src.bind(sql, params), params)

        def legacy_q(col: str) -> str:
            return src.q(c.legacy(col))

        left = _Side(
            MySQLCanon(c.normalise),
            src.relation_sql(rel),
            legacy_q,
            legacy_run,
            c.key,
            c.columns,
            kinds,
            {},
            c.time,
            (since, until),
        )
        right = _Side(
            WAREHOUSE_CANON[wh.ENGINE](c.normalise, compat=bool(getattr(wh, "compat", False))),
            t_rel,
            wh.q,
            wh.query,
            c.key,
            c.columns,
            kinds,
            wh_types,
            c.time,
            wh_window,
        )
        res = CompareResult(
            name,
            f"{source_name}:{db}.{c.legacy_table}",
            f"{schema}.{c.table}" + (" ∪ " + hist if len(parts) > 1 else ""),
            (since, until),
            (c.count_gap, c.mismatch),
            applied(c.normalise, kinds, tz),
            columns={col: ColumnDiff(col) for col in c.columns},
        )
        json_at = [i for i, col in enumerate(c.columns) if kinds[col].name == "json"]
        both = _Both(left, right)
        try:
            # PostgreSQL: work_mem for the first pass's groups (the default 4MB makes it sort
            # every row, spilled to disk, instead of hashing ~1,400 groups), no JIT
            with wh.transaction():
                wh.bulk_join_settings()
                _walk(c, both, res, chunk or c.chunk, cfg.compare.sample, json_at, left.hashed)
        finally:
            both.close()
    if save:
        save_result(wh, cfg.state_schema, res)
    reporter.event(
        "compare",
        f"{name}: legacy {res.legacy_rows:,} rows, trackline {res.trackline_rows:,}; "
        f"{res.differences:,} differences; {'pass' if res.ok else 'FAIL'}",
        table=name,
    )
    return res


def relation_as(relation: str, q: Any) -> str:
    """`relation` (a table or an aliased derived table) under the alias `_tl_k`."""
    if relation.startswith("("):
        return f"(SELECT * FROM {relation}) {q('_tl_k')}"
    return f"{relation} {q('_tl_k')}"


def _utc(bound: dt.datetime | None, aware: bool) -> dt.datetime | None:
    """A window bound for a TIMESTAMP WITH TIME ZONE column: the same instant, in UTC."""
    return bound.replace(tzinfo=dt.UTC) if bound is not None and aware else bound


FIRST_PARTS = 1024
"""Parts of the first pass over the whole window: with differences spread over the table,
the splits after it read about (differing parts / 1024) of the table, not all of it again.
Its result holds a row per part and day that has rows: about 1024 + days where the time
column follows the key (orders, their events), up to 1024 × days where it does not."""
FANOUT = 16
MAX_PARTS = 256


def _fanout(rows: int, chunk: int) -> int:
    """Parts a differing range of `rows` rows is split into: about `chunk` / 8 rows each, so
    a differing part is mostly fetched right after this split and what is fetched stays
    small; between FANOUT and MAX_PARTS (one GROUP BY query per side answers all of them)."""
    return min(MAX_PARTS, max(FANOUT, -(-rows * 8 // chunk)))


class _Both:
    """Asks both sides at once: the legacy side in a worker thread (its own connection), the
    warehouse in this one, so each step costs the slower side, not the sum of both."""

    def __init__(self, left: _Side, right: _Side, pool: ThreadPoolExecutor | None = None) -> None:
        self.left, self.right = left, right
        self.pool = pool or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="tl-compare-legacy"
        )

    def null_first(self) -> _Both:
        """Both sides' rows whose first key column is NULL (the same worker thread)."""
        return _Both(self.left.null_first(), self.right.null_first(), self.pool)

    def __call__(self, method: str, *args: Any, **kw: Any) -> tuple[Any, Any]:
        pending = self.pool.submit(getattr(self.left, method), *args, **kw)
        try:
            theirs = getattr(self.right, method)(*args, **kw)
        finally:
            ours = pending.result()  # (waits for the legacy side, and raises its error)
        return ours, theirs

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _walk(
    c: CompareTable,
    both: _Both,
    res: CompareResult,
    chunk: int,
    sample: int,
    json_at: list[int],
    hashed_key: bool,
) -> None:
    """One first pass over the window, grouped by part of the key span (and by day: the
    per-day counts come from the same scan); a differing part of more than `chunk` rows is
    cut into `FANOUT` equal parts of its key span, all asked in one grouped query per side;
    only differing parts go on, and parts of at most `chunk` rows are fetched. Rows whose
    first key column is NULL fall in no part: when their figures differ, they are walked the
    same way on the hash of their whole key."""
    if hashed_key:  # a number from the key's hash: [0, 2^60), no scan needed to find it
        lo, hi = 0, 2**60 - 1
    else:  # the first key column's MIN/MAX: an index read where there is an index
        ls, rs = both("span", None, None)
        ends = [(int(a), int(b)) for a, b in (ls, rs) if a is not None]
        # no key on either side: every row of the window (if any) has a NULL first key
        lo, hi = min((e[0] for e in ends), default=0), max((e[1] for e in ends), default=0)
    width = -(-(hi + 1 - lo) // FIRST_PARTS)
    res.ranges += 1
    lg, rg = both("parts", lo, None, width, by_day=True)
    lb, rb = _by_part(lg, res, 0), _by_part(rg, res, 1)
    res.legacy_rows = sum(n for n, _ in lb.values())
    res.trackline_rows = sum(n for n, _ in rb.values())
    res.days = dict(sorted(res.days.items()))
    if lb == rb:
        return
    if max(res.legacy_rows, res.trackline_rows) <= chunk:
        res.ranges_fetched += 1
        _diff(c, *both("rows", None, None), res, sample, json_at)
        return
    nulls = lb.pop(None, (0, 0)), rb.pop(None, (0, 0))
    if nulls[0] != nulls[1]:  # NULLs sort first: their samples come first
        rows = max(nulls[0][0], nulls[1][0])
        _drain(c, both.null_first(), res, chunk, sample, json_at, [(rows > chunk, 0, 2**60, rows)])
    todo: list[tuple[bool, int, int, int]] = []
    _differing(lb, rb, lo, hi + 1, width, chunk, todo)
    _drain(c, both, res, chunk, sample, json_at, todo)


def _drain(
    c: CompareTable,
    both: _Both,
    res: CompareResult,
    chunk: int,
    sample: int,
    json_at: list[int],
    todo: list[tuple[bool, int, int, int]],
) -> None:
    """Fetch the queued parts (`(split, start, end, rows)`, highest first), splitting those
    marked to be split and queueing their differing parts."""
    while todo:  # lowest key first, so samples come in key order
        split, start, end, rows = todo.pop()
        if not split:
            res.ranges_fetched += 1
            _diff(c, *both("rows", start, end), res, sample, json_at)
            continue
        width = -(-(end - start) // _fanout(rows, chunk))  # ceiling: the parts cover it
        res.ranges += 1
        lb, rb = both("parts", start, end, width)
        _differing(lb, rb, start, end, width, chunk, todo)


def _by_part(
    grouped: dict[Any, tuple[int, int]], res: CompareResult, side: int
) -> dict[int | None, tuple[int, int]]:
    """The first pass's (part, day) figures summed per part; the day counts go to
    `res.days[day][side]`."""
    out: dict[int | None, tuple[int, int]] = {}
    for k, (n, total) in grouped.items():
        b, day = k if isinstance(k, tuple) else (k, None)
        had = out.get(b, (0, 0))
        out[b] = (had[0] + n, had[1] + total)
        if day is not None:
            res.days.setdefault(day, [0, 0])[side] += n
    return out


def _differing(
    lb: dict[int | None, tuple[int, int]],
    rb: dict[int | None, tuple[int, int]],
    start: int,
    end: int,
    width: int,
    chunk: int,
    todo: list[tuple[bool, int, int, int]],
) -> None:
    """Queue the differing parts of `[start, end)` (highest first, so the lowest is popped
    first): to be split when they hold more than `chunk` rows, else to be fetched."""
    for b in sorted((p for p in set(lb) | set(rb) if p is not None), reverse=True):
        lfig, rfig = lb.get(b, (0, 0)), rb.get(b, (0, 0))
        if lfig == rfig:
            continue
        s_, e_ = start + b * width, min(start + (b + 1) * width, end)
        rows = max(lfig[0], rfig[0])
        todo.append((rows > chunk and e_ - s_ > 1, s_, e_, rows))


def _diff(
    c: CompareTable,
    lrows: list[tuple[Any, ...]],
    rrows: list[tuple[Any, ...]],
    res: CompareResult,
    sample: int,
    json_at: Sequence[int] = (),
) -> None:
    n = len(c.key)
    res.rows_fetched += len(lrows) + len(rrows)
    sides: list[dict[tuple[Any, ...], list[tuple[Any, ...]]]] = []
    for rows in (lrows, rrows):
        by: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
        for r in rows:
            values = list(r[n:])
            for i in json_at:  # one document, whatever its key order or spacing
                values[i] = canonical_json(values[i])
            by[tuple(r[:n])].append(tuple(values))
        sides.append(by)
    left, right = sides

    def label(key: tuple[Any, ...]) -> str:
        return ", ".join("NULL" if k is None else str(k) for k in key)

    def order(key: tuple[Any, ...]) -> tuple[Any, ...]:  # NULL first, as SQL sorts it
        return tuple((k is not None, "" if k is None else str(k)) for k in key)

    for side_name, by in (("legacy", left), ("trackline", right)):
        for key in sorted((k for k, v in by.items() if len(v) > 1), key=order):
            res.duplicates += len(by[key]) - 1
            if len(res.duplicates_sample) < sample:
                res.duplicates_sample.append(f"{side_name}: ({label(key)}) x{len(by[key])}")
    gone = sorted(left.keys() - right.keys(), key=order)
    extra = sorted(right.keys() - left.keys(), key=order)
    res.missing_in_trackline += len(gone)
    res.missing_in_trackline_sample += [label(k) for k in gone][
        : sample - len(res.missing_in_trackline_sample)
    ]
    res.missing_in_legacy += len(extra)
    res.missing_in_legacy_sample += [label(k) for k in extra][
        : sample - len(res.missing_in_legacy_sample)
    ]
    for key in sorted(left.keys() & right.keys(), key=order):
        res.compared += 1
        lv, rv = left[key][0], right[key][0]
        if c.newer_by and lv != rv:
            i = c.columns.index(c.newer_by)
            if lv[i] is not None and (rv[i] is None or lv[i] > rv[i]):
                res.legacy_newer += 1
                if len(res.legacy_newer_sample) < sample:
                    res.legacy_newer_sample.append(label(key))
        for i, col in enumerate(c.columns):
            if lv[i] != rv[i]:
                d = res.columns[col]
                d.mismatches += 1
                if len(d.sample) < sample:
                    d.sample.append((label(key), lv[i], rv[i]))
