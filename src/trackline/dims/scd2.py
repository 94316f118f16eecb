"""SCD Type 2: a dimension that keeps every version of each member.

Layout of the dimension table (besides the source's columns, copied into each version):

    <surrogate_key>    BIGINT     one per version, never reused (max + row number)
    valid_from         TIMESTAMP  when this version became true
    valid_to           TIMESTAMP  when it stopped; the current version holds FAR_FUTURE
                                  (9999-12-31), never NULL, so a point-in-time join is
                                  ``valid_from <= t AND t < valid_to``
    is_current         BOOLEAN    the version a plain join should take (at most one per key)
    row_hash           VARCHAR    MD5 of the tracked columns' canonical encoding (rowhash)
    closed_by_delete   BOOLEAN    this version ended because its key left the source

`apply` runs inside the sync's transaction, after the staging table holds this run's rows
(the whole snapshot for `cdc.strategy: full`, else the rows changed since the watermark):

1. one join of the staged rows with the current versions (a FULL JOIN for full snapshots
   with ``deletes: close``, else a LEFT JOIN) keeps, in a temporary table, the staged rows
   whose key has no current version or one whose tracked columns differ, and the current
   versions whose key is not staged (`changes_sql`): the only statement that reads every row;
2. the row hash of each staged row it kept, computed by the client from those rows alone
   (`hash_changes`): a page at a time, into a second temporary table;
3. the current versions it names are closed (one UPDATE, joined by surrogate key): a
   changed key's at its new version's start, a deleted key's at the run's clock;
4. each of its staged rows (new, changed, returning keys) opens a version (INSERT … SELECT);
5. with `ignored_columns`: the current versions whose ignored columns differ from the staged
   row get the staged values in place (UPDATE … FROM): no version opens or closes.

A staged key whose current version has the same tracked values is left alone, so
rerunning the same snapshot changes nothing. A version starts at the source's own change-time
column (`valid_from_column`) where configured and not NULL, else at the source's clock read
when the run started (never the warehouse's clock, which moves with load delays); a start
that would fall before the previous version's (a backdated change time) is moved up to it,
so versions of a key never overlap.

Change detection is NULL-safe and exact: each tracked column of the staged row is compared
with the current version's (`Warehouse.distinct`: ``IS DISTINCT FROM`` on DuckDB and
PostgreSQL; on Redshift, which lacks it, ``<>`` plus both NULL cases, VARCHAR also by
LENGTH since its ``=`` ignores trailing blanks, SUPER by its serialized bytes); the staging
table and the dimension share the columns' types. `row_hash` (the MD5 of the tracked
columns' canonical encoding, `trackline.dims.rowhash`, the same as every release stored) is
computed for the versions a run opens only, 1 % of the rows in a typical run, not for every
staged row. Staged rows are checked first: a NULL or duplicated natural key stops the load
(Redshift's UPDATE … FROM needs one source row per target row).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from trackline.config import TableConfig
from trackline.dims.rowhash import row_hashes
from trackline.errors import ConfigError, DimensionError, SchemaDriftError
from trackline.extract.types import with_max_bytes
from trackline.faults import checkpoint
from trackline.load import Column, Warehouse

FAR_FUTURE = dt.datetime(9999, 12, 31)
"""`valid_to` of a current version."""
VALID_FROM, VALID_TO, IS_CURRENT = "valid_from", "valid_to", "is_current"
ROW_HASH, CLOSED_BY_DELETE = "row_hash", "closed_by_delete"
META = (VALID_FROM, VALID_TO, IS_CURRENT, ROW_HASH, CLOSED_BY_DELETE)
DUPLICATE_SAMPLE = 5


@dataclass(frozen=True)
class Dimension:
    """One scd2 table, resolved against its source's columns."""

    name: str
    """The `tables:` entry."""
    schema: str
    table: str
    stage: str
    natural_key: tuple[str, ...]
    columns: tuple[str, ...]
    """Source columns kept in each version (every column of the staging table)."""
    tracked: tuple[str, ...]
    ignored: tuple[str, ...]
    """`scd2.ignored_columns`: kept up to date in the current version, never a new version."""
    surrogate: str
    valid_from_column: str | None
    deletes: str
    distribution: str
    dist_key: str | None

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.table}"


