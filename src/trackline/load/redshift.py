"""Amazon Redshift: Parquet ``COPY`` from the S3 stage, DISTKEY/SORTKEY, a lock table.

Driver: psycopg 3 rather than redshift_connector. Redshift speaks the PostgreSQL protocol, so
one driver serves two engines (this class extends `Postgres`), psycopg ships binary wheels, and
it is already pinned. Two settings make it work with Redshift (psycopg issue #122): Redshift
reports its encoding as ``UNICODE``, unknown to Python, so the connection asks for ``utf8``;
and automatic prepared statements are off (``prepare_threshold=None``) because Redshift refuses
the ``DEALLOCATE ALL`` psycopg sends to reset them. Values stay bound parameters.
Credentials: the password from the config (an environment variable), or with ``iam_auth`` a
temporary user and password from ``redshift:GetClusterCredentials`` (`cluster_credentials`).

What differs from PostgreSQL, and where it is handled (docs/redshift.md):

- Loading is ``COPY t (cols) FROM '<manifest>' IAM_ROLE '<arn>' FORMAT AS PARQUET MANIFEST``
  (``SERIALIZETOJSON`` after PARQUET when the table has SUPER columns), from files in the
  layout COPY reads correctly (`trackline.stage.parquet`: Parquet 1.0, snappy, INT96
  timestamps), in a bucket of the cluster's region, checked before the first COPY (`s3region`).
  Parquet columns are matched by position, so before COPY the staged file's schema must equal
  the batch's (else `WarehouseError`), and the target's columns must be in the batch's order
  (else, e.g. after a drift-added column, the batch goes through a temp table and an INSERT by
  name). Sync stages each batch in the types COPY reads (`stage_form`: unsigned integers,
  which Redshift's Parquet reader does not map, widened or as DECIMAL(20,0); times of day as
  text), so COPY loads the staged manifest itself. When the batch is not what was staged
  (rows filtered after staging, such as a merge's deduplication; text cut by
  ``varchar_policy``; a file staged uncast or in an older layout by an earlier version; JSON
  columns that differ from the target's SUPER columns), the batch is written to a transient
  file under ``_trackline_tmp/`` in the stage, loaded, and deleted (`stagefiles`).
- VARCHAR holds at most 65,535 bytes, VARBYTE 1,024,000, a SUPER document 16 MB and each
  string inside it 65,535 bytes: checked in the Arrow data before COPY (`trackline.load.limits`).
- TRUNCATE commits (`TRUNCATE_COMMITS`), anti-joins use NOT EXISTS (`KEYED_INSERT`), there
  are no indexes (`create_unique_index` does nothing), VACUUM runs outside transactions.
- Views are late-binding (``WITH NO SCHEMA BINDING``, `view_options`): the history union
  views never pin the period tables they read.
- Only SELECT, INSERT, UPDATE and DELETE take bound parameters (Redshift's PREPARE): DDL,
  including ``CREATE TABLE … AS``, is sent without any, so temp tables are created, then
  filled by an INSERT.
- A conflict with a concurrent transaction (error 1023 under SERIALIZABLE isolation, its
  SNAPSHOT isolation text, SQLSTATE 40001 in compat mode) is a `RetryableWarehouseError`:
  every transaction trackline runs is rerun whole (`Warehouse.run_transaction`).
- No advisory locks: `lock` keeps one row per held lock in ``trackline.locks`` (`TableLock`).
- Names are stored in lower case (`FOLDS_IDENTIFIERS`): a source column ``pathTime`` is the
  column ``pathtime``, and config keys may keep naming it ``pathTime``. Redshift folds every
  identifier, quoted or not, unless a session sets ``enable_case_sensitive_identifier``
  ("Names and identifiers", https://docs.aws.amazon.com/redshift/latest/dg/r_names.html;
  https://docs.aws.amazon.com/redshift/latest/dg/r_enable_case_sensitive_identifier.html).
  That setting is per session (or per parameter group): a reader, a BI tool or a late-binding
  view without it would not find a mixed-case column. Folded names need no setting anywhere.
  Two source columns that fold to one name stop that table with both names.

JSON documents (``warehouse.json_as: super``): JSON source columns of tables created from then
on are ``SUPER``, and so are the mart and history columns made from them. The batch file holds
them with Parquet's JSON logical type, which COPY parses into SUPER documents (Redshift's own
UNLOAD writes SUPER that way; a plain Parquet string would become one SUPER string scalar, the
reason a text → SUPER load otherwise needs ``JSON_PARSE``), and the COPY says
``SERIALIZETOJSON`` (`copy_sql`). Each value is checked before COPY: valid JSON, at most 16 MB
(SUPER's limit), no string inside it over 65,535 bytes (``varchar_policy`` decides). Whether a
column is SUPER is read from the target table, so a table created as VARCHAR keeps loading
text. Compat mode uses JSONB.

Types (Arrow → Redshift): text is ``VARCHAR(65535)`` (``TEXT`` would be ``VARCHAR(256)``);
binary is ``VARBYTE(1024000)``, the largest; ``uint64`` is ``DECIMAL(20,0)``; times of day are
``VARCHAR(32)`` ("HH:MM:SS.ffffff"), as MySQL TIME already arrives (its range is ±838 h, wider
than a TIME column), and because Redshift documents no Parquet mapping for a TIME column.

``compat_postgres: true`` runs this same adapter against PostgreSQL: DISTKEY/SORTKEY and
``WITH NO SCHEMA BINDING`` are dropped, VARBYTE becomes BYTEA, and COPY from S3 becomes a
client-side COPY of the same files (the manifest's entries, read back from the stage, columns
still matched by position; `copy_sql` is the COPY Redshift would have received).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

import trackline.load.limits as limits
import trackline.load.s3region as s3region
import trackline.load.stagefiles as stagefiles
from trackline.config import RedshiftWarehouse
from trackline.errors import ConfigError, RetryableWarehouseError, WarehouseError
from trackline.extract.types import is_json, json_field, max_bytes, with_max_bytes
from trackline.load.base import Column, StagedFiles, Warehouse
from trackline.load.limits import VARBYTE_MAX_BYTES, VARCHAR_MAX_BYTES
from trackline.load.postgres import Postgres
from trackline.load.tablelock import TableLock

if TYPE_CHECKING:
    from trackline.stage import Stage


_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}")
_S3_URI = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?")
_DENIED_OR_MISSING = frozenset({"42501", "42P01"})  # insufficient privilege, undefined table


def sql_literal(value: str) -> str:
    """A single-quoted string literal, quotes doubled: only for the two places where Redshift's
    COPY grammar takes no bound parameter (the source URI and the IAM role)."""
    if "\\" in value or any(ord(c) < 32 for c in value):
        raise WarehouseError(
            "a COPY source or IAM role may not contain backslashes or control characters"
        )
    return "'" + value.replace("'", "''") + "'"


def iam_role_clause(role: str) -> str:
    """``IAM_ROLE 'arn:…'`` (comma-separated ARNs chain roles) or ``IAM_ROLE default``.

    The value is never echoed in the error: a credential pasted here by mistake stays out of
    logs."""
    role = role.strip()
    if role.lower() == "default":
        return "IAM_ROLE default"
    arns = [a.strip() for a in role.split(",")]
    if not all(_ROLE_ARN.fullmatch(a) for a in arns):
        raise ConfigError(
            "warehouse.iam_role is not an IAM role ARN: expected "
            "arn:aws:iam::<12-digit account>:role/<name> (comma-separated to chain roles) "
            "or `default`"
        )
    return f"IAM_ROLE {sql_literal(','.join(arns))}"


def s3_literal(uri: str) -> str:
    if not _S3_URI.fullmatch(uri):
        raise WarehouseError(
            f"Redshift COPY reads from S3, and {uri!r} is not an s3://bucket/key URI: set "
            "stage.url to s3://bucket/prefix (or warehouse.compat_postgres: true to run "
            "against PostgreSQL)"
        )
    return sql_literal(uri)


def _describe(schema: pa.Schema) -> str:
    return ", ".join(f"{n} {t}" for n, t in stagefiles.columns(schema))


class Redshift(TableLock, Postgres):
    ENGINE = "redshift"
    DIALECT = "redshift"
    MAX_IDENTIFIER_LENGTH = 127
    TRUNCATE_COMMITS = True
    KEYED_INSERT = "anti_join"
    BLANK_PADDED_EQUALITY = True
    SECONDARY_INDEXES = False  # no indexes: sort keys and zone maps instead
    PARALLEL_MARTS = False  # serializable isolation: marts at once would conflict (1023)
    # Background auto-analyze; an explicit ANALYZE of the staging table would mostly be
    # skipped (an hour is far under its changed-rows threshold) and costs a sample scan.
    # https://docs.aws.amazon.com/redshift/latest/dg/t_Analyzing_tables.html
    ANALYZE_BEFORE_JOIN = False
    BULK_JOIN_SETTINGS: ClassVar[tuple[str, ...]] = ()  # no such settings on Redshift
    INDEX_PROBE_SETTINGS: ClassVar[tuple[str, ...]] = ()
    TEXT_TYPE = f"VARCHAR({VARCHAR_MAX_BYTES})"
    JSON_TYPE = "SUPER"
    TYPE_MAP: ClassVar[dict[str, str]] = {
        **Warehouse.TYPE_MAP,
        "string": TEXT_TYPE,
        "large_string": TEXT_TYPE,
        "binary": f"VARBYTE({VARBYTE_MAX_BYTES})",
        "large_binary": f"VARBYTE({VARBYTE_MAX_BYTES})",
        "uint64": "DECIMAL(20,0)",
        "time64[us]": "VARCHAR(32)",
    }
    PARQUET_CASTS: ClassVar[dict[str, pa.DataType]] = {
        "uint8": pa.int16(),
        "uint16": pa.int32(),
        "uint32": pa.int64(),
        "uint64": pa.decimal128(20, 0),
    }
    """Arrow types whose Parquet form Redshift's COPY does not map onto the column type, and
    the type the batch is cast to before COPY (times of day become text, see `TYPE_MAP`)."""
    FOLDS_IDENTIFIERS = True
    SESSION_SETUP: ClassVar[tuple[str, ...]] = ()
    """Statements each session runs first (none: folded names need no session setting)."""
    VACUUM_UNSORTED_PCT: ClassVar[float] = 10.0
    VACUUM_BUSY: ClassVar[re.Pattern[str]] = re.compile(r"VACUUM is running|other vacuum", re.I)
    """The error of a VACUUM started while another one runs ("VACUUM is running", hint
    "re-execute after other vacuum finished"; SQLSTATE 0A000): a skip, not a failure."""
    ANALYZE_STATS_OFF_PCT: ClassVar[float] = 10.0

    config: RedshiftWarehouse

    def __init__(self, config: RedshiftWarehouse) -> None:
        super().__init__(config)
        self.compat = config.compat_postgres
        self.iam_role = iam_role_clause(config.iam_role)

    # ------------------------------------------------------------------ connection

    def conninfo(self) -> dict[str, Any]:
        info = super().conninfo()
        info.update(client_encoding="utf8", prepare_threshold=None)
        if self.config.iam_auth:
            info["user"], info["password"] = cluster_credentials(self.config)
        if not self.compat:
            info["sslmode"] = "require"
        return info

    def connect(self) -> None:
        super().connect()
        for sql in self.session_setup():
            self.execute(sql)

    def sessions_sql(self) -> str:
        if self.compat:
            return "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = ?"
        return super().sessions_sql()

    def session_setup(self) -> tuple[str, ...]:
        return () if self.compat else self.SESSION_SETUP

    # Concurrent writers conflict differently under the two isolation levels a Redshift
    # database may have (https://docs.aws.amazon.com/redshift/latest/dg/c_serial_isolation.html;
    # SNAPSHOT is the default of new clusters and workgroups): SERIALIZABLE aborts with
    # "ERROR: 1023 DETAIL: Serializable isolation violation on table …" (the page's "How to fix
    # serializable isolation errors": retry the aborted transaction), SNAPSHOT with "could not
    # complete because of conflict with concurrent transaction" under the unspecific SQLSTATE
    # XX000 (as reported to AWS's own driver, aws/amazon-redshift-jdbc-driver#147). Both roll
    # the transaction back; `run_transaction` runs it again.
    RETRYABLE_MESSAGES = (
        r"^\s*(ERROR:\s*)?1023\b",
        r"serializable isolation violation",
        r"conflict with concurrent transaction",
    )

    def translate_error(self, exc: BaseException, sql: str) -> BaseException:
        if Warehouse.is_retryable(self, exc):  # a conflict (not a lost connection)
            first = sql.strip().splitlines()[0][:160] if sql.strip() else ""
            return RetryableWarehouseError(
                f"{self.ENGINE}: conflict with a concurrent transaction (Redshift error 1023 or "
                f"its SNAPSHOT isolation form; SQLSTATE 40001 in compat mode): {exc}; the "
                f"transaction was rolled back and can run again (statement: {first})"
            )
        return super().translate_error(exc, sql)

    # ------------------------------------------------------------------ DDL

    def sql_type(self, t: pa.DataType) -> str:
        name = super().sql_type(t)
        return "BYTEA" if self.compat and name.startswith("VARBYTE") else name

    @property
    def stores_json(self) -> bool:
        return self.config.json_as == "super"

    def _json_type(self) -> str:
        return "JSONB" if self.compat else "SUPER"

    def column_type(self, c: Column) -> str:
        return self._json_type() if c.json else super().column_type(c)

    def distinct(self, a: str, b: str, column: Column) -> str:
        # No IS DISTINCT FROM; `=` on VARCHAR ignores trailing blanks ('a' = 'a '), LENGTH
        # counts them: https://docs.aws.amazon.com/redshift/latest/dg/r_Character_types.html;
        # SUPER documents are compared as their serialized bytes
        if column.json and not self.compat:
            a, b = f"JSON_SERIALIZE_TO_VARBYTE({a})", f"JSON_SERIALIZE_TO_VARBYTE({b})"
        differ = f"{a} <> {b}"
        if not column.json and (
            pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        ):
            differ += f" OR LENGTH({a}) <> LENGTH({b})"
        return (
            f"({differ} OR ({a} IS NULL AND {b} IS NOT NULL) OR ({a} IS NOT NULL AND {b} IS NULL))"
        )

    def fetchable(self, expr: str, column: Column) -> str:
        if not column.json:
            return expr
        return f"CAST({expr} AS TEXT)" if self.compat else f"JSON_SERIALIZE({expr})"

    def json_column_names(self, schema: str, table: str) -> set[str]:
        want = self._json_type().lower()
        return {n for n, t in self.column_types(schema, table).items() if t == want}

    def table_options(self, dist_key: str | None, sort_key: Sequence[str] | None) -> str:
        if self.compat:
            return ""
        out = f" DISTKEY({self.q(dist_key)})" if dist_key else ""
        return out + (f" SORTKEY({self.cols(sort_key)})" if sort_key else "")

    def replicated_options(self, sort_key: Sequence[str] | None) -> str:
        # DISTSTYLE ALL: joins to a small dimension need no redistribution
        # https://docs.aws.amazon.com/redshift/latest/dg/c_choosing_dist_sort.html
        if self.compat:
            return ""
        return " DISTSTYLE ALL" + self.table_options(None, sort_key)

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
        names = {self.name(c.name) for c in columns}
        documents = {self.name(c.name) for c in columns if c.json}
        for key, cols in (("dist_key", [dist_key] if dist_key else []), ("sort_key", sort_key)):
            missing = [c for c in cols or [] if self.name(c) not in names]
            if missing:
                raise ConfigError(
                    f"{key} of {schema}.{table}: column {missing[0]!r} is not one of its "
                    f"columns ({', '.join(c.name for c in columns)})"
                )
            super_keys = [c for c in cols or [] if self.name(c) in documents]
            if super_keys:
                raise ConfigError(
                    f"{key} of {schema}.{table}: column {super_keys[0]!r} holds JSON documents "
                    "(SUPER), which cannot be a distribution or sort key; choose another "
                    "column or take it out of `json_columns`"
                )
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

    def create_unique_index(self, schema: str, table: str, columns: Sequence[str]) -> None:
        """Redshift has no indexes; keys stay unique through the anti-join inserts."""
        return None

    def unique_in_transaction(
        self, schema: str, table: str, columns: Sequence[str]
    ) -> Callable[[], None] | None:
        return None  # no indexes (and no savepoints): the caller's GROUP BY checks

    def sized_text_type(self, max_bytes: int) -> str:
        # VARCHAR(n) counts bytes; a column sized from the source keeps temp tables and hash
        # joins small in the planner's estimates (it budgets the declared width per row).
        return f"VARCHAR({min(max(max_bytes, 1), VARCHAR_MAX_BYTES)})"

    # Redshift's ALTER TABLE changes one kind of column type only: a VARCHAR's length
    # ("ALTER COLUMN column_name TYPE updated_varchar_data_type_size"), and not inside a
    # transaction block; INT → BIGINT or a DECIMAL's precision need a rebuilt table
    # (`trackline migrate`). https://docs.aws.amazon.com/redshift/latest/dg/r_ALTER_TABLE.html
    ALTERS_TYPES_IN_TRANSACTION = False

    def can_alter_type(self, current: str, column: Column) -> bool:
        return current.startswith("character varying") and self.column_type(column).startswith(
            "VARCHAR("
        )

    def alter_column_type(self, schema: str, table: str, column: Column) -> None:
        # Redshift refuses an ALTER to the length a column already has: skip it, so a rerun
        # after a crash between this ALTER and the state write goes through.
        want = re.fullmatch(r"VARCHAR\((\d+)\)", self.column_type(column))
        if want:
            have = self.scalar(
                "SELECT character_maximum_length FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? AND column_name = ?",
                (self.name(schema), self.name(table), self.name(column.name)),
            )
            if have is not None and int(have) >= int(want.group(1)):
                return
        super().alter_column_type(schema, table, column)

    def view_options(self) -> str:
        # Late binding: the view is not bound to the tables it reads, so a period table can
        # be dropped, renamed or recreated (and VACUUMed, ALTERed) without CASCADE on the view.
        return "" if self.compat else " WITH NO SCHEMA BINDING"

    # ------------------------------------------------------------------ loading

    @contextlib.contextmanager
    def batch_relation(self, data: pa.Table, staged: StagedFiles | None = None) -> Iterator[str]:
        rel = self.q(self.temp_name())
        cols = ", ".join(f"{self.q(f.name)} {self.column_type(Column.of(f))}" for f in data.schema)
        self.execute(f"CREATE TEMPORARY TABLE {rel} ({cols})")
        where = staged.manifest_uri if staged and staged.manifest_uri else "memory"
        try:
            self._load(rel, data, staged, f"the batch from {where}")
            yield rel
        finally:
            with contextlib.suppress(WarehouseError):
                self.execute(f"DROP TABLE IF EXISTS {rel}")

    def append_arrow(
        self, schema: str, table: str, data: pa.Table, staged: StagedFiles | None = None
    ) -> int:
        names = [self.name(n) for n in data.schema.names]  # as stored (`FOLDS_IDENTIFIERS`)
        types = self.column_types(schema, table)
        existing = list(types)
        json_type = self._json_type().lower()
        documents = {n for n, t in types.items() if t == json_type}
        data = with_json(data, {n for n in data.schema.names if self.name(n) in documents})
        if existing == names:
            self._load(self.t(schema, table), data, staged, f"{schema}.{table}")
            return data.num_rows
        missing = [n for n in names if n not in existing]
        if missing:
            raise WarehouseError(
                f"{schema}.{table} has no column {missing[0]!r}, which the batch has "
                f"(table columns: {', '.join(existing) or 'none'}); nothing was loaded"
            )
        # Same columns in another order (a drift-added column sits at the end of the table):
        # COPY matches by position, so load a temp table in the file's order, INSERT by name.
        return Warehouse.append_arrow(self, schema, table, data, staged)

    def _load(self, target: str, data: pa.Table, staged: StagedFiles | None, label: str) -> None:
        """COPY `data` into `target` (a quoted relation whose columns are the batch's)."""
        cast, _ = self.stage_form_of(data)
        ready, changes = self._fit_values(cast, label)
        if staged is None or not staged.manifest_uri:
            changes.append("the batch was not staged")
            manifest = ""
        else:
            changes += self._check_staged(cast, data, staged)
            manifest = staged.manifest_uri
        transient: list[str] = []
        if changes:
            manifest, transient = self._restage(ready)
        documents = any(is_json(f) for f in ready.schema)
        try:
            self._copy_manifest(target, ready.schema.names, manifest, documents=documents)
        finally:
            self._discard(transient)

    def stage_form(self, data: pa.Table) -> pa.Table:
        return self.stage_form_of(data)[0]

    def stage_form_of(self, data: pa.Table) -> tuple[pa.Table, list[str]]:
        """The batch with the types Redshift's Parquet reader does not map cast to ones it does
        (`PARQUET_CASTS`; times of day as text), and what was cast. Sync stages this form, so
        COPY loads the staged file itself."""
        casts: list[str] = []
        fields, arrays = [], []
        for field, col in zip(data.schema, data.columns, strict=True):
            cast = self.PARQUET_CASTS.get(str(field.type))
            if cast is None and pa.types.is_time(field.type):
                cast = pa.string()
            if cast is not None:
                col = pc.cast(col, cast)
                field = field.with_type(cast)
                casts.append(f"{field.name} cast to {cast}")
            fields.append(field)
            arrays.append(col)
        if not casts:
            return data, casts
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields, data.schema.metadata)), casts

    def copy_ready(self, data: pa.Table, label: str) -> tuple[pa.Table, list[str]]:
        """The batch as COPY can load it, and what had to change: casts of the types Redshift's
        Parquet reader does not map, and text over the VARCHAR limit (per varchar_policy)."""
        cast, casts = self.stage_form_of(data)
        ready, cuts = self._fit_values(cast, label)
        return ready, casts + cuts

    def _fit_values(self, data: pa.Table, label: str) -> tuple[pa.Table, list[str]]:
        super_strings = (
            limits.SUPER_LARGE_STRING_MAX_BYTES
            if self.config.large_super_strings
            else limits.SUPER_STRING_MAX_BYTES
        )
        return limits.fit_values(
            data, label, self.config.varchar_policy, self.notice, super_strings
        )

    # Stage I/O. `_check_staged`, `_restage` and `_discard` are all `Recorder` replaces.

    def _check_staged(self, cast: pa.Table, data: pa.Table, staged: StagedFiles) -> list[str]:
        """Raise when the staged file cannot be this batch; return why it must be restaged.

        `cast` is the batch in the form sync stages (`stage_form`); a file staged without the
        casts (by an earlier version, or for another engine) holds `data`'s types: it is
        restaged rather than refused."""
        assert staged.manifest_uri
        self._check_region()
        footer = stagefiles.staged_footer(self._require_stage(), staged.manifest_uri)
        schema, rows = footer.schema, footer.rows
        reasons = []
        if stagefiles.columns(schema) != stagefiles.columns(cast.schema):
            if stagefiles.columns(schema) != stagefiles.columns(data.schema):
                raise WarehouseError(
                    f"the files of {staged.manifest_uri} have the columns {_describe(schema)} "
                    f"but the batch has {_describe(cast.schema)}; COPY matches Parquet columns "
                    "by position, so nothing was loaded. Replay only batches staged with the "
                    "target's current columns"
                )
            reasons.append("the staged file holds types COPY does not map (staged uncast)")
        if rows != cast.num_rows:  # e.g. deduplicated for a merge after staging
            reasons.append(f"the batch holds {cast.num_rows} of the {rows} staged rows")
        if stagefiles.json_names(schema) != stagefiles.json_names(cast.schema):
            # e.g. staged before warehouse.json_as changed: JSON logical type ≠ the column's
            reasons.append("the staged file's JSON columns are not the target's SUPER columns")
        if footer.layout_problems:
            # staged by an earlier version (Parquet 2.6, INT64 timestamps): pyarrow reads it,
            # COPY may not (`trackline.stage.parquet`), so it is re-written in today's layout
            reasons.append(f"staged in an older layout ({'; '.join(footer.layout_problems)})")
        return reasons

    def _restage(self, ready: pa.Table) -> tuple[str, list[str]]:
        self._check_region()
        return stagefiles.write_transient(self._require_stage(), ready)

    def _check_region(self) -> None:
        """Once per connection, before the first COPY: the stage bucket must be in the
        cluster's region (`s3region`)."""
        if "stage-region" not in self.ready:
            s3region.check_stage_region(self._require_stage().config, self.config, self.notice)
            self.ready.add("stage-region")

    def _discard(self, uris: list[str]) -> None:
        if uris:
            stagefiles.discard(self._require_stage(), uris)

    def copy_sql(
        self, target: str, names: list[str], manifest: str, *, documents: bool = False
    ) -> str:
        """The COPY Redshift runs for one manifest (compat mode sends its PostgreSQL stand-in).

        `documents`: the files hold JSON documents for SUPER columns. SERIALIZETOJSON is what
        loads a Parquet column into a SUPER column as a document ("Copying data from
        columnar-format Parquet and ORC",
        https://docs.aws.amazon.com/redshift/latest/dg/copy_json.html); without it COPY needs
        the file's column types to match the table's. The files carry Parquet's JSON type, as
        Redshift's UNLOAD writes SUPER and as DuckDB's writer added for this very COPY
        (duckdb/duckdb#14747). No REGION clause: COPY from Parquet refuses it, so the bucket
        must be in the cluster's region (`s3region`)."""
        return (
            f"COPY {target} ({self.cols(names)})\n"
            f"FROM {s3_literal(manifest)}\n"
            f"{self.iam_role}\n"
            f"FORMAT AS PARQUET{' SERIALIZETOJSON' if documents else ''}\n"
            "MANIFEST"
        )

    def _copy_manifest(
        self, target: str, names: list[str], manifest: str, *, documents: bool = False
    ) -> None:
        if not self.compat:
            self.execute(self.copy_sql(target, names, manifest, documents=documents))
            return
        stage = self._require_stage()
        data = stage.read(stagefiles.manifest_urls(stage, manifest))
        if data.num_columns != len(names):
            raise WarehouseError(
                f"{manifest}: the files have {data.num_columns} columns, the COPY lists "
                f"{len(names)}; nothing was loaded"
            )
        self.copy_into(target, data.rename_columns(names))  # by position, as Redshift does

    def _require_stage(self) -> Stage:
        if self.stage is None:
            raise WarehouseError(
                "the Redshift adapter loads from the staged files and was opened without the "
                "stage: open it with open_warehouse(cfg.warehouse, stage=Stage(cfg.stage))"
            )
        return self.stage

    # ------------------------------------------------------------------ upkeep

    def approx_rows(self, schema: str, table: str) -> int:
        """Rows for reports from ``svv_table_info.estimated_visible_rows`` (kept current by
        Redshift, unlike ``pg_class.reltuples``, which only ANALYZE refreshes). The view lists
        only tables that hold rows: none listed = 0. In a transaction, in compat mode, or when
        the view may not be read: COUNT(*). Redshift has no pg_relation_size for PostgreSQL's
        page-scaled estimate; see "Unsupported PostgreSQL functions" in the Redshift guide,
        https://docs.aws.amazon.com/redshift/latest/dg/c_unsupported-postgresql-functions.html"""
        if self.compat or self.in_transaction:
            return self.exact_rows(schema, table)
        try:
            rows = self.query(
                "SELECT estimated_visible_rows, tbl_rows FROM svv_table_info "
                'WHERE "schema" = ? AND "table" = ?',
                (self.name(schema), self.name(table)),
            )
        except WarehouseError as exc:
            if getattr(exc.__cause__, "sqlstate", None) not in _DENIED_OR_MISSING:
                raise
            return self.exact_rows(schema, table)
        if not rows:
            return 0
        visible, total = rows[0]
        return int(visible if visible is not None else total or 0)

    def serialize(self, name: str) -> None:
        """No advisory locks; its marts never build at once (`PARALLEL_MARTS`)."""
        return None

    def maintenance(self, schema: str, table: str) -> list[str]:
        """VACUUM when over 10% of the rows are unsorted, ANALYZE when statistics are over 10%
        stale (``svv_table_info``); ANALYZE only if that view may not be read. A VACUUM refused
        because another one is running on the cluster is skipped with a notice (listed as
        ``skipped VACUUM …``), not an error."""
        if self.in_transaction:
            raise WarehouseError(
                "VACUUM and ANALYZE cannot run inside a transaction on Redshift; call "
                "maintenance() outside transaction()"
            )
        target = self.t(schema, table)
        try:
            rows: list[tuple[Any, ...]] | None = self.query(
                'SELECT unsorted, stats_off FROM svv_table_info WHERE "schema" = ? AND "table" = ?',
                (self.name(schema), self.name(table)),
            )
        except WarehouseError as exc:
            if getattr(exc.__cause__, "sqlstate", None) not in _DENIED_OR_MISSING:
                raise
            self.notice(
                f"maintenance of {schema}.{table}: svv_table_info cannot be read "
                f"({exc.__cause__.__class__.__name__}); running ANALYZE only"
            )
            rows = None
        todo = []
        if rows is None:
            todo.append(f"ANALYZE {target}")
        elif rows:  # svv_table_info lists only tables that hold rows
            unsorted, stats_off = (float(v or 0) for v in rows[0])
            if unsorted > self.VACUUM_UNSORTED_PCT:
                todo.append(f"VACUUM {target}")
            if stats_off > self.ANALYZE_STATS_OFF_PCT:
                todo.append(f"ANALYZE {target}")
        ran = []
        for sql in todo:
            try:
                self.execute(sql)
            except WarehouseError as exc:
                if not sql.startswith("VACUUM") or not self._vacuum_busy(exc):
                    raise
                # One VACUUM per cluster at a time: a second one gets an error
                # (https://docs.aws.amazon.com/redshift/latest/dg/r_VACUUM_command.html, usage
                # notes). The table waits for the next maintenance run; nothing failed.
                self.notice(
                    f"maintenance of {schema}.{table}: VACUUM skipped, another VACUUM is "
                    "running on the cluster (Redshift runs one at a time); the next "
                    "maintenance run will do it"
                )
                ran.append(f"skipped {sql}: another VACUUM is running")
                continue
            ran.append(sql)
        return ran

    def _vacuum_busy(self, exc: WarehouseError) -> bool:
        return bool(self.VACUUM_BUSY.search(str(exc.__cause__ or exc)))


