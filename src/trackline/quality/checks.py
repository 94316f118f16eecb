"""Data-quality checks: each is a query that returns the offending rows (zero rows = pass).

A `Check` has a name, a severity (``blocking`` makes `trackline check` exit 1, ``warning``
only reports and alerts) and the SQL that is shown when it fails. Built in:

per retention group ``<g>`` (the daily order-tracking tests of docs/order-tracking.md)
  <g>.latest_event_time.<events>  test 1: the anchor's time equals the latest event time of
                                  its key, over the events mart ∪ its `<events>_hist` view
  <g>.has_events.<events>         test 2: every anchor key has events in the mart or history
  <g>.has_row.<follower>          test 3: every anchor key has its one_per_key follower row
  <g>.duplicate_keys              G1, through `trackline.marts.invariants.check_group`
  <g>.null_keys.<mart>            no mart row has a NULL key
  <g>.freshness                   the newest anchor time vs the SOURCE database's clock
run-level, from ``trackline.runs`` and the sources (in `trackline.quality.runlevel`)
  runs.failed_cycle               a cycle that failed (or synced only partly) in the window
  runs.slow_cycle                 a cycle slower than `quality.slow_cycle_seconds`
  runs.zero_row_cycle             the last cycle moved no row of a table while the source had
                                  rows past its watermark, below the cycle's upper bound
  runs.future_rows                source rows dated beyond the source clock + future_seconds
                                  (incremental sync would leave them unloaded until then)
  runs.behind_watermark           source rows that arrived below a table's watermark (in
                                  `trackline.quality.behind`): sync never reads them
reconcile, for each of `quality.reconcile_tables` (in `trackline.quality.runlevel`):
  reconcile.<table>               keys the sync should have loaded that the target lacks
custom: `quality.checks[]` from the config.

Tests 1-3 compare tables that are loaded one after the other, so a key changed a moment ago
may be ahead in one table. Each comparison is limited to times below what the other mart has
already consumed (the cursor of the last raw batch it read, from the batch ledger): a failure
is a real gap, never a table that simply has not caught up yet. Test 1 also asks the source
about the keys it would report: an order whose anchor row was updated again before any read
saw its in-between version (its events at that time are loaded, its row now sits past what
was consumed) is in flight, not a gap, and is left out (`Check.in_flight`).

Checks use portable SQL only (NOT EXISTS anti-joins, no ``NOT IN (subquery)``, no
``IS DISTINCT FROM``, no correlated scalar subqueries) and bound parameters.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from trackline.config import Config, FollowerConfig, RetentionGroupConfig
from trackline.extract import Relation, open_source
from trackline.extract.cdc import Watermark, shift
from trackline.load import Warehouse
from trackline.marts.invariants import check_group
from trackline.state import StateStore
from trackline.sync import resolve

Severity = Literal["blocking", "warning"]
STATE_EXCEPTIONS = "check_exceptions"
RUNS_TABLE = "runs"
FIRST_COLUMN = "<first column>"
"""`Check.key` of a custom check without `key:`: the first column of its result."""
DUPLICATE_LIMIT = 1000
"""Most offending rows the duplicate-key check collects per rule (each is one exception)."""


@dataclass(frozen=True)
class Rows:
    """Offending rows computed by library code (a `collect` check)."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True)
class Check:
    name: str
    severity: Severity
    sql: str
    """Returns the offending rows; zero rows = pass. Shown on failure."""
    params: tuple[Any, ...] = ()
    key: str | None = None
    """The result column that identifies one offending row: exceptions and alerts are per
    key. None: the check fails as a whole (one exception without a key)."""
    table: str = ""
    """`table_name` of this check's exceptions (the table the offending rows belong to)."""
    table_column: str | None = None
    """For `collect` checks: the result column that holds each row's table instead."""
    exceptions: tuple[str, str] | None = None
    """(schema, table) of the exceptions table its failures are recorded in."""
    description: str = ""
    collect: Callable[[Warehouse], Rows] | None = None
    """Rows computed by library code instead of `sql` (`sql` then documents what runs)."""
    problem: str | None = None
    """Why the check could not be prepared (e.g. the source is down): an error result."""
    in_flight: Callable[[list[tuple[Any, Any]]], set[Any]] | None = None
    """Given offending (key, anchor_time) rows, the keys that are only in flight (the source
    already holds a newer row a later cycle brings): dropped from the failures."""


# --------------------------------------------------------------------------- helpers


