"""Fixtures of the integration tests that drive a real Airflow (test_airflow*.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.airflow.venv import LOCK_FILE_2_10, ensure_venv


def _venv(build: Callable[[], Path], what: str) -> Path:
    try:
        return build()
    except Exception as exc:  # no registry, no disk: a skip here, a failure under CI
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"the {what} could not be built: {exc}")
        pytest.skip(f"the {what} could not be built: {exc}")


@pytest.fixture(scope="session")
def airflow_venv() -> Path:
    return _venv(ensure_venv, "Airflow test venv")


@pytest.fixture(scope="session")
def airflow_2_10_venv() -> Path:
    """Airflow 2.10 (no metadata database: the DAGs are only parsed there)."""
    return _venv(lambda: ensure_venv(LOCK_FILE_2_10, migrate=False), "Airflow 2.10 venv")
