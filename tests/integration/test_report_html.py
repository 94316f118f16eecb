"""`trackline report --html`: a self-contained page that renders in a real headless Chromium.

Debian's chromium is installed by `scripts/browser.sh` (called by `scripts/test.sh`). Without
it the test is skipped, except under CI=true, where it fails.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
import struct
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import MySQLDb, PgDb
from tests.integration.quality_world import ECS, MART, UTI, UTS, World, day
from tests.integration.synctools import warehouse
from trackline.cli import main
from trackline.config import DuckDBWarehouse, PostgresWarehouse
from trackline.quality.html import ReportData, collect, render
from trackline.quality.run import run_checks

CHROMIUM = Path("/usr/bin/chromium")
BLUE = (0x25, 0x63, 0xEB)  # ok bars, first series
RED = (0xDC, 0x26, 0x26)  # failed cycles, open exceptions
ORANGE = (0xF9, 0x73, 0x16)  # second series


def chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"{CHROMIUM} is missing (scripts/browser.sh installs Debian's chromium)"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{message}; CI=true: the browser test must run", pytrace=False)
    pytest.skip(message)


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) with the stdlib."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = bpp = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        start = y * (stride + 1)
        f, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, bpp, rows


def count(rows: list[bytes], bpp: int, rgb: tuple[int, int, int]) -> int:
    n = 0
    for line in rows:
        for i in range(0, len(line), bpp):
            if all(abs(line[i + k] - rgb[k]) <= 6 for k in range(3)):
                n += 1
    return n


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = chromium()
    w = World(tmp_path, DuckDBWarehouse(path=tmp_path / "wh.duckdb")).build()
    try:
        # a failed cycle (red bar) and an open exception (red bar) to show
        con = sqlite3.connect(w.src_path)
        con.execute("ALTER TABLE ecs_order_info RENAME TO ecs_gone")
        con.commit()
        assert not w.step(day(47)).ok
        con.execute("ALTER TABLE ecs_gone RENAME TO ecs_order_info")
        con.commit()
        con.close()
        w.touch(50, day(47) + 60)
        assert w.step(day(48)).ok
        w.wh.execute(f"DELETE FROM {w.t(ECS)} WHERE order_id = 6")
        run_checks(w.cfg, w.wh)
        data = collect(w.cfg, w.wh)
        # what the charts draw: rows per table, sizes of marts and history, freshness lag
        assert len(data.cycles) == 7 and data.cycles[-1]["status"] == "ok"
        last = data.cycles[-1]
        assert last["rows"]["raw.uni_tracking_info_raw"] == 1
        assert last["sizes"]["mart.mart_uni_tracking_info_hist"] >= 1
        assert last["freshness"]["order_tracking"] == pytest.approx(day(48) - (day(47) + 60))
        assert data.open_exceptions["order_tracking.has_row.mart_ecs_order_info"] == 1
    finally:
        w.close()
    cfg_path = tmp_path / "trackline.yml"
    cfg_path.write_text(yaml.safe_dump(w.data))
    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", "-c", str(cfg_path), "--html", str(out)])
    assert result.exit_code == 0, result.output

    page = out.read_text()
    # self-contained: no script, no stylesheet link, no URL of any kind
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert not re.search(r"https?://", page)
    assert page.count("<svg") == 5
    for title in (
        "Rows moved per cycle",
        "Cycle duration",
        "Freshness lag",
        "Mart and history sizes",
        "Open exceptions by check",
    ):
        assert title in page

    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [
            str(browser),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--window-size=1000,2400",
            f"--screenshot={shot}",
            out.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    width, bpp, rows = png_pixels(shot)
    assert width == 1000
    # the charts were drawn: blue series/bars and red failure bars are on the page
    assert count(rows, bpp, BLUE) > 500
    assert count(rows, bpp, RED) > 200


def dump_dom(browser: Path, page: Path, tmp_path: Path) -> str:
    proc = subprocess.run(
        [
            str(browser),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_postgres_size_estimate_counts_the_sessions_own_latest_writes(pg_db: PgDb) -> None:
    """PostgreSQL 15+ flushes a session's table counts at most once a second: a read right
    after a second write in the same session would miss it (the cycle reads its sizes in
    its own session right after writing the marts)."""
    from trackline.load import open_warehouse

    wh = open_warehouse(
        PostgresWarehouse(
            host=pg_db.host, port=pg_db.port, user=pg_db.user, database=pg_db.database
        )
    )
    wh.connect()
    try:
        wh.execute("CREATE TABLE public.grow (a INT)")
        time.sleep(1.1)  # the next write's counts are flushed as it ends (a second passed)
        for n in range(1, 4):  # ... and the next ones' are not, unless forced
            wh.execute("INSERT INTO public.grow SELECT g FROM generate_series(1, 1000) AS g")
            assert wh.approx_rows("public", "grow") == 1000 * n
        wh.execute("DELETE FROM public.grow WHERE a <= 500")
        assert wh.approx_rows("public", "grow") == 1500
    finally:
        wh.close()


def test_report_on_postgres_with_stale_statistics(tmp_path: Path, pg_db: PgDb) -> None:
    """PostgreSQL's reltuples lags until the next ANALYZE: with autovacuum off, a mart analysed
    when it held a handful of rows and grown since must not be reported at that size. The
    report labels per-cycle sizes as estimates and prints exact counts; Chromium shows each
    chart with its points (DOM) and the two series of identical values both visibly (pixels)."""
    browser = chromium()
    wh_cfg = PostgresWarehouse(
        host=pg_db.host, port=pg_db.port, user=pg_db.user, database=pg_db.database
    )
    w = World(tmp_path, wh_cfg).build()
    try:
        for table in (UTI, ECS, UTS):
            w.wh.execute(f"ALTER TABLE {w.t(table)} SET (autovacuum_enabled = false)")
            w.wh.execute(f"ANALYZE {w.t(table)}")
        stale = int(
            w.wh.scalar(
                "SELECT reltuples FROM pg_class WHERE relname = ?", ("mart_uni_tracking_info",)
            )
        )
        # 3,000 new orders, grown well past what the last ANALYZE saw
        for o in range(100, 3100):
            w.touch(o, day(47) + o % 50)
        assert w.step(day(48)).ok
        assert w.step(day(48) + 2).ok
        w.touch(5000, day(48) + 100)
        assert w.step(day(48) + 180).ok
        data = collect(w.cfg, w.wh)
        exact = int(w.wh.scalar(f"SELECT COUNT(*) FROM {w.t(UTI)}"))
        assert exact > 3000 > 10 * max(stale, 1)
        shown = data.cycles[-1]["sizes"][f"{MART}.{UTI}"]
        assert abs(shown - exact) <= 0.2 * exact, (shown, exact, stale)
        assert data.sizes_estimated and data.engine == "postgres"
        assert data.exact_sizes[f"{MART}.{UTI}"] == exact
        assert data.exact_sizes[f"{MART}.{UTS}"] == int(
            w.wh.scalar(f"SELECT COUNT(*) FROM {w.t(UTS)}")
        )
    finally:
        w.close()
    out = tmp_path / "report.html"
    out.write_text(render(data), encoding="utf-8")
    page = out.read_text()
    assert "Mart and history sizes (estimates)" in page and f"{exact:,}" in page

    dom = dump_dom(browser, out, tmp_path)
    charts = re.findall(r'<svg[^>]*data-points="(\d+)"[^>]*aria-label="([^"]+)"', dom)
    # four time charts, each with points; no exception is open, and the page says so
    assert len(charts) == 4, charts
    assert "no open exceptions" in dom
    for points, title in charts:
        assert int(points) > 0, title
    # every line chart draws a polyline per series, with as many points as cycles shown
    for line in re.findall(r'<polyline class="series"[^>]*points="([^"]*)"', dom):
        assert len(line.split()) >= 2


def test_identical_series_stay_visible(tmp_path: Path) -> None:
    """Two tables moving the same rows every cycle draw two lines on the same points: the
    second must not hide the first (both colours on the screenshot)."""
    browser = chromium()
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cycles = [
        {
            "started_at": t0 + dt.timedelta(minutes=15 * i),
            "seconds": 1.0,
            "status": "failed",  # red bars: blue is then only the first series' line
            "rows": {"raw.a": 100 + i, "raw.b": 100 + i},
            "sizes": {},
            "freshness": {},
        }
        for i in range(8)
    ]
    out = tmp_path / "same.html"
    out.write_text(render(ReportData(t0, cycles=cycles)), encoding="utf-8")
    shot = tmp_path / "same.png"
    proc = subprocess.run(
        [
            str(browser),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--window-size=1000,600",
            f"--screenshot={shot}",
            out.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    _, bpp, rows = png_pixels(shot)
    blue, orange = count(rows, bpp, BLUE), count(rows, bpp, ORANGE)
    # the first series, under the second: ~800 px here; hidden, only ~260 (legend + edges)
    assert blue > 500, (blue, orange)
    assert orange > 500, (blue, orange)


def test_time_axis_places_cycles_by_their_start_time() -> None:
    """Two cycles 2 s apart sit close together, the next, 2 minutes later, far to the right:
    one slot per cycle would draw both gaps the same."""
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    starts = [t0, t0 + dt.timedelta(seconds=2), t0 + dt.timedelta(seconds=122)]
    cycles = [
        {
            "started_at": s,
            "seconds": 1.0,
            "status": "ok",
            "rows": {"raw.a": 10},
            "sizes": {},
            "freshness": {},
        }
        for s in starts
    ]
    page = render(ReportData(t0, cycles=cycles))
    bars = [
        float(x) + float(w) / 2
        for x, w in re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', page)
    ]
    assert len(bars) == 3
    assert bars[2] - bars[1] > 40 * (bars[1] - bars[0]) > 0, bars
    dots = [float(x) for x in re.findall(r'<circle class="point" cx="([\d.]+)"', page)]
    assert dots == pytest.approx(bars, abs=0.2)


@pytest.mark.parametrize("kind", ["duckdb", pytest.param("postgres", marks=pytest.mark.servers)])
def test_consolidation_runs_in_the_report(
    tmp_path: Path, mysql_db: MySQLDb, request: pytest.FixtureRequest, kind: str
) -> None:
    """Real consolidation runs (two ok hours, one failed run with an input's table renamed)
    are drawn like the cycles: rows read per input and merged, the duration with the failed
    run in red, and the latest runs with their status, rows and error."""
    from tests.integration.test_consolidate import Hours, setup
    from trackline.config import StageConfig
    from trackline.consolidate import consolidate

    browser = chromium()
    stage = StageConfig(url=str(tmp_path / "s"))
    wh_cfg: Any = (
        DuckDBWarehouse(path=tmp_path / "wh.duckdb")
        if kind == "duckdb"
        else request.getfixturevalue("pg_db").warehouse_config()
    )
    cfg = setup(mysql_db, (wh_cfg, stage))
    hours = Hours(mysql_db)
    results = []
    for h in (1, 2, 3):
        hours.hour(h)
        if h == 3:
            mysql_db.execute("RENAME TABLE uni_tracking_addon_spath TO addon_gone")
        with warehouse(cfg) as wh:
            results += consolidate(cfg, wh)
    assert [r.status for r in results] == ["ok", "ok", "failed"]
    with warehouse(cfg) as wh:
        data = collect(cfg, wh)
    runs = data.consolidations["parcel_detail"]["runs"]
    assert [r["status"] for r in runs] == ["ok", "ok", "failed"]  # oldest first
    assert [r["merged"] for r in runs] == [r.merged for r in results]
    assert runs[0]["inputs"] == {"spath": 8, "addon": 2}

    out = tmp_path / "report.html"
    out.write_text(render(data), encoding="utf-8")
    page = out.read_text()
    assert "Consolidation rows per run" in page and "Consolidation duration" in page
    dom = dump_dom(browser, out, tmp_path)
    charts = dict(
        (title, int(points))
        for points, title in re.findall(
            r'<svg[^>]*data-points="(\d+)"[^>]*aria-label="([^"]+)"', dom
        )
    )
    # merged + two inputs over three runs (the failed run read nothing: 0 per input)
    assert charts["Consolidation rows per run (read per input, merged)"] == 9
    assert charts["Consolidation duration"] == 3
    lines = re.findall(r'<polyline class="series" data-series="([^"]+)"', dom)
    assert {"parcel_detail merged", "parcel_detail.spath read", "parcel_detail.addon read"} <= set(
        lines
    )
    # one red bar: the failed run
    assert len(re.findall(r'class="bar bad"', dom)) == 1
    table = dom.split("Consolidations: the latest runs", 1)[1].split("</table>", 1)[0]
    statuses = re.findall(r'<td class="(pass|fail)">(ok|failed)</td>', table)
    assert [s for _, s in statuses] == ["failed", "ok", "ok"]  # newest first
    assert f"{results[1].merged:,}" in table and "spath 8, addon 2" in table
    assert "uni_tracking_addon_spath" in table  # the failed run's error names the input
