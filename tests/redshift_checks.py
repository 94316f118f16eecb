"""What Redshift accepts, as checks on statement text (shared by the plan and compat tests).

`redshift_problems` says why Redshift would refuse (or misrun) one statement: it must parse
with sqlglot's redshift dialect; no TRUNCATE (it commits) and no VACUUM/ANALYZE inside a
transaction; ALTER COLUMN … TYPE only to a VARCHAR(n) and never inside a transaction; no
``NOT IN (SELECT``, ``IS DISTINCT FROM`` or ``ON CONFLICT``; no index; bound
parameters only in SELECT/INSERT/UPDATE/DELETE (the statements Redshift's PREPARE takes);
windows ordered; no LIMIT in a subquery; every parameter in a select list CAST (an uncast one
stays of type `unknown` on Redshift); and no correlated subquery Redshift cannot
decorrelate (a reference that skips a query block, or one from a subquery holding a window
function; see "Correlated subqueries" in the Redshift developer guide).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp

UNMODELLED = ("LOCK ", "VACUUM ")  # Redshift commands sqlglot keeps as `Command`
PREPARABLE = (exp.Select, exp.Union, exp.Insert, exp.Update, exp.Delete)


@dataclass(frozen=True)
class Sent:
    sql: str
    params: tuple[Any, ...]
    in_transaction: bool


def from_recorded(statements: Iterable[Any]) -> list[Sent]:
    """`Recorder.recorded` (BEGIN/COMMIT/ROLLBACK included) as `Sent`, transactions marked."""
    depth, out = 0, []
    for s in statements:
        if s.sql == "BEGIN":
            depth += 1
        elif s.sql in ("COMMIT", "ROLLBACK"):
            depth -= 1
        else:
            out.append(Sent(s.sql, tuple(s.params), depth > 0))
    return out


def norm(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip().upper()


def shape(sql: str) -> str:
    """The statement with its generated names replaced (to check each shape once)."""
    sql = re.sub(r"_tl_(batch|new|exc|react)_[0-9a-f]+", r"_tl_\1_N", sql)
    sql = re.sub(r"(hist_\w+?_)\d{4}_h[12]", r"\1P", sql)
    return re.sub(r"'s3://[^']*'", "'s3://…'", sql)


def _block(node: exp.Expression) -> exp.Expression | None:
    return node.find_ancestor(exp.Select, exp.Delete, exp.Update)


def _names(block: exp.Expression) -> set[str]:
    """Names (alias, else table name) a query block's own columns may be qualified with."""
    if isinstance(block, exp.Delete | exp.Update):
        return {block.this.alias_or_name}
    sources = [block.args.get("from_"), *(block.args.get("joins") or [])]
    return {s.this.alias_or_name for s in sources if s is not None}


def correlation_problems(tree: exp.Expr) -> list[str]:
    """Correlated subqueries Redshift cannot decorrelate: a reference that skips a query
    block, or one from a subquery that holds a window function."""
    out = []
    for sub in tree.find_all(exp.Select):
        outer = _block(sub)
        if outer is None:
            continue
        own = _names(sub)
        external = [
            c
            for c in sub.find_all(exp.Column)
            if _block(c) is sub and c.table and c.table not in own
        ]
        for col in external:
            if col.table not in _names(outer):
                out.append(f"{col.sql('redshift')} skips a query block")
        if external and any(_block(w) is sub for w in sub.find_all(exp.Window)):
            out.append("a correlated subquery holds a window function")
    return out


def uncast_select_parameters(tree: exp.Expr) -> list[str]:
    """Bound parameters in a select list that are not CAST themselves: Redshift's planner
    leaves them of type `unknown` ("Invalid type: 705", aws/amazon-redshift-python-driver#59)."""
    out = []
    for sel in tree.find_all(exp.Select):
        for column in sel.expressions:
            for p in column.find_all(exp.Placeholder):
                parent = p.parent
                while isinstance(parent, exp.Paren):
                    parent = parent.parent
                if not isinstance(parent, exp.Cast):
                    out.append(f"uncast parameter in a select list: {column.sql('redshift')}")
    return out


