"""`trackline explain [NAME]`: EXPLAIN every extraction query the pipeline sends to MySQL.

For each table of `tables:` with a cursor and each input of `consolidations:`, the next
incremental query is built exactly as sync / consolidate build it, with a realistic
watermark: the one in the state when there is one, else the source clock minus an hour (a
read of the last hour, as a consolidation or a cycle does). The server's plan tells, for each
table the query touches, whether it reads an index range or scans the whole table (access
type ``ALL``, or ``index``: every entry of an index). For a scan of the table the cursor
belongs to, the index that makes the read a range is suggested:
``CREATE INDEX ix_<table>_<cursor>_<id> ON <table> (<cursor>, <id>)``.

The query is only explained, never run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

from trackline.config import Config
from trackline.errors import ConfigError
from trackline.extract import Relation, Source, open_source
from trackline.extract.cdc import CursorSpec, Watermark, plan_query, shift
from trackline.extract.types import SourceColumn
from trackline.load import Warehouse
from trackline.state import StateStore

SCANS = ("ALL", "index")
"""MySQL access types that read every row (or every index entry) of a table."""
EXPLAINED_DIALECTS = ("mysql",)
"""Sources whose plans are read (MySQL and MariaDB); others (SQLite) are skipped."""
WINDOW_SECONDS = 3600
"""Without a watermark yet: explain a read of the last hour."""


@dataclass
class Explained:
    what: str
    sql: str
    plan: list[dict[str, Any]] = field(default_factory=list)
    """One entry per table access: table, type, key, rows."""
    scans: list[str] = field(default_factory=list)
    """Tables read whole, as the plan names them (a query's alias, e.g. ``u``)."""
    scanned_tables: list[str] = field(default_factory=list)
    """The same, as table names (the alias resolved in the query)."""
    cursor_table: str | None = None
    """The table the cursor columns belong to (the one `suggest` indexes)."""
    suggest: str | None = None
    """The CREATE INDEX that would make the cursor's read a range."""
    watermark: str = ""

    @property
    def ok(self) -> bool:
        return not self.scans

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _plan_rows(src: Source, sql: str) -> list[dict[str, Any]]:
    out = []
    for r in src.rows("EXPLAIN " + sql):
        if len(r) >= 12:  # MySQL 8: id, select_type, table, partitions, type, …, rows, filtered
            table, kind, key, rows = r[2], r[4], r[6], r[9]
        else:  # MariaDB: id, select_type, table, type, possible_keys, key, key_len, ref, rows
            table, kind, key, rows = r[2], r[3], r[5], r[8]
        out.append({"table": table, "type": kind, "key": key, "rows": rows})
    return out


def cursor_origin(query: str, ts: str, idc: str) -> tuple[str, str, str] | None:
    """(table, time column, id column) that a query's cursor columns come from, when both are
    plain columns of one table of its FROM/JOIN (None otherwise)."""
    try:
        tree = sqlglot.parse_one(query, dialect="mysql")
    except sqlglot.errors.ParseError:
        return None
    if not isinstance(tree, exp.Select):
        return None
    tables = {t.alias_or_name: t.name for t in tree.find_all(exp.Table)}
    found: dict[str, exp.Column] = {}
    for e in tree.expressions:
        col = e.this if isinstance(e, exp.Alias) else e
        if isinstance(col, exp.Column):
            found[e.alias_or_name] = col
    a, b = found.get(ts), found.get(idc)
    if a is None or b is None or a.table != b.table:
        return None
    if a.table:
        table = tables.get(a.table)
    else:
        table = next(iter(tables.values())) if len(tables) == 1 else None
    return (table, a.name, b.name) if table else None


def _explain_one(
    what: str,
    src: Source,
    rel: Relation,
    cols: list[SourceColumn],
    strategy: str,
    ts: str | None,
    idc: str | None,
    wm: Watermark,
    lag: int,
) -> Explained:
    by_name = {c.name: c for c in cols}
    for col in (ts, idc):
        if col and col not in by_name:
            raise ConfigError(f"{what}: cursor column {col!r} is not a column of the source")
    unix = bool(ts and pa.types.is_integer(by_name[ts].arrow))
    if wm.empty and ts:
        start = shift(src.now(unix), WINDOW_SECONDS)
        wm = Watermark(ts=start, id=0 if strategy == "hybrid" else None)
    elif wm.empty and idc:
        top = src.scalar(f"SELECT MAX({by_name[idc].cursor_ref}) FROM {src.relation_sql(rel)}")
        wm = Watermark(id=top or 0)
    upper = shift(src.now(unix), lag) if ts else None
    spec = CursorSpec(
        strategy,  # type: ignore[arg-type]
        by_name[ts].cursor_ref if ts else None,
        by_name[idc].cursor_ref if idc else None,
    )
    select = ", ".join(f"{c.expr} AS {src.q(c.name)}" for c in cols)
    sql = plan_query(
        select=select, relation=src.relation_sql(rel), spec=spec, wm=wm, upper=upper, lit=src.lit
    ).sql
    out = Explained(what, sql, _plan_rows(src, sql), watermark=wm.describe())
    out.scans = [p["table"] for p in out.plan if p["type"] in SCANS]
    aliases = _aliases(rel.query) if rel.query else {}
    out.scanned_tables = [aliases.get(s, s) for s in out.scans]
    origin: tuple[str, str, str] | None = None
    if rel.query and ts and idc:
        origin = cursor_origin(rel.query, ts, idc)
    elif ts or idc:
        origin = (rel.name, ts or "", idc or "")
    if origin:
        out.cursor_table = origin[0]
    if origin and out.scans:
        table, a, b = origin
        if table in out.scanned_tables:
            cols_ = [c for c in (a, b) if c]
            name = "ix_" + "_".join([table, *cols_])[:60]
            out.suggest = (
                f"CREATE INDEX {src.q(name)} ON {src.q(table)} ({', '.join(map(src.q, cols_))})"
            )
    return out


def _aliases(query: str) -> dict[str, str]:
    try:
        tree = sqlglot.parse_one(query, dialect="mysql")
    except sqlglot.errors.ParseError:
        return {}
    return {t.alias_or_name: t.name for t in tree.find_all(exp.Table)}


def explain(cfg: Config, wh: Warehouse | None, name: str | None = None) -> list[Explained]:
    """Explain the extraction queries of the tables and consolidation inputs (`name`: one
    table or consolidation). `wh`: where the watermarks are (None: a last-hour read)."""
    state = StateStore(wh, cfg.state_schema) if wh is not None else None
    if state is not None:
        state.ensure()
    tables = [t for t in cfg.tables if t.cdc.strategy != "full"]
    cons = list(cfg.consolidations)
    if name:
        tables = [t for t in tables if t.name == name]
        cons = [c for c in cons if c.name == name]
        if not tables and not cons:
            raise ConfigError(
                f"{name!r} is neither a table with a cursor nor a consolidation of the config"
            )
    out: list[Explained] = []
    opened: dict[tuple[str, str], Source] = {}

    def source(src_name: str | None, db: str | None) -> tuple[Source, str]:
        sname = src_name or next(iter(cfg.sources))
        database = db or cfg.sources[sname].database
        if (sname, database) not in opened:
            opened[(sname, database)] = open_source(cfg.sources[sname], database)
        return opened[(sname, database)], database

    try:
        for t in tables:
            src, db = source(t.source, t.source_db)
            if src.DIALECT not in EXPLAINED_DIALECTS:
                continue
            rel = Relation(t.name, db if not t.query else None, t.query)
            from trackline.sync import resolve

            key = resolve(cfg, t, None, None).key
            wm = state.get(key, db).watermark if state else Watermark()
            if wm.phase == "snapshot":
                wm = Watermark()
            lag = t.lag_seconds if t.lag_seconds is not None else cfg.defaults.lag_seconds
            out.append(
                _explain_one(
                    f"table {t.name}", src, rel, src.columns(rel), t.cdc.strategy,
                    t.cdc.cursor, t.cdc.id, wm, lag,
                )
            )  # fmt: skip
        for c in cons:
            from trackline.consolidate.extract import input_key, relation

            for inp in c.inputs:
                src, db = source(inp.source, inp.source_db)
                if src.DIALECT not in EXPLAINED_DIALECTS:
                    continue
                rel = relation(inp, db)
                wm = state.get(input_key(c, inp.name), db).watermark if state else Watermark()
                lag = inp.lag_seconds if inp.lag_seconds is not None else cfg.defaults.lag_seconds
                out.append(
                    _explain_one(
                        f"consolidation {c.name}, input {inp.name}", src, rel,
                        src.columns(rel), "hybrid", inp.cdc.cursor, inp.cdc.id, wm, lag,
                    )
                )  # fmt: skip
    finally:
        for s in opened.values():
            s.close()
    return out
