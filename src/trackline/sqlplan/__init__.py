"""`trackline sql`: every statement a command would run on Redshift, without connecting to it.

The real library code runs against `Recorder` (`trackline.sqlplan.recorder`), a Redshift adapter
that records the SQL and answers queries with no rows, so a plan is the one of a first run.
This package sits above sync, marts, jobs and the checks (next to the CLI): it drives them; the
warehouse adapters below never import it.

A command's plan is a function in `PLANS` (a plain dict, `trackline.sqlplan.commands`) that
takes the config, the recorder and the tables named, and calls the command's library function
with the recorder; `record` runs any such function.

``cycle`` is the real `run_cycle_on` over the plan's sync, with the mart engine in plan mode
(`trackline.marts.engine.MartPlan`): the marts read the raw columns the plan created, and as
a warehouse that answers no rows would make every mart step skip its work, each step shows its
statements as if it had some, with one history period (the current half-year), created before
any step reads it. Cutoffs and batch ranges are bound parameters (``?``).

Each script runs top to bottom on an empty database, in the order of `PLANS` (the commands
after ``cycle`` expect what a cycle creates).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trackline.config import Config, RedshiftWarehouse
from trackline.errors import ConfigError
from trackline.sqlplan.commands import PLANS, PlanFn
from trackline.sqlplan.recorder import (
    PLACEHOLDER_ROLE,
    PLACEHOLDER_STAGE,
    Recorder,
    Statement,
    plan_config,
)


def stage_url_of(cfg: Config, stage_url: str | None = None) -> str:
    if stage_url:
        return stage_url
    return cfg.stage.url if cfg.stage.url.startswith("s3://") else PLACEHOLDER_STAGE


def placeholders(
    cfg: Config, *, iam_role: str | None = None, stage_url: str | None = None
) -> list[str]:
    """What a plan of this config makes up (said on stderr: the script needs it filled in)."""
    out = []
    if not iam_role and not isinstance(cfg.warehouse, RedshiftWarehouse):
        out.append(
            f"the config's warehouse is not Redshift: COPY names the placeholder role "
            f"{PLACEHOLDER_ROLE} (give --iam-role)"
        )
    if stage_url_of(cfg, stage_url) == PLACEHOLDER_STAGE:
        out.append(
            f"the config's stage.url is not on S3: COPY reads from the placeholder "
            f"{PLACEHOLDER_STAGE} (give --stage-url)"
        )
    return out


def record_statements(
    cfg: Config,
    fn: Callable[[Recorder], Any],
    *,
    iam_role: str | None = None,
    stage_url: str | None = None,
    compat: bool = False,
) -> list[Statement]:
    """Run `fn` against a fresh recorder (session setup included); return what it ran, with
    the parameters. `compat`: as the adapter runs in compat mode on PostgreSQL."""
    rec = Recorder(plan_config(cfg, iam_role, compat=compat), stage_url_of(cfg, stage_url))
    rec.connect()
    fn(rec)
    return list(rec.recorded)


def record(
    cfg: Config,
    fn: Callable[[Recorder], Any],
    *,
    iam_role: str | None = None,
    stage_url: str | None = None,
) -> list[str]:
    """`record_statements`, the SQL only."""
    return [s.sql for s in record_statements(cfg, fn, iam_role=iam_role, stage_url=stage_url)]


def plan_statements(
    cfg: Config,
    command: str,
    tables: Sequence[str] = (),
    *,
    iam_role: str | None = None,
    stage_url: str | None = None,
    compat: bool = False,
) -> list[Statement]:
    if command not in PLANS:
        raise ConfigError(f"`trackline sql` cannot plan {command!r}; it knows: {', '.join(PLANS)}")
    plan = PLANS[command]
    return record_statements(
        cfg,
        lambda rec: plan(cfg, rec, tables),
        iam_role=iam_role,
        stage_url=stage_url,
        compat=compat,
    )


def render_plan(
    cfg: Config,
    command: str,
    tables: Sequence[str] = (),
    *,
    iam_role: str | None = None,
    stage_url: str | None = None,
) -> list[str]:
    """Every statement `command` would run on Redshift for this config, without connecting to
    it. `iam_role` / `stage_url` fill in what the config lacks."""
    statements = plan_statements(cfg, command, tables, iam_role=iam_role, stage_url=stage_url)
    return [s.sql for s in statements]


__all__ = [
    "PLACEHOLDER_ROLE",
    "PLACEHOLDER_STAGE",
    "PLANS",
    "PlanFn",
    "Recorder",
    "Statement",
    "placeholders",
    "plan_statements",
    "record",
    "record_statements",
    "render_plan",
]
