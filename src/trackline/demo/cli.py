"""`trackline demo`."""

from __future__ import annotations

import datetime as dt
import shlex
import sys
from pathlib import Path

import click

from trackline.options import handle_errors


def explore_command(workdir: Path) -> str:
    """A shell command that queries the demo's warehouse with the Python that runs trackline
    (its duckdb module), so it works without a DuckDB CLI installed."""
    code = (
        f"import duckdb; print(duckdb.connect({str(workdir / 'warehouse.duckdb')!r}, "
        "read_only=True).sql('SELECT COUNT(*) AS orders FROM "
        "settlement_ods.mart_uni_tracking_info'))"
    )
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def register(main: click.Group) -> None:
    @main.command()
    @click.option(
        "--workdir",
        default="trackline-demo",
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Folder for the source, stage and warehouse (recreated each run).",
    )
    @click.option("--days", default=240, show_default=True, help="Simulated days.")
    @click.option("--orders-per-day", default=300, show_default=True)
    @click.option(
        "--step-days",
        default=1,
        show_default=True,
        help="Simulated days per cycle (the real cycle code path runs each step).",
    )
    @click.option("--seed", default=7, show_default=True)
    @click.option(
        "--parity/--no-parity",
        default=True,
        show_default=True,
        help="Follow ecs rows and scan events changed after creation (cdc strategy follow, "
        "changes: newest); --no-parity runs without and reports the rows the marts miss.",
    )
    @handle_errors
    def demo(
        workdir: Path, days: int, orders_per_day: int, step_days: int, seed: int, parity: bool
    ) -> None:
        """Run ~8 simulated months of order tracking on the embedded default and report."""
        from rich.console import Console
        from rich.table import Table

        from trackline.demo.generator import DemoSpec
        from trackline.demo.run import run_demo
        from trackline.report import make_reporter

        console = Console()
        spec = DemoSpec(days=days, orders_per_day=orders_per_day, seed=seed)
        console.print(
            f"[bold]trackline demo[/bold]: {days} simulated days, ~{orders_per_day} orders/day, "
            f"one cycle per {step_days} day(s): SQLite source → Parquet stage → DuckDB, "
            f"in {workdir}/"
        )
        reporter = make_reporter("auto")
        try:
            res = run_demo(workdir, spec, step_days, reporter, parity=parity)
        finally:
            reporter.close()

        console.print(
            f"\n{res.cycles} cycles in {res.seconds:.1f}s; source now holds "
            + ", ".join(f"{k} {v:,}" for k, v in res.source_rows.items())
        )
        sizes = Table(title="Mart sizes stay bounded (rows, sampled monthly)")
        cols = [k for k in res.sizes[0] if k != "day"] if res.sizes else []
        sizes.add_column("day", justify="right")
        for c in cols:
            sizes.add_column(c, justify="right")
        for row in res.sizes:
            sizes.add_row(str(row["day"]), *[f"{row[c]:,}" for c in cols])
        console.print(sizes)
        if res.history:
            hist = Table(title="History period tables (created on demand)")
            hist.add_column("table")
            hist.add_column("rows", justify="right")
            for name, n in res.history.items():
                hist.add_row(name, f"{n:,}")
            console.print(hist)
        else:  # an empty table said nothing: a short run ages no row out
            console.print(
                "History period tables: none yet (one is created when a mart's rows first "
                "pass its retention, 180 days of data time in the demo)"
            )
        console.print(
            f"Archived {res.archived:,} rows; {res.reactivated} reactivated orders left history "
            f"and {res.restored} follower rows were restored from history."
        )
        exc = ", ".join(f"{k}: {v}" for k, v in res.exceptions.items()) or "none"
        console.print(f"Open exceptions by check: {exc}")
        console.print(
            f"G1 (one row per order) and G2 (mart ∪ history covers every order) "
            f"checked after every cycle: {res.violations} violations."
        )
        changed = ", ".join(f"{k} {v:,}" for k, v in res.changed.items())
        gap = ", ".join(f"{k} {v:,}" for k, v in res.parity_gap.items())
        how = (
            "followed (ecs: cdc strategy follow; spath: changes: newest)"
            if res.parity
            else "NOT followed (--no-parity)"
        )
        console.print(
            f"Rows changed after creation: {changed}; {how}. Source rows whose current values "
            f"the marts ∪ history miss: {gap}."
        )
        since = dt.datetime.fromtimestamp(res.primary_since, dt.UTC).strftime("%Y-%m-%d")
        console.print(f"\nThe marts' main query, scans of one partner since {since}:")
        console.print(res.primary_query.replace("?", str(res.primary_since)), highlight=False)
        console.print(f"→ {res.primary_result or 'no rows'}")
        dim = Table(title=f"Dimension history: partner {res.partner} (write_mode: scd2)")
        for c in ("dim_key", "name", "country", "valid_from", "valid_to", "is_current"):
            dim.add_column(c)
        for version in res.partner_history:
            dim.add_row(*[str(v) for v in version])
        console.print(dim)
        console.print(
            f"(trackline dims history -c {workdir}/trackline.yml partners {res.partner})",
            highlight=False,
        )
        console.print(
            f"\nExplore: trackline history -c {workdir}/trackline.yml · "
            f"trackline exceptions list -c {workdir}/trackline.yml · "
            f"trackline report -c {workdir}/trackline.yml --html report.html",
            highlight=False,
        )
        # no DuckDB CLI needed: the duckdb module trackline runs on is enough
        console.print(
            f"Query the warehouse: {explore_command(workdir)}", highlight=False, soft_wrap=True
        )
