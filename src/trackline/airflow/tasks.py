"""What each Airflow task runs: plain functions of trackline's Python API (no Airflow import).

Every function loads the config file, opens its own warehouse connection, does one step and
closes: tasks may run in different processes or on different machines, and everything they
share lives in the warehouse (watermarks, ledger, locks, run history) and the stage. Errors
are trackline's (`LockBusy`, `RetryableWarehouseError`, …); `trackline.airflow.dags` maps them
to Airflow's outcomes. Each returns a small JSON-able dict (the task's XCom).

The config's ``airflow_conn_id`` keys are read through the lookup `reading_connections`
installs (`trackline.airflow.dags` installs Airflow's around each task); without one, a
config naming a connection is refused (`trackline.config.airflow_conns`).

The steps that take the pipeline's ``cycle`` lock (the marts, `finish_cycle`,
`consolidate_all`, `run_checks`) wait for it up to `schedule.lock_wait_seconds` (by default
half the task time limit) instead of `warehouse.lock_timeout_seconds`: two of them meeting
(a consolidation and a cycle's marts start on the same minute) run one after the other; only
a wait that runs out skips the later one.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from trackline.config import Config, load_config
from trackline.config.airflow_conns import ConnectionLookup
from trackline.errors import TracklineError
from trackline.load import Warehouse, open_warehouse
from trackline.stage import Stage

T = TypeVar("T")


class TaskFailed(TracklineError):
    """A step finished but reports a failure (a table that failed to sync, a blocking check)."""


class RetryableTaskFailed(TaskFailed):
    retryable = True


def cycle_run_id(dag_id: str, run_id: str) -> str:
    """trackline's run id (16 hex digits, as `trackline cycle` makes) for one DAG run: every
    task of the run derives the same one, on whichever worker it runs."""
    return hashlib.sha256(f"{dag_id}\0{run_id}".encode()).hexdigest()[:16]


_CONNECTIONS: contextvars.ContextVar[ConnectionLookup | None] = contextvars.ContextVar(
    "trackline_airflow_connections", default=None
)


@contextmanager
def reading_connections(lookup: ConnectionLookup) -> Iterator[None]:
    """Within the block, configs are loaded with `lookup` reading their ``airflow_conn_id``
    connections."""
    token = _CONNECTIONS.set(lookup)
    try:
        yield
    finally:
        _CONNECTIONS.reset(token)


def load(path: str | Path) -> Config:
    """The config file, its Airflow connections read (when a lookup is installed)."""
    return load_config(path, connections=_CONNECTIONS.get())


def waiting_for_cycle_lock(cfg: Config) -> Config:
    """`cfg` with `warehouse.lock_timeout_seconds` set to `schedule.lock_wait_seconds`: for the
    steps that take the pipeline's ``cycle`` lock, which wait for one another."""
    wait = cfg.schedule.lock_wait()
    return cfg.model_copy(
        update={"warehouse": cfg.warehouse.model_copy(update={"lock_timeout_seconds": wait})}
    )


@contextmanager
def warehouse(cfg: Config) -> Iterator[Warehouse]:
    wh = open_warehouse(cfg.warehouse, stage=Stage(cfg.stage))
    wh.connect()
    try:
        yield wh
    finally:
        wh.close()


def _with(
    path: str | Path, step: Callable[[Config, Warehouse], T], *, cycle_lock: bool = False
) -> T:
    cfg = load(path)
    if cycle_lock:
        cfg = waiting_for_cycle_lock(cfg)
    with warehouse(cfg) as wh:
        return step(cfg, wh)


def sync_table(path: str | Path, table: str, run_id: str) -> dict[str, Any]:
    """One table of the cycle `run_id`. Raises `LockBusy` when another run holds the table's
    lock past `warehouse.lock_timeout_seconds`, `TaskFailed` when the table failed."""
    from trackline.marts.cycle import sync_step

    def step(cfg: Config, wh: Warehouse) -> dict[str, Any]:
        r = sync_step(cfg, wh, table, run_id)
        if r.status != "ok":
            kind = RetryableTaskFailed if r.retryable else TaskFailed
            raise kind(f"table {table!r}: {r.error}")
        return {"table": r.table_key, "rows": r.rows, "batches": r.batches, "cursor": r.watermark}

    return _with(path, step)


def build_anchor(path: str | Path, group: str) -> dict[str, Any]:
    from trackline.marts.cycle import anchor_step

    def step(cfg: Config, wh: Warehouse) -> dict[str, Any]:
        s = anchor_step(cfg, wh, group)
        return {} if s is None else {"mart": s.mart, "rows_in": s.rows_in, "inserted": s.inserted}

    return _with(path, step, cycle_lock=True)


def build_follower(path: str | Path, group: str, follower: str) -> dict[str, Any]:
    from trackline.marts.cycle import follower_step

    def step(cfg: Config, wh: Warehouse) -> dict[str, Any]:
        s = follower_step(cfg, wh, group, follower)
        return {} if s is None else {"mart": s.mart, "rows_in": s.rows_in, "inserted": s.inserted}

    return _with(path, step, cycle_lock=True)


