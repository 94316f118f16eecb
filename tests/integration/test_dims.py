"""Dimension tables against real MariaDB → DuckDB, PostgreSQL and Redshift (compat mode).

`write_mode: scd2`: a sequence of source snapshots, each followed by a sync; after every
run the dimension is compared, version by version, with a hand-written history. Versions
start at the source clock of the run that saw the change: each run is bracketed by two
reads of the source clock, and a version's `valid_from` / `valid_to` is mapped back to the
run whose bracket holds it (runs are sequential, so the brackets never overlap).

`write_mode: replace`: a reader on a second connection never sees an empty or partial table
while a replace runs; a shrunken snapshot is refused and leaves the table as it was.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MySQLDb
from tests.integration.synctools import make_config, one, source_now, table, warehouse, write_config
from trackline import faults
from trackline.config import Config, RedshiftWarehouse, StageConfig, TableConfig
from trackline.dims.scd2 import FAR_FUTURE
from trackline.errors import InjectedFault
from trackline.sync import sync

PARTNERS_DDL = """
CREATE TABLE partners (
  partner_id INT NOT NULL,
  region VARCHAR(8) NOT NULL,
  name VARCHAR(40),
  city VARCHAR(40),
  note VARCHAR(40),
  active TINYINT(1),
  updated_at DATETIME(6),
  PRIMARY KEY (partner_id, region)
)
"""
FIRST = [
    (1, "N", "A", "X", "n1", 1),
    (2, "N", "B", None, "n2", 1),
    (3, "S", "C", "", "n3", 0),
    (4, "S", "D", "NULL", "n4", None),
]
SHOWN = ["dim_key", "partner_id", "region", "name", "city", "active"]


@pytest.fixture(
    params=[
        pytest.param("duckdb", id="duckdb"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.servers),
        pytest.param("redshift", id="redshift-compat", marks=pytest.mark.servers),
    ]
)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Any, StageConfig]:
    """(warehouse config, stage config) of one engine, on a fresh database."""
    if request.param == "duckdb":
        from trackline.config import DuckDBWarehouse

        return DuckDBWarehouse(path=tmp_path / "wh.duckdb"), StageConfig(url=str(tmp_path / "s"))
    pg = request.getfixturevalue("pg_db")
    if request.param == "postgres":
        return pg.warehouse_config(), StageConfig(url=str(tmp_path / "s"))
    s3 = request.getfixturevalue("s3")
    return RedshiftWarehouse(**pg.redshift_compat()), s3.stage_config()


def _partners(mysql_db: MySQLDb, rows: list[tuple[Any, ...]]) -> None:
    """Make the source hold exactly `rows` (partner_id, region, name, city, note, active)."""
    mysql_db.execute("DELETE FROM partners")
    mysql_db.executemany(
        "INSERT INTO partners (partner_id, region, name, city, note, active, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, NOW(6))",
        rows,
    )


def _dim_config(mysql_db: MySQLDb, engine: tuple[Any, StageConfig], **scd2: Any) -> Config:
    wh, stage = engine
    settings: dict[str, Any] = {"ignored_columns": ["note", "updated_at"], **scd2}
    t = table("partners", strategy="full", write_mode="scd2", scd2=settings)
    return make_config(mysql_db, wh, stage, [t])


class Runs:
    """Runs sync and remembers each run's source-clock bracket."""

    def __init__(self, mysql_db: MySQLDb, cfg: Config) -> None:
        self.db, self.cfg = mysql_db, cfg
        self.brackets: list[tuple[dt.datetime, dt.datetime]] = []

    def sync(self) -> None:
        before = source_now(self.db)
        res = one(sync(self.cfg))
        assert res.status == "ok", res.error
        self.brackets.append((before, source_now(self.db)))

    def run_of(self, value: dt.datetime) -> int | None:
        if value == FAR_FUTURE:
            return None
        for n, (lo, hi) in enumerate(self.brackets, 1):
            if lo <= value <= hi:
                return n
        raise AssertionError(f"{value} falls in no run's bracket {self.brackets}")

    def notes(self, table: str = "partners") -> dict[int, Any]:
        """The ignored column `note` of every version, by dim_key."""
        with warehouse(self.cfg) as wh:
            rows = wh.query(f"SELECT dim_key, note FROM {wh.t('public', table)}")
        return {int(k): n for k, n in rows}

    def wrong_hashes(self, tracked: tuple[str, ...] = ("name", "city", "active")) -> list[Any]:
        """The versions whose `row_hash` is not the MD5 of the documented encoding of their
        tracked columns (``<column>=<length>:<text>;`` for each non-NULL one, in order): the
        hash every release stored, whichever way it was computed."""
        import hashlib

        def text(v: Any) -> str:
            return ("true" if v else "false") if isinstance(v, bool) else str(v)

        with warehouse(self.cfg) as wh:
            rows = wh.query(f"SELECT dim_key, {wh.cols(tracked)}, row_hash FROM public.partners")
        wrong = []
        for key, *vals, got in rows:
            enc = "".join(
                f"{c}={len(text(v))}:{text(v)};"
                for c, v in zip(tracked, vals, strict=True)
                if v is not None
            )
            if got != hashlib.md5(enc.encode()).hexdigest():
                wrong.append((key, enc, got))
        return wrong

    def history(self, table: str = "partners") -> list[tuple[Any, ...]]:
        """(dim_key, partner_id, region, name, city, active, from_run, to_run, is_current,
        closed_by_delete), ordered by key and start."""
        with warehouse(self.cfg) as wh:
            rows = wh.query(
                f"SELECT {wh.cols(SHOWN)}, valid_from, valid_to, is_current, closed_by_delete "
                f"FROM {wh.t('public', table)} ORDER BY partner_id, region, valid_from, dim_key"
            )
        out = []
        for r in rows:
            *vals, vf, vt, cur, deleted = r
            active = None if vals[5] is None else int(vals[5])
            out.append(
                (
                    *[int(v) for v in vals[:2]],
                    *vals[2:5],
                    active,
                    self.run_of(vf),
                    self.run_of(vt),
                    bool(cur),
                    bool(deleted),
                )
            )
        return out


