"""`trackline report --html report.html`: one self-contained page about the pipeline's health.

Everything is inline (CSS and SVG drawn here; no script, no font, no network), so the file
can be mailed or opened from a share. Charts, newest on the right:

- rows moved per cycle, per table          (`trackline.runs`, command ``cycle``, detail.sync)
- cycle duration, failed cycles in red, the slow-cycle threshold as a line
- freshness lag per retention group: the cycle's source clock (upper bound + lag) minus the
  newest anchor time (detail.newest)
- mart and history sizes over time          (detail.sizes)
- open exceptions by check                  (every group's exceptions table + check_exceptions)
and the latest `trackline check` results as a table.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trackline.config import Config
from trackline.load import Warehouse
from trackline.marts.cycle import mart_sizes
from trackline.quality.checks import STATE_EXCEPTIONS
from trackline.quality.results import ResultsStore
from trackline.state import StateStore, utcnow
from trackline.sync import resolve

PALETTE = [
    "#2563eb",
    "#f97316",
    "#16a34a",
    "#9333ea",
    "#dc2626",
    "#0891b2",
    "#ca8a04",
    "#db2777",
    "#4b5563",
    "#65a30d",
]
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 880, 250, 64, 40, 26, 44


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


# --------------------------------------------------------------------------- data


def _as_time(value: Any) -> float | None:
    """A recorded time (unix int, datetime or its ISO text) as unix seconds."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                return None
    if isinstance(value, dt.datetime):
        return (
            value.replace(tzinfo=dt.UTC).timestamp()
            if value.tzinfo is None
            else (value.timestamp())
        )
    return None


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
            upper, newest = _as_time(info.get("upper")), _as_time(d.get("newest", {}).get(g.name))
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
    return data


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
    axis = _axis([r["run_at"] for r in runs])
    series: dict[str, list[float | None]] = {}
    for name in sorted({r["table"] for r in runs}):
        for what in ("key_gap", "mismatch"):
            label = f"{name} {'key gap' if what == 'key_gap' else 'worst mismatch'}"
            series[label] = [100 * r[what] if r["table"] == name else None for r in runs]
    last = "".join(
        f'<tr><td class="{_e(r["verdict"])}">{_e(r["verdict"])}</td><td>{_e(r["table"])}</td>'
        f"<td>{_e(r['run_at'])}</td><td>{_e(r['since'] or 'all')}</td>"
        f"<td>{100 * r['key_gap']:.4f} %</td><td>{100 * r['mismatch']:.4f} %</td></tr>"
        for r in reversed(runs[-20:])
    )
    return (
        line_chart("Legacy DW comparison (trackline compare)", series, axis, "%")
        + "<h2>Legacy DW comparisons: the latest runs</h2><table><tr><th>verdict</th>"
        "<th>table</th><th>run</th><th>window from</th><th>key gap</th>"
        f"<th>worst column mismatch</th></tr>{last}</table>"
    )


# --------------------------------------------------------------------------- drawing


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    mag = 10 ** len(str(int(v))) / 10
    for step in (1, 2, 2.5, 5, 10):
        if v <= step * mag:
            return step * mag
    return v


def _fmt(v: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:.1f}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"


