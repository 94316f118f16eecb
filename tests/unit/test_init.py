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
    # `trackline compare --table uti|ecs|uts`: each preset compares one mart of the group
    marts = {g.anchor.table, *(f.table for f in g.followers)}
    presets = {t.name: t for t in cfg.compare.tables}
    assert list(presets) == ["uti", "ecs", "uts"]
    assert {t.table for t in presets.values()} == marts
    assert all(cfg.compare_schema(t.table) == g.schema_ for t in presets.values())
    assert presets["uti"].newer_by == "update_time"
    assert presets["uts"].key == ["order_id", "pathTime", "code"]


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "trackline.yml"
    out.write_text("mine")
    refused = CliRunner().invoke(main, ["init", "--path", str(out)])
    assert refused.exit_code != 0 and out.read_text() == "mine"
    forced = CliRunner().invoke(main, ["init", "--path", str(out), "--force"])
    assert forced.exit_code == 0 and out.read_text() == EXAMPLE_CONFIG


def test_the_shipped_example_file_is_the_init_config() -> None:
    assert (ROOT / "examples" / "order_tracking.yml").read_text() == EXAMPLE_CONFIG


def _switch_on(text: str, prefix: str, live: str | None = None) -> str:
    """Uncomment the example's line starting with `# prefix` (with its continuation lines,
    indented further), replacing the nearest live line `live` above it when given."""
    lines = text.splitlines()
    at = next(i for i, x in enumerate(lines) if x.lstrip().startswith("# " + prefix))
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    body = [lines[at].lstrip()[2:].split("  #")[0].rstrip()]
    end = at + 1
    while lines[end].lstrip().startswith("#  "):  # a continuation ("#       follow: …")
        body.append(lines[end].lstrip()[1:].strip())
        end += 1
    lines[at:end] = [indent + " ".join(body)]
    if live is not None:
        above = max(i for i in range(at) if lines[i].strip() == live)
        del lines[above]
    return "\n".join(lines) + "\n"


def test_the_commented_parity_options_validate(tmp_path: Path) -> None:
    """Both fixes as the example shows them: ecs follows uti, and spath either by modified
    time (changes: newest) or by following uti (changes: follow)."""
    ecs_cdc = "cdc: {strategy: hybrid, cursor: add_time, id: id}"
    uts_cdc = "cdc: {strategy: hybrid, cursor: pathTime, id: id}"
    base = _switch_on(EXAMPLE_CONFIG, "cdc: {strategy: follow, cursor: add_time", ecs_cdc)
    base = _switch_on(base, "event_key: [order_id", "event_key: [id]")
    newest = _switch_on(base, "cdc: {strategy: hybrid, cursor: time_modified", uts_cdc)
    newest = _switch_on(_switch_on(newest, "changes: newest"), "version:")
    follow = _switch_on(base, "cdc: {strategy: follow, cursor: pathTime", uts_cdc)
    follow = _switch_on(follow, "changes: follow")
    for name, text in (("newest", newest), ("follow", follow)):
        path = tmp_path / f"{name}.yml"
        path.write_text(text)
        cfg = load_config(path)
        ecs, uts = cfg.table("ecs_order_info"), cfg.table("uni_tracking_spath")
        assert (ecs.cdc.follow, ecs.cdc.follow_key) == ("uni_tracking_info", "order_id")
        f = cfg.marts[0].followers[1]
        assert (f.changes, f.event_key) == (name, ["order_id", "traceSeq", "pathTime"])
        if name == "newest":
            assert (uts.cdc.cursor, f.version) == ("time_modified", "time_modified")
        else:
            assert uts.cdc.follow == "uni_tracking_info"
