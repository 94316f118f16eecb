"""The `trackline` command: thin commands, each calling one library function.

Only this module turns errors into exit codes and one-line messages; `--debug` shows the
traceback.
"""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from trackline.config import Config, load_config
from trackline.errors import TracklineError

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = (ctx.find_root().params or {}).get("debug", False)
        try:
            return fn(*args, **kwargs)
        except TracklineError as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            # Interrupted: SIGTERM too (`interrupt_on_signals`); what committed stays (G3)
            reason = str(exc) or "received SIGINT"
            click.echo(f"interrupted ({reason}): committed work stays", err=True)
            sys.exit(getattr(exc, "exit_code", 130))

    return wrapper  # type: ignore[return-value]


config_option = click.option(
    "--config",
    "-c",
    "config_path",
    default="trackline.yml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The YAML config file.",
)
log_option = click.option(
    "--log-format",
    type=click.Choice(["auto", "plain", "json", "rich", "quiet"]),
    default="auto",
    show_default=True,
    help="Progress bars in a terminal, lines otherwise.",
)


override_options = [
    click.option("--source-db", help="Source database, as given to `sync --source-db`."),
    click.option("--target-schema", help="Target schema, as given to `sync --target-schema`."),
]


def overrides(fn: F) -> F:
    for opt in reversed(override_options):
        fn = opt(fn)
    return fn


def _cfg(path: Path) -> Config:
    return load_config(path)


@click.group()
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="trackline")
def main(debug: bool) -> None:
    """trackline: MySQL → Parquet stage → warehouse, with an always-correct mart layer."""


@main.command()
@click.option(
    "--path",
    "out",
    default="trackline.yml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@handle_errors
def init(out: Path, force: bool) -> None:
    """Write a commented example config (order-tracking tables + a generic table)."""
    from trackline.examples import EXAMPLE_CONFIG

    if out.exists() and not force:
        raise click.ClickException(f"{out} exists; use --force to overwrite it")
    out.write_text(EXAMPLE_CONFIG)
    click.echo(f"wrote {out}; edit the connection settings, then run `trackline sync`")


@main.command()
@config_option
@click.option("--source-db", help="Source database (schema) for this run.")
@click.option("--target-schema", help="Target schema in the warehouse for this run.")
@click.option("--tables", "-t", multiple=True, help="Tables to sync (default: all in the config).")
@log_option
@handle_errors
def sync(
    config_path: Path,
    source_db: str | None,
    target_schema: str | None,
    tables: tuple[str, ...],
    log_format: str,
) -> None:
    """Extract new/changed rows, stage them as Parquet, load them, advance the watermarks."""
    from trackline.interrupts import interrupt_on_signals
    from trackline.report import make_reporter
    from trackline.sync import sync as run_sync

    cfg = _cfg(config_path)
    reporter = make_reporter(log_format)
    try:
        with interrupt_on_signals():
            results = run_sync(
                cfg,
                list(tables) or None,
                source_db=source_db,
                target_schema=target_schema,
                reporter=reporter,
            )
    finally:
        reporter.close()
    failed = [r for r in results if r.status != "ok"]
    for r in results:
        mark = "ok " if r.status == "ok" else "FAILED"
        click.echo(
            f"{mark} {r.table_key}: {r.rows:,} rows, {r.batches} batches, "
            f"{r.seconds:.1f}s, cursor {r.watermark or '-'}"
            + (f"  error: {r.error}" if r.error else "")
        )
    if failed:
        sys.exit(1)


@main.command()
@config_option
@overrides
@handle_errors
def status(config_path: Path, source_db: str | None, target_schema: str | None) -> None:
    """Per table: strategy, watermark, last run, rows moved, lag behind the source, last error."""
    from rich.console import Console
    from rich.table import Table

    from trackline.status import table_status

    cfg = _cfg(config_path)
    rows = table_status(cfg, source_db, target_schema)
    t = Table(title="trackline status")
    # the table name is never cut or wrapped: it is what the operator copies into commands
    t.add_column("table", no_wrap=True, min_width=max((len(r["table"]) for r in rows), default=5))
    for col in (
        "strategy",
        "watermark",
        "last run",
        "status",
        "rows (last)",
        "rows (total)",
        "lag",
        "last error",
    ):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["table"],
            r["strategy"],
            r["watermark"],
            r["last_run"],
            r["status"],
            f"{r['rows_last']:,}",
            f"{r['rows_total']:,}",
            r["lag"],
            r["error"] or "",
        )
    # a log or a pipe gets the table at its natural width (nothing cut at 160 columns)
    Console(width=None if sys.stdout.isatty() else 400).print(t)
    from trackline.load import open_warehouse
    from trackline.quality.status import status_lines, status_section

    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    try:
        for line in status_lines(status_section(cfg, wh)):
            click.echo(line)
    finally:
        wh.close()


@main.command()
@config_option
@click.argument("table")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@overrides
@handle_errors
def reset(
    config_path: Path, table: str, yes: bool, source_db: str | None, target_schema: str | None
) -> None:
    """Forget a table's watermark so the next sync reloads it from the start."""
    from trackline.status import reset_table

    cfg = _cfg(config_path)
    if not yes:
        click.confirm(f"reset the watermark of {table}? its target rows are deleted", abort=True)
    reset_table(cfg, table, source_db, target_schema)
    click.echo(f"{table}: watermark and target rows cleared; the next sync reloads it")


@main.command()
@config_option
@click.argument("table")
@click.option("--from-batch", type=int, default=1, show_default=True)
@overrides
@handle_errors
def replay(
    config_path: Path, table: str, from_batch: int, source_db: str | None, target_schema: str | None
) -> None:
    """Reload a table's staged batches (from the ledger) into its target, idempotently."""
    from trackline.status import replay_table

    cfg = _cfg(config_path)
    n, rows = replay_table(cfg, table, from_batch, source_db, target_schema)
    click.echo(f"{table}: replayed {n} batches ({rows:,} rows)")


def _register_optional() -> None:
    """Commands that live with their concept (marts, demo, checks) register themselves."""
    for module in (
        "trackline.marts.cli",
        "trackline.demo.cli",
        "trackline.quality.cli",
        "trackline.sqlplan.cli",
        "trackline.jobs.cli",
        "trackline.dims.cli",
    ):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(module.rsplit(".", 1)[0]):
                continue
            raise
        mod.register(main)


_register_optional()

if __name__ == "__main__":
    main()
