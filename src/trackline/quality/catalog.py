"""Every check of a config, in the order `trackline check` runs them: the group checks
(`trackline.quality.checks`), the run-level and reconcile checks (`trackline.quality.runlevel`),
the rows behind each watermark (`trackline.quality.behind`), the per-consolidation checks
(`trackline.quality.consolidation`), the source scans (`trackline.quality.scans`), the
per-dimension checks (`trackline.quality.dims`), the configured legacy DW comparisons
(`trackline.quality.compare`), then
the config's custom checks."""

from __future__ import annotations

from trackline.config import Config, MySQLSource
from trackline.load import Warehouse
from trackline.quality.behind import behind_watermark_check
from trackline.quality.checks import Check, custom_checks, group_checks
from trackline.quality.compare import compare_checks
from trackline.quality.consolidation import consolidation_checks
from trackline.quality.dims import dimension_checks
from trackline.quality.runlevel import reconcile_check, run_checks_of
from trackline.quality.scans import full_scan_check


def all_checks(cfg: Config, wh: Warehouse) -> list[Check]:
    """Every check of this config, in the order they run: groups, runs, custom."""
    out: list[Check] = []
    for g in cfg.marts:
        out += group_checks(cfg, g, wh)
    out += run_checks_of(cfg, wh)
    out += consolidation_checks(cfg, wh)
    if any(isinstance(s, MySQLSource) for s in cfg.sources.values()):
        out.append(full_scan_check(cfg))  # plans are read from MySQL / MariaDB only
    out.append(behind_watermark_check(cfg))
    out += [reconcile_check(cfg, name) for name in cfg.quality.reconcile_tables]
    out += dimension_checks(cfg, wh)
    out += compare_checks(cfg)
    out += custom_checks(cfg)
    return out
