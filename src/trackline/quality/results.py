"""Where check outcomes go: the results history and the exceptions tables.

- ``trackline.check_results`` (state migration 2): one row per check per run — status
  (pass / fail / error), failing count, new count, sample keys, seconds, checked_at.
- Row-level failures go to an exceptions table through `trackline.marts.exceptions.Exceptions`:
  a retention group's table for its checks (so an open key is also kept from trim, like the
  engine's own exceptions), ``trackline.check_exceptions`` for run-level and custom checks.
  A key already open for the same check and table is not new (only `last_seen` moves); what
  is new is decided row by row in SQL (NOT EXISTS against the open exceptions), so it scales
  with the warehouse, not with Python memory.
- A key that passes again is resolved automatically, with a note saying so. Exceptions
  written by the mart engine (other check names) are never touched here.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from trackline.load import Warehouse
from trackline.marts.exceptions import Exceptions
from trackline.state import utcnow

SAMPLE = 10
"""Offending rows and keys kept per check (in the results row, the alert and the output)."""
KEY_TYPE = "VARCHAR(256)"
"""How keys are compared with `key_value` (the same cast the mart engine uses)."""


@dataclass
class CheckResult:
    name: str
    severity: str
    status: str = "pass"
    """pass, fail, or error (the check itself could not run)."""
    failing_count: int = 0
    new_count: int = 0
    resolved_count: int = 0
    recovered: bool = False
    """It failed (or errored) before and passes now: announced once."""
    columns: list[str] = field(default_factory=list)
    sample: list[tuple[Any, ...]] = field(default_factory=list)
    sample_keys: list[str] = field(default_factory=list)
    new_keys: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    sql: str = ""
    params: tuple[Any, ...] = ()
    description: str = ""

    @property
    def failed(self) -> bool:
        return self.status != "pass"

    @property
    def blocking(self) -> bool:
        return self.failed and self.severity == "blocking"

    @property
    def is_new(self) -> bool:
        """Something an alert should say: new offending keys, or a check that newly errors."""
        return self.new_count > 0


class ResultsStore:
    """The ``check_results`` history table."""

    def __init__(self, wh: Warehouse, schema: str = "trackline") -> None:
        self.wh, self.schema = wh, schema

    @property
    def ref(self) -> str:
        return self.wh.t(self.schema, "check_results")

    def record(self, run_id: str, r: CheckResult, at: dt.datetime | None = None) -> None:
        detail = {"description": r.description, "resolved": r.resolved_count}
        if r.error:
            detail["error"] = r.error
        self.wh.execute(
            f"INSERT INTO {self.ref} (run_id, check_name, severity, status, failing_count, "
            "new_count, sample_keys, seconds, checked_at, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                r.name,
                r.severity,
                r.status,
                r.failing_count,
                r.new_count,
                json.dumps(r.sample_keys),
                round(r.seconds, 4),
                at or utcnow(),
                json.dumps(detail, default=str),
            ),
        )

    def previous_status(self, check_name: str, before_run: str) -> str | None:
        """The status of the check's latest recorded result from another run."""
        rows = self.wh.query(
            f"SELECT status FROM {self.ref} WHERE check_name = ? AND run_id <> ? "
            "ORDER BY checked_at DESC LIMIT 1",
            (check_name, before_run),
        )
        return rows[0][0] if rows else None

    def last_run(self) -> list[dict[str, Any]]:
        """The results of the latest run (one dict per check)."""
        rows = self.wh.query(f"SELECT run_id FROM {self.ref} ORDER BY checked_at DESC LIMIT 1")
        if not rows:
            return []
        return self.history(run_id=rows[0][0])

    def unalerted(self, runs_ref: str) -> dict[str, tuple[int, list[str]]]:
        """New failures recorded by check runs that died before their alert went out.

        A run's row in `runs` is written after its alert is delivered, so results whose run
        has no row there were never alerted; the failure is open now, so the next run would
        count it as old and stay silent. Per check: the largest such new count and its sample
        keys, from results newer than the check's last result of a finished run (the caller
        holds the pipeline lock, so no other check run is between its results and its row)."""
        finished = dict(
            self.wh.query(
                f"SELECT r.check_name, MAX(r.checked_at) FROM {self.ref} r "
                f"JOIN {runs_ref} u ON u.run_id = r.run_id AND u.command = 'check' "
                "GROUP BY r.check_name"
            )
        )
        rows = self.wh.query(
            f"SELECT r.check_name, r.new_count, r.sample_keys, r.checked_at FROM {self.ref} r "
            "WHERE r.new_count > 0 AND NOT EXISTS "
            f"(SELECT 1 FROM {runs_ref} u WHERE u.run_id = r.run_id AND u.command = 'check')"
        )
        out: dict[str, tuple[int, list[str]]] = {}
        for name, new, keys, at in rows:
            if name in finished and at <= finished[name]:
                continue
            if new > out.get(name, (0, []))[0]:
                out[name] = (int(new), json.loads(keys or "[]"))
        return out

    def latest_per_check(self) -> list[dict[str, Any]]:
        """Each check's most recent result, whichever run made it. `trackline run` evaluates
        the run-level checks after every job and every check once a day: the latest run alone
        would show only the few checks of the last cycle."""
        return self.history(latest=True)

    def history(
        self,
        *,
        check_name: str | None = None,
        run_id: str | None = None,
        limit: int = 500,
        latest: bool = False,
    ) -> list[dict[str, Any]]:
        where: list[str] = []
        params: list[Any] = []
        source = self.ref
        if latest:  # a join with the grouped maxima, not a correlated subquery (Redshift)
            source = (
                f"{self.ref} JOIN (SELECT check_name AS latest_name, MAX(checked_at) AS "
                f"latest_at FROM {self.ref} GROUP BY check_name) latest "
                f"ON latest.latest_name = {self.ref}.check_name "
                f"AND latest.latest_at = {self.ref}.checked_at"
            )
        if check_name:
            where.append("check_name = ?")
            params.append(check_name)
        if run_id:
            where.append("run_id = ?")
            params.append(run_id)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self.wh.query(
            f"SELECT run_id, check_name, severity, status, failing_count, new_count, "
            f"sample_keys, seconds, checked_at, detail FROM {source} {clause}"
            f"ORDER BY checked_at DESC, check_name LIMIT {int(limit)}",
            params,
        )
        keys = [
            "run_id",
            "check_name",
            "severity",
            "status",
            "failing_count",
            "new_count",
            "sample_keys",
            "seconds",
            "checked_at",
            "detail",
        ]
        out = []
        for r in rows:
            d = dict(zip(keys, r, strict=True))
            d["sample_keys"] = json.loads(d["sample_keys"] or "[]")
            d["detail"] = json.loads(d["detail"] or "{}")
            out.append(d)
        return out