def test_scd2_history_follows_the_snapshots(
    mysql_db: MySQLDb, engine: tuple[Any, StageConfig]
) -> None:
    mysql_db.execute(PARTNERS_DDL)
    cfg = _dim_config(mysql_db, engine)
    runs = Runs(mysql_db, cfg)

    _partners(mysql_db, FIRST)
    runs.sync()
    v1 = [
        (1, 1, "N", "A", "X", 1, 1, None, True, False),
        (2, 2, "N", "B", None, 1, 1, None, True, False),
        (3, 3, "S", "C", "", 0, 1, None, True, False),
        (4, 4, "S", "D", "NULL", None, 1, None, True, False),
    ]
    assert runs.history() == v1

    # a change; NULL → value; '' → NULL; one row unchanged
    _partners(
        mysql_db,
        [
            (1, "N", "A2", "X", "n1", 1),
            (2, "N", "B", "Y", "n2", 1),
            (3, "S", "C", None, "n3", 0),
            (4, "S", "D", "NULL", "n4", None),
        ],
    )
    runs.sync()
    v2 = [
        (1, 1, "N", "A", "X", 1, 1, 2, False, False),
        (5, 1, "N", "A2", "X", 1, 2, None, True, False),
        (2, 2, "N", "B", None, 1, 1, 2, False, False),
        (6, 2, "N", "B", "Y", 1, 2, None, True, False),
        (3, 3, "S", "C", "", 0, 1, 2, False, False),
        (7, 3, "S", "C", None, 0, 2, None, True, False),
        (4, 4, "S", "D", "NULL", None, 1, None, True, False),
    ]
    assert runs.history() == v2

    # key 4 deleted; a change only in an ignored column (note); NULL tracked value unchanged
    third = [
        (1, "N", "A2", "X", "changed note", 1),
        (2, "N", "B", "Y", "n2", 1),
        (3, "S", "C", None, "n3", 0),
    ]
    _partners(mysql_db, third)
    runs.sync()
    v3 = [v if v[0] != 4 else (4, 4, "S", "D", "NULL", None, 1, 3, False, True) for v in v2]
    assert runs.history() == v3
    # the ignored column follows the source in the current version, in place; closed
    # versions keep the value they were closed with
    notes = {1: "n1", 5: "changed note", 2: "n2", 6: "n2", 3: "n3", 7: "n3", 4: "n4"}
    assert runs.notes() == notes

    # the same snapshot again (updated_at moved: it is not tracked): nothing changes
    _partners(mysql_db, third)
    runs.sync()
    assert runs.history() == v3

    # key 4 returns; key 3 changed twice between runs; key 2's city becomes the text 'NULL';
    # a boolean (TINYINT(1)) value → NULL
    _partners(
        mysql_db, [*third[:2], (3, "S", "C", "P", "n3", 0), (4, "S", "D", "NULL", "n4", None)]
    )
    mysql_db.execute("UPDATE partners SET city = 'Q' WHERE partner_id = 3")
    mysql_db.execute("UPDATE partners SET city = 'NULL' WHERE partner_id = 2")
    mysql_db.execute("UPDATE partners SET active = NULL WHERE partner_id = 1")
    runs.sync()
    v5 = [
        (1, 1, "N", "A", "X", 1, 1, 2, False, False),
        (5, 1, "N", "A2", "X", 1, 2, 5, False, False),
        (8, 1, "N", "A2", "X", None, 5, None, True, False),
        (2, 2, "N", "B", None, 1, 1, 2, False, False),
        (6, 2, "N", "B", "Y", 1, 2, 5, False, False),
        (9, 2, "N", "B", "NULL", 1, 5, None, True, False),
        (3, 3, "S", "C", "", 0, 1, 2, False, False),
        (7, 3, "S", "C", None, 0, 2, 5, False, False),
        (10, 3, "S", "C", "Q", 0, 5, None, True, False),
        (4, 4, "S", "D", "NULL", None, 1, 3, False, True),
        (11, 4, "S", "D", "NULL", None, 5, None, True, False),
    ]
    assert runs.history() == v5

    # an ignored column to NULL and back to a value: in place, no version
    mysql_db.execute("UPDATE partners SET note = NULL WHERE partner_id = 1")
    runs.sync()
    assert runs.history() == v5
    assert runs.notes()[8] is None and runs.notes()[5] == "changed note"
    mysql_db.execute("UPDATE partners SET note = '' WHERE partner_id = 1")
    runs.sync()
    assert runs.history() == v5 and runs.notes()[8] == ""
    assert runs.wrong_hashes() == []

    # A source returning a fraction of the rows is refused; nothing changes.
    _partners(mysql_db, [(1, "N", "A2", "X", "n1", None)])
    res = one(sync(cfg))
    assert res.status == "failed"
    assert res.error and "shrink_guard" in res.error and "25%" in res.error
    assert runs.history() == v5


