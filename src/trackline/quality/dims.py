"""Per-dimension checks of `trackline check`, for each `write_mode: scd2` table ``<t>``:

  dims.<t>.current_version   a member whose versions do not end in exactly one current
                             version (valid_to far-future), unless its last version was
                             closed because the key left the source
  dims.<t>.overlap           a version that starts before the previous one of its key ended
  dims.<t>.gap               a version that starts after the previous one ended, where that
                             one was not closed by a delete (a returning key's gap is real)

Each returns the offending versions (their surrogate key is the check's key). Versions are
ordered per natural key by (valid_from, surrogate key) with LAG/LEAD windows, which every
engine runs (Redshift: ordered windows, no correlated subquery).
"""

from __future__ import annotations

from trackline.config import Config, TableConfig
from trackline.dims.history import natural_key_of
from trackline.dims.scd2 import CLOSED_BY_DELETE, FAR_FUTURE, IS_CURRENT, VALID_FROM, VALID_TO
from trackline.load import Warehouse
from trackline.quality.checks import STATE_EXCEPTIONS, Check


def _versions(wh: Warehouse, t: TableConfig, schema: str, key: list[str]) -> str:
    assert t.scd2 is not None
    sk = wh.q(t.scd2.surrogate_key)
    keys = wh.cols(key)
    window = f"OVER (PARTITION BY {keys} ORDER BY {wh.q(VALID_FROM)}, {sk})"
    return (
        f"SELECT {sk}, {keys}, {wh.q(VALID_FROM)} AS valid_from, {wh.q(VALID_TO)} AS valid_to, "
        f"{wh.q(IS_CURRENT)} AS is_current, {wh.q(CLOSED_BY_DELETE)} AS closed_by_delete,\n"
        f"    LAG({wh.q(VALID_TO)}) {window} AS previous_to,\n"
        f"    LAG({wh.q(CLOSED_BY_DELETE)}) {window} AS previous_deleted,\n"
        f"    LEAD({wh.q(VALID_FROM)}) {window} AS next_from\n"
        f"  FROM {wh.t(schema, t.dimension)}"
    )


FAR = f"CAST('{FAR_FUTURE:%Y-%m-%d %H:%M:%S}' AS TIMESTAMP)"
"""The far-future end of a current version, as a literal: no parameter in the CREATE TABLE … AS
a check runs in."""


def _check(
    cfg: Config, t: TableConfig, what: str, sql: str, description: str, problem: str | None = None
) -> Check:
    assert t.scd2 is not None
    return Check(
        f"dims.{t.name}.{what}",
        "blocking",
        sql,
        key=t.scd2.surrogate_key,
        table=f"{t.target_schema}.{t.dimension}",
        exceptions=(cfg.state_schema, STATE_EXCEPTIONS),
        description=f"{t.dimension}: {description}",
        problem=problem,
    )


def table_checks(cfg: Config, wh: Warehouse, t: TableConfig) -> list[Check]:
    try:
        key = natural_key_of(cfg, t)
    except Exception as exc:  # the source is down: an error result, not a crash
        return [_check(cfg, t, w, "", "", str(exc)) for w in ("current_version", "overlap", "gap")]
    v = f"SELECT * FROM (\n  {_versions(wh, t, t.target_schema, key)}\n) AS v\nWHERE "
    return [
        _check(
            cfg,
            t,
            "current_version",
            v + f"(v.is_current AND (v.next_from IS NOT NULL OR v.valid_to <> {FAR}))\n"
            f"   OR (NOT v.is_current AND v.valid_to = {FAR})\n"
            "   OR (NOT v.is_current AND v.next_from IS NULL AND NOT v.closed_by_delete)",
            "a member without exactly one current version",
        ),
        _check(
            cfg,
            t,
            "overlap",
            v + "v.previous_to > v.valid_from",
            "a version starts before the previous one ended",
        ),
        _check(
            cfg,
            t,
            "gap",
            v + "v.previous_to < v.valid_from AND NOT v.previous_deleted",
            "a version starts after the previous one ended (not closed by a delete)",
        ),
    ]


def dimension_checks(cfg: Config, wh: Warehouse) -> list[Check]:
    """The checks of every scd2 table whose dimension exists."""
    out: list[Check] = []
    for t in cfg.tables:
        if t.write_mode == "scd2" and wh.table_exists(t.target_schema, t.dimension):
            out += table_checks(cfg, wh, t)
    return out
