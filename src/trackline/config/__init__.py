"""The one YAML file that drives trackline, as typed, validated models.

Rules (each enforced here, so nothing downstream re-checks them):
- unknown keys are rejected (``extra="forbid"``), and every error names the key path and the
  line of the file it came from;
- ``${VAR}`` / ``${VAR:-default}`` are replaced from the environment *after* the file is
  parsed, so a secret never passes through YAML and never appears in an error message;
- every identifier (schema, table, column) is checked against a conservative pattern, so a
  quote or a semicolon in config is refused before any SQL is built;
- passwords are `SecretStr`: their repr is ``**********``.

Modules: `base` (identifiers, the strict model), `connections` (sources, warehouses, stage),
`pipeline` (tables, CDC, defaults, retention groups), `quality` (checks, alerts, schedule),
`consolidation` (consolidation jobs), `root` (`Config`), `loader` (`load_config` / `parse_config`).
"""

from trackline.config.backfill import BackfillConfig, BackfillTable
from trackline.config.base import IDENT_RE, Ident, LocatedError, Model, check_identifier
from trackline.config.compare import CompareConfig, CompareTable, Normalise
from trackline.config.connections import (
    DuckDBWarehouse,
    MySQLSource,
    PostgresWarehouse,
    RedshiftWarehouse,
    SourceConfig,
    SQLiteSource,
    StageConfig,
    WarehouseConfig,
)
from trackline.config.consolidation import (
    ConsolidationConfig,
    ConsolidationInput,
    InputCursor,
)
from trackline.config.loader import load_config, parse_config
from trackline.config.pipeline import (
    AnchorConfig,
    CdcConfig,
    Defaults,
    FollowerConfig,
    RetentionGroupConfig,
    TableConfig,
)
from trackline.config.quality import (
    CHECK_NAME_RE,
    AlertsConfig,
    CustomCheck,
    QualityConfig,
    ScheduleConfig,
    SmtpAlert,
    WebhookAlert,
    check_check_name,
)
from trackline.config.root import Config

__all__ = [
    "BackfillConfig",
    "BackfillTable",
    "CompareConfig",
    "CompareTable",
    "Normalise",
    "ConsolidationConfig",
    "ConsolidationInput",
    "InputCursor",
    "AlertsConfig",
    "AnchorConfig",
    "CHECK_NAME_RE",
    "CdcConfig",
    "Config",
    "CustomCheck",
    "Defaults",
    "DuckDBWarehouse",
    "FollowerConfig",
    "IDENT_RE",
    "Ident",
    "LocatedError",
    "Model",
    "MySQLSource",
    "PostgresWarehouse",
    "QualityConfig",
    "RedshiftWarehouse",
    "RetentionGroupConfig",
    "SQLiteSource",
    "ScheduleConfig",
    "SmtpAlert",
    "SourceConfig",
    "StageConfig",
    "TableConfig",
    "WarehouseConfig",
    "WebhookAlert",
    "check_check_name",
    "check_identifier",
    "load_config",
    "parse_config",
]