class FailureBook:
    """Records one check's offending keys in an exceptions table, de-duplicated."""

    def __init__(self, wh: Warehouse, schema: str, table: str, run_id: str) -> None:
        self.wh = wh
        self.exc = Exceptions(wh, schema, table)
        self.run_id = run_id

    def _resolve_note(self) -> str:
        return f"auto-resolved: the check passed again (trackline check run {self.run_id})"

    # ------------------------------------------------------------------ keyed, in SQL

    def record_keys(
        self, check: str, table_name: str, rel: str, key: str, detail: str
    ) -> tuple[int, list[str], int]:
        """Offending keys are column `key` of relation `rel` (the materialised check result).

        Returns (new keys, a sample of them, keys resolved because they pass again)."""
        w, exc = self.wh, self.exc.ref
        k = f"CAST(x.{w.q(key)} AS {KEY_TYPE})"
        is_open = (
            f"SELECT 1 FROM {exc} e WHERE e.status = 'open' AND e.check_name = ? "
            f"AND e.table_name = ? AND e.key_value = {k}"
        )
        fresh = f"FROM {rel} x WHERE x.{w.q(key)} IS NOT NULL AND NOT EXISTS ({is_open})"
        new_keys = [
            str(r[0])
            for r in w.query(
                f"SELECT DISTINCT {k} {fresh} ORDER BY 1 LIMIT {SAMPLE}", (check, table_name)
            )
        ]
        new = self.exc.record_from(
            check,
            table_name,
            f"x.{w.q(key)}",
            f"FROM {rel} x WHERE x.{w.q(key)} IS NOT NULL",
            (),
            detail,
        )
        nulls = int(w.scalar(f"SELECT COUNT(*) FROM {rel} x WHERE x.{w.q(key)} IS NULL") or 0)
        if nulls and self.exc.record(
            check, table_name, None, f"{nulls} row(s) with no key; {detail}"
        ):
            new += 1
            new_keys.append("NULL")
        passing = (
            "status = 'open' AND check_name = ? AND table_name = ? AND key_value IS NOT NULL "
            f"AND NOT EXISTS (SELECT 1 FROM {rel} x WHERE {k} = {exc}.key_value)"
        )
        resolved = self._resolve(passing, (check, table_name))
        if not nulls:
            resolved += self.resolve_unkeyed(check, table_name)
        return new, new_keys, resolved

    def _resolve(self, where: str, params: tuple[Any, ...]) -> int:
        """Resolve this check's open exceptions matching `where` (they pass again)."""
        w, exc = self.wh, self.exc.ref
        n = int(w.scalar(f"SELECT COUNT(*) FROM {exc} WHERE {where}", params) or 0)
        if n:
            w.execute(
                f"UPDATE {exc} SET status = 'resolved', resolved_at = ?, note = ? WHERE {where}",
                (utcnow(), self._resolve_note(), *params),
            )
        return n

    # ------------------------------------------------------------------ whole-check failures

    def record_unkeyed(self, check: str, table_name: str, detail: str) -> bool:
        """A check that fails as a whole: one open exception without a key. True if new."""
        return self.exc.record(check, table_name, None, detail)

    def resolve_unkeyed(self, check: str, table_name: str) -> int:
        return self._resolve(
            "status = 'open' AND check_name = ? AND table_name = ? AND key_value IS NULL",
            (check, table_name),
        )

    # ------------------------------------------------------------------ collected rows

    def record_rows(
        self, check: str, entries: list[tuple[str, str | None, str]]
    ) -> tuple[int, list[str], int]:
        """(table, key, detail) rows computed in Python (bounded lists): record, de-duplicate,
        and resolve this check's open keys that are no longer among them."""
        new_keys: list[str] = []
        current: set[tuple[str, str | None]] = set()
        for table_name, key, detail in entries:
            if (table_name, key) in current:
                continue
            current.add((table_name, key))
            if self.exc.record(check, table_name, key, detail):
                new_keys.append("NULL" if key is None else key)
        resolved = 0
        open_rows = self.wh.query(
            f"SELECT id, table_name, key_value FROM {self.exc.ref} "
            "WHERE status = 'open' AND check_name = ?",
            (check,),
        )
        for exc_id, table_name, key in open_rows:
            if (table_name, key) not in current:
                self.wh.execute(
                    f"UPDATE {self.exc.ref} SET status = 'resolved', resolved_at = ?, note = ? "
                    "WHERE id = ?",
                    (utcnow(), self._resolve_note(), exc_id),
                )
                resolved += 1
        return len(new_keys), new_keys[:SAMPLE], resolved

    def open_count(self, check: str) -> int:
        return int(
            self.wh.scalar(
                f"SELECT COUNT(*) FROM {self.exc.ref} WHERE status = 'open' AND check_name = ?",
                (check,),
            )
            or 0
        )