def natural_key(t: TableConfig, source_pk: Sequence[str]) -> list[str]:
    assert t.scd2 is not None
    key = list(t.scd2.natural_key or t.primary_key or source_pk)
    if not key:
        raise ConfigError(
            f"table {t.name!r}: write_mode scd2 needs a natural key; set `scd2.natural_key:` "
            "(the source has no primary key)"
        )
    return key


def dimension(
    t: TableConfig, schema: str, columns: Sequence[Column], source_pk: Sequence[str]
) -> Dimension:
    """Resolve `t`'s scd2 settings against the staged `columns`; a name that is not one of
    them is a ConfigError naming the key."""
    s = t.scd2
    assert s is not None
    names = [c.name for c in columns]
    key = natural_key(t, source_pk)

    def known(setting: str, cols: Sequence[str]) -> None:
        for c in cols:
            if c not in names:
                raise ConfigError(
                    f"table {t.name!r}: scd2.{setting} names {c!r}, which is not one of its "
                    f"columns ({', '.join(names)})"
                )

    known("natural_key", key)
    known("tracked_columns", s.tracked_columns or [])
    known("ignored_columns", s.ignored_columns)
    known("valid_from_column", [s.valid_from_column] if s.valid_from_column else [])
    clash = [c for c in (*META, s.surrogate_key) if c in names]
    if clash:
        raise ConfigError(
            f"table {t.name!r}: the source has a column {clash[0]!r}, which the dimension "
            "keeps for its history; rename it in a `query:` or set `scd2.surrogate_key`"
        )
    by_name = {c.name: c for c in columns}
    if s.valid_from_column and not pa.types.is_timestamp(by_name[s.valid_from_column].type):
        raise ConfigError(
            f"table {t.name!r}: scd2.valid_from_column {s.valid_from_column!r} is a "
            f"{by_name[s.valid_from_column].type} column; it must be a DATETIME or TIMESTAMP"
        )
    skip = {*key, *s.ignored_columns}
    if s.valid_from_column:
        skip.add(s.valid_from_column)  # it moves on every touch, changed or not
    tracked = s.tracked_columns or [n for n in names if n not in skip]
    if not tracked:
        raise ConfigError(f"table {t.name!r}: scd2 tracks no column; set scd2.tracked_columns")
    if s.distribution == "key" and not t.dist_key:
        raise ConfigError(f"table {t.name!r}: scd2.distribution 'key' needs `dist_key`")
    return Dimension(
        name=t.name,
        schema=schema,
        table=t.dimension,
        stage=t.target,
        natural_key=tuple(key),
        columns=tuple(names),
        tracked=tuple(tracked),
        ignored=tuple(c for c in s.ignored_columns if c not in tracked and c not in key),
        surrogate=s.surrogate_key,
        valid_from_column=s.valid_from_column,
        deletes=s.deletes,
        distribution=s.distribution,
        dist_key=t.dist_key,
    )


# --------------------------------------------------------------------------- SQL


CHANGES = "_tl_scd2_changes"
"""The apply's temporary table: the staged rows that open a version and the current versions
that close (`changes_sql`)."""
CURRENT = "_tl_current"
"""`CHANGES`: the surrogate key of the key's current version (NULL: it has none)."""
ROW_NO = "_tl_n"
"""`CHANGES`: 1..n for the n staged rows, in natural-key order (their versions' surrogate
keys follow it), then the closing-only rows; `HASHES` is keyed by it."""
HASHES = "_tl_scd2_hashes"
"""The apply's temporary table of the row hashes of `CHANGES`' staged rows (`ROW_NO`,
`ROW_HASH`), computed by the client from those rows alone (`hash_changes`)."""


