"""Build the Airflow DAGs of one trackline config (imports Airflow; see the package docstring)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trackline.airflow.tasks as tasks
from trackline.config import Config, load_config
from trackline.errors import ConfigError, InjectedFault, LockBusy, TracklineError

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
"""Every DAG's start date: with ``catchup=False`` only the latest interval ever runs."""


def _airflow() -> dict[str, Any]:
    """Airflow's classes, from Airflow 3's task SDK (or Airflow 2.10's modules), and the
    `retry_exponential_backoff` that doubles the delay: Airflow 3 takes the multiplier,
    Airflow 2.10 a flag (its base is 2) and refuses a float."""
    backoff: float | bool = 2.0
    try:
        from airflow.sdk import DAG
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        try:
            from airflow.providers.standard.operators.python import PythonOperator
        except ImportError:  # pragma: no cover - Airflow 3 always ships the standard provider
            from airflow.operators.python import PythonOperator
    except ImportError:
        try:  # Airflow 2.10
            from airflow import DAG  # type: ignore[no-redef]
            from airflow.exceptions import (  # type: ignore[no-redef]
                AirflowFailException,
                AirflowSkipException,
            )
            from airflow.operators.python import PythonOperator  # type: ignore[no-redef]

            backoff = True
        except ImportError:
            raise ConfigError(
                "trackline.airflow needs Apache Airflow: pip install 'trackline[airflow]'"
            ) from None
    return {
        "DAG": DAG,
        "PythonOperator": PythonOperator,
        "Fail": AirflowFailException,
        "Skip": AirflowSkipException,
        "backoff": backoff,
    }


def _connection(conn_id: str) -> dict[str, Any] | None:
    """An Airflow connection's fields (`trackline.config.airflow_conns.ConnectionLookup`), or
    None when it is not defined; read in the task only (Airflow's secrets backends, then its
    metadata database: an ``AIRFLOW_CONN_<ID>`` environment variable, URI or JSON, works).
    Airflow masks the password in the task's log once it is read."""
    try:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:  # Airflow 2.10
        from airflow.exceptions import AirflowNotFoundException  # type: ignore[no-redef]
        from airflow.hooks.base import BaseHook  # type: ignore[no-redef]

    try:
        c = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    except (ValueError, TypeError) as exc:  # a malformed definition: its text may hold secrets
        raise ConfigError(
            f"the Airflow connection {conn_id!r} cannot be read: {type(exc).__name__} "
            "(check its definition)"
        ) from None
    return {
        "host": c.host,
        "port": c.port,
        "login": c.login,
        "password": c.password,
        "schema": c.schema,
        "extra": c.extra_dejson,
    }


def pipeline_name(cfg: Config) -> str:
    """The DAG ids' prefix: the config's state schema (each pipeline sharing a warehouse has
    its own), e.g. ``trackline_cycle``."""
    return cfg.state_schema


def pools(path: str | Path) -> dict[str, int]:
    """The Airflow pools the cycle DAG's sync tasks use, one per source, with the number of
    tables a source serves at once (`defaults.workers`). Create them before the first run::

        airflow pools set trackline_kuaisong 2 "trackline: kuaisong"
    """
    cfg = load_config(path, connections="defer")
    return {_pool(cfg, s): cfg.defaults.workers for s in cfg.sources}


def _pool(cfg: Config, source: str) -> str:
    return f"{pipeline_name(cfg)}_{source}"


