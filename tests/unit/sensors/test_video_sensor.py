"""VeniceVideoSensor: poke once, defer to the trigger, validate the trigger's event; or reschedule.

Venice is an ``httpx.MockTransport`` answering ``/video/retrieve``. A reschedule is what Airflow does
with ``mode="reschedule"``: each poke is a new try of ``execute`` on a fresh sensor instance, sharing
only the task state store.
"""

from __future__ import annotations

import importlib
import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from airflow_provider_venice.client import DEFAULT_POLL_POLICY, JobStatus, forget_catalogues
from airflow_provider_venice.client._polling import processing_delay
from airflow_provider_venice.hooks.venice import register_transports, unregister_transports
from airflow_provider_venice.sensors.video import VeniceVideoSensor
from airflow_provider_venice.triggers.video import VeniceVideoTrigger
from airflow_provider_venice.version_compat import (
    AirflowException,
    AirflowFailException,
    AirflowRescheduleException,
    TaskDeferred,
)

BASE_URL = "https://venice.test/api/v1"
MODEL = "wan-2-7-text-to-video"
VPS = "grok-imagine-text-to-video-private"
DOWNLOAD_URL = "https://media.venice.test/q.mp4"
GRACE_S = 300  # a deferral outlives the trigger's deadline by this much, then the scheduler fails it
RESULT_KEYS = {
    "status",
    "model",
    "queue_id",
    "download_url",
    "quote_usd",
    "request_fingerprint",
    "execution_duration_ms",
}
QUEUE_OUTPUT = {  # what VeniceVideoQueueOperator returns: job=queue.output
    "model": MODEL,
    "queue_id": "q-1",
    "download_url": None,
    "quote_usd": 0.35,
    "request_fingerprint": "0123456789abcdef0123456789abcdef",
}


def processing(average_ms: int = 60_000, elapsed_ms: int = 5_000) -> httpx.Response:
    return httpx.Response(
        200,
        json={"status": "PROCESSING", "average_execution_time": average_ms, "execution_duration": elapsed_ms},
    )


def mp4() -> httpx.Response:
    return httpx.Response(
        200, content=b"\0\0\0\x18ftypisom" + b"\0" * 64, headers={"content-type": "video/mp4"}
    )


class Retrieves:
    """Answers ``/video/retrieve`` with the scripted responses in turn (the last one repeats)."""

    def __init__(self) -> None:
        self.answers: list[httpx.Response | Exception] = [processing()]
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        assert request.url.path == "/api/v1/video/retrieve", request.url
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class Store:
    """``context["task_state_store"]``, surviving reschedules (JSON round trip, as a real store)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = json.loads(json.dumps(value))

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


class TaskInstance:
    """The part of ``context["ti"]`` a rescheduled sensor reads."""

    def get_first_reschedule_date(self, context: Any) -> None:
        return None


def make_context(store: Store | None = None) -> dict[str, Any]:
    return {"task_state_store": store if store is not None else Store(), "ti": TaskInstance()}


@pytest.fixture
def retrieves(monkeypatch: pytest.MonkeyPatch) -> Iterator[Retrieves]:
    fake = Retrieves()
    conn = {"conn_type": "venice", "host": BASE_URL, "password": "sk-sensor-key", "extra": {"max_retries": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", json.dumps(conn))
    forget_catalogues()
    register_transports(BASE_URL, httpx.MockTransport(fake.handle))
    yield fake
    unregister_transports(BASE_URL)


def sensor(**kwargs: Any) -> VeniceVideoSensor:
    if "job" not in kwargs:
        kwargs.setdefault("model", MODEL)
        kwargs.setdefault("queue_id", "q-1")
    return VeniceVideoSensor(task_id="wait", **kwargs)


def reschedule_delay(s: VeniceVideoSensor, context: dict[str, Any]) -> float:
    """Run one try in reschedule mode; return the seconds until Airflow would run the next."""
    before = datetime.now(UTC)
    with pytest.raises(AirflowRescheduleException) as info:
        s.execute(context)
    return (info.value.reschedule_date - before).total_seconds()


# --- the contract ---------------------------------------------------------------------------------


def test_defaults_wait_in_the_triggerer_and_push_each_key() -> None:
    """Issue 12, #15: the default does not hold a worker slot for the length of the job."""
    s = sensor()
    assert s.deferrable is True
    assert s.multiple_outputs is True


