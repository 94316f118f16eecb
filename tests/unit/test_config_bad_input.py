"""Bad values in the newer config sections (`backfill:`, `consolidations:`) are refused at load
time with the file's line and the key, never with a traceback nor by loading something else."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from trackline.config import parse_config
from trackline.errors import ConfigError

BASE: dict[str, Any] = {
    "sources": {"s": {"host": "h", "user": "u", "password": "pw-S3cret!", "database": "db"}},
    "tables": [{"name": "t", "cdc": {"strategy": "hybrid", "cursor": "ts", "id": "id"}}],
    "backfill": {"source": "s", "tables": [{"table": "t", "columns": {"ts": "ts"}}]},
    "consolidations": [
        {
            "name": "k",
            "key": ["id"],
            "inputs": [{"name": "a", "table": "t", "cdc": {"cursor": "ts", "id": "id"}}],
        }
    ],
}


def refused(edit: Any) -> str:
    data = copy.deepcopy(BASE)
    edit(data)
    with pytest.raises(ConfigError) as err:
        parse_config(yaml.safe_dump(data, sort_keys=False), source="c.yml")
    assert "pw-S3cret!" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        # found: an unclosed quote or comment raised sqlglot's TokenError out of the loader
        ("NULLIF(tno, ')", "is not a SQL expression MySQL would read"),
        ("UNIX_TIMESTAMP(ts) /* legacy", "is not a SQL expression MySQL would read"),
        # found: accepted, then the one-line SELECT lost everything after the comment and
        # failed with "syntax error near ''" naming no column
        ("UNIX_TIMESTAMP(ts) -- local time", "holds a SQL comment"),
        ("UNIX_TIMESTAMP(ts) # local time", "holds a SQL comment"),
    ],
)
def test_a_conversion_expression_that_is_not_one_clean_expression(
    expression: str, says: str
) -> None:
    msg = refused(lambda d: d["backfill"]["tables"][0].update(columns={"ts": expression}))
    assert msg.startswith("c.yml:") and "backfill.tables[0].columns.ts:" in msg, msg
    assert says in msg, msg


def test_a_hash_inside_a_string_is_no_comment() -> None:
    data = copy.deepcopy(BASE)
    data["backfill"]["tables"][0]["columns"] = {"ts": "CONCAT('#', ts, '--')"}
    cfg = parse_config(yaml.safe_dump(data))
    assert cfg.backfill.tables[0].columns == {"ts": "CONCAT('#', ts, '--')"}


@pytest.mark.parametrize("value", ["yes", "no", "true"])
def test_a_constant_must_be_a_string_or_an_integer(value: str) -> None:
    """Found: YAML's `no` / `yes` / `true` were loaded as the integers 0 and 1 (`str | int`
    in lax mode), so `source_kind: no` filled the column with 0."""
    text = yaml.safe_dump(BASE, sort_keys=False).replace(
        "cdc:\n      cursor: ts", f"constants:\n      kind: {value}\n    cdc:\n      cursor: ts"
    )
    assert f"kind: {value}" in text
    with pytest.raises(ConfigError) as err:
        parse_config(text, source="c.yml")
    assert "consolidations[0].inputs[0].constants.kind" in str(err.value), err.value
    quoted = text.replace(f"kind: {value}", f"kind: '{value}'")
    (inp,) = parse_config(quoted).consolidations[0].inputs
    assert inp.constants == {"kind": value}


def _second(d: dict[str, Any], **over: Any) -> None:
    d["consolidations"].append({**copy.deepcopy(d["consolidations"][0]), "name": "k2", **over})


@pytest.mark.parametrize(
    ("edit", "where", "says"),
    [
        (
            lambda d: d["consolidations"][0].update(staging_table="parcel_detail_tool"),
            "consolidations[0].staging_table",
            "staging table public.parcel_detail_tool is also the table of consolidation 'k' "
            "(target_table)",
        ),
        (
            lambda d: _second(d),
            "consolidations[1].name",
            "target table public.parcel_detail_tool is also the table of consolidation 'k'",
        ),
        (
            lambda d: _second(d, target_table="x", staging_table="parcel_detail_tool_staging"),
            "consolidations[1].staging_table",
            "is also the table of consolidation 'k' (staging_table)",
        ),
        (
            lambda d: d["consolidations"][0].update(target_table="t_raw"),
            "consolidations[0].target_table",
            "target table public.t_raw is also the table of `tables:` entry 't'",
        ),
    ],
)
def test_a_consolidation_table_shared_with_another_writer_is_refused(
    edit: Any, where: str, says: str
) -> None:
    """Found: `staging_table` equal to `target_table` was accepted; the run then told the
    user to ALTER the target to add the staging table's bookkeeping columns."""
    msg = refused(edit)
    assert f": {where}: " in msg and says in msg, msg


def test_two_consolidations_with_their_own_tables_load() -> None:
    data = copy.deepcopy(BASE)
    _second(data, target_table="other")
    cfg = parse_config(yaml.safe_dump(data))
    assert [c.staging for c in cfg.consolidations] == [
        "parcel_detail_tool_staging",
        "other_staging",
    ]
