"""The recorder behind `trackline sql`: a Redshift adapter that records what it would run.

`Recorder._execute` records the SQL and `_query` answers with no rows, so a plan is the one of a
first run: schemas and tables are created, watermarks start empty, every lock is free. Nothing
is read from or written to the stage (`NoWriteStage`); sources are opened for metadata only
(`MetadataSource`: column types, primary keys, the clock), and a table's plan shows one batch.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp

from trackline.config import Config, RedshiftWarehouse, StageConfig
from trackline.errors import StageError
from trackline.extract.source import Relation, Source
from trackline.extract.types import SourceColumn
from trackline.load.base import Column, StagedFiles
from trackline.load.redshift import Redshift
from trackline.load.stagefiles import TRANSIENT_PREFIX
from trackline.stage import Stage, arrow_form

PLACEHOLDER_ROLE = "arn:aws:iam::000000000000:role/trackline-copy"
"""Used when the config's warehouse is not Redshift and no --iam-role is given."""
PLACEHOLDER_STAGE = "s3://your-stage-bucket/trackline"
"""Used when the config's stage is not on S3 and no --stage-url is given."""


def plan_config(
    cfg: Config, iam_role: str | None = None, *, compat: bool = False
) -> RedshiftWarehouse:
    """The config's Redshift warehouse, or a placeholder one; in compat mode only if `compat`
    (the tests run a plan on PostgreSQL that way)."""
    wh = cfg.warehouse
    if isinstance(wh, RedshiftWarehouse):
        update: dict[str, Any] = {"compat_postgres": compat}
        if iam_role:
            update["iam_role"] = iam_role
        return wh.model_copy(update=update)
    return RedshiftWarehouse(
        host="redshift.invalid",
        user="trackline",
        iam_role=iam_role or PLACEHOLDER_ROLE,
        compat_postgres=compat,
    )


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple[Any, ...] = ()


Answer = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


