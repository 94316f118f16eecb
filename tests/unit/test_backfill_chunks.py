"""Backfill chunk planning and the `backfill:` config section (pure logic)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest

from trackline.backfill.chunks import bound, parse_when, plan_chunks
from trackline.backfill.legacy import compatible
from trackline.config import parse_config
from trackline.errors import ConfigError

D = dt.datetime


def test_months_cover_the_range_half_open_on_calendar_boundaries() -> None:
    chunks = plan_chunks(D(2024, 1, 15), D(2024, 4, 1), "month")
    assert [(c.start, c.end) for c in chunks] == [
        (D(2024, 1, 15), D(2024, 2, 1)),
        (D(2024, 2, 1), D(2024, 3, 1)),
        (D(2024, 3, 1), D(2024, 4, 1)),
    ]
    assert [c.label for c in chunks[1:]] == ["2024-02", "2024-03"]
    assert [c.no for c in chunks] == [1, 2, 3]


def test_a_year_end_and_weeks_from_monday_and_days() -> None:
    months = plan_chunks(D(2024, 11, 1), D(2025, 2, 1), "month")
    assert [c.label for c in months] == ["2024-11", "2024-12", "2025-01"]
    weeks = plan_chunks(D(2025, 1, 1), D(2025, 1, 15), "week")  # 1 January 2025: a Wednesday
    assert [c.start for c in weeks] == [D(2025, 1, 1), D(2025, 1, 6), D(2025, 1, 13)]
    assert weeks[-1].end == D(2025, 1, 15)
    days = plan_chunks(D(2025, 3, 30), D(2025, 4, 1), "day")  # a DST weekend in Europe: UTC
    assert [c.label for c in days] == ["2025-03-30", "2025-03-31"]


def test_consecutive_chunks_share_their_boundary_so_no_instant_is_in_two() -> None:
    chunks = plan_chunks(D(2023, 5, 7, 13), D(2025, 2, 3), "week")
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.end == b.start and a.start < a.end
    assert chunks[0].start == D(2023, 5, 7, 13) and chunks[-1].end == D(2025, 2, 3)


def test_bounds_in_the_time_columns_own_type() -> None:
    assert bound(D(2025, 3, 1), unix=True) == 1_740_787_200
    assert bound(D(2025, 3, 1), unix=False) == D(2025, 3, 1)
    assert bound(D(2025, 3, 1), unix=False, date_only=True) == dt.date(2025, 3, 1)
    assert bound(D(2025, 3, 1, 12), unix=False, date_only=True) == dt.date(2025, 3, 2)


@pytest.mark.parametrize("text", ["2024-13", "24-01", "yesterday", "2024-01-01T25:00"])
def test_a_bad_start_names_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match="--start"):
        parse_when("--start", text)


def test_an_empty_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="not after"):
        plan_chunks(D(2025, 1, 1), D(2025, 1, 1), "month")


def test_which_legacy_types_load_into_the_target() -> None:
    assert compatible(pa.int32(), pa.int64())
    assert compatible(pa.int64(), pa.int32())  # checked cast: an overflow stops the chunk
    assert compatible(pa.decimal128(10, 2), pa.decimal128(12, 4))
    assert not compatible(pa.decimal128(12, 4), pa.decimal128(10, 2))
    assert not compatible(pa.timestamp("us"), pa.int64())
    assert not compatible(pa.string(), pa.int64())


def _config(backfill: dict[str, Any], table: dict[str, Any] | None = None) -> str:
    import yaml

    return yaml.safe_dump(
        {
            "sources": {
                "kuaisong": {"type": "mysql", "database": "kuaisong"},
                "uniods": {"type": "mysql", "database": "uniods"},
            },
            "tables": [
                {
                    "name": "uni_tracking_info",
                    "source": "kuaisong",
                    "cdc": {"strategy": "hybrid", "cursor": "update_time", "id": "id"},
                    **(table or {}),
                }
            ],
            "backfill": backfill,
        }
    )


@pytest.mark.parametrize(
    ("backfill", "table", "needle"),
    [
        ({"tables": [{"table": "nope"}]}, None, "backfill.tables[0].table"),
        ({"source": "dw", "tables": [{"table": "uni_tracking_info"}]}, None, "'dw' must be"),
        (
            {"tables": [{"table": "uni_tracking_info", "columns": {"x": "1; DROP TABLE t"}}]},
            None,
            "backfill.tables[0].columns.x",
        ),
        (
            {"tables": [{"table": "uni_tracking_info", "columns": {"x": "(SELECT 1)"}}]},
            None,
            "statement",
        ),
        ({"tables": [{"table": "uni_tracking_info", "query": "SELECT 1"}]}, None, "`time`"),
        (
            {"tables": [{"table": "uni_tracking_info"}]},
            {"cdc": {"strategy": "id", "id": "id"}},
            "hybrid or timestamp",
        ),
        (
            {"tables": [{"table": "uni_tracking_info"}, {"table": "uni_tracking_info"}]},
            None,
            "listed twice",
        ),
    ],
)
def test_bad_backfill_sections_name_their_key(
    backfill: dict[str, Any], table: dict[str, Any] | None, needle: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_config(backfill, table))
    assert needle in str(err.value)


def test_a_good_section_validates() -> None:
    cfg = parse_config(
        _config(
            {
                "chunk": "week",
                "tables": [
                    {
                        "table": "uni_tracking_info",
                        "source_table": "dw_uni_tracking_info",
                        "columns": {"update_time": "UNIX_TIMESTAMP(update_time)"},
                    }
                ],
            }
        )
    )
    b = cfg.backfill_table("uni_tracking_info")
    assert b.legacy_table == "dw_uni_tracking_info" and cfg.backfill.chunk == "week"
