"""Whole-table loads: `write_mode: replace` and `write_mode: scd2`.

Every batch of such a load joins one warehouse transaction (the caller opens it), so readers
see the table as it was or as it is after the load, never empty or half loaded: on every
engine the table is emptied with DELETE and refilled with INSERT/COPY inside that
transaction (no swap by rename: Redshift's and DuckDB's ALTER TABLE … RENAME cannot replace a
table other sessions read in one step, and PostgreSQL readers would wait on its lock).
PostgreSQL and DuckDB readers keep their snapshot (MVCC); Redshift's serializable isolation
does the same for its readers.

`WholeLoad.begin` runs first in the transaction (counts what the table holds; scd2: empties
the staging table), `WholeLoad.finish` last: the shrink guard (`trackline.dims.guard`), then
for scd2 the apply (`trackline.dims.scd2`). An error in either rolls the whole load back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from trackline.dims import scd2
from trackline.dims.guard import check_shrink
from trackline.dims.rowhash import ROW_HASH_COL
from trackline.load import Column, Warehouse
from trackline.report import Reporter
from trackline.sync.tables import ResolvedTable, TableResult


@dataclass
class WholeLoad:
    wh: Warehouse
    rt: ResolvedTable
    reporter: Reporter
    columns: Sequence[Column] = ()
    """scd2: the staged source columns (the dimension's own columns)."""
    source_pk: Sequence[str] = ()
    clock: dt.datetime | None = None
    """scd2: the source's clock when the run started (where a version has no change time)."""
    page_rows: int = 100_000
    """scd2: the most rows the apply hashes at a time (the table's batch size)."""
    before: int = 0
    dimension: scd2.Dimension | None = None
    applied: scd2.Applied = field(default_factory=scd2.Applied)

    @property
    def full(self) -> bool:
        return self.rt.cfg.cdc.strategy == "full"

    def prepare(self) -> None:
        """Before the load's transaction: scd2 widens the dimension's columns as the staging
        table was (`trackline.dims.scd2.widen_dimension`), and drops the staging table's row
        hash column, which releases before this one filled for every staged row (the apply
        now hashes only the rows that open a version: `trackline.dims.scd2.hash_changes`)."""
        t, w = self.rt.cfg, self.wh
        if t.write_mode != "scd2":
            return
        d = self.dimension = scd2.dimension(t, self.rt.target_schema, self.columns, self.source_pk)
        if w.name(ROW_HASH_COL) in w.column_names(self.rt.target_schema, self.rt.target):
            # (the staging table is trackline's own; one statement, in autocommit)
            w.execute(
                f"ALTER TABLE {w.t(self.rt.target_schema, self.rt.target)} "
                f"DROP COLUMN {w.q(ROW_HASH_COL)}"
            )
        for name in scd2.widen_dimension(w, d, self.columns):
            msg = f"{t.name}: column {name!r} widened in the dimension {d.key}"
            self.reporter.event("drift", msg, table=t.name, column=name)

    @property
    def counts_in_apply(self) -> bool:
        """scd2 with a full snapshot and `deletes: close`: the apply's one join sees every
        current version, so it counts them for the shrink guard (no COUNT of its own)."""
        d = self.dimension
        return self.full and d is not None and d.deletes == "close"

    def begin(self) -> None:
        t, w = self.rt.cfg, self.wh
        if t.write_mode == "scd2":
            if self.full and not self.counts_in_apply:
                self.before = scd2.current_rows(w, self.rt.target_schema, t.dimension)
            w.empty_private(self.rt.target_schema, self.rt.target)  # this run's rows only
        elif self.full:
            self.before = w.exact_rows(self.rt.target_schema, self.rt.target)

    def finish(self, res: TableResult) -> None:
        t, w = self.rt.cfg, self.wh

        def guard(before: int) -> None:
            check_shrink(t.name, self.rt.key, before, res.rows, t.shrink_guard)

        if self.full and not self.counts_in_apply:
            guard(self.before)
        if t.write_mode == "replace":
            if self.full and res.batches == 0:
                w.delete_all(self.rt.target_schema, self.rt.target)  # an empty source
            return
        assert self.clock is not None and self.dimension is not None
        d = self.dimension
        self.applied = scd2.apply(
            w,
            d,
            self.columns,
            self.clock,
            full_snapshot=self.full,
            page_rows=self.page_rows,
            shrink=(guard, res.rows) if self.counts_in_apply else None,
        )
        a = self.applied
        msg = (
            f"{t.name}: dimension {d.key}: {a.opened:,} versions opened, {a.closed:,} closed "
            f"by a change, {a.deleted:,} by a delete"
        )
        self.reporter.event("dimension", msg, table=t.name)
