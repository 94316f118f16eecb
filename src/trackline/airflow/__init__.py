"""The same jobs as `trackline run`, as Apache Airflow DAGs built from the same config.

A DAG file of three lines is enough::

    from trackline.airflow import dags_from_config

    globals().update(dags_from_config("/etc/trackline/trackline.yml"))

DAGs (``<pipeline>`` is the config's `state_schema`, ``trackline`` by default):

    <pipeline>_cycle        every schedule.cycle_minutes
        sync_<table> …      one task per table, in parallel, each in the pool of its source
                            (``<pipeline>_<source>``: create it with `airflow pools set`)
        <anchor mart>       per retention group, once every sync has finished
        <follower marts>    after their anchor
        trim_raw            trims the raw buffers, records the cycle's run
    <pipeline>_consolidate  every schedule.consolidation_minutes, when consolidations exist
    <pipeline>_checks       daily at schedule.checks_hour; a blocking failure fails the task
    <pipeline>_maintenance  daily at schedule.maintenance_hour
    <pipeline>_backfill     manual trigger only, when the config has `backfill.tables`
        plan_<table>        starts the table's backfill (chunks, handoff point recorded)
        chunks_<table>      mapped: one instance per chunk, one at a time, tables in
                            parallel (the pool of the legacy source)
        handoff             `trackline backfill handoff`, once every chunk is in

Every DAG: ``max_active_runs=1``, ``catchup=False``; tasks time out after
schedule.job_timeout_minutes; schedule.task_retries retries with exponential backoff from
schedule.retry_delay_seconds, for transient errors only. A sync task whose table another run
is syncing waits up to warehouse.lock_timeout_seconds, then is skipped; the tasks that take
the pipeline's cycle lock (the marts, trim_raw, consolidate, checks) wait for one another up
to schedule.lock_wait_seconds (by default half the task time limit), and are skipped only
when that runs out. Tasks call trackline's Python API (`trackline.airflow.tasks`). Secrets
come from the Airflow connections the config names (``airflow_conn_id:``, read by each task
with ``BaseHook.get_connection``; never while the DAGs are parsed) or from the environment
(``${VAR}``). Tested with Airflow 3; with Airflow 2.10 only the DAG parsing is tested.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path


def dags_from_config(path: str | Path, *, name: str | None = None) -> dict[str, Any]:
    """{dag_id: DAG} for the config at `path` (see the module docstring)."""
    from trackline.airflow.dags import dags_from_config as build

    return build(path, name=name)


def pools(path: str | Path) -> dict[str, int]:
    """The pools the cycle's sync tasks use: {pool name: slots}."""
    from trackline.airflow.dags import pools as build

    return build(path)


__all__ = ["dags_from_config", "pools"]
