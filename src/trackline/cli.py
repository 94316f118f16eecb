"""The `trackline` command: thin commands, each calling one library function.

Only this module turns errors into exit codes and one-line messages; `--debug` shows the
traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from trackline.config import Config
from trackline.options import (
    config_option,
    handle_errors,
    log_option,
    overrides,
    pipeline_config,
)

__all__ = [
    "config_option",
    "handle_errors",
    "log_option",
    "main",
    "overrides",
    "pipeline_config",
]


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
    click.echo(f"wrote {out}. Next:\n" + next_steps(out))


def next_steps(out: Path) -> str:
    """What to run after `trackline init` (the README's Quick start, for this file)."""
    c = "" if out == Path("trackline.yml") else f" -c {out}"
    return (
        "  export KUAISONG_HOST=… KUAISONG_USER=… KUAISONG_PASSWORD=…   "
        "# the source (KUAISONG_DATABASE if not `kuaisong`)\n"
        f"  trackline sync{c}                # first load of every table (or -t TABLE …)\n"
        f"  trackline status{c}              # watermark, rows, lag per table\n"
        f"  trackline cycle{c}               # sync + marts; `trackline run{c}` repeats it\n"
        f"  trackline check{c}               # data-quality checks\n"
        "Another source database or target schema: add --source-db DB / --target-schema S "
        "to every command (each source database keeps its own watermarks)."
    )


@main.command()
@click.option("--tables", "-t", multiple=True, help="Tables to sync (default: all in the config).")
@log_option
@handle_errors
@pipeline_config
def sync(cfg: Config, tables: tuple[str, ...], log_format: str) -> None:
    """Extract new/changed rows, stage them as Parquet, load them, advance the watermarks."""
    from trackline.interrupts import interrupt_on_signals
    from trackline.report import make_reporter
    from trackline.sync import sync as run_sync

    reporter = make_reporter(log_format)
    try:
        with interrupt_on_signals():
            results = run_sync(cfg, list(tables) or None, reporter=reporter)
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
        for w in r.warnings:  # drift applied, zero dates, a held upper bound: said, not only logged
            click.echo(f"      warning: {w}")
    if failed:
        sys.exit(1)


@main.command()
@handle_errors
@pipeline_config
def status(cfg: Config) -> None:
    """Per table: strategy, watermark, last run, rows moved, lag behind the source, last error."""
    from rich.console import Console
    from rich.table import Table

    from trackline.status import table_status

    rows = table_status(cfg)
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
@click.argument("table")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@handle_errors
@pipeline_config
def reset(cfg: Config, table: str, yes: bool) -> None:
    """Forget a table's watermark so the next sync reloads it from the start."""
    from trackline.status import reset_table

    if not yes:
        click.confirm(f"reset the watermark of {table}? its target rows are deleted", abort=True)
    key, others = reset_table(cfg, table)
    click.echo(f"{table}: target {key} emptied and its watermark cleared; the next sync reloads it")
    if others:
        click.echo(
            f"{key} was also loaded from {', '.join(others)}: their watermarks were cleared "
            "too; reload each with `trackline sync --source-db DB`"
        )


@main.command()
@click.argument("table")
@click.option("--from-batch", type=int, default=1, show_default=True)
@handle_errors
@pipeline_config
def replay(cfg: Config, table: str, from_batch: int) -> None:
    """Reload a table's staged batches (from the ledger) into its target, idempotently."""
    from trackline.status import replay_table

    n, rows = replay_table(cfg, table, from_batch)
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
        "trackline.consolidate.cli",
        "trackline.compare.cli",
        "trackline.backfill.cli",
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
