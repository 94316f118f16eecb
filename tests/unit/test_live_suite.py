"""The live Redshift suite is skipped here (no cluster), but it must import and collect: with
its variables set (to values nothing connects to at import), the module loads and holds the
scenario test, whose code runs in compat mode in tests/integration/test_redshift_scenario.py."""

from __future__ import annotations

import importlib
import sys

import pytest


def test_the_live_module_imports_and_collects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKLINE_REDSHIFT_DSN", "host=cluster.invalid port=5439 user=u dbname=dev")
    monkeypatch.setenv("TRACKLINE_REDSHIFT_IAM_ROLE", "default")
    monkeypatch.setenv("TRACKLINE_REDSHIFT_S3", "s3://bucket/prefix")
    monkeypatch.delitem(sys.modules, "tests.live.test_redshift_live", raising=False)
    live = importlib.import_module("tests.live.test_redshift_live")
    try:
        tests = {n for n in dir(live) if n.startswith("test_")}
        assert "test_every_command_on_a_real_cluster" in tests
        assert {"test_sync_from_sqlite_into_redshift", "test_lock_table_and_upkeep"} <= tests
        values = live._warehouse_values()
        assert values["host"] == "cluster.invalid" and values["iam_role"] == "default"
    finally:
        sys.modules.pop("tests.live.test_redshift_live", None)
