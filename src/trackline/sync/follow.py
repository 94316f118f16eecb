"""CDC strategy `follow`: re-read, by key, the rows of every key a driving table changed.

A table without an update time (ecs_order_info) still changes after creation. Its rows are
read by (cursor, id) like any hybrid table (new rows arrive by their creation time), and after
that read each sync re-reads the rows of every key the driving table (uni_tracking_info) loaded
since the last follow pass:

    keys   SELECT DISTINCT key FROM <driver raw> WHERE _tl_batch_id > :done AND <= :hi
    read   SELECT <columns> FROM <table> WHERE key IN (:k1, …, :kN)   (N = follow_chunk_keys)

The driver's raw batches are walked in chunks of about one batch of rows; the keys of a chunk
are read in IN-lists of `follow_chunk_keys`, and the rows read are loaded as ordinary batches
of the raw table. A key's rows all land in one batch (batches are cut between IN-lists only),
so each followed batch holds, for every key it names, everything the source had for that key
when it was read. Its ledger entry says so (`wm_to.extra.followed`), for the marts.

The position in the driver's ledger is a `mart_progress` row named ``follow:<raw table>``,
committed with the last batch of each driver chunk: kill the pass anywhere and the rerun
re-reads the chunk (the marts keep the last read of a key; nothing doubles). The position is
first taken before the table's first read begins (`begin`), at the driver's last batch then:
every row that read returns is as new as that batch or newer, and a driver change loaded
after it is followed, even when the read is a snapshot that a crash interrupted and a later
run finished (its early batches were read before the change). Until the driver has loaded
anything the position waits for the first pass, which starts at the driver's last batch (the
driver's own first load is no change to follow: re-reading every key it names would re-read
the whole table by key).

The IN-list is served by an index whose first column is the key; without one each IN-list
would scan the table, so the sync refuses to start (`check_follow_index`).
"""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa

from trackline.config import Config, TableConfig
from trackline.errors import ConfigError
from trackline.extract import Relation, Source
from trackline.faults import checkpoint
from trackline.load import Warehouse
from trackline.report import Reporter
from trackline.stage import Stage
from trackline.state import StateStore, utcnow
from trackline.sync.tables import BATCH_COL, ResolvedTable, TableResult, resolve


class Syncer(Protocol):
    """What a follow pass uses of the sync run (`trackline.sync.syncer.Syncer`)."""

    cfg: Config
    wh: Warehouse
    state: StateStore
    stage: Stage
    reporter: Reporter
    run_id: str
    read_shapes: dict[str, tuple[str, pa.Schema]]

    def source(self, rt: ResolvedTable) -> Source: ...


FOLLOW = "follow"
"""`mart_progress` rows of follow passes are named ``follow:<schema>.<raw table>``."""


def progress_name(table_key: str) -> str:
    return f"{FOLLOW}:{table_key}"


def drivers_first(tables: list[TableConfig]) -> list[TableConfig]:
    """The tables in config order, except that a following table syncs after its driver
    (when both sync in this run): the follow pass reads the driver's new batches."""
    out: list[TableConfig] = []
    waiting = [t for t in tables]
    names = {t.name for t in tables}
    while waiting:
        for t in waiting:
            d = t.cdc.follow
            if not d or d not in names or any(o.name == d for o in out):
                out.append(t)
                waiting.remove(t)
                break
        else:  # (the config refuses cycles: a driver never follows)
            out += waiting
            break
    return out


def check_follow_index(src: Source, rt: ResolvedTable) -> str:
    """The name of the source index that serves the re-read by key; a clear error without
    one (the config cannot know the source's indexes, so every sync checks first)."""
    t = rt.cfg
    key = t.cdc.follow_key or ""
    index = src.leading_index(Relation(t.name, rt.source_db), key)
    if index is None and key not in {c.name for c in src.columns(Relation(t.name, rt.source_db))}:
        raise ConfigError(
            f"table {t.name!r}: tables[].cdc.follow_key {key!r} is not a column of "
            f"{rt.source_db}.{t.name}. Nothing was read"
        )
    if index is None:
        raise ConfigError(
            f"table {t.name!r}: cdc strategy follow re-reads rows by {key!r} "
            f"(tables[].cdc.follow_key), but {rt.source_db}.{t.name} has no index that starts "
            f"with {key!r}, so every IN-list would scan the table. Create one (CREATE INDEX "
            f"idx_{t.name}_{key} ON {t.name} ({key})) or use another strategy. Nothing was read"
        )
    return index


def _literals(src: Source, keys: list[object]) -> str:
    """The keys of one IN-list as SQL literals (integer keys without a call per key: an
    IN-list of 10,000 keys is built 10x per 100,000 changed orders)."""
    if all(type(k) is int for k in keys):
        return ", ".join(map(str, keys))
    return ", ".join(map(src.lit, keys))


