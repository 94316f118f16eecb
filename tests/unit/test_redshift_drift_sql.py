"""Schema drift and sized text on Redshift, pinned as the SQL the adapter sends.

Text columns are sized from the source's declared length in bytes (utf8mb4: 4 × characters,
capped at 65,535); a longer source VARCHAR is applied with ALTER COLUMN … TYPE VARCHAR(n),
the one type change Redshift's ALTER TABLE makes, outside any transaction; any other widening
is a rebuild (`trackline migrate`); the history views are dropped and created when their
columns change. The statements are recorded by a Redshift adapter that sends nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pytest

from tests.redshift_checks import Sent, redshift_problems
from trackline.config import RedshiftWarehouse
from trackline.errors import WarehouseError
from trackline.extract.types import is_widening, map_mysql_column, max_bytes, with_max_bytes
from trackline.load import Column
from trackline.load.redshift import Redshift

ROLE = "arn:aws:iam::123456789012:role/trackline-copy"


class Sending(Redshift):
    """The Redshift adapter, recording its statements; catalog queries answer `answers`."""

    def __init__(self, **overrides: Any) -> None:
        super().__init__(RedshiftWarehouse(host="h", user="u", iam_role=ROLE, **overrides))
        self.sent: list[Sent] = []
        self.answers: list[tuple[Any, ...]] = []

    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        self.sent.append(Sent(sql, tuple(params), self.in_transaction))

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        self.sent.append(Sent(sql, tuple(params), self.in_transaction))
        return self.answers

    def _begin(self) -> None:
        self.sent.append(Sent("BEGIN", (), False))

    def _commit(self) -> None:
        self.sent.append(Sent("COMMIT", (), False))

    def _rollback(self) -> None:
        self.sent.append(Sent("ROLLBACK", (), False))

    def sql(self) -> list[str]:
        return [s.sql for s in self.sent]


def _col(data_type: str, column_type: str, name: str = "c") -> Any:
    return map_mysql_column(name, data_type, column_type, True, f"`{name}`")


# ------------------------------------------------------------------ sizes from the source


@pytest.mark.parametrize(
    ("data_type", "column_type", "size"),
    [
        ("varchar", "varchar(50)", 200),  # utf8mb4: 4 bytes a character
        ("char", "char(10)", 40),
        ("varchar", "varchar(16383)", 65_532),
        ("varchar", "varchar(20000)", 65_535),  # capped at Redshift's VARCHAR limit
        ("text", "text", None),  # TEXT types keep VARCHAR(65535)
        ("tinytext", "tinytext", None),
        ("json", "json", None),
        ("enum", "enum('a','b')", None),
        ("varchar", "varchar", None),  # a `query:` column: no declared length
        ("int", "int(11)", None),
    ],
)
def test_text_is_sized_from_the_declared_length(
    data_type: str, column_type: str, size: int | None
) -> None:
    assert _col(data_type, column_type).max_bytes == size


def test_sized_text_becomes_varchar_n_on_redshift_and_stays_text_elsewhere() -> None:
    w = Sending()
    w.create_table(
        "raw",
        "t",
        [
            Column("id", pa.int64()),
            Column("status", pa.string(), max_bytes=80),
            Column("note", pa.string()),
            Column("doc", pa.string(), json=True, max_bytes=80),
        ],
        dist_key="id",
    )
    assert w.sql() == [
        'CREATE TABLE IF NOT EXISTS "raw"."t" (\n'
        '  "id" BIGINT,\n  "status" VARCHAR(80),\n  "note" VARCHAR(65535),\n'
        '  "doc" SUPER\n) DISTKEY("id")'  # a document column: its size does not apply
    ]
    # the field metadata round trip (sync batches → temp tables, COPY checks)
    field = with_max_bytes(pa.field("status", pa.string()), 80)
    assert max_bytes(field) == 80 and Column.of(field) == Column(
        "status", pa.string(), True, False, 80
    )
    assert max_bytes(with_max_bytes(field, None)) is None


def test_batch_temp_table_is_sized_from_the_batch_fields() -> None:
    w = Sending()
    data = pa.Table.from_arrays(
        [pa.array(["x"])], schema=pa.schema([with_max_bytes(pa.field("s", pa.string()), 12)])
    )
    ctx = w.batch_relation(data)
    with pytest.raises(WarehouseError, match="stage"):  # no stage: the COPY cannot run
        ctx.__enter__()
    assert w.sql()[0].startswith("CREATE TEMPORARY TABLE") and '"s" VARCHAR(12))' in w.sql()[0]


# ------------------------------------------------------------------ the check before COPY


def _sized(values: list[str | None], limit: int) -> pa.Table:
    field = with_max_bytes(pa.field("status", pa.string()), limit)
    return pa.Table.from_arrays([pa.array(values)], schema=pa.schema([field]))


def test_value_over_its_column_bytes_is_an_error_naming_table_column_and_row() -> None:
    with pytest.raises(WarehouseError) as err:
        Sending().copy_ready(_sized(["ok", None, "€€€"], 8), "raw.orders_raw")  # 9 bytes
    msg = str(err.value)
    assert "raw.orders_raw: column 'status', row 2 of the batch holds 9 bytes" in msg
    assert "VARCHAR(8)" in msg and "varchar_policy: truncate" in msg and "€" not in msg


def test_value_over_its_column_bytes_is_cut_at_a_character_boundary() -> None:
    w = Sending(varchar_policy="truncate")
    ready, changes = w.copy_ready(_sized(["ok", "ab€€€"], 8), "s.t")
    assert ready.column("status").to_pylist() == ["ok", "ab€€"] and changes
    assert "8 bytes" in w.notices[0] and "row 1" in w.notices[0]


def test_values_at_their_column_bytes_pass_untouched() -> None:
    data = _sized(["€€", "12345678"], 8)
    ready, changes = Sending().copy_ready(data, "s.t")
    assert ready is data and changes == []


# ------------------------------------------------------------------ widening


@pytest.mark.parametrize(
    ("old", "new", "widens"),
    [
        (pa.int32(), pa.int64(), True),  # INT → BIGINT (INT UNSIGNED is int64 already)
        (pa.int8(), pa.int32(), True),
        (pa.int64(), pa.int32(), False),  # narrowing
        (pa.int64(), pa.uint64(), False),  # BIGINT → BIGINT UNSIGNED: negatives would not fit
        (pa.float32(), pa.float64(), True),
        (pa.decimal128(10, 2), pa.decimal128(12, 4), True),
        (pa.decimal128(10, 2), pa.decimal128(12, 2), True),
        (pa.decimal128(10, 2), pa.decimal128(10, 4), False),  # fewer integer digits
        (pa.decimal128(10, 2), pa.decimal128(10, 1), False),  # fewer decimals
        (pa.string(), pa.int64(), False),
        (pa.int64(), pa.int64(), False),
    ],
)
def test_is_widening(old: pa.DataType, new: pa.DataType, widens: bool) -> None:
    assert is_widening(old, new) is widens


def test_only_a_varchar_length_is_altered_in_place_and_outside_a_transaction() -> None:
    w = Sending()
    assert w.can_alter_type("character varying(80)", Column("s", pa.string(), max_bytes=800))
    assert w.can_alter_type("character varying(80)", Column("s", pa.string()))  # → 65535
    assert not w.can_alter_type("integer(32,0)", Column("i", pa.int64()))
    assert not w.can_alter_type("numeric(10,2)", Column("d", pa.decimal128(12, 4)))
    w.answers = [(80,)]  # the column's current length
    with w.alter_type_scope():
        w.alter_column_type("raw", "t", Column("status", pa.string(), max_bytes=800))
    assert w.sql()[-1] == 'ALTER TABLE "raw"."t" ALTER COLUMN "status" TYPE VARCHAR(800)'
    assert "BEGIN" not in w.sql()  # Redshift: ALTER COLUMN … TYPE outside a transaction block
    assert all(not redshift_problems(s) for s in w.sent)
    # a rerun after a crash before the state write: the column is already that long
    w.sent.clear()
    w.answers = [(800,)]
    w.alter_column_type("raw", "t", Column("status", pa.string(), max_bytes=800))
    assert not any(s.sql.startswith("ALTER") for s in w.sent)


def test_the_statement_checker_refuses_what_redshift_alter_refuses() -> None:
    alter = 'ALTER TABLE "s"."t" ALTER COLUMN "c" TYPE '
    assert redshift_problems(Sent(alter + "VARCHAR(800)", (), True)) == [
        "ALTER COLUMN … TYPE inside a transaction"
    ]
    assert redshift_problems(Sent(alter + "BIGINT", (), False)) == [
        "ALTER COLUMN … TYPE to other than VARCHAR(n)"
    ]
    assert redshift_problems(Sent(alter + "VARCHAR(800)", (), False)) == []


def test_a_view_whose_columns_change_is_dropped_and_created() -> None:
    w = Sending()
    with w.transaction():
        w.replace_view("m", "v", 'SELECT "a", "b" FROM "m"."h"', new_columns=True)
        w.replace_view("m", "v", 'SELECT "a", "b" FROM "m"."h"', new_columns=False)
    assert w.sql() == [
        "BEGIN",
        'DROP VIEW IF EXISTS "m"."v"',
        'CREATE VIEW "m"."v" AS SELECT "a", "b" FROM "m"."h" WITH NO SCHEMA BINDING',
        'CREATE OR REPLACE VIEW "m"."v" AS SELECT "a", "b" FROM "m"."h" WITH NO SCHEMA BINDING',
        "COMMIT",
    ]
    assert all(not redshift_problems(s) for s in w.sent if s.sql not in ("BEGIN", "COMMIT"))


def test_migrate_rebuilds_a_table_in_the_callers_transaction() -> None:
    w = Sending()
    cols = [
        Column("order_id", pa.int64()),
        Column("k", pa.int64()),
        Column("status", pa.string(), max_bytes=800),
    ]
    with w.transaction():
        w.rebuild_table("mart", "hist_uti_2026_h1", cols, dist_key="order_id", sort_key=["k"])
    assert w.sql() == [
        "BEGIN",
        'DROP TABLE IF EXISTS "mart"."hist_uti_2026_h1_tl_migrate"',
        'CREATE TABLE IF NOT EXISTS "mart"."hist_uti_2026_h1_tl_migrate" (\n'
        '  "order_id" BIGINT,\n  "k" BIGINT,\n  "status" VARCHAR(800)\n'
        ') DISTKEY("order_id") SORTKEY("k")',
        'INSERT INTO "mart"."hist_uti_2026_h1_tl_migrate" ("order_id", "k", "status") '
        'SELECT "order_id", "k", "status" FROM "mart"."hist_uti_2026_h1"',
        'DROP TABLE "mart"."hist_uti_2026_h1"',
        'ALTER TABLE "mart"."hist_uti_2026_h1_tl_migrate" RENAME TO "hist_uti_2026_h1"',
        "COMMIT",
    ]
    assert all(s.in_transaction for s in w.sent if s.sql not in ("BEGIN", "COMMIT"))
    assert all(not redshift_problems(s) for s in w.sent if s.sql not in ("BEGIN", "COMMIT"))
