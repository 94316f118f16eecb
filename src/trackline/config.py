"""The one YAML file that drives trackline, as typed, validated models.

Rules (each enforced here, so nothing downstream re-checks them):
- unknown keys are rejected (``extra="forbid"``), and every error names the key path and the
  line of the file it came from;
- ``${VAR}`` / ``${VAR:-default}`` are replaced from the environment *after* the file is
  parsed, so a secret never passes through YAML and never appears in an error message;
- every identifier (schema, table, column) is checked against a conservative pattern, so a
  quote or a semicolon in config is refused before any SQL is built;
- passwords are `SecretStr`: their repr is ``**********``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    model_validator,
)

from trackline.errors import ConfigError

IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,126}$")


def check_identifier(value: str) -> str:
    """Accept plain SQL identifiers only: letters, digits, `_`, `$`; not starting with a digit."""
    if not IDENT_RE.match(value):
        raise ValueError(
            f"{value!r} is not a plain identifier (letters, digits, '_' and '$' only, "
            "starting with a letter or '_', at most 127 characters)"
        )
    return value


Ident = Annotated[str, AfterValidator(check_identifier)]


class LocatedError(ValueError):
    """A validation failure found above the key it is about; `loc` names that key."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- connections


class MySQLSource(Model):
    """A MySQL or MariaDB server read with connectorx (data) and PyMySQL (metadata)."""

    type: Literal["mysql"] = "mysql"
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: SecretStr = SecretStr("")
    database: Ident
    """Default database (schema); `--source-db` or a table's `source_db` override it."""
    connect_timeout: int = 10
    innodb_hold: bool = True
    """Hold the upper bound at the oldest open InnoDB transaction that modified rows."""


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
    files_per_batch: int = Field(default=1, ge=1, le=1024)
    """Split each batch into this many Parquet files of similar size (Redshift COPY loads one
    file per slice in parallel: use a multiple of the cluster's slice count)."""


# --------------------------------------------------------------------------- tables


class CdcConfig(Model):
    strategy: Literal["hybrid", "timestamp", "id", "full"] = "hybrid"
    cursor: Ident | None = None
    """Time column (DATETIME/TIMESTAMP or unix integer)."""
    id: Ident | None = None
    """Unique, increasing tie-breaker (hybrid) or the id cursor (strategy id)."""
    null_cursor: Literal["error", "load"] = "error"
    """A row whose cursor is NULL: stop with an error, or load it once and report it."""

    @model_validator(mode="after")
    def _columns_for_strategy(self) -> CdcConfig:
        if self.strategy in ("hybrid", "timestamp") and not self.cursor:
            raise ValueError(f"strategy {self.strategy!r} needs `cursor` (the time column)")
        if self.strategy in ("hybrid", "id") and not self.id:
            raise ValueError(f"strategy {self.strategy!r} needs `id` (a unique increasing column)")
        return self


class TableConfig(Model):
    name: Ident
    """Source table name (or, with `query`, the name this source goes by)."""
    source: Ident | None = None
    """Which entry of `sources:` (default: the only one)."""
    source_db: Ident | None = None
    query: str | None = None
    """A SELECT (e.g. a join) to read instead of the table; the cursor names its columns."""
    target_schema: Ident = "public"
    target_table: Ident | None = None
    """Default: `<name>_raw` for append tables, `<name>` otherwise."""
    cdc: CdcConfig
    """Required: the strategy decides which columns must exist, so there is no safe default."""
    primary_key: list[Ident] | None = None
    """Default: read from the source's primary key."""
    batch_size: int | None = Field(default=None, gt=0)
    lag_seconds: int | None = Field(default=None, ge=0)
    lookback_seconds: int = Field(default=0, ge=0)
    write_mode: Literal["append", "merge", "replace"] = "append"
    dist_key: Ident | None = None
    sort_key: list[Ident] | None = None
    json_columns: list[Ident] = Field(default_factory=list)
    """Text columns that hold JSON documents (besides MySQL JSON columns and MariaDB columns
    with a JSON_VALID check, found on their own): stored as SUPER on Redshift with
    `warehouse.json_as: super`, as text elsewhere."""
    raw_retention_seconds: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TableConfig:
        if self.lookback_seconds and self.write_mode != "merge":
            raise ValueError(
                "lookback_seconds re-reads rows already loaded; it needs write_mode: merge "
                "(idempotent by key)"
            )
        if self.cdc.strategy == "timestamp" and self.write_mode != "merge":
            raise ValueError(
                "cdc strategy 'timestamp' re-reads the boundary second; it needs "
                "write_mode: merge (idempotent by key)"
            )
        if self.cdc.strategy == "full" and self.write_mode == "append":
            object.__setattr__(self, "write_mode", "replace")
        return self

    @property
    def target(self) -> str:
        if self.target_table:
            return self.target_table
        return f"{self.name}_raw" if self.write_mode == "append" else self.name


