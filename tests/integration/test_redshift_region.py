"""The S3 stage bucket must be in the Redshift cluster's region (COPY from Parquet accepts no
REGION parameter): checked before the first COPY, against the moto S3 server, whose buckets
keep the location constraint they were created with.

- a bucket in eu-west-1 for a cluster in us-east-1 (``warehouse.region``, or the region in the
  endpoint's host name) stops the sync with an error naming the bucket, both regions and the
  config keys; nothing is loaded and no COPY is sent;
- a bucket in the cluster's region loads as before;
- what cannot be told (a host name without a region, no ``warehouse.region``; S3 refusing to
  say) is a notice, not an error.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PgDb, S3Endpoint
from tests.integration.marts_helpers import Source, day
from trackline.config import Config, RedshiftWarehouse, StageConfig
from trackline.errors import ConfigError
from trackline.load.redshift import Redshift
from trackline.load.s3region import check_stage_region, cluster_region
from trackline.sync import sync

ROLE = "arn:aws:iam::123456789012:role/trackline-copy"


@pytest.fixture
def eu_bucket(s3: S3Endpoint) -> Iterator[str]:
    """A second bucket on the same moto server, created in eu-west-1."""
    name = f"tl-eu-{uuid.uuid4().hex[:8]}"
    s3.client.create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    try:
        yield name
    finally:
        listed = s3.client.list_objects_v2(Bucket=name).get("Contents", [])
        for obj in listed:
            s3.client.delete_object(Bucket=name, Key=obj["Key"])
        s3.client.delete_bucket(Bucket=name)


def _config(src: Path, warehouse: dict[str, Any], stage: StageConfig, s3: S3Endpoint) -> Config:
    return Config.model_validate(
        {
            "sources": {"src": {"type": "sqlite", "path": str(src)}},
            "warehouse": warehouse,
            "stage": stage.model_dump(mode="python", by_alias=True)
            | {"access_key_id": s3.access_key_id, "secret_access_key": s3.secret_access_key},
            "defaults": {"lag_seconds": 0},
            "tables": [
                {
                    "name": "uni_tracking_spath",
                    "target_schema": "raw",
                    "cdc": {"strategy": "hybrid", "cursor": "pathTime", "id": "id"},
                }
            ],
        }
    )


def _source(tmp_path: Path) -> Source:
    source = Source(tmp_path / "src.db")
    for o in range(1, 4):
        source.touch(o, day(0) + o)
    source.clock(day(1))
    return source


def test_a_bucket_in_another_region_stops_the_sync_naming_both_regions_and_keys(
    tmp_path: Path,
    pg_db: PgDb,
    s3: S3Endpoint,
    eu_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    copies: list[str] = []
    real = Redshift._copy_manifest

    def spy(self: Redshift, target: str, names: list[str], manifest: str, **kw: bool) -> None:
        copies.append(manifest)
        real(self, target, names, manifest, **kw)

    monkeypatch.setattr(Redshift, "_copy_manifest", spy)
    source = _source(tmp_path)
    try:
        wrong = s3.stage_config(url=f"s3://{eu_bucket}/stage")
        cfg = _config(source.path, pg_db.redshift_compat(region="us-east-1"), wrong, s3)
        (res,) = sync(cfg)
        assert res.status == "failed"
        msg = res.error or ""
        assert f"stage bucket '{eu_bucket}' (stage.url) is in region eu-west-1" in msg
        assert "cluster is in us-east-1 (from warehouse.region)" in msg
        assert "REGION" in msg and "Nothing was loaded" in msg
        assert s3.secret_access_key not in msg
        assert copies == []  # no COPY was sent
        ((exists,),) = pg_db.query("SELECT to_regclass('raw.uni_tracking_spath_raw') IS NOT NULL")
        if exists:  # created in the failed run's transaction or not: no row in it
            assert pg_db.query("SELECT COUNT(*) FROM raw.uni_tracking_spath_raw") == [(0,)]

        # the same data, staged in the cluster's region, loads
        right = _config(
            source.path, pg_db.redshift_compat(region="us-east-1"), s3.stage_config(), s3
        )
        assert [r.status for r in sync(right)] == ["ok"]
        assert pg_db.query("SELECT COUNT(*) FROM raw.uni_tracking_spath_raw") == [(3,)]
        assert copies and all(m.startswith(f"s3://{s3.bucket}/") for m in copies)
    finally:
        source.close()


def test_the_cluster_region_comes_from_its_endpoint_when_not_configured(
    s3: S3Endpoint, eu_bucket: str
) -> None:
    host = "examplecluster.cabc123xyz.us-east-1.redshift.amazonaws.com"
    wh = RedshiftWarehouse(host=host, user="u", iam_role=ROLE)
    stage = s3.stage_config(url=f"s3://{eu_bucket}/p")
    notices: list[str] = []
    with pytest.raises(ConfigError) as err:
        check_stage_region(stage, wh, notices.append)
    msg = str(err.value)
    assert (
        "in region eu-west-1" in msg
        and f"cluster is in us-east-1 (from warehouse.host '{host}')" in msg
    )
    assert "or set warehouse.region" in msg
    # the same cluster and a bucket in us-east-1 (created without a constraint): fine
    check_stage_region(s3.stage_config(), wh, notices.append)
    # warehouse.region wins over the host name
    check_stage_region(stage, wh.model_copy(update={"region": "eu-west-1"}), notices.append)
    assert notices == []


def test_what_cannot_be_told_is_a_notice(s3: S3Endpoint) -> None:
    notices: list[str] = []
    custom = RedshiftWarehouse(host="redshift.internal.example.com", user="u", iam_role=ROLE)
    check_stage_region(s3.stage_config(), custom, notices.append)
    assert len(notices) == 1 and "set warehouse.region" in notices[0]
    regional = custom.model_copy(update={"region": "us-east-1"})
    gone = s3.stage_config(url=f"s3://tl-gone-{uuid.uuid4().hex[:8]}/p")
    check_stage_region(gone, regional, notices.append)
    assert len(notices) == 2 and "cannot read the region of the stage bucket" in notices[1]
    assert "s3:GetBucketLocation" in notices[1]
    # a local stage is never checked
    check_stage_region(StageConfig(url="./stage"), regional, notices.append)
    assert len(notices) == 2


@pytest.mark.parametrize(
    ("host", "region"),
    [
        ("examplecluster.abc123xyz789.us-west-2.redshift.amazonaws.com", "us-west-2"),
        ("wg.123456789012.eu-central-1.redshift-serverless.amazonaws.com", "eu-central-1"),
        ("c.x.cn-north-1.redshift.amazonaws.com.cn", "cn-north-1"),
        ("c.x.us-gov-west-1.redshift.amazonaws.com", "us-gov-west-1"),
        ("EXAMPLE.ABC.AP-SOUTHEAST-2.REDSHIFT.AMAZONAWS.COM.", "ap-southeast-2"),
        ("127.0.0.1", None),
        ("redshift.internal.example.com", None),
    ],
)
def test_cluster_region_from_the_host_name(host: str, region: str | None) -> None:
    assert cluster_region(RedshiftWarehouse(host=host, user="u", iam_role=ROLE)) == region
