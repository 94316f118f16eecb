"""One canonical text per value, written in each engine's SQL, so equal data hashes equal.

The legacy DW (MySQL/MariaDB) and the warehouse hold the same values in different types:
DATETIME vs TIMESTAMP [WITH TIME ZONE], DECIMAL(10,2) vs NUMERIC(18,4), BIGINT UNSIGNED vs
DECIMAL(20,0), TINYINT(1) vs BOOLEAN, CHAR with trailing spaces vs VARCHAR. Each compared
column gets a *kind* from the legacy column's declared type (`kind_of`), and each engine
renders that kind as the same text:

- integers and decimals: the number at the legacy column's scale (`12.50`), whatever the
  warehouse's scale; FLOAT/DOUBLE at `normalise.float_scale` places, or with
  `normalise.float_digits` at that many significant digits (`1.23457e5`: mantissa and
  exponent, rounded as DECIMAL, so no engine's float rounding rule is involved);
- JSON documents: their text as stored; two documents that differ only in key order or
  spacing hash differently, so their range is fetched, and the fetched values are compared
  with their keys sorted (`canonical_json`), where they are equal;
- DATETIME/TIMESTAMP: ``YYYY-MM-DD HH:MM:SS`` (seconds); a warehouse TIMESTAMP WITH TIME
  ZONE is read in UTC first; MySQL zero dates are NULL (`zero_dates_as_null`);
- DATE: ``YYYY-MM-DD``; booleans: ``1`` / ``0``;
- text: trailing spaces removed (`trim_trailing_spaces`), an empty string as NULL
  (`empty_as_null`); text is hashed as its UTF-8 bytes on every engine, so emoji and CJK
  compare equal.

What is hashed (`hash_value`) is that text, except that a DATETIME/TIMESTAMP is hashed as its
whole seconds since 1970-01-01 UTC (cheaper to compute on every engine than a formatted time,
and equal to a warehouse column that holds unix seconds), and that MySQL writes an integer or
DECIMAL column's own text without a cast (CONCAT_WS converts it: half the cost of CAST AS
CHAR). A row's hash text joins its columns' with ``|`` (NULL as ``(null)``); the first 15 hex
digits of its SHA-256 become one 60-bit integer whose sum (as DECIMAL(38,0): Redshift sums a
BIGINT as a BIGINT, which would overflow), with COUNT(*), are a key range's figures. SHA-256,
not MD5: both are computed alike by MySQL/MariaDB, PostgreSQL, DuckDB and Redshift, and
MariaDB's MD5 costs about twice its SHA2. MySQL reads the hex with CONV, once per row (a
derived column would be computed once per reference); PostgreSQL through BIT(64), DuckDB
with a `0x` cast, Redshift with POSITION over ``0123456789abcdef``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import ClassVar

from trackline.config import Normalise


def canonical_json(value: object) -> object:
    """A JSON document's text with its keys sorted and no spacing (unicode kept as is), so
    two texts of one document are equal; text that is not JSON is returned as it is."""
    if not isinstance(value, str):
        return value
    try:
        doc = json.loads(value)
    except ValueError:
        return value
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


UNIX_TO_SECONDS = 62167219200
"""MySQL's TO_SECONDS('1970-01-01 00:00:00')."""
TO_DAYS_1 = 365
"""MySQL's TO_DAYS of a date minus Python's `date.toordinal` of it."""
ZERO = "0000-00-00 00:00:00"
SEP = "|"
NULL_TEXT = "(null)"
HEX = "0123456789abcdef"


@dataclass(frozen=True)
class Kind:
    name: str
    """`number`, `float`, `datetime`, `date`, `bool`, `json` or `text`."""
    scale: int = 0
    """`number`: the legacy DECIMAL's scale; `datetime`: its fractional second digits."""
    digits: int = 0
    """`float` with `normalise.float_digits`: significant digits (then `scale` is unused)."""
    plain: bool = True
    """`number`: MySQL writes the legacy column's own value as its canonical text (an integer
    or a DECIMAL at its scale), no cast needed; False for BIT and ZEROFILL columns."""


