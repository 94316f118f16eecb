"""Inline SVG charts for the HTML report: a true time axis, line charts (one polyline per
series), bar charts (failed runs in red, a threshold line) and horizontal bars. No script, no
font, no network: the markup is drawn here.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass
from typing import Any

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


def as_time(value: Any) -> float | None:
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


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    mag = 10 ** len(str(int(v))) / 10
    for step in (1, 2, 2.5, 5, 10):
        if v <= step * mag:
            return step * mag
    return v


def fmt(v: float) -> str:
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
        out.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" class="ylab">{esc(fmt(v))}</text>')
    out.append(f'<text x="{PAD_L - 6}" y="12" class="ylab">{esc(unit)}</text>')
    for x, label in axis.ticks():
        out.append(f'<text x="{x:.1f}" y="{H - PAD_B + 16}" class="xlab">{esc(label)}</text>')
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
        f'<span class="key"><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{esc(n)}</span>'
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
            f'<polyline class="series" data-series="{esc(name)}" points="{path}" fill="none" '
            f'stroke="{color}" stroke-width="{width:.1f}"{dash}/>'
        )
        if len(points) <= 60:
            r = 3 + 1.2 * (n - 1 - si) if n > 1 else 3
            parts += [
                f'<circle class="point" cx="{x:.1f}" cy="{_y(v, ymax):.1f}" r="{r:.1f}" '
                f'fill="{color}"><title>{esc(name)} · {esc(axis.label(axis.times[i]))}: '
                f"{esc(fmt(v))}</title></circle>"
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
        f'<div class="legend">threshold {esc(fmt(threshold))} {esc(unit)}: '
        "far above every value shown</div>"
    )


def bar_chart(
    title: str,
    values: list[float],
    axis: TimeAxis,
    bad: list[bool],
    unit: str,
    threshold: float | None = None,
    statuses: list[str] | None = None,
) -> str:
    """Bars in time order; a `bad` one in red, its tooltip naming its status (`statuses`,
    e.g. a cycle's ``partial`` or ``interrupted``; default "failed")."""
    if not values:
        return _empty(title)
    threshold, note = _near(threshold, max(values), unit)
    said = statuses or ["failed"] * len(values)
    kinds = sorted({said[i] for i, b in enumerate(bad) if b}) or ["failed"]
    ymax = _nice_max(max([*values, threshold or 0]))
    parts = _frame(ymax, axis, unit)
    bw = axis.bar_width()
    for i, (x, v) in enumerate(zip(axis.xs(), values, strict=True)):
        y = _y(v, ymax)
        cls = "bar bad" if bad[i] else "bar"
        parts.append(
            f'<rect x="{x - bw / 2:.1f}" y="{y:.1f}" width="{bw:.1f}" '
            f'height="{max(H - PAD_B - y, 1.0):.1f}" class="{cls}"><title>'
            f"{esc(axis.label(axis.times[i]))}: "
            f"{v:.1f} {esc(unit)}{f' ({esc(said[i])})' if bad[i] else ''}</title></rect>"
        )
    if threshold is not None:
        y = _y(threshold, ymax)
        parts.append(
            f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" '
            'class="limit"><title>slow-cycle threshold</title></line>'
        )
    legend = (
        '<div class="legend"><span class="key"><i class="ok"></i>ok</span>'
        f'<span class="key"><i class="bad"></i>{esc(", ".join(kinds))}</span>'
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
            f'<text x="{left - 8}" y="{y + 15}" class="hlab">{esc(shown)}'
            f"<title>{esc(name)}</title></text>"
        )
        parts.append(
            f'<rect x="{left}" y="{y + 3}" width="{max(w, 1):.1f}" height="16" '
            f'class="bar bad"><title>{esc(name)}: {v}</title></rect>'
        )
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}" class="val">{v:,}</text>')
    return _figure(title, parts, "", height, points=len(items))


def _figure(title: str, parts: list[str], legend: str, height: int = H, points: int = 0) -> str:
    body = "\n".join(parts)
    return (
        f"<figure><figcaption>{esc(title)}</figcaption>{legend}"
        f'<svg viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" '
        f'data-points="{points}" aria-label="{esc(title)}">{body}</svg></figure>'
    )


def _empty(title: str, text: str = "no cycles recorded yet") -> str:
    return f'<figure><figcaption>{esc(title)}</figcaption><p class="empty">{esc(text)}</p></figure>'


def time_axis(times: list[Any]) -> TimeAxis:
    """Cycle start times (datetimes, unix numbers or ISO text) as a time axis; a time that
    cannot be read sits one second after the one before it."""
    out: list[float] = []
    for t in times:
        v = as_time(t)
        out.append(v if v is not None else (out[-1] + 1 if out else 0.0))
    return TimeAxis(out)
