"""Checks, alerts and the schedule of `trackline run`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, model_validator

from trackline.config.base import Ident, LocatedError, Model

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
    future_seconds: int = Field(default=86_400, gt=0)
    """Source rows whose time cursor is more than this ahead of the source clock are reported
    (warning): incremental sync reads below the clock, so they would wait unloaded until the
    clock reaches them (a device or application clock off by years)."""
    behind_window_seconds: int = Field(default=86_400, gt=0)
    """`runs.behind_watermark` counts source rows this far below each table's watermark
    (cursor time; `id` tables: the ids loaded in this many seconds) against the target:
    rows written behind the watermark (backdated, clock behind the database, a commit later
    than the hold ceiling) are never read by incremental sync."""
    reconcile_tables: list[str] = []
    """Tables (`write_mode: merge`, one integer key) that `trackline check` reconciles with
    their source (`reconcile.<table>`, blocking): keys the sync should have loaded but the
    target lacks. Keys deleted in the source are counted in the detail, not failed: remove
    them with `trackline reconcile <table> --apply`."""
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
    consolidation_minutes: int = Field(default=60, gt=0, le=1440)
    """Every `consolidations:` entry runs every this many minutes, on slots aligned to the
    clock, one job after the other with the cycle (never at the same time)."""
    job_timeout_minutes: int = Field(default=120, ge=0)
    """A job running longer than this is stopped (its open transaction rolls back, committed
    batches stay) and recorded as failed; 0: no limit. Raise it for a first load of big
    tables under `trackline run`, or load them first with `trackline sync`."""
    task_retries: int = Field(default=3, ge=0, le=20)
    """Airflow DAGs (`trackline.airflow`): how often a task that failed on a transient
    error (a serialization conflict, a lost connection, a worker that died) is retried; other
    errors fail at once."""
    retry_delay_seconds: int = Field(default=60, ge=0)
    """Airflow DAGs: the wait before the first retry, doubled after each (at most 30 min)."""
    lock_wait_seconds: int | None = Field(default=None, ge=0)
    """Airflow DAGs: how long the tasks that take the pipeline's `cycle` lock (the cycle DAG's
    mart tasks and `trim_raw`, `consolidate`, `checks`) wait while another run holds it (an
    overlapping cycle, a consolidation) before they are skipped. Default: half of
    `job_timeout_minutes` (30 minutes when it is 0), so the step still fits in the task's
    time limit; 0: skip at once. Sync tasks wait `warehouse.lock_timeout_seconds`."""

    @model_validator(mode="after")
    def _wait_within_timeout(self) -> ScheduleConfig:
        limit = self.job_timeout_minutes * 60
        if self.lock_wait_seconds is not None and limit and self.lock_wait_seconds >= limit:
            raise LocatedError(
                ("lock_wait_seconds",),
                f"must be shorter than the task time limit (job_timeout_minutes: "
                f"{self.job_timeout_minutes}, {limit} s): a task still waiting then would be "
                "stopped and fail instead of being skipped",
            )
        return self

    def lock_wait(self) -> float:
        """`lock_wait_seconds`, its default resolved."""
        if self.lock_wait_seconds is not None:
            return float(self.lock_wait_seconds)
        return self.job_timeout_minutes * 30.0 if self.job_timeout_minutes else 1800.0


# --------------------------------------------------------------------------- root