def dags_from_config(path: str | Path, *, name: str | None = None) -> dict[str, Any]:
    """{dag_id: DAG} for the config at `path`: ``<pipeline>_cycle``, ``<pipeline>_checks``,
    ``<pipeline>_maintenance``, ``<pipeline>_consolidate`` when consolidations exist, and
    ``<pipeline>_backfill`` (manual trigger only) when `backfill.tables` is not empty.
    `name` replaces the pipeline name (default: the config's `state_schema`)."""
    af = _airflow()
    path = str(Path(path).resolve())
    cfg = load_config(path, connections="defer")  # the tasks read the Airflow connections
    prefix = name or pipeline_name(cfg)
    s = cfg.schedule
    default_args: dict[str, Any] = {
        "owner": "trackline",
        "retries": s.task_retries,
        "retry_delay": dt.timedelta(seconds=s.retry_delay_seconds),
        "retry_exponential_backoff": af["backoff"],
        "max_retry_delay": dt.timedelta(seconds=max(s.retry_delay_seconds, 1800)),
        "execution_timeout": (
            dt.timedelta(minutes=s.job_timeout_minutes) if s.job_timeout_minutes else None
        ),
    }

    def dag(suffix: str, schedule: Any, doc: str) -> Any:
        return af["DAG"](
            dag_id=f"{prefix}_{suffix}",
            schedule=schedule,
            start_date=START,
            catchup=False,
            max_active_runs=1,
            default_args=default_args,
            tags=["trackline"],
            doc_md=doc,
        )

    def op(d: Any, task_id: str, fn: Callable[..., Any], **kw: Any) -> Any:
        return af["PythonOperator"](task_id=task_id, python_callable=_outcomes(af, fn), dag=d, **kw)

    out: dict[str, Any] = {}
    cycle = dag(
        "cycle",
        dt.timedelta(minutes=s.cycle_minutes),
        "Sync every table (in parallel, a pool per source), then per retention group the "
        "anchor mart, then its followers, then trim the raw buffers.",
    )
    syncs = []
    by_table: dict[str, Any] = {}
    for t in cfg.tables:
        source, _ = cfg.source_for(t)
        by_table[t.name] = op(
            cycle, f"sync_{t.name}", _sync_task(path, t.name), pool=_pool(cfg, source)
        )
        syncs.append(by_table[t.name])
    for t in cfg.tables:  # a following table (cdc.follow) reads its driver's new batches
        if t.cdc.follow and t.cdc.follow in by_table:
            by_table[t.cdc.follow] >> by_table[t.name]
    finish = op(cycle, "trim_raw", _finish_task(path))
    ids = {f"sync_{t.name}" for t in cfg.tables} | {"trim_raw"}
    last: Any = None  # the mart task before the next one: every mart task holds the cycle lock
    for g in cfg.marts:
        for mart in (g.anchor.table, *(f.table for f in g.followers)):
            if mart in ids:
                raise ConfigError(f"marts: {mart!r} names two tasks of the cycle DAG; rename one")
            ids.add(mart)
        # the marts build over whatever the syncs committed, as `trackline cycle` does, even
        # when a table failed (the run still ends failed) or was skipped (its lock was held)
        anchor = op(
            cycle,
            g.anchor.table,
            lambda path=path, group=g.name: tasks.build_anchor(path, group),
            trigger_rule="all_done",
        )
        syncs >> anchor  # type: ignore[operator]
        if last is not None:  # a second retention group after the first one's marts
            last >> anchor
        followers = [
            op(
                cycle,
                f.table,
                lambda path=path, group=g.name, table=f.table: tasks.build_follower(
                    path, group, table
                ),
            )
            for f in g.followers
        ]
        # one follower after the other, in the config's order (as `trackline cycle`): each
        # holds the pipeline's cycle lock while it runs, so two side by side would leave the
        # second skipped (lock busy), and `trim_raw` after it, in every run
        last = anchor
        for f_op in followers:
            last >> f_op
            last = f_op
    if last is not None:
        last >> finish
    else:
        syncs >> finish  # type: ignore[operator]
    out[cycle.dag_id] = cycle

    if cfg.consolidations:
        d = dag(
            "consolidate",
            dt.timedelta(minutes=s.consolidation_minutes),
            "Every `consolidations:` entry (`trackline consolidate`).",
        )
        op(d, "consolidate", lambda path=path: tasks.consolidate_all(path))
        out[d.dag_id] = d
    d = dag(
        "checks",
        f"0 {s.checks_hour} * * *",
        "`trackline check`: a blocking failure fails the task (alerts are sent first).",
    )
    op(d, "checks", lambda path=path: tasks.run_checks(path))
    out[d.dag_id] = d
    d = dag(
        "maintenance",
        f"0 {s.maintenance_hour} * * *",
        "VACUUM / ANALYZE where the engine says it is needed; processed staging rows purged.",
    )
    op(d, "maintenance", lambda path=path: tasks.maintenance(path))
    out[d.dag_id] = d
    if cfg.backfill.tables:
        d = _backfill_dag(af, cfg, path, dag("backfill", None, _BACKFILL_DOC))
        out[d.dag_id] = d
    return out


_BACKFILL_DOC = """\
`trackline backfill run`, then `trackline backfill handoff`; trigger it by hand (optional
run conf: `{"start": "2025-01", "end": "2025-07", "chunk": "month", "force": false}`).
Per table, `plan_<table>` starts its backfill (its chunks and handoff point recorded), then
`chunks_<table>` has one mapped instance per chunk, one at a time, in the pool of the legacy
source; tables side by side. `handoff` once every chunk is in."""


