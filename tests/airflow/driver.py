"""Runs INSIDE the Airflow test virtualenv (never imported by the main suite's venv).

    python driver.py STEPS_JSON

Each step is one Airflow operation on the DAG folder of ``$AIRFLOW__CORE__DAGS_FOLDER``
(prepared by tests/integration/test_airflow.py); the result of every step is printed as one
JSON list on the last line of stdout. Steps:

    {"op": "import_errors"}               `airflow dags reserialize`, then
                                          `airflow dags list-import-errors -o json`
    {"op": "pools", "pools": {name: n}}   `airflow pools set NAME N` for each
    {"op": "dag_ids"}                     the ids of the DAGs the folder defines
    {"op": "graph", "dag": ID}            the DAG object as data (tasks, edges, settings)
    {"op": "test", "dag": ID}             `dag.test()`: every task's state and try count
    {"op": "test", "dag": ID, "conf": {}} the same, with that run conf
    {"op": "test", "dag": ID, "pause": {"at": STEP, "ready": FILE, "go": FILE}}
                                          the same, but the first time a sync reaches the
                                          checkpoint STEP (e.g. ``sync.after_commit``: its
                                          table's lock held, a batch committed) this process
                                          creates FILE ``ready`` and waits there until FILE
                                          ``go`` exists: another run is forced to overlap it
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import Any


def _cli(*argv: str) -> str:
    """An `airflow …` command, in this process (no second interpreter start), its stdout."""
    from airflow.cli.cli_parser import get_parser

    args = get_parser().parse_args(list(argv))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            args.func(args)
        except SystemExit as exc:  # `dags reserialize` exits 1 when a file fails to import
            if exc.code not in (0, 1, None):
                raise
    return out.getvalue()


def _dags() -> dict[str, Any]:
    import os

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    return bag.dags


def import_errors() -> Any:
    _cli("dags", "reserialize")
    text = _cli("dags", "list-import-errors", "-o", "json")
    start = text.index("[")
    return json.loads(text[start : text.rindex("]") + 1])


def pools(spec: dict[str, int]) -> Any:
    for name, slots in spec.items():
        _cli("pools", "set", name, str(slots), f"trackline test pool {name}")
    return sorted(spec)


def graph(dag_id: str) -> Any:
    dag = _dags()[dag_id]
    tasks = {}
    for t in dag.tasks:
        timeout = t.execution_timeout.total_seconds() if t.execution_timeout else None
        tasks[t.task_id] = {
            "upstream": sorted(t.upstream_task_ids),
            "downstream": sorted(t.downstream_task_ids),
            "pool": t.pool,
            "trigger_rule": str(
                t.trigger_rule.value if hasattr(t.trigger_rule, "value") else t.trigger_rule
            ),
            "retries": t.retries,
            "retry_exponential_backoff": float(t.retry_exponential_backoff),
            "execution_timeout": timeout,
            "mapped": type(t).__name__ == "MappedOperator",
            "max_active_tis_per_dagrun": getattr(t, "max_active_tis_per_dagrun", None),
        }
    return {
        "dag_id": dag.dag_id,
        "max_active_runs": dag.max_active_runs,
        "catchup": dag.catchup,
        "schedule": None if dag.schedule is None else str(dag.schedule),
        "tasks": tasks,
    }


def _pause(at: str, ready: str, go: str, timeout: float = 240) -> None:
    """Hold the first sync that reaches checkpoint `at` until the file `go` exists."""
    import time
    from pathlib import Path

    import trackline.sync.syncer as syncer

    real = syncer.checkpoint
    held: list[str] = []

    def checkpoint(step: str) -> None:
        real(step)
        if step != at or held:
            return
        held.append(step)
        Path(ready).touch()
        deadline = time.monotonic() + timeout
        while not Path(go).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"paused at {at}: {go} did not appear in {timeout:.0f}s")
            time.sleep(0.05)

    syncer.checkpoint = checkpoint  # type: ignore[assignment]


def test(
    dag_id: str, pause: dict[str, str] | None = None, conf: dict[str, Any] | None = None
) -> Any:
    dag = _dags()[dag_id]
    if pause:
        _pause(pause["at"], pause["ready"], pause["go"])
    dr = dag.test(run_conf=conf) if conf else dag.test()
    from airflow.utils.session import create_session

    with create_session() as session:
        from airflow.models.taskinstance import TaskInstance

        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == dr.run_id
        )
        states = {  # a mapped task's instances as TASK[MAP_INDEX]
            ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): [
                str(ti.state),
                ti.try_number,
            ]
            for ti in tis
        }
    return {"state": str(dr.state), "run_id": dr.run_id, "tasks": states}


def main() -> None:
    import time

    steps = json.loads(sys.argv[1])
    out = []
    t0 = time.monotonic()
    for step in steps:
        print(f"DRIVER {time.monotonic() - t0:.1f}s: {step}", file=sys.stderr, flush=True)
        op = step["op"]
        if op == "import_errors":
            out.append(import_errors())
        elif op == "pools":
            out.append(pools(step["pools"]))
        elif op == "dag_ids":
            out.append(sorted(_dags()))
        elif op == "graph":
            out.append(graph(step["dag"]))
        elif op == "test":
            out.append(test(step["dag"], step.get("pause"), step.get("conf")))
        else:
            raise SystemExit(f"unknown step {op!r}")
    print(f"DRIVER {time.monotonic() - t0:.1f}s: done", file=sys.stderr, flush=True)
    sys.stdout.write("\n" + json.dumps(out, default=str) + "\n")


if __name__ == "__main__":
    main()