INTEGER_TYPES = frozenset(
    ["smallint", "integer", "bigint", "int", "int2", "int4", "int8", "tinyint", "hugeint"]
    + ["utinyint", "usmallint", "uinteger", "ubigint", "uhugeint"]
)
"""Warehouse integer types (information_schema names, lower-cased) whose text is canonical."""


def zoned(wh_type: str) -> bool:
    """A TIMESTAMP WITH TIME ZONE (PostgreSQL's and Redshift's plain TIMESTAMP is `timestamp
    without time zone`: read as it is, whatever the session's time zone)."""
    return "with time zone" in wh_type.lower()


_NUMBERS = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"}


def kind_of(data_type: str, column_type: str, norm: Normalise) -> Kind:
    """The kind of a legacy column from information_schema DATA_TYPE / COLUMN_TYPE."""
    t = data_type.lower()
    if t == "tinyint" and column_type.lower().startswith("tinyint(1)"):
        return Kind("bool")
    plain = "zerofill" not in column_type.lower()  # CONCAT would keep the padding zeros
    if t in _NUMBERS:
        return Kind("number", 0, plain=plain)
    if t in ("decimal", "numeric"):
        m = re.search(r"\(\s*\d+\s*,\s*(\d+)\s*\)", column_type)
        return Kind("number", int(m.group(1)) if m else 0, plain=plain)
    if t in ("float", "double", "real"):
        if norm.float_digits:
            return Kind("float", digits=norm.float_digits)
        return Kind("float", norm.float_scale)
    if t == "json":
        return Kind("json")
    if t in ("datetime", "timestamp"):
        m = re.search(r"\(\s*(\d+)\s*\)", column_type)  # fractional seconds: datetime(3)
        return Kind("datetime", int(m.group(1)) if m else 0)
    if t == "date":
        return Kind("date")
    if t == "bit":
        return Kind("number", 0, plain=False)
    return Kind("text")


