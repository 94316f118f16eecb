"""`trackline check`: run every check, record the results, alert on what is new.

Each check runs in its own warehouse transaction: its result is materialised once into a
scratch table in the state schema (``CREATE TABLE … AS SELECT * FROM (<check sql>) x``; with
bound parameters: created empty, then filled by ``INSERT … SELECT``, see `materialise`), which
gives the failing count, a sample, the column names and the offending keys; the keys are
recorded in the exceptions table, the results row is written, the scratch table is dropped,
and all of it commits together (a check that errors leaves nothing behind but its `error`
result). The whole run holds the warehouse lock ``cycle``, so it never reads marts that a
cycle is half-way through.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from trackline.config import IDENT_RE, Config
from trackline.errors import TracklineError
from trackline.load import Warehouse
from trackline.marts.exceptions import Exceptions
from trackline.quality.alerts import Alert, Delivery, compose, deliver
from trackline.quality.catalog import all_checks
from trackline.quality.checks import FIRST_COLUMN, Check
from trackline.quality.results import SAMPLE, CheckResult, FailureBook, ResultsStore
from trackline.quality.runlevel import alert_checks
from trackline.report import NullReporter, Reporter
from trackline.state import StateStore, pipeline_lock, utcnow


@dataclass
class CheckReport:
    run_id: str
    results: list[CheckResult] = field(default_factory=list)
    alert: Alert | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No blocking check failed (warnings do not count)."""
        return not any(r.blocking for r in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.failed]


def run_checks(
    cfg: Config,
    wh: Warehouse,
    reporter: Reporter | None = None,
    *,
    send_alerts: bool = True,
    checks: list[Check] | None = None,
    scope: str = "all",
) -> CheckReport:
    """Run `checks` (default: every check of the config) and alert on new failures and
    recoveries; alerts a channel could not send before go first. `scope` names the set of
    checks in the run's row (``all``; ``run-level`` after each job of `trackline run`)."""
    reporter = reporter or NullReporter()
    state = StateStore(wh, cfg.state_schema)
    state.ensure()
    report = CheckReport(uuid.uuid4().hex[:16])
    started, t0 = utcnow(), time.monotonic()
    store = ResultsStore(wh, cfg.state_schema)
    timeout = float(getattr(cfg.warehouse, "lock_timeout_seconds", 0) or 0)
    lock = pipeline_lock(cfg.state_schema, "cycle")
    with wh.lock(lock, timeout):
        # holding the cycles' lock: a cycle still `running` died (runs.failed_cycle sees it)
        for dead in state.recover_dead_runs(("cycle",), lock):
            reporter.event("warning", f"cycle {dead} ended without a word: marked killed")

        def exceptions_tables() -> None:
            for g in cfg.marts:
                if wh.table_exists(g.schema_, g.anchor.table):
                    Exceptions(wh, g.schema_, g.exceptions_table).ensure()

        wh.run_transaction(exceptions_tables)
        # failures a killed check run recorded but never alerted: they are open now, so this
        # run would count them as old; they join this run's alert instead of being lost
        unalerted = store.unalerted(state.t("runs"))
        for check in checks if checks is not None else all_checks(cfg, wh):
            result = run_one(cfg, wh, check, report.run_id, store)
            report.results.append(result)
            if result.status == "fail" and check.name in unalerted:
                new, keys = unalerted[check.name]
                if new > result.new_count:
                    result.new_count = min(new, result.failing_count) or new
                    result.new_keys = [k for k in keys if k in result.sample_keys] or keys
            if not result.failed:
                continue
            reporter.event(
                "failed" if result.blocking else "warning",
                f"check {check.name}: {result.status}"
                + (
                    f" ({result.failing_count:,} rows, {result.new_count:,} new)"
                    if result.status == "fail"
                    else ""
                )
                + (f": {result.error}" if result.error else ""),
                check=check.name,
            )
        # alert and record the run while holding the lock: a run's row is what tells the
        # next run that its failures were alerted (`ResultsStore.unalerted`)
        report.alert = compose(report.results, report.run_id)
        held = held_alerts(wh, cfg.state_schema)  # kept as they are by a run without alerts
        if send_alerts and (report.alert or any(held.values())):
            report.deliveries = deliver(report.alert, cfg.quality.alerts, reporter, held)
            held = {d.channel: list(d.held) for d in report.deliveries if d.held}
        report.seconds = time.monotonic() - t0
        failed = report.failed
        state.record_run(
            report.run_id,
            "check",
            None,
            started,
            "ok" if report.ok else "failed",
            sum(r.failing_count for r in failed),
            report.seconds,
            "; ".join(f"{r.name}: {r.status}" for r in failed if r.blocking) or None,
            {
                "checks": len(report.results),
                "failed": [r.name for r in failed],
                "new": sum(r.new_count for r in report.results),
                "alerts": {d.channel: "ok" if d.ok else d.error for d in report.deliveries},
                "held_alerts": {ch: [a.as_dict() for a in alerts] for ch, alerts in held.items()},
                "scope": scope,
            },
        )
    return report


