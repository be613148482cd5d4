"""Queue once: resume an earlier try's job, check the budget, price, and pay at most once.

Venice is scripted with ``httpx.MockTransport`` (or the in-process emulator); the handler looks at the
task state store at the moment the request arrives, which is what a crash at that moment would leave.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_venice.client import (
    NO_RETRY,
    GatewayTimeoutError,
    QueueVideoRequest,
    ServerError,
    VeniceClient,
    VeniceError,
)
from airflow_provider_venice.job import Stage, VeniceJob, fingerprint
from airflow_provider_venice.lifecycle.queue import budget, price, queue_paid, resume
from airflow_provider_venice.lifecycle.record import RECORD_KEY
from airflow_provider_venice.testing import VeniceEmulator
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException
from tests.unit.lifecycle.lifecycle_helpers import CountingStore, RecordingLog, new_record

BASE_URL = "https://venice.test/api/v1"
API_KEY = "sk-queue-tests-0123456789"
MODEL = "wan-2-7-text-to-video"
REQUEST = QueueVideoRequest(model=MODEL, prompt="a red fox in snow", duration="5s", resolution="720p")
FINGERPRINT = fingerprint(REQUEST.model_dump(exclude_none=True), "s3://bucket/fox.mp4")
DESTINATION = "s3://bucket/fox.mp4"


def client_for(handler: Callable[[httpx.Request], httpx.Response]) -> VeniceClient:
    return VeniceClient(API_KEY, base_url=BASE_URL, transport=httpx.MockTransport(handler), retry=NO_RETRY)


def answer(status: int, body: Any = None, **kwargs: Any) -> Callable[[httpx.Request], httpx.Response]:
    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, **kwargs)

    return respond


def queue(
    client: VeniceClient, store: CountingStore, log: RecordingLog | None = None, **kwargs: Any
) -> VeniceJob:
    arguments: dict[str, Any] = {
        "quote_usd": 0.35,
        "request_fingerprint": FINGERPRINT,
        "destination": DESTINATION,
        "log": log or RecordingLog(),
        **kwargs,
    }
    return queue_paid(client, REQUEST, new_record(store), **arguments)


def stored_record(
    model: str = MODEL, queue_id: str = "q-old", stage: str = "queued", **fields: Any
) -> dict[str, Any]:
    return {
        "stage": stage,
        "job": VeniceJob(model, queue_id, None, 0.35, FINGERPRINT).to_xcom(),
        "request_fingerprint": FINGERPRINT,
        "destination": DESTINATION,
        **fields,
    }


# --- resume --------------------------------------------------------------------------------------


def test_resume_without_a_record_is_none() -> None:
    log = RecordingLog()
    assert resume(new_record(CountingStore()), FINGERPRINT, DESTINATION, log) is None
    assert log.lines == []


@pytest.mark.parametrize("stage", ["queued", "uploading", "delivered", "completed"])
def test_resume_returns_the_job_an_earlier_try_queued(stage: str) -> None:
    store, log = CountingStore(), RecordingLog()
    store.data[RECORD_KEY] = stored_record(stage=stage)
    job = resume(new_record(store), FINGERPRINT, DESTINATION, log)
    assert job == VeniceJob(MODEL, "q-old", None, 0.35, FINGERPRINT)
    assert "q-old" in log.text("info")
    assert "not queueing again" in log.text("info")
    assert store.set_calls == 0


@pytest.mark.parametrize(
    ("request_fingerprint", "destination"),
    [("another-request", DESTINATION), (FINGERPRINT, "s3://bucket/other.mp4"), (FINGERPRINT, None)],
)
def test_resume_sets_aside_a_record_of_another_request_or_destination(
    request_fingerprint: str, destination: str | None
) -> None:
    store, log = CountingStore(), RecordingLog()
    store.data[RECORD_KEY] = stored_record()
    record = new_record(store)
    assert resume(record, request_fingerprint, destination, log) is None
    warning = log.text("warning")
    assert "q-old" in warning  # the earlier job is named: it is left undelivered
    assert "different request or destination" in warning
    assert record.stage is None
    assert record.job is None
    assert store.record == stored_record()  # nothing is written until the new job advances


def test_resume_refuses_when_an_earlier_try_never_recorded_the_answer() -> None:
    store = CountingStore()
    store.data[RECORD_KEY] = {
        "stage": "queueing",
        "request_fingerprint": FINGERPRINT,
        "destination": DESTINATION,
    }
    with pytest.raises(AirflowFailException) as caught:
        resume(new_record(store), FINGERPRINT, DESTINATION, RecordingLog())
    message = str(caught.value)
    assert "Not queueing again" in message
    assert "may exist and be charged" in message
    assert store.set_calls == 0
    assert store.deletes == 0


def test_resume_refuses_a_queued_record_whose_job_is_unreadable() -> None:
    store = CountingStore()
    store.data[RECORD_KEY] = {**stored_record(), "job": {"model": MODEL}}
    with pytest.raises(AirflowFailException, match="Not queueing again"):
        resume(new_record(store), FINGERPRINT, DESTINATION, RecordingLog())


# --- budget --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "max_usd",
    ["nan", "inf", "-inf", " NaN ", -1, -0.01, True, False, "abc", "1,5", [1], float("nan"), "", "None"],
)
def test_budget_refuses_what_is_not_an_amount_naming_max_usd(max_usd: Any) -> None:
    with pytest.raises(AirflowFailException) as caught:
        budget(max_usd)
    message = str(caught.value)
    assert message.startswith("max_usd: ")
    assert "nothing was queued or charged" in message


@pytest.mark.parametrize(
    ("max_usd", "expected"), [("1.5", 1.5), (" 2.25 ", 2.25), (2, 2.0), (0, 0.0), (0.35, 0.35)]
)
def test_budget_accepts_numbers_and_numeric_text(max_usd: Any, expected: float) -> None:
    value = budget(max_usd)
    assert value == expected
    assert type(value) is float


def test_no_budget_is_none() -> None:
    """Only None means no budget: a template that rendered nothing ("") must not switch the limit off."""
    assert budget(None) is None


# --- price ---------------------------------------------------------------------------------------


def quote_client(quote: float) -> tuple[VeniceClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        assert request.url.path == "/api/v1/video/quote"
        return httpx.Response(200, json={"quote": quote})

    return client_for(handle), seen


def test_price_returns_the_quote_within_budget() -> None:
    client, seen = quote_client(0.35)
    log = RecordingLog()
    assert price(client, REQUEST.to_quote_request(), 0.35, log) == 0.35
    assert len(seen) == 1
    assert "0.3500" in log.text("info")


def test_price_without_budget_returns_the_quote() -> None:
    client, _ = quote_client(12.0)
    assert price(client, REQUEST.to_quote_request(), None, RecordingLog()) == 12.0


def test_price_refuses_a_quote_over_budget() -> None:
    client, _ = quote_client(0.36)
    with pytest.raises(AirflowFailException) as caught:
        price(client, REQUEST.to_quote_request(), 0.35, RecordingLog())
    message = str(caught.value)
    assert message.startswith("max_usd: ")
    assert "$0.3600" in message
    assert "$0.3500" in message
    assert MODEL in message
    assert "nothing was queued or charged" in message


@pytest.mark.parametrize(("status", "failure"), [(400, AirflowFailException), (500, AirflowException)])
def test_a_failed_quote_with_a_budget_fails(status: int, failure: type[Exception]) -> None:
    client = client_for(answer(status, {"error": "quote unavailable"}))
    with pytest.raises(failure) as caught:
        price(client, REQUEST.to_quote_request(), 1.0, RecordingLog())
    assert "quote unavailable" in str(caught.value)
    assert "max_usd" in str(caught.value)
    assert "nothing was queued" in str(caught.value)
    if failure is AirflowException:
        assert not isinstance(caught.value, AirflowFailException)  # transient: a retry may help


def test_a_failed_quote_without_a_budget_is_a_warning() -> None:
    log = RecordingLog()
    client = client_for(answer(500, {"error": "quote unavailable"}))
    assert price(client, REQUEST.to_quote_request(), None, log) is None
    assert "quote unavailable" in log.text("warning")


def test_an_unusable_quote_without_a_budget_is_a_warning() -> None:
    log = RecordingLog()
    client = client_for(answer(200, {"quote": "lots"}))
    assert price(client, REQUEST.to_quote_request(), None, log) is None
    assert log.messages("warning")


# --- queue_paid ----------------------------------------------------------------------------------


def test_the_record_says_queueing_before_the_request_and_queued_with_the_job_after() -> None:
    store = CountingStore()
    seen_at_send: list[dict[str, Any] | None] = []

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/video/queue"
        seen_at_send.append(json.loads(json.dumps(store.record)))
        return httpx.Response(200, json={"model": MODEL, "queue_id": "q-9"})

    job = queue(client_for(handle), store)
    assert len(seen_at_send) == 1
    at_send = seen_at_send[0]
    assert at_send is not None
    assert at_send["stage"] == "queueing"
    assert at_send["request_fingerprint"] == FINGERPRINT
    assert at_send["destination"] == DESTINATION
    assert "job" not in at_send

    assert job == VeniceJob(MODEL, "q-9", None, 0.35, FINGERPRINT)
    after = store.record
    assert after is not None
    assert after["stage"] == "queued"
    assert after["job"] == job.to_xcom()
    assert isinstance(after["queued_at"], float)
    assert store.set_calls == 2


def test_queueing_drops_the_job_of_an_earlier_request_from_the_record() -> None:
    store = CountingStore()
    store.data[RECORD_KEY] = stored_record(queue_id="q-old")
    record = new_record(store)
    record.start_over()
    client = client_for(answer(200, {"model": MODEL, "queue_id": "q-new"}))
    seen: list[Any] = []
    store.before_set = lambda value: seen.append(value.get("job"))
    queue_paid(
        client, REQUEST, record, quote_usd=None, request_fingerprint=FINGERPRINT, destination=DESTINATION,
        log=RecordingLog(),
    )  # fmt: skip
    assert seen[0] is None
    assert store.record is not None
    assert store.record["job"]["queue_id"] == "q-new"


def test_the_queue_id_is_logged_before_the_record_is_written() -> None:
    log = RecordingLog()
    logged_at_write: list[str] = []
    store = CountingStore(before_set=lambda value: logged_at_write.append(log.text()))
    queue(client_for(answer(200, {"model": MODEL, "queue_id": "q-42"})), store, log)
    assert "q-42" not in logged_at_write[0]
    assert "q-42" in logged_at_write[1]
    assert "queue_id=q-42" in log.text("info")


def test_a_store_refusing_the_queued_record_fails_naming_the_queue_id() -> None:
    log = RecordingLog()
    store = CountingStore(fail_on_set=[2])
    with pytest.raises(AirflowFailException) as caught:
        queue(client_for(answer(200, {"model": MODEL, "queue_id": "q-paid"})), store, log)
    message = str(caught.value)
    assert "q-paid" in message
    assert "queued and paid for" in message
    assert f"queue_id={'q-paid'!r}" in message  # how to deliver it by hand
    assert "q-paid" in log.text("info")
    assert store.record is not None
    assert store.record["stage"] == "queueing"  # a retry will not queue again


def test_a_store_refusing_the_queueing_record_sends_nothing() -> None:
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"model": MODEL, "queue_id": "q-1"})

    with pytest.raises(AirflowException):
        queue(client_for(handle), CountingStore(fail_on_set=[1]))
    assert sent == []


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (402, False), (422, False), (429, True), (503, True)],
)
def test_a_refusal_forgets_the_record(status: int, retryable: bool) -> None:
    store = CountingStore()
    client = client_for(answer(status, {"error": "refused by Venice"}))
    with pytest.raises(AirflowException) as caught:
        queue(client, store)
    assert "refused by Venice" in str(caught.value)
    assert "nothing was queued or charged" in str(caught.value)
    assert isinstance(caught.value, AirflowFailException) is not retryable
    assert RECORD_KEY not in store.data
    assert store.deletes == 1
    assert new_record(store).stage is None


def test_a_connection_never_made_forgets_the_record() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    store = CountingStore()
    with pytest.raises(AirflowException) as caught:
        queue(client_for(refuse), store)
    assert not isinstance(caught.value, AirflowFailException)
    assert RECORD_KEY not in store.data


def test_a_refusal_is_reported_even_when_forgetting_fails() -> None:
    class StickyStore(CountingStore):
        def delete(self, key: str) -> None:
            raise ConnectionError("store gone")

    log = RecordingLog()
    with pytest.raises(AirflowFailException, match="refused by Venice"):
        queue(client_for(answer(400, {"error": "refused by Venice"})), StickyStore(), log)
    assert "store gone" in log.text("warning")


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(lambda request: httpx.Response(500, json={"error": "inference failed"}), id="500"),
        pytest.param(lambda request: httpx.Response(504, text="gateway timeout"), id="504"),
        pytest.param(
            lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=request)),
            id="read-timeout",
        ),
        pytest.param(lambda request: httpx.Response(200, json={"model": MODEL}), id="2xx-without-queue_id"),
        pytest.param(lambda request: httpx.Response(200, json={"queue_id": ""}), id="2xx-empty-queue_id"),
        pytest.param(lambda request: httpx.Response(200, json={"queue_id": 17}), id="2xx-numeric-queue_id"),
        pytest.param(lambda request: httpx.Response(200, text="<html>ok</html>"), id="2xx-not-json"),
    ],
)
def test_an_unknown_outcome_keeps_the_queueing_guard(
    failure: Callable[[httpx.Request], httpx.Response],
) -> None:
    store = CountingStore()
    with pytest.raises(AirflowFailException) as caught:
        queue(client_for(failure), store)
    assert "charged" in str(caught.value)
    assert store.record is not None
    assert store.record["stage"] == "queueing"
    assert store.deletes == 0
    # the next try finds the guard and refuses to queue again
    with pytest.raises(AirflowFailException, match="Not queueing again"):
        resume(new_record(store), FINGERPRINT, DESTINATION, RecordingLog())


class RaisingClient:
    """A stand-in client whose ``queue`` raises ``error`` as it is (the real client turns 500 and 504 on
    ``/video/queue`` into QueueOutcomeUnknownError itself; this checks queue_paid's own rule)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def queue(self, request: QueueVideoRequest) -> Any:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        ServerError("/video/queue", 500, "inference failed"),
        GatewayTimeoutError("/video/queue", 504, "gateway timeout"),
        VeniceError("something unexpected"),
    ],
    ids=["500", "504", "other"],
)
def test_an_error_that_may_hide_a_charged_job_keeps_the_guard(error: Exception) -> None:
    store = CountingStore()
    with pytest.raises(AirflowFailException) as caught:
        queue(RaisingClient(error), store)  # type: ignore[arg-type]
    assert "may exist and be charged" in str(caught.value)
    assert "not resent" in str(caught.value)
    assert store.record is not None
    assert store.record["stage"] == "queueing"
    assert store.deletes == 0