def _kind(value: Any) -> str | None:
    """The comparable family of a time value: 'unix', 'datetime' or None (unknown)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return "unix"
    if isinstance(value, dt.datetime):
        return "datetime"
    return None


def consumed_cursor(cfg: Config, wh: Warehouse, mart: str, source: str) -> Any:
    """Below which time `mart` holds every row of table `source`, or None when it has
    consumed nothing yet.

    That is the cursor of the last raw batch the mart consumed (from the batch ledger); and
    when the mart has consumed every batch loaded so far, the upper bound of the last cycle's
    read of that table, which is later whenever the table was quiet (every source row below
    the upper bound has been read)."""
    state = StateStore(wh, cfg.state_schema)
    rt = resolve(cfg, cfg.table(source), None, None)
    key = rt.key
    batch = state.mart_progress(mart, key)
    if not batch:
        return None
    rows = wh.query(
        f"SELECT wm_to FROM {state.t('batches')} WHERE table_key = ? AND batch_id = ?",
        (key, batch),
    )
    ts = Watermark.from_json(rows[0][0]).ts if rows and rows[0][0] else None
    if ts is None:
        ts = state.get(key, rt.source_db).watermark.ts
    if batch >= state.last_batch_id(key):
        upper = _last_cycle_upper(cfg, wh, key, ts)
        if upper is not None and _kind(upper) == _kind(ts) and upper > ts:
            ts = upper
    return ts


def _last_cycle_upper(cfg: Config, wh: Warehouse, table_key: str, like: Any) -> Any:
    runs = wh.t(cfg.state_schema, RUNS_TABLE)
    last = wh.query(
        f"SELECT detail FROM {runs} WHERE command = 'cycle' AND status IN ('ok', 'partial') "
        "ORDER BY started_at DESC LIMIT 1"
    )
    if not last or not last[0][0]:
        return None
    info = json.loads(last[0][0]).get("sync", {}).get(table_key, {})
    return _upper_of(info.get("upper"), like) if info.get("status") == "ok" else None


def _upper_of(recorded: Any, like: Any) -> Any:
    """The upper bound recorded in a cycle's detail, back in the watermark's type."""
    if recorded is None:
        return None
    if _kind(like) == "datetime" and isinstance(recorded, str):
        try:
            return dt.datetime.fromisoformat(recorded)
        except ValueError:
            return None
    if _kind(like) in ("unix", None) and isinstance(recorded, int | float):
        return int(recorded)
    return None


def _bound(column: str, value: Any, like: Any) -> tuple[str, tuple[Any, ...]]:
    """``AND column < ?`` when `value` is comparable with the column's values (`like`)."""
    if value is None or _kind(value) is None or _kind(value) != _kind(like):
        return "", ()
    return f" AND {column} < ?", (value,)


def _group_exceptions(g: RetentionGroupConfig) -> tuple[str, str]:
    return g.schema_, g.exceptions_table


# --------------------------------------------------------------------------- group checks


def group_checks(cfg: Config, g: RetentionGroupConfig, wh: Warehouse) -> list[Check]:
    """The built-in checks of one retention group (none before its anchor mart exists)."""
    if not wh.table_exists(g.schema_, g.anchor.table):
        return []
    k, at = wh.q(g.key), wh.q(g.anchor.time)
    anchor = wh.t(g.schema_, g.anchor.table)
    newest = wh.scalar(f"SELECT MAX({at}) FROM {anchor}")
    out: list[Check] = []
    for f in g.followers:
        if not wh.table_exists(g.schema_, f.table):
            continue
        if f.kind == "events":
            out += _event_checks(cfg, g, f, wh, newest)
        else:
            row_check = _follower_row_check(cfg, g, f, wh, newest)
            out += [row_check] if row_check else []
    out.append(_duplicate_check(cfg, g))
    for mart in [g.anchor.table, *[f.table for f in g.followers]]:
        if wh.table_exists(g.schema_, mart):
            out.append(
                Check(
                    name=f"{g.name}.null_keys.{mart}",
                    severity="blocking",
                    sql=(
                        f"SELECT c.null_key_rows FROM (SELECT COUNT(*) AS null_key_rows "
                        f"FROM {wh.t(g.schema_, mart)} WHERE {k} IS NULL) c "
                        "WHERE c.null_key_rows > 0"
                    ),
                    table=mart,
                    exceptions=_group_exceptions(g),
                    description=f"rows of {mart} whose {g.key} is NULL (the engine keeps "
                    "them out of the marts; something else wrote them)",
                )
            )
    out.append(freshness_check(cfg, g, wh, newest))
    return out


