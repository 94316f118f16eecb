"""`iam_auth: true`: the Redshift adapter connects with temporary credentials from
GetClusterCredentials, asked from a real (moto) AWS endpoint over HTTP; the temporary password
never reaches an error message."""

from __future__ import annotations

import boto3
import pytest
from pydantic import ValidationError

from trackline.config import RedshiftWarehouse
from trackline.errors import WarehouseError
from trackline.load.redshift import Redshift, cluster_credentials

ROLE = "arn:aws:iam::123456789012:role/trackline-copy"


@pytest.fixture
def aws(s3, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201 - the moto server of `s3`
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint_url)
    client = boto3.client("redshift", region_name="us-east-1", endpoint_url=s3.endpoint_url)
    client.create_cluster(
        ClusterIdentifier="tl-cluster",
        NodeType="ra3.xlplus",
        MasterUsername="admin",
        MasterUserPassword="Adm1nPassw0rd",
        DBName="dev",
    )
    yield client
    client.delete_cluster(ClusterIdentifier="tl-cluster", SkipFinalClusterSnapshot=True)


def _config(**kw: object) -> RedshiftWarehouse:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 5432,
        "user": "trackline",
        "database": "dev",
        "iam_role": ROLE,
        "region": "us-east-1",
        "iam_auth": True,
        "cluster_identifier": "tl-cluster",
        "compat_postgres": True,
    }
    values.update(kw)
    return RedshiftWarehouse.model_validate(values)


def test_credentials_come_from_get_cluster_credentials(aws) -> None:  # noqa: ANN001
    user, password = cluster_credentials(_config())
    assert user.endswith("trackline") and password
    info = Redshift(_config()).conninfo()
    assert info["user"] == user and info["password"]


def test_temporary_password_never_in_the_error(aws) -> None:  # noqa: ANN001
    wh = Redshift(_config(port=1))  # nothing listens on port 1: the login fails
    info = wh.conninfo()
    with pytest.raises(WarehouseError) as err:
        wh.connect()
    assert info["password"] not in str(err.value)


def test_unknown_cluster_is_a_clear_error(aws) -> None:  # noqa: ANN001
    with pytest.raises(WarehouseError, match="GetClusterCredentials .*'nope'"):
        cluster_credentials(_config(cluster_identifier="nope"))


def test_iam_auth_needs_a_cluster_identifier() -> None:
    with pytest.raises(ValidationError, match="cluster_identifier"):
        _config(cluster_identifier=None)
