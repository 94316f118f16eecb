"""Backfill: a pipeline table's history loaded from the legacy DW by chunk, then handed over
to the incremental sync.

- `chunks`: a time range cut into calendar months, weeks or days (UTC, half-open);
- `legacy`: the legacy side of one table: its SELECT (column conversions or a `query:`),
  checked against the target's types, a chunk's rows, COUNT and estimate;
- `setup`: one table resolved (both sources open, the range planned) and its handoff point;
- `ledger`: the `backfills` and `backfill_chunks` state tables;
- `plan`: `trackline backfill plan` (read-only);
- `run`: `trackline backfill run`: each chunk one transaction (rows, batch ledger entries,
  done row), the counts checked, tables in parallel, resumable;
- `handoff`: `trackline backfill handoff` and `status`.

It reuses the sync's extraction (`Source.stream`), stage layout, target creation, load path,
batch ledger and locks; the marts then consume the chunks' batches like any other.
"""