class Defaults(Model):
    batch_size: int = Field(default=100_000, gt=0)
    lag_seconds: int = Field(default=300, ge=0)
    hold_ceiling_seconds: int = Field(default=3600, ge=0)
    zero_date: Literal["null", "error"] = "null"
    """MySQL `0000-00-00` dates: load as NULL and report, or stop with an error."""
    raw_retention_seconds: int = 2 * 86400


# --------------------------------------------------------------------------- marts


class AnchorConfig(Model):
    table: Ident = "mart_uni_tracking_info"
    source: Ident = "uni_tracking_info"
    """The `tables:` entry (by name) whose raw table feeds this mart."""
    time: Ident = "update_time"
    tie_breaker: Ident | None = "id"
    history_name: Ident = "uti"
    sort_key: list[Ident] | None = None
    """Redshift SORTKEY of the mart and its history (default: time, key)."""


class FollowerConfig(Model):
    table: Ident
    source: Ident
    kind: Literal["one_per_key", "events"]
    time: Ident | None = None
    """events: the event time that drives retention and history period. one_per_key
    (optional): a row whose key is not in the anchor (an orphan: its key never got an anchor
    row) is archived by this time once past the retention, into that time's period; without
    it such rows stay in the mart."""
    event_key: list[Ident] | None = None
    """events: columns that identify one event (default: the source primary key)."""
    history_name: Ident
    on_reactivation: Literal["restore", "report"] = "restore"
    sort_key: list[Ident] | None = None

    @model_validator(mode="after")
    def _events_need_time(self) -> FollowerConfig:
        if self.kind == "events" and not self.time:
            raise ValueError("a follower of kind 'events' needs `time` (the event time column)")
        return self


class RetentionGroupConfig(Model):
    name: Ident = "order_tracking"
    key: Ident = "order_id"
    schema_: Ident = Field(default="settlement_ods", alias="schema")
    retention_seconds: int = Field(default=15_552_000, gt=0)
    history_prefix: Ident = "hist_"
    exceptions_table: Ident = "order_tracking_exceptions"
    anchor: AnchorConfig = AnchorConfig()
    followers: list[FollowerConfig] = []

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------- quality


CHECK_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,119}$")


def check_check_name(value: str) -> str:
    if not CHECK_NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a check name (letters, digits, '_', '.', ':' and '-', "
            "at most 120 characters)"
        )
    return value


class CustomCheck(Model):
    """A check of your own: a query that returns the offending rows (zero rows = pass)."""

    name: Annotated[str, AfterValidator(check_check_name)]
    """Shown in results, alerts and the exceptions table; unique among `quality.checks`."""
    severity: Literal["blocking", "warning"] = "blocking"
    """`blocking`: `trackline check` exits 1 when it fails; `warning`: reported and alerted only."""
    sql: str
    """One SELECT in the warehouse's SQL dialect returning the offending rows (no parameters,
    no trailing `;`). It is shown on failure."""
    key: Ident | None = None
    """The result column that identifies one offending row; an alert fires once per new value
    (default: the first column)."""
    description: str = ""
    """One line on what a failure means, shown with the failure."""

    @model_validator(mode="after")
    def _one_select(self) -> CustomCheck:
        if not self.sql.strip().rstrip(";").strip():
            raise ValueError("`sql` is empty: write a SELECT that returns the offending rows")
        if ";" in self.sql.strip().rstrip(";"):
            raise ValueError("`sql` must be ONE statement (a SELECT); it contains `;`")
        return self


class WebhookAlert(Model):
    """A Slack-compatible incoming webhook: POST ``{"text": …}`` as JSON."""

    url: SecretStr
    """The webhook URL. It usually holds a token: write ``url: ${TRACKLINE_WEBHOOK_URL}``."""
    timeout: float = Field(default=10.0, gt=0)
    """Seconds to wait for the webhook before the channel is reported as failed."""

    @model_validator(mode="after")
    def _http_only(self) -> WebhookAlert:
        if not self.url.get_secret_value().lower().startswith(("http://", "https://")):
            raise ValueError("`url` must be an http:// or https:// URL")
        return self


class SmtpAlert(Model):
    """E-mail through an SMTP relay (STARTTLS by default)."""

    host: str
    port: int = 587
    user: str | None = None
    """Log in with this user (and `password`) when set."""
    password: SecretStr = SecretStr("")
    sender: str
    """The From: address."""
    recipients: list[str] = Field(min_length=1)
    starttls: bool = True
    """Upgrade the connection with STARTTLS before logging in (the server must offer it)."""
    ca_file: Path | None = None
    """PEM file of the CA that signed the relay's certificate (a private CA); default: the
    system's trust store."""
    timeout: float = Field(default=10.0, gt=0)


