"""A `--json` command that ends in an error still answers on stdout: one JSON object with
the error, its kind and the exit code (the text line goes to stderr as without `--json`), so
a script parsing stdout never reads an empty string."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from trackline.cli import main

CONFIG = """\
sources:
  kuaisong: {type: mysql, database: kuaisong}
warehouse: {type: duckdb, path: wh.duckdb}
tables:
  - name: orders
    cdc: {strategy: id, id: id}
"""


@pytest.mark.parametrize(
    "args",
    [
        ["consolidate", "nope", "--json"],
        ["backfill", "status", "-t", "nope", "--json"],
        ["compare", "--table", "nope", "--json"],
    ],
)
def test_a_json_command_that_fails_prints_its_error_as_json(
    args: list[str], tmp_path: Path
) -> None:
    (tmp_path / "trackline.yml").write_text(CONFIG)
    result = CliRunner().invoke(main, [*args, "-c", str(tmp_path / "trackline.yml")])
    assert result.exit_code == 2, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "error" and out["exit_code"] == 2 and out["kind"] == "ConfigError"
    assert "nope" in out["error"]
    assert "error: " in result.stderr and "nope" in result.stderr


def test_without_json_stdout_stays_empty(tmp_path: Path) -> None:
    (tmp_path / "trackline.yml").write_text(CONFIG)
    result = CliRunner().invoke(
        main, ["consolidate", "nope", "-c", str(tmp_path / "trackline.yml")]
    )
    assert result.exit_code == 2 and result.stdout == ""
