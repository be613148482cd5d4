"""The example DAGs in a real Airflow deployment: triggered through the REST API, checked in S3 and Venice.

One deployment (``conftest.deployment``) serves the whole module; the tests run one DAG run at a time
so that the emulator's call log between two points belongs to one run. Each video must be queued
(paid) exactly once and completed exactly once, and land in S3 intact: its manifest (``<key>.json``,
written last) exists beside it and matches the stored bytes, its poster (``<key>.poster.jpg``) is there
as the manifest describes it, and the job is completed only after that.
The triggerer is killed with SIGKILL while a job is deferred; a fresh triggerer finishes it without a
second ``/video/queue``. A long ``Retry-After`` shows in the worker's task log file.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
from collections import Counter
from typing import Any

import pytest

from tests.e2e.deployment import BUCKET, JOB_SECONDS, ROOT, Deployment

pytestmark = pytest.mark.e2e

API = "/api/v1"
TEXT_TO_VIDEO = "venice_text_to_video"
VPS = "venice_vps_step_by_step"
CATALOGUE = "venice_new_video_catalogue"
BATCH = "venice_batch_on_budget"
# Long enough that the first triggerer is still sleeping before its first poll when it is killed.
KILL_TEST_JOB_SECONDS = 30
TRIGGER_FIRED = "Trigger fired event"
RETRY_AFTER_S = 3
RETRY_LOGGED = re.compile(r"retrying /video/retrieve in ([0-9.]+) s after 429")
# Beside each video: its manifest (written last) and its poster frame (the default: a JPEG).
MANIFEST_SUFFIX = ".json"
POSTER_SUFFIX = ".poster.jpg"
PROBE_KEYS = ("duration_s", "width", "height", "frame_rate", "video_codec", "has_audio")


def _counts(calls: list[dict[str, Any]]) -> Counter[tuple[str, str, int]]:
    """Count calls by (method, API path, status); download_url calls count as ``media``."""
    return Counter(
        (call["method"], "media" if "/_media/" in call["path"] else call["path"], call["status"])
        for call in calls
    )


def _video_objects(deployment: Deployment, dag_id: str) -> dict[str, dict[str, Any]]:
    """The videos under ``videos/<dag_id>/``, by key, with their metadata, body, manifest and poster (each
    None when missing). Every other object there must be the manifest or the poster of one of them."""
    s3 = deployment.s3()
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"videos/{dag_id}/").get("Contents", [])
    keys = {item["Key"] for item in listing}
    videos = sorted(key for key in keys if not key.endswith((MANIFEST_SUFFIX, POSTER_SUFFIX)))
    beside = {video + suffix for video in videos for suffix in (MANIFEST_SUFFIX, POSTER_SUFFIX)}
    assert keys - set(videos) <= beside, sorted(keys - set(videos) - beside)  # nothing stray
    objects = {}
    for key in videos:
        found = s3.get_object(Bucket=BUCKET, Key=key)
        manifest: dict[str, Any] | None = None
        poster: dict[str, Any] | None = None
        if key + MANIFEST_SUFFIX in keys:
            manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=key + MANIFEST_SUFFIX)["Body"].read())
        if key + POSTER_SUFFIX in keys:
            image = s3.get_object(Bucket=BUCKET, Key=key + POSTER_SUFFIX)
            poster = {**image, "Body": image["Body"].read()}
        objects[key] = {**found, "Body": found["Body"].read(), "Manifest": manifest, "Poster": poster}
    return objects


def _xcom(deployment: Deployment, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
    path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
    return deployment.api_json("GET", path, params={"deserialize": True})["value"]


def _assert_intact_mp4(found: dict[str, Any]) -> None:
    """An mp4 whose manifest exists and matches it: size, SHA-256 of the bytes, ETag, queue_id; the
    manifest says the video was probed, and the poster it names is the JPEG beside the video."""
    body: bytes = found["Body"]
    manifest = found["Manifest"]
    assert found["ContentType"] == "video/mp4"
    assert body[4:8] == b"ftyp", "not an mp4"
    assert manifest is not None, "no manifest beside the video: it was never committed as delivered"
    assert manifest["sha256"] == hashlib.sha256(body).hexdigest()
    assert manifest["size_bytes"] == len(body)
    assert manifest["etag"].strip('"') == found["ETag"].strip('"')
    assert manifest["queue_id"] == found["Metadata"]["venice-queue-id"]
    assert "sha256" not in found["Metadata"]
    assert manifest["probe"]["made"] is True, manifest["probe"]  # PyAV is installed in the deployment
    assert manifest["probe"]["width"] > 0
    assert manifest["probe"]["height"] > 0
    poster, facts = found["Poster"], manifest["poster"]
    assert poster is not None, "no poster beside the video"
    assert facts["key"] == manifest["key"] + POSTER_SUFFIX, facts
    assert facts["s3_uri"] == f"s3://{BUCKET}/{facts['key']}"
    assert poster["ContentType"] == facts["content_type"] == "image/jpeg"
    assert len(poster["Body"]) == facts["size_bytes"] > 0
    assert poster["Body"][:3] == b"\xff\xd8\xff", "the poster is not a JPEG"


def _assert_xcom_describes(xcom: dict[str, Any], key: str, found: dict[str, Any]) -> None:
    """A delivering task's result names the video, its manifest, its poster and what the probe found."""
    manifest = found["Manifest"]
    assert xcom["s3_uri"] == f"s3://{BUCKET}/{key}"
    assert xcom["manifest_uri"] == f"s3://{BUCKET}/{key}{MANIFEST_SUFFIX}"
    assert xcom["poster_uri"] == manifest["poster"]["s3_uri"] == f"s3://{BUCKET}/{key}{POSTER_SUFFIX}"
    assert {name: xcom[name] for name in PROBE_KEYS} == {name: manifest["probe"][name] for name in PROBE_KEYS}
    assert xcom["queue_id"] == manifest["queue_id"]
    assert xcom["sha256"] == manifest["sha256"]
    assert xcom["checksum_crc32"] == manifest["checksum_crc32"]
    assert xcom["size_bytes"] == len(found["Body"])