class Canon:
    """How one engine writes a kind's canonical text (subclasses: one per engine)."""

    TEXT_TYPE: ClassVar[str] = "VARCHAR"
    FLOAT_TYPE: ClassVar[str] = "DOUBLE PRECISION"
    LOG10: ClassVar[str] = "LOG"
    """The base-10 logarithm (PostgreSQL's and Redshift's one-argument LOG)."""
    GROUP_TAIL: ClassVar[str] = ""
    """Appended to a grouped query."""
    FENCE: ClassVar[str] = ""
    """Appended to a derived table whose computed column is referenced several times, so the
    engine computes it once per row instead of inlining it at each reference."""
    HASH_FENCE: ClassVar[str] = ""
    """The same for the derived table of the row hashes that `figures` sums (empty where
    `hex_int` reads the hash once: a fence would also keep PostgreSQL from a parallel scan)."""
    DATETIME_FORMAT: ClassVar[str] = "YYYY-MM-DD HH24:MI:SS"
    DATE_FORMAT: ClassVar[str] = "YYYY-MM-DD"

    def __init__(self, norm: Normalise, *, compat: bool = False) -> None:
        self.norm = norm
        self.compat = compat
        """Redshift's adapter in compat mode: PostgreSQL runs its statements."""

    def value(self, col: str, kind: Kind, wh_type: str = "") -> str:
        """`col` (quoted) as canonical text; `wh_type`: the column's type on this side."""
        if kind.name in ("number", "float"):
            if "bool" in wh_type:
                return self.boolean(col)
            if kind.digits:
                return self.significant(col, kind.digits)
            if kind.name == "number" and kind.scale == 0 and wh_type in INTEGER_TYPES:
                return self.as_text(col)  # an integer's text is canonical: one cast, not two
            return f"CAST(CAST({col} AS DECIMAL(38, {kind.scale})) AS {self.TEXT_TYPE})"
        if kind.name == "json":
            return self.json(col, wh_type)
        if kind.name == "bool":
            return self.boolean(col) if "bool" in wh_type else self.number_flag(col)
        if kind.name == "datetime":
            if wh_type in INTEGER_TYPES:  # unix seconds
                return self.datetime(self.from_unix(col))
            return self.datetime(self.utc(col) if zoned(wh_type) else col)
        if kind.name == "date":
            return self.date(col)
        return self.text(col, wh_type)

    def day(self, col: str, kind: Kind, wh_type: str = "") -> str:
        """The day of the time column `col` (a DATE, DATETIME or TIMESTAMP) as the engine's
        cheapest value to group by (a DATE here, a day number on MySQL); `day_label` makes it
        `YYYY-MM-DD`."""
        return f"CAST({self.utc(col) if zoned(wh_type) else col} AS DATE)"

    def day_label(self, value: object) -> str:
        return str(value)

    def hash_value(self, col: str, kind: Kind, wh_type: str = "") -> str:
        """What is hashed for `col`: its canonical text (`value`), but a time as its whole
        seconds since 1970-01-01 UTC (a warehouse integer column holding unix seconds as it
        is)."""
        if kind.name == "datetime":
            if wh_type in INTEGER_TYPES:
                return self.as_text(col)
            # a zoned value's epoch is the instant's (no conversion to UTC needed), a plain
            # TIMESTAMP's that of its written time, whatever the session's time zone
            return self.as_text(self.epoch(col))
        return self.value(col, kind, wh_type)

    def epoch(self, col: str) -> str:
        """Whole seconds from 1970-01-01 00:00:00 (UTC, for a zoned `col`) to `col`, rounded
        down."""
        return f"CAST(EXTRACT(EPOCH FROM DATE_TRUNC('second', {col})) AS BIGINT)"

    def from_unix(self, col: str) -> str:
        """The TIMESTAMP (without time zone, UTC) of an integer column of unix seconds."""
        return f"(TIMESTAMP '1970-01-01 00:00:00' + {col} * INTERVAL '1 second')"

    def boolean(self, col: str) -> str:
        return f"CASE WHEN {col} THEN '1' WHEN NOT {col} THEN '0' END"

    def significant(self, col: str, digits: int) -> str:
        """`col` at `digits` significant digits as ``<mantissa>e<exponent>`` (``-1.50e-3``),
        ``0`` for zero. The mantissa is rounded as a DECIMAL (half away from zero on every
        engine; float rounding rules differ), and one that rounds up to 10 moves the
        exponent up by one."""
        x = f"CAST({col} AS {self.FLOAT_TYPE})"
        e = f"FLOOR({self.LOG10}(ABS({x})))"
        m = f"ROUND(CAST({x} / POWER(10, {e}) AS DECIMAL(38, 30)), {digits - 1})"
        wide = f"ABS({m}) >= 10"
        mant = f"CAST(CASE WHEN {wide} THEN {m} / 10 ELSE {m} END AS DECIMAL(38, {digits - 1}))"
        exp = f"{e} + CASE WHEN {wide} THEN 1 ELSE 0 END"
        return (
            f"CASE WHEN {x} = 0 THEN '0' ELSE "
            + self.cat(self.as_text(mant), "'e'", self.int_text(exp))
            + " END"
        )

    def cat(self, *parts: str) -> str:
        return "(" + " || ".join(parts) + ")"

    def as_text(self, expr: str) -> str:
        return f"CAST({expr} AS {self.TEXT_TYPE})"

    def int_text(self, expr: str) -> str:
        return f"CAST(CAST({expr} AS BIGINT) AS {self.TEXT_TYPE})"

    def json(self, col: str, wh_type: str = "") -> str:
        """A JSON document's text as stored (key order is dealt with after the fetch)."""
        return self.text(col, wh_type)

    def number_flag(self, col: str) -> str:
        return f"CASE WHEN {col} <> 0 THEN '1' WHEN {col} = 0 THEN '0' END"

    def utc(self, col: str) -> str:
        return f"({col} AT TIME ZONE 'UTC')"

    def datetime(self, col: str) -> str:
        return f"TO_CHAR({col}, '{self.DATETIME_FORMAT}')"

    def date(self, col: str) -> str:
        return f"TO_CHAR({col}, '{self.DATE_FORMAT}')"

    def rtrim(self, col: str) -> str:
        return f"RTRIM({col})"

    def text(self, col: str, wh_type: str = "") -> str:
        """Character columns as they are (a CAST to VARCHAR would cut Redshift text at 256
        bytes); any other type cast to text."""
        is_text = not wh_type or any(t in wh_type for t in ("char", "text", "string"))
        out = col if is_text else f"CAST({col} AS {self.TEXT_TYPE})"
        if self.norm.trim_trailing_spaces:
            out = self.rtrim(out)
        if self.norm.empty_as_null:
            out = f"NULLIF({out}, '')"
        return out

    def concat(self, parts: list[str]) -> str:
        """The row text: every part, NULL as its marker, joined by the separator."""
        filled = [f"COALESCE({p}, '{NULL_TEXT}')" for p in parts]
        return f" || '{SEP}' || ".join(filled)

    def digest(self, text: str) -> str:
        """The SHA-256 of `text`'s UTF-8 bytes, as `hex_int` reads it (lower-case hex here)."""
        return f"SHA2({text}, 256)"

    INLINE_HASH: ClassVar[bool] = False
    """The figures hash each row inline (MySQL); else in a derived column `h` (warehouses)."""

    def hex_int(self, hexed: str) -> str:
        """The first 15 hex digits of `hexed` as an integer (0 … 2^60-1); each digit is a
        BIGINT before it is multiplied (an INTEGER product overflows)."""
        terms = [
            f"CAST(POSITION(SUBSTRING({hexed}, {i + 1}, 1) IN '{HEX}') - 1 AS BIGINT)"
            f" * {16 ** (14 - i)}"
            for i in range(15)
        ]
        return "(" + " + ".join(terms) + ")"

    def int_div(self, a: str, b: int) -> str:
        """`a` (a non-negative integer expression) divided by `b`, rounded down, exactly (a
        DECIMAL(20,0) key too)."""
        # the remainder taken off first: the quotient is then a whole number whatever the
        # type (DuckDB divides a DECIMAL into a DOUBLE, and a rounded quotient just below an
        # integer would land in the next part); it is at most FANOUT, exact in a DOUBLE
        return f"((({a}) - MOD({a}, {b})) / {b})"

    def figures(self, h: str) -> str:
        """COUNT(*) and the sum of a range, over rows whose hash hex is `h` (a column, or the
        `digest` expression itself where `INLINE_HASH`)."""
        if self.SUM_WIDENS:
            return f"COUNT(*), SUM({self.hex_int(h)})"
        return f"COUNT(*), SUM(CAST({self.hex_int(h)} AS DECIMAL(38, 0)))"

    SUM_WIDENS: ClassVar[bool] = False
    """SUM of a BIGINT is wider than BIGINT (PostgreSQL: NUMERIC, DuckDB: HUGEINT, MySQL:
    DECIMAL): no cast needed against overflow. Redshift sums a BIGINT as a BIGINT."""