def test_sensor_does_no_io_at_construction(retrieves: Retrieves) -> None:
    sensor()
    sensor(job=QUEUE_OUTPUT)
    assert retrieves.requests == []


# --- deferrable ----------------------------------------------------------------------------------


def test_running_job_defers_to_the_trigger_with_a_timeout(retrieves: Retrieves) -> None:
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        sensor(download_url=DOWNLOAD_URL, timeout=3600).execute(make_context())
    deferred = info.value
    assert deferred.method_name == "execute_complete"
    trigger = deferred.trigger
    assert isinstance(trigger, VeniceVideoTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_venice.triggers.video.VeniceVideoTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs  # plain JSON
    assert kwargs["model"] == MODEL
    assert kwargs["queue_id"] == "q-1"
    assert kwargs["download_url"] == DOWNLOAD_URL
    assert kwargs["venice_conn_id"] == "venice_default"
    assert kwargs["errors_in_row"] == 0
    assert before + 3600 <= kwargs["deadline"] <= time.time() + 3600
    # the first poke said 5 s of an estimated 60 s: the trigger starts by sleeping towards the window
    expected_delay = processing_delay(JobStatus("processing", 60_000, 5_000))
    assert before + expected_delay <= kwargs["next_poll_at"] <= time.time() + expected_delay
    assert len(retrieves.requests) == 1  # one poke on the worker before deferring
    # without a triggerer the deferral times out (deadline + grace) instead of hanging forever
    assert deferred.timeout is not None
    assert timedelta(seconds=3600) < deferred.timeout <= timedelta(seconds=3600 + GRACE_S)
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)


def test_deadline_follows_the_sensor_timeout(retrieves: Retrieves) -> None:
    with pytest.raises(TaskDeferred) as info:
        sensor(timeout=timedelta(minutes=10)).execute(make_context())
    deadline = info.value.trigger.serialize()[1]["deadline"]
    assert time.time() + 590 < deadline <= time.time() + 600
    assert timedelta(minutes=10) < info.value.timeout <= timedelta(minutes=10, seconds=GRACE_S)


def test_window_interval_is_passed_to_the_trigger(retrieves: Retrieves) -> None:
    with pytest.raises(TaskDeferred) as info:
        sensor(window_interval_s=2.5).execute(make_context())
    assert info.value.trigger.serialize()[1]["window_interval_s"] == 2.5


def test_the_whole_job_is_accepted_and_handed_on(retrieves: Retrieves) -> None:
    """``job=queue.output`` as a native value; the result carries the job on (``job=wait.output``)."""
    with pytest.raises(TaskDeferred) as info:
        sensor(job=QUEUE_OUTPUT).execute(make_context())
    kwargs = info.value.trigger.serialize()[1]
    assert {key: kwargs[key] for key in QUEUE_OUTPUT} == QUEUE_OUTPUT
    retrieves.answers = [mp4()]
    result = sensor(job=QUEUE_OUTPUT).execute(make_context())
    assert set(result) == RESULT_KEYS
    assert {key: result[key] for key in QUEUE_OUTPUT} == QUEUE_OUTPUT
    # and the sensor's own output is a job for the next task
    retrieves.answers = [mp4()]
    assert sensor(job=result).execute(make_context()) == result


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"job": "{'model': 'wan-2-7-text-to-video', 'queue_id': 'q-1'}"}, "job"),
        ({"job": json.dumps(QUEUE_OUTPUT)}, "job"),
        ({"job": {**QUEUE_OUTPUT, "download_url": "None"}}, "download_url"),
        ({"job": {**QUEUE_OUTPUT, "quote_usd": "0.35"}}, "quote_usd"),
        ({"job": {**QUEUE_OUTPUT, "quote_usd": float("nan")}}, "quote_usd"),
        ({"job": {"model": MODEL}}, "queue_id"),
        ({"model": MODEL, "queue_id": "q-1", "download_url": "None"}, "download_url"),
        ({"model": MODEL, "queue_id": ""}, "queue_id"),
    ],
    ids=[
        "rendered-dict",
        "json-text",
        "download-url-None-text",
        "quote-as-text",
        "quote-nan",
        "no-queue-id",
        "argument-download-url-None-text",
        "empty-queue-id",
    ],
)
def test_what_is_not_a_job_is_refused_naming_the_field_before_any_request(
    retrieves: Retrieves, arguments: dict[str, Any], field: str
) -> None:
    with pytest.raises(AirflowFailException, match=field):
        sensor(**arguments).execute(make_context())
    assert retrieves.requests == []