class AlertsConfig(Model):
    """Where alerts go. An alert fires only for NEW failures (a key already open is not new)."""

    log: bool = True
    """Write alerts to the log (stderr, or JSON lines with `--log-format json`)."""
    webhook: WebhookAlert | None = None
    smtp: SmtpAlert | None = None


class QualityConfig(Model):
    """`trackline check`: the built-in checks of every retention group plus your own."""

    freshness_seconds: int = Field(default=3600, gt=0)
    """Fail freshness when the newest anchor row is older than this, measured against the
    SOURCE database's clock."""
    slow_cycle_seconds: float = Field(default=600, gt=0)
    """A cycle that took longer than this is reported (warning)."""
    run_window_hours: int = Field(default=24, gt=0)
    """Failed and slow cycles are looked for among the cycles started in this many hours."""
    checks: list[CustomCheck] = []
    alerts: AlertsConfig = AlertsConfig()

    @model_validator(mode="after")
    def _unique_names(self) -> QualityConfig:
        seen: set[str] = set()
        for i, c in enumerate(self.checks):
            if c.name in seen:
                raise LocatedError(
                    ("checks", i, "name"), f"check names must be unique; {c.name!r} is repeated"
                )
            seen.add(c.name)
        return self


class ScheduleConfig(Model):
    """`trackline run`: when each job is due (hours are UTC)."""

    cycle_minutes: int = Field(default=15, gt=0, le=1440)
    """A cycle (sync + marts) every this many minutes, on slots aligned to the clock."""
    checks_hour: int = Field(default=3, ge=0, le=23)
    """`trackline check` once a day at this hour (UTC)."""
    maintenance_hour: int = Field(default=4, ge=0, le=23)
    """VACUUM/ANALYZE once a day at this hour (UTC), only where the engine says it is needed."""
    consolidation_minutes: int = Field(default=60, gt=0)
    """Reserved for the consolidation job (not scheduled yet)."""


# --------------------------------------------------------------------------- root


class Config(Model):
    sources: dict[Ident, SourceConfig]
    warehouse: WarehouseConfig = DuckDBWarehouse()
    stage: StageConfig = StageConfig()
    defaults: Defaults = Defaults()
    tables: list[TableConfig] = []
    marts: list[RetentionGroupConfig] = []
    state_schema: Ident = "trackline"
    quality: QualityConfig = QualityConfig()
    """Data-quality checks and alert channels (`trackline check`)."""
    schedule: ScheduleConfig = ScheduleConfig()
    """The local scheduler's timetable (`trackline run`)."""

    @model_validator(mode="after")
    def _references(self) -> Config:
        names = [t.name for t in self.tables]
        seen: set[str] = set()
        for i, t in enumerate(self.tables):
            if t.name in seen:
                raise LocatedError(
                    ("tables", i, "name"), f"table names must be unique; {t.name!r} is repeated"
                )
            seen.add(t.name)
        for i, t in enumerate(self.tables):
            if t.source is not None and t.source not in self.sources:
                raise LocatedError(
                    ("tables", i, "source"),
                    f"table {t.name!r}: source {t.source!r} is not one of {sorted(self.sources)}",
                )
            if t.source is None and len(self.sources) != 1:
                raise LocatedError(
                    ("tables", i),
                    f"table {t.name!r}: say which source it comes from (`source:`), "
                    f"one of {sorted(self.sources)}",
                )
        for gi, g in enumerate(self.marts):
            refs: list[tuple[tuple[str | int, ...], str]] = [
                (("marts", gi, "anchor", "source"), g.anchor.source),
                *[
                    (("marts", gi, "followers", fi, "source"), f.source)
                    for fi, f in enumerate(g.followers)
                ],
            ]
            for loc, src in refs:
                if src not in names:
                    raise LocatedError(
                        loc, f"mart group {g.name!r}: source {src!r} is not a table in `tables:`"
                    )
        return self

    def table(self, name: str) -> TableConfig:
        for t in self.tables:
            if t.name == name:
                return t
        raise ConfigError(
            f"table {name!r} is not in the config's `tables:` (known: "
            f"{', '.join(t.name for t in self.tables) or 'none'})"
        )

    def source_for(self, table: TableConfig) -> tuple[str, SourceConfig]:
        name = table.source or next(iter(self.sources))
        return name, self.sources[name]


# --------------------------------------------------------------------------- loading

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_KEYS = frozenset({"password", "access_key_id", "secret_access_key"})
_MAX_ERRORS = 5

Loc = tuple[Any, ...]


