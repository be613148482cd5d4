"""quote -> queue -> sensor -> complete through ``airflow dags test`` against the emulator on a socket."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_provider_venice.testing import EmulatorServer

pytestmark = pytest.mark.integration

T2V = "wan-2-7-text-to-video"
VPS = "grok-imagine-text-to-video-private"
QUEUE = "/api/v1/video/queue"
COMPLETE = "/api/v1/video/complete"
RETRIEVE = "/api/v1/video/retrieve"


def calls(emulator: EmulatorServer, path: str, method: str = "POST") -> list[dict[str, Any]]:
    return [call for call in emulator.calls() if call["path"] == path and call["method"] == method]


@pytest.mark.parametrize(("model", "duration"), [(T2V, "5s"), (VPS, "6s")], ids=["non-vps", "vps"])
def test_step_by_step_dag_pays_once_and_completes(
    dags_test: Any, emulator: EmulatorServer, model: str, duration: str
) -> None:
    run = dags_test("venice_it_step_by_step", VENICE_IT_MODEL=model, VENICE_IT_DURATION=duration)
    assert run.succeeded, run.tail()

    [queued] = calls(emulator, QUEUE)
    [completed] = calls(emulator, COMPLETE)
    assert queued["status"] == 200
    [job] = emulator.jobs()
    assert job["model"] == model
    assert completed["body"] == {"model": model, "queue_id": job["queue_id"]}

    retrieves = calls(emulator, RETRIEVE)
    assert len(retrieves) >= 2  # processing at the first poke, then done in the trigger
    assert all(call["body"]["delete_media_on_completion"] is False for call in retrieves)
    assert all(call["body"]["queue_id"] == job["queue_id"] for call in retrieves)
    assert "Pausing task as DEFERRED" in run.output  # the sensor deferred; the trigger ran inline

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
    assert "task_state_store=NoneType" not in run.output

    [queued] = calls(emulator, QUEUE)  # exactly one /video/queue over both tries
    [job] = emulator.jobs()
    assert queued["status"] == 200
    assert f"Resuming Venice job {job['queue_id']}" in run.output
    [completed] = calls(emulator, COMPLETE)
    assert completed["body"]["queue_id"] == job["queue_id"]
    assert emulator.jobs()[0]["media_deleted"] is True


INVALID_CASES = {
    "duration": "invalid Venice video request: duration: '7s' is not supported",
    "model": "invalid Venice video request: model: unknown video model 'no-such-video-model'",
    "image_url": "invalid Venice video request: image_url: required",
    "upscale_factor": "invalid Venice video request: upscale_factor: only upscale models",
    "reference_image_urls": "invalid Venice video request: reference_image_urls: 10 given; at most 9",
    "max_usd": "max_usd: the quote $",
}


def test_invalid_requests_are_never_queued(dags_test: Any, emulator: EmulatorServer) -> None:
    run = dags_test("venice_it_invalid")
    assert not run.succeeded, run.tail()
    for case, message in INVALID_CASES.items():
        assert f"queue_bad_{case}" in run.output
        assert message in run.output, case  # the error names the field (and what is allowed)
    assert run.output.count("AirflowFailException") >= len(INVALID_CASES)
    assert calls(emulator, QUEUE) == []
    assert emulator.jobs() == []
    assert "up_for_retry" not in run.output  # failed permanently: retries=2 left unused
