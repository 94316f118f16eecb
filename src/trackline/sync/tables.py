"""Which table a sync run reads and writes, and what it reports back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trackline.config import Config, TableConfig

BATCH_COL = "_tl_batch_id"


@dataclass
class TableResult:
    table: str
    table_key: str
    status: str = "ok"
    rows: int = 0
    batches: int = 0
    seconds: float = 0.0
    watermark: str = ""
    upper: Any = None
    error: str | None = None
    retryable: bool = False
    """The failure was transient (`TracklineError.retryable`): running the table again may
    succeed (orchestrators retry only those)."""
    warnings: list[str] = field(default_factory=list)
    first_batch: int = 0
    last_batch: int = 0


@dataclass(frozen=True)
class ResolvedTable:
    cfg: TableConfig
    source_name: str
    source_db: str
    target_schema: str
    target: str

    @property
    def key(self) -> str:
        return f"{self.target_schema}.{self.target}"


def resolve(
    cfg: Config, t: TableConfig, source_db: str | None, target_schema: str | None
) -> ResolvedTable:
    name, src = cfg.source_for(t)
    db = source_db or t.source_db or src.database
    return ResolvedTable(t, name, db, target_schema or t.target_schema, t.target)