def test_scd2_validity_from_the_source_change_time(
    mysql_db: MySQLDb, engine: tuple[Any, StageConfig]
) -> None:
    mysql_db.execute(PARTNERS_DDL)
    cfg = _dim_config(
        mysql_db, engine, valid_from_column="updated_at", ignored_columns=["note"], deletes="ignore"
    )
    t0 = dt.datetime(2024, 1, 1, 8, 0, 0)
    mysql_db.executemany(
        "INSERT INTO partners VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [(1, "N", "A", "X", "n", 1, t0), (2, "N", "B", "Y", "n", 1, None)],
    )
    runs = Runs(mysql_db, cfg)
    runs.sync()
    t1 = t0 + dt.timedelta(hours=1)
    mysql_db.execute("UPDATE partners SET name = 'A2', updated_at = %s WHERE partner_id = 1", (t1,))
    # a backdated change time: the new version starts where the current one did
    mysql_db.execute(
        "UPDATE partners SET name = 'B2', updated_at = %s WHERE partner_id = 2",
        (t0 - dt.timedelta(days=1),),
    )
    runs.sync()
    mysql_db.execute("DELETE FROM partners WHERE partner_id = 2")
    runs.sync()
    with warehouse(cfg) as wh:
        rows = wh.query(
            "SELECT partner_id, name, valid_from, valid_to, is_current FROM public.partners "
            "ORDER BY partner_id, valid_from, dim_key"
        )
    (lo1, hi1) = runs.brackets[0]
    b_start = rows[2][2]
    assert lo1 <= b_start <= hi1  # NULL change time: the run's source clock
    assert [tuple(r) for r in rows] == [
        (1, "A", t0, t1, False),
        (1, "A2", t1, FAR_FUTURE, True),
        (2, "B", b_start, b_start, False),
        (2, "B2", b_start, FAR_FUTURE, True),  # deletes: ignore keeps it current
    ]


