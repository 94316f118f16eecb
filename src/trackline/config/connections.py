"""Where data comes from and goes: sources, warehouses, the Parquet stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, SecretStr, Tag, model_validator

from trackline.config.base import Ident, Model


class MySQLSource(Model):
    """A MySQL or MariaDB server read with connectorx (data) and PyMySQL (metadata)."""

    type: Literal["mysql"] = "mysql"
    host: str = Field(default="127.0.0.1", pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._\-]+)$")
    """A host name, an IPv4 address or an IPv6 address in brackets: nothing that would change
    the data reader's connection URL ('@', '/', '?', '#', ':', spaces)."""
    port: int = 3306
    user: str = "root"
    password: SecretStr = SecretStr("")
    database: Ident
    """Default database (schema); `--source-db` or a table's `source_db` override it."""
    connect_timeout: int = 10
    read_timeout_seconds: int = Field(default=300, gt=0)
    """The longest a metadata query or lookup may run, and the longest any read (the data
    stream too) may wait for a table lock: server-side `max_statement_time` (MariaDB) or
    `max_execution_time` (MySQL, SELECTs), `lock_wait_timeout`, and a client socket timeout
    slightly longer, for a server that went silent."""
    stream_timeout_seconds: int = Field(default=3600, gt=0)
    """The longest one data read (the batch stream of a table) may run, server-side. A read
    cut by it keeps the batches it committed; the next cycle reads on from there."""
    innodb_hold: bool = True
    """Hold the upper bound at the oldest open InnoDB transaction that modified rows."""
    airflow_conn_id: str | None = None
    """Inside Airflow's tasks (`trackline.airflow`): take host, port, user (login) and
    password from this Airflow connection; a key set here (non-empty) wins, and `database`
    stays this file's. Outside Airflow a config naming one is refused: give them here."""


class SQLiteSource(Model):
    """A SQLite file: the embedded demo and fast tests."""

    type: Literal["sqlite"] = "sqlite"
    path: Path
    database: Ident = "main"
    clock_table: Ident | None = "trackline_clock"
    """If this table exists, its single `now` value (unix seconds) is the source's clock
    (the demo simulates time this way); otherwise the machine clock is used."""


def _type_tag(default: str) -> Any:
    """Pick a union member by its ``type:`` key; a missing ``type:`` means `default`."""

    def tag(value: Any) -> str | None:
        if isinstance(value, dict):
            found = value.get("type", default)
            return found if isinstance(found, str) else None
        return getattr(value, "type", None)

    return tag


SourceConfig = Annotated[
    Annotated[MySQLSource, Tag("mysql")] | Annotated[SQLiteSource, Tag("sqlite")],
    Discriminator(
        _type_tag("mysql"),
        custom_error_type="invalid_type",
        custom_error_message="`type` must be one of: mysql, sqlite",
    ),
]


class DuckDBWarehouse(Model):
    type: Literal["duckdb"] = "duckdb"
    path: Path = Path("trackline.duckdb")
    lock_timeout_seconds: float = 0
    """How long a second process waits for the database file before giving up."""
    memory_limit: str | None = Field(
        default="256MB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$"
    )
    """DuckDB's memory limit: keeps memory bounded whatever the table size (DuckDB spills to
    disk beyond it). Raise it for mart cycles over tens of millions of rows; null = DuckDB's
    default (80% of RAM)."""


class PostgresWarehouse(Model):
    type: Literal["postgres"] = "postgres"
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: SecretStr = SecretStr("")
    database: str = "postgres"
    lock_timeout_seconds: float = 0
    """0 = exit at once when another run holds the lock; >0 = wait that long."""
    airflow_conn_id: str | None = None
    """Inside Airflow's tasks (`trackline.airflow`): take host, port, user (login), password
    and database (schema) from this Airflow connection; a key set here (non-empty) wins.
    Outside Airflow a config naming one is refused: give the values here instead."""


class RedshiftWarehouse(Model):
    type: Literal["redshift"] = "redshift"
    host: str
    port: int = 5439
    user: str
    password: SecretStr = SecretStr("")
    database: str = "dev"
    iam_role: str
    """IAM role ARN the cluster assumes for `COPY … FROM s3://…`."""
    region: str | None = None
    varchar_policy: Literal["error", "truncate"] = "error"
    """A text value above Redshift's 65,535-byte VARCHAR limit: stop with an error naming the
    table, column and row, or cut it at a character boundary and report it."""
    json_as: Literal["varchar", "super"] = "varchar"
    """How JSON source columns are stored: as their text (VARCHAR, the 65,535-byte limit
    applies) or as SUPER documents (up to 16 MB, queried with PartiQL). Applies to tables
    created from then on: an existing table keeps its column types, and its marts follow it.
    JSON columns are MySQL JSON columns, MariaDB columns with a JSON_VALID check, and the
    columns a table lists in `json_columns`."""
    large_super_strings: bool = False
    """The cluster's parameter group sets ``enable_large_strings_opt_in``: a string inside a
    SUPER document may hold up to 16,000,000 bytes instead of 65,535 (checked before COPY)."""
    lock_timeout_seconds: float = 0
    lock_stale_seconds: float = Field(default=6 * 3600, gt=0)
    """Redshift has no advisory locks: a row in `trackline.locks` older than this is taken to
    belong to a run that died, and is taken over (with a warning)."""
    compat_postgres: bool = False
    """Run the Redshift SQL against PostgreSQL (tests): no DISTKEY/SORTKEY, client-side COPY."""
    iam_auth: bool = False
    """Connect with temporary credentials from Redshift's `GetClusterCredentials` (the AWS
    credential chain decides who asks; needs boto3: `pip install 'trackline[redshift-iam]'`)
    instead of `password`; `user` is the database user to get credentials for."""
    cluster_identifier: str | None = None
    """The cluster's identifier, for `iam_auth`."""
    auto_create_user: bool = False
    """`iam_auth`: create the database user on first login (GetClusterCredentials AutoCreate)."""
    airflow_conn_id: str | None = None
    """Inside Airflow's tasks (`trackline.airflow`): take host, port, user (login), password
    and database (schema) from this Airflow connection; a key set here (non-empty) wins.
    Outside Airflow a config naming one is refused: give the values here instead."""

    @model_validator(mode="after")
    def _iam_needs_cluster(self) -> RedshiftWarehouse:
        if self.iam_auth and not self.cluster_identifier:
            raise ValueError(
                "iam_auth needs `cluster_identifier` (the cluster to get credentials for)"
            )
        return self


WarehouseConfig = Annotated[
    Annotated[DuckDBWarehouse, Tag("duckdb")]
    | Annotated[PostgresWarehouse, Tag("postgres")]
    | Annotated[RedshiftWarehouse, Tag("redshift")],
    Discriminator(
        _type_tag("duckdb"),
        custom_error_type="invalid_type",
        custom_error_message="`type` must be one of: duckdb, postgres, redshift",
    ),
]


class StageConfig(Model):
    url: str = "./stage"
    """A local folder or ``s3://bucket/prefix``."""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    retention_days: int = 7
    """Staged files are kept this long as a replay buffer, then pruned."""
    airflow_conn_id: str | None = None
    """Inside Airflow's tasks: take the S3 key pair (login, password) and the extras
    `region_name` and `endpoint_url` from this Airflow (AWS) connection; a key set here wins."""
    files_per_batch: int = Field(default=1, ge=1, le=1024)
    """Split each batch into this many Parquet files of similar size (Redshift COPY loads one
    file per slice in parallel: use a multiple of the cluster's slice count)."""


# --------------------------------------------------------------------------- tables
