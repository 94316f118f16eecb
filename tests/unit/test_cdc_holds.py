"""The id hold's samples, the id strategy's bounded read, and the snapshot's cursor, as pure
logic (the interleavings on a real server are in tests/integration/test_sync_late_commits.py
and test_sync_behind.py)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from trackline.config import MySQLSource, TableConfig
from trackline.extract.cdc import CursorSpec, Watermark, plan_query
from trackline.extract.mysql import MySQL
from trackline.sync.batches import next_watermark

LIT = MySQL(MySQLSource(database="d")).lit
T0 = dt.datetime(2024, 5, 1, 12, 0, 0)
MINUTE = dt.timedelta(minutes=1)


def _id_plan(wm: Watermark, upper: object, nothing: bool = False) -> str:
    p = plan_query(
        select="`id`",
        relation="`t`",
        spec=CursorSpec("id", None, "`id`"),
        wm=wm,
        upper=upper,
        lit=LIT,
        nothing=nothing,
    )
    return p.sql.removeprefix("SELECT `id` FROM `t`")


def test_id_read_stops_at_the_held_id() -> None:
    assert _id_plan(Watermark(id=3), 6) == " WHERE `id` > 3 AND `id` <= 6 ORDER BY `id`"
    assert _id_plan(Watermark(), 6) == " WHERE `id` <= 6 ORDER BY `id`"
    assert _id_plan(Watermark(), None, nothing=True) == " WHERE 1 = 0 ORDER BY `id`"


def test_id_samples_round_trip_and_stay_bounded() -> None:
    wm = Watermark(id=5)
    spacing = dt.timedelta(seconds=60)
    for i in range(200):
        wm = wm.with_id_sample(
            T0 + i * dt.timedelta(seconds=20),
            10 + i,
            keep_after=T0 + i * dt.timedelta(seconds=20) - 60 * MINUTE,
            spacing=spacing,
        )
    samples = Watermark.from_json(wm.to_json()).id_samples()
    # one sample a minute at most, the last hour of them, plus the newest one before it
    assert 55 <= len(samples) <= 62
    gaps = [b[0] - a[0] for a, b in zip(samples, samples[1:], strict=False)]
    assert all(g >= spacing for g in gaps)
    assert samples[-1] == (T0 + 198 * dt.timedelta(seconds=20), 208)
    now = T0 + 199 * dt.timedelta(seconds=20)
    assert samples[0][0] <= now - 60 * MINUTE < samples[1][0]
    assert wm.id == 5  # the cursor itself is untouched


def test_big_ids_survive_in_samples() -> None:
    wm = Watermark().with_id_sample(T0, 2**64 - 1, keep_after=T0 - MINUTE, spacing=MINUTE)
    assert Watermark.from_json(wm.to_json()).id_samples() == [(T0, 2**64 - 1)]


def test_snapshot_carries_the_greatest_cursor_read_not_the_last_key() -> None:
    t = TableConfig.model_validate(
        {"name": "t", "cdc": {"strategy": "hybrid", "cursor": "ts", "id": "id"}}
    )
    upper = T0 + 60 * MINUTE
    first = pa.table(
        {"id": [1, 2, 3], "ts": [T0 + 5 * MINUTE, T0 + 9 * MINUTE, T0 + MINUTE]},
    )
    wm = next_watermark(t, first, Watermark(), "snapshot", upper, "id")
    assert (wm.phase, wm.snapshot_key, wm.ts, wm.id) == ("snapshot", 3, T0 + 9 * MINUTE, 2)
    # a later batch: a tie on the greatest time with a higher id, NULL cursors ignored
    second = pa.table(
        {"id": [4, 5, 6], "ts": [T0 + 9 * MINUTE, None, T0 + 2 * MINUTE]},
    )
    wm = next_watermark(t, second, wm, "snapshot", upper, "id")
    assert (wm.snapshot_key, wm.ts, wm.id) == (6, T0 + 9 * MINUTE, 4)
    assert wm.snapshot_upper == upper