def with_json(data: pa.Table, names: set[str]) -> pa.Table:
    """`data` with exactly its text columns in `names` marked as JSON documents (the target's
    SUPER columns), so the temp tables, checks and COPY file follow the target's types."""

    def text(f: pa.Field) -> bool:
        return pa.types.is_string(f.type) or pa.types.is_large_string(f.type)

    want = [text(f) and f.name in names for f in data.schema]
    if [is_json(f) for f in data.schema] == want:
        return data
    fields = [
        json_field(f.name, f.type).with_nullable(f.nullable)
        if w
        else with_max_bytes(f.remove_metadata(), max_bytes(f))
        for f, w in zip(data.schema, want, strict=True)
    ]
    return pa.Table.from_arrays(data.columns, schema=pa.schema(fields, data.schema.metadata))


def cluster_credentials(config: RedshiftWarehouse) -> tuple[str, str]:
    """Temporary database credentials from `GetClusterCredentials` (IAM authentication).

    boto3 is imported here only: it is needed for this option alone. The temporary password
    is returned to the driver and never logged or put in an error message.
    """
    try:
        import boto3
        import botocore.exceptions
    except ModuleNotFoundError:
        raise ConfigError(
            "warehouse.iam_auth needs boto3: pip install 'trackline[redshift-iam]'"
        ) from None
    client = boto3.client("redshift", region_name=config.region)
    try:
        creds = client.get_cluster_credentials(
            DbUser=config.user,
            DbName=config.database,
            ClusterIdentifier=config.cluster_identifier or "",
            AutoCreate=config.auto_create_user,
        )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise WarehouseError(
            f"GetClusterCredentials for user {config.user!r} on cluster "
            f"{config.cluster_identifier!r} failed: {exc}"
        ) from None
    return str(creds["DbUser"]), str(creds["DbPassword"])
