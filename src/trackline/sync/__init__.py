"""The EL loop for one table: plan → extract → stage → load + commit, batch after batch.

Each batch commits its rows, its ledger entry and the new watermark in ONE warehouse
transaction, so a crash loses at most the batch in flight and a rerun continues from the last
committed cursor (G3). Extraction and staging of batch N+1 run in a worker thread while batch N
loads (a queue of one), so the slower side sets the pace rather than the sum of both.

Raw tables carry one extra column, ``_tl_batch_id``: the ledger batch that wrote the row.
Marts consume raw by that id; replay and merge use it to stay idempotent.

Modules: `tables` (what a run reads and writes), `target` (create the raw table, drift,
JSON columns), `batches` (zero dates, watermark advance, merge by key), `syncer` (the loop).
"""

from trackline.sync.batches import dedup_last, merge_into
from trackline.sync.syncer import Syncer, now_utc, sync
from trackline.sync.tables import BATCH_COL, ResolvedTable, TableResult, resolve

__all__ = [
    "BATCH_COL",
    "ResolvedTable",
    "Syncer",
    "TableResult",
    "dedup_last",
    "merge_into",
    "now_utc",
    "resolve",
    "sync",
]
