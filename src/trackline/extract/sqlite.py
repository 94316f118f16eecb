"""SQLite: the embedded demo's source and the fast tests' source (stdlib sqlite3)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from trackline.config import SQLiteSource as SQLiteConfig
from trackline.errors import SourceError
from trackline.extract.source import Relation, Source
from trackline.extract.types import SourceColumn


def _affinity(declared: str) -> pa.DataType:
    d = declared.upper()
    if "INT" in d:
        return pa.int64()
    if any(k in d for k in ("CHAR", "CLOB", "TEXT")):
        return pa.string()
    if "BLOB" in d or not d:
        return pa.binary() if "BLOB" in d else pa.string()
    if any(k in d for k in ("REAL", "FLOA", "DOUB")):
        return pa.float64()
    if "DATETIME" in d or "TIMESTAMP" in d:
        return pa.timestamp("us")
    if "DATE" in d:
        return pa.date32()
    if "DECIMAL" in d or "NUMERIC" in d:
        return pa.float64()
    return pa.string()


class SQLite(Source):
    DIALECT = "sqlite"
    INT64_TYPE = "INTEGER"

    def __init__(self, config: SQLiteConfig, database: str | None = None) -> None:
        self.config = config
        if not config.path.exists():
            raise SourceError(f"SQLite source file {config.path} does not exist")
        self.con = sqlite3.connect(str(config.path), detect_types=0)

    def close(self) -> None:
        self.con.close()

    def relation_sql(self, rel: Relation) -> str:
        if rel.query:
            # (a newline ends a trailing `--` / `#` comment before the closing parenthesis)
            return f"({rel.query.strip().rstrip(';')}\n) AS {self.q('_tl_src')}"
        return self.q(rel.name)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self.con.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise SourceError(f"SQLite {self.config.path}: {exc}") from None

    def columns(self, rel: Relation) -> list[SourceColumn]:
        if rel.query:
            cur = self.con.execute(f"SELECT * FROM {self.relation_sql(rel)} LIMIT 0")
            return [
                SourceColumn(d[0], "", "", True, pa.string(), self.q(d[0])) for d in cur.description
            ]
        rows = self.con.execute(
            'SELECT name, type, "notnull" FROM pragma_table_info(?)', (rel.name,)
        ).fetchall()
        if not rows:
            raise SourceError(f"table {rel.name!r} not found in SQLite source {self.config.path}")
        return [
            SourceColumn(n, t.lower(), t.lower(), not nn, _affinity(t), self.q(n))
            for n, t, nn in rows
        ]

    def primary_key(self, rel: Relation) -> list[str]:
        if rel.query:
            return []
        rows = self.con.execute(
            "SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk", (rel.name,)
        ).fetchall()
        return [r[0] for r in rows]

    def leading_index(self, rel: Relation, column: str) -> str | None:
        pk = self.primary_key(rel)
        if pk[:1] == [column]:
            return "PRIMARY"
        for _, name, *_ in self.rows("SELECT * FROM pragma_index_list(?)", (rel.name,)):
            first = self.rows("SELECT name FROM pragma_index_info(?) WHERE seqno = 0", (str(name),))
            if first and first[0][0] == column:
                return str(name)
        return None

    def now(self, unix: bool) -> Any:
        clock = None
        if self.config.clock_table:
            exists = self.scalar(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                (self.config.clock_table,),
            )
            if exists:
                clock = self.scalar(f"SELECT MAX(now) FROM {self.q(self.config.clock_table)}")
        if clock is None:
            clock = int(dt.datetime.now(dt.UTC).timestamp())
        if unix:
            return int(clock)
        return dt.datetime.fromtimestamp(int(clock), dt.UTC).replace(tzinfo=None)

    def lit(self, v: Any) -> str:
        return super().lit(v)

    def stream(self, sql: str, schema: pa.Schema, batch_size: int) -> Iterator[pa.RecordBatch]:
        # A generator: it runs in the extraction thread, so it opens its own connection there.
        con = sqlite3.connect(str(self.config.path))
        try:
            try:
                cur = con.execute(sql)
            except sqlite3.Error as exc:
                raise SourceError(f"SQLite {self.config.path}: {exc}") from None
            while True:
                rows = cur.fetchmany(batch_size)
                if not rows:
                    return
                cols = list(zip(*rows, strict=True))
                arrays = [pa.array(list(c), type=f.type) for c, f in zip(cols, schema, strict=True)]
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)
        finally:
            con.close()
