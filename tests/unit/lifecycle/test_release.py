"""Release: delete a VPS job's file, then /video/complete; once, and only after the delivery is recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_venice.client import NO_RETRY, BadRequestError, DownloadUrlError, VeniceClient
from airflow_provider_venice.job import Stage, VeniceJob
from airflow_provider_venice.lifecycle.deliver import Delivery
from airflow_provider_venice.lifecycle.release import release, release_delivered
from airflow_provider_venice.testing import VeniceEmulator
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException
from tests.integration.s3_fixtures import T2V, VPS, calls_to, job_state, queue_job
from tests.unit.lifecycle.lifecycle_helpers import CountingStore, RecordingLog, new_record

BASE_URL = "https://venice.test/api/v1"
API_KEY = "sk-release-0123456789"
DOWNLOAD_URL = "https://media.venice.test/files/q-vps.mp4?sig=abc"
JOB = VeniceJob(T2V, "q-1")
VPS_JOB = VeniceJob(VPS, "q-vps", DOWNLOAD_URL)
DELIVERY = Delivery(
    "s3://venice-videos/k.mp4",
    "venice-videos",
    "k.mp4",
    10,
    "0" * 64,
    "AAAAAA==",
    "video/mp4",
    '"e"',
    None,
    None,
)


class Venice:
    """A scripted Venice and download host: answers by ``METHOD host path``, and logs every request."""

    def __init__(self, **answers: httpx.Response) -> None:
        self.answers = {
            "DELETE media.venice.test": httpx.Response(204),
            "POST venice.test /api/v1/video/complete": httpx.Response(200, json={"success": True}),
        }
        self.answers.update({key.replace("_", " "): value for key, value in answers.items()})
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for key in (
            f"{request.method} {request.url.host} {request.url.path}",
            f"{request.method} {request.url.host}",
        ):
            if key in self.answers:
                return self.answers[key]
        raise AssertionError(f"unexpected request {request.method} {request.url}")

    def client(self) -> VeniceClient:
        return VeniceClient(
            API_KEY, base_url=BASE_URL, transport=httpx.MockTransport(self.handle), retry=NO_RETRY
        )

    def seen(self) -> list[str]:
        return [f"{r.method} {r.url.host}{r.url.path}" for r in self.requests]


def complete_answers(response: httpx.Response) -> dict[str, httpx.Response]:
    return {"POST_venice.test_/api/v1/video/complete": response}


def invalid_request_id() -> httpx.Response:
    return httpx.Response(400, json={"error": "Request ID is invalid"})


# --- release -------------------------------------------------------------------------------------


def test_release_completes_a_job() -> None:
    venice, log = Venice(), RecordingLog()
    release(venice.client(), JOB, log)
    assert venice.seen() == ["POST venice.test/api/v1/video/complete"]
    assert json.loads(venice.requests[0].content) == {"model": T2V, "queue_id": "q-1"}
    assert "q-1" in log.text("info")


def test_release_deletes_a_vps_file_then_completes() -> None:
    venice = Venice()
    release(venice.client(), VPS_JOB, RecordingLog())
    assert venice.seen() == [
        "DELETE media.venice.test/files/q-vps.mp4",
        "POST venice.test/api/v1/video/complete",
    ]
    assert "authorization" not in {name.lower() for name in venice.requests[0].headers}


def test_a_404_from_complete_counts_as_released() -> None:
    venice, log = (
        Venice(**complete_answers(httpx.Response(404, json={"error": "Media not found"}))),
        RecordingLog(),
    )
    release(venice.client(), JOB, log)
    assert "already completed" in log.text("warning")


def test_request_id_is_invalid_counts_as_released_for_vps() -> None:
    venice, log = Venice(**complete_answers(invalid_request_id())), RecordingLog()
    release(venice.client(), VPS_JOB, log)
    assert venice.seen()[-1] == "POST venice.test/api/v1/video/complete"
    assert "released via download_url" in log.text("info")


def test_a_vps_file_already_gone_is_fine() -> None:
    venice = Venice(**complete_answers(invalid_request_id()))
    venice.answers["DELETE media.venice.test"] = httpx.Response(404)
    log = RecordingLog()
    release(venice.client(), VPS_JOB, log)
    assert "already gone" in log.text("info")
    assert len(venice.requests) == 2


def test_request_id_is_invalid_is_an_error_for_other_jobs() -> None:
    venice = Venice(**complete_answers(invalid_request_id()))
    with pytest.raises(BadRequestError):
        release(venice.client(), JOB, RecordingLog())


def test_another_bad_request_is_an_error_for_vps_jobs() -> None:
    venice = Venice(**complete_answers(httpx.Response(400, json={"error": "model is required"})))
    with pytest.raises(BadRequestError, match="model is required"):
        release(venice.client(), VPS_JOB, RecordingLog())


def test_a_vps_file_that_cannot_be_deleted_stops_before_complete() -> None:
    venice = Venice()
    venice.answers["DELETE media.venice.test"] = httpx.Response(403, text="forbidden")
    with pytest.raises(DownloadUrlError):
        release(venice.client(), VPS_JOB, RecordingLog())
    assert venice.seen() == ["DELETE media.venice.test/files/q-vps.mp4"]


# --- release_delivered ---------------------------------------------------------------------------


def record_at(stage: Stage | None) -> tuple[Any, CountingStore]:
    store = CountingStore()
    record = new_record(store)
    if stage is not None:
        record.advance(stage, job=JOB.to_xcom())
    return new_record(store), store


def test_release_delivered_completes_and_records_it() -> None:
    record, store = record_at(Stage.DELIVERED)
    venice = Venice()
    release_delivered(venice.client(), JOB, DELIVERY, record, RecordingLog())
    assert venice.seen() == ["POST venice.test/api/v1/video/complete"]
    assert record.stage is Stage.COMPLETED
    assert store.record is not None
    assert store.record["stage"] == "completed"


def test_release_delivered_does_nothing_once_completed() -> None:
    record, store = record_at(Stage.COMPLETED)
    writes = store.set_calls
    venice = Venice()
    release_delivered(venice.client(), JOB, DELIVERY, record, RecordingLog())
    assert venice.requests == []
    assert store.set_calls == writes


@pytest.mark.parametrize("stage", [None, Stage.QUEUEING, Stage.QUEUED, Stage.UPLOADING])
def test_release_delivered_refuses_before_the_delivery_is_recorded(stage: Stage | None) -> None:
    record, _ = record_at(stage)
    venice = Venice()
    with pytest.raises(AssertionError, match="q-1"):
        release_delivered(venice.client(), JOB, DELIVERY, record, RecordingLog())
    assert venice.requests == []


@pytest.mark.parametrize(
    ("response", "failure"),
    [
        (httpx.Response(500, json={"error": "internal"}), AirflowException),
        (httpx.Response(401, json={"error": "bad key"}), AirflowFailException),
    ],
)
def test_a_failed_release_keeps_the_delivered_record(
    response: httpx.Response, failure: type[Exception]
) -> None:
    record, store = record_at(Stage.DELIVERED)
    venice = Venice(**complete_answers(response))
    with pytest.raises(failure) as caught:
        release_delivered(venice.client(), JOB, DELIVERY, record, RecordingLog())
    assert "queue_id q-1" in str(caught.value)
    assert DELIVERY.s3_uri in str(caught.value)
    assert record.stage is Stage.DELIVERED
    assert store.record is not None
    assert store.record["stage"] == "delivered"
    assert (failure is AirflowFailException) == isinstance(caught.value, AirflowFailException)


# --- against the emulator ------------------------------------------------------------------------


def emulator_client(emulator: VeniceEmulator) -> VeniceClient:
    return VeniceClient(
        API_KEY, base_url=emulator.base_url, transport=emulator.sync_transport(), retry=NO_RETRY
    )


@pytest.mark.parametrize("model", [T2V, VPS])
def test_release_against_the_emulator(venice: Callable[..., VeniceEmulator], model: str) -> None:
    emulator = venice()
    job = VeniceJob.from_xcom(queue_job(emulator, model))
    release(emulator_client(emulator), job, RecordingLog())
    assert job_state(emulator, job.queue_id)["media_deleted"] is True
    calls = emulator.calls()
    assert len(calls_to(calls, "/video/complete")) == 1
    if model == VPS:
        deleted = calls_to(calls, "/_media", "DELETE")
        assert len(deleted) == 1
        assert calls.index(deleted[0]) < calls.index(calls_to(calls, "/video/complete")[0])
    # a second release finds nothing left, and that is fine
    release(emulator_client(emulator), job, RecordingLog())


def test_release_never_asks_to_delete_media_on_retrieve(venice: Callable[..., VeniceEmulator]) -> None:
    emulator = venice()
    job = VeniceJob.from_xcom(queue_job(emulator, T2V))
    release(emulator_client(emulator), job, RecordingLog())
    for call in emulator.calls():
        assert not (call.get("body") or {}).get("delete_media_on_completion")
