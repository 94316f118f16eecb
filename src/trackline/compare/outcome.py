"""What one `trackline compare` run found (`CompareResult`), and its verdict."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

Window = tuple[dt.datetime | None, dt.datetime | None]


@dataclass
class ColumnDiff:
    column: str
    mismatches: int = 0
    sample: list[tuple[str, Any, Any]] = field(default_factory=list)
    """(key, legacy value, trackline value), canonical texts."""


@dataclass
class CompareResult:
    name: str
    legacy: str
    trackline: str
    window: Window
    thresholds: tuple[float, float]
    normalisations: list[str]
    legacy_rows: int = 0
    trackline_rows: int = 0
    days: dict[str, list[int]] = field(default_factory=dict)
    """Day (YYYY-MM-DD of the time column) → [legacy rows, trackline rows]."""
    ranges: int = 0
    """Aggregate queries asked of each side (the whole table, then one per split range)."""
    ranges_fetched: int = 0
    rows_fetched: int = 0
    missing_in_trackline: int = 0
    missing_in_trackline_sample: list[str] = field(default_factory=list)
    missing_in_legacy: int = 0
    missing_in_legacy_sample: list[str] = field(default_factory=list)
    duplicates: int = 0
    """Surplus rows of keys held more than once on one side."""
    duplicates_sample: list[str] = field(default_factory=list)
    compared: int = 0
    """Keys on both sides of the ranges that were fetched (every other range is equal)."""
    columns: dict[str, ColumnDiff] = field(default_factory=dict)
    legacy_newer: int = 0
    """Differing keys whose legacy `newer_by` time is later than trackline's."""
    legacy_newer_sample: list[str] = field(default_factory=list)

    @property
    def key_gap(self) -> float:
        gaps = self.missing_in_trackline + self.missing_in_legacy + self.duplicates
        return gaps / max(self.legacy_rows, 1)

    def mismatch_rate(self, column: str) -> float:
        """Mismatching rows / legacy rows in the window."""
        return self.columns[column].mismatches / max(self.legacy_rows, 1)

    @property
    def failures(self) -> list[str]:
        gap, mismatch = self.thresholds
        out = []
        if self.key_gap > gap:
            out.append(f"key gap {self.key_gap:.4%} > {gap:.4%}")
        for c in self.columns:
            if self.mismatch_rate(c) > mismatch:
                out.append(f"{c} mismatch {self.mismatch_rate(c):.4%} > {mismatch:.4%}")
        return out

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def differences(self) -> int:
        return (
            self.missing_in_trackline
            + self.missing_in_legacy
            + self.duplicates
            + sum(c.mismatches for c in self.columns.values())
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.name,
            "legacy": self.legacy,
            "trackline": self.trackline,
            "since": self.window[0].isoformat() if self.window[0] else None,
            "until": self.window[1].isoformat() if self.window[1] else None,
            "legacy_rows": self.legacy_rows,
            "trackline_rows": self.trackline_rows,
            "days": self.days,
            "ranges": self.ranges,
            "ranges_fetched": self.ranges_fetched,
            "rows_fetched": self.rows_fetched,
            "missing_in_trackline": self.missing_in_trackline,
            "missing_in_trackline_sample": self.missing_in_trackline_sample,
            "missing_in_legacy": self.missing_in_legacy,
            "missing_in_legacy_sample": self.missing_in_legacy_sample,
            "duplicates": self.duplicates,
            "duplicates_sample": self.duplicates_sample,
            "compared": self.compared,
            "columns": {
                c.column: {
                    "mismatches": c.mismatches,
                    "rate": self.mismatch_rate(c.column),
                    "sample": [list(s) for s in c.sample],
                }
                for c in self.columns.values()
            },
            "legacy_newer": self.legacy_newer,
            "legacy_newer_sample": self.legacy_newer_sample,
            "key_gap": self.key_gap,
            "thresholds": {"count_gap": self.thresholds[0], "mismatch": self.thresholds[1]},
            "normalisations": self.normalisations,
            "verdict": "pass" if self.ok else "fail",
            "failures": self.failures,
        }
