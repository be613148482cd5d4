"""Run ``my_video_dag`` end to end, offline, and check what it delivered and what it paid for."""

from __future__ import annotations

import json

import pendulum
import pytest
from airflow.models import DagBag
from airflow.sdk import DagRunState

DAG_ID = "my_video_dag"


@pytest.fixture(scope="module")
def dag_bag() -> DagBag:
    """Parse the dags folder, as the dag-processor does."""
    return DagBag()


def test_dags_load_without_errors(dag_bag):
    """Every DAG file imports cleanly."""
    assert dag_bag.import_errors == {}
    assert DAG_ID in dag_bag.dag_ids


def test_my_video_dag_delivers_one_video(
    dag_bag, airflow_connections, venice_emulator_server, venice_s3_server
):
    """One run generates one video, stores it and its manifest in S3, and pays Venice once."""
    dag = dag_bag.get_dag(DAG_ID)
    bucket = venice_s3_server.create_bucket(dag.get_task("generate_video").s3_bucket)

    # dag.test() runs the whole DAG in this process; the deferred task's trigger runs inline.
    run = dag.test(logical_date=pendulum.datetime(2026, 5, 1, tz="UTC"))

    assert run.state == DagRunState.SUCCESS
    s3 = venice_s3_server.client()
    key = "videos/my_video_dag/2026-05-01.mp4"  # s3_key rendered for that logical date
    head = s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-11")["Body"].read()
    assert head[4:8] == b"ftyp", "not an mp4"
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=key + ".json")["Body"].read())
    assert manifest["s3_uri"] == f"s3://{bucket}/{key}"

    paths = [call["path"] for call in venice_emulator_server.calls()]
    assert paths.count("/api/v1/video/queue") == 1  # paid once
    assert paths.count("/api/v1/video/complete") == 1  # released once, after the upload was verified
    [job] = venice_emulator_server.jobs()
    assert job["queue_id"] == manifest["queue_id"]
    assert job["status"] == "DELETED"  # /video/complete deleted Venice's copy