@pytest.mark.parametrize(
    ("answer", "model", "download_url", "duration_ms"),
    [
        (mp4(), MODEL, None, None),
        (
            httpx.Response(200, json={"status": "COMPLETED", "execution_duration": 31000}),
            VPS,
            DOWNLOAD_URL,
            31000,
        ),
    ],
    ids=["binary-mp4", "vps-completed"],
)
def test_finished_on_first_poke_returns_without_deferring(
    retrieves: Retrieves,
    answer: httpx.Response,
    model: str,
    download_url: str | None,
    duration_ms: int | None,
) -> None:
    retrieves.answers = [answer]
    result = sensor(model=model, download_url=download_url).execute(make_context())
    assert result == {
        "status": "COMPLETED",
        "model": model,
        "queue_id": "q-1",
        "download_url": download_url,
        "quote_usd": None,
        "request_fingerprint": None,
        "execution_duration_ms": duration_ms,
    }
    json.dumps(result)
    assert len(retrieves.requests) == 1


def test_retrieve_never_asks_venice_to_delete_media(retrieves: Retrieves) -> None:
    retrieves.answers = [mp4()]
    sensor().execute(make_context())
    body = json.loads(retrieves.requests[0].content)
    assert body == {"model": MODEL, "queue_id": "q-1", "delete_media_on_completion": False}


def test_transient_error_on_the_first_poke_still_defers(retrieves: Retrieves) -> None:
    retrieves.answers = [httpx.Response(503, json={"error": "at capacity"}, headers={"retry-after": "20"})]
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        sensor().execute(make_context())
    kwargs = info.value.trigger.serialize()[1]
    assert before + 20 <= kwargs["next_poll_at"] <= time.time() + 20 + 2.2
    assert kwargs["errors_in_row"] == 1  # the trigger carries on with the back-off


@pytest.mark.parametrize(
    ("answer", "mention"),
    [
        (httpx.Response(400, json={"error": "Request ID is invalid"}), "Request ID is invalid"),
        (httpx.Response(404, json={"error": "Media not found"}), "Media not found"),
        (
            httpx.Response(
                422,
                json={
                    "error": {
                        "message": "The provider refused",
                        "type": "provider_content_policy",
                        "credits_refunded": True,
                    }
                },
            ),
            "provider_content_policy",
        ),
        (httpx.Response(200, json={"status": "FAILED", "error": "GPU melted"}), "GPU melted"),
    ],
    ids=["invalid-id", "404", "422-refused", "failed-status"],
)
def test_failed_job_on_first_poke_fails_permanently(
    retrieves: Retrieves, answer: httpx.Response, mention: str
) -> None:
    retrieves.answers = [answer]
    with pytest.raises(AirflowFailException, match=mention) as info:
        sensor().execute(make_context())
    assert "q-1" in str(info.value)


# --- execute_complete ----------------------------------------------------------------------------


def event(status: str, **fields: Any) -> dict[str, Any]:
    return {
        "status": status,
        "message": fields.pop("message", "video ready"),
        "model": MODEL,
        "queue_id": "q-1",
        "download_url": None,
        "quote_usd": None,
        "request_fingerprint": None,
        "execution_duration_ms": 42000,
        **fields,
    }


def test_success_event_gives_the_documented_result() -> None:
    result = sensor(download_url=DOWNLOAD_URL).execute_complete(
        {}, event("success", download_url=DOWNLOAD_URL)
    )
    assert result == {
        "status": "COMPLETED",
        "model": MODEL,
        "queue_id": "q-1",
        "download_url": DOWNLOAD_URL,
        "quote_usd": None,
        "request_fingerprint": None,
        "execution_duration_ms": 42000,
    }


def test_success_event_for_the_whole_job_keeps_its_price() -> None:
    result = sensor(job=QUEUE_OUTPUT).execute_complete({}, event("success", quote_usd=0.35))
    assert {key: result[key] for key in QUEUE_OUTPUT} == QUEUE_OUTPUT


@pytest.mark.parametrize(
    "bad_event",
    [None, {}, {"status": None}, {"status": "SUCCESS"}, {"status": "running"}, {"message": "no status"}],
)
def test_missing_or_unknown_events_raise(bad_event: Any) -> None:
    with pytest.raises(AirflowException, match="unexpected event"):
        sensor().execute_complete({}, bad_event)


