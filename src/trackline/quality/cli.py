"""`trackline check`, `trackline run [--once]`, `trackline report --html FILE`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from trackline.config import Config
from trackline.options import handle_errors, log_option, pipeline_config


def _value(v: Any) -> str:
    text = str(v)
    return text if len(text) <= 40 else text[:37] + "…"


def print_report(report: Any, show_sql: bool = True) -> None:
    from trackline.quality.run import CheckReport

    assert isinstance(report, CheckReport)
    for r in report.results:
        mark = {"pass": "ok  ", "fail": "FAIL", "error": "ERR "}[r.status]
        line = f"{mark} [{r.severity:<8}] {r.name}"
        if r.status == "fail":
            line += f": {r.failing_count:,} failing, {r.new_count:,} new"
            if r.sample_keys:
                line += f" (keys {', '.join(r.sample_keys[:5])})"
        if r.resolved_count:
            line += f"; {r.resolved_count:,} passed again and were resolved"
        if r.error:
            line += f": {r.error}"
        click.echo(line)
        if r.failed and show_sql:
            if r.description:
                click.echo(f"       {r.description}")
            if r.sample and r.columns:
                click.echo("       " + " | ".join(r.columns))
                for row in r.sample[:5]:
                    click.echo("       " + " | ".join(_value(v) for v in row))
            click.echo("       SQL:")
            for s in r.sql.splitlines():
                click.echo(f"         {s}")
            if r.params:
                click.echo(f"         -- parameters: {', '.join(map(str, r.params))}")
    for d in report.deliveries:
        if not d.ok:
            click.echo(f"alert channel {d.channel} FAILED: {d.error}", err=True)
    failed = report.failed
    click.echo(
        f"check run {report.run_id}: {len(report.results)} checks, {len(failed)} failing "
        f"({sum(r.blocking for r in failed)} blocking), "
        f"{sum(r.new_count for r in report.results):,} new failures, {report.seconds:.1f}s"
    )


def report_dict(report: Any) -> dict[str, Any]:
    """`trackline check --json`: everything the text prints, per check (its description
    line, the sample rows under their columns, the SQL and its parameters) and the summary
    line's counts, with each alert channel's outcome and error."""
    from trackline.quality.run import CheckReport

    assert isinstance(report, CheckReport)
    failed = report.failed
    return {
        "run_id": report.run_id,
        "ok": report.ok,
        "checks": len(report.results),
        "failing": len(failed),
        "blocking_failing": sum(r.blocking for r in failed),
        "new_failures": sum(r.new_count for r in report.results),
        "seconds": round(report.seconds, 3),
        "results": [
            {
                **{
                    k: getattr(r, k)
                    for k in (
                        "name",
                        "severity",
                        "status",
                        "failing_count",
                        "new_count",
                        "resolved_count",
                        "sample_keys",
                        "new_keys",
                        "error",
                        "description",
                        "columns",
                    )
                },
                "sample": [list(row) for row in r.sample],
                "sql": r.sql,
                "params": list(r.params),
                "seconds": round(r.seconds, 3),
            }
            for r in report.results
        ],
        "alerts": {d.channel: d.ok for d in report.deliveries},
        "alert_errors": {d.channel: d.error for d in report.deliveries if not d.ok},
    }


def once_summary(due: list[str], results: dict[str, Any]) -> str:
    """`trackline run --once`: the due jobs by outcome. A job another run's lock kept from
    running was listed under "ran" (exit 0): it is said apart, with when it runs."""
    if not due:
        return "ran: nothing was due"
    by: dict[str, list[str]] = {}
    for name in due:
        by.setdefault(results[name].status if name in results else "ok", []).append(name)
    parts = []
    if by.get("ok"):
        parts.append(f"ran: {', '.join(by['ok'])}")
    if by.get("failed"):
        parts.append(f"failed: {', '.join(by['failed'])}")
    if by.get("busy"):
        parts.append(
            f"not run, another run held the lock: {', '.join(by['busy'])} (still due: each "
            "runs at the next `trackline run --once`)"
        )
    other = [n for s, names in by.items() if s not in ("ok", "failed", "busy") for n in names]
    if other:
        parts.append(f"{', '.join(f'{n} ({results[n].status})' for n in other)}")
    return "; ".join(parts)


def failed_lines(results: dict[str, Any]) -> list[str]:
    """Each failed job with its error: `trackline status`, which the message pointed to,
    shows no job's error (a failed maintenance not at all)."""
    return [f"failed: {n}: {r.error}" for n, r in results.items() if r.status == "failed"]


