"""Consolidation: N source inputs (tables or SELECTs, e.g. two joins) → one staging table
with ``processed_at`` → one target merged by key (`trackline consolidate`).

Each input is read with its own (time, id) cursor; each batch lands in the staging table in
the same warehouse transaction as that input's watermark. Only when every input succeeded does
the merge run: in ONE transaction it deletes the target rows whose keys are pending in
staging, inserts the newest pending row per key and stamps the staging rows processed. A run
stopped anywhere is repeated by the next one with the same result. Processed staging rows are
purged by the daily maintenance after `staging_retention_seconds`.

- `trackline.consolidate.schema`: the inputs' columns must agree (names and types);
- `trackline.consolidate.extract`: one input → staging, batch by batch;
- `trackline.consolidate.merge`: the tables, the merge transaction, the purge;
- `trackline.consolidate.run`: one run (lock, inputs, merge, run history).
"""

from trackline.consolidate.run import COMMAND, ConsolidationResult, Consolidator, consolidate

__all__ = ["COMMAND", "ConsolidationResult", "Consolidator", "consolidate"]
