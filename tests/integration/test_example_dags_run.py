"""Every example DAG runs end to end with ``airflow dags test`` against the emulator and an S3 server.

The emulator and the S3-compatible server (moto) run as separate processes on free loopback ports,
and Airflow uses a temporary AIRFLOW_HOME. Each run is checked in S3 and in the emulator's call log:
one ``/video/queue`` and one ``/video/complete`` per video, nothing paid for bad input.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import boto3
import httpx
import pytest

from airflow_provider_venice.testing.processes import start_emulator_process, start_s3_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
BUCKET = "venice-videos"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The emulator, an S3 server and an Airflow home wired together; stopped by pid at the end."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags_examples"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "VENICE_VIDEO_BUCKET": BUCKET,
    }
    with start_emulator_process("--job-seconds", "3", env=env) as emulator, start_s3_server(env=env) as s3:
        env["AIRFLOW_CONN_VENICE_DEFAULT"] = json.dumps(
            {"conn_type": "venice", "password": "example-key", "host": emulator.url}
        )
        env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps({"conn_type": "aws", "extra": {"endpoint_url": s3.url}})
        client = boto3.client(
            "s3",
            endpoint_url=s3.url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
        yield {"env": env, "emulator": emulator.url.removesuffix("/api/v1"), "s3": client}


def _run_dag(stack, dag_id: str) -> list[dict]:
    """Run one DAG with ``airflow dags test`` after resetting the emulator; return the calls it made."""
    httpx.post(f"{stack['emulator']}/_emulator/reset", json={}).raise_for_status()
    result = subprocess.run(
        [AIRFLOW, "dags", "test", dag_id], env=stack["env"], capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "state=success" in output, output[-5000:]
    return httpx.get(f"{stack['emulator']}/_emulator/calls").json()["calls"]


def _counts(calls: list[dict]) -> Counter:
    return Counter(
        (call["method"], call["path"].split("/_media/")[0] or "media", call["status"]) for call in calls
    )


def _objects(stack, dag_id: str) -> list[dict]:
    listing = stack["s3"].list_objects_v2(Bucket=BUCKET, Prefix=f"videos/{dag_id}/").get("Contents", [])
    return [stack["s3"].head_object(Bucket=BUCKET, Key=item["Key"]) for item in listing]


@pytest.mark.parametrize(
    ("dag_id", "videos"),
    [
        ("venice_text_to_video", 1),
        ("venice_image_to_video", 1),
        ("venice_video_upscale", 1),
        ("venice_batch_on_budget", 3),
    ],
)
def test_generating_examples_deliver_each_video_once(stack, dag_id, videos):
    calls = _run_dag(stack, dag_id)
    counts = _counts(calls)
    assert counts[("POST", "/api/v1/video/queue", 200)] == videos
    assert counts[("POST", "/api/v1/video/complete", 200)] == videos
    objects = _objects(stack, dag_id)
    assert len(objects) == videos
    for head in objects:
        assert head["ContentType"] == "video/mp4"
        assert len(head["Metadata"]["sha256"]) == 64
        assert head["Metadata"]["venice-queue-id"]
    retrieves = [call for call in calls if call["path"].endswith("/video/retrieve")]
    assert all(call["body"].get("delete_media_on_completion") is False for call in retrieves)


def test_vps_example_fetches_download_url_then_releases_it(stack):
    calls = _run_dag(stack, "venice_vps_step_by_step")
    media = [call for call in calls if "/_media/" in call["path"]]
    assert [call["method"] for call in media] == ["GET", "DELETE"]
    assert all(not call.get("authorization") for call in media), "the API key went to the download_url host"
    counts = _counts(calls)
    assert counts[("POST", "/api/v1/video/queue", 200)] == 1
    assert (
        counts[("POST", "/api/v1/video/complete", 400)] == 1
    )  # Venice's answer for VPS jobs: counted as done
    assert len(_objects(stack, "venice_vps_step_by_step")) == 1


def test_transcription_example(stack):
    calls = _run_dag(stack, "venice_youtube_transcription")
    assert [(call["path"], call["status"]) for call in calls] == [("/api/v1/video/transcriptions", 200)]
    assert calls[0]["body"]["url"].startswith("https://www.youtube.com/watch?v=")


def test_downstream_catalogue_example_runs_without_calling_venice(stack):
    assert _run_dag(stack, "venice_new_video_catalogue") == []