def _task_logs(deployment: Deployment, dag_id: str, run_id: str, task_id: str) -> str:
    """The worker's task log files of one task instance (every attempt), as text."""
    folder = deployment.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return "\n".join(path.read_text(errors="replace") for path in sorted(folder.glob("attempt=*.log")))


def _trigger_logs(
    deployment: Deployment, dag_id: str, run_id: str, task_id: str = "generate_video"
) -> dict[int, str]:
    """The trigger logs of one task instance, by the triggerer job that ran the trigger."""
    folder = deployment.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return {
        int(path.name.rsplit(".", 2)[-2]): path.read_text(errors="replace")
        for path in folder.glob("attempt=*.log.trigger.*.log")
    }


def _new_objects(deployment: Deployment, dag_id: str, before: set[str]) -> dict[str, dict[str, Any]]:
    return {key: found for key, found in _video_objects(deployment, dag_id).items() if key not in before}


def _run_text_to_video(deployment: Deployment, *faults: dict[str, Any]) -> dict[str, Any]:
    """Trigger the text-to-video example (with emulator ``faults``) and wait for it; return what it did."""
    if faults:
        deployment.emulator_admin("faults", {"faults": list(faults)})
    before_calls = len(deployment.emulator_calls())
    before_objects = set(_video_objects(deployment, TEXT_TO_VIDEO))
    run_id = deployment.trigger(TEXT_TO_VIDEO)
    deployment.wait_for_run(TEXT_TO_VIDEO, run_id)
    return {
        "run_id": run_id,
        "calls": deployment.emulator_calls()[before_calls:],
        "objects": _new_objects(deployment, TEXT_TO_VIDEO, before_objects),
        "xcom": _xcom(deployment, TEXT_TO_VIDEO, run_id, "generate_video"),
        "queue_id_xcom": _xcom(deployment, TEXT_TO_VIDEO, run_id, "generate_video", "queue_id"),
        "task_log": _task_logs(deployment, TEXT_TO_VIDEO, run_id, "generate_video"),
    }


