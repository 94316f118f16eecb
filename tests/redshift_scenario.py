"""One scenario that drives every command touching the warehouse, for the Redshift adapter.

`run_scenario` is shared by the live suite (`tests/live`, a real cluster) and its compat-mode
twin (`tests/integration/test_redshift_scenario.py`, PostgreSQL + the moto S3 endpoint), so
the code the first person with a cluster runs is the code CI runs every time.

What it does, on the SQLite order-tracking source of the mart tests plus a `claims` table
synced by merge:

1. a multi-cycle mart run (`run_cycle_on`): sync, anchor + followers, orders archived into
   history periods, dormant orders reactivated, NULL keys reported, the raw trim;
2. `trackline check` (`run_checks`): every check runs, none may end in `error` (an error is a
   statement the warehouse refused);
3. `trackline reconcile claims`: rows hard-deleted in the source are found, then applied;
4. `trackline replay uni_tracking_info --from-batch <last>`: the raw table is unchanged;
5. `trackline reset claims` and a sync: the target is reloaded to the source's rows;
6. maintenance (VACUUM/ANALYZE where the engine says so).

It returns a summary, one line per step, which the tests print.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.integration.marts_helpers import (
    ECS,
    UTI,
    UTS,
    Driver,
    Source,
    busy_plan,
    config_dict,
    day,
)
from trackline.config import Config, DuckDBWarehouse
from trackline.jobs.reconcile import reconcile
from trackline.load import Warehouse, open_warehouse
from trackline.marts.cycle import run_cycle_on
from trackline.quality.run import run_checks
from trackline.report import NullReporter
from trackline.schedule import maintenance_job
from trackline.stage import Stage
from trackline.status import replay_table, reset_table
from trackline.sync import BATCH_COL, resolve, sync

CLAIMS = "claims"


def scenario_config(
    tmp: Path, warehouse: dict[str, Any], stage: dict[str, Any], prefix: str = ""
) -> tuple[Config, Source]:
    """The mart config of the mart tests (schemas prefixed with `prefix`) plus a `claims`
    table synced by merge and reconciled."""
    src = Source(tmp / "src.db")
    src.con.execute(
        f"CREATE TABLE {CLAIMS} (id INTEGER PRIMARY KEY, order_id INTEGER, "
        "amount INTEGER, update_at INTEGER NOT NULL)"
    )
    src.con.commit()
    unused = DuckDBWarehouse(path=tmp / "unused")
    data = config_dict(src.path, unused, tmp / "unused", prefix=prefix)
    data["warehouse"], data["stage"] = warehouse, stage
    data["tables"].append(
        {
            "name": CLAIMS,
            "target_schema": f"{prefix}raw",
            "cdc": {"strategy": "hybrid", "cursor": "update_at", "id": "id"},
            "write_mode": "merge",
            "primary_key": ["id"],
            "dist_key": "id",
            "sort_key": ["update_at", "id"],
        }
    )
    data["quality"] = {"reconcile_tables": [CLAIMS]}
    return Config.model_validate(data), src


@contextmanager
def opened(cfg: Config) -> Iterator[Warehouse]:
    wh = open_warehouse(cfg.warehouse, stage=Stage(cfg.stage))
    wh.connect()
    try:
        yield wh
    finally:
        wh.close()


def _count(wh: Warehouse, schema: str, table: str) -> int:
    return int(wh.scalar(f"SELECT COUNT(*) FROM {wh.t(schema, table)}") or 0)


def run_scenario(cfg: Config, src: Source) -> list[str]:
    """Run every step (see the module docstring) and return the summary lines. Raises
    AssertionError at the first step whose result is wrong."""
    out: list[str] = []
    g = cfg.marts[0]
    uti = resolve(cfg, cfg.table("uni_tracking_info"), None, None)
    claims = resolve(cfg, cfg.table(CLAIMS), None, None)
    drv = Driver(src, busy_plan())
    totals: Counter[str] = Counter()
    claim_id = 0
    with opened(cfg) as wh:
        # 1. cycles: sync + marts (archive, reactivation, trim, NULL keys), raw trim
        cycles = 0
        for c in range(1, 135, 10):
            drv.until(day(c))
            for _ in range(3):
                claim_id += 1
                src.con.execute(
                    f"INSERT INTO {CLAIMS} VALUES (?, ?, ?, ?)",
                    (claim_id, claim_id % 5, claim_id * 10, day(c) - 60),
                )
            src.con.commit()
            summary = run_cycle_on(cfg, wh)
            assert summary.ok, summary.as_dict()
            cycles += 1
            for m in summary.marts:
                for what in ("archived", "reactivated", "trimmed", "null_keys"):
                    totals[f"{m.mart}.{what}"] += getattr(m, what)
        for mart in (UTI, ECS, UTS):
            assert totals[f"{mart}.archived"] and totals[f"{mart}.trimmed"], (mart, totals)
        assert totals[f"{UTI}.reactivated"], totals
        hist = wh.list_tables(g.schema_, g.history_prefix)
        out.append(
            f"cycles: {cycles} cycles; archived "
            + ", ".join(f"{m} {totals[f'{m}.archived']}" for m in (UTI, ECS, UTS))
            + f"; reactivated {totals[f'{UTI}.reactivated']} ({UTI}), "
            f"{totals[f'{ECS}.reactivated']} ({ECS}); history tables: {', '.join(hist)}"
        )

        # 2. trackline check
        report = run_checks(cfg, wh, send_alerts=False)
        errors = {r.name: r.error for r in report.results if r.status == "error"}
        assert not errors, errors
        statuses = Counter(r.status for r in report.results)
        out.append(
            f"check: {len(report.results)} checks ("
            + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
            + ")"
            + "".join(f"; {r.name}: {r.status}" for r in report.results if r.failed)
        )

        # 3. trackline reconcile claims: two rows deleted in the source
        src.con.execute(f"DELETE FROM {CLAIMS} WHERE id IN (2, 5)")
        src.con.commit()
        found = reconcile(cfg, wh, CLAIMS)
        assert found.deleted_count == 2 and found.missing_count == 0, found.as_dict()
        applied = reconcile(cfg, wh, CLAIMS, apply=True)
        assert applied.applied == 2, applied.as_dict()
        assert _count(wh, claims.target_schema, claims.target) == claim_id - 2
        out.append(f"reconcile {CLAIMS}: {found.deleted_count} deleted in the source, applied")

        # 4. trackline replay uni_tracking_info --from-batch <last>: idempotent
        last = int(
            wh.scalar(
                f"SELECT MAX(batch_id) FROM {wh.t(cfg.state_schema, 'batches')} "
                "WHERE table_key = ?",
                (uti.key,),
            )
            or 0
        )
    # (the raw trim may have removed some of the batch's rows: the replay brings them back)
    batches, rows = replay_table(cfg, "uni_tracking_info", from_batch=last)
    assert batches == 1 and rows > 0, (batches, rows)
    with opened(cfg) as wh:
        ref = wh.t(uti.target_schema, uti.target)
        once = sorted(wh.query(f"SELECT * FROM {ref}"), key=repr)
        in_batch = wh.scalar(f"SELECT COUNT(*) FROM {ref} WHERE {wh.q(BATCH_COL)} = ?", (last,))
        assert in_batch == rows, (in_batch, rows)
    assert replay_table(cfg, "uni_tracking_info", from_batch=last) == (1, rows)
    with opened(cfg) as wh:
        assert sorted(wh.query(f"SELECT * FROM {ref}"), key=repr) == once  # nothing changes
    out.append(f"replay uni_tracking_info from batch {last} (twice): {rows} rows, idempotent")

    # 5. trackline reset claims, then sync it again
    reset_table(cfg, CLAIMS)
    with opened(cfg) as wh:
        assert _count(wh, claims.target_schema, claims.target) == 0
    results = sync(cfg, [CLAIMS])
    assert [r.status for r in results] == ["ok"], [r.error for r in results]
    with opened(cfg) as wh:
        assert _count(wh, claims.target_schema, claims.target) == claim_id - 2
        out.append(f"reset {CLAIMS} + sync: {claim_id - 2} rows reloaded")

        # 6. maintenance
        job = maintenance_job(cfg, wh, NullReporter())
        assert job.status == "ok", job.error
        ran = job.detail.get("ran", {}) if job.detail else {}
        out.append(f"maintenance: {len(ran)} tables needed upkeep")
    return out
