"""The poller: one watch over one job, its error count, deadline, failures and trigger events."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, strategies as st

from airflow_provider_venice.client import (
    NO_RETRY,
    AsyncVeniceClient,
    AuthenticationError,
    CapacityError,
    JobStatus,
    NotFoundError,
    RateLimitError,
    ServerError,
    VeniceClient,
    VeniceTransportError,
)
from airflow_provider_venice.job import VeniceJob
from airflow_provider_venice.lifecycle.poll import (
    DEFERRAL_GRACE_S,
    EVENT_STATUSES,
    Poller,
    deadline_after,
    read_event,
)
from airflow_provider_venice.testing import VeniceEmulator
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException

JOB = VeniceJob("wan-2-7-text-to-video", "q-7")
BASE_URL = "https://venice.test/api/v1"
PROCESSING = JobStatus("processing", 60_000, 10_000)
TRANSIENT = [
    ServerError("/video/retrieve", 500, "boom"),
    CapacityError("/video/retrieve", 503, "busy"),
    RateLimitError("/video/retrieve", 429, "slow down", retry_after=1.0),
    VeniceTransportError("/video/retrieve", "reset"),
]


def poller(**kwargs: Any) -> Poller:
    return Poller(JOB, deadline=kwargs.pop("deadline", time.time() + 3600), **kwargs)


def client_for(*answers: httpx.Response) -> VeniceClient:
    script = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/video/retrieve"
        body = json.loads(request.content)
        assert body["queue_id"] == JOB.queue_id
        assert body.get("delete_media_on_completion") in (None, False)
        return script.pop(0) if len(script) > 1 else script[0]

    return VeniceClient("sk-poll", base_url=BASE_URL, transport=httpx.MockTransport(handle), retry=NO_RETRY)


# --- decide --------------------------------------------------------------------------------------


@given(st.lists(st.sampled_from(["error", "answer"]), max_size=30))
def test_decide_counts_transient_errors_in_a_row_and_resets_on_an_answer(kinds: list[str]) -> None:
    watch = poller()
    expected = 0
    for kind in kinds:
        decision = watch.decide(TRANSIENT[0] if kind == "error" else PROCESSING)
        expected = expected + 1 if kind == "error" else 0
        assert watch.errors_in_row == expected
        assert decision.action == "wait"


def test_decide_remembers_the_last_error_until_an_answer() -> None:
    watch = poller()
    watch.decide(TRANSIENT[1])
    assert watch.last_error is TRANSIENT[1]
    watch.decide(PROCESSING)
    assert watch.last_error is None
    assert watch.last_status == PROCESSING


def test_decide_backs_off_with_the_errors_in_a_row() -> None:
    first = [poller(errors_in_row=0).decide(TRANSIENT[0]).delay_s for _ in range(20)]
    later = [poller(errors_in_row=4).decide(TRANSIENT[0]).delay_s for _ in range(20)]
    assert max(first) < min(later)


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
def test_transient_errors_wait(error: Exception) -> None:
    assert poller().decide(error).action == "wait"  # type: ignore[arg-type]


def test_done_and_failed_answers() -> None:
    assert poller().decide(JobStatus("video_ready", content_length=10)).action == "done"
    assert poller().decide(JobStatus("completed")).action == "done"
    failed = poller().decide(JobStatus("failed", message="FAILED: nsfw"))
    assert (failed.action, failed.message) == ("failed", "FAILED: nsfw")


def test_execution_duration_comes_from_the_last_processing_answer() -> None:
    watch = poller()
    assert watch.execution_duration_ms is None
    watch.decide(JobStatus("processing", 60_000, 5_000))
    watch.decide(JobStatus("processing", 60_000, 9_000))
    watch.decide(JobStatus("video_ready"))
    assert watch.execution_duration_ms == 9_000


# --- check ---------------------------------------------------------------------------------------


def test_check_waits_while_processing() -> None:
    watch = poller()
    decision = watch.check(
        client_for(httpx.Response(200, json={"status": "PROCESSING", "average_execution_time": 60000}))
    )
    assert decision.action == "wait"
    assert decision.delay_s > 0


def test_check_is_done_on_the_video_without_reading_it() -> None:
    watch = poller()
    video = httpx.Response(
        200, headers={"content-type": "video/mp4", "content-length": "1000"}, content=b"x" * 1000
    )
    assert watch.check(client_for(video)).action == "done"


def test_check_counts_transient_errors() -> None:
    watch = poller()
    client = client_for(
        httpx.Response(500, json={"error": "boom"}),
        httpx.Response(503, json={"error": "busy"}),
        httpx.Response(200, json={"status": "PROCESSING"}),
    )
    watch.check(client)
    watch.check(client)
    assert watch.errors_in_row == 2
    watch.check(client)
    assert watch.errors_in_row == 0


def test_check_fails_a_failed_job_naming_the_queue_id() -> None:
    watch = poller()
    with pytest.raises(AirflowFailException) as caught:
        watch.check(client_for(httpx.Response(200, json={"status": "FAILED", "error": "content rejected"})))
    assert str(caught.value) == "Venice job q-7 failed: FAILED: content rejected"


@pytest.mark.parametrize(
    ("status", "words"), [(404, "Not found"), (401, "bad key"), (400, "Request ID is invalid")]
)
def test_check_fails_a_permanent_error_naming_the_queue_id(status: int, words: str) -> None:
    watch = poller()
    with pytest.raises(AirflowFailException) as caught:
        watch.check(client_for(httpx.Response(status, json={"error": words})))
    assert words in str(caught.value)
    assert "queue_id q-7" in str(caught.value)


def test_failure_of_a_permanent_error_is_the_error_mapped() -> None:
    watch = poller()
    error = AuthenticationError("/video/retrieve", 401, "bad key")
    assert watch.decide(error).action == "failed"
    failure = watch.failure("ignored")
    assert type(failure) is AirflowFailException
    assert "bad key" in str(failure)
    assert "queue_id q-7" in str(failure)


def test_failure_of_a_failed_job_without_error() -> None:
    failure = poller().failure("FAILED: out of credits")
    assert type(failure) is AirflowFailException
    assert str(failure) == "Venice job q-7 failed: FAILED: out of credits"


def test_timeout_is_retryable_and_names_the_job() -> None:
    failure = poller().timeout()
    assert type(failure) is AirflowException
    assert "q-7" in str(failure)


def test_acheck_against_the_emulator() -> None:
    emulator = VeniceEmulator(job_seconds=0)
    with emulator.client() as http:
        answer = http.post("/video/queue", json={"model": JOB.model, "prompt": "fox", "duration": "5s"})
    job = VeniceJob(JOB.model, answer.json()["queue_id"])

    async def look() -> str:
        async with AsyncVeniceClient(
            "sk-poll", base_url=emulator.base_url, transport=emulator.async_transport(), retry=NO_RETRY
        ) as client:
            decision = await Poller(job, time.time() + 60).acheck(client)
            return decision.action

    assert asyncio.run(look()) == "done"


def test_acheck_reports_a_failure_as_a_decision() -> None:
    async def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "Not found"})

    async def look() -> tuple[str, Any]:
        async with AsyncVeniceClient(
            "sk-poll", base_url=BASE_URL, transport=httpx.MockTransport(handle), retry=NO_RETRY
        ) as client:
            watch = poller()
            return (await watch.acheck(client)).action, watch.last_error

    action, error = asyncio.run(look())
    assert action == "failed"
    assert isinstance(error, NotFoundError)


# --- deadline and state --------------------------------------------------------------------------


def test_past_deadline() -> None:
    assert poller(deadline=time.time() - 1).past_deadline()
    assert not poller(deadline=time.time() + 60).past_deadline()


def test_deferral_timeout_is_the_deadline_plus_a_grace() -> None:
    timeout = poller(deadline=time.time() + 100).deferral_timeout()
    assert isinstance(timeout, timedelta)
    assert 100 + DEFERRAL_GRACE_S - 2 <= timeout.total_seconds() <= 100 + DEFERRAL_GRACE_S
    assert poller(deadline=time.time() - 500).deferral_timeout() == timedelta(seconds=DEFERRAL_GRACE_S)


def test_deadline_after() -> None:
    now = time.time()
    assert deadline_after(60) == pytest.approx(now + 60, abs=2)
    assert deadline_after(timedelta(minutes=5)) == pytest.approx(now + 300, abs=2)
    assert deadline_after(None) == pytest.approx(now + 7 * 24 * 3600, abs=2)


@given(
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
    st.floats(min_value=0.1, max_value=60, allow_nan=False),
    st.integers(0, 50),
)
def test_state_round_trips_through_json(deadline: float, window: float, errors: int) -> None:
    watch = Poller(JOB, deadline, window, errors)
    state = json.loads(json.dumps(watch.state()))
    again = Poller(JOB, **state)
    assert again.state() == watch.state()
    assert (again.deadline, again.window_interval_s, again.errors_in_row) == (deadline, window, errors)
    assert again.policy.window_interval_s == window


def test_the_error_count_survives_a_round_trip() -> None:
    watch = poller()
    watch.decide(TRANSIENT[0])
    watch.decide(TRANSIENT[0])
    assert Poller(JOB, **watch.state()).errors_in_row == 2


# --- read_event ----------------------------------------------------------------------------------


def test_event_statuses() -> None:
    assert set(EVENT_STATUSES) == {"success", "error", "timeout"}


def test_a_success_event_is_returned() -> None:
    event = {"status": "success", "queue_id": "q-7", "model": JOB.model, "download_url": None}
    assert read_event(event, JOB) is event


def test_a_success_event_without_queue_id_is_returned() -> None:
    assert read_event({"status": "success"}, JOB) == {"status": "success"}


@pytest.mark.parametrize(
    "event", [None, {}, {"status": "COMPLETED"}, {"status": "done"}, {"queue_id": "q-7"}]
)
def test_a_missing_or_unknown_event_raises(event: dict[str, Any] | None) -> None:
    with pytest.raises(AirflowException, match="unexpected event") as caught:
        read_event(event, JOB)
    assert not isinstance(caught.value, AirflowFailException)


@pytest.mark.parametrize("event", ["success", ["success"], 42])
def test_an_event_that_is_not_a_dict_raises_as_unexpected(event: Any) -> None:
    with pytest.raises(AirflowException, match="unexpected event"):
        read_event(event, JOB)


@pytest.mark.parametrize("status", ["success", "error", "timeout"])
def test_an_event_about_another_job_raises(status: str) -> None:
    with pytest.raises(AirflowException) as caught:
        read_event({"status": status, "queue_id": "q-other", "message": "x"}, JOB)
    assert "q-other" in str(caught.value)
    assert "q-7" in str(caught.value)
    assert not isinstance(caught.value, AirflowFailException)


def test_an_error_event_fails_with_the_venice_message() -> None:
    with pytest.raises(AirflowFailException) as caught:
        read_event({"status": "error", "queue_id": "q-7", "message": "Venice job q-7 failed: nsfw"}, JOB)
    assert str(caught.value) == "Venice job q-7 failed: nsfw"


def test_a_timeout_event_is_retryable() -> None:
    with pytest.raises(AirflowException) as caught:
        read_event(
            {"status": "timeout", "queue_id": "q-7", "message": "still processing at the deadline"}, JOB
        )
    assert type(caught.value) is AirflowException
    assert "still processing at the deadline" in str(caught.value)
    assert "q-7" in str(caught.value)