def _event_checks(
    cfg: Config, g: RetentionGroupConfig, f: FollowerConfig, wh: Warehouse, newest: Any
) -> list[Check]:
    assert f.time
    k, at, et = wh.q(g.key), wh.q(g.anchor.time), wh.q(f.time)
    anchor, events = wh.t(g.schema_, g.anchor.table), wh.t(g.schema_, f.table)
    hist_name = f"{f.table}_hist"
    has_hist = wh.table_exists(g.schema_, hist_name)
    hist = wh.t(g.schema_, hist_name)
    events_seen = consumed_cursor(cfg, wh, f.table, f.source)
    anchor_seen = consumed_cursor(cfg, wh, g.anchor.table, g.anchor.source)
    if events_seen is None:
        return []  # the events mart has consumed nothing yet: nothing to compare
    exc = _group_exceptions(g)
    out = []

    # test 1: anchor time = latest event time per key, over mart ∪ history
    union = f"SELECT {k}, {et} FROM {events}" + (
        f" UNION ALL SELECT {k}, {et} FROM {hist}" if has_hist else ""
    )
    # aggregate only the events of active anchor keys (history holds far more keys)
    of_anchor = f"EXISTS (SELECT 1 FROM {anchor} a2 WHERE a2.{k} = e.{k})"
    a_bound, a_params = _bound(f"a.{at}", events_seen, newest)
    e_bound, e_params = _bound("x.latest", anchor_seen, newest)
    latest_event = wh.scalar(f"SELECT MAX({et}) FROM {events}")
    problem = None
    if latest_event is not None and newest is not None and _kind(latest_event) != _kind(newest):
        problem = (
            f"{g.anchor.table}.{g.anchor.time} and {f.table}.{f.time} have different types; "
            "the latest-event-time test compares them directly"
        )
    out.append(
        Check(
            name=f"{g.name}.latest_event_time.{f.table}",
            severity="blocking",
            sql=(
                f"SELECT a.{k} AS {k}, a.{at} AS anchor_time, x.latest AS latest_event_time "
                f"FROM {anchor} a JOIN (SELECT e.{k}, MAX(e.{et}) AS latest FROM ({union}) e "
                f"WHERE {of_anchor} GROUP BY e.{k}) x ON x.{k} = a.{k} "
                f"WHERE a.{at} <> x.latest"
                f"{a_bound}{e_bound}"
            ),
            params=(*a_params, *e_params),
            key=g.key,
            table=g.anchor.table,
            exceptions=exc,
            description=f"{g.anchor.table}.{g.anchor.time} differs from the latest "
            f"{f.time} of the key's events in {f.table} ∪ {hist_name} (test 1)",
            problem=problem,
            in_flight=_moved_on_in_source(cfg, g, anchor_seen),
        )
    )

    # test 2: every anchor key has events in mart or history
    in_hist = f" AND NOT EXISTS (SELECT 1 FROM {hist} h WHERE h.{k} = a.{k})" if has_hist else ""
    out.append(
        Check(
            name=f"{g.name}.has_events.{f.table}",
            severity="blocking",
            sql=(
                f"SELECT a.{k} AS {k}, a.{at} AS anchor_time FROM {anchor} a "
                f"WHERE NOT EXISTS (SELECT 1 FROM {events} e WHERE e.{k} = a.{k}){in_hist}"
                f"{a_bound}"
            ),
            params=a_params,
            key=g.key,
            table=g.anchor.table,
            exceptions=exc,
            description=f"{g.anchor.table} keys with no event in {f.table} nor {hist_name} "
            "(test 2)",
        )
    )
    return out


IN_FLIGHT_BATCH = 500
"""Keys per source lookup of `_moved_on_in_source`."""


def _moved_on_in_source(
    cfg: Config, g: RetentionGroupConfig, seen: Any
) -> Callable[[list[tuple[Any, Any]]], set[Any]]:
    """The keys among offending (key, anchor_time) rows whose anchor row in the SOURCE is
    newer than the mart's and not consumed yet (at or past `seen`, the anchor's consumed
    cursor): the next cycle brings that row and its events, so the mismatch is not a gap.
    Looked up by key, in batches, with bound parameters."""

    def probe(rows: list[tuple[Any, Any]]) -> set[Any]:
        if not rows or seen is None:
            return set()
        mart_time = {r[0]: r[1] for r in rows}
        t = cfg.table(g.anchor.source)
        rt = resolve(cfg, t, None, None)
        out: set[Any] = set()
        with open_source(cfg.sources[rt.source_name], rt.source_db) as src:
            rel = src.relation_sql(Relation(t.name, rt.source_db if not t.query else None, t.query))
            k, tm = src.q(g.key), src.q(g.anchor.time)
            keys = list(mart_time)
            for i in range(0, len(keys), IN_FLIGHT_BATCH):
                chunk = tuple(keys[i : i + IN_FLIGHT_BATCH])
                marks = ", ".join("?" for _ in chunk)
                sql = f"SELECT {k}, MAX({tm}) FROM {rel} WHERE {k} IN ({marks}) GROUP BY {k}"
                found = src.rows(src.bind(sql, chunk), chunk)
                for key, now in found:
                    then = mart_time.get(key)
                    if (
                        now is not None
                        and then is not None
                        and _kind(now) == _kind(then) == _kind(seen)
                        and now > then
                        and now >= seen
                    ):
                        out.add(key)
        return out

    return probe


