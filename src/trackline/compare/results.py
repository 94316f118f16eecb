"""`trackline.compare_results`: one row per `trackline compare` run (the gate's history)."""

from __future__ import annotations

import json

from trackline.compare.outcome import CompareResult
from trackline.load import Warehouse
from trackline.state import utcnow

TABLE = "compare_results"


def save(wh: Warehouse, schema: str, res: CompareResult) -> None:
    """Append `res` (one INSERT: the row is there whole or not at all)."""
    T, TS = wh.TEXT_TYPE, wh.TIMESTAMP_TYPE
    wh.ensure_schema(schema)
    table = wh.t(schema, TABLE)
    wh.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (run_at {TS} NOT NULL, table_name {T} NOT NULL, "
        f"legacy {T}, trackline {T}, since {TS}, until {TS}, legacy_rows BIGINT, "
        f"trackline_rows BIGINT, missing_in_trackline BIGINT, missing_in_legacy BIGINT, "
        f"duplicates BIGINT, mismatches {T}, key_gap DOUBLE PRECISION, verdict {T}, detail {T})"
    )
    wh.execute(
        f"INSERT INTO {table} (run_at, table_name, legacy, trackline, since, until, "
        "legacy_rows, trackline_rows, missing_in_trackline, missing_in_legacy, duplicates, "
        "mismatches, key_gap, verdict, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            utcnow(),
            res.name,
            res.legacy,
            res.trackline,
            res.window[0],
            res.window[1],
            res.legacy_rows,
            res.trackline_rows,
            res.missing_in_trackline,
            res.missing_in_legacy,
            res.duplicates,
            json.dumps({c: d.mismatches for c, d in res.columns.items()}),
            res.key_gap,
            "pass" if res.ok else "fail",
            json.dumps({"failures": res.failures, "normalisations": res.normalisations}),
        ),
    )
