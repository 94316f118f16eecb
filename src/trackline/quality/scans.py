"""``source.full_scan`` (warning): an extraction query that would read a whole source table.

Runs `trackline explain` (`trackline.jobs.explain`) for every table with a cursor and every
consolidation input of a MySQL source, and fails with one row per query whose plan scans a
table, with the index that fixes it. A scan is no error (the rows are still right), but a
read that grows with the table, not with the hour's rows, will one day not fit its slot.
"""

from __future__ import annotations

from trackline.config import Config
from trackline.load import Warehouse
from trackline.quality.checks import RUNS_TABLE, STATE_EXCEPTIONS, Check, Rows


def full_scan_check(cfg: Config) -> Check:
    def collect(wh: Warehouse) -> Rows:
        from trackline.jobs.explain import explain

        rows = [(e.what, ", ".join(e.scans), e.suggest or "") for e in explain(cfg, wh) if not e.ok]
        return Rows(["query", "scans", "fix"], rows)

    return Check(
        name="source.full_scan",
        severity="warning",
        sql="-- in the SOURCE, for each extraction query (`trackline explain`):\n"
        "EXPLAIN SELECT … WHERE (<cursor> > <watermark> OR …) AND <cursor> < <upper> "
        "ORDER BY <cursor>, <id>",
        key="query",
        table=RUNS_TABLE,
        exceptions=(cfg.state_schema, STATE_EXCEPTIONS),
        description="extraction queries whose MySQL plan reads a whole table (access type "
        "ALL or index) instead of an index range on the cursor",
        collect=collect,
    )