def changes_sql(w: Warehouse, d: Dimension, columns: Sequence[Column], *, deletes: bool) -> str:
    """One pass over the staged rows and the current versions, into a temporary table:
    a staged row whose key has no current version (new, returning) or one whose tracked
    columns differ (changed: NULL-safe, `Warehouse.distinct`, column by column: staging table
    and dimension share the columns' types), with that version's surrogate key in `CURRENT`;
    with `deletes`, also each current version whose key is not staged (its source columns
    NULL: a staged key never is, `check_staged`). Every later statement joins this table
    (1 % of the rows in a typical run), not the staging table: one 1M x 1M join per run."""
    k0 = w.q(d.natural_key[0])
    by_name = {c.name: c for c in columns}
    cur = (
        f"(SELECT {w.cols([d.surrogate, *d.natural_key, *d.tracked])} "
        f"FROM {w.t(d.schema, d.table)} WHERE {w.q(IS_CURRENT)}) AS d"
    )
    join = "FULL JOIN" if deletes else "LEFT JOIN"
    differs = "\n  OR ".join(
        w.distinct(f"d.{w.q(n)}", f"x.{w.q(n)}", by_name[n]) for n in d.tracked
    )
    order = f"CASE WHEN x.{k0} IS NULL THEN 1 ELSE 0 END, {w.cols(d.natural_key, 'x.')}"
    return (
        f"CREATE TEMPORARY TABLE {w.q(CHANGES)} AS\n"
        f"SELECT {w.cols(d.columns, 'x.')},\n"
        f"  d.{w.q(d.surrogate)} AS {w.q(CURRENT)},\n"
        f"  ROW_NUMBER() OVER (ORDER BY {order}) AS {w.q(ROW_NO)}\n"
        f"FROM {w.t(d.schema, d.stage)} AS x\n"
        f"{join} {cur}\n"
        f"  ON {_on(w, d, 'x', 'd')}\n"
        f"WHERE d.{w.q(d.surrogate)} IS NULL OR x.{k0} IS NULL\n"
        f"  OR {differs}"
    )


def _changes(w: Warehouse, d: Dimension) -> str:
    """`CHANGES` with each staged row's version start, as relation ``c`` (one bound
    parameter: the run's source clock)."""
    start = "CAST(? AS TIMESTAMP)"
    if d.valid_from_column:
        start = f"COALESCE(x.{w.q(d.valid_from_column)}, {start})"
    return f"(SELECT x.*, {start} AS _tl_valid_from\n  FROM {w.q(CHANGES)} AS x) AS c"


def _on(w: Warehouse, d: Dimension, a: str, b: str) -> str:
    return " AND ".join(f"{a}.{w.q(k)} = {b}.{w.q(k)}" for k in d.natural_key)


def count_changes_sql(w: Warehouse, d: Dimension) -> str:
    """(Versions the close ends because of a change, because their key left the source,
    staged rows that open a version.)"""
    k0 = w.q(d.natural_key[0])
    cur = w.q(CURRENT)
    return (
        f"SELECT COALESCE(SUM(CASE WHEN {k0} IS NOT NULL AND {cur} IS NOT NULL THEN 1 ELSE 0 "
        "END), 0),\n"
        f"  COALESCE(SUM(CASE WHEN {k0} IS NULL THEN 1 ELSE 0 END), 0),\n"
        f"  COALESCE(SUM(CASE WHEN {k0} IS NOT NULL THEN 1 ELSE 0 END), 0)\n"
        f"FROM {w.q(CHANGES)}"
    )


def hashes_table_sql(w: Warehouse) -> str:
    return (
        f"CREATE TEMPORARY TABLE {w.q(HASHES)} "
        f"({w.q(ROW_NO)} BIGINT, {w.q(ROW_HASH)} {w.sized_text_type(32)})"
    )


def changed_rows_sql(w: Warehouse, d: Dimension, columns: Sequence[Column]) -> str:
    """One page of `CHANGES`' staged rows: `ROW_NO` and the tracked columns (parameters:
    the page's first `ROW_NO` exclusive, its last inclusive)."""
    by_name = {c.name: c for c in columns}
    tracked = ", ".join(w.fetchable(w.q(n), by_name[n]) for n in d.tracked)
    return (
        f"SELECT {w.q(ROW_NO)}, {tracked}\nFROM {w.q(CHANGES)}\n"
        f"WHERE {w.q(ROW_NO)} > ? AND {w.q(ROW_NO)} <= ? AND {w.q(d.natural_key[0])} IS NOT NULL"
    )


