"""MySQL / MariaDB: connectorx streams the data as Arrow, PyMySQL answers metadata.

connectorx (Rust, Arrow-native, `arrow_stream` keeps memory flat) cannot bind parameters, so
the streaming query carries the watermark as typed literals rendered by `Source.lit`; every
metadata query goes through PyMySQL with bound parameters. connectorx panics (a
`BaseException`) on some values; those are caught here and re-raised as `SourceError`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from trackline.config import IDENT_RE
from trackline.config import MySQLSource as MySQLConfig
from trackline.errors import SchemaDriftError, SourceError, SourceTimeout, SourceUnreachable
from trackline.extract.source import OpenTransaction, Relation, Source, rechunk
from trackline.extract.types import SourceColumn, cast_batch, map_mysql_column

# PyMySQL FIELD_TYPE codes → information_schema-style DATA_TYPE, for `query:` sources.
INNODB_TRX_CACHE_SECONDS = 0.12
"""information_schema.innodb_trx is refreshed at most every 0.1 s (InnoDB's
TRX_I_S_CACHE_MIN_REFRESH_US), plus a margin."""

WRITE_STATEMENT = re.compile(
    r"\s*(?:(?:/\*.*?\*/|--[^\n]*\n|#[^\n]*\n)\s*)*"
    r"(?:INSERT|UPDATE|DELETE|REPLACE|LOAD|CALL|WITH)\b",
    re.IGNORECASE | re.DOTALL,
)
"""A statement that may write rows (leading comments skipped); `WITH` may lead an UPDATE or
DELETE, and CALL a procedure that writes: both are held, to be safe."""

_PROCESSLIST = "FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()"
_RUNNING_WRITES_MS = (  # MariaDB: milliseconds, + 10 ms for the rounding of TIME_MS
    "SELECT ID, (TIME_MS + 10) / 1000, "
    "NOW(6) - INTERVAL CAST((TIME_MS + 10) * 1000 AS SIGNED) MICROSECOND, "
    "UNIX_TIMESTAMP(NOW(6)) - (TIME_MS + 10) / 1000, INFO, COMMAND, TIME_MS / 1000 " + _PROCESSLIST
)
_RUNNING_WRITES_S = (  # MySQL: whole seconds
    "SELECT ID, TIME + 1, NOW(6) - INTERVAL (TIME + 1) SECOND, "
    "UNIX_TIMESTAMP(NOW(6)) - TIME - 1, INFO, COMMAND, TIME " + _PROCESSLIST
)
"""Every other connection: its start as a statement's (when it runs one), and the time it has
spent in its current command (idle: since its last statement ended), at least (whole
seconds on MySQL are a lower bound)."""


_FIELD_TYPES = {
    0: "decimal",
    1: "tinyint",
    2: "smallint",
    3: "int",
    4: "float",
    5: "double",
    7: "timestamp",
    8: "bigint",
    9: "mediumint",
    10: "date",
    11: "time",
    12: "datetime",
    13: "year",
    15: "varchar",
    16: "bit",
    245: "json",
    246: "decimal",
    247: "enum",
    248: "set",
    249: "blob",
    250: "blob",
    251: "blob",
    252: "blob",
    253: "varchar",
    254: "char",
}


_NOT_NULL_FLAG, _UNSIGNED_FLAG, _BINARY_CHARSET = 1, 32, 63
_BYTES = {"varchar": "varbinary", "char": "binary"}


def _field_type(f: Any) -> tuple[str, str]:
    """A result field → (DATA_TYPE, COLUMN_TYPE) as information_schema would state them."""
    dtype = _FIELD_TYPES.get(f.type_code, "varchar")
    binary = f.charsetnr == _BINARY_CHARSET
    unsigned = bool(f.flags & _UNSIGNED_FLAG)
    if dtype == "blob" and not binary:
        dtype = "longtext"  # TEXT and MariaDB's JSON arrive as BLOB fields with a charset
    elif dtype in _BYTES and binary:
        dtype = _BYTES[dtype]
    if dtype == "decimal":
        # The field length of DECIMAL(p,s) counts the sign (unless unsigned) and the point.
        p = f.length - (1 if f.scale else 0) - (0 if unsigned else 1)
        return dtype, f"decimal({max(p, 1)},{f.scale})" + (" unsigned" if unsigned else "")
    if dtype == "bit":
        return dtype, f"bit({f.length})"
    return dtype, dtype + (" unsigned" if unsigned else "")


# Server errors worth retrying: too many connections, shutdown in progress, lock wait
# timeout, deadlock, connection killed. Client errors (2000+) are lost connections.
_TRANSIENT = frozenset({1040, 1053, 1205, 1213, 1927})
_TIMEOUTS = (1969, 3024, 1205)
"""A statement ended by its limit: MariaDB max_statement_time, MySQL max_execution_time, a
lock wait past lock_wait_timeout (or innodb_lock_wait_timeout)."""
KEEPALIVE_MS = 30_000
"""Idle time before TCP keepalive probes start on connectorx's connection."""
CLIENT_GRACE_SECONDS = 5
"""The client socket timeout is the server's limit plus this: the server's error (clearer)
arrives first whenever the server can still answer."""


