"""G7 for every command that reads rows: peak memory follows the batch, not the table.

Each command runs as a child process (the CLI, as an operator runs it) against a MariaDB
table of SMALL rows and then of BIG = 6 × SMALL rows of ~4 KB each, with the same batch
size, into PostgreSQL (whose memory is the server's, not the child's), and its peak RSS is
read by the child itself at exit (`VmHWM`). The extra 5 × SMALL rows are ~200 MB as Arrow;
a command that held the table (or a table-sized list of its rows) would grow by at least
that. The growth allowed is a third of it: room for the allocator's and the interpreter's
drift, far below what any table-sized buffer costs. A control child that reads the whole
table at once shows that the measurement sees such a buffer.

Commands: sync with `hybrid` (the initial snapshot) into an append raw table; `full` into a
`replace` table; an `scd2` dimension (`timestamp` and `id` tables read through the same
windows: tests/integration/test_sync_windows.py); `replay` of the staged batches; `backfill
run` (one monthly chunk holding every row: a chunk commits whole, but is read and loaded by
batch); `consolidate` (one query input); `compare` with every row differing (the differing
parts are fetched at most `chunk` rows at a time). Before `defaults.read_window_batches` the
three syncs grew by 90-100 MB from 10,000 to 40,000 rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    MySQLDb,
    PgDb,
    _mysql_admin,
    _mysql_drop,
    _mysql_host_port,
    _mysql_server,
    _require_server,
    _unique_name,
)

SMALL, BIG = 10_000, 60_000
BATCH = 500
PAYLOAD = 2_000  # characters in each of the two text columns
EXTRA_MB = (BIG - SMALL) * 2 * PAYLOAD / 1e6  # ~200 MB more rows in the big table
ALLOWED_MB = EXTRA_MB / 3

DDL = f"""
CREATE TABLE ev (
  id BIGINT NOT NULL PRIMARY KEY,
  order_id BIGINT NOT NULL,
  update_time DATETIME NOT NULL,
  payload VARCHAR({PAYLOAD}) NOT NULL,
  other VARCHAR({PAYLOAD}) NOT NULL,
  KEY ix_time (update_time, id)
)
"""


def _fill(conn: Any, n: int) -> None:
    with conn.cursor() as cur:
        cur.execute(DDL)
        cur.execute(
            "INSERT INTO ev SELECT seq, seq DIV 3, "
            "TIMESTAMP'2026-03-01 00:00:00' + INTERVAL seq SECOND, "
            f"REPEAT(CHAR(65 + seq MOD 26), {PAYLOAD}), REPEAT(CHAR(97 + seq MOD 26), {PAYLOAD}) "
            f"FROM seq_1_to_{n}"
        )
        cur.execute("ANALYZE TABLE ev")


@pytest.fixture(scope="module")
def sources() -> Iterator[dict[int, MySQLDb]]:
    """Two MariaDB databases with the same table `ev`, SMALL and BIG rows; only read."""
    server = _mysql_server()
    _require_server(server)
    host, port = _mysql_host_port()
    out: dict[int, MySQLDb] = {}
    try:
        for n in (SMALL, BIG):
            name = _unique_name()
            with _mysql_admin(host, port) as admin, admin.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            db = MySQLDb(host=host, port=port, user="root", password="", database=name)
            out[n] = db
            _fill(db.conn, n)
        yield out
    finally:
        for db in out.values():
            db.close()
            _mysql_drop(host, port, db.database)


def _config(src: MySQLDb, pg: PgDb, stage: Path, job: str) -> dict[str, Any]:
    mysql = src.source_dict()
    cfg: dict[str, Any] = {
        "sources": {"prod": mysql, "legacy": mysql},
        "warehouse": {
            "type": "postgres",
            "host": pg.host,
            "port": pg.port,
            "user": pg.user,
            "database": pg.database,
        },
        "stage": {"url": str(stage)},
        "defaults": {"batch_size": BATCH, "lag_seconds": 0, "read_window_batches": 2},
        "tables": [],
    }
    table: dict[str, Any] = {"name": "ev", "source": "prod", "target_schema": "raw"}
    if job in ("sync", "replay", "backfill", "compare"):
        table["cdc"] = {"strategy": "hybrid", "cursor": "update_time", "id": "id"}
    if job == "compare":
        table["write_mode"] = "merge"  # the table compared is `raw.ev`
    elif job == "full":
        table.update(cdc={"strategy": "full"}, write_mode="replace")
    elif job == "scd2":
        table.update(cdc={"strategy": "full"}, write_mode="scd2", scd2={"natural_key": ["id"]})
    if job != "consolidate":
        cfg["tables"] = [table]
    if job == "backfill":
        cfg["backfill"] = {
            "source": "legacy",
            "chunk": "month",
            "batch_size": BATCH,
            "workers": 1,
            "tables": [{"table": "ev", "source_table": "ev"}],
        }
    if job == "consolidate":
        cfg["consolidations"] = [
            {
                "name": "detail",
                "target_schema": "cons",
                "target_table": "detail",
                "key": ["event_id"],
                "inputs": [
                    {
                        "name": "ev",
                        "source": "prod",
                        "query": "SELECT id AS event_id, order_id, update_time, payload FROM ev",
                        "cdc": {"cursor": "update_time", "id": "event_id"},
                        "batch_size": BATCH,
                        "lag_seconds": 0,
                    }
                ],
            }
        ]
    if job == "compare":
        cfg["compare"] = {
            "legacy": "legacy",
            "tables": [
                {
                    "name": "ev",
                    "legacy_table": "ev",
                    "table": "ev",
                    "schema": "raw",
                    "history": False,
                    "key": ["id"],
                    "columns": ["payload"],
                    # every row differs: the legacy side's `payload` is the other text
                    "legacy_columns": {"payload": "other"},
                    "chunk": BATCH,
                }
            ],
        }
    return cfg


HWM = """
import atexit, os