def hash_changes(
    w: Warehouse, d: Dimension, columns: Sequence[Column], opened: int, page_rows: int
) -> None:
    """Fill `HASHES` with the row hash of each staged row of `CHANGES` (the `opened` rows
    numbered 1..opened), `page_rows` at a time: fetched as Arrow in the types the source
    gave (`columns`), hashed by `rowhash.row_hashes` (the encoding and MD5 of every stored
    version) and appended. Only the rows that open a version are hashed, never the whole
    snapshot; memory holds one page."""
    by_name = {c.name: c for c in columns}
    schema = pa.schema(
        [pa.field(ROW_NO, pa.int64()), *(pa.field(n, by_name[n].type) for n in d.tracked)]
    )
    w.execute(hashes_table_sql(w))
    sql = changed_rows_sql(w, d, columns)
    for lo in range(0, max(opened, 1), page_rows):
        page = w.query_arrow(sql, (lo, lo + page_rows), schema)
        if not page.num_rows and lo:
            continue  # (the first page is written even empty: `trackline sql` shows it)
        out = pa.Table.from_arrays(
            [page.column(ROW_NO), row_hashes(page, d.tracked)],
            schema=pa.schema(
                [pa.field(ROW_NO, pa.int64()), with_max_bytes(pa.field(ROW_HASH, pa.string()), 32)]
            ),
        )
        with w.batch_relation(out) as rel:
            w.execute(
                f"INSERT INTO {w.q(HASHES)} ({w.cols([ROW_NO, ROW_HASH])}) "
                f"SELECT {w.cols([ROW_NO, ROW_HASH])} FROM {rel}"
            )


def close_sql(w: Warehouse, d: Dimension) -> str:
    """Close the current versions `CHANGES` names: a changed key's at its new version's
    start, a deleted key's at the run's clock (parameters: clock, clock, clock); never
    before the version's own start."""
    vf = w.q(VALID_FROM)
    k0 = w.q(d.natural_key[0])
    return (
        f"UPDATE {w.t(d.schema, d.table)} AS d\n"
        f"SET {w.q(VALID_TO)} = CASE WHEN c.{k0} IS NULL THEN\n"
        f"    CASE WHEN d.{vf} > CAST(? AS TIMESTAMP) THEN d.{vf} ELSE CAST(? AS TIMESTAMP) END\n"
        f"  ELSE CASE WHEN d.{vf} > c._tl_valid_from THEN d.{vf} ELSE c._tl_valid_from END END,\n"
        f"  {w.q(IS_CURRENT)} = FALSE,\n"
        f"  {w.q(CLOSED_BY_DELETE)} = CASE WHEN c.{k0} IS NULL THEN TRUE ELSE FALSE END\n"
        f"FROM {_changes(w, d)}\n"
        f"WHERE d.{w.q(d.surrogate)} = c.{w.q(CURRENT)}"
    )


def open_versions_sql(w: Warehouse, d: Dimension) -> str:
    """A version for every staged row of `CHANGES`, with its hash from `HASHES` (parameters:
    FAR_FUTURE, clock). Its surrogate key is the dimension's top one plus its `ROW_NO`. Its
    key has no current version any more (closed just before, or none yet): its start is
    moved up to the end of the key's last version, the latest of its closed ones (only
    those, and only of the keys in `CHANGES`, are aggregated)."""
    dim = w.t(d.schema, d.table)
    return (
        f"INSERT INTO {dim} ({w.cols([d.surrogate, *d.columns, *META])})\n"
        f"SELECT n.top + c.{w.q(ROW_NO)},\n"
        f"  {w.cols(d.columns, 'c.')},\n"
        "  CASE WHEN p.last_to > c._tl_valid_from THEN p.last_to ELSE c._tl_valid_from END,\n"
        f"  CAST(? AS TIMESTAMP), TRUE, h.{w.q(ROW_HASH)}, FALSE\n"
        f"FROM {_changes(w, d)}\n"
        f"CROSS JOIN (SELECT COALESCE(MAX({w.q(d.surrogate)}), 0) AS top FROM {dim}) AS n\n"
        f"LEFT JOIN {w.q(HASHES)} AS h ON h.{w.q(ROW_NO)} = c.{w.q(ROW_NO)}\n"
        f"LEFT JOIN (SELECT {w.cols(d.natural_key, 'v.')}, MAX(v.{w.q(VALID_TO)}) AS last_to\n"
        f"  FROM {dim} AS v JOIN {w.q(CHANGES)} AS k ON {_on(w, d, 'v', 'k')}\n"
        f"  WHERE NOT v.{w.q(IS_CURRENT)} GROUP BY {w.cols(d.natural_key, 'v.')}) AS p\n"
        f"  ON {_on(w, d, 'p', 'c')}\n"
        f"WHERE c.{w.q(d.natural_key[0])} IS NOT NULL"
    )


