"""Gap 1 (cdc strategy follow: ecs rows that change after creation) and gap 2 (spath events
rewritten in place), on a real MariaDB source, checked against the source's current rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import MySQLDb
from tests.integration.parity_world import DAY, ECS, T0, UTS, World
from trackline.config import DuckDBWarehouse, PostgresWarehouse

WhCfg = DuckDBWarehouse | PostgresWarehouse


@pytest.fixture
def world(tmp_path: Path, warehouse_config: WhCfg, mysql_db: MySQLDb):  # type: ignore[no-untyped-def]
    w = World(tmp_path, warehouse_config, mysql_db)
    yield w
    w.close()


def test_ecs_update_with_and_without_uti_update(world: World) -> None:
    w = world
    w.order(1, T0 + 10, partner=1)
    w.order(2, T0 + 20, partner=2)
    w.cycle()
    w.assert_equal_to_source()
    # ecs changes together with a uti change: read again in the same cycle
    w.ecs(1, partner_id=7, consignee="B")
    w.status(1, T0 + DAY)
    s = w.cycle()
    ecs = next(m for m in s.marts if m.mart == ECS)
    assert ecs.updated == 1
    w.assert_equal_to_source()
    # ecs changes without a uti change: seen at the order's next change, not before
    w.ecs(2, partner_id=9)
    w.cycle()
    assert w.rows(ECS, "partner_id") and (2,) not in w.rows(ECS, "order_id, partner_id")
    assert sorted(w.rows(ECS, "order_id, partner_id")) == [(1, 7), (2, 2)]
    w.status(2, T0 + 2 * DAY)
    w.cycle()
    w.assert_equal_to_source()
