"""The quality part of `trackline status`: last cycles, last consolidation runs, open
exceptions, last check run.

`status_section` returns plain data; `status_lines` renders it as text. `trackline status`
can append these lines to its table (not wired yet: cli.py's status is left as it is).
"""

from __future__ import annotations

import json
from typing import Any

from trackline.config import Config
from trackline.load import Warehouse
from trackline.quality.checks import STATE_EXCEPTIONS
from trackline.quality.results import ResultsStore
from trackline.state import StateStore


def status_section(cfg: Config, wh: Warehouse, cycles: int = 5) -> dict[str, Any]:
    state = StateStore(wh, cfg.state_schema)
    state.ensure()
    rows = wh.query(
        f"SELECT run_id, started_at, seconds, status, rows_moved, error, detail "
        f"FROM {state.t('runs')} WHERE command = 'cycle' ORDER BY started_at DESC "
        f"LIMIT {int(cycles)}"
    )
    last_cycles = [
        {
            "run_id": r[0],
            "started_at": r[1],
            "seconds": float(r[2] or 0),
            "status": r[3],
            "rows": int(r[4] or 0),
            "error": r[5],
            "marts_seconds": {
                m: v.get("seconds") for m, v in json.loads(r[6] or "{}").get("marts", {}).items()
            },
        }
        for r in rows
    ]
    open_by_check: dict[str, int] = {}
    for schema, table in [
        *[(g.schema_, g.exceptions_table) for g in cfg.marts],
        (cfg.state_schema, STATE_EXCEPTIONS),
    ]:
        if wh.table_exists(schema, table):
            for name, n in wh.query(
                f"SELECT check_name, COUNT(*) FROM {wh.t(schema, table)} "
                "WHERE status = 'open' GROUP BY check_name"
            ):
                open_by_check[name] = open_by_check.get(name, 0) + int(n)
    checks = ResultsStore(wh, cfg.state_schema).latest_per_check()
    return {
        "cycles": last_cycles,
        "consolidations": consolidation_runs(cfg, wh, cycles),
        "open_exceptions": open_by_check,
        "last_checks": checks,
    }


def consolidation_runs(cfg: Config, wh: Warehouse, runs: int = 5) -> dict[str, Any]:
    """Per consolidation: its staging rows still pending and its last `runs` runs."""
    from trackline.consolidate.merge import pending_rows

    state = StateStore(wh, cfg.state_schema)
    out: dict[str, Any] = {}
    for c in cfg.consolidations:
        rows = wh.query(
            f"SELECT run_id, started_at, seconds, status, rows_moved, error, detail "
            f"FROM {state.t('runs')} WHERE command = 'consolidate' AND table_key = ? "
            f"ORDER BY started_at DESC LIMIT {int(runs)}",
            (c.name,),
        )
        out[c.name] = {
            "pending": pending_rows(wh, c),
            "runs": [
                {
                    "run_id": r[0],
                    "started_at": r[1],
                    "seconds": float(r[2] or 0),
                    "status": r[3],
                    "merged": int(r[4] or 0),
                    "error": r[5],
                    "inputs": {
                        k: v.get("rows", 0)
                        for k, v in json.loads(r[6] or "{}").get("inputs", {}).items()
                    },
                }
                for r in rows
            ],
        }
    return out


def status_lines(section: dict[str, Any]) -> list[str]:
    out = ["last cycles:"]
    if not section["cycles"]:
        out.append("  none yet")
    for c in section["cycles"]:
        out.append(
            f"  {str(c['started_at'])[:19]}  {c['status']:<11} {c['seconds']:8.1f}s "
            f"{c['rows']:>10,} rows" + (f"  error: {c['error']}" if c["error"] else "")
        )
    for name, cons in section.get("consolidations", {}).items():
        out.append(f"consolidation {name} ({cons['pending']:,} staged rows pending):")
        if not cons["runs"]:
            out.append("  no run yet")
        for r in cons["runs"]:
            inputs = ", ".join(f"{k} {v:,}" for k, v in r["inputs"].items())
            out.append(
                f"  {str(r['started_at'])[:19]}  {r['status']:<11} {r['seconds']:8.1f}s "
                f"{r['merged']:>10,} merged  (read: {inputs or 'nothing'})"
                + (f"  error: {r['error']}" if r["error"] else "")
            )
    opened = section["open_exceptions"]
    out.append(f"open exceptions: {sum(opened.values()):,}")
    for name, n in sorted(opened.items(), key=lambda kv: (-kv[1], kv[0])):
        out.append(f"  {n:>8,}  {name}")
    checks = section["last_checks"]
    if checks:
        failed = [c for c in checks if c["status"] != "pass"]
        newest = max(str(c["checked_at"])[:19] for c in checks)
        out.append(
            f"checks (latest result of each, newest {newest}): "
            f"{len(failed)} of {len(checks)} failing"
        )
        out += [f"  {c['status']:<5} [{c['severity']}] {c['check_name']}" for c in failed]
    else:
        out.append("last check run: none yet")
    return out