def update_ignored_sql(w: Warehouse, d: Dimension, columns: Sequence[Column]) -> str:
    """The current versions' ignored columns set to the staged values where any differs
    (NULL-safe: `Warehouse.distinct`), in place: no version opens or closes."""
    by_name = {c.name: c for c in columns}
    differs = " OR ".join(w.distinct(f"d.{w.q(n)}", f"s.{w.q(n)}", by_name[n]) for n in d.ignored)
    return (
        f"UPDATE {w.t(d.schema, d.table)} AS d\n"
        f"SET {', '.join(f'{w.q(c)} = s.{w.q(c)}' for c in d.ignored)}\n"
        f"FROM {w.t(d.schema, d.stage)} AS s\n"
        f"WHERE {_on(w, d, 'd', 's')}\n"
        f"  AND d.{w.q(IS_CURRENT)}\n"
        f"  AND ({differs})"
    )


# --------------------------------------------------------------------------- apply


@dataclass
class Applied:
    opened: int = 0
    """Versions opened (new, changed and returning keys); -1 where the engine cannot tell."""
    closed: int = 0
    """Current versions closed because their tracked columns changed."""
    deleted: int = 0
    """Current versions closed because their key left the source."""
    updated: int = 0
    """Current versions whose ignored columns were updated in place."""


def ensure_dimension(w: Warehouse, d: Dimension, columns: Sequence[Column]) -> None:
    """Create the dimension (its columns as staged, then the history columns); add a column
    the source gained since (NULL in older versions: they were opened before it existed).
    Row stores (PostgreSQL) index the surrogate key (unique) and the natural key: the close
    finds the versions `CHANGES` names, the open the top surrogate key and the changed keys'
    closed versions, by index instead of scanning every version (IF NOT EXISTS: a dimension
    an older version created gets them on its next run; a no-op on columnar engines)."""
    if not w.table_exists(d.schema, d.table):
        w.create_table(
            d.schema,
            d.table,
            dimension_columns(d, columns),
            dist_key=d.dist_key if d.distribution == "key" else None,
            sort_key=[*d.natural_key, VALID_FROM],
            replicated=d.distribution == "all",
        )
    else:
        have = set(w.column_names(d.schema, d.table))
        for c in columns:
            if w.name(c.name) not in have:  # (as stored: `Warehouse.name`); a NULL column
                w.add_column(d.schema, d.table, c)  # adds nothing to a row's hash (rowhash)
    if w.SECONDARY_INDEXES:
        # unique: the planner then knows a probe finds one version (without it, and with the
        # dimension's statistics a few runs old, PostgreSQL hashed all 1M versions for the
        # close's 10,000: 0.4-1.4 s against an index probe per key); it replaces the plain
        # index older releases made
        w.create_unique_index(d.schema, d.table, [d.surrogate])
        old = f"{d.table}_{d.surrogate}_ix"[: w.MAX_IDENTIFIER_LENGTH]
        w.execute(f"DROP INDEX IF EXISTS {w.t(d.schema, old)}")
    w.create_index(d.schema, d.table, list(d.natural_key))


