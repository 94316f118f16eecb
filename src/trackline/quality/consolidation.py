"""Three checks per consolidation, over its runs in ``trackline.runs`` (command
``consolidate``): a failed run, a run slower than `slow_seconds`, a run that merged no row.

- ``consolidate.<name>.failed`` (blocking): runs of the last `quality.run_window_hours` that
  did not end ok, with no ok run since. Keyed by run: each failed run is alerted once; the
  check passes again (and its recovery is announced) after the next ok run.
- ``consolidate.<name>.slow`` (warning): runs slower than the consolidation's
  `slow_seconds`, with no ok run within that limit since.
- ``consolidate.<name>.zero_rows`` (warning): the latest run ended ok but merged no row
  (an upstream problem, or a quiet hour). Keyed by the consolidation, so a stretch of
  zero-row runs is one failure, alerted once, until a run merges rows again.
"""

from __future__ import annotations

import datetime as dt

from trackline.config import Config
from trackline.load import Warehouse
from trackline.quality.checks import RUNS_TABLE, STATE_EXCEPTIONS, Check
from trackline.state import utcnow

COMMAND = "consolidate"


def consolidation_checks(cfg: Config, wh: Warehouse, now: dt.datetime | None = None) -> list[Check]:
    since = (now or utcnow()) - dt.timedelta(hours=cfg.quality.run_window_hours)
    runs = wh.t(cfg.state_schema, RUNS_TABLE)
    out: list[Check] = []
    for c in cfg.consolidations:
        out += _checks(cfg, runs, c.name, float(c.slow_seconds), since)
    return out


def _checks(cfg: Config, runs: str, name: str, slow: float, since: dt.datetime) -> list[Check]:
    exc = (cfg.state_schema, STATE_EXCEPTIONS)
    mine = f"r.command = '{COMMAND}' AND r.table_key = ?"
    later_ok = (
        f"SELECT 1 FROM {runs} g WHERE g.command = '{COMMAND}' AND g.table_key = r.table_key "
        "AND g.status = 'ok' AND g.started_at > r.started_at"
    )
    latest = (
        f"SELECT 1 FROM {runs} g WHERE g.command = '{COMMAND}' AND g.table_key = r.table_key "
        "AND g.started_at > r.started_at"
    )
    hours = cfg.quality.run_window_hours
    return [
        Check(
            name=f"consolidate.{name}.failed",
            severity="blocking",
            sql=(
                f"SELECT r.run_id, r.started_at, r.status, r.error FROM {runs} r WHERE {mine} "
                f"AND r.started_at >= ? AND r.status <> 'ok' AND NOT EXISTS ({later_ok})"
            ),
            params=(name, since),
            key="run_id",
            table=RUNS_TABLE,
            exceptions=exc,
            description=f"runs of consolidation {name!r} that failed in the last {hours} h "
            "(nothing of them reached the target), with no ok run since",
        ),
        Check(
            name=f"consolidate.{name}.slow",
            severity="warning",
            sql=(
                f"SELECT r.run_id, r.started_at, r.seconds FROM {runs} r WHERE {mine} "
                f"AND r.started_at >= ? AND r.seconds > ? AND NOT EXISTS ({later_ok} "
                "AND g.seconds <= ?)"
            ),
            params=(name, since, slow, slow),
            key="run_id",
            table=RUNS_TABLE,
            exceptions=exc,
            description=f"runs of consolidation {name!r} slower than {slow:,.0f} s "
            f"(slow_seconds) in the last {hours} h, with no ok run within it since",
        ),
        Check(
            name=f"consolidate.{name}.zero_rows",
            severity="warning",
            sql=(
                f"SELECT r.table_key AS consolidation, r.run_id, r.started_at FROM {runs} r "
                f"WHERE {mine} AND r.status = 'ok' AND r.rows_moved = 0 "
                f"AND NOT EXISTS ({latest})"
            ),
            params=(name,),
            key="consolidation",
            table=RUNS_TABLE,
            exceptions=exc,
            description=f"the latest run of consolidation {name!r} merged no row",
        ),
    ]
