"""One consolidation run: check the inputs' schemas, extract every input into the staging
table, and only if all of them succeeded merge the pending rows into the target.

A failing input stops the run before the merge: nothing of this run reaches the target (the
rows other inputs staged stay pending, with their watermarks, and the next successful run
merges them). The run holds the pipeline's ``cycle`` lock, so it never overlaps a cycle, and
is recorded in ``trackline.runs`` (command ``consolidate``, `table_key` = the consolidation):
rows per input, rows merged, seconds; the run-level checks read it from there.
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from trackline.config import Config, ConsolidationConfig
from trackline.consolidate.extract import InputRun, extract_input, ledger_key, relation
from trackline.consolidate.merge import MergeResult, ensure_tables, merge, pending_rows
from trackline.consolidate.schema import InputShape, newest_by, shape_of, staging_columns, unify
from trackline.errors import InjectedFault, LockBusy, SchemaDriftError, TracklineError
from trackline.extract import Source, open_source
from trackline.load import Warehouse
from trackline.report import NullReporter, Reporter
from trackline.stage import Stage
from trackline.state import StateStore, pipeline_lock, utcnow

COMMAND = "consolidate"


@dataclass
class ConsolidationResult:
    name: str
    run_id: str
    status: str = "ok"
    """ok, or failed (nothing of this run reached the target)."""
    inputs: list[InputRun] = field(default_factory=list)
    merged: int = 0
    pending: int = 0
    """Staging rows the merge found pending (this run's and earlier failed runs'); after a
    failed run, the staged rows left pending for the next run."""
    null_keys: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def rows_read(self) -> int:
        return sum(i.rows for i in self.inputs)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = {i.input: asdict(i) for i in self.inputs}
        for i in d["inputs"].values():
            i["upper"] = str(i["upper"]) if i["upper"] is not None else None
        return d


class Consolidator:
    """Runs the consolidations of one config on one open warehouse."""

    def __init__(self, cfg: Config, wh: Warehouse, reporter: Reporter | None = None) -> None:
        self.cfg, self.wh = cfg, wh
        self.reporter = reporter or NullReporter()
        self.state = StateStore(wh, cfg.state_schema)
        self.stage = Stage(cfg.stage)
        wh.stage = wh.stage or self.stage  # engines that COPY from the staged files read them
        self._sources: dict[tuple[str, str], Source] = {}

    def close(self) -> None:
        for s in self._sources.values():
            s.close()
        self._sources.clear()

    def source(self, c: ConsolidationConfig, i: int) -> tuple[Source, str]:
        inp = c.inputs[i]
        name = inp.source or next(iter(self.cfg.sources))
        db = inp.source_db or self.cfg.sources[name].database
        if (name, db) not in self._sources:
            self._sources[(name, db)] = open_source(self.cfg.sources[name], db)
        return self._sources[(name, db)], db

    def shapes(self, c: ConsolidationConfig) -> list[InputShape]:
        """Every input's output columns (reading only the sources' metadata)."""
        out = []
        for i, inp in enumerate(c.inputs):
            src, db = self.source(c, i)
            try:
                cols = src.columns(relation(inp, db))
            except TracklineError as exc:
                raise SchemaDriftError(
                    f"consolidation {c.name!r}, input {inp.name!r}: {exc}"
                ) from exc
            out.append(shape_of(c, inp, cols))
        return out

    def run(self, c: ConsolidationConfig, run_id: str | None = None) -> ConsolidationResult:
        self.state.ensure()
        res = ConsolidationResult(c.name, run_id or uuid.uuid4().hex[:16])
        started, t0 = utcnow(), time.monotonic()
        timeout = float(getattr(self.cfg.warehouse, "lock_timeout_seconds", 0) or 0)
        try:
            with self.wh.lock(pipeline_lock(self.cfg.state_schema, "cycle"), timeout):
                self._run(c, res)
        except (InjectedFault, LockBusy, KeyboardInterrupt):
            raise
        except TracklineError as exc:
            res.status, res.error = "failed", str(exc)
            self.reporter.event("failed", f"{c.name}: {exc}", consolidation=c.name)
            try:  # what waits for the next run (this run's and earlier runs' staged rows)
                res.pending = pending_rows(self.wh, c)
            except InjectedFault:
                raise
            except TracklineError:
                pass
        res.seconds = time.monotonic() - t0
        self.state.record_run(
            res.run_id,
            COMMAND,
            c.name,
            started,
            res.status,
            res.merged,
            res.seconds,
            res.error,
            res.as_dict(),
        )
        return res

    def _run(self, c: ConsolidationConfig, res: ConsolidationResult) -> None:
        shapes = self.shapes(c)
        columns = unify(c, shapes)  # a mismatch stops here: nothing read, nothing written
        ensure_tables(self.wh, c, columns)
        staging = staging_columns(columns)
        batch_ids = itertools.count(self.state.next_batch_id(ledger_key(c)))
        for i, shape in enumerate(shapes):
            run = InputRun(shape.input.name)
            res.inputs.append(run)
            src, db = self.source(c, i)
            try:
                got = extract_input(
                    self.cfg,
                    c,
                    shape,
                    src,
                    db,
                    self.wh,
                    self.stage,
                    staging,
                    res.run_id,
                    batch_ids,
                    self.reporter,
                )
            except TracklineError as exc:
                run.error = str(exc)
                raise TracklineError(
                    f"input {shape.input.name!r} failed, so nothing of this run was merged "
                    f"(rows staged by the other inputs stay pending for the next run): {exc}"
                ) from exc
            res.inputs[-1] = got
            self.reporter.event(
                "done",
                f"{c.name}.{got.input}: {got.rows:,} rows staged, cursor {got.watermark}",
                consolidation=c.name,
            )
        m: MergeResult = merge(self.wh, c, columns, newest_by(c, shapes), utcnow(), self.state)
        res.merged, res.pending, res.null_keys = m.merged, m.pending, m.null_keys
        if m.null_keys:
            self.reporter.event(
                "warning",
                f"{c.name}: {m.null_keys} staged row(s) with a NULL key ({', '.join(c.key)}) "
                "were not merged",
                consolidation=c.name,
            )
        self.reporter.event(
            "done",
            f"{c.name}: {m.merged:,} rows merged into {c.target_table}",
            consolidation=c.name,
        )


def consolidate(
    cfg: Config,
    wh: Warehouse,
    names: list[str] | None = None,
    reporter: Reporter | None = None,
) -> list[ConsolidationResult]:
    """Run the named consolidations (default: all), one after the other."""
    from trackline.errors import ConfigError

    todo = [cfg.consolidation(n) for n in names] if names else list(cfg.consolidations)
    if not todo:
        raise ConfigError("no consolidations: declare them under `consolidations:`")
    worker = Consolidator(cfg, wh, reporter)
    try:
        return [worker.run(c) for c in todo]
    finally:
        worker.close()


__all__ = ["COMMAND", "ConsolidationResult", "Consolidator", "consolidate", "pending_rows"]