def _hwm():
    with open("/proc/self/status") as f:
        peak = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(os.environ["TL_HWM_FILE"], "w") as out:
        out.write(peak)


atexit.register(_hwm)
"""
"""Prefix of every child: at exit it writes its own peak RSS (VmHWM, in kB) to a file. (The
kernel's `ru_maxrss` of a child counts the parent's RSS at the fork: a pytest worker of
460 MB would hide what the child itself used.)"""


def _child(args: list[str], cwd: Path) -> tuple[int, float, str]:
    """Run the CLI (or, for the control, a script) in a child; its exit code, peak RSS in MB
    and output."""
    script = HWM + (args[1] if args[0] == "-c" else "from trackline.cli import main\nmain()\n")
    rest = args[2:] if args[0] == "-c" else args
    hwm = cwd / "child.hwm"
    hwm.unlink(missing_ok=True)
    env = {**os.environ, "TL_HWM_FILE": str(hwm)}
    p = subprocess.run(
        [sys.executable, "-c", script, *rest],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert hwm.exists(), f"{args}: the child wrote no peak ({p.returncode}):\n{p.stdout}"
    return p.returncode, int(hwm.read_text()) / 1024, p.stdout


def _reset(pg: PgDb) -> None:
    """Drop what the previous size wrote, so both sizes start from an empty warehouse."""
    schemas = pg.query(
        "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
        "AND nspname NOT IN ('information_schema', 'public')"
    )
    for (s,) in schemas:
        pg.execute(f'DROP SCHEMA "{s}" CASCADE')


COMMANDS = {
    "sync": [["sync"]],
    "full": [["sync"]],
    "scd2": [["sync"]],
    "replay": [["sync"], ["replay", "ev"]],
    "backfill": [["backfill", "run"]],
    "consolidate": [["consolidate"]],
    "compare": [["sync"], ["compare", "--table", "ev", "--no-save"]],
}
"""Per job: the commands run in order; the last one is measured."""


@pytest.mark.parametrize("job", sorted(COMMANDS))
def test_peak_memory_follows_the_batch_not_the_table(
    job: str, sources: dict[int, MySQLDb], pg_db: PgDb, tmp_path: Path
) -> None:
    peaks: dict[int, float] = {}
    for n in (SMALL, BIG):
        _reset(pg_db)
        work = tmp_path / str(n)
        work.mkdir()
        (work / "trackline.yml").write_text(
            json.dumps(_config(sources[n], pg_db, work / "stage", job))
        )
        for i, args in enumerate(COMMANDS[job]):
            code, peak, text = _child(args, work)
            # compare exits 1 when the gate fails, which it must here (every row differs)
            expected = 1 if args[0] == "compare" else 0
            assert code == expected, f"{job} {n}: {' '.join(args)} exited {code}:\n{text}"
            if i == len(COMMANDS[job]) - 1:
                peaks[n] = peak
    growth = peaks[BIG] - peaks[SMALL]
    print(
        f"{job}: peak RSS {peaks[SMALL]:.0f} MB at {SMALL:,} rows, {peaks[BIG]:.0f} MB at {BIG:,}"
    )
    assert growth < ALLOWED_MB, (
        f"{job}: peak RSS grew by {growth:.0f} MB from {SMALL:,} to {BIG:,} rows "
        f"(allowed {ALLOWED_MB:.0f} MB of the {EXTRA_MB:.0f} MB more rows): {peaks}"
    )


CONTROL = """
import sys
import connectorx as cx
t = cx.read_sql(sys.argv[1], "SELECT * FROM ev", return_type="arrow")
print(t.num_rows)
"""


def test_the_measurement_sees_a_table_sized_buffer(
    sources: dict[int, MySQLDb], tmp_path: Path
) -> None:
    """The control: a child that reads the whole table at once grows by more than allowed
    (so the bound above is one a table-sized buffer breaks)."""
    peaks = {}
    for n in (SMALL, BIG):
        s = sources[n]
        url = f"mysql://{s.user}@{s.host}:{s.port}/{s.database}"
        code, peak, text = _child(["-c", CONTROL, url], tmp_path)
        assert code == 0 and text.strip() == str(n), text
        peaks[n] = peak
    assert peaks[BIG] - peaks[SMALL] > ALLOWED_MB, peaks