def _statement_kind(sql: str) -> str:
    """What a metadata-connection statement is for, to name it in a timeout error."""
    s = " ".join(sql.split()).upper()
    if "INFORMATION_SCHEMA.INNODB_TRX" in s or "INFORMATION_SCHEMA.PROCESSLIST" in s:
        return "open-transaction lookup"
    if "INFORMATION_SCHEMA" in s:
        return "column metadata query"
    if "NOW(" in s and " FROM " not in s:
        return "source clock read"
    if "IS NULL" in s and "COUNT(" in s:
        return "NULL-cursor check"
    if s.startswith("SELECT MAX("):
        return "max cursor/id query"
    if s.endswith("LIMIT 0"):
        return "query column probe"
    return "lookup query"


_NOT_PLAIN = (
    "is not a plain identifier (letters, digits, '_' and '$' only, starting with a letter or "
    "'_', at most 127 characters), the only names trackline puts into SQL"
)
_JSON_VALID = re.compile(r"json_valid\(`((?:[^`]|``)+)`\)", re.I)


class MySQL(Source):
    DIALECT = "mysql"
    INT64_TYPE = "SIGNED"

    def __init__(self, config: MySQLConfig, database: str | None = None) -> None:
        self.config = config
        self.database = database or config.database
        self._con: Any = None
        self._mariadb = False
        self._processlist_ms: bool | None = None  # PROCESSLIST.TIME_MS exists (MariaDB)

    # ------------------------------------------------------------------ connections

    def _password(self) -> str:
        return self.config.password.get_secret_value()

    def _where(self) -> str:
        c = self.config
        return f"MySQL at {c.host}:{c.port} (database {self.database!r}, user {c.user!r})"

    def _sanitize(self, text: str) -> str:
        pw = self._password()
        return text.replace(pw, "***") if pw else text

    @property
    def con(self) -> Any:
        if self._con is None:
            import pymysql

            c = self.config
            try:
                self._con = pymysql.connect(
                    host=c.host,
                    port=c.port,
                    user=c.user,
                    # UTF-8, as connectorx sends it (PyMySQL would encode a str as
                    # Latin-1: a password with `€` crashed, one with `ä` was refused)
                    password=self._password().encode("utf-8"),
                    database=self.database,
                    charset="utf8mb4",
                    autocommit=True,
                    connect_timeout=c.connect_timeout,
                    # the client's own limit, for a server (or tunnel) gone silent; the
                    # server's limits below end a statement first, with a clearer error
                    read_timeout=c.read_timeout_seconds + CLIENT_GRACE_SECONDS,
                    write_timeout=c.read_timeout_seconds + CLIENT_GRACE_SECONDS,
                )
                self._mariadb = "mariadb" in self._con.get_server_info().lower()
                with self._con.cursor() as cur:
                    cur.execute(self._session_limits())
            except pymysql.err.OperationalError as exc:
                code = exc.args[0] if exc.args else None
                msg = self._sanitize(str(exc.args[1] if len(exc.args) > 1 else exc))
                if code == 1045:
                    raise SourceError(
                        f"{self._where()} refused the login: {msg}; check the user and the "
                        "password's environment variable"
                    ) from None
                if code == 1049:
                    raise SourceError(f"{self._where()}: database does not exist") from None
                raise SourceUnreachable(f"cannot reach {self._where()}: {msg}") from None
        return self._con

    def _session_limits(self) -> str:
        """Server-side limits for every statement of the metadata connection."""
        n = self.config.read_timeout_seconds
        if self._mariadb:  # seconds, any statement
            return f"SET SESSION max_statement_time = {n}, lock_wait_timeout = {n}"
        # MySQL: milliseconds, read-only SELECTs only (the only statements sent here)
        return f"SET SESSION max_execution_time = {n * 1000}, lock_wait_timeout = {n}"

    def _limited(self, sql: str) -> str:
        """The data read with its server-side limits. connectorx opens its own connection
        and cannot run a SET first, and it holds the GIL while it waits for the server
        (measured: no other Python thread runs meanwhile), so no client-side watchdog can
        end it: the limits travel with the statement. MariaDB: `SET STATEMENT … FOR`
        (https://mariadb.com/kb/en/set-statement/); MySQL: optimizer hints
        (https://dev.mysql.com/doc/refman/8.0/en/optimizer-hints.html)."""
        c = self.config
        read, stream = c.read_timeout_seconds, c.stream_timeout_seconds
        if self._mariadb:
            return (
                f"SET STATEMENT max_statement_time = {stream}, lock_wait_timeout = {read} FOR {sql}"
            )
        head, _, rest = sql.partition(" ")
        if head.upper() != "SELECT":
            return sql
        hint = f"/*+ MAX_EXECUTION_TIME({stream * 1000}) SET_VAR(lock_wait_timeout = {read}) */"
        return f"SELECT {hint} {rest}"

    def _timeout(self, kind: str, code: int, msg: str) -> SourceTimeout:
        c = self.config
        if code == 1205:
            limit = c.read_timeout_seconds
            what = f"waited for a table lock longer than read_timeout_seconds = {limit} s"
        elif kind == "data read":
            what = f"ran past stream_timeout_seconds = {c.stream_timeout_seconds} s"
        elif code >= 2000:
            what = (
                f"got no answer within read_timeout_seconds = {c.read_timeout_seconds} s "
                f"(+{CLIENT_GRACE_SECONDS} s)"
            )
        else:
            what = f"ran past read_timeout_seconds = {c.read_timeout_seconds} s"
        return SourceTimeout(f"{kind} on {self._where()} {what} and was ended: {msg}")

    def url(self) -> str:
        c = self.config
        user = urllib.parse.quote(c.user, safe="")
        pw = urllib.parse.quote(self._password(), safe="")
        auth = f"{user}:{pw}" if pw else user
        # connectorx's driver takes no read timeout; TCP keepalive with TCP_USER_TIMEOUT
        # (Linux) ends its connection when the peer's host stops answering at all. A stuck
        # server, or a tunnel whose local end stays up, is ended by the server-side limits.
        dead_peer = (
            f"tcp_keepalive_time_ms={KEEPALIVE_MS}"
            f"&tcp_user_timeout_ms={c.read_timeout_seconds * 1000}"
        )
        db = urllib.parse.quote(self.database)
        return f"mysql://{auth}@{c.host}:{c.port}/{db}?{dead_peer}"

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def bind(self, sql: str, params: tuple[Any, ...]) -> str:
        # PyMySQL formats with `%` only when given parameters: then a literal `%` doubles
        return sql.replace("%", "%%").replace("?", "%s") if params else sql

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import pymysql

        try:
            with self.con.cursor() as cur:
                cur.execute(sql, params or None)
                return list(cur.fetchall())
        except pymysql.err.OperationalError as exc:
            # PyMySQL files every unmapped server error (access denied, unknown column, …)
            # under OperationalError; only lost connections and lock timeouts are transient.
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
            if code >= 2000:  # the connection is gone (a client timeout among others)
                self.close()
            if code in _TIMEOUTS or (code == 2013 and "timed out" in str(exc)):
                raise self._timeout(_statement_kind(sql), code, self._sanitize(str(exc))) from None
            kind = SourceUnreachable if code >= 2000 or code in _TRANSIENT else SourceError
            raise kind(f"{self._where()}: {self._sanitize(str(exc))}") from None
        except pymysql.err.MySQLError as exc:
            raise SourceError(f"{self._where()}: {self._sanitize(str(exc))}") from None

    def long_rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """`stream_timeout_seconds` on the server (as for a data read) and, for as long as the
        statement runs, on the client's socket: PyMySQL re-applies `_read_timeout` before each
        read, so the metadata limit would otherwise end the read first."""
        con = self.con  # connected: `_limited` needs to know MariaDB from MySQL
        saved = con._read_timeout
        con._read_timeout = self.config.stream_timeout_seconds + CLIENT_GRACE_SECONDS
        try:
            return self.rows(self._limited(sql), params)
        finally:
            con._read_timeout = saved

    # ------------------------------------------------------------------ metadata

    def columns(self, rel: Relation) -> list[SourceColumn]:
        if rel.query:
            return self._query_columns(rel)
        db = rel.database or self.database
        rows = self.rows(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE "
            "FROM information_schema.columns WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
            "ORDER BY ORDINAL_POSITION",
            (db, rel.name),
        )
        if not rows:
            raise SourceError(
                f"table {db}.{rel.name} not found in {self._where()}; check the table's "
                "name and database in the config"
            )
        # Qualified references: the SELECT aliases a wrapped column back to its own name
        # (NULLIF(`ts`, 0) AS `ts`), and an unqualified ORDER BY `ts` would sort by that
        # alias instead of reading the (ts, id) index in order.
        table = self.relation_sql(Relation(rel.name, db))
        for name, *_ in rows:
            if not IDENT_RE.match(name):
                raise SchemaDriftError(
                    f"table {db}.{rel.name}: column {name!r} {_NOT_PLAIN}; rename the column, "
                    "or read the table through a `query:` that names it with AS"
                )
        cols = [
            map_mysql_column(name, dtype, ctype, nullable == "YES", f"{table}.{self.q(name)}")
            for name, dtype, ctype, nullable in rows
        ]
        json_checked = self._json_valid_columns(db, rel.name)
        return [dataclasses.replace(c, json=True) if c.name in json_checked else c for c in cols]

    def _json_valid_columns(self, db: str, table: str) -> set[str]:
        """MariaDB's JSON is an alias of LONGTEXT with a ``CHECK (json_valid(col))``: the
        columns with such a check. (MySQL's JSON type is found from DATA_TYPE; its
        CHECK_CONSTRAINTS view has no TABLE_NAME, and the query's error means "none".)"""
        try:
            rows = self.rows(
                "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s",
                (db, table),
            )
        except SourceUnreachable:
            raise
        except SourceError:
            return set()
        found = set()
        for (clause,) in rows:
            m = _JSON_VALID.fullmatch(str(clause).strip())
            if m:
                found.add(m.group(1).replace("``", "`"))
        return found

    def _query_columns(self, rel: Relation) -> list[SourceColumn]:
        import pymysql

        sql = f"SELECT * FROM {self.relation_sql(rel)} LIMIT 0"
        try:
            with self.con.cursor() as cur:
                cur.execute(sql)
                # The result's field packets carry what `description` drops: the UNSIGNED
                # flag and the character set (63 = binary: BLOB vs TEXT, VARBINARY vs VARCHAR).
                fields = list(cur._result.fields)
        except pymysql.err.MySQLError as exc:
            raise SourceError(
                f"{'query' if rel.query else 'table'} {rel.name!r} cannot be read on "
                f"{self._where()}: {self._sanitize(str(exc))}"
            ) from None
        for f in fields:
            if not IDENT_RE.match(f.name):
                raise SourceError(
                    f"query of table {rel.name!r}: its output column {f.name!r} {_NOT_PLAIN}; "
                    "name it with AS in the query"
                )
        return [
            map_mysql_column(
                f.name,
                *_field_type(f),
                not f.flags & _NOT_NULL_FLAG,
                f"{self.q('_tl_src')}.{self.q(f.name)}",
            )
            for f in fields
        ]

    def primary_key(self, rel: Relation) -> list[str]:
        if rel.query:
            return []
        rows = self.rows(
            "SELECT COLUMN_NAME FROM information_schema.key_column_usage "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY' "
            "ORDER BY ORDINAL_POSITION",
            (rel.database or self.database, rel.name),
        )
        return [r[0] for r in rows]

    def leading_index(self, rel: Relation, column: str) -> str | None:
        rows = self.rows(
            "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = %s AND COLUMN_NAME = %s AND SEQ_IN_INDEX = 1 ORDER BY INDEX_NAME",
            (rel.database or self.database, rel.name, column),
        )
        return str(rows[0][0]) if rows else None

    def now(self, unix: bool) -> Any:
        if unix:
            return int(self.scalar("SELECT UNIX_TIMESTAMP(NOW(6))"))
        return self.scalar("SELECT NOW(6)")

    def write_transactions(self, unix: bool, fresh: bool = False) -> list[OpenTransaction]:
        """Open InnoDB transactions that have modified rows, and write statements still
        running (`_running_writes`); none if they are unreadable (the reason in
        `hold_problem`), or with `innodb_hold: false`.

        `information_schema.innodb_trx` is served from a cache refreshed at most every 0.1 s,
        and a transaction counts there only once it has modified a row.

        `trx_started` is when InnoDB began the transaction: a statement that waited for a
        metadata or table lock before that (`LOCK TABLES`, DDL) stamped NOW() earlier. While
        it waits or runs, the process list gives its own start; once it has finished, the
        server keeps no trace of the wait (`trx_wait_started` is set only for row-lock waits,
        which come after `trx_started`): the caller covers that with a margin.

        So the process list is read first, and innodb_trx afterwards from a cache refreshed
        after that read (this waits INNODB_TRX_CACHE_SECONDS from it): a statement is then
        either still running at the first read (held at its own start) or has modified its
        rows before it (its transaction is in the second). Read the other way round, or from a
        cache older than the first read, a statement that ended its lock wait between the two
        reads is in neither, and the rows it stamped seconds before the bound commit below it.
        The wait is needed only if a connection ended a statement within the cache's age
        before the process list was read: a connection's time in its current command (for an
        idle one, since its last statement ended) bounds that from below, so when every other
        connection has been in its command for longer, the cache cannot predate any of their
        writes and innodb_trx is read at once (a quiet source). `fresh` is kept for the
        interface: this source is always read fresh."""
        self.hold_problem = None
        if not self.config.innodb_hold:
            return []
        running, quiet = self._running_writes(unix)
        if quiet is None or quiet < INNODB_TRX_CACHE_SECONDS:
            time.sleep(INNODB_TRX_CACHE_SECONDS)  # (after the clock was read, as well)
        try:
            rows = self.rows(
                "SELECT trx_started, trx_mysql_thread_id, "
                "TIMESTAMPDIFF(MICROSECOND, trx_started, NOW(6)) / 1e6, "
                "UNIX_TIMESTAMP(trx_started) "
                "FROM information_schema.innodb_trx WHERE trx_rows_modified > 0 "
                "AND trx_mysql_thread_id <> CONNECTION_ID() "
                "ORDER BY trx_started"
            )
        except SourceError as exc:  # e.g. no PROCESS privilege: the caller reports it
            self.hold_problem = (
                f"cannot read information_schema.innodb_trx ({exc}); the upper bound is not "
                "held for open transactions: grant PROCESS to the user, or set "
                "innodb_hold: false to silence this"
            )
            return running
        found = [
            OpenTransaction(int(unix_started) if unix else started, int(thread), float(age))
            for started, thread, age, unix_started in rows
        ]
        return found + running

    def _running_writes(self, unix: bool) -> tuple[list[OpenTransaction], float | None]:
        """Write statements running now, held at the moment they started; and the least time
        any other connection has spent in its current command (seconds; None: unknown).

        A statement stamps its rows with NOW() as of its start, but InnoDB counts the
        transaction as a writer (`trx_rows_modified > 0`) only from its first modified row:
        an INSERT … SELECT that aggregates for longer than the lag before inserting, or an
        UPDATE that scans long before its first match, would otherwise write rows below a
        bound that has moved on. The start is NOW(6) − TIME_MS (MariaDB); MySQL's process
        list has whole seconds only, so there it is NOW() − (TIME + 1) s, earlier than the
        real start: the hold errs on the safe side.

        A statement waiting for a lock is listed too (COMMAND 'Query', its text in INFO,
        STATE 'Waiting for table metadata lock' or 'Waiting for table level lock'), and
        TIME_MS counts from the statement's start, wait included: measured on MariaDB
        10.11 with an UPDATE … JOIN blocked by `LOCK TABLES … WRITE` (tests cover it). An
        idle connection's TIME_MS counts from the end of its last statement (measured: 3 ms
        right after a one-second `SELECT SLEEP(1)`)."""
        rows: list[tuple[Any, ...]] = []
        try:
            if self._processlist_ms is not False:
                try:
                    rows = self.rows(_RUNNING_WRITES_MS)
                    self._processlist_ms = True
                except SourceError as exc:
                    if self._processlist_ms or "TIME_MS" not in str(exc).upper():
                        raise
                    self._processlist_ms = False
            if self._processlist_ms is False:
                rows = self.rows(_RUNNING_WRITES_S)
        except SourceError as exc:
            self.hold_problem = (
                f"cannot read information_schema.PROCESSLIST ({exc}); the upper bound is "
                "not held for running write statements: grant PROCESS to the user, or set "
                "innodb_hold: false to silence this"
            )
            return [], None
        quiet = min((float(r[6]) for r in rows if r[6] is not None), default=float("inf"))
        if any(r[6] is None for r in rows):
            quiet = 0.0
        running = [
            OpenTransaction(
                int(unix_start) if unix else start, int(thread), float(age), statement=True
            )
            for thread, age, start, unix_start, info, command, _ in rows
            if command == "Query" and info is not None and WRITE_STATEMENT.match(str(info))
        ]
        return running, quiet

    # ------------------------------------------------------------------ data

    def _read_failed(self, exc: BaseException) -> SourceError:
        text = self._sanitize(str(exc))
        code = next((c for c in _TIMEOUTS if f"ERROR {c} " in text), None)
        if code is not None:
            return self._timeout("data read", code, text[:400])
        return SourceError(f"reading from {self._where()} failed: {text[:400]}")

    def stream(self, sql: str, schema: pa.Schema, batch_size: int) -> Iterator[pa.RecordBatch]:
        import connectorx as cx

        sql = self._limited(sql)
        failed = self._read_failed

        try:
            reader = cx.read_sql(self.url(), sql, return_type="arrow_stream", batch_size=batch_size)
        except BaseException as exc:  # connectorx raises a PanicException (BaseException)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise failed(exc) from None

        def cast() -> Iterator[pa.RecordBatch]:
            try:
                for b in reader:
                    yield cast_batch(b, schema)
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                    raise
                if isinstance(exc, pa.ArrowInvalid):
                    raise SourceError(f"a value does not fit its declared type: {exc}") from None
                raise failed(exc) from None

        return rechunk(cast(), schema, batch_size)

    def fetch(self, sql: str, schema: pa.Schema) -> pa.Table:
        """The whole result, read by connectorx with Python's GIL released until it is all
        there. Its streaming read (`stream`) holds the GIL while it waits for each batch
        (connectorx 0.4.6 calls the batch channel's blocking receive without releasing it;
        measured: a busy Python thread ran at 3% of its speed meanwhile), which stalls the
        threads that stage and load the batches before it. The types are those of `stream`
        once cast to `schema` (checked on every MySQL type `types.py` reads)."""
        import connectorx as cx

        try:
            data = cx.read_sql(self.url(), self._limited(sql), return_type="arrow")
        except BaseException as exc:  # connectorx raises a PanicException (BaseException)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise self._read_failed(exc) from None
        if data.num_rows == 0:
            return schema.empty_table()
        try:
            batches = [cast_batch(b, schema) for b in data.to_batches()]
        except pa.ArrowInvalid as exc:
            raise SourceError(f"a value does not fit its declared type: {exc}") from None
        return pa.Table.from_batches(batches, schema)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
