"""The live suite's scenario (tests/redshift_scenario.py) through the Redshift adapter in compat
mode: every command that touches the warehouse (cycles with archiving and reactivation, check,
reconcile, replay, reset, maintenance, locks), each statement it sent checked against what
Redshift accepts. The live suite runs the same function against a real cluster."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import PgDb, S3Endpoint
from tests.redshift_checks import norm
from tests.redshift_recorder import STATEMENTS
from tests.redshift_scenario import run_scenario, scenario_config


def test_every_command_sends_only_what_redshift_accepts(
    tmp_path: Path, pg_db: PgDb, s3: S3Endpoint, capsys: object
) -> None:
    stage = s3.stage_config()
    cfg, src = scenario_config(
        tmp_path,
        pg_db.redshift_compat(),
        {
            "url": stage.url,
            "endpoint_url": stage.endpoint_url,
            "region": stage.region,
            "access_key_id": s3.access_key_id,
            "secret_access_key": s3.secret_access_key,
        },
    )
    try:
        with STATEMENTS.capture() as sent:
            summary = run_scenario(cfg, src)
    finally:
        src.close()
    print("\n".join(summary))
    bad = STATEMENTS.problems_of(sent)
    assert not bad, bad
    text = {norm(s.sql) for s in sent}
    for start in (
        "COPY ",  # sync from the S3 manifests
        'INSERT INTO "MART"."HIST_',  # archive
        'INSERT INTO "TRACKLINE"."_TL_CHK_',  # a check with parameters, filled by INSERT
        'CREATE TABLE "TRACKLINE"."_TL_CHK_',  # check materialised
        'DELETE FROM "RAW"."CLAIMS" WHERE',  # reconcile --apply / replay
        "LOCK ",  # the lock table
        "ANALYZE ",  # maintenance
    ):
        assert any(t.startswith(start) for t in text), start
