"""quote -> queue -> sensor -> complete through ``airflow dags test`` against the emulator on a socket.

The DAGs hand the job on as native values (``job=queue.output``, ``queue.output["queue_id"]``); the
sensor waits in the triggerer by default. A long ``Retry-After`` must show up in the task log: Airflow
3.3's ``airflow dags test`` runs tasks in-process and prints their logs instead of writing log files
under ``AIRFLOW_HOME/logs`` (the end-to-end test reads the files of a real deployment), so its output
is read here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_venice.version_compat import AIRFLOW_V_3_3_PLUS

if TYPE_CHECKING:
    from airflow_provider_venice.testing import EmulatorServer

pytestmark = pytest.mark.integration

T2V = "wan-2-7-text-to-video"
VPS = "grok-imagine-text-to-video-private"
QUEUE = "/api/v1/video/queue"
QUOTE = "/api/v1/video/quote"
COMPLETE = "/api/v1/video/complete"
RETRIEVE = "/api/v1/video/retrieve"
RETRY_AFTER_S = 3
JOB_SECONDS = RETRY_AFTER_S + 12
RETRIED = re.compile(r"retrying /video/retrieve in ([0-9.]+) s after 429")


def calls(emulator: EmulatorServer, path: str, method: str = "POST") -> list[dict[str, Any]]:
    return [call for call in emulator.calls() if call["path"] == path and call["method"] == method]


@pytest.mark.parametrize(
    ("model", "duration", "rate_limited"),
    [(T2V, "5s", True), (VPS, "6s", False)],
    ids=["non-vps-rate-limited", "vps"],
)
def test_step_by_step_dag_pays_once_and_completes(
    dags_test: Any,
    emulator: EmulatorServer,
    model: str,
    duration: str,
    rate_limited: bool,
) -> None:
    # The job takes much longer than a loaded CI machine can spend between the queue task and the
    # sensor's first look (more than 3 s was seen), so the sensor finds it processing and defers; when
    # Venice is rate limited at that first look, the pause it asks for is also well inside the job.
    emulator.configure(job_seconds=JOB_SECONDS)
    if rate_limited:
        emulator.add_faults({"endpoint": "/video/retrieve", "status": 429, "retry_after": RETRY_AFTER_S})
    run = dags_test("venice_it_step_by_step", VENICE_IT_MODEL=model, VENICE_IT_DURATION=duration)
    assert run.succeeded, run.tail()

    [quoted, _] = calls(emulator, QUOTE)  # the quote task's, then the queue operator's for max_usd
    assert "prompt" not in quoted["body"]  # the quote task needs no prompt
    [queued] = calls(emulator, QUEUE)
    [completed] = calls(emulator, COMPLETE)
    assert queued["status"] == 200
    [job] = emulator.jobs()
    assert job["model"] == model
    assert completed["body"] == {"model": model, "queue_id": job["queue_id"]}

    retrieves = calls(emulator, RETRIEVE)
    if rate_limited:
        assert [call["status"] for call in retrieves[:2]] == [429, 200]
        retrieves = retrieves[1:]  # the 429 was answered before the request body was read
        # The client's retry is in the task log (printed by `airflow dags test`), with the wait asked for.
        waits = [float(seconds) for seconds in RETRIED.findall(run.output)]
        assert waits, run.tail()
        assert all(seconds >= RETRY_AFTER_S for seconds in waits), waits
    assert len(retrieves) >= 2  # processing at the first poke, then done in the trigger
    assert all(call["body"]["delete_media_on_completion"] is False for call in retrieves)
    assert all(call["body"]["queue_id"] == job["queue_id"] for call in retrieves)
    assert "Pausing task as DEFERRED" in run.output  # deferrable by default; the trigger ran inline

    if model == VPS:
        # the file behind download_url is deleted (without the API key), then complete says 400
        [deleted] = [c for c in emulator.calls() if c["method"] == "DELETE"]
        assert deleted["path"].endswith(f"/{job['queue_id']}.mp4")
        assert "authorization" not in deleted
        assert completed["status"] == 400
        assert job["download_url"]
    else:
        assert completed["status"] == 200
    assert emulator.jobs()[0]["media_deleted"] is True


def test_a_retry_after_queueing_resumes_the_same_job(dags_test: Any, emulator: EmulatorServer) -> None:
    run = dags_test("venice_it_retry")
    assert run.succeeded, run.tail()
    assert "VENICE_IT simulated crash after queueing" in run.output  # try 1 did fail after paying
    assert "VENICE_IT try=2 task_state_store=" in run.output
    if AIRFLOW_V_3_3_PLUS:  # the job record is in the task state store
        assert "task_state_store=NoneType" not in run.output
    else:  # no task state store before Airflow 3.3: the job record is kept in an Airflow Variable
        assert "VENICE_IT try=2 task_state_store=NoneType" in run.output

    [queued] = calls(emulator, QUEUE)  # exactly one /video/queue over both tries
    [job] = emulator.jobs()
    assert queued["status"] == 200
    assert f"Resuming Venice job {job['queue_id']}" in run.output
    assert {call["body"]["queue_id"] for call in calls(emulator, RETRIEVE)} == {job["queue_id"]}
    [completed] = calls(emulator, COMPLETE)
    assert completed["body"]["queue_id"] == job["queue_id"]
    assert emulator.jobs()[0]["media_deleted"] is True


INVALID_CASES = {
    "queue_bad_duration": "invalid Venice video request: duration: '7s' is not supported",
    "queue_bad_model": "invalid Venice video request: model: unknown video model 'no-such-video-model'",
    "queue_bad_image_url": "invalid Venice video request: image_url: required",
    "queue_bad_upscale_factor": "invalid Venice video request: upscale_factor: only upscale models",
    "queue_bad_reference_image_urls": (
        "invalid Venice video request: reference_image_urls: 10 given; at most 9"
    ),
    "queue_bad_max_usd": "max_usd: the quote $",
    "queue_bad_max_usd_nan": "max_usd: must be a finite amount of at least 0 US dollars, got nan",
    "queue_bad_max_usd_rendered_none": "max_usd: expected a number of US dollars, got 'None'",
    "wait_rendered_none_download_url": "download_url: expected an http(s) URL or None, got 'None'",
}


def test_invalid_requests_are_never_queued(dags_test: Any, emulator: EmulatorServer) -> None:
    run = dags_test("venice_it_invalid")
    assert not run.succeeded, run.tail()
    for task_id, message in INVALID_CASES.items():
        assert task_id in run.output
        assert message in run.output, task_id  # the error names the field (and what is allowed)
    assert run.output.count("AirflowFailException") >= len(INVALID_CASES)
    assert calls(emulator, QUEUE) == []
    assert calls(emulator, RETRIEVE) == []  # a job rendered as text is refused, not looked up
    assert emulator.jobs() == []
    assert "up_for_retry" not in run.output  # failed permanently: retries=2 left unused