def held_alerts(wh: Warehouse, state_schema: str) -> dict[str, list[Alert]]:
    """What the latest check run could not deliver (or, with `--no-alerts`, kept), per
    channel."""
    rows = wh.query(
        f"SELECT detail FROM {wh.t(state_schema, 'runs')} WHERE command = 'check' "
        "ORDER BY started_at DESC LIMIT 1"
    )
    if not rows or not rows[0][0]:
        return {}
    stored = json.loads(rows[0][0]).get("held_alerts") or {}
    return {ch: [Alert.from_dict(a) for a in alerts] for ch, alerts in stored.items()}


def run_level_alerts(cfg: Config, wh: Warehouse, reporter: Reporter | None = None) -> CheckReport:
    """The run-level checks (failed, slow and zero-row cycles, freshness) and their alerts:
    what `trackline run` evaluates after each job, so a failure is known at once."""
    return run_checks(cfg, wh, reporter, checks=alert_checks(cfg, wh), scope="run-level")


def run_one(
    cfg: Config, wh: Warehouse, check: Check, run_id: str, store: ResultsStore
) -> CheckResult:
    r = CheckResult(
        check.name,
        check.severity,
        sql=check.sql,
        params=check.params,
        description=check.description,
    )
    t0 = time.monotonic()
    if check.problem is None:

        def run() -> None:  # every field of `r` is set afresh if a conflict reruns it
            if check.collect is not None:
                _collected(wh, check, r, run_id)
            else:
                _materialised(cfg, wh, check, r, run_id)
            r.seconds = time.monotonic() - t0
            r.recovered = r.status == "pass" and (
                r.resolved_count > 0 or store.previous_status(check.name, run_id) == "error"
            )
            store.record(run_id, r)

        try:
            wh.run_transaction(run)
            return r
        except Exception as exc:  # a check that cannot run is an `error` result, not a crash
            r.error = f"{type(exc).__name__}: {exc}"
    else:
        r.error = check.problem
    r.status, r.failing_count, r.sample, r.sample_keys, r.new_keys = "error", 0, [], [], []
    r.seconds = time.monotonic() - t0

    def record_error() -> None:
        r.new_count = 0 if store.previous_status(check.name, run_id) == "error" else 1
        store.record(run_id, r)

    wh.run_transaction(record_error)
    return r


def _detail(check: Check, r: CheckResult) -> str:
    text = check.description or f"found by trackline check {check.name}"
    if r.sample and not check.key:
        text += " — " + ", ".join(f"{c}={v}" for c, v in zip(r.columns, r.sample[0], strict=False))
    return text[:1000]