def test_an_answer_without_model_records_the_request_model() -> None:
    store = CountingStore()
    job = queue(client_for(answer(200, {"queue_id": "q-5"})), store)
    assert job.model == MODEL
    assert store.record is not None
    assert store.record["job"]["model"] == MODEL
    assert store.record["stage"] == "queued"


def test_a_download_url_is_recorded_with_the_job() -> None:
    url = "https://media.venice.test/files/q-vps.mp4?sig=1"
    store = CountingStore()
    job = queue(client_for(answer(200, {"model": MODEL, "queue_id": "q-vps", "download_url": url})), store)
    assert job.download_url == url
    assert store.record is not None
    assert store.record["job"]["download_url"] == url


def test_the_api_key_stays_out_of_the_record_and_the_log() -> None:
    store, log = CountingStore(), RecordingLog()
    queue(client_for(answer(200, {"model": MODEL, "queue_id": "q-1"})), store, log)
    assert API_KEY not in json.dumps(store.written)
    assert API_KEY not in log.text()


def test_queue_once_against_the_emulator_pays_once_across_tries() -> None:
    emulator = VeniceEmulator(job_seconds=0)
    client = VeniceClient(
        API_KEY, base_url=emulator.base_url, transport=emulator.sync_transport(), retry=NO_RETRY
    )
    store = CountingStore()
    first = new_record(store)
    assert resume(first, FINGERPRINT, DESTINATION, RecordingLog()) is None
    quote = price(client, REQUEST.to_quote_request(), 1.0, RecordingLog())
    job = queue_paid(
        client, REQUEST, first, quote_usd=quote, request_fingerprint=FINGERPRINT, destination=DESTINATION,
        log=RecordingLog(),
    )  # fmt: skip
    again = resume(new_record(store), FINGERPRINT, DESTINATION, RecordingLog())
    assert again == job
    assert job.quote_usd == quote
    assert new_record(store).stage is Stage.QUEUED
    queued = [call for call in emulator.calls() if call["path"].endswith("/video/queue")]
    assert len(queued) == 1
    assert [j["queue_id"] for j in emulator.jobs()] == [job.queue_id]