def _frame(ymax: float, axis: TimeAxis, unit: str) -> list[str]:
    out = []
    for i in range(5):
        v = ymax * i / 4
        y = PAD_T + (H - PAD_T - PAD_B) * (1 - i / 4)
        out.append(f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" class="ylab">{_e(_fmt(v))}</text>')
    out.append(f'<text x="{PAD_L - 6}" y="12" class="ylab">{_e(unit)}</text>')
    for x, label in axis.ticks():
        out.append(f'<text x="{x:.1f}" y="{H - PAD_B + 16}" class="xlab">{_e(label)}</text>')
    return out


@dataclass
class TimeAxis:
    """A true time axis: a cycle sits where its start time falls, so two cycles 2 s apart are
    drawn close together and two 2 minutes apart far apart (not one slot per cycle)."""

    times: list[float]

    @property
    def lo(self) -> float:
        return min(self.times) if self.times else 0.0

    @property
    def hi(self) -> float:
        return max(self.times) if self.times else 0.0

    def x(self, t: float) -> float:
        inner = (W - PAD_L - PAD_R) * 0.96
        left = PAD_L + (W - PAD_L - PAD_R) * 0.02
        if self.hi <= self.lo:
            return PAD_L + (W - PAD_L - PAD_R) / 2
        return left + inner * (t - self.lo) / (self.hi - self.lo)

    def xs(self) -> list[float]:
        return [self.x(t) for t in self.times]

    def label(self, t: float) -> str:
        span = self.hi - self.lo
        fmt = "%H:%M:%S" if span < 3600 else "%m-%d %H:%M" if span < 3 * 86400 else "%Y-%m-%d"
        return dt.datetime.fromtimestamp(t, dt.UTC).strftime(fmt)

    def ticks(self, n: int = 6) -> list[tuple[float, str]]:
        if not self.times:
            return []
        if self.hi <= self.lo:
            return [(self.x(self.lo), self.label(self.lo))]
        step = (self.hi - self.lo) / (n - 1)
        return [(self.x(self.lo + i * step), self.label(self.lo + i * step)) for i in range(n)]

    def bar_width(self) -> float:
        """Bars as wide as the closest two cycles allow (at least 2 px, at most 40)."""
        xs = sorted(self.xs())
        gaps = [b - a for a, b in zip(xs, xs[1:], strict=False) if b > a]
        room = min(gaps) * 0.8 if gaps else (W - PAD_L - PAD_R) * 0.1
        return max(2.0, min(40.0, room))


def _y(v: float, ymax: float) -> float:
    return PAD_T + (H - PAD_T - PAD_B) * (1 - min(v, ymax) / ymax)


def _legend(names: list[str]) -> str:
    items = "".join(
        f'<span class="key"><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{_e(n)}</span>'
        for i, n in enumerate(names)
    )
    return f'<div class="legend">{items}</div>' if names else ""


def line_chart(
    title: str,
    series: dict[str, list[float | None]],
    axis: TimeAxis,
    unit: str,
    threshold: float | None = None,
    note: str = "",
) -> str:
    values = [v for vs in series.values() for v in vs if v is not None]
    if not values:
        return _empty(title)
    threshold, far = _near(threshold, max(values), unit)
    ymax = _nice_max(max([*values, threshold or 0]))
    parts = _frame(ymax, axis, unit)
    if threshold is not None:
        y = _y(threshold, ymax)
        parts.append(
            f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" '
            'class="limit"><title>threshold</title></line>'
        )
    xs = axis.xs()
    n = len(series)
    for si, (name, vs) in enumerate(series.items()):
        color = PALETTE[si % len(PALETTE)]
        # Series drawn later are thinner and dashed, so one that equals an earlier series
        # (two tables moving the same rows every cycle) leaves the earlier one visible.
        width = 2 + 1.5 * (n - 1 - si) if n > 1 else 2
        dash = f' stroke-dasharray="{4 + 2 * si} {3 + si}"' if si else ""
        points = [(xs[i], v) for i, v in enumerate(vs) if v is not None]
        path = " ".join(f"{x:.1f},{_y(v, ymax):.1f}" for x, v in points)
        parts.append(
            f'<polyline class="series" data-series="{_e(name)}" points="{path}" fill="none" '
            f'stroke="{color}" stroke-width="{width:.1f}"{dash}/>'
        )
        if len(points) <= 60:
            r = 3 + 1.2 * (n - 1 - si) if n > 1 else 3
            parts += [
                f'<circle class="point" cx="{x:.1f}" cy="{_y(v, ymax):.1f}" r="{r:.1f}" '
                f'fill="{color}"><title>{_e(name)} · {_e(axis.label(axis.times[i]))}: '
                f"{_e(_fmt(v))}</title></circle>"
                for i, (x, v) in enumerate(points)
            ]
    return _figure(title, parts, _legend(list(series)) + far + note, points=len(values))


def _near(threshold: float | None, top: float, unit: str) -> tuple[float | None, str]:
    """Draw a threshold line only when it is within reach of the data; else say where it is,
    so a far-away limit does not flatten the chart."""
    if threshold is None:
        return None, ""
    if threshold <= 2 * max(top, 1e-9):
        return threshold, ""
    return None, (
        f'<div class="legend">threshold {_e(_fmt(threshold))} {_e(unit)}: '
        "far above every value shown</div>"
    )


def bar_chart(
    title: str,
    values: list[float],
    axis: TimeAxis,
    bad: list[bool],
    unit: str,
    threshold: float | None = None,
) -> str:
    if not values:
        return _empty(title)
    threshold, note = _near(threshold, max(values), unit)
    ymax = _nice_max(max([*values, threshold or 0]))
    parts = _frame(ymax, axis, unit)
    bw = axis.bar_width()
    for i, (x, v) in enumerate(zip(axis.xs(), values, strict=True)):
        y = _y(v, ymax)
        cls = "bar bad" if bad[i] else "bar"
        parts.append(
            f'<rect x="{x - bw / 2:.1f}" y="{y:.1f}" width="{bw:.1f}" '
            f'height="{max(H - PAD_B - y, 1.0):.1f}" class="{cls}"><title>'
            f"{_e(axis.label(axis.times[i]))}: "
            f"{v:.1f} {_e(unit)}{' (failed)' if bad[i] else ''}</title></rect>"
        )
    if threshold is not None:
        y = _y(threshold, ymax)
        parts.append(
            f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" '
            'class="limit"><title>slow-cycle threshold</title></line>'
        )
    legend = (
        '<div class="legend"><span class="key"><i class="ok"></i>ok</span>'
        '<span class="key"><i class="bad"></i>failed</span>'
        + (
            '<span class="key"><i class="limitkey"></i>threshold</span>'
            if threshold is not None
            else ""
        )
        + "</div>"
    )
    return _figure(title, parts, legend + note, points=len(values))


def hbar_chart(title: str, items: list[tuple[str, int]]) -> str:
    if not items:
        return _empty(title, "no open exceptions")
    row, left = 26, 400
    height = PAD_T + row * len(items) + 8
    vmax = max(v for _, v in items) or 1
    parts = []
    for i, (name, v) in enumerate(items):
        y = PAD_T + i * row
        w = (W - left - 70) * v / vmax
        shown = name if len(name) <= 58 else "…" + name[-57:]
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" class="hlab">{_e(shown)}'
            f"<title>{_e(name)}</title></text>"
        )
        parts.append(
            f'<rect x="{left}" y="{y + 3}" width="{max(w, 1):.1f}" height="16" '
            f'class="bar bad"><title>{_e(name)}: {v}</title></rect>'
        )
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}" class="val">{v:,}</text>')
    return _figure(title, parts, "", height, points=len(items))