def finish_cycle(path: str | Path, run_id: str, started: dt.datetime) -> dict[str, Any]:
    """Trim raw and record the cycle's run (`trackline.marts.cycle.finish_step`)."""
    from trackline.marts.cycle import finish_step

    def step(cfg: Config, wh: Warehouse) -> dict[str, Any]:
        if started.tzinfo is not None:  # trackline's run history is naive UTC
            naive = started.astimezone(dt.UTC).replace(tzinfo=None)
        else:
            naive = started
        s = finish_step(cfg, wh, run_id, naive)
        return {
            "run_id": s.run_id,
            "raw_trimmed": s.raw_trimmed,
            "rows": sum(r.rows for r in s.sync),
        }

    return _with(path, step, cycle_lock=True)


def consolidate_all(path: str | Path) -> dict[str, Any]:
    """Every `consolidations:` entry (`trackline consolidate`)."""
    from trackline.schedule import consolidate_job

    return _job(path, consolidate_job, cycle_lock=True)


def run_checks(path: str | Path) -> dict[str, Any]:
    """`trackline check`: `TaskFailed` when a blocking check failed (its alerts are sent
    first, as `trackline check` sends them)."""
    from trackline.schedule import checks_job

    return _job(path, checks_job, cycle_lock=True)


def maintenance(path: str | Path) -> dict[str, Any]:
    """VACUUM / ANALYZE where the engine says it is needed; purge processed staging rows."""
    from trackline.schedule import maintenance_job

    return _job(path, maintenance_job)


def _job(path: str | Path, job: Callable[..., Any], *, cycle_lock: bool = False) -> dict[str, Any]:
    from trackline.report import NullReporter

    def step(cfg: Config, wh: Warehouse) -> dict[str, Any]:
        res = job(cfg, wh, NullReporter())
        if res.status != "ok":
            raise TaskFailed(res.error or res.status)
        return {"rows": res.rows, **res.detail}

    return _with(path, step, cycle_lock=cycle_lock)


def backfill_start(
    path: str | Path,
    table: str,
    *,
    start: str | None = None,
    end: str | None = None,
    unit: str | None = None,
    force: bool = False,
) -> list[dict[str, Any]]:
    """A table's first task in the backfill DAG: start its backfill as `trackline backfill
    run` starts it (its range and chunks planned, its handoff point recorded, its raw target
    created; a backfill started before is resumed), loading nothing. Returns one dict per
    chunk (the keyword arguments of `backfill_chunk`), with the range resolved so every chunk
    task works on the same backfill."""
    from trackline.backfill.chunks import parse_when
    from trackline.backfill.run import run

    cfg = load(path)
    (r,) = run(
        cfg,
        [table],
        start=parse_when("start", start) if start else None,
        end=parse_when("end", end) if end else None,
        unit=unit,  # type: ignore[arg-type]
        force=force,
        through=0,
    )
    _raise_failed([r])
    assert r.start is not None and r.end is not None
    return [
        {
            "table": table,
            "chunk": n,
            "start": r.start.isoformat(),
            "end": r.end.isoformat(),
            "unit": r.unit,
        }
        for n in range(1, r.chunks + 1)
    ]


def backfill_chunk(
    path: str | Path, table: str, chunk: int, start: str, end: str, unit: str
) -> dict[str, Any]:
    """Chunk `chunk` of `table`'s backfill [start, end) by `unit`, through `trackline backfill
    run`'s own chunk path (one transaction, the ledger, the count check, its retries of a
    count that differs). A chunk already done is skipped; an earlier chunk of the table not
    done yet is loaded first, so a table's rows go in in time order whatever order the
    chunk tasks start in."""
    from trackline.backfill.run import run

    cfg = load(path)
    (r,) = run(
        cfg,
        [table],
        start=dt.datetime.fromisoformat(start),
        end=dt.datetime.fromisoformat(end),
        unit=unit,  # type: ignore[arg-type]
        through=chunk,
    )
    _raise_failed([r])
    return {
        "table": r.key,
        "chunk": chunk,
        "loaded": r.loaded,
        "skipped": r.skipped,
        "rows": r.rows,
    }


def backfill_handoff(path: str | Path) -> dict[str, Any]:
    """`trackline backfill handoff`: each table's incremental watermark set to its backfill's
    handoff point (refused while a chunk is not done)."""
    from trackline.backfill.handoff import handoff

    def step(cfg: Config, wh: Warehouse) -> dict[str, Any]:
        return {h.table: {"status": h.status, "point": str(h.point)} for h in handoff(cfg, wh)}

    return _with(path, step)


def _raise_failed(res: list[Any]) -> None:
    failed = [r for r in res if r.status != "ok"]
    if failed:
        kind = RetryableTaskFailed if all(r.retryable for r in failed) else TaskFailed
        raise kind("; ".join(f"backfill of {r.table!r}: {r.error or r.status}" for r in failed))