def concat_ws(parts: list[str]) -> str:
    """The row text in one CONCAT_WS (DuckDB, PostgreSQL): a fifth cheaper than `||` between
    every part, each `||` making a new string (Redshift has no CONCAT_WS)."""
    filled = [f"COALESCE({p}, '{NULL_TEXT}')" for p in parts]
    return f"CONCAT_WS('{SEP}', " + ", ".join(filled) + ")"


def pg_digest(text: str) -> str:
    """PostgreSQL's SHA-256 of `text`'s UTF-8 bytes as hex (its `sha256` takes bytes)."""
    return f"ENCODE(SHA256(CONVERT_TO({text}, 'UTF8')), 'hex')"


class RedshiftCanon(Canon):
    """Redshift: TO_CHAR, `||`, SHA2 of the UTF-8 text, hex digits by POSITION (the same SQL
    runs on PostgreSQL, where compat mode is tested, but for `digest`: PostgreSQL has no
    SHA2, and its `sha256` takes bytes)."""

    def json(self, col: str, wh_type: str = "") -> str:
        # a SUPER document as JSON text (a CAST would take only a scalar string):
        # https://docs.aws.amazon.com/redshift/latest/dg/JSON_SERIALIZE.html
        if "super" in wh_type:
            return self.text(f"JSON_SERIALIZE({col})")
        return super().json(col, wh_type)

    def digest(self, text: str) -> str:
        if self.compat:  # PostgreSQL, standing in for Redshift, has no SHA2
            return pg_digest(text)
        return super().digest(text)


