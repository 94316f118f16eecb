"""`trackline report --html report.html`: one self-contained page about the pipeline's health.

Everything is inline (CSS and SVG drawn here; no script, no font, no network), so the file
can be mailed or opened from a share. Charts, newest on the right:

- rows moved per cycle, per table          (`trackline.runs`, command ``cycle``, detail.sync)
- cycle duration, cycles that did not end ok in red (the legend names their statuses:
  failed, partial, interrupted, killed), the slow-cycle threshold as a line
- freshness lag per retention group: the cycle's source clock (upper bound + lag) minus the
  newest anchor time (detail.newest)
- mart and history sizes over time          (detail.sizes)
- open exceptions by check                  (every group's exceptions table + check_exceptions)
- consolidation runs: rows read per input and merged, duration (failed runs in red, the
  consolidation's `slow_seconds` as a line), the latest runs as a table (command
  ``consolidate``)
- the legacy DW comparisons (`trackline.compare_results`)
and the latest `trackline check` results as a table. The charts are drawn by `charts`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trackline.config import Config
from trackline.load import Warehouse
from trackline.marts.cycle import mart_sizes
from trackline.quality.charts import (
    as_time,
    bar_chart,
    esc,
    hbar_chart,
    line_chart,
    time_axis,
)
from trackline.quality.checks import STATE_EXCEPTIONS
from trackline.quality.results import ResultsStore
from trackline.state import StateStore, utcnow
from trackline.sync import resolve


@dataclass
class ReportData:
    generated_at: dt.datetime
    cycles: list[dict[str, Any]] = field(default_factory=list)
    """Oldest first: started_at, seconds, status, rows {table: n}, sizes {table: n},
    freshness {group: seconds}."""
    open_exceptions: dict[str, int] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    slow_cycle_seconds: float = 600
    freshness_seconds: float = 3600
    engine: str = ""
    sizes_estimated: bool = False
    """The per-cycle sizes come from the engine's statistics (an estimate)."""
    exact_sizes: dict[str, int] = field(default_factory=dict)
    """Exact row counts of every mart and history view, counted when the report is made."""
    compares: list[dict[str, Any]] = field(default_factory=list)
    """`trackline compare` runs, oldest first: run_at, table, key_gap, mismatch (the worst
    column's rate), verdict, since."""
    consolidations: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per consolidation: pending (staged rows not merged yet), slow_seconds, and runs oldest
    first: started_at, seconds, status, merged, error, inputs {input: rows read}."""


# --------------------------------------------------------------------------- data


def collect(cfg: Config, wh: Warehouse, limit: int = 500) -> ReportData:
    """Read what the report shows from run history, results and exceptions tables."""
    state = StateStore(wh, cfg.state_schema)
    state.ensure()
    data = ReportData(
        utcnow(),
        slow_cycle_seconds=cfg.quality.slow_cycle_seconds,
        freshness_seconds=cfg.quality.freshness_seconds,
    )
    rows = wh.query(
        f"SELECT started_at, seconds, status, detail FROM {state.t('runs')} "
        f"WHERE command = 'cycle' ORDER BY started_at DESC LIMIT {int(limit)}"
    )
    anchors = {g.name: resolve(cfg, cfg.table(g.anchor.source), None, None) for g in cfg.marts}
    for started, seconds, status, detail in reversed(rows):
        d = json.loads(detail) if detail else {}
        sync = d.get("sync", {})
        freshness: dict[str, float] = {}
        for g in cfg.marts:
            info = sync.get(anchors[g.name].key, {})
            upper, newest = as_time(info.get("upper")), as_time(d.get("newest", {}).get(g.name))
            if upper is not None and newest is not None:
                t = anchors[g.name].cfg
                lag = t.lag_seconds if t.lag_seconds is not None else cfg.defaults.lag_seconds
                freshness[g.name] = max(0.0, upper + lag - newest)
        data.cycles.append(
            {
                "started_at": started,
                "seconds": float(seconds or 0),
                "status": status,
                "rows": {k: int(v.get("rows") or 0) for k, v in sync.items()},
                "sizes": {k: int(v) for k, v in d.get("sizes", {}).items()},
                "freshness": freshness,
            }
        )
    tables = [(g.schema_, g.exceptions_table) for g in cfg.marts]
    tables.append((cfg.state_schema, STATE_EXCEPTIONS))
    for schema, table in tables:
        if not wh.table_exists(schema, table):
            continue
        for name, n in wh.query(
            f"SELECT check_name, COUNT(*) FROM {wh.t(schema, table)} WHERE status = 'open' "
            "GROUP BY check_name"
        ):
            data.open_exceptions[name] = data.open_exceptions.get(name, 0) + int(n)
    data.checks = ResultsStore(wh, cfg.state_schema).latest_per_check()
    data.engine = wh.ENGINE
    data.sizes_estimated = wh.ROW_COUNTS_ESTIMATED and bool(data.cycles)
    data.exact_sizes = mart_sizes(cfg, wh, exact=True)[0]
    data.compares = _compares(wh, cfg.state_schema, limit)
    data.consolidations = _consolidations(cfg, wh, limit)
    return data


def _consolidations(cfg: Config, wh: Warehouse, limit: int) -> dict[str, dict[str, Any]]:
    from trackline.quality.status import consolidation_runs

    out = consolidation_runs(cfg, wh, limit)
    for c in cfg.consolidations:
        out[c.name]["runs"].reverse()
        out[c.name]["slow_seconds"] = float(c.slow_seconds)
    return out


def _error_cell(error: str | None, shown: int = 200) -> str:
    """An error cell: a long error cut with "…" (it was cut mid-word with no mark), the
    whole text in its tooltip."""
    text = error or ""
    cut = text if len(text) <= shown else text[: shown - 1] + "…"
    return f'<td title="{esc(text)}">{esc(cut)}</td>' if cut != text else f"<td>{esc(text)}</td>"


def _consolidation_section(data: ReportData) -> str:
    """Each consolidation's runs like the cycles: rows per run, duration, the latest runs."""
    runs = sorted(
        ((name, r) for name, c in data.consolidations.items() for r in c["runs"]),
        key=lambda nr: as_time(nr[1]["started_at"]) or 0.0,
    )
    if not runs:
        return ""
    axis = time_axis([r["started_at"] for _, r in runs])
    series: dict[str, list[float | None]] = {}
    for name in sorted(data.consolidations):
        inputs = sorted({i for n, r in runs if n == name for i in r["inputs"]})
        series[f"{name} merged"] = [float(r["merged"]) if n == name else None for n, r in runs]
        for i in inputs:
            series[f"{name}.{i} read"] = [
                float(r["inputs"].get(i, 0)) if n == name else None for n, r in runs
            ]
    slow = min(c["slow_seconds"] for c in data.consolidations.values())
    pending = ", ".join(
        f"{esc(name)}: {c['pending']:,}" for name, c in sorted(data.consolidations.items())
    )
    last = "".join(
        f'<tr><td class="{"pass" if r["status"] == "ok" else "fail"}">{esc(r["status"])}</td>'
        f"<td>{esc(name)}</td><td>{esc(str(r['started_at'])[:19])}</td>"
        f"<td>{r['merged']:,}</td>"
        f"<td>{esc(', '.join(f'{k} {v:,}' for k, v in r['inputs'].items()) or '—')}</td>"
        f"<td>{r['seconds']:.1f} s</td>{_error_cell(r['error'])}</tr>"
        for name, r in reversed(runs[-20:])
    )
    return (
        line_chart("Consolidation rows per run (read per input, merged)", series, axis, "rows")
        + bar_chart(
            "Consolidation duration",
            [r["seconds"] for _, r in runs],
            axis,
            [r["status"] != "ok" for _, r in runs],
            "s",
            slow,
            statuses=[r["status"] for _, r in runs],
        )
        + f'<h2>Consolidations: the latest runs</h2><p class="sub">staged rows pending: '
        f"{pending}</p><table><tr><th>status</th><th>consolidation</th><th>started (UTC)</th>"
        "<th>merged</th><th>read per input</th><th>duration</th><th>error</th></tr>"
        f"{last}</table>"
    )


