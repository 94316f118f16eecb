"""Dimension tables: an atomic full replace guarded against shrunken snapshots, and SCD Type 2
history (`write_mode: replace | scd2`).

Sync loads the source into the table's target as usual; for ``scd2`` that target is a staging
table (``<dimension>_stage``) and `trackline.dims.scd2.apply` builds the dimension from it, in
the same warehouse transaction as the staging load, the batch ledger and the watermark: a run
that stops anywhere leaves the dimension, the staging table and the state as they were.

- `trackline.dims.guard`: the shrink guard shared by ``replace`` and ``scd2``;
- `trackline.dims.scd2`: the dimension's layout and the apply statements;
- `trackline.dims.history`: one key's versions (`trackline dims history`).

The per-dimension checks of `trackline check` live with the other checks
(`trackline.quality.dims`).
"""