def test_every_example_dag_is_parsed_without_import_errors(deployment: Deployment) -> None:
    expected = {
        path.stem for path in (ROOT / "dags_examples").glob("venice_*.py") if "dag_id=" in path.read_text()
    }
    assert len(expected) >= 7

    def parsed() -> set[str] | None:
        dags = deployment.api_json("GET", "/dags", params={"limit": 100})["dags"]
        found = {dag["dag_id"] for dag in dags}
        return found if expected <= found else None

    assert deployment.wait_for("every example DAG to be parsed", parsed, 120, 2) >= expected
    errors = deployment.api_json("GET", "/importErrors")
    assert errors["total_entries"] == 0, errors["import_errors"]


@pytest.fixture(scope="module")
def text_to_video(deployment: Deployment) -> dict[str, Any]:
    """One run of ``venice_text_to_video``, with the downstream catalogue DAG unpaused beforehand.

    Venice rate-limits the first look at the job (on the worker, before deferring) with a Retry-After.
    """
    deployment.api_json("PATCH", f"/dags/{CATALOGUE}", json={"is_paused": False})
    rate_limited = {"endpoint": "/video/retrieve", "status": 429, "retry_after": RETRY_AFTER_S}
    return _run_text_to_video(deployment, rate_limited)


def test_text_to_video_delivers_one_video_paid_once(
    deployment: Deployment, text_to_video: dict[str, Any]
) -> None:
    calls, objects, xcom = text_to_video["calls"], text_to_video["objects"], text_to_video["xcom"]
    counts = _counts(calls)
    assert counts[("POST", f"{API}/video/queue", 200)] == 1, counts
    assert counts[("POST", f"{API}/video/complete", 200)] == 1, counts
    assert sum(n for (_, path, _), n in counts.items() if path == f"{API}/video/queue") == 1
    assert sum(n for (_, path, _), n in counts.items() if path == f"{API}/video/complete") == 1

    assert len(objects) == 1, sorted(objects)
    [(key, found)] = objects.items()
    _assert_intact_mp4(found)
    queue_id = found["Metadata"]["venice-queue-id"]
    _assert_xcom_describes(xcom, key, found)
    assert xcom["queue_id"] == queue_id
    assert text_to_video["queue_id_xcom"] == queue_id  # each key is its own XCom too

    [complete] = [call for call in calls if call["path"] == f"{API}/video/complete"]
    assert complete["body"]["queue_id"] == queue_id
    retrieves = [call for call in calls if call["path"] == f"{API}/video/retrieve"]
    assert retrieves, "the job was never polled"
    assert retrieves[0]["status"] == 429
    retrieves = retrieves[1:]  # the 429 was answered before its body was read
    assert {call["body"]["queue_id"] for call in retrieves} == {queue_id}
    assert all(call["body"].get("delete_media_on_completion") is not True for call in retrieves)
    # The paid video is only completed (deleted at Venice) after it is safely in S3.
    assert calls.index(complete) == len(calls) - 1
    # The wait happened in the triggerer, not on a worker slot.
    triggers = _trigger_logs(deployment, TEXT_TO_VIDEO, text_to_video["run_id"])
    assert any(TRIGGER_FIRED in text for text in triggers.values()), triggers


def test_a_long_retry_after_shows_in_the_task_log(text_to_video: dict[str, Any]) -> None:
    """The client's retry after the 429 is in the worker's task log file, with the wait Venice asked for."""
    waits = [float(seconds) for seconds in RETRY_LOGGED.findall(text_to_video["task_log"])]
    assert waits, text_to_video["task_log"][-3000:]
    assert all(wait >= RETRY_AFTER_S for wait in waits), waits