def _figure(title: str, parts: list[str], legend: str, height: int = H, points: int = 0) -> str:
    body = "\n".join(parts)
    return (
        f"<figure><figcaption>{_e(title)}</figcaption>{legend}"
        f'<svg viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" '
        f'data-points="{points}" aria-label="{_e(title)}">{body}</svg></figure>'
    )


def _empty(title: str, text: str = "no cycles recorded yet") -> str:
    return f'<figure><figcaption>{_e(title)}</figcaption><p class="empty">{_e(text)}</p></figure>'


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


def _axis(times: list[Any]) -> TimeAxis:
    """Cycle start times (datetimes, unix numbers or ISO text) as a time axis; a time that
    cannot be read sits one second after the one before it."""
    out: list[float] = []
    for t in times:
        v = _as_time(t)
        out.append(v if v is not None else (out[-1] + 1 if out else 0.0))
    return TimeAxis(out)


def _size_note(data: ReportData) -> str:
    if not data.sizes_estimated:
        return ""
    return (
        f'<div class="legend">per-cycle sizes are the {_e(data.engine)} statistics\' '
        "estimate (a COUNT of every table each cycle would cost as much as the tables are "
        "big); the exact counts now are in the table below</div>"
    )


def _sizes_table(data: ReportData) -> str:
    if not data.exact_sizes:
        return ""
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td>{v:,}</td></tr>" for k, v in sorted(data.exact_sizes.items())
    )
    return (
        '<h2>Mart and history sizes now</h2><p class="sub">exact row counts '
        f"(COUNT) when this report was generated</p><table><tr><th>table</th><th>rows</th></tr>"
        f"{rows}</table>"
    )


def render(data: ReportData, title: str = "trackline report") -> str:
    cycles = data.cycles
    axis = _axis([c["started_at"] for c in cycles])
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
        f'<div class="tile {cls}">{_e(k)}<b>{_e(v)}</b></div>' for k, v, cls in tiles
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
        f'<tr><td class="{_e(c["status"])}">{_e(c["status"])}</td><td>{_e(c["severity"])}'
        f"</td><td>{_e(c['check_name'])}</td><td>{int(c['failing_count'] or 0):,}</td>"
        f"<td>{int(c['new_count'] or 0):,}</td><td>{_e(', '.join(c['sample_keys'][:5]))}</td>"
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
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{_e(title)}</h1><p class="sub">generated {data.generated_at:%Y-%m-%d %H:%M} '
        f"UTC · the last {len(cycles):,} cycles, oldest on the left</p>"
        f'<div class="tiles">{tile_html}</div>'
        + "".join(charts)
        + _sizes_table(data)
        + _compare_section(data)
        + f"<h2>Checks: the latest result of each</h2>{checks_html}</body></html>\n"
    )


def write_report(cfg: Config, wh: Warehouse, path: Path, limit: int = 500) -> Path:
    path.write_text(render(collect(cfg, wh, limit)), encoding="utf-8")
    return path