def dimension_columns(d: Dimension, columns: Sequence[Column]) -> list[Column]:
    """The dimension's columns: the surrogate key, the staged `columns`, the history ones."""
    return [
        Column(d.surrogate, pa.int64(), nullable=False),
        *columns,
        Column(VALID_FROM, pa.timestamp("us"), nullable=False),
        Column(VALID_TO, pa.timestamp("us"), nullable=False),
        Column(IS_CURRENT, pa.bool_(), nullable=False),
        Column(ROW_HASH, pa.string(), nullable=False, max_bytes=32),
        Column(CLOSED_BY_DELETE, pa.bool_(), nullable=False),
    ]


def rebuild_dimension(w: Warehouse, d: Dimension, columns: Sequence[Column]) -> bool:
    """`trackline migrate`: copy the dimension, every version, into a new table whose source
    columns have the staged `columns`' (widened) types, and swap it in under its name, in the
    caller's transaction (a deep copy: for the widenings the engine cannot ALTER in place).
    Keeps the columns' order, distribution and sort key. False when there is no dimension."""
    if not w.table_exists(d.schema, d.table):
        return False
    by_name = {w.name(c.name): c for c in dimension_columns(d, columns)}
    names = w.column_names(d.schema, d.table)  # (as stored: `Warehouse.name`)
    missing = [n for n in names if n not in by_name]
    if missing:
        raise SchemaDriftError(
            f"table {d.name!r}: the dimension {d.key} has column {missing[0]!r}, which the "
            "source no longer has; nothing was changed"
        )
    w.rebuild_table(
        d.schema,
        d.table,
        [by_name[n] for n in names],
        dist_key=d.dist_key if d.distribution == "key" else None,
        sort_key=[*d.natural_key, VALID_FROM],
        replicated=d.distribution == "all",
    )
    return True


def widen_dimension(w: Warehouse, d: Dimension, columns: Sequence[Column]) -> list[str]:
    """Give the dimension's columns the types the staging table was widened to (a longer
    VARCHAR, INT → BIGINT, more DECIMAL digits), before the load's transaction (Redshift
    alters types outside transaction blocks only). Returns the columns altered. A change the
    engine cannot make in place stops the table, nothing loaded."""
    if not w.table_exists(d.schema, d.table):
        return []
    specs = w.column_specs(d.schema)  # (names as stored: `Warehouse.name`)
    n = w.name
    staged, have = specs.get(n(d.stage), {}), specs.get(n(d.table), {})
    todo = [
        c
        for c in columns
        if n(c.name) in have and staged.get(n(c.name), have[n(c.name)]) != have[n(c.name)]
    ]
    for c in todo:
        if not w.can_alter_type(have[n(c.name)], c):
            raise SchemaDriftError(
                f"table {d.name!r}: column {c.name!r} widened in the source ({have[n(c.name)]} → "
                f"{w.column_type(c)}), which {w.ENGINE} cannot ALTER in place in the dimension "
                f"{d.key}. Nothing was loaded. Run `trackline migrate {d.name}`: it rebuilds the "
                "staging table and the dimension, every version kept, with the new types"
            )
    with w.alter_type_scope():
        for c in todo:
            w.alter_column_type(d.schema, d.table, c)
    return [c.name for c in todo]


def check_staged(w: Warehouse, d: Dimension) -> Callable[[], None] | None:
    """A NULL or duplicated natural key in the staged rows stops the load. Where the engine
    checks uniqueness by building an index (`Warehouse.unique_in_transaction`: PostgreSQL),
    returns the index's drop, for the end of the apply."""
    stage = w.t(d.schema, d.stage)
    keys = w.cols(d.natural_key)
    nulls = " OR ".join(f"{w.q(k)} IS NULL" for k in d.natural_key)
    if int(w.scalar(f"SELECT COUNT(*) FROM {stage} WHERE {nulls}") or 0):
        raise DimensionError(
            f"table {d.name!r} → {d.key}: source rows with a NULL natural key "
            f"({', '.join(d.natural_key)}); nothing was changed. Fix the rows or choose "
            "another scd2.natural_key"
        )
    drop = w.unique_in_transaction(d.schema, d.stage, d.natural_key)
    if drop is not None:
        return drop
    dup = w.query(
        f"SELECT {keys}, COUNT(*) FROM {stage} GROUP BY {keys} HAVING COUNT(*) > 1 "
        f"ORDER BY {keys} LIMIT {DUPLICATE_SAMPLE}"
    )
    if dup:
        shown = "; ".join(
            ", ".join(f"{k}={v!r}" for k, v in zip(d.natural_key, r, strict=False)) for r in dup
        )
        raise DimensionError(
            f"table {d.name!r} → {d.key}: the source has several rows for one natural key "
            f"({shown}); nothing was changed. scd2.natural_key must identify one row"
        )
    return None


