"""`trackline dims history TABLE KEY…`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from trackline.cli import config_option, handle_errors, overrides
from trackline.config import load_config


def register(main: click.Group) -> None:
    @main.group()
    def dims() -> None:
        """Dimension tables (write_mode: scd2)."""

    @dims.command("history")
    @config_option
    @click.argument("table")
    @click.argument("key", nargs=-1, required=True)
    @click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
    @overrides
    @handle_errors
    def history_cmd(
        config_path: Path,
        table: str,
        key: tuple[str, ...],
        as_json: bool,
        source_db: str | None,
        target_schema: str | None,
    ) -> None:
        """Print the versions of one member of TABLE, oldest first. KEY: one value per
        natural-key column, in the order of `scd2.natural_key`."""
        from trackline.dims.history import history
        from trackline.load import open_warehouse

        cfg = load_config(config_path)
        wh = open_warehouse(cfg.warehouse)
        wh.connect()
        try:
            h = history(cfg, wh, table, key, source_db=source_db, target_schema=target_schema)
        finally:
            wh.close()
        if as_json:
            click.echo(json.dumps(h.as_dict()))
            return
        shown = ", ".join(f"{k}={v}" for k, v in h.key.items())
        click.echo(f"{h.table} ({shown}): {len(h.rows)} version(s)")
        if not h.rows:
            return
        text = [[("" if v is None else str(v)) for v in r] for r in h.rows]
        widths = [max(len(c), *(len(r[i]) for r in text)) for i, c in enumerate(h.columns)]
        click.echo("  ".join(c.ljust(w) for c, w in zip(h.columns, widths, strict=True)))
        for r in text:
            click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