def redshift_problems(s: Sent) -> list[str]:
    """Why Redshift would refuse (or misrun) this statement; [] when it would not."""
    problems = []
    parsed = sqlglot.parse(s.sql, read="redshift", error_level=sqlglot.ErrorLevel.RAISE)
    if len(parsed) != 1 or parsed[0] is None:
        return ["not exactly one statement"]
    tree = parsed[0]
    n = norm(s.sql)
    if isinstance(tree, exp.Command) and not n.startswith(UNMODELLED):
        problems.append("sqlglot could not model it")
    for text in ("NOT IN (SELECT", "IS DISTINCT FROM", "ON CONFLICT", "CREATE INDEX"):
        if text in n:
            problems.append(text)
    if n.startswith("CREATE UNIQUE INDEX") or list(tree.find_all(exp.OnConflict)):
        problems.append("index / upsert")
    if n.startswith("TRUNCATE") and s.in_transaction:
        problems.append("TRUNCATE commits the transaction")
    if n.startswith(("VACUUM", "ANALYZE")) and s.in_transaction:
        problems.append("VACUUM/ANALYZE inside a transaction")
    if re.search(r"\bALTER COLUMN \S+ TYPE\b", n):
        # ALTER TABLE: only a VARCHAR's size changes, never in a transaction block
        if s.in_transaction:
            problems.append("ALTER COLUMN … TYPE inside a transaction")
        if not re.search(r"\bTYPE VARCHAR\(\d+\)$", n):
            problems.append("ALTER COLUMN … TYPE to other than VARCHAR(n)")
    if list(tree.find_all(exp.NullSafeEQ, exp.NullSafeNEQ)):
        problems.append("null-safe comparison")
    for node in tree.find_all(exp.Not):
        if isinstance(node.this, exp.In) and node.this.args.get("query"):
            problems.append("NOT IN (subquery)")
    if s.params and not isinstance(tree, PREPARABLE):
        problems.append("bound parameters outside SELECT/INSERT/UPDATE/DELETE")
    for w in tree.find_all(exp.Window):
        if not w.args.get("order"):
            problems.append("window without ORDER BY")
    for sub in tree.find_all(exp.Select):
        if _block(sub) is not None and sub.args.get("limit"):
            problems.append("LIMIT in a subquery")
    return problems + correlation_problems(tree) + uncast_select_parameters(tree)


PRINTED_ONLY = [
    (r"\bRETURNING\b", "RETURNING (Redshift's INSERT/UPDATE/DELETE return no rows)"),
    (r"\bDISTINCT\s+ON\s*\(", "DISTINCT ON"),
    (r"\bFILTER\s*\(\s*WHERE\b", "aggregate FILTER (WHERE …)"),
    (r"\bLATERAL\b", "LATERAL"),
    (r"\b(STRING_AGG|ARRAY_AGG|JSONB?_AGG)\s*\(", "STRING_AGG / ARRAY_AGG (Redshift: LISTAGG)"),
    (r"=\s*ANY\s*\(", "= ANY(array)"),
    (r"\bFOR\s+(UPDATE|SHARE)\b", "SELECT … FOR UPDATE"),
    (r"\bON\s+COMMIT\b", "temporary table ON COMMIT"),
    (r"\bADD\s+COLUMN\s+IF\s+NOT\s+EXISTS\b", "ADD COLUMN IF NOT EXISTS"),
    (r"\bADD\s+COLUMN\b.*,\s*ADD\s+COLUMN\b", "several ADD COLUMN in one ALTER TABLE"),
    (r"\bDROP\s+COLUMN\s+IF\s+EXISTS\b", "DROP COLUMN IF EXISTS"),
    (r"\bJSONB\b", "JSONB (Redshift: SUPER)"),
    (r"\bPG_(TRY_)?ADVISORY", "advisory locks"),
    (r"\b(CONVERT_TO|SHA256|DIGEST)\s*\(", "PostgreSQL-only hash functions (Redshift: SHA2)"),
    (r"\bENCODE\s*\(", "ENCODE() (PostgreSQL's bytea to text)"),
    (r"\bGENERATE_SERIES\s*\(", "GENERATE_SERIES (leader node only)"),
    (r"\bTO_TIMESTAMP\s*\([^,()]*\)", "TO_TIMESTAMP(epoch) (Redshift's takes a format)"),
    (r"\bMERGE\s+INTO\b", "MERGE (its source must hold one row per target row: check it)"),
    (r"\bCAST\s*\((?:[^()]|\([^()]*\))*\bAS\s+TEXT\s*\)|::\s*TEXT\b", "CAST AS TEXT"),
    (
        r"^(CREATE|ALTER) .*[(,]\s*\"?\w+\"?\s+(TEXT|VARCHAR|CHARACTER VARYING)"
        r"\s*(,|\)|NOT\b|NULL\b)",
        "a TEXT / unsized VARCHAR column (VARCHAR(256) on Redshift)",
    ),
    (
        r"\bADD\s+(COLUMN\s+)?\"?\w+\"?\s+(TEXT|VARCHAR|CHARACTER VARYING)\b(?!\s*\()",
        "a TEXT / unsized VARCHAR column (VARCHAR(256) on Redshift)",
    ),
]
"""Clauses and functions Redshift lacks that PostgreSQL has: compat mode runs the statements
on PostgreSQL, so only the printed (Redshift) text can show them. CAST AS TEXT is VARCHAR(256)
on Redshift: a longer value is refused (or cut, as a target column type)."""


def printed_problems(s: Sent) -> list[str]:
    """What Redshift lacks in a statement as printed for it (`trackline sql`), beyond
    `redshift_problems`; [] when nothing."""
    n = norm(s.sql)
    return [why for pattern, why in PRINTED_ONLY if re.search(pattern, n)]
