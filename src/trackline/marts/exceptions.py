"""The exceptions table: rows the pipeline refused to lose silently.

Columns: id, check_name, table_name, key_value, detail, first_seen, last_seen,
status (open/resolved), resolved_at, note. A key that is already open for the same check and
table is not new: only its `last_seen` moves. Trim never deletes a row whose key is open.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from trackline.errors import MartError
from trackline.load import Column, Warehouse
from trackline.state import utcnow

KEY_TYPE = "VARCHAR(256)"
"""Keys are compared with `key_value` as ``CAST(key AS VARCHAR(256))`` (quality/results.py
uses the same cast)."""


def key_text(expr: str) -> str:
    """SQL for a key as the text stored in `key_value`."""
    return f"CAST({expr} AS {KEY_TYPE})"


COLUMNS = [
    Column("id", pa.int64(), nullable=False),
    Column("check_name", pa.string()),
    Column("table_name", pa.string()),
    Column("key_value", pa.string()),
    Column("detail", pa.string()),
    Column("first_seen", pa.timestamp("us")),
    Column("last_seen", pa.timestamp("us")),
    Column("status", pa.string()),
    Column("resolved_at", pa.timestamp("us")),
    Column("note", pa.string()),
]


class Exceptions:
    def __init__(self, wh: Warehouse, schema: str, table: str) -> None:
        self.wh, self.schema, self.table = wh, schema, table

    @property
    def ref(self) -> str:
        return self.wh.t(self.schema, self.table)

    def ensure(self) -> None:
        self.wh.ensure_schema(self.schema)
        if not self.wh.table_exists(self.schema, self.table):
            self.wh.create_table(self.schema, self.table, COLUMNS, primary_key=["id"])

    def _next_id(self) -> int:
        # followers building at once (`Warehouse.PARALLEL_MARTS`) allocate from the same
        # largest id: the first to get here holds the table's ids until it commits
        self.wh.serialize(f"ids:{self.ref}")
        return int(self.wh.scalar(f"SELECT COALESCE(MAX(id), 0) FROM {self.ref}") or 0)

    def open_keys_sql(self, table_name_param: str = "?") -> str:
        """A NOT EXISTS body: an open exception for this table and key (bind the table name)."""
        return (
            f"SELECT 1 FROM {self.ref} e WHERE e.status = 'open' "
            f"AND e.table_name = {table_name_param} AND e.key_value = "
        )

    def record_from(
        self,
        check: str,
        table_name: str,
        key_sql: str,
        from_where: str,
        params: tuple[Any, ...],
        detail: str,
    ) -> int:
        """Record one exception per distinct key of ``SELECT <key_sql> <from_where>``.

        Keys already open for (check, table) only get `last_seen` updated. Returns how many
        NEW exceptions were opened.
        """
        w = self.wh
        now = utcnow()
        tmp = w.temp_name("_tl_exc")
        # Created, then filled: no bound parameters in DDL (Redshift prepares only
        # SELECT, INSERT, UPDATE and DELETE).
        w.execute(f"CREATE TEMPORARY TABLE {w.q(tmp)} (k {KEY_TYPE})")
        try:
            w.execute(
                f"INSERT INTO {w.q(tmp)} (k) SELECT DISTINCT {key_text(key_sql)} {from_where}",
                params,
            )
            w.execute(
                f"UPDATE {self.ref} SET last_seen = ? WHERE status = 'open' AND check_name = ? "
                f"AND table_name = ? AND EXISTS (SELECT 1 FROM {w.q(tmp)} x "
                f"WHERE x.k = {self.ref}.key_value)",
                (now, check, table_name),
            )
            base = self._next_id()
            before = int(w.scalar(f"SELECT COUNT(*) FROM {self.ref}") or 0)
            # Parameters in a select list are cast: Redshift's planner leaves an uncast one
            # of type `unknown` (oid 705), which it cannot return or insert ("Assert … Invalid
            # type: 705", aws/amazon-redshift-python-driver#59).
            text, ts = w.TEXT_TYPE, w.TIMESTAMP_TYPE
            w.execute(
                f"INSERT INTO {self.ref} (id, check_name, table_name, key_value, detail, "
                "first_seen, last_seen, status) "
                "SELECT CAST(? AS BIGINT) + ROW_NUMBER() OVER (ORDER BY x.k), "
                f"CAST(? AS {text}), CAST(? AS {text}), x.k, CAST(? AS {text}), "
                f"CAST(? AS {ts}), CAST(? AS {ts}), 'open' "
                f"FROM {w.q(tmp)} x WHERE NOT EXISTS (SELECT 1 FROM {self.ref} e "
                "WHERE e.status = 'open' AND e.check_name = ? AND e.table_name = ? "
                "AND e.key_value = x.k)",
                (base, check, table_name, detail, now, now, check, table_name),
            )
            after = int(w.scalar(f"SELECT COUNT(*) FROM {self.ref}") or 0)
        finally:
            w.execute(f"DROP TABLE IF EXISTS {w.q(tmp)}")
        return after - before

    def record(self, check: str, table_name: str, key: str | None, detail: str) -> bool:
        """Record one exception; returns True if it is new."""
        w = self.wh
        now = utcnow()
        # No `? IS NULL`: PostgreSQL cannot type an untyped parameter there.
        same_key, params = ("key_value IS NULL", ()) if key is None else ("key_value = ?", (key,))
        rows = w.query(
            f"SELECT id FROM {self.ref} WHERE status = 'open' AND check_name = ? "
            f"AND table_name = ? AND {same_key}",
            (check, table_name, *params),
        )
        if rows:
            w.execute(
                f"UPDATE {self.ref} SET last_seen = ?, detail = ? WHERE id = ?",
                (now, detail, rows[0][0]),
            )
            return False
        w.execute(
            f"INSERT INTO {self.ref} (id, check_name, table_name, key_value, detail, first_seen, "
            "last_seen, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'open')",
            (self._next_id() + 1, check, table_name, key, detail, now, now),
        )
        return True

    def list(self, status: str | None = "open", limit: int = 100) -> list[dict[str, Any]]:
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        rows = self.wh.query(
            f"SELECT id, check_name, table_name, key_value, detail, first_seen, last_seen, "
            f"status, resolved_at, note FROM {self.ref} {where} ORDER BY id LIMIT {int(limit)}",
            params,
        )
        return [dict(zip([c.name for c in COLUMNS], r, strict=True)) for r in rows]

    def count(self, status: str | None = "open") -> int:
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        return int(self.wh.scalar(f"SELECT COUNT(*) FROM {self.ref} {where}", params) or 0)

    def counts(self) -> dict[str, int]:
        rows = self.wh.query(
            f"SELECT check_name, COUNT(*) FROM {self.ref} WHERE status = 'open' "
            "GROUP BY check_name ORDER BY check_name"
        )
        return {r[0]: int(r[1]) for r in rows}

    def resolve(self, exc_id: int, note: str) -> None:
        self.wh.run_transaction(lambda: self._resolve(exc_id, note))

    def _resolve(self, exc_id: int, note: str) -> None:
        n = self.wh.scalar(f"SELECT COUNT(*) FROM {self.ref} WHERE id = ?", (exc_id,))
        if not n:
            raise MartError(f"exception {exc_id} does not exist in {self.schema}.{self.table}")
        self.wh.execute(
            f"UPDATE {self.ref} SET status = 'resolved', resolved_at = ?, note = ? WHERE id = ?",
            (utcnow(), note, exc_id),
        )