def _compares(wh: Warehouse, schema: str, limit: int) -> list[dict[str, Any]]:
    from trackline.compare.results import TABLE

    if not wh.table_exists(schema, TABLE):
        return []
    rows = wh.query(
        "SELECT run_at, table_name, key_gap, mismatches, legacy_rows, verdict, since "
        f"FROM {wh.t(schema, TABLE)} ORDER BY run_at DESC LIMIT {int(limit)}"
    )
    out = []
    for run_at, name, gap, mismatches, legacy_rows, verdict, since in reversed(rows):
        counts = json.loads(mismatches) if mismatches else {}
        worst = max(counts.values(), default=0) / max(int(legacy_rows or 0), 1)
        out.append(
            {
                "run_at": run_at,
                "table": name,
                "key_gap": float(gap or 0),
                "mismatch": worst,
                "verdict": verdict,
                "since": since,
            }
        )
    return out


def _compare_section(data: ReportData) -> str:
    """The legacy DW comparisons as a trend (key gap and worst column mismatch, in %)."""
    runs = data.compares
    if not runs:
        return ""
    axis = time_axis([r["run_at"] for r in runs])
    series: dict[str, list[float | None]] = {}
    for name in sorted({r["table"] for r in runs}):
        for what in ("key_gap", "mismatch"):
            label = f"{name} {'key gap' if what == 'key_gap' else 'worst mismatch'}"
            series[label] = [100 * r[what] if r["table"] == name else None for r in runs]
    last = "".join(
        f'<tr><td class="{esc(r["verdict"])}">{esc(r["verdict"])}</td><td>{esc(r["table"])}</td>'
        f"<td>{esc(r['run_at'])}</td><td>{esc(r['since'] or 'all')}</td>"
        f"<td>{100 * r['key_gap']:.4f} %</td><td>{100 * r['mismatch']:.4f} %</td></tr>"
        for r in reversed(runs[-20:])
    )
    return (
        line_chart("Legacy DW comparison (trackline compare)", series, axis, "%")
        + "<h2>Legacy DW comparisons: the latest runs</h2><table><tr><th>verdict</th>"
        "<th>table</th><th>run</th><th>window from</th><th>key gap</th>"
        f"<th>worst column mismatch</th></tr>{last}</table>"
    )


