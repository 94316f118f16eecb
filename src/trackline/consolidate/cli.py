"""`trackline consolidate [NAME] [--json]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from trackline.config import load_config
from trackline.options import config_option, handle_errors, log_option


def register(main: click.Group) -> None:
    @main.command()
    @config_option
    @log_option
    @click.argument("name", required=False)
    @click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
    @handle_errors
    def consolidate(config_path: Path, log_format: str, name: str | None, as_json: bool) -> None:
        """Run one consolidation (default: every one in `consolidations:`): stage every input,
        then merge the pending rows into the target in one transaction. Exit 1 if one failed
        (nothing of that run reached its target)."""
        from trackline.consolidate import consolidate as run
        from trackline.load import open_warehouse
        from trackline.report import make_reporter

        cfg = load_config(config_path)
        reporter = make_reporter("quiet" if as_json and log_format == "auto" else log_format)
        wh = open_warehouse(cfg.warehouse)
        wh.connect()
        try:
            results = run(cfg, wh, [name] if name else None, reporter)
        finally:
            wh.close()
            reporter.close()
        if as_json:
            click.echo(json.dumps([r.as_dict() for r in results], default=str))
        else:
            for r in results:
                per_input = ", ".join(f"{i.input} {i.rows:,}" for i in r.inputs)
                click.echo(
                    f"{r.name}: {r.status}; staged {per_input or 'nothing'}; "
                    f"merged {r.merged:,} rows in {r.seconds:.1f}s"
                    + (f" ({r.null_keys} with a NULL key skipped)" if r.null_keys else "")
                    + (
                        f"; {r.pending:,} staged rows pending for the next run"
                        if not r.ok and r.pending
                        else ""
                    )
                )
                if r.error:
                    click.echo(f"  error: {r.error}", err=True)
        if not all(r.ok for r in results):
            sys.exit(1)