def test_an_event_about_another_job_is_refused() -> None:
    with pytest.raises(AirflowException, match="q-other"):
        sensor().execute_complete({}, event("success", queue_id="q-other"))


def test_error_event_fails_with_venices_message() -> None:
    message = "Venice job q-1 failed: Venice /video/retrieve answered 422 (Content policy violation): refused"
    with pytest.raises(AirflowFailException) as info:
        sensor().execute_complete({}, event("error", message=message))
    assert str(info.value) == message


def test_timeout_event_raises_a_retryable_error() -> None:
    with pytest.raises(AirflowException, match="deadline") as info:
        sensor().execute_complete({}, event("timeout", message="still unfinished at the deadline"))
    assert not isinstance(info.value, AirflowFailException)
    assert "q-1" in str(info.value)


# --- deferrable=False: poking on a worker ---------------------------------------------------------


@pytest.mark.parametrize(
    ("average_ms", "elapsed_ms"), [(60_000, 5_000), (100_000, 80_000), (30_000, 200_000), (0, 10_000)]
)
def test_reschedule_follows_the_polling_policy(
    retrieves: Retrieves, average_ms: int, elapsed_ms: int
) -> None:
    retrieves.answers = [processing(average_ms, elapsed_ms)]
    delay = reschedule_delay(sensor(deferrable=False, mode="reschedule"), make_context())
    expected = processing_delay(JobStatus("processing", average_ms, elapsed_ms))
    assert expected - 0.5 <= delay <= expected + 0.5


def test_a_rescheduled_sensor_returns_the_result_when_done(retrieves: Retrieves) -> None:
    retrieves.answers = [processing(), mp4()]
    store = Store()
    reschedule_delay(sensor(deferrable=False, mode="reschedule"), make_context(store))
    result = sensor(deferrable=False, mode="reschedule").execute(make_context(store))
    assert result["status"] == "COMPLETED"
    assert result["queue_id"] == "q-1"
    assert len(retrieves.requests) == 2


def test_the_error_count_survives_reschedules_so_the_back_off_grows(retrieves: Retrieves) -> None:
    """Issue 12, #12: each reschedule is a fresh sensor; the count lives in the task state store."""
    retrieves.answers = [httpx.Response(500, json={"error": "boom"})]
    store = Store()
    delays = [
        reschedule_delay(sensor(deferrable=False, mode="reschedule"), make_context(store)) for _ in range(4)
    ]
    # 2 s x 2^n with +-25 % jitter: each range lies wholly above the one before
    assert all(later > earlier for earlier, later in itertools.pairwise(delays)), delays
    assert delays[-1] >= DEFAULT_POLL_POLICY.error_base_s * 2**3 * 0.75
    assert max(delays) <= DEFAULT_POLL_POLICY.max_error_delay_s + 1
    # one good answer resets it
    retrieves.answers = [processing()]
    reschedule_delay(sensor(deferrable=False, mode="reschedule"), make_context(store))
    retrieves.answers = [httpx.Response(500, json={"error": "boom"})]
    after_reset = reschedule_delay(sensor(deferrable=False, mode="reschedule"), make_context(store))
    assert after_reset <= DEFAULT_POLL_POLICY.error_base_s * 1.25 + 0.5


def test_the_error_counts_of_two_sensors_are_their_own(retrieves: Retrieves) -> None:
    retrieves.answers = [httpx.Response(500, json={"error": "boom"})]
    one, other = Store(), Store()
    for _ in range(3):
        reschedule_delay(sensor(deferrable=False, mode="reschedule"), make_context(one))
    first_of_other = reschedule_delay(sensor(deferrable=False, mode="reschedule"), make_context(other))
    assert first_of_other <= DEFAULT_POLL_POLICY.error_base_s * 1.25 + 0.5


def test_a_rescheduled_poke_fails_on_a_permanent_error(retrieves: Retrieves) -> None:
    retrieves.answers = [httpx.Response(401, json={"error": "Authentication failed"})]
    with pytest.raises(AirflowFailException, match="Authentication failed"):
        sensor(deferrable=False, mode="reschedule").execute(make_context())


def test_poke_mode_keeps_poking_on_the_worker_until_done(retrieves: Retrieves) -> None:
    retrieves.answers = [processing(average_ms=0, elapsed_ms=0), mp4()]
    result = sensor(deferrable=False, window_interval_s=0.1).execute(make_context())
    assert result["status"] == "COMPLETED"
    assert len(retrieves.requests) == 2
