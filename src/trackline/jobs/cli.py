"""`trackline reconcile TABLE [--apply]` and `trackline explain [NAME]`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from trackline.config import Config
from trackline.options import handle_errors, log_option, pipeline_config


def reconcile_next(table: str, res: Any, applied: bool) -> list[str]:
    """What to do about what `trackline reconcile` found (it named counts only)."""
    out = []
    if res.deleted_count and not applied:
        out.append(
            f"next: `trackline reconcile {table} --apply` deletes the {res.deleted_count:,} "
            "keys deleted in the source from the target"
        )
    if res.missing_count:
        out.append(
            f"next: for the {res.missing_count:,} missing keys, `trackline replay {table}` "
            "loads the staged batches again (rows loaded once, then lost from the target); "
            f"`trackline reset {table}` reloads the whole table at the next sync; `trackline "
            "check` (runs.behind_watermark) says whether rows arrived behind the watermark"
        )
    return out


def register(main: click.Group) -> None:
    @main.command()
    @click.argument("name", required=False)
    @click.option("--json", "as_json", is_flag=True, help="Print the plans as JSON.")
    @handle_errors
    @pipeline_config
    def explain(cfg: Config, name: str | None, as_json: bool) -> None:
        """EXPLAIN every extraction query sent to MySQL (tables with a cursor and consolidation
        inputs; NAME: one of them), with the watermark in the state (else a last-hour read):
        index range or full scan, and the index that fixes a scan. Exit 1 on a scan."""
        from trackline.jobs.explain import explain as run
        from trackline.load import open_warehouse

        wh = open_warehouse(cfg.warehouse)
        wh.connect()
        try:
            found = run(cfg, wh, name)
        finally:
            wh.close()
        if as_json:
            click.echo(json.dumps([e.as_dict() for e in found], default=str))
        else:
            for e in found:
                # a query's plan names its aliases (`u`): the table is said beside it
                scanned = [
                    s if t == s else f"{s} ({t})"
                    for s, t in zip(e.scans, e.scanned_tables, strict=True)
                ]
                verdict = "index range" if e.ok else f"FULL SCAN of {', '.join(scanned)}"
                click.echo(f"{e.what}: {verdict} (from {e.watermark})")
                for p in e.plan:
                    click.echo(
                        f"  {p['table']}: {p['type']} key={p['key'] or '-'} rows={p['rows']}"
                    )
                if e.suggest:
                    click.echo(f"  fix: {e.suggest};")
                for s, t in zip(e.scans, e.scanned_tables, strict=True):
                    if t != e.cursor_table:  # a joined table: no cursor index helps it
                        click.echo(
                            f"  fix for {s if s == t else f'{s} ({t})'}: an index on the "
                            "columns it is joined or filtered on"
                        )
        if not all(e.ok for e in found):
            sys.exit(1)

    @main.command()
    @log_option
    @click.argument("table")
    @click.option(
        "--apply", is_flag=True, help="Delete from the target the keys deleted in the source."
    )
    @click.option(
        "--chunk",
        type=click.IntRange(min=1),
        default=1_000_000,
        show_default=True,
        help="Keys per range (a differing range is compared key by key in memory).",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @handle_errors
    @pipeline_config
    def reconcile(
        cfg: Config, log_format: str, table: str, apply: bool, chunk: int, as_json: bool
    ) -> None:
        """Compare a merge target's keys with its source: keys deleted in the source (report,
        or --apply to delete them) and keys the sync should have loaded but did not (exit 1)."""
        from trackline.jobs.reconcile import reconcile as run
        from trackline.load import open_warehouse
        from trackline.report import make_reporter

        reporter = make_reporter("quiet" if as_json and log_format == "auto" else log_format)
        wh = open_warehouse(cfg.warehouse)
        wh.connect()
        try:
            res = run(cfg, wh, table, apply=apply, chunk=chunk, reporter=reporter)
        finally:
            wh.close()
            reporter.close()
        if as_json:
            click.echo(json.dumps(res.as_dict()))
        else:
            click.echo(
                f"{res.table_key} (key {res.key}): {res.ranges} ranges, "
                f"{res.ranges_compared} compared key by key"
            )
            click.echo(
                f"  deleted in the source: {res.deleted_count:,}"
                + (f" (deleted from the target: {res.applied:,})" if apply else "")
                + (f"  e.g. {', '.join(map(str, res.deleted[:10]))}" if res.deleted else "")
            )
            click.echo(
                f"  missing (should have been loaded): {res.missing_count:,}"
                + (f"  e.g. {', '.join(map(str, res.missing[:10]))}" if res.missing else "")
            )
            click.echo(f"  pending (the next sync brings them): {res.pending_count:,}")
            for line in reconcile_next(table, res, apply):
                click.echo(line)
        if not res.ok:
            sys.exit(1)