def _materialised(cfg: Config, wh: Warehouse, check: Check, r: CheckResult, run_id: str) -> None:
    scratch = wh.temp_name("_tl_chk")
    ref = wh.t(cfg.state_schema, scratch)
    materialise(wh, ref, check.sql, check.params)
    r.columns = wh.column_names(cfg.state_schema, scratch)
    key = check.key
    if key == FIRST_COLUMN:  # a custom check without `key:`; an unnamed first column (e.g.
        # DuckDB's `count_star()`) cannot identify rows: the check then fails as a whole
        key = r.columns[0] if r.columns and IDENT_RE.match(r.columns[0]) else None
    key = key and wh.name(key)  # the result's columns as the warehouse names them
    if key is not None and key not in r.columns:
        raise ValueError(
            f"key column {key!r} is not in the check's result (columns: {', '.join(r.columns)})"
        )
    r.failing_count = int(wh.scalar(f"SELECT COUNT(*) FROM {ref}") or 0)
    if r.failing_count and check.in_flight is not None and key is not None:
        _drop_in_flight(wh, check, ref, key)
        r.failing_count = int(wh.scalar(f"SELECT COUNT(*) FROM {ref}") or 0)
    r.status = "fail" if r.failing_count else "pass"
    if r.failing_count:
        order = wh.q(key) if key else "1"
        r.sample = wh.query(f"SELECT * FROM {ref} ORDER BY {order} LIMIT {SAMPLE}")
        if key:
            i = r.columns.index(key)
            r.sample_keys = [str(row[i]) for row in r.sample]
    if check.exceptions:
        book = FailureBook(wh, *check.exceptions, run_id)
        if key:
            r.new_count, r.new_keys, r.resolved_count = book.record_keys(
                check.name, check.table, ref, key, _detail(check, r)
            )
        elif r.failing_count:
            r.new_count = int(book.record_unkeyed(check.name, check.table, _detail(check, r)))
        else:
            r.resolved_count = book.resolve_unkeyed(check.name, check.table)
    wh.execute(f"DROP TABLE {ref}")


def materialise(wh: Warehouse, ref: str, sql: str, params: tuple[Any, ...]) -> None:
    """``CREATE TABLE ref AS`` the rows of `sql`, its parameters bound.

    Redshift prepares only SELECT, INSERT, UPDATE and DELETE, so a parameter in DDL is refused
    (https://docs.aws.amazon.com/redshift/latest/dg/r_PREPARE.html). With parameters, the
    table is created empty from the query with each ``?`` a NULL of the parameter's type (the
    same columns and types), then filled by an INSERT … SELECT that binds them."""
    if not params:
        wh.execute(f"CREATE TABLE {ref} AS SELECT * FROM ({sql}) x")
        return
    wh.execute(f"CREATE TABLE {ref} AS SELECT * FROM ({wh.typed_nulls(sql, params)}) x WHERE 1 = 0")
    wh.execute(f"INSERT INTO {ref} SELECT * FROM ({sql}) x", params)


log = logging.getLogger(__name__)

IN_FLIGHT_MAX = 10_000
"""Most offending rows a check asks the source about (beyond: all are reported)."""


def _drop_in_flight(wh: Warehouse, check: Check, ref: str, key: str) -> None:
    """Remove from the materialised failures the keys `check.in_flight` says are in flight."""
    assert check.in_flight is not None
    rows = wh.query(
        f"SELECT {wh.q(key)}, anchor_time FROM {ref} ORDER BY {wh.q(key)} LIMIT {IN_FLIGHT_MAX}"
    )
    try:
        drop = sorted(check.in_flight([(r[0], r[1]) for r in rows]), key=repr)
    except TracklineError as exc:  # the source is unreachable: report every row, say why
        log.warning("%s: could not ask the source which keys are in flight: %s", check.name, exc)
        return
    for i in range(0, len(drop), 500):
        chunk = drop[i : i + 500]
        marks = ", ".join("?" * len(chunk))
        wh.execute(f"DELETE FROM {ref} WHERE {wh.q(key)} IN ({marks})", tuple(chunk))


def _collected(wh: Warehouse, check: Check, r: CheckResult, run_id: str) -> None:
    assert check.collect is not None and check.key
    rows = check.collect(wh)
    r.columns, r.failing_count = rows.columns, len(rows.rows)
    r.status = "fail" if r.failing_count else "pass"
    r.sample = rows.rows[:SAMPLE]
    ki = rows.columns.index(check.key)
    ti = rows.columns.index(check.table_column) if check.table_column else None
    r.sample_keys = [str(row[ki]) for row in r.sample]
    if check.exceptions:
        book = FailureBook(wh, *check.exceptions, run_id)
        entries = []
        for row in rows.rows:
            detail = (
                (check.description or check.name)
                + " — "
                + ", ".join(
                    f"{c}={v}"
                    for c, v in zip(rows.columns, row, strict=True)
                    if c not in (check.key, check.table_column)
                )
            )
            table = str(row[ti]) if ti is not None else check.table
            entries.append((table, None if row[ki] is None else str(row[ki]), detail[:1000]))
        r.new_count, r.new_keys, r.resolved_count = book.record_rows(check.name, entries)
