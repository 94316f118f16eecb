"""`trackline cycle`, `trackline history`, `trackline migrate`, `trackline exceptions …`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from trackline.config import Config
from trackline.options import handle_errors, log_option, pipeline_config


def print_summary(summary: object) -> None:
    from trackline.marts.cycle import CycleSummary

    assert isinstance(summary, CycleSummary)
    for r in summary.sync:
        mark = "ok " if r.status == "ok" else "FAILED" if r.status == "failed" else r.status
        click.echo(
            f"{mark} sync  {r.table_key}: {_rows(r.rows)} ({r.seconds:.1f}s)"
            + (f"  error: {r.error}" if r.error else "")
        )
        for w in r.warnings:  # drift applied, zero dates, a held upper bound: said, not only logged
            click.echo(f"      warning: {w}")
    for m in summary.marts:
        steps = " ".join(f"{k}={v:.2f}s" for k, v in m.steps.items())
        click.echo(
            f"ok  mart  {m.mart}: in {m.rows_in:,}, inserted {m.inserted:,}, "
            f"updated {m.updated:,}, reactivated {m.reactivated:,}, archived {m.archived:,}, "
            f"trimmed {m.trimmed:,}, exceptions {m.exceptions:,}, null keys {m.null_keys:,}"
            + (f", gone from the source {m.gone:,}" if m.gone else "")
            + f" ({m.seconds:.2f}s"
            + (f": {steps})" if steps else ")")
        )
    for k, n in summary.raw_trimmed.items():
        click.echo(f"ok  raw   {k}: {n:,} consumed rows past the buffer trimmed")
    click.echo(
        f"cycle {summary.run_id} finished in {summary.seconds:.1f}s: {summary_outcome(summary)}"
    )


def print_ended(summary: object) -> None:
    """What a cycle that ended early (another run's lock, an error, a stop) had done: the
    tables it synced (their batches are committed), then that no mart was built by it."""
    from trackline.marts.cycle import CycleSummary

    assert isinstance(summary, CycleSummary)
    for r in summary.sync:
        mark = "ok " if r.status == "ok" else "FAILED" if r.status == "failed" else r.status
        click.echo(f"{mark} sync  {r.table_key}: {_rows(r.rows)} committed ({r.seconds:.1f}s)")
    built = [m.mart for m in summary.marts]
    click.echo(
        f"cycle {summary.run_id} ended after {summary.seconds:.1f}s (the error follows): "
        + (f"marts built: {', '.join(built)}; " if built else "no mart was built; ")
        + "what it committed stays, and the next cycle goes on from there"
    )


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def summary_outcome(summary: object) -> str:
    """The cycle's status (as `trackline status` lists it) and, when a table failed, which
    ones and what happens next."""
    from trackline.marts.cycle import CycleSummary

    assert isinstance(summary, CycleSummary)
    failed = [r.table for r in summary.sync if r.status != "ok"]
    if not failed:
        return "ok"
    retried = "the next cycle retries them from their watermarks" + (
        ""
        if all(r.retryable for r in summary.sync if r.status != "ok")
        else " once the error above is fixed"
    )
    return (
        f"partial: {len(failed)} of {len(summary.sync)} tables failed ({', '.join(failed)}); "
        "nothing of theirs past their last committed batch was loaded, the marts were built "
        f"from what the other tables loaded; {retried}"
    )


def _group_of(cfg: Config, where: str) -> str | None:
    """The retention group whose exceptions table is `where` (`schema.table`)."""
    for g in cfg.marts:
        if f"{g.schema_}.{g.exceptions_table}" == where:
            return g.name
    return None


def register(main: click.Group) -> None:
    @main.command()
    @log_option
    @click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
    @handle_errors
    @pipeline_config
    def cycle(cfg: Config, log_format: str, as_json: bool) -> None:
        """One full cycle: sync all tables, build the marts (anchor first), trim raw."""
        from trackline.interrupts import interrupt_on_signals
        from trackline.marts.cycle import run_cycle
        from trackline.report import make_reporter

        reporter = make_reporter(log_format)
        try:
            with interrupt_on_signals():  # SIGTERM unwinds and is recorded, like Ctrl-C
                summary = run_cycle(cfg, reporter)
        except BaseException as exc:
            partial = getattr(exc, "cycle_summary", None)
            if partial is not None and not as_json:
                print_ended(partial)
            raise
        finally:
            reporter.close()
        if as_json:
            click.echo(json.dumps(summary.as_dict(), indent=1, default=str))
        else:
            print_summary(summary)
        if not summary.ok:
            sys.exit(1)

    @main.command()
    @handle_errors
    @pipeline_config
    def history(cfg: Config) -> None:
        """List the history period tables and their row counts."""
        from trackline.marts.status import history_tables

        rows = history_tables(cfg)
        if not rows:  # said, not an empty screen: periods are created when rows first age out
            click.echo(
                "no history period tables yet (a mart's first one is created when its rows "
                "first pass the retention cutoff)"
            )
        for row in rows:
            click.echo(f"{row['schema']}.{row['table']:<40} {row['rows']:>12,}  ({row['mart']})")

    @main.command()
    @log_option
    @click.argument("table")
    @handle_errors
    @pipeline_config
    def migrate(cfg: Config, log_format: str, table: str) -> None:
        """Apply TABLE's widened source column types that the warehouse cannot ALTER in place
        (Redshift: INT → BIGINT, DECIMAL digits): rebuild its raw table, its marts and their
        history periods with the new types, in one transaction."""
        from trackline.load import open_warehouse
        from trackline.marts.migrate import migrate as run
        from trackline.report import make_reporter
        from trackline.stage import Stage

        reporter = make_reporter(log_format)
        wh = open_warehouse(cfg.warehouse, stage=Stage(cfg.stage))
        wh.connect()
        try:
            res = run(cfg, wh, table, reporter=reporter)
        finally:
            wh.close()
            reporter.close()
        if not res.columns:
            click.echo(f"{res.table_key}: no widened column to apply")
            return
        click.echo(f"{res.table_key}: {', '.join(res.columns)}")
        for t in res.rebuilt:
            click.echo(f"  rebuilt {t}")

    @main.group()
    def exceptions() -> None:
        """Rows the pipeline refused to lose silently."""

    @exceptions.command("list")
    @click.option("--status", type=click.Choice(["open", "resolved", "all"]), default="open")
    @click.option("--limit", type=int, default=100)
    @handle_errors
    @pipeline_config
    def list_(cfg: Config, status: str, limit: int) -> None:
        """List exceptions (open by default)."""
        from trackline.marts.status import list_exceptions

        rows = list_exceptions(cfg, None if status == "all" else status, limit)
        if not rows:
            click.echo("no exceptions")
        places: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            places.setdefault(r["where"], []).append(r)
        from trackline.quality.checks import STATE_EXCEPTIONS

        run_level = f"{cfg.state_schema}.{STATE_EXCEPTIONS}"
        for where, shown in places.items():
            total = shown[0]["where_total"]
            cut = f" (the first {len(shown):,} of {total:,})" if total > len(shown) else ""
            # ids repeat across these tables: say which option resolves one of this table's
            how = (
                "  [resolve with --run-level]"
                if where == run_level
                else f"  [resolve with --group {group}]"
                if len(cfg.marts) > 1 and (group := _group_of(cfg, where))
                else ""
            )
            click.echo(f"-- {where}{cut}{how}")
            for r in shown:
                click.echo(
                    f"#{r['id']:<6} {r['status']:<8} {r['check_name']:<24} "
                    f"{r['table_name']}  key={r['key_value']}  {r['detail']}"
                )
            if cut:
                click.echo(
                    f"   … {total - len(shown):,} more in {where}: --limit {total} shows them all"
                )

    @exceptions.command("resolve")
    @click.argument("exception_id", type=int)
    @click.option("--note", required=True, help="What was done about it.")
    @click.option("--group", default=None, help="Retention group (default: the first).")
    @click.option(
        "--run-level",
        is_flag=True,
        help="An exception of `trackline check`'s run-level checks (listed under "
        "trackline.check_exceptions).",
    )
    @handle_errors
    @pipeline_config
    def resolve(
        cfg: Config, exception_id: int, note: str, group: str | None, run_level: bool
    ) -> None:
        """Mark an exception resolved: its row becomes trimmable again."""
        from trackline.marts.status import resolve_exception

        where = resolve_exception(cfg, exception_id, note, group, run_level)
        click.echo(f"exception {exception_id} resolved (in {where})")