class PostgresCanon(Canon):
    """PostgreSQL: as Redshift, but SHA256 of the UTF-8 bytes, read by a cast through bit(64), and
    derived tables fenced with OFFSET 0 (else the planner inlines a derived hash at each of
    its references, and computes it that many times per row)."""

    FENCE = " OFFSET 0"
    SUM_WIDENS = True

    def concat(self, parts: list[str]) -> str:
        return concat_ws(parts)

    def epoch(self, col: str) -> str:
        # DATE_PART's DOUBLE (exact for whole seconds) costs 0.7 of EXTRACT's NUMERIC
        return f"CAST(DATE_PART('epoch', DATE_TRUNC('second', {col})) AS BIGINT)"

    def digest(self, text: str) -> str:
        # the bytes, not their hex: `hex_int` reads the first 8 (a fifth cheaper per row)
        return f"SHA256(CONVERT_TO({text}, 'UTF8'))"

    def hex_int(self, hexed: str) -> str:
        """The first 60 bits of the hash bytes `hexed` (its first 15 hex digits)."""
        return (
            f"CAST(CAST('x' || ENCODE(SUBSTRING({hexed} FROM 1 FOR 8), 'hex') AS BIT(64)) >> 4 "
            "AS BIGINT)"
        )


class DuckDBCanon(Canon):
    FLOAT_TYPE = "DOUBLE"
    LOG10 = "LOG10"
    SUM_WIDENS = True

    def hex_int(self, hexed: str) -> str:
        return f"CAST('0x' || SUBSTRING({hexed}, 1, 15) AS BIGINT)"

    def digest(self, text: str) -> str:
        return f"SHA256({text})"

    def concat(self, parts: list[str]) -> str:
        return concat_ws(parts)

    def epoch(self, col: str) -> str:
        # milliseconds: no time zone arithmetic for a zoned value; exact in a DOUBLE
        return f"CAST(FLOOR(EPOCH_MS({col}) / 1000) AS BIGINT)"

    def from_unix(self, col: str) -> str:
        return f"MAKE_TIMESTAMP(CAST({col} AS BIGINT) * 1000000)"

    def datetime(self, col: str) -> str:
        return f"STRFTIME({col}, '%Y-%m-%d %H:%M:%S')"

    def date(self, col: str) -> str:
        return f"STRFTIME({col}, '%Y-%m-%d')"


