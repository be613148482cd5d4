"""Every example DAG runs end to end with ``airflow dags test`` against the emulator and an S3 server.

The emulator and the S3-compatible server (moto) run as separate processes on free loopback ports,
and Airflow uses a temporary AIRFLOW_HOME. Each run is checked in S3 and in the emulator's call log:
one ``/video/queue`` and one ``/video/complete`` per video, each video delivered with its manifest
(``<key>.json``) matching the stored bytes and its poster (``<key>.poster.jpg``), nothing paid for bad
input. The text-to-video example runs
against both answers a server may give to a retrieve whose Accept header names JSON.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.integration.example_stack import (
    BUCKET,
    assert_example_delivered as _assert_delivered,
    call_counts as _counts,
    dag_keys as _keys,
    example_stack,
    run_dag as _run_dag,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The emulator, an S3 server and an Airflow home wired together; stopped by pid at the end."""
    home = tmp_path_factory.mktemp("airflow_home")
    with example_stack(
        home, airflow=AIRFLOW, dags_folder=ROOT / "dags_examples", base_env=dict(os.environ)
    ) as stack:
        yield stack


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
