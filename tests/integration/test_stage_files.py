"""A batch staged as several similar-sized files (for parallel COPY), locally and on S3."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest

from trackline.config import StageConfig
from trackline.stage import Stage

WHEN = dt.datetime(2026, 3, 4, 5, 6, 7)


def _batch(n: int) -> pa.Table:
    return pa.table({"id": pa.array(range(n), pa.int64()), "s": [f"row {i}" for i in range(n)]})


def _check(stage: Stage, n: int, parts: int) -> None:
    staged = stage.write_batch(
        source_db="kuaisong",
        schema="settlement_public",
        table="t_raw",
        batch_id=7,
        data=_batch(n),
        when=WHEN,
    )
    assert len(staged.uris) == parts
    assert all(
        "/kuaisong/settlement_public/t_raw/year=2026/month=03/day=04/" in u for u in staged.uris
    )
    manifest = json.loads(stage.read_bytes(staged.manifest_uri or ""))
    entries = manifest["entries"]
    assert [e["url"] for e in entries] == list(staged.uris)
    counts = [e["meta"]["record_count"] for e in entries]
    assert sum(counts) == n and max(counts) - min(counts) <= 1  # similar sizes
    for e in entries:  # what Redshift needs: the real object size
        assert e["meta"]["content_length"] == len(stage.read_bytes(e["url"]))
    assert stage.read(list(staged.uris)).equals(_batch(n))
    for u in staged.uris:
        stage.delete(u)
    assert stage.list() == []
    assert not stage.exists(staged.manifest_uri or "")


@pytest.mark.parametrize(("n", "files", "parts"), [(10, 1, 1), (10, 4, 4), (3, 8, 3)])
def test_local_stage_splits_batches(tmp_path: Path, n: int, files: int, parts: int) -> None:
    _check(Stage(StageConfig(url=str(tmp_path / "stage"), files_per_batch=files)), n, parts)


def test_s3_stage_splits_batches(s3) -> None:  # noqa: ANN001
    cfg = s3.stage_config("stage").model_copy(update={"files_per_batch": 4})
    _check(Stage(cfg), 1001, 4)