def no_rows(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return []


class Recorder(Redshift):
    """A Redshift adapter that records its statements instead of sending them anywhere.

    Queries are answered by `answer` (no rows, unless a plan says otherwise); the tables the
    plan created are remembered, with their columns, and listed like a catalog would."""

    def __init__(self, config: RedshiftWarehouse, stage_url: str) -> None:
        super().__init__(config)
        self.stage_url = stage_url.rstrip("/")
        self.recorded: list[Statement] = []
        self.answer: Answer = no_rows
        self.plan_stage = NoWriteStage(StageConfig(url=self.stage_url))
        self.stage = self.plan_stage
        self._tables: dict[tuple[str, str], list[Column]] = {}
        self._transient = 0
        self._temps = 0

    def sql(self) -> list[str]:
        return [s.sql for s in self.recorded]

    @contextlib.contextmanager
    def unrecorded(self) -> Iterator[None]:
        """Run the block for its effect on the catalog only (what a command finds in place)."""
        start = len(self.recorded)
        try:
            yield
        finally:
            del self.recorded[start:]

    def temp_name(self, prefix: str = "_tl_batch") -> str:  # type: ignore[override]
        # Numbered per recorder (not random), so the plan reads well and diffs cleanly.
        self._temps += 1
        return f"{prefix}_{self._temps}"

    # driver plumbing: record, answer nothing
    def connect(self) -> None:
        for sql in self.session_setup():
            self.execute(sql)

    def close(self) -> None:
        return None

    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        self.recorded.append(Statement(sql, tuple(params)))
        if sql.startswith("CREATE TABLE ") and " AS SELECT " in sql:
            self._remember_ctas(sql)

    def _remember_ctas(self, sql: str) -> None:
        """A table made by CREATE TABLE … AS SELECT: its column names, from the query's
        select list (`SELECT * FROM (<query>) x` looks through to the query)."""
        tree = sqlglot.parse_one(sql, read="redshift")
        table, query = tree.find(exp.Table), tree.expression
        while isinstance(query, exp.Select) and query.is_star:
            inner = query.args.get("from_") or query.args.get("from")
            if inner is None or not isinstance(inner.this, exp.Subquery):
                return
            query = inner.this.this
        if table is None or not isinstance(query, exp.Query):
            return
        names = [n for n in query.named_selects if n]
        self._tables[self._key(table.db, table.name)] = [Column(n, pa.string()) for n in names]

    def _key(self, schema: str, table: str) -> tuple[str, str]:
        return self.name(schema), self.name(table)  # as the catalog lists it

    def _execute_count(self, sql: str, params: Sequence[Any]) -> int:
        self._execute(sql, params)
        return 0

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        self.recorded.append(Statement(sql, tuple(params)))
        return self.answer(sql, tuple(params))

    def _begin(self) -> None:
        self._execute("BEGIN", ())

    def _commit(self) -> None:
        self._execute("COMMIT", ())

    def _rollback(self) -> None:
        self._execute("ROLLBACK", ())

    # the catalog remembers what the plan created, so later steps see the same columns
    def create_table(
        self,
        schema: str,
        table: str,
        columns: Sequence[Column],
        *,
        primary_key: Sequence[str] | None = None,
        dist_key: str | None = None,
        sort_key: Sequence[str] | None = None,
        replicated: bool = False,
        write_heavy: bool = False,
    ) -> None:
        super().create_table(
            schema,
            table,
            columns,
            primary_key=primary_key,
            dist_key=dist_key,
            sort_key=sort_key,
            replicated=replicated,
            write_heavy=write_heavy,
        )
        self._tables[self._key(schema, table)] = list(columns)

    def add_column(self, schema: str, table: str, column: Column) -> None:
        super().add_column(schema, table, column)
        self._tables.setdefault(self._key(schema, table), []).append(column)

    def alter_column_type(self, schema: str, table: str, column: Column) -> None:
        super().alter_column_type(schema, table, column)
        cols = self._tables.get(self._key(schema, table), [])
        self._tables[self._key(schema, table)] = [
            column if self.name(c.name) == self.name(column.name) else c for c in cols
        ]

    def column_specs(self, schema: str, table: str | None = None) -> dict[str, dict[str, str]]:
        """The catalog of what this plan created, each column spelt as Redshift's catalog
        spells it where trackline reads the spelling (``character varying(n)``)."""
        super().column_specs(schema, table)
        out: dict[str, dict[str, str]] = {}
        for (s, t), cols in self._tables.items():
            if s == self.name(schema) and (table is None or t == self.name(table)):
                out[t] = {self.name(c.name): self._spec(c) for c in cols}
        return out

    def _spec(self, column: Column) -> str:
        declared = self.column_type(column)
        sized = re.fullmatch(r"VARCHAR\((\d+)\)", declared)
        return f"character varying({sized.group(1)})" if sized else declared.lower()

    def columns(self, schema: str, table: str) -> list[Column]:
        """The columns of a table this plan created ([] for any other table)."""
        return list(self._tables.get(self._key(schema, table), []))

    def column_names(self, schema: str, table: str) -> list[str]:
        super().column_names(schema, table)
        return [self.name(c.name) for c in self.columns(schema, table)]

    def column_types(self, schema: str, table: str) -> dict[str, str]:
        super().column_types(schema, table)
        return {self.name(c.name): self.column_type(c).lower() for c in self.columns(schema, table)}

    def table_exists(self, schema: str, table: str) -> bool:
        super().table_exists(schema, table)
        return self._key(schema, table) in self._tables

    def list_tables(self, schema: str, prefix: str = "") -> list[str]:
        super().list_tables(schema, prefix)
        schema, prefix = self.name(schema), self.name(prefix)
        return sorted(t for s, t in self._tables if s == schema and t.startswith(prefix))

    # the stage is neither read nor written
    def _check_staged(self, cast: pa.Table, data: pa.Table, staged: StagedFiles) -> list[str]:
        return []

    def _restage(self, ready: pa.Table) -> tuple[str, list[str]]:
        self._transient += 1
        return f"{self.stage_url}/{TRANSIENT_PREFIX}/batch-{self._transient}.manifest", []

    def _discard(self, uris: list[str]) -> None:
        return None

    def _copy_manifest(
        self, target: str, names: list[str], manifest: str, *, documents: bool = False
    ) -> None:
        # compat mode too: the test that runs a plan on PostgreSQL leaves the COPY out
        self.execute(self.copy_sql(target, names, manifest, documents=documents))


class MetadataSource(Source):
    """A source's metadata and clock; no scans, and one empty batch instead of its rows."""

    def __init__(self, real: Source, answer: Answer = no_rows) -> None:
        self.real = real
        self.answer = answer
        self.DIALECT = real.DIALECT

    def q(self, name: str) -> str:
        return self.real.q(name)

    def relation_sql(self, rel: Relation) -> str:
        return self.real.relation_sql(rel)

    def lit(self, v: Any) -> str:
        return self.real.lit(v)

    def columns(self, rel: Relation) -> list[SourceColumn]:
        return self.real.columns(rel)

    def primary_key(self, rel: Relation) -> list[str]:
        return self.real.primary_key(rel)

    def now(self, unix: bool) -> Any:
        return self.real.now(unix)

    def leading_index(self, rel: Relation, column: str) -> str | None:
        return self.real.leading_index(rel, column)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.answer(sql, params)  # pre-checks (NULL cursors, max id) would scan the table

    def close(self) -> None:
        self.real.close()

    def stream(self, sql: str, schema: pa.Schema, batch_size: int) -> Iterator[pa.RecordBatch]:
        yield pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)


class NoWriteStage(Stage):
    """Names the files the stage would write and keeps them in memory (a plan's batches are
    empty, so the files are a few hundred bytes): nothing is written, and a replay in the same
    plan reads them back."""

    def __init__(self, config: StageConfig) -> None:
        super().__init__(config)
        self.files: dict[str, bytes] = {}

    def _put(self, path: str, payload: bytes) -> None:
        self.files[path] = payload

    def read(self, uris: tuple[str, ...] | list[str]) -> pa.Table:
        tables = [pq.read_table(io.BytesIO(self.read_bytes(u))) for u in uris]
        return arrow_form(pa.concat_tables(tables) if len(tables) > 1 else tables[0])

    def read_bytes(self, uri: str) -> bytes:
        if not self.exists(uri):
            raise StageError(f"the plan staged no file {uri}")
        return self.files[self._path(uri)]

    def exists(self, uri: str) -> bool:
        return self._path(uri) in self.files
