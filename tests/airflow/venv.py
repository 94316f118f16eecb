"""The Airflow test virtualenv: built once from tests/airflow/requirements.lock, then reused.

It lives in ``~/.cache/trackline-airflow-venv/<hash>`` (``$TRACKLINE_AIRFLOW_VENV_CACHE``
instead of the first part), where ``<hash>`` is that of the lock file and the Python version:
a changed lock builds a new one. Airflow stays out of the main venv (trackline does not
depend on it); trackline itself is not installed there: the tests put the checkout's
``src`` first on ``PYTHONPATH``, so the venv serves every checkout. Building it also migrates
an Airflow metadata database once (``airflow-template.db``); each test copies it.

Concurrent test workers wait for one another (a file lock); a build that fails leaves no
``.ready`` marker, so the next run builds again.

``ensure_venv(LOCK_FILE_2_10, migrate=False)`` builds the Airflow 2.10 venv of the DAG-parse
check the same way (from tests/airflow/requirements-2.10.lock), without a metadata database.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

LOCK_FILE = Path(__file__).with_name("requirements.lock")
LOCK_FILE_2_10 = Path(__file__).with_name("requirements-2.10.lock")
INSTALL_TIMEOUT = 1200


def cache_root() -> Path:
    env = os.environ.get("TRACKLINE_AIRFLOW_VENV_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "trackline-airflow-venv"


def venv_key(lock: Path = LOCK_FILE) -> str:
    h = hashlib.sha256(lock.read_bytes())
    h.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return h.hexdigest()[:16]


def venv_dir(lock: Path = LOCK_FILE) -> Path:
    return cache_root() / venv_key(lock)


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    res = subprocess.run(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    if res.returncode != 0:
        tail = (res.stdout + res.stderr)[-3000:]
        raise RuntimeError(f"{' '.join(cmd[:4])} … failed ({res.returncode}):\n{tail}")


def ensure_venv(lock: Path = LOCK_FILE, *, migrate: bool = True) -> Path:
    """The ready venv of `lock` (built now if missing), with a migrated Airflow metadata
    database when `migrate`. Raises RuntimeError when the build fails."""
    root = venv_dir(lock)
    ready = root / ".ready"
    if ready.exists():
        return root
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / f"{venv_key(lock)}.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # another test worker may be building it
        if ready.exists():
            return root
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.monotonic()
        base = getattr(sys, "_base_executable", sys.executable)
        _run([base, "-m", "venv", str(root)])
        py = str(root / "bin" / "python")
        # every package pinned (a full freeze): no resolver run, the same set every time
        _run([py, "-m", "pip", "install", "--quiet", "--no-deps", "-r", str(lock)])
        if migrate:
            home = root / "home"
            home.mkdir()
            env = {
                **os.environ,
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            }
            _run([str(root / "bin" / "airflow"), "db", "migrate"], env)
            shutil.copy(home / "airflow.db", root / "airflow-template.db")
        seconds = time.monotonic() - t0
        ready.write_text(f"built in {seconds:.0f} s\n")
        print(f"Airflow test venv built in {seconds:.0f} s: {root}", file=sys.stderr)
    return root
