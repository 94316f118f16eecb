"""`compare.<name>`: the configured legacy DW comparisons `trackline check` runs (blocking),
each over the previous UTC day of its time column (the whole table without one)."""

from __future__ import annotations

import datetime as dt

from trackline.config import Config
from trackline.load import Warehouse
from trackline.quality.checks import STATE_EXCEPTIONS, Check, Rows
from trackline.state import utcnow


def compare_checks(cfg: Config) -> list[Check]:
    return [_check(cfg, c.name) for c in cfg.compare.tables if c.check]


def _check(cfg: Config, name: str) -> Check:
    def collect(wh: Warehouse) -> Rows:
        from trackline.compare import compare

        entry = cfg.compare_table(name)
        since = until = None
        if entry.time:
            today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
            since, until = today - dt.timedelta(days=1), today
        res = compare(cfg, wh, name, since=since, until=until)
        day = since.date().isoformat() if since else "all"
        # one row per threshold passed: the failure's kind is its key (one exception each)
        return Rows(["failure", "day", "detail"], [(f, day, res.trackline) for f in res.failures])

    return Check(
        name=f"compare.{name}",
        severity="blocking",
        sql=(
            f"-- trackline.compare (as `trackline compare --table {name} --date <yesterday>`): "
            "per key range, COUNT and SHA-256-derived sums of the canonical rows in the legacy DW "
            "and in trackline; differing ranges fetched and compared row by row"
        ),
        key="failure",
        table=name,
        exceptions=(cfg.state_schema, STATE_EXCEPTIONS),
        description=f"{name}: trackline vs the legacy DW over the previous UTC day, past the "
        "key-gap or mismatch thresholds (details: `trackline compare --table "
        f"{name}`, history in compare_results)",
        collect=collect,
    )
