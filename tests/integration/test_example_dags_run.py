"""Every example DAG runs end to end with ``airflow dags test`` against the emulator and an S3 server.

The emulator and the S3-compatible server (moto) run as separate processes on free loopback ports,
and Airflow uses a temporary AIRFLOW_HOME. Each run is checked in S3 and in the emulator's call log:
one ``/video/queue`` and one ``/video/complete`` per video, each video delivered with its manifest
(``<key>.json``) matching the stored bytes and its poster (``<key>.poster.jpg``), nothing paid for bad
input. The text-to-video example runs
against both answers a server may give to a retrieve whose Accept header names JSON.
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
from tests.integration.delivery_checks import all_keys, assert_delivered, delivery_keys, video_keys

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


def _run_dag(stack, dag_id: str, **emulator_config) -> list[dict]:
    """Run one DAG with ``airflow dags test`` after resetting the emulator; return the calls it made."""
    httpx.post(f"{stack['emulator']}/_emulator/reset", json=emulator_config).raise_for_status()
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


def _keys(stack, dag_id: str) -> set[str]:
    return set(all_keys(stack["s3"], BUCKET, f"videos/{dag_id}/"))


def _assert_delivered(stack, dag_id: str, calls: list[dict], videos: int, before: set[str]) -> list[str]:
    """``videos`` new videos under ``videos/<dag_id>/``, each with its matching manifest, its poster and its
    job completed; nothing else new there."""
    keys = [key for key in video_keys(stack["s3"], BUCKET, f"videos/{dag_id}/") if key not in before]
    assert len(keys) == videos, keys
    assert _keys(stack, dag_id) - before == set(delivery_keys(*keys))  # each with its manifest and poster
    completed = {call["body"]["queue_id"] for call in calls if call["path"].endswith("/video/complete")}
    delivered = set()
    for key in keys:
        queue_id = stack["s3"].head_object(Bucket=BUCKET, Key=key)["Metadata"]["venice-queue-id"]
        assert_delivered(stack["s3"], BUCKET, key, queue_id)
        delivered.add(queue_id)
    assert delivered == completed
    return keys


@pytest.mark.parametrize(
    ("dag_id", "videos"),
    [
        ("venice_image_to_video", 1),
        ("venice_video_upscale", 1),
        ("venice_batch_on_budget", 3),
    ],
)
def test_generating_examples_deliver_each_video_once(stack, dag_id, videos):
    before = _keys(stack, dag_id)
    calls = _run_dag(stack, dag_id)
    counts = _counts(calls)
    assert counts[("POST", "/api/v1/video/queue", 200)] == videos
    assert counts[("POST", "/api/v1/video/complete", 200)] == videos
    keys = _assert_delivered(stack, dag_id, calls, videos, before)
    retrieves = [call for call in calls if call["path"].endswith("/video/retrieve")]
    assert all(call["body"].get("delete_media_on_completion") is False for call in retrieves)
    if dag_id == "venice_batch_on_budget":
        # one quote task for the batch, then each mapped task prices its video against that quote
        assert counts[("POST", "/api/v1/video/quote", 200)] == 1 + videos
        # each map index paid once for its own prompt and delivered to its own key
        prompts = [call["body"]["prompt"] for call in calls if call["path"] == "/api/v1/video/queue"]
        assert len(set(prompts)) == videos
        assert sorted(key.rsplit("-", 1)[-1] for key in keys) == [f"{index}.mp4" for index in range(videos)]


@pytest.mark.parametrize("json_on_accept", [False, True], ids=["mp4-always", "json-on-accept"])
def test_text_to_video_is_delivered_whatever_a_json_accept_gets(stack, json_on_accept):
    """Servers differ on a retrieve whose Accept names JSON (JSON COMPLETED, or the mp4); both deliver."""
    dag_id = "venice_text_to_video"
    before = _keys(stack, dag_id)
    calls = _run_dag(stack, dag_id, retrieve_json_on_accept=json_on_accept)
    counts = _counts(calls)
    assert counts[("POST", "/api/v1/video/queue", 200)] == 1
    assert counts[("POST", "/api/v1/video/complete", 200)] == 1
    _assert_delivered(stack, dag_id, calls, 1, before)
    retrieves = [call for call in calls if call["path"].endswith("/video/retrieve")]
    assert all(call["status"] == 200 for call in retrieves)
    download = retrieves[-1]  # the one that streamed the video into S3
    assert "application/json" not in (download["accept"] or "").lower(), download
    # the status checks did name JSON, so the server's switch had something to act on
    assert any("application/json" in (call["accept"] or "") for call in retrieves[:-1]), retrieves


def test_vps_example_fetches_download_url_then_releases_it(stack):
    before = _keys(stack, "venice_vps_step_by_step")
    calls = _run_dag(stack, "venice_vps_step_by_step")
    media = [call for call in calls if "/_media/" in call["path"]]
    assert [call["method"] for call in media] == ["GET", "DELETE"]
    assert all(not call.get("authorization") for call in media), "the API key went to the download_url host"
    counts = _counts(calls)
    assert counts[("POST", "/api/v1/video/queue", 200)] == 1
    # Venice's answer to /video/complete for VPS jobs: counted as done
    assert counts[("POST", "/api/v1/video/complete", 400)] == 1
    [key] = _assert_delivered(stack, "venice_vps_step_by_step", calls, 1, before)
    queue_id = stack["s3"].head_object(Bucket=BUCKET, Key=key)["Metadata"]["venice-queue-id"]
    assert media[0]["path"].endswith(f"/{queue_id}.mp4")  # the job handed on natively is the one queued


def test_transcription_example(stack):
    calls = _run_dag(stack, "venice_youtube_transcription")
    assert [(call["path"], call["status"]) for call in calls] == [("/api/v1/video/transcriptions", 200)]
    assert calls[0]["body"]["url"].startswith("https://www.youtube.com/watch?v=")


def test_downstream_catalogue_example_runs_without_calling_venice(stack):
    assert _run_dag(stack, "venice_new_video_catalogue") == []
