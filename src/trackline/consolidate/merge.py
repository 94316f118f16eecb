"""The staging table → the target, in ONE warehouse transaction, and the staging purge.

The merge (all statements in one transaction, so a crash anywhere leaves target and staging
as they were, and the next run repeats it whole):

    -- rows whose key is NULL cannot be merged by key: counted and reported, marked processed
    DELETE FROM target WHERE EXISTS (SELECT 1 FROM staging s
        WHERE s.processed_at IS NULL AND s.k = target.k)
    INSERT INTO target (cols)
    SELECT cols FROM (
        SELECT cols, ROW_NUMBER() OVER (PARTITION BY k
            ORDER BY <newest_by> DESC NULLS LAST, _tl_batch DESC, _tl_row DESC) AS _tl_rn
        FROM staging WHERE processed_at IS NULL AND k IS NOT NULL) d
    WHERE _tl_rn = 1
    UPDATE staging SET processed_at = :now WHERE processed_at IS NULL
    -- and the merge's progress: the last staging batch processed

Every statement also reads only the batches after the last one merged (`_tl_batch > :n`,
read from the state): the merge's cost follows the hour's rows, not the
staging table's retention, and with the target's key index (row stores) nor its size.

One row per key reaches the target (the newest of the pending rows by `newest_by`, then the
latest staged), whatever it held before: the delete has no time window. Rerunning after a
commit finds no pending row and changes nothing.

The purge deletes processed rows older than `staging_retention_seconds`; pending rows are
never purged.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from trackline.config import ConsolidationConfig
from trackline.consolidate.schema import BATCH_COL, PROCESSED_COL, ROW_COL, staging_columns
from trackline.errors import SchemaDriftError
from trackline.extract.cdc import Watermark
from trackline.faults import checkpoint
from trackline.load import Column, Warehouse
from trackline.load.base import declared_bytes
from trackline.state import StateStore


def ensure_tables(wh: Warehouse, c: ConsolidationConfig, columns: list[Column]) -> None:
    """Create the target and the staging table (same distribution; the target sorted by
    `sort_key`, default the key; staging by its batch), or check that existing ones hold
    the columns the inputs produce, widening a column the inputs now produce wider."""
    _widen_tables(wh, c, columns)
    wh.run_transaction(lambda: _ensure_tables(wh, c, columns))  # rerun whole on a conflict


_INT_BITS = {"tinyint": 8, "smallint": 16, "int": 32, "integer": 32, "bigint": 64}


def _narrower(wh: Warehouse, spec: str, col: Column) -> bool:
    """Whether a column declared `spec` (`Warehouse.column_specs`) cannot hold every value
    of `col`: an integer of fewer bits, a DECIMAL with fewer digits on a side of the point,
    or text of fewer declared bytes (Redshift)."""
    have, want = spec.split("(")[0].strip(), wh.column_type(col).lower()
    have_bits, want_bits = _INT_BITS.get(have), _INT_BITS.get(want.split("(")[0].strip())
    if have_bits is not None and want_bits is not None:
        return have_bits < want_bits
    dec = r"(?:numeric|decimal)\((\d+),\s*(\d+)\)"
    had, wants = re.match(dec, spec), re.match(dec, want)
    if had and wants:  # more digits on either side of the point
        (p1, s1), (p2, s2) = map(int, had.groups()), map(int, wants.groups())
        return s2 > s1 or p2 - s2 > p1 - s1
    have_bytes = declared_bytes(spec)
    m = re.fullmatch(r"varchar\((\d+)\)", want)
    return have_bytes is not None and m is not None and have_bytes < int(m.group(1))


def _widen_tables(wh: Warehouse, c: ConsolidationConfig, columns: list[Column]) -> None:
    """An input's column that widened at the source (INT → BIGINT, a DECIMAL with more
    digits, a longer VARCHAR where the engine sizes text) is widened in the target and
    staging tables before anything is read, as the sync does for its tables; where the
    engine cannot ALTER the type in place, the run stops naming the column, with nothing
    read. Each ALTER stands alone: a rerun after a crash between two of them alters what is
    left."""
    s = c.target_schema
    todo: list[tuple[str, Column]] = []
    for table in (c.target_table, c.staging):
        if not wh.table_exists(s, table):
            continue
        specs = wh.column_specs(s, table).get(wh.name(table), {})
        for col in columns:
            have = specs.get(wh.name(col.name))
            if have is None or not _narrower(wh, have, col):
                continue
            if not wh.can_alter_type(have, col):
                raise SchemaDriftError(
                    f"consolidation {c.name!r}: column {col.name!r} of {s}.{table} is {have}, "
                    f"but the inputs now produce {wh.column_type(col)}, which {wh.ENGINE} "
                    "cannot ALTER in place. Nothing was read. Recreate the table with the "
                    "wider type (copying its rows), or CAST the inputs back"
                )
            todo.append((table, col))
    with wh.alter_type_scope():
        for table, col in todo:
            wh.alter_column_type(s, table, col)


def _ensure_tables(wh: Warehouse, c: ConsolidationConfig, columns: list[Column]) -> None:
    s = c.target_schema
    wh.ensure_schema(s)
    for table, cols, sort in (
        (c.target_table, columns, c.sort_key or c.key),
        (c.staging, staging_columns(columns), [BATCH_COL]),
    ):
        if wh.table_exists(s, table):
            have = set(wh.column_names(s, table))
            missing = [col.name for col in cols if col.name.lower() not in have | _lower(have)]
            if missing:
                raise SchemaDriftError(
                    f"consolidation {c.name!r}: the inputs produce column(s) {missing} that "
                    f"{s}.{table} lacks; add them to the table (ALTER TABLE … ADD COLUMN) "
                    "or drop them from the inputs' `columns:`"
                )
        else:
            wh.create_table(s, table, cols, dist_key=c.dist_key, sort_key=sort)
        # Row stores (PostgreSQL): the merge's DELETE probes the target by key and every
        # statement reads staging by batch; without these it scans both whole. A no-op
        # where the engine has no secondary indexes; IF NOT EXISTS, so a target created by
        # an older version gets its index on the next run.
        wh.create_index(s, table, c.key if table == c.target_table else [BATCH_COL])


def _lower(names: set[str]) -> set[str]:
    return {n.lower() for n in names}


@dataclass
class MergeResult:
    pending: int = 0
    merged: int = 0
    """Rows inserted into the target (one per key)."""
    null_keys: int = 0


MERGE_SOURCE = "*"
"""The state's `source_db` of a consolidation's merge progress (it covers every input)."""


def merged_key(c: ConsolidationConfig) -> str:
    """The state entry whose `id` is the last staging batch the merge has processed."""
    return f"{c.target_schema}.{c.staging}#merged"


def merge(
    wh: Warehouse,
    c: ConsolidationConfig,
    columns: list[Column],
    order: list[str],
    now: dt.datetime,
    state: StateStore,
) -> MergeResult:
    """Move every pending staging row into the target by key, in one transaction with the
    merge's progress (the last staging batch processed): every batch up to it is processed,
    so the merge reads only the batches after it, whatever the staging table keeps."""
    target = wh.t(c.target_schema, c.target_table)
    staging = wh.t(c.target_schema, c.staging)
    progress = state.get(merged_key(c), MERGE_SOURCE).watermark.id
    done = progress if isinstance(progress, int) else 0
    after = (done,)

    def pending(alias: str = "") -> str:
        """Pending rows of the batches after the last merged one (bound: `after`)."""
        return f"{alias}{wh.q(PROCESSED_COL)} IS NULL AND {alias}{wh.q(BATCH_COL)} > ?"

    keys = wh.cols(c.key)
    names = wh.cols([col.name for col in columns])
    match = " AND ".join(f"s.{wh.q(k)} = {target}.{wh.q(k)}" for k in c.key)
    has_key = " AND ".join(f"{wh.q(k)} IS NOT NULL" for k in c.key)
    no_key = " OR ".join(f"{wh.q(k)} IS NULL" for k in c.key)
    newest = [f"{wh.q(n)} DESC NULLS LAST" for n in order]
    newest += [f"{wh.q(BATCH_COL)} DESC", f"{wh.q(ROW_COL)} DESC"]
    res = MergeResult()

    def work() -> None:
        wh.bulk_join_settings(index_probes=True)  # PostgreSQL: probe the target's key index
        count = f"SELECT COUNT(*) FROM {staging} WHERE {pending()}"
        res.pending = int(wh.scalar(count, after) or 0)
        if not res.pending:
            return
        res.null_keys = int(wh.scalar(f"{count} AND ({no_key})", after) or 0)
        wh.execute(
            f"DELETE FROM {target} WHERE EXISTS (SELECT 1 FROM {staging} AS s "
            f"WHERE {pending('s.')} AND {match})",
            after,
        )
        checkpoint("consolidate.after_delete")
        res.merged = wh.execute_count(
            f"INSERT INTO {target} ({names}) SELECT {names} FROM ("
            f"SELECT {names}, ROW_NUMBER() OVER (PARTITION BY {keys} "
            f"ORDER BY {', '.join(newest)}) AS {wh.q('_tl_rn')} "
            f"FROM {staging} WHERE {pending()} AND {has_key}) AS d "
            f"WHERE {wh.q('_tl_rn')} = 1",
            after,
        )
        last = f"SELECT MAX({wh.q(BATCH_COL)}) FROM {staging} WHERE {pending()}"
        top = int(wh.scalar(last, after) or done)
        wh.execute(
            f"UPDATE {staging} SET {wh.q(PROCESSED_COL)} = ? WHERE {pending()}", (now, *after)
        )
        state.put(merged_key(c), MERGE_SOURCE, "merge", Watermark(id=top), top, res.merged)
        checkpoint("consolidate.before_merge_commit")

    # The staging rows were just appended: without fresh statistics PostgreSQL plans the
    # DELETE for the few pending rows it last saw and hash-joins the whole target.
    wh.analyze(c.target_schema, c.staging)
    wh.run_transaction(work)
    checkpoint("consolidate.after_merge_commit")
    return res


def pending_rows(wh: Warehouse, c: ConsolidationConfig) -> int:
    if not wh.table_exists(c.target_schema, c.staging):
        return 0
    staging = wh.t(c.target_schema, c.staging)
    return int(
        wh.scalar(f"SELECT COUNT(*) FROM {staging} WHERE {wh.q(PROCESSED_COL)} IS NULL") or 0
    )


def purge_staging(wh: Warehouse, c: ConsolidationConfig, now: dt.datetime) -> int:
    """Delete staging rows processed more than `staging_retention_seconds` before `now`."""
    if not wh.table_exists(c.target_schema, c.staging):
        return 0
    cutoff = now - dt.timedelta(seconds=c.staging_retention_seconds)
    staging = wh.t(c.target_schema, c.staging)
    sql = f"DELETE FROM {staging} WHERE {wh.q(PROCESSED_COL)} < ?"
    return wh.run_transaction(lambda: wh.execute_count(sql, (cutoff,)))