def test_catalogue_dag_runs_for_the_delivered_video(
    deployment: Deployment, text_to_video: dict[str, Any]
) -> None:
    """The delivery's asset event (through the ``venice-videos`` alias) triggers the downstream DAG."""
    s3_uri = text_to_video["xcom"]["s3_uri"]

    def catalogued() -> list[dict[str, Any]] | None:
        runs = deployment.api_json("GET", f"/dags/{CATALOGUE}/dagRuns", params={"limit": 100})["dag_runs"]
        for run in runs:
            if run["state"] != "success":
                continue
            videos = _xcom(deployment, CATALOGUE, run["dag_run_id"], "catalogue")
            if any(video.get("s3_uri") == s3_uri for video in videos):
                return [run, videos]
        return None

    run, videos = deployment.wait_for(
        f"{CATALOGUE} to catalogue {s3_uri}", catalogued, 180, 2, dag_id=CATALOGUE
    )
    assert run["run_type"] == "asset_triggered"
    [video] = [video for video in videos if video["s3_uri"] == s3_uri]
    assert video["sha256"] == text_to_video["xcom"]["sha256"]
    assert video["queue_id"] == text_to_video["xcom"]["queue_id"]
    announced = ("poster_uri", *PROBE_KEYS)  # the event's extra carries the poster and the probe too
    delivered = text_to_video["xcom"]
    assert {name: video[name] for name in announced} == {name: delivered[name] for name in announced}


def test_vps_step_by_step_fetches_download_url_once(deployment: Deployment) -> None:
    before_calls = len(deployment.emulator_calls())
    before_objects = set(_video_objects(deployment, VPS))
    run_id = deployment.trigger(VPS)
    deployment.wait_for_run(VPS, run_id)
    calls = deployment.emulator_calls()[before_calls:]

    counts = _counts(calls)
    assert counts[("POST", f"{API}/video/queue", 200)] == 1, counts
    assert sum(n for (_, path, _), n in counts.items() if path == f"{API}/video/queue") == 1
    # Venice answers /video/complete for VPS jobs with 400; it is called once all the same.
    assert sum(n for (_, path, _), n in counts.items() if path == f"{API}/video/complete") == 1, counts
    assert counts[("POST", f"{API}/video/complete", 400)] == 1, counts
    media = [call for call in calls if "/_media/" in call["path"]]
    assert [call["method"] for call in media] == ["GET", "DELETE"]
    assert media[0]["path"] == media[1]["path"]
    assert all(not call.get("authorization") for call in media), "the API key went to the download_url host"

    triggers = _trigger_logs(deployment, VPS, run_id, task_id="wait")
    assert any(TRIGGER_FIRED in text for text in triggers.values()), "the sensor did not defer"
    # start_from_trigger: the scheduler handed the wait to the triggerer; a worker ran only its end
    worker_log = _task_logs(deployment, VPS, run_id, task_id="wait")
    assert "Pushing xcom" in worker_log, "no worker ran execute_complete"
    assert "start_from_trigger does not apply" not in worker_log, worker_log[-3000:]
    assert "deferring." not in worker_log, "the wait started on a worker"

    queued = _xcom(deployment, VPS, run_id, "queue")
    assert queued["download_url"].endswith(media[1]["path"])
    assert _xcom(deployment, VPS, run_id, "queue", "queue_id") == queued["queue_id"]
    objects = _new_objects(deployment, VPS, before_objects)
    assert len(objects) == 1, sorted(objects)
    [(key, found)] = objects.items()
    _assert_intact_mp4(found)
    assert found["Metadata"]["venice-queue-id"] == queued["queue_id"]
    delivered = _xcom(deployment, VPS, run_id, "deliver")
    assert delivered["queue_id"] == queued["queue_id"]
    _assert_xcom_describes(delivered, key, found)


