"""Schema drift × consolidation, × follow tables, × events upserted into history periods,
× scd2 dimensions: a source column that grows, changes type or appears after the warehouse
tables exist, on real MariaDB → DuckDB, PostgreSQL (and Redshift compat where the column's
declared size matters). Each end state is compared with the source itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MySQLDb
from tests.integration import test_consolidate, test_dims
from tests.integration.parity_world import DAY, ECS, ECS_COLS, T0, UTS, UTS_COLS, World
from tests.integration.synctools import warehouse
from tests.integration.test_consolidate import Hours, oracle, run_ok, setup, target
from trackline.config import (
    ConsolidationConfig,
    DuckDBWarehouse,
    PostgresWarehouse,
    RedshiftWarehouse,
    StageConfig,
)
from trackline.consolidate import consolidate

Wh = DuckDBWarehouse | PostgresWarehouse
cengine = test_consolidate.engine
"""DuckDB, PostgreSQL, Redshift compat (with its S3 stage), as test_consolidate.py runs."""

# --------------------------------------------------------------------------- consolidation


def test_consolidation_input_whose_text_grew_after_the_tables_exist(
    mysql_db: MySQLDb, cengine: tuple[Any, StageConfig]
) -> None:
    """One input's VARCHAR is made longer at the source once the staging and target tables
    exist (sized from the first run on Redshift). The longer values must reach the target
    whole, as the union on the source has them; a run that cannot take them must fail
    naming the column, never cut them."""
    cfg = setup(mysql_db, cengine)
    hours = Hours(mysql_db)
    hours.hour(1)
    run_ok(cfg)
    mysql_db.execute("ALTER TABLE uni_tracking_addon_spath MODIFY path_info VARCHAR(600)")
    hours.hour(2)
    long_text = "é" * 20 + "x" * 480  # 520 bytes: more than VARCHAR(64) in utf8mb4 (256)
    mysql_db.execute(
        "UPDATE uni_tracking_addon_spath SET path_info = %s, update_time = NOW(6) "
        "ORDER BY id DESC LIMIT 1",
        (long_text,),
    )
    with warehouse(cfg) as wh:
        (res,) = consolidate(cfg, wh)
    assert res.ok, res.error
    got = target(cfg)
    assert got == oracle(mysql_db)
    assert any(r[6] == long_text for r in got)


def table_inputs(mysql_db: MySQLDb, cengine: tuple[Any, StageConfig]) -> Any:
    """The two scan tables as `table:` inputs (every column under its own name) into
    `events_all`, keyed by (source_kind, id)."""
    spec: dict[str, Any] = {
        "name": "parcel_detail",
        "key": ["source_kind", "id"],
        "inputs": [
            {
                "name": kind,
                "table": table,
                "cdc": {"cursor": "update_time", "id": "id"},
                "constants": {"source_kind": kind},
                "lag_seconds": 0,
            }
            for kind, table in (
                ("spath", "uni_tracking_spath"),
                ("addon", "uni_tracking_addon_spath"),
            )
        ],
        "target_table": "events_all",
    }
    cfg = setup(mysql_db, cengine)
    return cfg.model_copy(update={"consolidations": [ConsolidationConfig.model_validate(spec)]})


@pytest.mark.parametrize("killed", [False, True])
def test_consolidation_table_input_whose_varchar_grew_after_the_tables_exist(
    mysql_db: MySQLDb,
    cengine: tuple[Any, StageConfig],
    monkeypatch: pytest.MonkeyPatch,
    killed: bool,
) -> None:
    """`table:` inputs carry their declared text size (Redshift sizes VARCHAR columns from
    it): one input's VARCHAR(64) grows to VARCHAR(600) after the staging and target tables
    were created (and, where an INT can be ALTERed, both inputs' trace_seq becomes BIGINT).
    A 520-byte value must reach the target whole. `killed`: the run dies between the ALTER
    of the target and that of the staging table; the next run alters what is left."""
    cfg = table_inputs(mysql_db, cengine)
    hours = Hours(mysql_db)
    hours.hour(1)
    run_ok(cfg)
    mysql_db.execute("ALTER TABLE uni_tracking_addon_spath MODIFY path_info VARCHAR(600)")
    redshift = isinstance(cengine[0], RedshiftWarehouse)
    if not redshift:
        for t in ("uni_tracking_spath", "uni_tracking_addon_spath"):
            mysql_db.execute(f"ALTER TABLE {t} MODIFY trace_seq BIGINT NOT NULL")
    long_text = "é" * 20 + "x" * 480
    mysql_db.execute(
        "UPDATE uni_tracking_addon_spath SET path_info = %s, update_time = NOW(6) "
        "ORDER BY id DESC LIMIT 1",
        (long_text,),
    )
    if killed:
        from trackline.errors import InjectedFault
        from trackline.load.base import Warehouse as Base
        from trackline.load.redshift import Redshift

        owner = Redshift if redshift else Base  # (DuckDB and PostgreSQL use the base's)
        real, calls = owner.alter_column_type, []

        def alter(self: Any, schema: str, table: str, column: Any) -> None:
            calls.append(table)
            if len(calls) == 2:
                raise InjectedFault("killed between the two ALTERs")
            real(self, schema, table, column)

        monkeypatch.setattr(owner, "alter_column_type", alter)
        with pytest.raises(InjectedFault), warehouse(cfg) as wh:
            consolidate(cfg, wh)
        assert calls == ["events_all", "events_all_staging"]
        monkeypatch.undo()
    run_ok(cfg)
    want = sorted(
        [
            ("spath", r[0], r[1])
            for r in mysql_db.query("SELECT id, path_info FROM uni_tracking_spath")
        ]
        + [
            ("addon", r[0], r[1])
            for r in mysql_db.query("SELECT id, path_info FROM uni_tracking_addon_spath")
        ]
    )
    with warehouse(cfg) as wh:
        got = sorted(
            (r[0], int(r[1]), r[2])
            for r in wh.query(
                f"SELECT source_kind, id, path_info FROM {wh.t('public', 'events_all')}"
            )
        )
    assert got == want
    assert long_text in [r[2] for r in got]


def test_consolidation_input_whose_int_became_bigint_is_refused_before_anything_is_written(
    mysql_db: MySQLDb, cengine: tuple[Any, StageConfig]
) -> None:
    """An input's INT becomes BIGINT: the inputs no longer agree, the run is refused before
    any input is read (no staged row, no watermark moved, the target as it was). Once both
    inputs cast it to BIGINT (MariaDB casts integers to BIGINT only), a value past INT's range
    must reach the target exactly (the tables' INT columns widened); on Redshift, which
    cannot ALTER an INT, the run stops naming the column, with nothing read."""
    cfg = setup(mysql_db, cengine)
    hours = Hours(mysql_db)
    hours.hour(1)
    run_ok(cfg)
    before = target(cfg)
    with warehouse(cfg) as wh:
        staged = wh.scalar("SELECT COUNT(*) FROM public.parcel_detail_tool_staging")
        states = wh.query(
            "SELECT table_key, source_db, value FROM trackline.watermarks ORDER BY 1, 2"
        )
    mysql_db.execute("ALTER TABLE uni_tracking_addon_spath MODIFY trace_seq BIGINT NOT NULL")
    hours.hour(2)
    mysql_db.execute(
        "UPDATE uni_tracking_addon_spath SET trace_seq = 3000000000, update_time = NOW(6) "
        "ORDER BY id DESC LIMIT 1"
    )
    with warehouse(cfg) as wh:
        (res,) = consolidate(cfg, wh)
        assert res.status == "failed"
        assert "trace_seq" in (res.error or "") and "addon" in (res.error or "")
        assert wh.scalar("SELECT COUNT(*) FROM public.parcel_detail_tool_staging") == staged
        assert (
            wh.query("SELECT table_key, source_db, value FROM trackline.watermarks ORDER BY 1, 2")
            == states
        )
    assert target(cfg) == before
    # the user's fix: both inputs produce BIGINT
    c = cfg.consolidations[0]
    inputs = [
        i.model_copy(
            update={"query": (i.query or "").replace("e.trace_seq", "CAST(e.trace_seq AS SIGNED)")}
        )
        for i in c.inputs
    ]
    for i in inputs:
        assert "CAST(e.trace_seq AS SIGNED) AS trace_seq" not in (i.query or "")
    inputs = [
        i.model_copy(
            update={
                "query": (i.query or "").replace(
                    "CAST(e.trace_seq AS SIGNED)", "CAST(e.trace_seq AS SIGNED) AS trace_seq"
                )
            }
        )
        for i in inputs
    ]
    fixed = cfg.model_copy(update={"consolidations": [c.model_copy(update={"inputs": inputs})]})
    with warehouse(fixed) as wh:
        (res,) = consolidate(fixed, wh)
    if isinstance(cengine[0], RedshiftWarehouse):  # an INT cannot be ALTERed there
        assert not res.ok and "column 'trace_seq'" in (res.error or ""), res.error
        assert "cannot ALTER" in (res.error or "")
        assert target(fixed) == before
        return
    assert res.ok, res.error
    got = target(fixed)
    assert got == oracle(mysql_db)
    assert 3000000000 in [r[4] for r in got]


def test_duckdb_append_refused_inside_a_transaction_raises_its_own_error(
    duckdb_warehouse: DuckDBWarehouse,
) -> None:
    """What consolidation × a widened INT showed on DuckDB: an append the engine refuses
    inside a transaction (a value out of the column's range) aborted the transaction, and the
    loader's cleanup then raised DuckDB's "transaction is aborted" in place of the refusal, so
    the run ended with an unexplained error instead of a failed run naming the column. The
    refusal must come through as a WarehouseError, and the connection stay usable."""
    import pyarrow as pa

    from trackline.errors import WarehouseError
    from trackline.load import Column, open_warehouse

    wh = open_warehouse(duckdb_warehouse)
    wh.connect()
    try:
        wh.ensure_schema("s")
        wh.create_table("s", "t", [Column("n", pa.int32())])
        data = pa.table({"n": pa.array([1, 3_000_000_000], pa.int64())})
        with pytest.raises(WarehouseError, match="out of range"):
            wh.run_transaction(lambda: wh.append_arrow("s", "t", data))
        assert wh.scalar(f"SELECT COUNT(*) FROM {wh.t('s', 't')}") == 0
        wh.run_transaction(lambda: wh.append_arrow("s", "t", data.slice(0, 1)))
        assert wh.query(f"SELECT n FROM {wh.t('s', 't')}") == [(1,)]
    finally:
        wh.close()


# --------------------------------------------------------------------------- follow × drift


@pytest.fixture(params=["newest", "follow"])
def parity(
    request: pytest.FixtureRequest, tmp_path: Path, warehouse_config: Wh, mysql_db: MySQLDb
) -> Iterator[World]:
    w = World(tmp_path, warehouse_config, mysql_db, spath=request.param)
    yield w
    w.close()


def test_columns_added_to_follow_and_upserted_tables_reach_archived_rows(parity: World) -> None:
    """A column is added to ecs (on `follow`) and to spath (upserted by modified time, or
    re-read by order) after rows of both were archived. A cycle with the column still NULL
    everywhere makes no new version; then values arrive through the follow pass (an archived
    order coming back, an active one) and through a rewritten archived event: mart ∪ history
    must equal the source, new columns included, each row once."""
    w = parity
    for o in range(1, 6):
        w.order(o, T0 + o * 100, partner=o)
        w.status(o, T0 + o * 100 + 50, code=20)
    w.cycle()
    w.status(5, T0 + 40 * DAY)  # 1..4 archived
    w.cycle()
    assert sorted(w.rows(ECS, "order_id")) == [(5,)]
    w.db.execute("ALTER TABLE ecs_order_info ADD COLUMN zip VARCHAR(10) NULL")
    w.db.execute("ALTER TABLE uni_tracking_spath ADD COLUMN note VARCHAR(20) NULL")
    ecs_cols = f"{ECS_COLS}, zip"
    uts_cols = f"{UTS_COLS}, note"
    w.status(5, T0 + 40 * DAY + 10, event=False)  # ecs 5 read again, zip NULL: no change
    s = w.cycle()
    assert next(m for m in s.marts if m.mart == ECS).updated == 0
    assert_like_source(w, ecs_cols, uts_cols)
    w.ecs(2, zip="Z2")
    w.status(2, T0 + 41 * DAY)  # comes back from history with its zip
    w.ecs(5, zip="Z5", partner_id=55)
    w.status(5, T0 + 41 * DAY + 5, event=False)
    old = w.event_ids(3)[0]
    w.db.execute(
        "UPDATE uni_tracking_spath SET note = 'late', code = 77, is_updated = 1, "
        "time_modified = %s WHERE id = %s",
        (T0 + 41 * DAY + 9, old),
    )
    if w.data["tables"][2]["cdc"]["strategy"] == "follow":
        w.status(3, T0 + 41 * DAY + 9, event=False)
    w.cycle()
    assert_like_source(w, ecs_cols, uts_cols)
    w.cycle()
    assert_like_source(w, ecs_cols, uts_cols)


def assert_like_source(w: World, ecs_cols: str, uts_cols: str) -> None:
    from trackline.marts.invariants import check_all

    assert check_all(w.cfg, w.wh) == []
    for mart, name, table, cols in (
        (ECS, "ecs", "ecs_order_info", ecs_cols),
        (UTS, "uts", "uni_tracking_spath", uts_cols),
    ):
        got, want = w.norm(w.held(mart, name, cols)), w.source(table, cols)
        assert got == want, (
            mart,
            [r for r in want if r not in got],
            [r for r in got if r not in want],
        )


# --------------------------------------------------------------------------- scd2 × drift × kills

dengine = test_dims.engine


@pytest.mark.parametrize("step", ["sync.after_widen", "dims.in_apply"])
def test_scd2_killed_while_a_new_and_a_widened_column_arrive_then_rerun(
    mysql_db: MySQLDb, dengine: tuple[Any, StageConfig], monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """A column is added (one member gets a value) and another widened (one member gets a
    longer value) at the source; the sync is killed while widening or applying, then rerun.
    Exactly those two members open a version, the others none (a NULL in the new column is
    no change), and a third run changes nothing."""
    from trackline import faults
    from trackline.errors import InjectedFault
    from trackline.sync import sync

    mysql_db.execute(test_dims.PARTNERS_DDL)
    cfg = test_dims._dim_config(mysql_db, dengine)
    runs = test_dims.Runs(mysql_db, cfg)
    test_dims._partners(mysql_db, test_dims.FIRST)
    runs.sync()
    before = runs.history()
    mysql_db.execute("ALTER TABLE partners MODIFY name VARCHAR(300), ADD COLUMN tier VARCHAR(8)")
    long = "長" * 250
    mysql_db.execute("UPDATE partners SET name = %s WHERE partner_id = 1", (long,))
    mysql_db.execute("UPDATE partners SET tier = 'gold' WHERE partner_id = 2")
    faults.reset()
    monkeypatch.setenv("TRACKLINE_FAIL_AT", step)
    try:
        try:
            (res,) = sync(cfg)
        except InjectedFault:
            pass
        else:
            assert res.status == "failed" and "injected" in (res.error or ""), res
    finally:
        monkeypatch.delenv("TRACKLINE_FAIL_AT")
        faults.reset()
    assert runs.history() == before
    runs.sync()
    want = [
        (1, 1, "N", "A", "X", 1, 1, 2, False, False),
        (5, 1, "N", long, "X", 1, 2, None, True, False),
        (2, 2, "N", "B", None, 1, 1, 2, False, False),
        (6, 2, "N", "B", None, 1, 2, None, True, False),
        (3, 3, "S", "C", "", 0, 1, None, True, False),
        (4, 4, "S", "D", "NULL", None, 1, None, True, False),
    ]
    assert runs.history() == want
    runs.sync()
    assert runs.history() == want
    with warehouse(cfg) as wh:
        tiers = wh.query("SELECT partner_id, tier FROM public.partners WHERE is_current")
    assert sorted((int(p), t) for p, t in tiers) == [(1, None), (2, "gold"), (3, None), (4, None)]


def test_replace_dimension_takes_a_new_a_widened_and_a_retyped_column(
    mysql_db: MySQLDb, dengine: tuple[Any, StageConfig]
) -> None:
    """`write_mode: replace` × drift: a column added, a VARCHAR grown past its old size and an
    INT made BIGINT (a value only BIGINT holds) at the source; the next replace must hold the
    source's rows exactly, new values whole, and a reader's table never half of it."""
    from trackline.sync import sync

    mysql_db.execute(test_dims.PARTNERS_DDL)
    cfg = test_dims._replace_config(mysql_db, dengine)
    test_dims._fill(mysql_db, 60, "a")
    (res,) = sync(cfg)
    assert res.status == "ok", res.error
    mysql_db.execute(
        "ALTER TABLE partners MODIFY name VARCHAR(300), MODIFY partner_id BIGINT NOT NULL, "
        "ADD COLUMN tier VARCHAR(8)"
    )
    long = "長" * 250
    mysql_db.execute("UPDATE partners SET name = %s, tier = 'gold' WHERE partner_id = 7", (long,))
    mysql_db.execute(
        "INSERT INTO partners (partner_id, region, name, city, note, active, updated_at) "
        "VALUES (%s, 'N', 'big', 'c', '', 1, NOW(6))",
        (2**40,),
    )
    (res,) = sync(cfg)
    if isinstance(dengine[0], RedshiftWarehouse) and res.status != "ok":
        # Redshift cannot ALTER an INT: it may stop, naming the way out, and keep the table
        assert "migrate" in (res.error or ""), res.error
        with warehouse(cfg) as wh:
            assert wh.scalar("SELECT COUNT(*) FROM public.partners") == 60
        return
    assert res.status == "ok", res.error
    want = sorted(
        (int(p), n, t) for p, n, t in mysql_db.query("SELECT partner_id, name, tier FROM partners")
    )
    with warehouse(cfg) as wh:
        got = sorted(
            (int(p), n, t)
            for p, n, t in wh.query("SELECT partner_id, name, tier FROM public.partners")
        )
    assert got == want


def test_consolidation_inputs_whose_decimal_grew_after_the_tables_exist(
    mysql_db: MySQLDb, cengine: tuple[Any, StageConfig]
) -> None:
    """Both inputs' DECIMAL(6,2) becomes DECIMAL(12,3) at the source: a value with more digits
    on both sides of the point must reach the target exactly (the tables widened first); on
    Redshift, which cannot ALTER a DECIMAL, the run stops naming the column, nothing read."""
    import decimal

    cfg = table_inputs(mysql_db, cengine)
    for t in ("uni_tracking_spath", "uni_tracking_addon_spath"):
        mysql_db.execute(f"ALTER TABLE {t} ADD COLUMN weight DECIMAL(6,2) DEFAULT 1.50")
    hours = Hours(mysql_db)
    hours.hour(1)
    run_ok(cfg)
    for t in ("uni_tracking_spath", "uni_tracking_addon_spath"):
        mysql_db.execute(f"ALTER TABLE {t} MODIFY weight DECIMAL(12,3)")
    big = decimal.Decimal("123456789.125")
    mysql_db.execute(
        "UPDATE uni_tracking_spath SET weight = %s, update_time = NOW(6) ORDER BY id LIMIT 1",
        (big,),
    )
    with warehouse(cfg) as wh:
        (res,) = consolidate(cfg, wh)
        if isinstance(cengine[0], RedshiftWarehouse):
            assert not res.ok and "column 'weight'" in (res.error or ""), res.error
            return
        assert res.ok, res.error
        got = wh.query(
            f"SELECT id, weight FROM {wh.t('public', 'events_all')} WHERE source_kind = 'spath'"
        )
    want = {int(i): w for i, w in mysql_db.query("SELECT id, weight FROM uni_tracking_spath")}
    assert {int(i): decimal.Decimal(str(w)) for i, w in got} == want
    assert big in want.values()