class MySQLCanon(Canon):
    """The legacy side: values cast to text once (their own text is canonical); a zero date
    is NULL when asked."""

    TEXT_TYPE = "CHAR"
    FLOAT_TYPE = "DOUBLE"
    LOG10 = "LOG10"  # MySQL's one-argument LOG is the natural logarithm

    def value(self, col: str, kind: Kind, wh_type: str = "") -> str:
        if kind.name == "bool":
            return self.number_flag(col)
        if kind.name in ("datetime", "date"):
            # the value's own text (`2024-03-01 10:00:00`; TIMESTAMP in the session's UTC) is
            # canonical, cut to the second: a third of the cost of DATE_FORMAT. A zero date is
            # found by a numeric test (`= 0`), cheaper than comparing its text
            text = f"CAST({col} AS CHAR)"
            if kind.name == "datetime" and kind.scale:
                text = f"LEFT({text}, 19)"
            return f"IF({col} = 0, NULL, {text})" if self.norm.zero_dates_as_null else text
        if kind.name == "number" and kind.plain:
            # an integer or DECIMAL(p,s) column as text is already canonical (`12.50`): one
            # cast instead of two (through DECIMAL(38,s)), a third of the row's hashing
            return f"CAST({col} AS CHAR)"
        return super().value(col, kind, wh_type)

    def cat(self, *parts: str) -> str:
        return "CONCAT(" + ", ".join(parts) + ")"  # `||` is OR in MySQL

    def int_text(self, expr: str) -> str:
        return f"CAST(CAST({expr} AS SIGNED) AS CHAR)"

    def concat(self, parts: list[str]) -> str:
        filled = [f"COALESCE({p}, '{NULL_TEXT}')" for p in parts]
        return "CONCAT_WS('" + SEP + "', " + ", ".join(filled) + ")"

    def hash_value(self, col: str, kind: Kind, wh_type: str = "") -> str:
        if kind.name == "number" and kind.plain:
            return col  # CONCAT_WS writes the value's own text: half the cost of a CAST
        if kind.name == "datetime":
            # TO_SECONDS (from year 0; NULL for a zero date) of the value, a TIMESTAMP in the
            # session's UTC, fractions of a second dropped
            secs = f"TO_SECONDS({col}) - {UNIX_TO_SECONDS}"
            return secs if self.norm.zero_dates_as_null else f"IF({col} = 0, '{ZERO}', {secs})"
        return self.value(col, kind, wh_type)

    def day(self, col: str, kind: Kind, wh_type: str = "") -> str:
        return f"TO_DAYS({col})"  # a number: a tenth of the cost of cutting the time's text

    def day_label(self, value: object) -> str:
        if value is None:
            return "None"
        return dt.date.fromordinal(int(str(value)) - TO_DAYS_1).isoformat()

    def digest(self, text: str) -> str:
        return f"SHA2({text}, 256)"  # MariaDB's MD5 costs about twice as much

    INLINE_HASH = True
    SUM_WIDENS = True
    GROUP_TAIL = " ORDER BY NULL"  # MySQL sorts a GROUP BY's result unless told not to

    def int_div(self, a: str, b: int) -> str:
        return f"(({a}) DIV {b})"  # `/` gives a DECIMAL rounded to div_precision_increment

    def hex_int(self, hexed: str) -> str:
        return f"CAST(CONV(SUBSTRING({hexed}, 1, 15), 16, 10) AS UNSIGNED)"


WAREHOUSE_CANON: dict[str, type[Canon]] = {
    "duckdb": DuckDBCanon,
    "postgres": PostgresCanon,
    "redshift": RedshiftCanon,
}


def applied(norm: Normalise, kinds: dict[str, Kind], tz_columns: list[str]) -> list[str]:
    """The normalisations in force, in words (printed with every result)."""
    out = []
    by = {k: [c for c, v in kinds.items() if v.name == k] for k in ("number", "float", "text")}
    if by["number"]:
        out.append("numbers at the legacy column's scale: " + ", ".join(by["number"]))
    if by["float"]:
        how = (
            f"{norm.float_digits} significant digits"
            if norm.float_digits
            else f"{norm.float_scale} places"
        )
        out.append(f"floats rounded to {how}: " + ", ".join(by["float"]))
    json_cols = [c for c, v in kinds.items() if v.name == "json"]
    if json_cols:
        out.append("JSON compared with its keys sorted: " + ", ".join(json_cols))
    if any(v.name in ("datetime", "date") for v in kinds.values()):
        out.append("times to the second as YYYY-MM-DD HH:MM:SS")
    if tz_columns:
        out.append("TIMESTAMP WITH TIME ZONE read in UTC: " + ", ".join(tz_columns))
    if norm.zero_dates_as_null and any(v.name in ("datetime", "date") for v in kinds.values()):
        out.append("zero dates as NULL")
    if by["text"] and norm.trim_trailing_spaces:
        out.append("trailing spaces removed")
    if by["text"] and norm.empty_as_null:
        out.append("empty string as NULL")
    if any(v.name == "bool" for v in kinds.values()):
        out.append("TINYINT(1) / BOOLEAN as 1/0")
    return out