def test_batch_on_budget_pays_each_mapped_video_once(deployment: Deployment) -> None:
    before_calls = len(deployment.emulator_calls())
    before_objects = set(_video_objects(deployment, BATCH))
    run_id = deployment.trigger(BATCH)
    deployment.wait_for_run(BATCH, run_id)
    calls = deployment.emulator_calls()[before_calls:]

    counts = _counts(calls)
    # one quote for the batch, then each mapped task prices its video against it (max_usd)
    assert counts[("POST", f"{API}/video/quote", 200)] >= 4, counts
    assert counts[("POST", f"{API}/video/queue", 200)] == 3, counts
    assert sum(n for (_, path, _), n in counts.items() if path == f"{API}/video/queue") == 3
    assert counts[("POST", f"{API}/video/complete", 200)] == 3, counts
    prompts = [call["body"]["prompt"] for call in calls if call["path"] == f"{API}/video/queue"]
    assert len(set(prompts)) == 3, "a prompt was paid twice"

    objects = _new_objects(deployment, BATCH, before_objects)
    assert sorted(key.rsplit("-", 1)[-1] for key in objects) == ["0.mp4", "1.mp4", "2.mp4"]
    for found in objects.values():
        _assert_intact_mp4(found)
    completed = {call["body"]["queue_id"] for call in calls if call["path"] == f"{API}/video/complete"}
    assert {found["Metadata"]["venice-queue-id"] for found in objects.values()} == completed


def test_triggerer_killed_while_deferred_resumes_without_paying_twice(deployment: Deployment) -> None:
    """SIGKILL the triggerer while the job waits in it; a new triggerer takes the trigger over."""
    deployment.emulator_admin("config", {"job_seconds": KILL_TEST_JOB_SECONDS})
    try:
        before_calls = len(deployment.emulator_calls())
        before_objects = set(_video_objects(deployment, TEXT_TO_VIDEO))
        run_id = deployment.trigger(TEXT_TO_VIDEO)

        def running_in_a_triggerer() -> dict[int, str]:
            [ti] = deployment.task_instances(TEXT_TO_VIDEO, run_id)
            return _trigger_logs(deployment, TEXT_TO_VIDEO, run_id) if ti["state"] == "deferred" else {}

        first = deployment.wait_for(
            "generate_video to be deferred to the triggerer", running_in_a_triggerer, 180, 0.5, TEXT_TO_VIDEO
        )
        [job] = deployment.emulator_jobs()[-1:]
        assert job["status"] == "PROCESSING", job

        old = deployment.processes["triggerer"]
        old.kill(signal.SIGKILL)  # the triggerer and its trigger runner child, as if the host died
        old.process.wait(10)
        deployment.retire("triggerer")
        calls_at_kill = len(deployment.emulator_calls())
        assert deployment.emulator_jobs()[-1]["status"] == "PROCESSING", "the job ended before the kill"

        deployment.start("triggerer", "--skip-serve-logs")
        deployment.wait_for_run(TEXT_TO_VIDEO, run_id)
    finally:
        deployment.emulator_admin("config", {"job_seconds": JOB_SECONDS})

    calls = deployment.emulator_calls()
    counts = _counts(calls[before_calls:])
    assert counts[("POST", f"{API}/video/queue", 200)] == 1, counts
    assert sum(n for (_, path, _), n in counts.items() if path == f"{API}/video/queue") == 1
    assert counts[("POST", f"{API}/video/complete", 200)] == 1, counts
    after_kill = [call for call in calls[calls_at_kill:] if call["path"] == f"{API}/video/retrieve"]
    assert after_kill, "nobody polled the job after the triggerer was killed"
    assert {call["body"]["queue_id"] for call in after_kill} == {job["queue_id"]}

    # The trigger ran in two triggerer jobs; only the second one fired the event.
    triggers = _trigger_logs(deployment, TEXT_TO_VIDEO, run_id)
    [old_job] = first
    assert len(triggers) == 2, sorted(triggers)
    [new_job] = set(triggers) - {old_job}
    assert TRIGGER_FIRED not in triggers[old_job]
    assert TRIGGER_FIRED in triggers[new_job]

    objects = _new_objects(deployment, TEXT_TO_VIDEO, before_objects)
    assert len(objects) == 1, sorted(objects)
    [found] = objects.values()
    _assert_intact_mp4(found)
    assert found["Metadata"]["venice-queue-id"] == job["queue_id"]