def _follower_row_check(
    cfg: Config, g: RetentionGroupConfig, f: FollowerConfig, wh: Warehouse, newest: Any
) -> Check | None:
    k, at = wh.q(g.key), wh.q(g.anchor.time)
    anchor, follower = wh.t(g.schema_, g.anchor.table), wh.t(g.schema_, f.table)
    # A follower row is written when the key is created, at or before the anchor's time: an
    # anchor row older than what the follower has consumed must have its follower row.
    seen = consumed_cursor(cfg, wh, f.table, f.source)
    if seen is None:
        return None  # the follower has consumed nothing yet: nothing to compare
    bound, params = _bound(f"a.{at}", seen, newest)
    return Check(
        name=f"{g.name}.has_row.{f.table}",
        severity="blocking",
        sql=(
            f"SELECT a.{k} AS {k}, a.{at} AS anchor_time FROM {anchor} a "
            f"WHERE NOT EXISTS (SELECT 1 FROM {follower} r WHERE r.{k} = a.{k}){bound}"
        ),
        params=params,
        key=g.key,
        table=g.anchor.table,
        exceptions=_group_exceptions(g),
        description=f"{g.anchor.table} keys with no row in {f.table} (test 3)",
    )


def _duplicate_check(cfg: Config, g: RetentionGroupConfig) -> Check:
    def collect(wh: Warehouse) -> Rows:
        rows = []
        for v in check_group(wh, g, limit=DUPLICATE_LIMIT, cfg=cfg):
            key = v.key
            if isinstance(key, tuple):
                key = key[0] if len(key) == 1 else ",".join(str(p) for p in key)
            rows.append((v.table, None if key is None else str(key), v.rule, v.detail))
        return Rows(["table_name", "key", "rule", "detail"], rows)

    marts = ", ".join([g.anchor.table, *[f.table for f in g.followers]])
    return Check(
        name=f"{g.name}.duplicate_keys",
        severity="blocking",
        sql=(
            "-- trackline.marts.invariants.check_group (G1), for each of "
            f"{marts}:\n"
            "SELECT <key>, COUNT(*) FROM <mart> GROUP BY <key> HAVING COUNT(*) > 1\n"
            "-- and keys (event keys for events) both in a mart and in its history, "
            "or in two history periods"
        ),
        key="key",
        table_column="table_name",
        exceptions=_group_exceptions(g),
        description="keys with more than one row (G1: one row per key)",
        collect=collect,
    )


def freshness_check(
    cfg: Config, g: RetentionGroupConfig, wh: Warehouse, newest: Any, now: Any = None
) -> Check:
    """The newest anchor time against the source database's clock (`now` for tests)."""
    threshold = cfg.quality.freshness_seconds
    name = f"{g.name}.freshness"
    at, anchor = wh.q(g.anchor.time), wh.t(g.schema_, g.anchor.table)
    sql = f"SELECT f.newest FROM (SELECT MAX({at}) AS newest FROM {anchor}) f WHERE f.newest < ?"
    base = Check(
        name=name,
        severity="blocking",
        sql=sql,
        params=(None,),
        table=g.anchor.table,
        exceptions=_group_exceptions(g),
    )
    if newest is None:
        return replace(base, description="the anchor mart is empty")
    if now is None:
        t = cfg.table(g.anchor.source)
        rt = resolve(cfg, t, None, None)
        try:
            with open_source(cfg.sources[rt.source_name], rt.source_db) as src:
                now = src.now(_kind(newest) == "unix")
        except Exception as exc:  # a check that cannot reach the source fails as an error
            return replace(
                base, problem=f"the source clock could not be read ({type(exc).__name__}: {exc})"
            )
    lag = _seconds_between(newest, now)
    return replace(
        base,
        params=(shift(now, threshold),),
        description=(
            f"newest {g.anchor.table}.{g.anchor.time} is {newest}, "
            f"{lag:,.0f} s behind the source clock ({now}); threshold {threshold:,} s"
        ),
    )


def _seconds_between(older: Any, newer: Any) -> float:
    if isinstance(older, dt.datetime) and isinstance(newer, dt.datetime):
        return (newer - older).total_seconds()
    return float(newer - older)


# --------------------------------------------------------------------------- custom & all


def custom_checks(cfg: Config) -> list[Check]:
    return [
        Check(
            name=c.name,
            severity=c.severity,
            sql=c.sql.strip().rstrip(";").strip(),
            key=c.key or FIRST_COLUMN,
            table=c.name,
            exceptions=(cfg.state_schema, STATE_EXCEPTIONS),
            description=c.description,
        )
        for c in cfg.quality.checks
    ]
