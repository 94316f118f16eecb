"""Fixtures of the integration tests that drive a real Airflow (test_airflow*.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.airflow.venv import ensure_venv


@pytest.fixture(scope="session")
def airflow_venv() -> Path:
    try:
        return ensure_venv()
    except Exception as exc:  # no registry, no disk: a skip here, a failure under CI
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"the Airflow test venv could not be built: {exc}")
        pytest.skip(f"the Airflow test venv could not be built: {exc}")