def test_scd2_killed_before_and_inside_the_apply_then_rerun(
    mysql_db: MySQLDb, engine: tuple[Any, StageConfig], tmp_path: Path
) -> None:
    mysql_db.execute(PARTNERS_DDL)
    cfg = _dim_config(mysql_db, engine)
    runs = Runs(mysql_db, cfg)
    _partners(mysql_db, FIRST)
    runs.sync()
    before = runs.history()
    _partners(
        mysql_db,
        [
            (1, "N", "A2", "X", "n1", 1),
            (2, "N", "B", "Y", "n2", 1),
            (3, "S", "C", "", "n3", 0),
        ],
    )
    path = write_config(tmp_path / "c.yml", cfg)
    exe = str(Path(sys.executable).with_name("trackline"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKLINE_")}
    for step in ("dims.before_apply", "dims.in_apply"):
        killed = subprocess.run(
            [exe, "sync", "-c", str(path), "--log-format", "plain"],
            env={**env, "TRACKLINE_FAIL_AT": step, "TRACKLINE_FAIL_MODE": "exit"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert killed.returncode == 99, (step, killed.stdout, killed.stderr)
        assert runs.history() == before
    runs.sync()
    assert runs.history() == [
        (1, 1, "N", "A", "X", 1, 1, 2, False, False),
        (5, 1, "N", "A2", "X", 1, 2, None, True, False),
        (2, 2, "N", "B", None, 1, 1, 2, False, False),
        (6, 2, "N", "B", "Y", 1, 2, None, True, False),
        (3, 3, "S", "C", "", 0, 1, None, True, False),
        (4, 4, "S", "D", "NULL", None, 1, 2, False, True),
    ]


def test_scd2_refuses_duplicate_natural_keys(
    mysql_db: MySQLDb, engine: tuple[Any, StageConfig]
) -> None:
    mysql_db.execute(PARTNERS_DDL)
    cfg = _dim_config(mysql_db, engine, natural_key=["partner_id"])
    _partners(mysql_db, [(1, "N", "A", "X", "", 1), (1, "S", "A", "X", "", 1)])
    res = one(sync(cfg))
    assert res.status == "failed"
    assert res.error and "partner_id=1" in res.error and "natural_key" in res.error
    with warehouse(cfg) as wh:
        assert not wh.table_exists("public", "partners")
    # fixed: it loads; PostgreSQL's uniqueness check (a unique index on the staged keys) is
    # dropped with the apply, so the next load does not maintain it row by row
    _partners(mysql_db, [(1, "N", "A", "X", "", 1), (2, "S", "A", "X", "", 1)])
    runs = Runs(mysql_db, cfg)
    runs.sync()
    with warehouse(cfg) as wh:
        if wh.ENGINE == "postgres":
            indexes = "SELECT indexname FROM pg_indexes WHERE indexname LIKE '%tl_unique'"
            assert wh.query(indexes) == []
            # the surrogate key's index is unique (the plain one of older releases is dropped)
            wh.execute("CREATE INDEX partners_dim_key_ix ON public.partners (dim_key)")
    runs.sync()
    with warehouse(cfg) as wh:
        if wh.ENGINE == "postgres":
            assert wh.query(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'partners' AND indexdef "
                "LIKE 'CREATE UNIQUE INDEX % (dim_key)' UNION ALL SELECT indexname FROM "
                "pg_indexes WHERE indexname = 'partners_dim_key_ix'"
            ) == [("partners_uk",)]
    history = runs.history()
    assert len(history) == 2
    # a duplicate against an existing dimension: refused, nothing changed
    _partners(mysql_db, [(1, "N", "B", "X", "", 1), (1, "S", "B", "X", "", 1)])
    res = one(sync(cfg))
    assert res.status == "failed" and res.error and "partner_id=1" in res.error
    assert runs.history() == history


# --------------------------------------------------------------------------- replace


def _replace_config(mysql_db: MySQLDb, engine: tuple[Any, StageConfig], **kw: Any) -> Config:
    wh, stage = engine
    t: TableConfig = table("partners", strategy="full", batch_size=50, **kw)
    assert t.write_mode == "replace"
    return make_config(mysql_db, wh, stage, [t])


def _fill(mysql_db: MySQLDb, n: int, tag: str) -> None:
    _partners(mysql_db, [(i, "N", f"{tag}{i}", "c", "", 1) for i in range(n)])


def test_replace_refuses_a_shrunken_snapshot(
    mysql_db: MySQLDb, engine: tuple[Any, StageConfig]
) -> None:
    mysql_db.execute(PARTNERS_DDL)
    cfg = _replace_config(mysql_db, engine)
    _fill(mysql_db, 200, "a")
    assert one(sync(cfg)).status == "ok"
    _fill(mysql_db, 20, "b")  # 10 % of yesterday's rows
    res = one(sync(cfg))
    assert res.status == "failed"
    assert res.error and "20 rows, 10% of the 200" in res.error and "shrink_guard" in res.error
    with warehouse(cfg) as wh:
        names = [r[0] for r in wh.query("SELECT name FROM public.partners ORDER BY partner_id")]
    assert names == [f"a{i}" for i in range(200)]
    # an empty source is refused too; shrink_guard: 0 lets a planned shrink through
    mysql_db.execute("DELETE FROM partners")
    assert one(sync(cfg)).status == "failed"
    cfg = cfg.model_copy(update={"tables": [cfg.tables[0].model_copy(update={"shrink_guard": 0})]})
    assert one(sync(cfg)).status == "ok"
    with warehouse(cfg) as wh:
        assert wh.exact_rows("public", "partners") == 0


@pytest.mark.servers
def test_replace_reader_never_sees_an_empty_or_partial_table(
    mysql_db: MySQLDb, pg_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader loops on its own PostgreSQL connection while replaces run (one of them
    killed in its middle): every read sees one whole snapshot."""

    mysql_db.execute(PARTNERS_DDL)
    cfg = _replace_config(mysql_db, (pg_db.warehouse_config(), StageConfig(url=str(tmp_path))))
    _fill(mysql_db, 500, "g0-")
    assert one(sync(cfg)).status == "ok"
    seen: list[tuple[int, int]] = []
    stop = threading.Event()
    problems: list[BaseException] = []

    def read() -> None:
        try:
            with pg_db.connect() as conn:
                while not stop.is_set():
                    r = conn.execute(
                        "SELECT COUNT(*), COUNT(DISTINCT split_part(name, '-', 1)) "
                        "FROM public.partners"
                    ).fetchone()
                    assert r is not None
                    seen.append((int(r[0]), int(r[1])))
        except BaseException as exc:  # handed to the test thread
            problems.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for gen in range(1, 5):
            _fill(mysql_db, 500 + gen, f"g{gen}-")
            if gen == 2:  # killed after its third batch: the table keeps generation 1
                monkeypatch.setenv("TRACKLINE_FAIL_AT", "sync.before_commit@3")
                faults.reset()
                with pytest.raises(InjectedFault):
                    sync(cfg)
                monkeypatch.delenv("TRACKLINE_FAIL_AT")
            assert one(sync(cfg)).status == "ok"
    finally:
        stop.set()
        reader.join()
    assert not problems, problems
    assert len(seen) > 10
    whole = {(500 + g, 1) for g in range(5)}
    assert set(seen) <= whole, set(seen) - whole


# --------------------------------------------------------------------------- trackline sql


def _plan_config(tmp_path: Path, warehouse: dict[str, Any], stage: str) -> Config:
    import sqlite3

    db = tmp_path / "src.db"
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE partners (partner_id INTEGER, region TEXT, name TEXT, active BOOLEAN, "
        "updated_at DATETIME, PRIMARY KEY (partner_id, region))"
    )
    con.close()
    return Config.model_validate(
        {
            "sources": {"kuaisong": {"type": "sqlite", "path": str(db)}},
            "warehouse": warehouse,
            "stage": {"url": stage},
            "tables": [
                {
                    "name": "partners",
                    "target_schema": "dims",
                    "cdc": {"strategy": "full"},
                    "write_mode": "scd2",
                    "scd2": {"valid_from_column": "updated_at"},
                }
            ],
        }
    )


def test_sql_plans_show_the_scd2_statements_redshift_accepts(tmp_path: Path) -> None:
    from tests.redshift_checks import from_recorded, norm, redshift_problems
    from trackline.sqlplan import plan_statements

    cfg = _plan_config(
        tmp_path,
        {"type": "redshift", "host": "redshift.invalid", "user": "etl", "iam_role": "default"},
        "s3://tl-stage/prod",
    )
    sent = from_recorded(plan_statements(cfg, "sync"))
    checks = [s for s in from_recorded(plan_statements(cfg, "check")) if "partners" in s.sql]
    bad = {s.sql: p for s in [*sent, *checks] if (p := redshift_problems(s))}
    assert not bad, bad
    # the three checks' queries, each in the plan once
    assert sum("LAG(" in s.sql and 'FROM "dims"."partners"' in s.sql for s in checks) == 3
    text = [norm(s.sql) for s in sent]
    create = next(s for s in text if s.startswith('CREATE TABLE IF NOT EXISTS "DIMS"."PARTNERS" ('))
    assert create.endswith('DISTSTYLE ALL SORTKEY("PARTNER_ID", "REGION", "VALID_FROM")')
    for start in (
        'DELETE FROM "DIMS"."PARTNERS_STAGE"',  # this run's rows only (TRUNCATE commits)
        'CREATE TEMPORARY TABLE "_TL_SCD2_CHANGES" AS',  # the one pass over every row
        'UPDATE "DIMS"."PARTNERS" AS D SET "VALID_TO" = CASE WHEN C."PARTNER_ID" IS NULL',
        'INSERT INTO "DIMS"."PARTNERS" ("DIM_KEY", "PARTNER_ID"',  # open
        'DROP TABLE "_TL_SCD2_CHANGES"',
    ):
        assert any(s.startswith(start) for s in text), start
    changes = next(s for s in text if s.startswith('CREATE TEMPORARY TABLE "_TL_SCD2'))
    assert " FULL JOIN " in changes  # deletes: close (the default) on a full snapshot
    # the tracked columns compared NULL-safely, VARCHAR also by length (Redshift's `=` ignores
    # trailing blanks)
    assert 'LENGTH(D."NAME") <> LENGTH(X."NAME")' in changes
    assert 'D."NAME" IS NULL AND X."NAME" IS NOT NULL' in changes
    # the hashes of the rows that open a version only, fetched a page at a time, into a
    # temporary table the INSERT joins
    page = next(s for s in text if s.startswith('SELECT "_TL_N", "NAME", "ACTIVE"'))
    assert page.endswith('FROM "_TL_SCD2_CHANGES" WHERE "_TL_N" > ? AND "_TL_N" <= ? AND '
                         '"PARTNER_ID" IS NOT NULL')  # fmt: skip
    assert 'INSERT INTO "_TL_SCD2_HASHES" ("_TL_N", "ROW_HASH") SELECT' in " ".join(text)
    opens = next(s for s in text if s.startswith('INSERT INTO "DIMS"."PARTNERS"'))
    assert 'LEFT JOIN "_TL_SCD2_HASHES" AS H ON H."_TL_N" = C."_TL_N"' in opens
    apply = [
        s
        for s in sent
        if norm(s.sql).startswith(
            (
                'UPDATE "DIMS"',
                'INSERT INTO "DIMS"',
                'CREATE TEMPORARY TABLE "_TL_SCD2',
                'DROP TABLE "_TL_SCD2',
            )
        )
    ]
    # changes, hashes, close, open, two drops
    assert len(apply) == 6 and all(s.in_transaction for s in apply)
    assert all("IS DISTINCT" not in norm(s.sql) for s in apply)


@pytest.mark.servers
def test_sql_plans_of_sync_and_check_run_on_postgresql_in_compat_mode(
    tmp_path: Path, pg_db: Any
) -> None:
    from trackline.load.redshift import Redshift
    from trackline.sqlplan import plan_statements

    cfg = _plan_config(tmp_path, pg_db.redshift_compat(), "s3://tl-stage/prod")
    assert isinstance(cfg.warehouse, RedshiftWarehouse)
    wh = Redshift(cfg.warehouse)
    wh.connect()
    try:
        for command in ("sync", "check"):
            for s in plan_statements(cfg, command, compat=True):
                if not s.sql.startswith("COPY "):
                    wh.execute(s.sql, s.params)
        assert wh.column_names("dims", "partners")[-5:] == [
            "valid_from", "valid_to", "is_current", "row_hash", "closed_by_delete",
        ]  # fmt: skip
    finally:
        wh.close()


# --------------------------------------------------------------------------- history, checks


def test_dims_history_command_and_the_dimension_checks(
    mysql_db: MySQLDb, engine: tuple[Any, StageConfig], tmp_path: Path
) -> None:
    import json

    from click.testing import CliRunner

    from trackline.cli import main
    from trackline.quality.dims import dimension_checks
    from trackline.quality.run import run_checks

    mysql_db.execute(PARTNERS_DDL)
    cfg = _dim_config(mysql_db, engine)
    runs = Runs(mysql_db, cfg)
    _partners(mysql_db, FIRST)
    runs.sync()
    _partners(mysql_db, [(1, "N", "A2", "X", "", 1), *FIRST[1:3]])  # 1 changed, 4 deleted
    runs.sync()
    _partners(mysql_db, [(1, "N", "A2", "X", "", 1), *FIRST[1:]])  # 4 returns
    runs.sync()

    path = write_config(tmp_path / "c.yml", cfg)
    out = CliRunner().invoke(main, ["dims", "history", "-c", str(path), "partners", "1", "N"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == "public.partners (partner_id=1, region=N): 2 version(s)"
    assert lines[1].split()[:6] == [
        "dim_key", "valid_from", "valid_to", "is_current", "row_hash", "closed_by_delete",
    ]  # fmt: skip
    assert [ln.split()[0] for ln in lines[2:]] == ["1", "5"]
    out = CliRunner().invoke(
        main, ["dims", "history", "-c", str(path), "--json", "partners", "4", "S"]
    )
    assert out.exit_code == 0, out.output
    versions = json.loads(out.output)["versions"]
    assert [(v["dim_key"], v["is_current"], v["closed_by_delete"]) for v in versions] == [
        (4, False, True),
        (6, True, False),
    ]
    bad = CliRunner().invoke(main, ["dims", "history", "-c", str(path), "partners", "1"])
    assert bad.exit_code == 2 and "give one value for each" in bad.output

    def failing() -> dict[str, list[str]]:
        with warehouse(cfg) as wh:
            report = run_checks(cfg, wh, send_alerts=False, checks=dimension_checks(cfg, wh))
        names = [r.name for r in report.results]
        assert names == [f"dims.partners.{w}" for w in ("current_version", "overlap", "gap")]
        assert not [r.error for r in report.results if r.error]
        return {r.name.rsplit(".", 1)[1]: r.sample_keys for r in report.results if r.failed}

    assert failing() == {}  # key 4's gap (deleted, then back) is no gap
    with warehouse(cfg) as wh:
        rows = wh.query("SELECT dim_key, valid_to FROM public.partners WHERE dim_key = 1")
        end = rows[0][1]
        later, earlier = end + dt.timedelta(hours=1), end - dt.timedelta(hours=1)

        def change(sql: str, params: tuple[Any, ...] = ()) -> None:
            with wh.transaction():
                wh.execute(sql, params)

        change("UPDATE public.partners SET is_current = TRUE WHERE dim_key = 1")
        assert failing() == {"current_version": ["1"]}
        change("UPDATE public.partners SET is_current = FALSE WHERE dim_key = 1")
        change("UPDATE public.partners SET valid_to = ? WHERE dim_key = 1", (later,))
        assert failing() == {"overlap": ["5"]}
        change("UPDATE public.partners SET valid_to = ? WHERE dim_key = 1", (earlier,))
        assert failing() == {"gap": ["5"]}
        change("UPDATE public.partners SET valid_to = ? WHERE dim_key = 1", (end,))
        change("UPDATE public.partners SET is_current = FALSE WHERE dim_key = 5")
        assert failing() == {"current_version": ["5"]}


def test_scd2_with_a_cdc_cursor_applies_only_the_changed_rows(
    mysql_db: MySQLDb, engine: tuple[Any, StageConfig]
) -> None:
    """cdc hybrid: each run stages only the rows changed since the watermark; members not read
    again stay current (no delete is inferred from an incremental read)."""
    mysql_db.execute(
        PARTNERS_DDL.replace("updated_at DATETIME(6)", "updated_at DATETIME(6) NOT NULL")
    )
    wh, stage = engine
    t = table(
        "partners",
        strategy="hybrid",
        cursor="updated_at",
        id="partner_id",
        write_mode="scd2",
        scd2={"natural_key": ["partner_id", "region"], "valid_from_column": "updated_at"},
    )
    cfg = make_config(mysql_db, wh, stage, [t])
    t0 = dt.datetime(2024, 1, 1, 8, 0, 0)
    mysql_db.executemany(
        "INSERT INTO partners VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [
            (1, "N", "A", "X", "", 1, t0),
            (2, "N", "B", None, "", 1, t0),
            (3, "S", "C", "", "", 0, t0),
        ],
    )
    runs = Runs(mysql_db, cfg)
    runs.sync()
    t1 = t0 + dt.timedelta(hours=1)
    mysql_db.execute("UPDATE partners SET city = 'Y', updated_at = %s WHERE partner_id = 2", (t1,))
    mysql_db.execute("INSERT INTO partners VALUES (4, 'S', 'D', 'Z', '', 1, %s)", (t1,))
    runs.sync()
    runs.sync()  # nothing new: nothing changes
    with warehouse(cfg) as wh_:
        rows = wh_.query(
            "SELECT dim_key, partner_id, city, valid_from, valid_to, is_current "
            "FROM public.partners ORDER BY partner_id, valid_from"
        )
        assert wh_.exact_rows("public", "partners_stage") == 0  # the last run read nothing
    assert [tuple(r) for r in rows] == [
        (1, 1, "X", t0, FAR_FUTURE, True),
        (2, 2, None, t0, t1, False),
        (4, 2, "Y", t1, FAR_FUTURE, True),
        (3, 3, "", t0, FAR_FUTURE, True),
        (5, 4, "Z", t1, FAR_FUTURE, True),
    ]


def test_scd2_follows_a_widened_and_a_new_source_column(
    mysql_db: MySQLDb, engine: tuple[Any, StageConfig]
) -> None:
    """A longer VARCHAR reaches the dimension (Redshift sizes VARCHAR from the source: the
    dimension is ALTERed before the load); a new column is added and only members whose new
    value is not NULL open a version."""
    mysql_db.execute(PARTNERS_DDL)
    cfg = _dim_config(mysql_db, engine)
    runs = Runs(mysql_db, cfg)
    _partners(mysql_db, FIRST)
    runs.sync()
    mysql_db.execute("ALTER TABLE partners MODIFY name VARCHAR(300), ADD COLUMN tier VARCHAR(8)")
    long = "長" * 250
    mysql_db.execute("UPDATE partners SET name = %s WHERE partner_id = 1", (long,))
    mysql_db.execute("UPDATE partners SET tier = 'gold' WHERE partner_id = 2")
    runs.sync()
    assert runs.history() == [
        (1, 1, "N", "A", "X", 1, 1, 2, False, False),
        (5, 1, "N", long, "X", 1, 2, None, True, False),
        (2, 2, "N", "B", None, 1, 1, 2, False, False),
        (6, 2, "N", "B", None, 1, 2, None, True, False),
        (3, 3, "S", "C", "", 0, 1, None, True, False),
        (4, 4, "S", "D", "NULL", None, 1, None, True, False),
    ]
    with warehouse(cfg) as wh:
        tiers = wh.query("SELECT dim_key, tier FROM public.partners ORDER BY dim_key")
        # a staging table an older release made carries the row hash column: the next run
        # drops it (the hashes are computed in the apply now) and changes nothing else
        wh.execute("ALTER TABLE public.partners_stage ADD COLUMN _tl_row_hash VARCHAR(32)")
    assert [tuple(r) for r in tiers] == [
        (1, None), (2, None), (3, None), (4, None), (5, None), (6, "gold"),
    ]  # fmt: skip
    assert runs.wrong_hashes(("name", "city", "active", "tier")) == []
    history = runs.history()
    runs.sync()
    assert runs.history() == history
    with warehouse(cfg) as wh:
        assert "_tl_row_hash" not in wh.column_names("public", "partners_stage")


def test_migrate_rebuilds_the_dimension_with_a_widened_key(
    mysql_db: MySQLDb, engine: tuple[Any, StageConfig]
) -> None:
    """INT → BIGINT of the natural key: Redshift cannot ALTER it, so its sync stops and names
    `trackline migrate`; migrate (run first on the other engines) rebuilds the staging table
    and the dimension with the new type, every version kept; the next sync loads a key only
    BIGINT holds and the history goes on."""
    from trackline.marts.migrate import migrate

    mysql_db.execute(PARTNERS_DDL)
    cfg = _dim_config(mysql_db, engine)
    runs = Runs(mysql_db, cfg)
    _partners(mysql_db, FIRST)
    runs.sync()
    _partners(mysql_db, [(1, "N", "A2", "X", "n1", 1), *FIRST[1:]])
    runs.sync()
    before = runs.history()
    assert len(before) == 5
    mysql_db.execute("ALTER TABLE partners MODIFY partner_id BIGINT NOT NULL")
    big = 2**40
    if isinstance(engine[0], RedshiftWarehouse):
        res = one(sync(cfg))
        assert res.status == "failed" and "trackline migrate partners" in (res.error or "")
        assert runs.history() == before  # nothing changed
    with warehouse(cfg) as wh:
        done = migrate(cfg, wh, "partners")
        assert done.columns and "public.partners" in done.rebuilt, done
        specs = wh.column_specs("public", "partners")["partners"]
        assert specs["partner_id"].startswith("bigint"), specs
    assert runs.history() == before  # every version copied, the same surrogate keys
    mysql_db.execute(
        "INSERT INTO partners (partner_id, region, name, city, note, active, updated_at) "
        "VALUES (%s, 'N', 'Big', 'Z', 'n', 1, NOW(6))",
        (big,),
    )
    runs.sync()
    after = runs.history()
    assert after[:-1] == before and after[-1][:6] == (6, big, "N", "Big", "Z", 1)
    assert after[-1][-2:] == (True, False)
    with warehouse(cfg) as wh:  # the sync finds nothing left to widen
        assert not migrate(cfg, wh, "partners").columns


def test_row_hashes_of_values_read_back_from_the_warehouse_equal_the_sources(
    engine: tuple[Any, StageConfig],
) -> None:
    """The apply hashes the rows that open a version as it reads them back from the warehouse
    (`Warehouse.query_arrow`, in the source's Arrow types): the hashes must be those of the
    values as the source gave them, as earlier releases stored them."""
    import decimal

    import pyarrow as pa

    from trackline.dims.rowhash import row_hashes
    from trackline.load import Column, open_warehouse

    src = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "txt": pa.array(["é€x", "a ", None]),
            "n": pa.array([7, None, -1], pa.int32()),
            "d": pa.array(
                [decimal.Decimal("1.50"), None, decimal.Decimal("-0.05")], pa.decimal128(10, 2)
            ),  # fmt: skip
            "f": pa.array([1.1, None, 3.4e38], pa.float32()),
            "g": pa.array([0.1, 1e-300, None], pa.float64()),
            "b": pa.array([True, False, None]),
            "day": pa.array([dt.date(2024, 1, 2), None, dt.date(1999, 12, 31)]),
            "ts": pa.array(
                [dt.datetime(2024, 1, 1, 8, 0, 0, 123456), None, dt.datetime(2024, 2, 29)],
                pa.timestamp("us"),
            ),  # fmt: skip
            "tod": pa.array([dt.time(8, 0, 0, 5), dt.time(23, 59, 59), None], pa.time64("us")),
            "bin": pa.array([b"\x00\xff", b"", None]),
        }
    )
    cols = [Column.of(f) for f in src.schema]
    names = src.column_names[1:]
    wh = open_warehouse(engine[0])
    wh.connect()
    try:
        wh.ensure_schema("public")
        wh.create_table("public", "hashed", cols)
        marks = ", ".join("?" for _ in cols)
        for row in src.to_pylist():
            wh.execute(
                f"INSERT INTO {wh.t('public', 'hashed')} ({wh.cols(src.column_names)}) "
                f"VALUES ({marks})",
                list(row.values()),
            )
        fetched = wh.query_arrow(
            f"SELECT {', '.join(wh.fetchable(wh.q(c.name), c) for c in cols)} "
            f"FROM {wh.t('public', 'hashed')} ORDER BY {wh.q('id')}",
            (),
            src.schema,
        )
    finally:
        wh.close()
    assert fetched.to_pylist() == src.to_pylist()
    assert row_hashes(fetched, names).to_pylist() == row_hashes(src, names).to_pylist()


@pytest.mark.parametrize("deletes", ["close", "ignore"])
def test_scd2_shrink_guard_counts_the_current_versions(
    mysql_db: MySQLDb, engine: tuple[Any, StageConfig], deletes: str
) -> None:
    """The guard compares the snapshot with the dimension's current versions: with
    `deletes: close` the apply's changes join counts them (staged rows with a current version
    plus the ones it would close as deleted), with `ignore` a COUNT does; both say 10 here,
    whatever mix of unchanged, changed, new and gone members the snapshot holds."""
    mysql_db.execute(PARTNERS_DDL)
    cfg = _dim_config(mysql_db, engine, deletes=deletes)
    runs = Runs(mysql_db, cfg)
    _partners(mysql_db, [(i, "N", f"m{i}", "c", "", 1) for i in range(10)])
    runs.sync()
    before = runs.history()
    # 0, 1 unchanged; 2 changed; 10 new; 3..9 gone: 4 rows against 10 current versions
    snapshot = [(i, "N", "changed" if i == 2 else f"m{i}", "c", "", 1) for i in (0, 1, 2, 10)]
    _partners(mysql_db, snapshot)
    res = one(sync(cfg))
    assert res.status == "failed"
    assert res.error and "4 rows, 40% of the 10" in res.error and "shrink_guard" in res.error
    assert runs.history() == before
    # 6 of 10 (0..4 and the new 10, key 2 changed): above half, applied
    _partners(mysql_db, [(i, "N", "changed" if i == 2 else f"m{i}", "c", "", 1)
                         for i in (0, 1, 2, 3, 4, 10)])  # fmt: skip
    runs.sync()
    current = [h for h in runs.history() if h[8]]
    assert len(current) == (6 if deletes == "close" else 11)