def _interpolate(value: Any, path: Loc, errors: list[tuple[Loc, str]], used: set[str]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string value (shell semantics:
    ``:-`` also applies when VAR is set but empty). Values taken from the environment are
    added to `used`, so error messages can be scrubbed of them."""
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, k), errors, used) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), errors, used) for i, v in enumerate(value)]
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            env = os.environ.get(var)
            if env:
                used.add(env)
                return env
            if default is not None:
                return default
            if env is not None:  # set but empty, no default
                return env
            errors.append((path, f"environment variable {var} is not set"))
            return ""

        return _ENV_RE.sub(repl, value)
    return value


def _literal_secrets(value: Any, out: set[str], key: Any = None) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _literal_secrets(v, out, k)
    elif isinstance(value, list):
        for v in value:
            _literal_secrets(v, out, key)
    elif isinstance(value, str) and key in _SECRET_KEYS and value:
        out.add(value)


def _scrub(message: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 3:
            message = message.replace(secret, "**********")
    return message


def _duplicate_keys(node: yaml.Node | None, path: Loc = ()) -> tuple[Loc, int] | None:
    """The first mapping key that appears twice (YAML would silently keep the last one)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                if k.value in seen:
                    return (*path, k.value), k.start_mark.line + 1
                seen.add(k.value)
            found = _duplicate_keys(v, (*path, getattr(k, "value", "?")))
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_keys(item, (*path, i))
            if found:
                return found
    return None


def _line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """The line of the deepest key of `loc` that exists in the composed YAML tree."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if getattr(k, "value", None) == part:
                    line = k.start_mark.line + 1
                    node = v
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _clean_loc(data: Any, loc: Loc) -> Loc:
    """Drop the parts pydantic adds that are not keys of the file: union tags
    (``sources.a.mysql.port``) and ``[key]`` markers for a bad dictionary key."""
    out: list[Any] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict):
            if part in cur:
                cur = cur[part]
                out.append(part)
            elif part == "[key]" or (isinstance(part, str) and part in _UNION_TAGS):
                continue
            else:
                out.append(part)
                cur = None
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
            out.append(part)
        else:
            if part != "[key]":
                out.append(part)
            cur = None
    return tuple(out)


def _at(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_config(path: str | Path) -> Config:
    """Read, interpolate and validate a config file; every failure is a `ConfigError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found (create one with `trackline init`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"config file {p} cannot be read: {reason}") from None
    return parse_config(text, source=str(p), base_dir=p.parent)


def parse_config(text: str, *, source: str = "<config>", base_dir: Path | None = None) -> Config:
    """Validate config text. `base_dir` (the config file's folder) anchors relative paths."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        line = node.start_mark.line + 1 if node is not None else 1
        raise ConfigError(
            f"{source}:{line}: the top level must be a mapping (sources:, warehouse:, …)"
        )
    dup = _duplicate_keys(node)
    if dup:
        loc, line = dup
        raise ConfigError(f"{source}:{line}: {_dotted(loc)}: key appears twice")
    env_errors: list[tuple[Loc, str]] = []
    secrets: set[str] = set()
    data = _interpolate(raw, (), env_errors, secrets)
    _literal_secrets(data, secrets)
    if env_errors:
        raise ConfigError(
            "\n".join(
                f"{source}:{_line_of(node, loc) or 1}: {_dotted(loc)}: {msg}"
                for loc, msg in env_errors[:_MAX_ERRORS]
            )
        )
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        lines = []
        for err in errors[:_MAX_ERRORS]:
            loc = tuple(err["loc"])
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, LocatedError):
                loc = (*loc, *cause.loc)
            loc = _clean_loc(data, loc)
            if err["type"] == "invalid_type" and isinstance(_at(data, loc), dict):
                if "type" in _at(data, loc):
                    loc = (*loc, "type")
            line = _line_of(node, loc) or 1
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling; see `trackline init` for every key)"
            lines.append(f"{source}:{line}: {_dotted(loc)}: {_scrub(msg, secrets)}")
        if len(errors) > _MAX_ERRORS:
            lines.append(f"(and {len(errors) - _MAX_ERRORS} more)")
        raise ConfigError("\n".join(lines)) from None
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    return config


_UNION_TAGS = {"mysql", "sqlite", "duckdb", "postgres", "redshift"}


def _anchor(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()


def _resolve_paths(config: Config, base: Path) -> Config:
    """Relative file paths in the config (given or default) are relative to the config file."""
    sources: dict[str, Any] = {
        name: src.model_copy(update={"path": _anchor(src.path, base)})
        if isinstance(src, SQLiteSource)
        else src
        for name, src in config.sources.items()
    }
    warehouse = config.warehouse
    if isinstance(warehouse, DuckDBWarehouse):
        warehouse = warehouse.model_copy(update={"path": _anchor(warehouse.path, base)})
    stage = config.stage
    if "://" not in stage.url:
        stage = stage.model_copy(update={"url": str(_anchor(Path(stage.url), base))})
    return config.model_copy(update={"sources": sources, "warehouse": warehouse, "stage": stage})
