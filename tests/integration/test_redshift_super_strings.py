"""A string inside a SUPER document longer than 65,535 bytes (Redshift's limit for one string
value in SUPER), end to end in compat mode on the real PostgreSQL and the moto S3 stage:

- ``varchar_policy: error`` (the default): the sync stops naming table, column and row, nothing
  of the batch is loaded and the watermark stays;
- ``varchar_policy: truncate``: the batch loads with that string cut at a character boundary,
  the rest of the document intact, and the cut is reported in the run's warnings;
- the COPY into the SUPER table says ``FORMAT AS PARQUET SERIALIZETOJSON``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PgDb, S3Endpoint
from tests.integration.marts_helpers import Source, day
from tests.integration.test_redshift_super import TRIGGERS, _spath_config
from trackline.load.redshift import Redshift
from trackline.sync import sync

LONG = "派" * 23_334  # 70,002 bytes in UTF-8


def _source(tmp_path: Path) -> Source:
    source = Source(tmp_path / "src.db")
    source.con.executescript(TRIGGERS)
    for o in range(1, 5):
        source.touch(o, day(0) + o)
    doc = json.dumps({"code": 7, "note": LONG, "list": [1.25, "ok"]}, ensure_ascii=False)
    source.con.execute("UPDATE uni_tracking_spath SET extra = ? WHERE order_id = 3", (doc,))
    source.clock(day(1))
    return source


def test_a_long_string_in_a_document_follows_varchar_policy(
    tmp_path: Path, pg_db: PgDb, s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies: list[tuple[str, bool]] = []
    real = Redshift._copy_manifest

    def spy(self: Redshift, target: str, names: list[str], manifest: str, **kw: Any) -> None:
        copies.append((self.copy_sql(target, names, manifest, **kw), kw.get("documents", False)))
        real(self, target, names, manifest, **kw)

    monkeypatch.setattr(Redshift, "_copy_manifest", spy)
    source = _source(tmp_path)
    try:
        cfg = _spath_config(pg_db.redshift_compat(json_as="super"), source.path, s3)
        (res,) = sync(cfg)
        assert res.status == "failed"
        msg = res.error or ""
        assert "raw.uni_tracking_spath_raw: column 'extra', row 2 of the batch" in msg, msg
        assert "string value of 70,002 bytes" in msg and "65,535" in msg
        assert "varchar_policy: truncate" in msg and "派" not in msg
        assert copies == []
        assert pg_db.query("SELECT COUNT(*) FROM raw.uni_tracking_spath_raw") == [(0,)]

        cut = _spath_config(
            pg_db.redshift_compat(json_as="super", varchar_policy="truncate"), source.path, s3
        )
        (res,) = sync(cut)
        assert res.status == "ok" and res.rows == 4
        assert any("were cut at a character boundary" in w for w in res.warnings), res.warnings
        ((doc,),) = pg_db.query("SELECT extra FROM raw.uni_tracking_spath_raw WHERE order_id = 3")
        assert doc == {"code": 7, "note": "派" * 21_845, "list": [1.25, "ok"]}  # 65,535 bytes
        # the raw table's COPY (through a transient file: a string was cut) serializes to JSON
        assert copies and all(documents for _, documents in copies)
        assert all("FORMAT AS PARQUET SERIALIZETOJSON\nMANIFEST" in sql for sql, _ in copies)
    finally:
        source.close()
