"""`trackline sql --engine redshift <command>`: print, without connecting to the warehouse,
every statement a command would run, so a DBA can review it before the first production run."""

from __future__ import annotations

from pathlib import Path

import click


def register(main: click.Group) -> None:
    from trackline.cli import config_option, handle_errors

    @main.command("sql")
    @config_option
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
    @handle_errors
    def sql(
        config_path: Path,
        engine: str,
        iam_role: str | None,
        stage_url: str | None,
        command: str,
    ) -> None:
        """Print the SQL that COMMAND (sync, state, cycle) would run, as for a first run.

        Sources are read for their metadata only (columns, keys, clock); `?` marks a bound
        parameter. `cycle` adds, after the sync, every mart step of a cycle as if each had
        work to do, with one history period (the current half-year).
        """
        from trackline.config import load_config
        from trackline.sqlplan import render_plan

        cfg = load_config(config_path)
        for statement in render_plan(cfg, command, iam_role=iam_role, stage_url=stage_url):
            click.echo(f"{statement.rstrip()};\n")
