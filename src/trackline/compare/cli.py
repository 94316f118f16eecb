"""`trackline compare --table NAME [--date D | --since T --until T] [--json]`."""

from __future__ import annotations

import datetime as dt
import json
import sys

import click

from trackline.config import Config
from trackline.errors import ConfigError
from trackline.options import handle_errors, log_option, pipeline_config


def _when(option: str, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"{option}: {value!r} is not a date (YYYY-MM-DD) or time (YYYY-MM-DD HH:MM:SS)"
        ) from None


def window(
    date: str | None, since: str | None, until: str | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """`--date D` is [D, D + 1 day); `--since` / `--until` are [since, until)."""
    if date is not None:
        if since is not None or until is not None:
            raise ConfigError("give either --date or --since/--until, not both")
        day = _when("--date", date)
        assert day is not None
        return day, day + dt.timedelta(days=1)
    return _when("--since", since), _when("--until", until)


def register(main: click.Group) -> None:
    @main.command()
    @log_option
    @click.option("--table", "name", required=True, help="A `compare.tables` entry's name.")
    @click.option("--date", help="Compare one day (YYYY-MM-DD) of the table's `time` column.")
    @click.option("--since", help="Window start (inclusive), a date or a time.")
    @click.option("--until", help="Window end (exclusive), a date or a time.")
    @click.option("--legacy", help="The legacy source (default: `compare.legacy`).")
    @click.option("--chunk", type=click.IntRange(min=1), help="Rows per fetched range.")
    @click.option(
        "--no-save", is_flag=True, help="Do not append the result to `trackline.compare_results`."
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @handle_errors
    @pipeline_config
    def compare(
        cfg: Config,
        log_format: str,
        name: str,
        date: str | None,
        since: str | None,
        until: str | None,
        legacy: str | None,
        chunk: int | None,
        no_save: bool,
        as_json: bool,
    ) -> None:
        """Compare a legacy DW table with trackline's (its mart and history): row counts per
        day, keys missing on each side, duplicate keys, value mismatches per column; exit 0
        pass, 1 fail (past the thresholds), 2 config error."""
        from trackline.compare.job import compare as run
        from trackline.load import open_warehouse
        from trackline.report import make_reporter

        lo, hi = window(date, since, until)
        reporter = make_reporter("quiet" if as_json and log_format == "auto" else log_format)
        wh = open_warehouse(cfg.warehouse)
        wh.connect()
        try:
            res = run(
                cfg, wh, name, since=lo, until=hi, legacy=legacy, chunk=chunk, save=not no_save
            )
        finally:
            wh.close()
            reporter.close()
        if as_json:
            click.echo(json.dumps(res.as_dict(), default=str))
        else:
            for line in lines(res.as_dict()):
                click.echo(line)
        if not res.ok:
            sys.exit(1)


def lines(d: dict) -> list[str]:  # type: ignore[type-arg]
    """The human-readable result."""
    span = f" [{d['since'] or '…'}, {d['until'] or '…'})" if d["since"] or d["until"] else ""
    out = [
        f"{d['table']}{span}: legacy {d['legacy']} vs trackline {d['trackline']}",
        f"  rows: legacy {d['legacy_rows']:,}, trackline {d['trackline_rows']:,}",
    ]
    for day, (a, b) in d["days"].items():
        mark = "" if a == b else "  <- differs"
        out.append(f"    {day}: legacy {a:,}, trackline {b:,}{mark}")
    for what, key in (
        ("missing in trackline", "missing_in_trackline"),
        ("missing in legacy", "missing_in_legacy"),
        ("duplicate rows", "duplicates"),
    ):
        sample = d[f"{key}_sample"]
        out.append(f"  {what}: {d[key]:,}" + (f"  e.g. {'; '.join(sample)}" if sample else ""))
    if d["legacy_newer"]:
        sample = "; ".join(d["legacy_newer_sample"])
        out.append(f"  differing, legacy newer: {d['legacy_newer']:,}  e.g. {sample}")
    for col, c in d["columns"].items():
        out.append(f"  {col}: {c['mismatches']:,} mismatches ({c['rate']:.4%})")
        for key, a, b in c["sample"]:
            out.append(f"    key ({key}): legacy {a!r}, trackline {b!r}")
    out.append(f"  key ranges: {d['ranges']}, fetched row by row: {d['ranges_fetched']}")
    out.append("  normalised: " + ("; ".join(d["normalisations"]) or "nothing"))
    t = d["thresholds"]
    verdict = "PASS" if d["verdict"] == "pass" else "FAIL: " + "; ".join(d["failures"])
    out.append(
        f"  verdict: {verdict} (key gap {d['key_gap']:.4%}, at most {t['count_gap']:.4%}; "
        f"mismatch at most {t['mismatch']:.4%} per column)"
    )
    return out
