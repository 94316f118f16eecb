"""What moves: tables with their CDC rules, defaults, and the marts' retention groups."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from trackline.config.base import Ident, Model


class CdcConfig(Model):
    strategy: Literal["hybrid", "timestamp", "id", "full"] = "hybrid"
    """`follow` (given as the strategy) is `hybrid` on (cursor, id) for new rows, plus a
    re-read by key of every key the table named by `follow` changed since the last sync (see
    docs/cdc.md); it reads back as `hybrid` with `follow` set."""
    cursor: Ident | None = None
    """Time column (DATETIME/TIMESTAMP or unix integer)."""
    id: Ident | None = None
    """Unique, increasing tie-breaker (hybrid) or the id cursor (strategy id)."""
    null_cursor: Literal["error", "load"] = "error"
    """A row whose cursor is NULL: stop with an error, or load it once and report it."""
    follow: Ident | None = None
    """strategy follow: the driving `tables:` entry (e.g. uni_tracking_info). Each sync
    re-reads, by `follow_key`, the rows of this table whose key the driving table's batches
    loaded since the last sync. The driving table syncs first in a cycle."""
    follow_key: Ident | None = None
    """strategy follow: the key column both tables share (e.g. order_id); the source must
    have an index starting with it (checked at every sync start, refused without one)."""
    follow_chunk_keys: int = Field(default=10_000, gt=0, le=100_000)
    """strategy follow: keys per `WHERE key IN (...)` query (each query has a fixed cost on
    the source and the reader: 100,000 keys cost about 0.85 s of source reads in lists of
    1,000 and 0.5 s in lists of 10,000, bench/follow_bench.py)."""

    @model_validator(mode="before")
    @classmethod
    def _follow_is_hybrid(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("strategy") == "follow":
            if not (data.get("follow") and data.get("follow_key")):
                raise ValueError(
                    "strategy 'follow' needs `follow` (the driving table) and `follow_key` "
                    "(the key column both tables share)"
                )
            data = {**data, "strategy": "hybrid"}  # new rows arrive by (cursor, id)
        return data

    @model_validator(mode="after")
    def _columns_for_strategy(self) -> CdcConfig:
        if self.follow or self.follow_key:
            if not (self.follow and self.follow_key):
                raise ValueError(
                    "strategy 'follow' needs `follow` (the driving table) and `follow_key` "
                    "(the key column both tables share)"
                )
            if self.strategy != "hybrid":
                raise ValueError(
                    f"`follow` re-reads rows by key beside a hybrid cursor; strategy "
                    f"{self.strategy!r} cannot have it (use strategy: follow)"
                )
        if self.strategy in ("hybrid", "timestamp") and not self.cursor:
            raise ValueError(f"strategy {self.strategy!r} needs `cursor` (the time column)")
        if self.strategy in ("hybrid", "id") and not self.id:
            raise ValueError(f"strategy {self.strategy!r} needs `id` (a unique increasing column)")
        return self


class Scd2Config(Model):
    """How a `write_mode: scd2` table keeps history (see docs/dimensions.md)."""

    natural_key: list[Ident] | None = None
    """The columns that identify one member of the dimension (default: `primary_key`, else
    the source's primary key)."""
    tracked_columns: list[Ident] | None = None
    """Columns whose change opens a new version (default: every column but the natural key,
    `valid_from_column` and `ignored_columns`)."""
    ignored_columns: list[Ident] = Field(default_factory=list)
    """Columns whose change alone opens no new version (a version keeps the values it was
    opened with)."""
    deletes: Literal["close", "ignore"] = "close"
    """A key gone from a full snapshot: close its current version, or keep it current."""
    valid_from_column: Ident | None = None
    """The source's own change-time column (DATETIME/TIMESTAMP): a new version is valid from
    its value. Default (or where it is NULL): the source's clock when the run read it."""
    surrogate_key: Ident = "dim_key"
    """The surrogate key column: one integer per version, never reused."""
    distribution: Literal["all", "key"] = "all"
    """Redshift: `all` copies the (small) dimension to every node (DISTSTYLE ALL); `key`
    distributes it by the table's `dist_key` (a large dimension joined on that column)."""


class TableConfig(Model):
    name: Ident
    """Source table name (or, with `query`, the name this source goes by)."""
    source: Ident | None = None
    """Which entry of `sources:` (default: the only one)."""
    source_db: Ident | None = None
    query: str | None = None
    """A SELECT (e.g. a join) to read instead of the table; the cursor names its columns."""
    target_schema: Ident = "public"
    target_table: Ident | None = None
    """Default: `<name>_raw` for append tables, `<name>` otherwise."""
    cdc: CdcConfig
    """Required: the strategy decides which columns must exist, so there is no safe default."""
    primary_key: list[Ident] | None = None
    """Default: read from the source's primary key."""
    batch_size: int | None = Field(default=None, gt=0)
    lag_seconds: int | None = Field(default=None, ge=0)
    lookback_seconds: int = Field(default=0, ge=0)
    write_mode: Literal["append", "merge", "replace", "scd2"] = "append"
    """append: raw events; merge: one row per key; replace: the table becomes the source's
    snapshot, atomically; scd2: a dimension with history (`scd2:`)."""
    scd2: Scd2Config | None = None
    """Settings of a `write_mode: scd2` table (default settings when omitted)."""
    shrink_guard: float = Field(default=0.5, ge=0, le=1)
    """replace / scd2 with a full snapshot: refuse a snapshot with fewer rows than this
    fraction of the rows the table holds (its current rows for scd2), leaving it untouched;
    0 turns the guard off (e.g. for one run after a planned clean-up)."""
    dist_key: Ident | None = None
    sort_key: list[Ident] | None = None
    json_columns: list[Ident] = Field(default_factory=list)
    """Text columns that hold JSON documents (besides MySQL JSON columns and MariaDB columns
    with a JSON_VALID check, found on their own): stored as SUPER on Redshift with
    `warehouse.json_as: super`, as text elsewhere."""
    raw_retention_seconds: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TableConfig:
        if self.lookback_seconds and self.write_mode != "merge":
            raise ValueError(
                "lookback_seconds re-reads rows already loaded; it needs write_mode: merge "
                "(idempotent by key)"
            )
        if self.cdc.strategy == "timestamp" and self.write_mode != "merge":
            raise ValueError(
                "cdc strategy 'timestamp' re-reads the boundary second; it needs "
                "write_mode: merge (idempotent by key)"
            )
        if self.cdc.strategy == "full" and self.write_mode == "append":
            object.__setattr__(self, "write_mode", "replace")
        if self.cdc.follow and (self.write_mode != "append" or self.query):
            raise ValueError(
                "cdc strategy 'follow' re-reads rows into the raw table by key: it needs a "
                "table (not `query`) with write_mode: append"
            )
        if self.scd2 is not None and self.write_mode != "scd2":
            raise ValueError("`scd2:` settings need write_mode: scd2")
        if self.write_mode == "scd2" and self.scd2 is None:
            object.__setattr__(self, "scd2", Scd2Config())
        return self

    @property
    def target(self) -> str:
        """The table sync loads (for scd2: the staging table the dimension is built from)."""
        if self.write_mode == "scd2":
            return f"{self.dimension}_stage"
        if self.target_table:
            return self.target_table
        return f"{self.name}_raw" if self.write_mode == "append" else self.name

    @property
    def dimension(self) -> str:
        """scd2: the dimension table (`target_table`, default the table's name)."""
        return self.target_table or self.name


class Defaults(Model):
    batch_size: int = Field(default=100_000, gt=0)
    lag_seconds: int = Field(default=300, ge=0)
    hold_ceiling_seconds: int = Field(default=3600, ge=0)
    """Longest an open write transaction may hold the upper bound; past it: a warning."""
    lock_wait_margin_seconds: int = Field(default=60, ge=0)
    """The hold starts this long before an open transaction's InnoDB start: a statement that
    waited for a metadata or table lock stamped NOW() before its transaction began, and once
    it has finished the server no longer tells how long it waited. It delays the bound only
    while a write transaction is open and only where the lag is shorter than the margin."""
    zero_date: Literal["null", "error"] = "null"
    """MySQL `0000-00-00` dates: load as NULL and report, or stop with an error."""
    read_window_batches: int = Field(default=4, ge=1)
    """Rows one source query reads, in batches: a run reads a table as consecutive queries of
    at most `batch_size` x this many rows, each continued after the last row the one before
    read. The MySQL reader buffers a query's rows as fast as the server sends them, so
    without a window a warehouse slower than the source (PostgreSQL, Redshift, an S3 stage)
    would hold a whole initial load in memory. Tables whose order has no unique key (a
    `timestamp` table without `cdc.id`, a `full` table without an integer primary key) are
    read as one query."""
    raw_retention_seconds: int = 2 * 86400
    workers: int = Field(default=2, ge=1, le=32)
    """Tables a cycle syncs at the same time, each on its own source and warehouse
    connection (on DuckDB, cursors on the one open database: their loads overlap too).
    1 = one table after the other; the end state is the same either way."""


# --------------------------------------------------------------------------- marts


class AnchorConfig(Model):
    table: Ident = "mart_uni_tracking_info"
    source: Ident = "uni_tracking_info"
    """The `tables:` entry (by name) whose raw table feeds this mart."""
    time: Ident = "update_time"
    tie_breaker: Ident | None = "id"
    history_name: Ident = "uti"
    sort_key: list[Ident] | None = None
    """Redshift SORTKEY of the mart and its history (default: time, key)."""


class FollowerConfig(Model):
    table: Ident
    source: Ident
    kind: Literal["one_per_key", "events"]
    time: Ident | None = None
    """events: the event time that drives retention and history period. one_per_key
    (optional): a row whose key is not in the anchor (an orphan: its key never got an anchor
    row) is archived by this time once past the retention, into that time's period; without
    it such rows stay in the mart."""
    event_key: list[Ident] | None = None
    """events: columns that identify one event (default: the source primary key; with
    `changes: newest` the order-tracking config uses [order_id, traceSeq, pathTime]).
    NULLs in it match NULLs."""
    changes: Literal["insert_once", "newest", "follow"] = "insert_once"
    """events whose source rows change: `insert_once` keeps the first version read;
    `newest` upserts by event key, the version with the greatest `version` column winning
    (its table's cdc cursor should be that column, so a rewrite is read again); `follow`
    replaces all events of a key with each re-read of that key (its table's cdc strategy
    is `follow`). one_per_key followers replace their row whenever their table follows."""
    version: Ident | None = None
    """changes: newest: the column that orders versions (e.g. time_modified); ties go to the
    greater tie-breaker (the table's cdc id), then to the later read."""
    history_name: Ident
    on_reactivation: Literal["restore", "report"] = "restore"
    sort_key: list[Ident] | None = None

    @model_validator(mode="after")
    def _events_need_time(self) -> FollowerConfig:
        if self.kind == "events" and not self.time:
            raise ValueError("a follower of kind 'events' needs `time` (the event time column)")
        if self.changes != "insert_once" and self.kind != "events":
            raise ValueError(
                "`changes` applies to followers of kind 'events' (a one_per_key follower "
                "replaces its row when its table's cdc strategy is follow)"
            )
        if self.changes == "newest" and not self.version:
            raise ValueError("changes: newest needs `version` (e.g. time_modified)")
        if self.version and self.changes != "newest":
            raise ValueError("`version` is read only with changes: newest")
        return self


class RetentionGroupConfig(Model):
    name: Ident = "order_tracking"
    key: Ident = "order_id"
    schema_: Ident = Field(default="settlement_ods", alias="schema")
    retention_seconds: int = Field(default=15_552_000, gt=0)
    history_prefix: Ident = "hist_"
    exceptions_table: Ident = "order_tracking_exceptions"
    anchor: AnchorConfig = AnchorConfig()
    followers: list[FollowerConfig] = []

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------- quality