def stop_message(scheduler: Any) -> str:
    """What `trackline run` says when a signal stopped it: the job it let finish, or that
    it was waiting (no job ran when the signal came)."""
    if scheduler.stopped_during:
        return (
            f"received {scheduler.stop_signal}: finished the running step and stopped "
            f"(job: {scheduler.stopped_during})"
        )
    return f"received {scheduler.stop_signal} while waiting for the next slot: stopped"


def register(main: click.Group) -> None:
    @main.command()
    @log_option
    @click.option("--no-alerts", is_flag=True, help="Record results but send no alert.")
    @click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
    @handle_errors
    @pipeline_config
    def check(cfg: Config, log_format: str, no_alerts: bool, as_json: bool) -> None:
        """Run every data-quality check; exit 1 if a blocking one fails.

        Built in per retention group: anchor time = latest event time, every anchor key has
        events and its follower rows, no duplicate or NULL keys, freshness vs the source
        clock; failed, slow or zero-row cycles; source rows that arrived behind a table's
        watermark. Plus `quality.checks` from the config.
        """
        from trackline.load import open_warehouse
        from trackline.quality.run import run_checks
        from trackline.report import make_reporter

        reporter = make_reporter("quiet" if as_json and log_format == "auto" else log_format)
        wh = open_warehouse(cfg.warehouse)
        wh.connect()
        try:
            report = run_checks(cfg, wh, reporter, send_alerts=not no_alerts)
        finally:
            wh.close()
            reporter.close()
        if as_json:
            click.echo(json.dumps(report_dict(report), indent=1, default=str))
        else:
            print_report(report)
        sys.exit(report.exit_code)

    @main.command()
    @log_option
    @click.option("--once", is_flag=True, help="Run what is due now once, then exit (cron).")
    @handle_errors
    @pipeline_config
    def run(cfg: Config, log_format: str, once: bool) -> None:
        """The local scheduler: cycle every `schedule.cycle_minutes`, checks and maintenance
        daily; one instance per warehouse; SIGTERM finishes the running step, then exits."""
        from trackline.load import open_warehouse
        from trackline.report import make_reporter
        from trackline.schedule import Scheduler

        reporter = make_reporter("plain" if log_format == "auto" else log_format)
        wh = open_warehouse(cfg.warehouse)
        wh.connect()
        try:
            scheduler = Scheduler(cfg, wh, reporter=reporter)
            if once:
                click.echo(once_summary(scheduler.run_once(), scheduler.results))
            else:
                scheduler.run_forever()
        finally:
            wh.close()
            reporter.close()
        if scheduler.stop_signal:  # a requested stop is no failure, whatever failed before
            click.echo(stop_message(scheduler), err=True)
            return
        failed = failed_lines(scheduler.results)
        if failed:
            for line in failed:
                click.echo(line, err=True)
            sys.exit(1)

    @main.command()
    @click.option(
        "--html",
        "html_path",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write a self-contained HTML page here.",
    )
    @click.option("--cycles", default=500, show_default=True, help="How many recent cycles.")
    @handle_errors
    @pipeline_config
    def report(cfg: Config, html_path: Path, cycles: int) -> None:
        """A self-contained HTML page: rows per cycle, durations, freshness, sizes, exceptions."""
        from trackline.load import open_warehouse
        from trackline.quality.html import write_report

        wh = open_warehouse(cfg.warehouse)
        wh.connect()
        try:
            write_report(cfg, wh, html_path, cycles)
        finally:
            wh.close()
        click.echo(f"wrote {html_path}")
