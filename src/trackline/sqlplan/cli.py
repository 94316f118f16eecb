"""`trackline sql --engine redshift <command>`: print, without connecting to the warehouse,
every statement a command would run, so a DBA can review it before the first production run."""

from __future__ import annotations

import click

from trackline.config import Config
from trackline.options import handle_errors, pipeline_config


def register(main: click.Group) -> None:
    @main.command("sql")
    @click.option(
        "--engine",
        type=click.Choice(["redshift"]),
        default="redshift",
        show_default=True,
        help="The warehouse engine whose SQL to print.",
    )
    @click.option(
        "--iam-role",
        help="IAM role ARN for COPY (default: the config's, or a placeholder when its "
        "warehouse is not Redshift).",
    )
    @click.option(
        "--stage-url",
        help="s3://bucket/prefix of the stage (default: the config's, or a placeholder when "
        "it is not on S3).",
    )
    @click.argument("command")
    @click.argument("tables", nargs=-1)
    @handle_errors
    @pipeline_config
    def sql(
        cfg: Config,
        engine: str,
        iam_role: str | None,
        stage_url: str | None,
        command: str,
        tables: tuple[str, ...],
    ) -> None:
        """Print the SQL that COMMAND would run: state, sync, cycle (as a first run on an empty
        warehouse), check, reconcile, replay, reset, maintenance, migrate (as right after the
        first cycle), drift (a cycle after each source table gained a column and its first
        VARCHAR doubled), consolidate, compare. TABLES limits sync, reconcile, replay, reset,
        migrate and drift to those tables.

        Sources are read for their metadata only (columns, keys, clock); `?` marks a bound
        parameter. `cycle` adds, after the sync, every mart step of a cycle as if each had
        work to do, with one history period (the current half-year). Each script runs top to
        bottom on an empty database when the scripts run in the order above.
        """
        from trackline.sqlplan import placeholders, render_plan

        statements = render_plan(cfg, command, tables, iam_role=iam_role, stage_url=stage_url)
        for note in placeholders(cfg, iam_role=iam_role, stage_url=stage_url):
            click.echo(f"note: {note}", err=True)
        for statement in statements:
            click.echo(f"{statement.rstrip()};\n")
