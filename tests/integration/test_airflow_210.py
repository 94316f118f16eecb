"""Airflow 2.10 parses the DAGs (the DAG factory's Airflow 2 imports and arguments): the
example config and a broken one, in a DagBag of Airflow 2.10 in its own cached virtualenv
(tests/airflow/requirements-2.10.lock). Only parsing: no task runs under 2.10 (the runs are
tested with Airflow 3 in test_airflow.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.integration.test_airflow import DAG_FILE, EXAMPLE, ROOT
from trackline.config import load_config

PARSE = """\
import json, os
from airflow.models.dagbag import DagBag

bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"], include_examples=False)
dags = {
    dag_id: {
        t.task_id: [sorted(t.upstream_task_ids), t.retries, t.retry_exponential_backoff]
        for t in dag.tasks
    }
    for dag_id, dag in bag.dags.items()
}
errors = {os.path.basename(f): e for f, e in bag.import_errors.items()}
print(json.dumps({"dags": dags, "errors": errors}))
"""


def test_airflow_2_10_parses_the_dags(airflow_2_10_venv: Path, tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    line = (
        "from trackline.airflow import dags_from_config\n\nglobals().update(dags_from_config({!r}))"
    )
    (dags / "trackline_dags.py").write_text(line.format(str(EXAMPLE)))
    broken = tmp_path / "broken.yml"
    broken.write_text(EXAMPLE.read_text().replace("  - name: ", "  - nme: ", 1))
    (dags / "broken_dags.py").write_text(DAG_FILE.format(path=str(broken), extra=""))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(ROOT / "src"),
    }
    proc = subprocess.run(
        [str(airflow_2_10_venv / "bin" / "python"), "-c", PARSE],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(out["errors"]) == ["broken_dags.py"], out["errors"]
    assert "tables[0].nme: unknown key" in out["errors"]["broken_dags.py"]

    cfg = load_config(EXAMPLE)
    assert sorted(out["dags"]) == sorted(
        f"trackline_{d}" for d in ("cycle", "checks", "maintenance", "consolidate", "backfill")
    )
    cycle = out["dags"]["trackline_cycle"]
    g = cfg.marts[0]
    syncs = sorted(f"sync_{t.name}" for t in cfg.tables)
    followers = [f.table for f in g.followers]
    assert set(cycle) == {*syncs, g.anchor.table, *followers, "trim_raw"}
    assert cycle[g.anchor.table][0] == syncs
    chain = [g.anchor.table, *followers, "trim_raw"]
    for before, after in zip(chain, chain[1:], strict=False):
        assert cycle[after][0] == [before]
    for _, retries, backoff in cycle.values():  # Airflow 2.10's backoff is a flag
        assert retries == cfg.schedule.task_retries and backoff is True
    backfill = out["dags"]["trackline_backfill"]
    plans = [f"plan_{b.table}" for b in cfg.backfill.tables]
    assert backfill["handoff"][0] == sorted(f"chunks_{b.table}" for b in cfg.backfill.tables)
    assert all(backfill[p][0] == [] for p in plans)
