"""`trackline backfill plan | run | handoff | status`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from trackline.config import Config
from trackline.options import handle_errors, log_option, pipeline_config

_tables = click.option(
    "--tables",
    "-t",
    "tables",
    multiple=True,
    help="Pipeline tables (`backfill.tables[].table`), repeated or comma-separated; "
    "default: every one.",
)
_range = [
    click.option("--start", help="First instant backfilled: YYYY-MM, YYYY-MM-DD or a time (UTC)."),
    click.option("--end", help="First instant NOT backfilled (exclusive), same forms."),
    click.option(
        "--chunk",
        "unit",
        type=click.Choice(["month", "week", "day"]),
        help="Chunk size (default: backfill.chunk).",
    ),
]
_json = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _names(tables: tuple[str, ...]) -> list[str] | None:
    out = [n.strip() for item in tables for n in item.split(",") if n.strip()]
    return out or None


def _when(option: str, value: str | None) -> Any:
    from trackline.backfill.chunks import parse_when

    return parse_when(option, value) if value else None


def _ranged(fn: Any) -> Any:
    for opt in reversed(_range):
        fn = opt(fn)
    return fn


def register(main: click.Group) -> None:
    @main.group()
    def backfill() -> None:
        """Load history from the legacy DW by chunk, then hand over to the incremental sync."""

    @backfill.command("plan")
    @_tables
    @_ranged
    @click.option("--exact", is_flag=True, help="Count each chunk's rows (default: estimate).")
    @_json
    @handle_errors
    @pipeline_config
    def plan_cmd(
        cfg: Config,
        tables: tuple[str, ...],
        start: str | None,
        end: str | None,
        unit: str | None,
        exact: bool,
        as_json: bool,
    ) -> None:
        """Print the chunks, rows per chunk, conversions and the handoff point (read-only)."""
        from trackline.backfill.plan import plan

        res = plan(
            cfg,
            _names(tables),
            start=_when("--start", start),
            end=_when("--end", end),
            unit=unit,  # type: ignore[arg-type]
            exact=exact,
        )
        if as_json:
            click.echo(json.dumps(res, default=str))
            return
        for p in res:
            a, b = p["range"]
            click.echo(
                f"{p['table']} → {p['key']} from {p['legacy']}, by {p['time_column']}: "
                f"[{a}, {b}) in {len(p['chunks'])} {p['unit']} chunks, "
                f"{p['rows']:,} rows {p['rows_are']}"
            )
            for c in p["chunks"]:
                n = c.get("count", c.get("estimate", 0))
                click.echo(f"  {c['no']:>4}  {c['label']:<12} {n:>14,}")
            for v in p["conversions"]:
                click.echo(f"  convert {v['column']}: {v['legacy']}  ({v['from']} → {v['to']})")
            h = p["handoff"]
            click.echo(
                f"  handoff: {h['source_db']} watermark at {h['point']} (its upper bound now "
                f"{h['upper']}, newest legacy row {h['legacy_newest']}, its oldest row "
                f"{h['incremental_oldest']})"
            )
            for w in p["warnings"]:
                click.echo(f"  warning: {w}")

    @backfill.command("run")
    @_tables
    @_ranged
    @click.option("--workers", type=click.IntRange(min=1), help="Tables at once.")
    @click.option("--batch-size", type=click.IntRange(min=1), help="Rows per staged batch.")
    @click.option("--handoff", "then_handoff", is_flag=True, help="Hand off when all are in.")
    @click.option("--force", is_flag=True, help="Backfill although the sync is past the point.")
    @log_option
    @_json
    @handle_errors
    @pipeline_config
    def run_cmd(
        cfg: Config,
        tables: tuple[str, ...],
        start: str | None,
        end: str | None,
        unit: str | None,
        workers: int | None,
        batch_size: int | None,
        then_handoff: bool,
        force: bool,
        log_format: str,
        as_json: bool,
    ) -> None:
        """Load every chunk not loaded yet (rerun it to resume); exit 1 if a table failed."""
        from trackline.backfill.run import run
        from trackline.interrupts import interrupt_on_signals
        from trackline.report import make_reporter

        reporter = make_reporter("quiet" if as_json and log_format == "auto" else log_format)
        names = _names(tables)
        try:
            with interrupt_on_signals():
                res = run(
                    cfg,
                    names,
                    start=_when("--start", start),
                    end=_when("--end", end),
                    unit=unit,  # type: ignore[arg-type]
                    workers=workers,
                    batch_size=batch_size,
                    force=force,
                    reporter=reporter,
                )
        finally:
            reporter.close()
        failed = [r for r in res if r.status != "ok"]
        if as_json:
            click.echo(json.dumps([r.__dict__ for r in res], default=str))
        else:
            for r in res:
                mark = "ok " if r.status == "ok" else r.status.upper()
                click.echo(
                    f"{mark} {r.key or r.table}: {r.loaded} chunks loaded ({r.rows:,} rows), "
                    f"{r.skipped} already in, {r.chunks} in all, {r.retried} failed attempts "
                    "(rolled back), "
                    f"{r.seconds:.1f}s" + (f"  error: {r.error}" if r.error else "")
                )
        if failed:
            sys.exit(1)
        if then_handoff:
            _do_handoff(cfg, names, False)

    @backfill.command("handoff")
    @_tables
    @click.option("--force", is_flag=True, help="Move a sync that is past the point back to it.")
    @handle_errors
    @pipeline_config
    def handoff_cmd(cfg: Config, tables: tuple[str, ...], force: bool) -> None:
        """Set each table's incremental watermark to its backfill's handoff point."""
        _do_handoff(cfg, _names(tables), force)

    @backfill.command("status")
    @_tables
    @click.option("--chunks", "show_chunks", is_flag=True, help="One line per chunk attempt.")
    @_json
    @handle_errors
    @pipeline_config
    def status_cmd(cfg: Config, tables: tuple[str, ...], show_chunks: bool, as_json: bool) -> None:
        """Chunks done / failed per backfill, legacy vs loaded rows, the handoff state."""
        from trackline.backfill.handoff import status
        from trackline.load import open_warehouse

        wh = open_warehouse(cfg.warehouse)
        wh.connect()
        try:
            res = status(cfg, wh, _names(tables))
        finally:
            wh.close()
        if as_json:
            click.echo(json.dumps(res, default=str))
            return
        if not res:
            click.echo("no backfill recorded")
        for s in res:
            a, b = s["range"]
            handed = (
                f"handed off at {s['handed_off_at']:%Y-%m-%d %H:%M:%S}"
                if s["handed_off_at"]
                else "not handed off"
            )
            of_done = " (of the done chunks)" if s["done"] < s["chunks"] else ""
            click.echo(
                f"{s['table']} ({s['key']}) from {s['legacy']}, [{a}, {b}) by {s['unit']}: "
                f"{s['done']}/{s['chunks']} chunks done, {s['failed_attempts']} failed "
                f"attempts, rows legacy {s['rows_legacy']:,} / loaded {s['rows_loaded']:,}"
                + of_done
            )
            if s["failed_not_done"]:
                click.echo(
                    "  failed, not done yet: chunks "
                    + ", ".join(str(n) for n in s["failed_not_done"])
                    + f" (`trackline backfill run -t {s['table']}` again loads them; done "
                    "chunks are skipped)"
                )
            click.echo(
                f"  handoff point {s['handoff_point']} ({handed}); incremental watermark "
                f"({s['incremental_source_db']}): {s['incremental_watermark']}"
            )
            if show_chunks:
                for c in s["chunk_rows"]:
                    click.echo(
                        f"  chunk {c['chunk']:>4} {c['status']:<6} attempt {c['attempt']}: "
                        + (
                            f"legacy {c['legacy_rows']:,}, loaded {c['loaded_rows']:,}, "
                            + (
                                f"batches {c['batches'][0]}..{c['batches'][1]}"
                                if c["batches"][0] is not None
                                else "no batch"
                            )
                            if c["status"] == "done"
                            else "rolled back"
                        )
                        + (f"  {c['error']}" if c["error"] else "")
                    )


def _do_handoff(cfg: Config, names: list[str] | None, force: bool) -> None:
    from trackline.backfill.handoff import handoff
    from trackline.load import open_warehouse

    wh = open_warehouse(cfg.warehouse)
    wh.connect()
    res: list[Any] = []
    try:
        handoff(cfg, wh, names, force=force, done=res)
    finally:
        wh.close()
        for h in res:  # also those handed off before a refusal: they are committed
            what = {
                "set": f"incremental watermark set to {h.point} (inclusive; was {h.before})",
                "already": f"already handed off (watermark {h.before})",
                "kept": f"no legacy row in the range: the watermark stays {h.before}",
            }[h.status]
            click.echo(f"{h.table} ({h.key}): {what}")