# --------------------------------------------------------------------------- page

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 margin:24px auto;max-width:920px;color:#111827;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#6b7280;margin:0 0 16px}
.tiles{display:flex;gap:12px;flex-wrap:wrap}.tile{border:1px solid #e5e7eb;border-radius:8px;
 padding:10px 14px;min-width:150px}.tile b{display:block;font-size:20px}.tile.bad b{color:#dc2626}
.tile.good b{color:#16a34a}
figure{margin:18px 0;border:1px solid #e5e7eb;border-radius:8px;padding:10px}
figcaption{font-weight:600;margin-bottom:4px}.empty{color:#6b7280}
.legend{display:flex;flex-wrap:wrap;gap:12px;font-size:12px;color:#374151;margin-bottom:4px}
.key i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;
 vertical-align:-1px}.key i.ok{background:#2563eb}.key i.bad{background:#dc2626}
.key i.limitkey{background:#f59e0b;height:3px;vertical-align:3px}
svg{max-width:100%;height:auto}.grid{stroke:#e5e7eb}.limit{stroke:#f59e0b;stroke-width:2;
 stroke-dasharray:6 4}.bar{fill:#2563eb}.bar.bad{fill:#dc2626}
.ylab{font-size:11px;fill:#6b7280;text-anchor:end}.xlab{font-size:11px;fill:#6b7280;
 text-anchor:middle}.unit{font-size:11px;fill:#6b7280}.hlab{font-size:12px;fill:#111827;
 text-anchor:end}.val{font-size:12px;fill:#374151}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;
 padding:5px 8px;border-bottom:1px solid #e5e7eb}td.fail{color:#dc2626;font-weight:600}
td.error{color:#9333ea;font-weight:600}td.pass{color:#16a34a}
"""


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _size_note(data: ReportData) -> str:
    if not data.sizes_estimated:
        return ""
    return (
        f'<div class="legend">per-cycle sizes are the {esc(data.engine)} statistics\' '
        "estimate (a COUNT of every table each cycle would cost as much as the tables are "
        "big); the exact counts now are in the table below</div>"
    )


def _sizes_table(data: ReportData) -> str:
    if not data.exact_sizes:
        return ""
    rows = "".join(
        f"<tr><td>{esc(k)}</td><td>{v:,}</td></tr>" for k, v in sorted(data.exact_sizes.items())
    )
    return (
        '<h2>Mart and history sizes now</h2><p class="sub">exact row counts '
        f"(COUNT) when this report was generated</p><table><tr><th>table</th><th>rows</th></tr>"
        f"{rows}</table>"
    )


def render(data: ReportData, title: str = "trackline report") -> str:
    cycles = data.cycles
    axis = time_axis([c["started_at"] for c in cycles])
    tables = sorted({k for c in cycles for k in c["rows"]})
    rows: dict[str, list[float | None]] = {
        _short(k): [float(c["rows"].get(k, 0)) for c in cycles] for k in tables
    }
    sized = sorted({k for c in cycles for k in c["sizes"]})
    sizes: dict[str, list[float | None]] = {
        _short(k): [float(c["sizes"][k]) if k in c["sizes"] else None for c in cycles]
        for k in sized
    }
    groups = sorted({g for c in cycles for g in c["freshness"]})
    fresh: dict[str, list[float | None]] = {
        g: [c["freshness"][g] / 60 if g in c["freshness"] else None for c in cycles] for g in groups
    }
    last = cycles[-1] if cycles else None
    n_open = sum(data.open_exceptions.values())
    failed_checks = [c for c in data.checks if c["status"] != "pass"]
    tiles = [
        (
            "last cycle",
            f"{last['status']} · {last['seconds']:.1f}s" if last else "—",
            "bad" if last and last["status"] != "ok" else "good" if last else "",
        ),
        ("cycles shown", f"{len(cycles):,}", ""),
        ("open exceptions", f"{n_open:,}", "bad" if n_open else "good"),
        (
            "failing checks",
            f"{len(failed_checks)} of {len(data.checks)}" if data.checks else "not run yet",
            "bad" if failed_checks else "good" if data.checks else "",
        ),
    ]
    tile_html = "".join(
        f'<div class="tile {cls}">{esc(k)}<b>{esc(v)}</b></div>' for k, v, cls in tiles
    )
    charts = [
        line_chart("Rows moved per cycle, per table", rows, axis, "rows"),
        bar_chart(
            "Cycle duration",
            [c["seconds"] for c in cycles],
            axis,
            [c["status"] != "ok" for c in cycles],
            "s",
            data.slow_cycle_seconds,
            statuses=[c["status"] for c in cycles],
        ),
        line_chart(
            "Freshness lag (source clock − newest anchor time)",
            fresh,
            axis,
            "min",
            data.freshness_seconds / 60,
        ),
        line_chart(
            "Mart and history sizes" + (" (estimates)" if data.sizes_estimated else ""),
            sizes,
            axis,
            "rows",
            note=_size_note(data),
        ),
        hbar_chart(
            "Open exceptions by check",
            sorted(data.open_exceptions.items(), key=lambda kv: (-kv[1], kv[0])),
        ),
    ]
    order = {"fail": 0, "error": 0, "pass": 1}
    ranked = sorted(data.checks, key=lambda c: (order.get(c["status"], 0), c["check_name"]))
    check_rows = "".join(
        f'<tr><td class="{esc(c["status"])}">{esc(c["status"])}</td><td>{esc(c["severity"])}'
        f"</td><td>{esc(c['check_name'])}</td><td>{int(c['failing_count'] or 0):,}</td>"
        f"<td>{int(c['new_count'] or 0):,}</td><td>{esc(', '.join(c['sample_keys'][:5]))}</td>"
        "</tr>"
        for c in ranked
    )
    checks_html = (
        "<table><tr><th>status</th><th>severity</th><th>check</th><th>failing</th>"
        f"<th>new</th><th>sample keys</th></tr>{check_rows}</table>"
        if data.checks
        else '<p class="empty">no check run recorded yet (`trackline check`)</p>'
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{esc(title)}</h1><p class="sub">generated {data.generated_at:%Y-%m-%d %H:%M} '
        f"UTC · the last {len(cycles):,} cycles, oldest on the left</p>"
        f'<div class="tiles">{tile_html}</div>'
        + "".join(charts)
        + _sizes_table(data)
        + _consolidation_section(data)
        + _compare_section(data)
        + f"<h2>Checks: the latest result of each</h2>{checks_html}</body></html>\n"
    )


def write_report(cfg: Config, wh: Warehouse, path: Path, limit: int = 500) -> Path:
    path.write_text(render(collect(cfg, wh, limit)), encoding="utf-8")
    return path