def _backfill_dag(af: dict[str, Any], cfg: Config, path: str, d: Any) -> Any:
    """Per table ``plan_<table>`` → ``chunks_<table>`` (mapped: one instance per chunk); all of
    them → ``handoff``.

    Airflow maps a task only over another task's return value, so each table has its own plan
    task (one plan task for all tables could not feed one mapped task per table), and one
    mapped task per table keeps a table's chunks apart from the others': tables run side by
    side (in the pool of their legacy source), a table's instances one at a time
    (``max_active_tis_per_dagrun=1``). Airflow does not order a mapped task's instances, so
    each instance also loads any earlier chunk of its table not done yet (the ledger
    decides): rows go in in time order, as with `trackline backfill run`, whatever order the
    instances start (or are retried) in."""
    ids = {"handoff"}
    handoff = af["PythonOperator"](
        task_id="handoff",
        python_callable=_outcomes(af, lambda: tasks.backfill_handoff(path)),
        dag=d,
    )
    for b in cfg.backfill.tables:
        pool = _pool(cfg, b.source or cfg.backfill.source)
        plan_id, chunks_id = f"plan_{b.table}", f"chunks_{b.table}"
        if {plan_id, chunks_id} & ids:
            raise ConfigError(f"backfill: {b.table!r} names two tasks of the backfill DAG")
        ids |= {plan_id, chunks_id}

        def plan(table: str = b.table, **context: Any) -> list[dict[str, Any]]:
            conf = dict(getattr(context.get("dag_run"), "conf", None) or {})
            unknown = set(conf) - {"start", "end", "chunk", "force"}
            if unknown:
                raise ConfigError(
                    f"backfill DAG run conf: unknown key(s) {sorted(unknown)} "
                    "(known: start, end, chunk, force)"
                )
            return tasks.backfill_start(
                path,
                table,
                start=conf.get("start"),
                end=conf.get("end"),
                unit=conf.get("chunk"),
                force=bool(conf.get("force", False)),
            )

        def chunk(**context: Any) -> dict[str, Any]:
            return tasks.backfill_chunk(
                path,
                context["table"],
                int(context["chunk"]),
                context["start"],
                context["end"],
                context["unit"],
            )

        plan_op = af["PythonOperator"](
            task_id=plan_id, python_callable=_outcomes(af, plan), dag=d, pool=pool
        )
        mapped = (
            af["PythonOperator"]
            .partial(
                task_id=chunks_id,
                python_callable=_outcomes(af, chunk),
                dag=d,
                pool=pool,
                max_active_tis_per_dagrun=1,
            )
            .expand(op_kwargs=plan_op.output)
        )
        plan_op >> mapped >> handoff
    return d


def _sync_task(path: str, table: str) -> Callable[..., Any]:
    def run(**context: Any) -> dict[str, Any]:
        dr = context["dag_run"]
        return tasks.sync_table(path, table, tasks.cycle_run_id(dr.dag_id, dr.run_id))

    return run


def _finish_task(path: str) -> Callable[..., Any]:
    def run(**context: Any) -> dict[str, Any]:
        dr = context["dag_run"]
        started = dr.start_date or dt.datetime.now(dt.UTC)
        return tasks.finish_cycle(path, tasks.cycle_run_id(dr.dag_id, dr.run_id), started)

    return run


def _outcomes(af: dict[str, Any], fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with the config's Airflow connections readable, and trackline's errors as
    Airflow outcomes: a held lock skips the task (another run is doing that work, or held
    the pipeline's cycle lock past `schedule.lock_wait_seconds`: no failure storm); a
    transient error (a serialization conflict, a lost connection, a killed step) is raised
    for Airflow to retry with backoff; any other error fails the task at once, with no retry
    (bad config, a missing Airflow connection, a blocking check, schema refused)."""

    def run(**context: Any) -> Any:
        try:
            with tasks.reading_connections(_connection):
                return fn(**context) if _takes_context(fn) else fn()
        except LockBusy as exc:
            raise af["Skip"](f"skipped: {exc}") from exc
        except InjectedFault:
            raise  # stands for a worker that died: Airflow retries such a task
        except TracklineError as exc:
            if exc.retryable:
                raise
            raise af["Fail"](str(exc)) from exc

    return run


def _takes_context(fn: Callable[..., Any]) -> bool:
    import inspect

    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(fn).parameters.values()
    )
