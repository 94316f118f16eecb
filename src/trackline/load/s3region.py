"""The S3 stage bucket must be in the Redshift cluster's region.

Redshift's COPY from Parquet reads through Redshift Spectrum, which needs the bucket in the
cluster's AWS Region, and it refuses the ``REGION`` parameter that lets other formats cross
regions ("COPY from columnar data formats":
https://docs.aws.amazon.com/redshift/latest/dg/copy-usage_notes-copy-from-columnar.html —
"REGION argument is not supported for PARQUET based COPY"). A stage in another region would
fail at the first COPY with an S3 error from inside the cluster; this check stops before it
with both regions and the keys to change.

- the cluster's region: ``warehouse.region`` when set, else the one in the endpoint's host
  name (``name.xxxx.<region>.redshift.amazonaws.com``, or a Serverless workgroup's
  ``….<region>.redshift-serverless.amazonaws.com``);
- the bucket's region: S3's GetBucketLocation (boto3, with the stage's endpoint and keys; an
  empty LocationConstraint is us-east-1, ``EU`` is eu-west-1), or without boto3 the region
  S3 names in its answer to a HEAD of the bucket (``pyarrow.fs.resolve_s3_region``).

What cannot be told (a custom host name and no ``warehouse.region``; no permission for
GetBucketLocation) is reported as a notice and not checked; a local stage is not checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from trackline.config import RedshiftWarehouse, StageConfig
from trackline.errors import ConfigError

_HOST_REGION = re.compile(
    r"\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.redshift(?:-serverless)?\.amazonaws\.com(?:\.cn)?$"
)
_LEGACY_LOCATIONS = {"": "us-east-1", "EU": "eu-west-1"}


def cluster_region(config: RedshiftWarehouse) -> str | None:
    if config.region:
        return config.region
    m = _HOST_REGION.search(config.host.strip().lower().rstrip("."))
    return m.group("region") if m else None


def bucket_of(url: str) -> str | None:
    if not url.startswith("s3://"):
        return None
    return url[len("s3://") :].split("/", 1)[0] or None


def bucket_region(stage: StageConfig, bucket: str) -> str:
    """The bucket's region; raises OSError (or boto's errors) when S3 will not tell."""
    try:
        import boto3
    except ModuleNotFoundError:
        if stage.endpoint_url:
            raise OSError(
                "boto3 is needed to ask a custom S3 endpoint for a bucket's region"
            ) from None
        import pyarrow.fs as pafs

        return str(pafs.resolve_s3_region(bucket))
    kwargs: dict[str, Any] = {"region_name": stage.region or "us-east-1"}
    if stage.endpoint_url:
        kwargs["endpoint_url"] = stage.endpoint_url
    if stage.access_key_id and stage.secret_access_key:
        kwargs["aws_access_key_id"] = stage.access_key_id.get_secret_value()
        kwargs["aws_secret_access_key"] = stage.secret_access_key.get_secret_value()
    client = boto3.client("s3", **kwargs)
    try:
        location = client.get_bucket_location(Bucket=bucket).get("LocationConstraint") or ""
    finally:
        client.close()
    return _LEGACY_LOCATIONS.get(location, location)


def check_stage_region(
    stage: StageConfig, warehouse: RedshiftWarehouse, notice: Callable[[str], None]
) -> None:
    """Raise `ConfigError` when the stage bucket and the cluster are in different regions."""
    bucket = bucket_of(stage.url)
    if bucket is None:
        return  # a local stage: compat mode; Redshift itself refuses it in `s3_literal`
    cluster = cluster_region(warehouse)
    if cluster is None:
        if not warehouse.compat_postgres:
            notice(
                f"cannot tell the Redshift cluster's region from warehouse.host "
                f"{warehouse.host!r}: set warehouse.region to have trackline check that the "
                f"stage bucket {bucket!r} is in it (COPY from Parquet needs that)"
            )
        return
    try:
        where = bucket_region(stage, bucket)
    except Exception as exc:  # any failure to ask (no permission, …) only skips the check
        notice(
            f"cannot read the region of the stage bucket {bucket!r} "
            f"({exc.__class__.__name__}: {str(exc)[:200]}); not checked that it is the "
            f"cluster's region {cluster} (COPY from Parquet needs that; "
            "allow s3:GetBucketLocation to have it checked)"
        )
        return
    if where != cluster:
        source = "warehouse.region" if warehouse.region else f"warehouse.host {warehouse.host!r}"
        raise ConfigError(
            f"the stage bucket {bucket!r} (stage.url) is in region {where}, but the Redshift "
            f"cluster is in {cluster} (from {source}). Redshift's COPY from Parquet reads only "
            "from a bucket in the cluster's own region (it accepts no REGION parameter for "
            f"columnar files): point stage.url at a bucket in {cluster}"
            + ("" if warehouse.region else ", or set warehouse.region if the host name misleads")
            + ". Nothing was loaded"
        )
