"""`trackline init` writes an example config that validates as written."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from trackline.cli import main
from trackline.config import load_config
from trackline.examples import EXAMPLE_CONFIG

ROOT = Path(__file__).resolve().parents[2]


def test_init_writes_a_config_that_validates(tmp_path: Path) -> None:
    out = tmp_path / "trackline.yml"
    result = CliRunner().invoke(main, ["init", "--path", str(out)])
    assert result.exit_code == 0, result.output
    cfg = load_config(out)
    assert [t.name for t in cfg.tables][:3] == [
        "uni_tracking_info",
        "ecs_order_info",
        "uni_tracking_spath",
    ]
    g = cfg.marts[0]
    assert g.anchor.table == "mart_uni_tracking_info"
    assert [f.kind for f in g.followers] == ["one_per_key", "events"]
    assert set(cfg.sources) == {"kuaisong", "uniods"}
    (c,) = cfg.consolidations
    assert (c.target_table, [i.name for i in c.inputs]) == (
        "parcel_detail_tool",
        ["spath", "addon"],
    )
    assert [i.constants for i in c.inputs] == [{"source_kind": "spath"}, {"source_kind": "addon"}]


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "trackline.yml"
    out.write_text("mine")
    refused = CliRunner().invoke(main, ["init", "--path", str(out)])
    assert refused.exit_code != 0 and out.read_text() == "mine"
    forced = CliRunner().invoke(main, ["init", "--path", str(out), "--force"])
    assert forced.exit_code == 0 and out.read_text() == EXAMPLE_CONFIG


def test_the_shipped_example_file_is_the_init_config() -> None:
    assert (ROOT / "examples" / "order_tracking.yml").read_text() == EXAMPLE_CONFIG
