"""Identifier quoting and SQL rendering shared by the sources and the warehouses.

There is exactly one way to put a name into SQL: `quote(name, dialect)`, which validates it
with the same rule as the config and lets sqlglot apply the dialect's quoting rules. Values
never go through here: they are bound parameters (``?`` in trackline's SQL).
"""

from __future__ import annotations

from functools import lru_cache

import sqlglot
from sqlglot import exp

from trackline.config import check_identifier


@lru_cache(maxsize=4096)
def quote(name: str, dialect: str) -> str:
    check_identifier(name)
    return exp.to_identifier(name).sql(dialect=dialect, identify=True)


def qualified(schema: str | None, table: str, dialect: str) -> str:
    if schema:
        return f"{quote(schema, dialect)}.{quote(table, dialect)}"
    return quote(table, dialect)


def column_list(names: list[str], dialect: str, prefix: str = "") -> str:
    return ", ".join(f"{prefix}{quote(n, dialect)}" for n in names)


def transpile(sql: str, *, read: str, write: str) -> str:
    """Render one statement written in `read` dialect for `write` (readable templates → engine)."""
    return sqlglot.transpile(sql, read=read, write=write)[0]


def parses(sql: str, dialect: str) -> bool:
    """True when sqlglot's parser for `dialect` accepts every statement in `sql`."""
    try:
        sqlglot.parse(sql, read=dialect, error_level=sqlglot.ErrorLevel.RAISE)
    except sqlglot.errors.ParseError:
        return False
    return True


def replace_placeholders(sql: str, dialect: str, replacements: list[str]) -> str:
    """`sql` with its ``?`` markers replaced, in order, by `replacements` (SQL text). Markers
    are found by sqlglot's tokenizer, so a ``?`` inside a string literal or a quoted name is
    left alone; everything else keeps its exact text."""
    from sqlglot.tokens import TokenType

    marks = [
        t for t in sqlglot.tokenize(sql, read=dialect) if t.token_type == TokenType.PLACEHOLDER
    ]
    if len(marks) != len(replacements):
        raise ValueError(f"{len(marks)} parameter markers, {len(replacements)} replacements")
    out, pos = [], 0
    for t, text in zip(marks, replacements, strict=True):
        out += [sql[pos : t.start], text]
        pos = t.end + 1
    return "".join(out) + sql[pos:]
