"""trackline's own state, kept in the warehouse (schema `trackline` by default).

Tables (schema version in `schema_version`; a change is a numbered migration below):

- ``watermarks``  one row per loaded table and source database: CDC cursor (tagged JSON), last
                  batch id, totals. One target may be loaded from several databases
                  (`--source-db`), each with its own cursor (v3);
- ``batches``     the batch ledger: every committed batch with its source database, staged
                  files, row count, checksum and cursor range, so replay knows what was loaded
                  and from where. Batch ids count per target table, whatever the source: they
                  are the raw rows' ``_tl_batch_id``, which the marts consume in order;
- ``runs``        run history: one row per command per table (status, rows, seconds, error);
- ``mart_progress`` for each mart, the last raw batch id it consumed from each raw table.
- ``check_results`` one row per data-quality check per `trackline check` run (v2);
- ``check_exceptions`` open/resolved failures of checks outside a retention group (v2).

Every state change is written by the caller inside the same warehouse transaction as the data
it describes; this module never commits on its own.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trackline.errors import StateError
from trackline.extract.cdc import Watermark
from trackline.load.base import Warehouse

SCHEMA_VERSION = 3

LEGACY_SOURCE = ""
"""`source_db` of a watermark or batch recorded before the source database was part of the key
(state version < 3)."""


def _migrations(w: Warehouse, s: str) -> list[list[str]]:
    T, TS = w.TEXT_TYPE, w.TIMESTAMP_TYPE
    return [
        [
            f"CREATE TABLE IF NOT EXISTS {w.t(s, 'watermarks')} (table_key {T} NOT NULL, "
            f"strategy {T}, value {T}, last_batch_id BIGINT, rows_total BIGINT, "
            f"updated_at {TS}, PRIMARY KEY (table_key))",
            f"CREATE TABLE IF NOT EXISTS {w.t(s, 'batches')} (table_key {T} NOT NULL, "
            f"batch_id BIGINT NOT NULL, run_id {T}, row_count BIGINT, checksum {T}, "
            f"files {T}, manifest {T}, wm_from {T}, wm_to {T}, loaded_at {TS}, "
            f"PRIMARY KEY (table_key, batch_id))",
            f"CREATE TABLE IF NOT EXISTS {w.t(s, 'runs')} (run_id {T} NOT NULL, command {T}, "
            f"table_key {T}, started_at {TS}, finished_at {TS}, status {T}, rows_moved BIGINT, "
            f"seconds DOUBLE PRECISION, error {T}, detail {T})",
            f"CREATE TABLE IF NOT EXISTS {w.t(s, 'mart_progress')} (mart {T} NOT NULL, "
            f"raw_table {T} NOT NULL, last_batch_id BIGINT, updated_at {TS}, "
            f"PRIMARY KEY (mart, raw_table))",
        ],
        # 2: data-quality results history, and the exceptions of checks that belong to no
        #    retention group (run-level and custom checks; same columns as a group's table).
        [
            f"CREATE TABLE IF NOT EXISTS {w.t(s, 'check_results')} (run_id {T} NOT NULL, "
            f"check_name {T} NOT NULL, severity {T}, status {T}, failing_count BIGINT, "
            f"new_count BIGINT, sample_keys {T}, seconds DOUBLE PRECISION, checked_at {TS}, "
            f"detail {T})",
            f"CREATE TABLE IF NOT EXISTS {w.t(s, 'check_exceptions')} (id BIGINT NOT NULL, "
            f"check_name {T}, table_name {T}, key_value {T}, detail {T}, first_seen {TS}, "
            f"last_seen {TS}, status {T}, resolved_at {TS}, note {T}, PRIMARY KEY (id))",
        ],
        # 3: the source database joins a watermark's key: `sync --source-db A` then
        #    `--source-db B` into one target keep a cursor each (they shared one, and B's rows
        #    older than A's cursor were never read). The table is rebuilt (engines cannot change
        #    a primary key in place) with every row kept; rows from before carry LEGACY_SOURCE
        #    and are taken over by the first source database that syncs the table (`get`).
        #    Ledger entries record their source database from now on. Redshift runs RENAME TO
        #    and ADD COLUMN inside a transaction block (only external tables may not be altered
        #    in one: https://docs.aws.amazon.com/redshift/latest/dg/r_ALTER_TABLE.html).
        [
            f"CREATE TABLE {w.t(s, 'watermarks_v3')} (table_key {T} NOT NULL, "
            f"source_db {T} NOT NULL, strategy {T}, value {T}, last_batch_id BIGINT, "
            f"rows_total BIGINT, updated_at {TS}, PRIMARY KEY (table_key, source_db))",
            f"INSERT INTO {w.t(s, 'watermarks_v3')} (table_key, source_db, strategy, value, "
            "last_batch_id, rows_total, updated_at) SELECT table_key, "
            f"'{LEGACY_SOURCE}', strategy, value, last_batch_id, rows_total, updated_at "
            f"FROM {w.t(s, 'watermarks')}",
            f"DROP TABLE {w.t(s, 'watermarks')}",
            f"ALTER TABLE {w.t(s, 'watermarks_v3')} RENAME TO {w.q('watermarks')}",
            f"ALTER TABLE {w.t(s, 'batches')} ADD COLUMN source_db {T}",
        ],
    ]


def pipeline_lock(state_schema: str, work: str) -> str:
    """The warehouse lock name of one pipeline's `work` ("cycle", "scheduler"): pipelines
    with their own state schema share a warehouse database without blocking each other,
    while two runs of the same pipeline still exclude each other. (Sync locks are per
    target table instead: two pipelines writing one table must not overlap.)"""
    return f"{work}:{state_schema}"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class TableState:
    table_key: str
    source_db: str
    strategy: str | None
    watermark: Watermark
    last_batch_id: int
    rows_total: int
    updated_at: dt.datetime | None


class StateStore:
    def __init__(self, wh: Warehouse, schema: str = "trackline") -> None:
        self.wh = wh
        self.schema = schema

    def t(self, name: str) -> str:
        return self.wh.t(self.schema, name)

    def ensure(self) -> None:
        """Create or migrate the state tables (idempotent, in one transaction; once per
        connection)."""
        w = self.wh
        if f"state:{self.schema}" in w.ready:
            return
        w.run_transaction(self._migrate)
        w.ready.add(f"state:{self.schema}")

    def _migrate(self) -> None:
        w = self.wh
        w.ensure_schema(self.schema)
        w.execute(
            f"CREATE TABLE IF NOT EXISTS {self.t('schema_version')} "
            f"(version INTEGER NOT NULL, applied_at {w.TIMESTAMP_TYPE})"
        )
        current = w.scalar(f"SELECT MAX(version) FROM {self.t('schema_version')}") or 0
        if current > SCHEMA_VERSION:
            raise StateError(
                f"the state schema {self.schema!r} is at version {current}, newer than this "
                f"trackline ({SCHEMA_VERSION}); upgrade trackline"
            )
        for version, stmts in enumerate(_migrations(w, self.schema), start=1):
            if version <= current:
                continue
            for sql in stmts:
                w.execute(sql)
            w.execute(
                f"INSERT INTO {self.t('schema_version')} (version, applied_at) VALUES (?, ?)",
                (version, utcnow()),
            )

    # ------------------------------------------------------------------ watermarks

    def get(self, table_key: str, source_db: str) -> TableState:
        """The state of `table_key` as loaded from `source_db`. A watermark recorded before
        the source database was part of the key (LEGACY_SOURCE) counts as this database's
        until some database's sync replaces it (`put`): after an upgrade, the database that
        loaded the table goes on from its cursor."""
        rows = self.wh.query(
            f"SELECT source_db, strategy, value, last_batch_id, rows_total, updated_at "
            f"FROM {self.t('watermarks')} WHERE table_key = ? AND source_db IN (?, ?)",
            (table_key, source_db, LEGACY_SOURCE),
        )
        rows.sort(key=lambda r: r[0] != source_db)  # this database's own row first
        if not rows:
            return TableState(table_key, source_db, None, Watermark(), 0, 0, None)
        _, strategy, value, last, total, at = rows[0]
        return TableState(
            table_key,
            source_db,
            strategy,
            Watermark.from_json(value),
            int(last or 0),
            int(total or 0),
            at,
        )

    def put(
        self,
        table_key: str,
        source_db: str,
        strategy: str,
        wm: Watermark,
        batch_id: int,
        rows_added: int,
    ) -> None:
        """Set the cursor (call inside the transaction that loaded the batch)."""
        cur = self.get(table_key, source_db)
        self.wh.execute(
            f"DELETE FROM {self.t('watermarks')} WHERE table_key = ? AND source_db IN (?, ?)",
            (table_key, source_db, LEGACY_SOURCE),
        )
        self.wh.execute(
            f"INSERT INTO {self.t('watermarks')} (table_key, source_db, strategy, value, "
            "last_batch_id, rows_total, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                table_key,
                source_db,
                strategy,
                wm.to_json(),
                batch_id,
                cur.rows_total + rows_added,
                utcnow(),
            ),
        )

    def reset(self, table_key: str) -> list[str]:
        """Forget every watermark of `table_key` (all its source databases, which share the
        target the caller empties); return the databases whose watermark was dropped."""
        dropped = self.source_dbs(table_key)
        self.wh.execute(f"DELETE FROM {self.t('watermarks')} WHERE table_key = ?", (table_key,))
        return dropped

    def source_dbs(self, table_key: str) -> list[str]:
        """The source databases holding a watermark of `table_key` (LEGACY_SOURCE included)."""
        rows = self.wh.query(
            f"SELECT source_db FROM {self.t('watermarks')} WHERE table_key = ? ORDER BY source_db",
            (table_key,),
        )
        return [str(r[0]) for r in rows]

    def all_tables(self) -> list[TableState]:
        rows = self.wh.query(
            f"SELECT table_key, source_db FROM {self.t('watermarks')} ORDER BY table_key, source_db"
        )
        return [self.get(r[0], r[1]) for r in rows]

    # ------------------------------------------------------------------ batch ledger

    def last_batch_id(self, table_key: str) -> int:
        """The last batch loaded into `table_key`, from whichever source database."""
        last = self.wh.scalar(
            f"SELECT MAX(batch_id) FROM {self.t('batches')} WHERE table_key = ?", (table_key,)
        )
        return int(last or 0)

    def next_batch_id(self, table_key: str) -> int:
        return self.last_batch_id(table_key) + 1

    def record_batch(
        self,
        *,
        table_key: str,
        source_db: str,
        batch_id: int,
        run_id: str,
        row_count: int,
        checksum: str,
        files: tuple[str, ...],
        manifest: str | None,
        wm_from: Watermark,
        wm_to: Watermark,
    ) -> None:
        self.wh.execute(
            f"INSERT INTO {self.t('batches')} (table_key, source_db, batch_id, run_id, row_count, "
            "checksum, files, manifest, wm_from, wm_to, loaded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                table_key,
                source_db,
                batch_id,
                run_id,
                row_count,
                checksum,
                json.dumps(list(files)),
                manifest,
                wm_from.to_json(),
                wm_to.to_json(),
                utcnow(),
            ),
        )

    def batches(self, table_key: str, after: int = 0) -> list[dict[str, Any]]:
        rows = self.wh.query(
            f"SELECT batch_id, row_count, checksum, files, manifest, loaded_at, source_db "
            f"FROM {self.t('batches')} WHERE table_key = ? AND batch_id > ? ORDER BY batch_id",
            (table_key, after),
        )
        return [
            {
                "batch_id": int(r[0]),
                "row_count": int(r[1]),
                "checksum": r[2],
                "files": tuple(json.loads(r[3])),
                "manifest": r[4],
                "loaded_at": r[5],
                "source_db": r[6],
            }
            for r in rows
        ]

    # ------------------------------------------------------------------ run history

    def record_run(
        self,
        run_id: str,
        command: str,
        table_key: str | None,
        started: dt.datetime,
        status: str,
        rows: int,
        seconds: float,
        error: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Write a finished run row in one go (per-table rows inside a multi-table command)."""
        self.wh.run_transaction(
            lambda: self.wh.execute(
                f"INSERT INTO {self.t('runs')} (run_id, command, table_key, started_at, "
                "finished_at, status, rows_moved, seconds, error, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    command,
                    table_key,
                    started,
                    utcnow(),
                    status,
                    rows,
                    seconds,
                    error,
                    json.dumps(detail, default=str) if detail else None,
                ),
            )
        )

    def start_run(
        self,
        run_id: str,
        command: str,
        table_key: str | None,
        started: dt.datetime,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Write a run row with status ``running`` before the work starts, so a run that
        never gets to `finish_run` (SIGKILL, power loss) still leaves a trace: the next run
        that takes the same lock marks it ``killed`` (`recover_dead_runs`)."""
        self.wh.run_transaction(
            lambda: self.wh.execute(
                f"INSERT INTO {self.t('runs')} (run_id, command, table_key, started_at, "
                "status, rows_moved, detail) VALUES (?, ?, ?, ?, 'running', 0, ?)",
                (
                    run_id,
                    command,
                    table_key,
                    started,
                    json.dumps(detail, default=str) if detail else None,
                ),
            )
        )

    def finish_run(
        self,
        run_id: str,
        command: str,
        status: str,
        rows: int,
        seconds: float,
        error: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record how a run started with `start_run` ended (ok, partial, failed,
        interrupted)."""
        self.wh.run_transaction(
            lambda: self.wh.execute(
                f"UPDATE {self.t('runs')} SET finished_at = ?, status = ?, rows_moved = ?, "
                "seconds = ?, error = ?, detail = ? WHERE run_id = ? AND command = ?",
                (
                    utcnow(),
                    status,
                    rows,
                    seconds,
                    error,
                    json.dumps(detail, default=str) if detail else None,
                    run_id,
                    command,
                ),
            )
        )

    def rows_committed(self, run_id: str, table_key: str | None = None) -> int:
        """Rows the batches of a run committed (the ledger commits with each batch)."""
        sql = f"SELECT SUM(row_count) FROM {self.t('batches')} WHERE run_id = ?"
        params: tuple[Any, ...] = (run_id,)
        if table_key is not None:
            sql += " AND table_key = ?"
            params += (table_key,)
        return int(self.wh.scalar(sql, params) or 0)

    def recover_dead_runs(
        self, commands: tuple[str, ...], lock: str, plan: bool = False
    ) -> list[str]:
        """Mark ``killed`` the runs of `commands` still ``running``: call it holding `lock`,
        the lock every such run holds while it works. A run that holds no lock is not
        running, so its process died without recording its outcome. Its rows are what the
        batch ledger holds under its run id (each batch commits with its ledger row).

        `plan`: the warehouse answers no rows (`trackline sql`); show the UPDATE anyway."""
        runs = self.t("runs")
        marks = ", ".join("?" * len(commands))
        dead: list[tuple[Any, ...]] = self.wh.query(
            f"SELECT run_id, command, started_at FROM {runs} "
            f"WHERE status = 'running' AND command IN ({marks})",
            commands,
        )
        if plan and not dead:
            dead = [(None, commands[0], None)]
        for run_id, command, started in dead:
            rows = self.rows_committed(run_id)
            now = utcnow()
            seconds = (now - started).total_seconds() if started else None
            params: tuple[Any, ...]
            sql, params = (
                f"UPDATE {runs} SET status = 'killed', finished_at = ?, rows_moved = ?, "
                "seconds = ?, error = ? WHERE run_id = ? AND command = ? "
                "AND status = 'running'",
                (
                    now,
                    int(rows or 0),
                    seconds,
                    f"the process ended without recording how this run ended (killed, "
                    f"or the machine stopped); found at {now:%Y-%m-%d %H:%M:%S} UTC, when "
                    f"the lock {lock!r} was free; seconds = until then",
                    run_id,
                    command,
                ),
            )

            def mark(sql: str = sql, params: tuple[Any, ...] = params) -> None:
                self.wh.execute(sql, params)

            self.wh.run_transaction(mark)
        return [r[0] for r in dead if r[0] is not None]

    def last_runs(self, table_key: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        where, params = ("WHERE table_key = ?", (table_key,)) if table_key else ("", ())
        rows = self.wh.query(
            f"SELECT run_id, command, table_key, started_at, finished_at, status, rows_moved, "
            f"seconds, error, detail FROM {self.t('runs')} {where} "
            f"ORDER BY started_at DESC LIMIT {int(limit)}",
            params,
        )
        keys = [
            "run_id",
            "command",
            "table_key",
            "started_at",
            "finished_at",
            "status",
            "rows",
            "seconds",
            "error",
            "detail",
        ]
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # ------------------------------------------------------------------ mart progress

    def mart_progress(self, mart: str, raw_table: str) -> int:
        v = self.wh.scalar(
            f"SELECT last_batch_id FROM {self.t('mart_progress')} WHERE mart = ? AND raw_table = ?",
            (mart, raw_table),
        )
        return int(v or 0)

    def has_mart_progress(self, mart: str, raw_table: str) -> bool:
        """Whether a progress row exists (0 in `mart_progress` may be a real position)."""
        n = self.wh.scalar(
            f"SELECT COUNT(*) FROM {self.t('mart_progress')} WHERE mart = ? AND raw_table = ?",
            (mart, raw_table),
        )
        return bool(n)

    def followed_batches(self, table_key: str, lo: int, hi: int) -> list[int]:
        """The batches (lo, hi] of `table_key` that a follow pass wrote (each holds every
        source row of the keys it names, read at once): their ledger `wm_to` says so."""
        rows = self.wh.query(
            f"SELECT batch_id, wm_to FROM {self.t('batches')} WHERE table_key = ? "
            "AND batch_id > ? AND batch_id <= ? ORDER BY batch_id",
            (table_key, lo, hi),
        )
        return [int(b) for b, wm in rows if wm and Watermark.from_json(wm).extra.get("followed")]

    def set_mart_progress(self, mart: str, raw_table: str, batch_id: int) -> None:
        self.wh.execute(
            f"DELETE FROM {self.t('mart_progress')} WHERE mart = ? AND raw_table = ?",
            (mart, raw_table),
        )
        self.wh.execute(
            f"INSERT INTO {self.t('mart_progress')} (mart, raw_table, last_batch_id, updated_at) "
            "VALUES (?, ?, ?, ?)",
            (mart, raw_table, batch_id, utcnow()),
        )


Migration = Callable[[Warehouse, str], list[str]]
