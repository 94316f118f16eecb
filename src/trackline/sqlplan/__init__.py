"""`trackline sql`: every statement a command would run on Redshift, without connecting to it.

The real library code runs against `Recorder` (`trackline.sqlplan.recorder`), a Redshift adapter
that records the SQL and answers every query with no rows, so the plan is the one of a first
run. This package sits above sync, marts and the checks (next to the CLI): it drives them; the
warehouse adapters below never import it.

A command's plan is a function in `PLANS` (a plain dict) that takes the config and the recorder
and calls library functions with it; `record` runs any such function.

``cycle`` is the real `run_cycle_on` over the plan's sync, with the mart engine in plan mode
(`trackline.marts.engine.MartPlan`): the marts read the raw columns the plan created, and as
a warehouse that answers no rows would make every mart step skip its work, each step shows its
statements as if it had some, with one history period (the current half-year). Cutoffs and
batch ranges are bound parameters (``?``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from trackline.config import Config, StageConfig
from trackline.errors import ConfigError
from trackline.extract.source import Source
from trackline.sqlplan.recorder import (
    PLACEHOLDER_ROLE,
    PLACEHOLDER_STAGE,
    MetadataSource,
    NoWriteStage,
    Recorder,
    Statement,
    plan_config,
)

if TYPE_CHECKING:
    from trackline.sync import Syncer, TableResult

PlanFn = Callable[[Config, Recorder], None]


def record(
    cfg: Config,
    fn: Callable[[Recorder], Any],
    *,
    iam_role: str | None = None,
    stage_url: str | None = None,
) -> list[str]:
    """Run `fn` against a fresh recorder (session setup included); return what it ran."""
    if stage_url is None:
        stage_url = cfg.stage.url if cfg.stage.url.startswith("s3://") else PLACEHOLDER_STAGE
    rec = Recorder(plan_config(cfg, iam_role), stage_url)
    rec.connect()
    fn(rec)
    return rec.sql()


def render_plan(
    cfg: Config, command: str, *, iam_role: str | None = None, stage_url: str | None = None
) -> list[str]:
    """Every statement `command` would run on Redshift for this config, without connecting to
    it. `iam_role` / `stage_url` fill in what the config lacks."""
    if command not in PLANS:
        raise ConfigError(
            f"`trackline sql` cannot plan {command!r}; it knows: {', '.join(sorted(PLANS))}"
        )
    plan = PLANS[command]
    return record(cfg, lambda rec: plan(cfg, rec), iam_role=iam_role, stage_url=stage_url)


# --------------------------------------------------------------------------- plans


def plan_state(cfg: Config, rec: Recorder) -> None:
    from trackline.state import StateStore

    StateStore(rec, cfg.state_schema).ensure()


def plan_syncer(cfg: Config, rec: Recorder) -> Syncer:
    """The real sync loop, over metadata-only sources and a stage that writes nothing."""
    from trackline.sync import Syncer

    class PlanSyncer(Syncer):
        def source(self, rt: Any) -> Source:
            return MetadataSource(super().source(rt))

        def _sync_incremental_after_snapshot(self, rt: Any, res: Any) -> None:
            return None  # it would repeat the same statements for the rows after the snapshot

    syncer = PlanSyncer(cfg, rec)
    syncer.stage = NoWriteStage(StageConfig(url=rec.stage_url))
    return syncer


def _require_ok(results: Sequence[TableResult]) -> None:
    for r in results:
        if r.status != "ok":
            raise ConfigError(f"cannot plan table {r.table}: {r.error}")


def plan_sync(cfg: Config, rec: Recorder) -> None:
    syncer = plan_syncer(cfg, rec)
    try:
        results = syncer.sync()
    finally:
        syncer.close()
    _require_ok(results)


def plan_cycle(cfg: Config, rec: Recorder) -> None:
    from trackline.marts.cycle import run_cycle_on
    from trackline.marts.engine import MartPlan
    from trackline.marts.history import Period
    from trackline.state import utcnow

    plan = MartPlan(raw_columns=rec.columns, period=Period.of(utcnow()))
    summary = run_cycle_on(cfg, rec, syncer=plan_syncer(cfg, rec), plan=plan)
    _require_ok(summary.sync)


PLANS: dict[str, PlanFn] = {"state": plan_state, "sync": plan_sync, "cycle": plan_cycle}

__all__ = [
    "PLACEHOLDER_ROLE",
    "PLACEHOLDER_STAGE",
    "PLANS",
    "PlanFn",
    "Recorder",
    "Statement",
    "record",
    "render_plan",
]