def apply(
    w: Warehouse,
    d: Dimension,
    columns: Sequence[Column],
    clock: dt.datetime,
    *,
    full_snapshot: bool,
    page_rows: int = 100_000,
    shrink: tuple[Callable[[int], None], int] | None = None,
) -> Applied:
    """Build this run's versions from the staging table (see the module docstring). Runs in
    the caller's transaction: the staging load, this and the state commit together.
    `page_rows` bounds the rows hashed at a time (the table's batch size). `shrink` (a full
    snapshot with ``deletes: close`` only): (the shrink guard, the staged rows); the guard is
    called with the dimension's current versions, which the changes join counts: the staged
    rows that have one (staged keys are unique, `check_staged`) plus those it closes as
    deleted. Raising stops the apply before it changes anything."""
    if not w.in_transaction:
        raise AssertionError("scd2 apply runs inside the load's transaction")
    # transaction-scoped (PostgreSQL: work_mem, no JIT; and the random page cost of data in
    # cache: with the unique surrogate index, the close probes it for the 1 % of versions
    # that close instead of hashing every version)
    w.bulk_join_settings(index_probes=True)
    ensure_dimension(w, d, columns)
    drop_unique = check_staged(w, d)
    if drop_unique is None:
        # statistics of this run's staged rows (else PostgreSQL plans the joins for the rows
        # the last vacuum saw, as sort-merge joins); where the check built a unique index,
        # the build already counted them and the index says the key is unique
        w.analyze(d.schema, d.stage)
    checkpoint("dims.before_apply")
    out = Applied()
    w.execute(changes_sql(w, d, columns, deletes=full_snapshot and d.deletes == "close"))
    # PostgreSQL: the planner knows nothing of a new temporary table (it guessed 6,298 rows
    # for 10,000 and walked the whole surrogate index in a merge join); the other engines
    # skip `analyze`
    w.analyze(None, CHANGES)
    opened = 0
    for closed, deleted, new in w.query(count_changes_sql(w, d)):  # none: `trackline sql`
        out.closed, out.deleted, opened = int(closed), int(deleted), int(new)
    if shrink is not None:
        if not (full_snapshot and d.deletes == "close"):
            raise AssertionError("the changes join counts the current versions of a FULL JOIN")
        guard, staged = shrink
        guard(staged - (opened - out.closed) + out.deleted)
    hash_changes(w, d, columns, opened, page_rows)
    w.execute(close_sql(w, d), (clock, clock, clock))
    checkpoint("dims.in_apply")
    out.opened = w.execute_count(open_versions_sql(w, d), (FAR_FUTURE, clock))
    w.execute(f"DROP TABLE {w.q(HASHES)}")
    w.execute(f"DROP TABLE {w.q(CHANGES)}")
    if drop_unique is not None:  # (the next run's load would maintain it row by row)
        drop_unique()
    if d.ignored:  # after the opens: a version opened just now already holds the values
        out.updated = w.execute_count(update_ignored_sql(w, d, columns))
    return out


def current_rows(w: Warehouse, schema: str, table: str) -> int:
    """How many current versions the dimension holds (0 before it exists)."""
    if not w.table_exists(schema, table):
        return 0
    return int(w.scalar(f"SELECT COUNT(*) FROM {w.t(schema, table)} WHERE {w.q(IS_CURRENT)}") or 0)
