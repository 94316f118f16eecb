"""History periods: half-year tables ``<prefix><name>_<YYYY>_h<1|2>`` and the union view.

A period is chosen from a row's time (the anchor's time for anchor and one-per-key followers,
the event's own time for events), created on demand, so no row can fall outside every period
(no "routing gap" of rows whose period has no table yet). Period bounds are computed here
and bound as parameters, in the time column's own type: unix seconds for integer columns,
naive datetimes otherwise.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from trackline.extract.types import arrow_type
from trackline.load import Column, Warehouse

__all__ = ["HistoryTables", "Period", "arrow_type", "periods_between"]

_UTC = dt.UTC


@dataclass(frozen=True)
class Period:
    year: int
    half: int

    @property
    def suffix(self) -> str:
        return f"{self.year}_h{self.half}"

    def start_dt(self) -> dt.datetime:
        return dt.datetime(self.year, 1 if self.half == 1 else 7, 1)

    def end_dt(self) -> dt.datetime:
        return dt.datetime(self.year, 7, 1) if self.half == 1 else dt.datetime(self.year + 1, 1, 1)

    def bounds(self, unix: bool) -> tuple[Any, Any]:
        if unix:
            return (
                int(self.start_dt().replace(tzinfo=_UTC).timestamp()),
                int(self.end_dt().replace(tzinfo=_UTC).timestamp()),
            )
        return self.start_dt(), self.end_dt()

    def next(self) -> Period:
        return Period(self.year, 2) if self.half == 1 else Period(self.year + 1, 1)

    @classmethod
    def of(cls, value: Any) -> Period:
        if isinstance(value, int | float):
            d = dt.datetime.fromtimestamp(int(value), _UTC)
        elif isinstance(value, dt.datetime):
            d = value
        elif isinstance(value, dt.date):
            d = dt.datetime(value.year, value.month, value.day)
        else:
            raise TypeError(f"cannot place a {type(value).__name__} time in a history period")
        return cls(d.year, 1 if d.month <= 6 else 2)

    @classmethod
    def parse(cls, suffix: str) -> Period:
        m = re.fullmatch(r"(\d{4})_h([12])", suffix)
        if not m:
            raise ValueError(suffix)
        return cls(int(m.group(1)), int(m.group(2)))


def periods_between(lo: Any, hi: Any) -> list[Period]:
    """Every period from the one holding `lo` to the one holding `hi`, inclusive."""
    p, last = Period.of(lo), Period.of(hi)
    out = [p]
    while (p.year, p.half) < (last.year, last.half):
        p = p.next()
        out.append(p)
    return out


class HistoryTables:
    """Creates period tables on demand and keeps the `<mart>_hist` view current.

    `periods` fixes the periods that exist instead of listing the schema: the plan of
    `trackline sql … cycle` shows one representative period against a warehouse it never reads.
    """

    def __init__(
        self,
        wh: Warehouse,
        schema: str,
        prefix: str,
        name: str,
        mart: str,
        columns: list[Column],
        key: str,
        index_cols: list[str],
        sort_key: list[str] | None,
        periods: list[Period] | None = None,
    ) -> None:
        self.wh, self.schema, self.prefix, self.name = wh, schema, prefix, name
        self.mart, self.columns, self.key = mart, columns, key
        self.index_cols, self.sort_key = index_cols, sort_key
        self.periods = periods

    def table(self, p: Period) -> str:
        return f"{self.prefix}{self.name}_{p.suffix}"

    def existing(self) -> list[Period]:
        if self.periods is not None:
            return list(self.periods)
        out = []
        stem = f"{self.prefix}{self.name}_"
        for t in self.wh.list_tables(self.schema, stem):
            try:
                out.append(Period.parse(t[len(stem) :]))
            except ValueError:
                continue
        return sorted(out, key=lambda p: (p.year, p.half))

    def ensure(self, p: Period) -> str:
        name = self.table(p)
        if not self.wh.table_exists(self.schema, name):
            self.wh.create_table(
                self.schema, name, self.columns, dist_key=self.key, sort_key=self.sort_key
            )
            self.wh.create_index(self.schema, name, self.index_cols)
            self.rebuild_view()
        return name

    def present(self, specs: dict[str, dict[str, str]]) -> list[str]:
        """The period tables that exist per `specs` (`Warehouse.column_specs` of the schema),
        oldest first (no catalog query of its own)."""
        stem, found = self.wh.name(f"{self.prefix}{self.name}_"), []  # as stored
        for table in specs:
            if table.startswith(stem):
                try:
                    found.append(Period.parse(table[len(stem) :]))
                except ValueError:
                    continue
        return [self.table(p) for p in sorted(found, key=lambda p: (p.year, p.half))]

    def align(self, specs: dict[str, dict[str, str]]) -> list[str]:
        """Give every existing period the mart's columns it lacks (rows archived before read
        NULL in them), then rebuild the view when a column was added, or when the view is
        missing or stale (e.g. after a crash between the two on an engine whose DDL commits).
        Returns the ``period.column`` pairs added."""
        w = self.wh
        added = []
        tables = self.present(specs)
        for table in tables:
            for c in self.columns:
                if w.name(c.name) not in specs[w.name(table)]:
                    w.add_column(self.schema, table, c)
                    added.append(f"{table}.{c.name}")
        if not tables:
            return added
        view = specs.get(w.name(self.view_name()))  # a late-binding view may list no columns
        stale = view is not None and list(view) != [w.name(c.name) for c in self.columns]
        if added or stale or (view is None and not w.table_exists(self.schema, self.view_name())):
            self.rebuild_view(new_columns=True)
        return added

    def view_name(self) -> str:
        return f"{self.mart}_hist"

    def rebuild_view(self, *, new_columns: bool = False) -> None:
        """Union every period in the view. `new_columns`: its columns changed since it was
        made (added or retyped), so it is dropped and created (`Warehouse.replace_view`)."""
        w = self.wh
        cols = w.cols([c.name for c in self.columns])
        parts = [f"SELECT {cols} FROM {w.t(self.schema, self.table(p))}" for p in self.existing()]
        if not parts:
            return
        w.replace_view(
            self.schema, self.view_name(), " UNION ALL ".join(parts), new_columns=new_columns
        )