class FollowPass:
    """One follow pass of one table (after its cursor read, under its sync lock)."""

    def __init__(
        self,
        syncer: Syncer,
        rt: ResolvedTable,
        res: TableResult,
        source_db: str | None = None,
        target_schema: str | None = None,
    ) -> None:
        self.s, self.rt, self.res = syncer, rt, res
        cfg = syncer.cfg
        t = rt.cfg
        assert t.cdc.follow and t.cdc.follow_key
        self.driver = resolve(cfg, cfg.table(t.cdc.follow), source_db, target_schema)
        self.mark = progress_name(rt.key)
        self.key = t.cdc.follow_key

    def begin(self) -> None:
        """Before the table's read: take the follow position at the driver's last batch when
        there is none yet and the driver has loaded something (see the module docstring)."""
        state, d_key = self.s.state, self.driver.key
        d = self.driver.cfg
        rel = (
            Relation(d.name, None, d.query) if d.query else Relation(d.name, self.driver.source_db)
        )
        if self.key not in {c.name for c in self.s.source(self.rt).columns(rel)}:
            # the pass reads the keys from the driver's raw table: refused before any read
            raise ConfigError(
                f"table {self.rt.cfg.name!r}: tables[].cdc.follow_key {self.key!r} is not a "
                f"column of its driving table {d.name!r} "
                f"({'its query' if d.query else f'{self.driver.source_db}.{d.name}'}), whose "
                "raw batches name the changed keys. Nothing was read"
            )
        if state.has_mart_progress(self.mark, d_key):
            return
        start = state.last_batch_id(d_key)
        if start:
            self.s.wh.run_transaction(lambda: state.set_mart_progress(self.mark, d_key, start))

    def run(self) -> int:
        """Re-read the keys the driver loaded since the last pass; returns the rows read."""
        s, w, rt = self.s, self.s.wh, self.rt
        state = s.state
        d_key = self.driver.key
        if not state.has_mart_progress(self.mark, d_key):
            start = state.last_batch_id(d_key)
            w.run_transaction(lambda: state.set_mart_progress(self.mark, d_key, start))
            return 0
        done = state.mart_progress(self.mark, d_key)
        batch_rows = rt.cfg.batch_size or s.cfg.defaults.batch_size
        chunks: list[tuple[int, int]] = []
        lo, rows, hi = done, 0, done
        for b in state.batches(d_key, after=done):
            hi, rows = b["batch_id"], rows + b["row_count"]
            if rows >= batch_rows:
                chunks.append((lo, hi))
                lo, rows = hi, 0
        if hi > lo:
            chunks.append((lo, hi))
        if not chunks:
            return 0
        if not w.table_exists(self.driver.target_schema, self.driver.target):
            return 0
        src = s.source(rt)
        select, schema = s.read_shapes[rt.key]
        t = rt.cfg
        rel = src.relation_sql(Relation(t.name, rt.source_db))
        kq, order = src.q(self.key), src.q(t.cdc.id or self.key)
        draw = w.t(self.driver.target_schema, self.driver.target)
        total = 0
        s.reporter.event(
            "plan", f"{t.name}: follow {t.cdc.follow} batches {done + 1}-{hi}", table=t.name
        )
        for lo, hi in chunks:
            keys = [
                r[0]
                for r in w.query(
                    f"SELECT DISTINCT {w.q(self.key)} FROM {draw} WHERE {w.q(BATCH_COL)} > ? "
                    f"AND {w.q(BATCH_COL)} <= ? AND {w.q(self.key)} IS NOT NULL "
                    f"ORDER BY {w.q(self.key)}",
                    (lo, hi),
                )
            ]
            pending: list[pa.Table] = []
            n = 0
            step = t.cdc.follow_chunk_keys
            for i in range(0, len(keys), step):
                part = _literals(src, keys[i : i + step])
                sql = f"SELECT {select} FROM {rel} WHERE {kq} IN ({part}) ORDER BY {order}"
                for b in src.stream(sql, schema, batch_rows):
                    pending.append(pa.Table.from_batches([b]))
                    n += b.num_rows
                if n >= batch_rows:  # cut between IN-lists only: a key stays in one batch
                    total += self._commit(pending, schema, lo)
                    pending, n = [], 0
            total += self._commit(pending, schema, hi)
        return total

    def _commit(self, parts: list[pa.Table], schema: pa.Schema, upto: int) -> int:
        """Load the rows read as one raw batch (when there are any) and move the follow
        position to `upto`, in one transaction."""
        s, w, rt, state = self.s, self.s.wh, self.rt, self.s.state
        d_key = self.driver.key
        data = pa.concat_tables(parts) if parts else schema.empty_table()
        if data.num_rows == 0:
            if upto > state.mart_progress(self.mark, d_key):
                w.run_transaction(lambda: state.set_mart_progress(self.mark, d_key, upto))
            return 0
        wm = state.get(rt.key, rt.source_db).watermark
        tagged = wm.__class__(
            ts=wm.ts,
            id=wm.id,
            phase=wm.phase,
            snapshot_upper=wm.snapshot_upper,
            snapshot_key=wm.snapshot_key,
            extra={"followed": {"driver": d_key, "upto": upto}},
        )
        batch_id = state.next_batch_id(rt.key)
        data = data.append_column(BATCH_COL, pa.array([batch_id] * data.num_rows, pa.int64()))
        staged = s.stage.write_batch(
            source_db=rt.source_db,
            schema=rt.target_schema,
            table=rt.target,
            batch_id=batch_id,
            data=w.stage_form(data),
            when=utcnow(),
        )

        def work() -> None:
            w.append_arrow(rt.target_schema, rt.target, data, staged)
            checkpoint("sync.follow_before_commit")
            state.record_batch(
                table_key=rt.key,
                source_db=rt.source_db,
                batch_id=batch_id,
                run_id=s.run_id,
                row_count=data.num_rows,
                checksum=staged.checksum,
                files=staged.uris,
                manifest=staged.manifest_uri,
                wm_from=wm,
                wm_to=tagged,
            )
            state.put(rt.key, rt.source_db, rt.cfg.cdc.strategy, wm, batch_id, data.num_rows)
            state.set_mart_progress(self.mark, d_key, upto)

        w.run_transaction(work)
        checkpoint("sync.follow_after_commit")
        self.res.rows += data.num_rows
        self.res.batches += 1
        self.res.last_batch = batch_id
        s.reporter.progress(rt.cfg.name, data.num_rows)
        return data.num_rows
