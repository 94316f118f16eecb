"""Config of the two parity options: cdc strategy follow and an events follower's changes."""

from __future__ import annotations

from typing import Any

import pytest

from trackline.config import Config
from trackline.errors import ConfigError


def _cfg(ecs_cdc: dict[str, Any], uts_cdc: dict[str, Any] | None = None, **uts: Any) -> Any:
    return {
        "sources": {"s": {"type": "sqlite", "path": "x.db"}},
        "warehouse": {"type": "duckdb", "path": "w.duckdb"},
        "tables": [
            {"name": "uti", "cdc": {"strategy": "hybrid", "cursor": "t", "id": "id"}},
            {"name": "ecs", "cdc": ecs_cdc},
            {"name": "uts", "cdc": uts_cdc or {"strategy": "hybrid", "cursor": "t", "id": "id"}},
        ],
        "marts": [
            {
                "name": "g",
                "anchor": {"table": "m_uti", "source": "uti", "time": "t"},
                "followers": [
                    {"table": "m_ecs", "source": "ecs", "kind": "one_per_key",
                     "history_name": "ecs"},
                    {"table": "m_uts", "source": "uts", "kind": "events", "time": "t",
                     "history_name": "uts", **uts},
                ],
            }
        ],
    }  # fmt: skip


FOLLOW = {"strategy": "follow", "cursor": "t", "id": "id", "follow": "uti"}


def test_follow_is_hybrid_plus_a_driver() -> None:
    cfg = Config.model_validate(_cfg({**FOLLOW, "follow_key": "order_id"}))
    cdc = cfg.table("ecs").cdc
    assert (cdc.strategy, cdc.follow, cdc.follow_key, cdc.follow_chunk_keys) == (
        "hybrid",
        "uti",
        "order_id",
        10_000,
    )


@pytest.mark.parametrize(
    ("ecs_cdc", "message"),
    [
        (FOLLOW, "needs `follow`"),
        ({**FOLLOW, "follow_key": "order_id", "follow": "nope"}, "is not a table"),
        ({**FOLLOW, "follow_key": "order_id", "follow": "ecs"}, "another write_mode: append"),
        ({**FOLLOW, "follow_key": "partner_id"}, "follow_key must be the mart group's key"),
        (
            {"strategy": "id", "id": "id", "follow": "uti", "follow_key": "order_id"},
            "cannot have it",
        ),
    ],
)
def test_follow_mistakes_name_the_key(ecs_cdc: dict[str, Any], message: str) -> None:
    with pytest.raises((ConfigError, ValueError), match=message):
        Config.model_validate(_cfg(ecs_cdc))


def test_events_changes_must_match_their_tables_cdc() -> None:
    plain = {"strategy": "hybrid", "cursor": "t", "id": "id"}
    with pytest.raises((ConfigError, ValueError), match="changes: follow and a source table"):
        Config.model_validate(_cfg(plain, {**FOLLOW, "follow_key": "order_id"}))
    with pytest.raises((ConfigError, ValueError), match="changes: follow and a source table"):
        Config.model_validate(_cfg(plain, changes="follow"))
    with pytest.raises((ConfigError, ValueError), match="needs `version`"):
        Config.model_validate(_cfg(plain, changes="newest"))
    ok = Config.model_validate(_cfg(plain, changes="newest", version="t_mod"))
    assert ok.marts[0].followers[1].changes == "newest"
