"""VeniceVideoSensor: poke once, defer to the trigger, validate the trigger's event."""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from airflow_provider_venice.client import DEFAULT_POLL_POLICY, forget_catalogues
from airflow_provider_venice.client._core import JobStatus
from airflow_provider_venice.client._polling import processing_delay
from airflow_provider_venice.hooks.venice import register_transports, unregister_transports
from airflow_provider_venice.sensors.video import VeniceVideoSensor
from airflow_provider_venice.triggers.video import VeniceVideoTrigger

BASE_URL = "https://venice.test/api/v1"
MODEL = "wan-2-7-text-to-video"
VPS = "grok-imagine-text-to-video-private"
DOWNLOAD_URL = "https://media.venice.test/q.mp4"


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
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("queue_id", "q-1")
    return VeniceVideoSensor(task_id="wait", **kwargs)


# --- deferrable ----------------------------------------------------------------------------------


def test_running_job_defers_to_the_trigger(retrieves: Retrieves) -> None:
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        sensor(deferrable=True, download_url=DOWNLOAD_URL, timeout=3600).execute({})
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
    assert before + 3600 <= kwargs["deadline"] <= time.time() + 3600
    # the first poke said 5 s of an estimated 60 s: the trigger starts by sleeping towards the window
    expected_delay = processing_delay(JobStatus("processing", 60_000, 5_000))
    assert before + expected_delay <= kwargs["next_poll_at"] <= time.time() + expected_delay
    assert len(retrieves.requests) == 1  # one poke on the worker before deferring
    assert deferred.timeout is None  # the deadline lives in the trigger, not in defer()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)


def test_deadline_follows_the_sensor_timeout(retrieves: Retrieves) -> None:
    with pytest.raises(TaskDeferred) as info:
        sensor(deferrable=True, timeout=timedelta(minutes=10)).execute({})
    deadline = info.value.trigger.serialize()[1]["deadline"]
    assert time.time() + 590 < deadline <= time.time() + 600


def test_window_interval_is_passed_to_the_trigger(retrieves: Retrieves) -> None:
    with pytest.raises(TaskDeferred) as info:
        sensor(deferrable=True, window_interval_s=2.5).execute({})
    assert info.value.trigger.serialize()[1]["window_interval_s"] == 2.5


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
    result = sensor(deferrable=True, model=model, download_url=download_url).execute({})
    assert result == {
        "status": "COMPLETED",
        "model": model,
        "queue_id": "q-1",
        "download_url": download_url,
        "execution_duration_ms": duration_ms,
    }
    json.dumps(result)
    assert len(retrieves.requests) == 1


def test_retrieve_never_asks_venice_to_delete_media(retrieves: Retrieves) -> None:
    retrieves.answers = [mp4()]
    sensor(deferrable=True).execute({})
    body = json.loads(retrieves.requests[0].content)
    assert body == {"model": MODEL, "queue_id": "q-1", "delete_media_on_completion": False}


def test_transient_error_on_the_first_poke_still_defers(retrieves: Retrieves) -> None:
    retrieves.answers = [httpx.Response(503, json={"error": "at capacity"}, headers={"retry-after": "20"})]
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        sensor(deferrable=True).execute({})
    next_poll_at = info.value.trigger.serialize()[1]["next_poll_at"]
    assert before + 20 <= next_poll_at <= time.time() + 20 + 2.2


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
        sensor(deferrable=True).execute({})
    assert "q-1" in str(info.value)


# --- execute_complete ----------------------------------------------------------------------------


def event(status: str, **fields: Any) -> dict[str, Any]:
    return {
        "status": status,
        "message": fields.pop("message", "video ready"),
        "model": MODEL,
        "queue_id": "q-1",
        "download_url": None,
        "execution_duration_ms": 42000,
        **fields,
    }


def test_success_event_gives_the_documented_result() -> None:
    result = sensor().execute_complete({}, event("success", download_url=DOWNLOAD_URL))
    assert result == {
        "status": "COMPLETED",
        "model": MODEL,
        "queue_id": "q-1",
        "download_url": DOWNLOAD_URL,
        "execution_duration_ms": 42000,
    }


@pytest.mark.parametrize(
    "bad_event",
    [None, {}, {"status": None}, {"status": "SUCCESS"}, {"status": "running"}, {"message": "no status"}],
)
def test_missing_or_unknown_events_raise(bad_event: Any) -> None:
    with pytest.raises(AirflowException, match="unexpected event"):
        sensor().execute_complete({}, bad_event)


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


# --- non-deferrable pokes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("average_ms", "elapsed_ms"), [(60_000, 5_000), (100_000, 80_000), (30_000, 200_000), (0, 10_000)]
)
def test_poke_sets_the_next_interval_from_the_policy(
    retrieves: Retrieves, average_ms: int, elapsed_ms: int
) -> None:
    retrieves.answers = [processing(average_ms, elapsed_ms)]
    s = sensor(deferrable=False, mode="reschedule")
    result = s.poke({})
    assert result.is_done is False
    assert s.poke_interval == processing_delay(JobStatus("processing", average_ms, elapsed_ms))


def test_poke_returns_the_result_when_done(retrieves: Retrieves) -> None:
    retrieves.answers = [processing(), mp4()]
    s = sensor(deferrable=False, mode="reschedule")
    assert s.poke({}).is_done is False
    done = s.poke({})
    assert done.is_done is True
    assert done.xcom_value["status"] == "COMPLETED"
    assert done.xcom_value["queue_id"] == "q-1"


def test_poke_backs_off_on_repeated_transient_errors(retrieves: Retrieves) -> None:
    retrieves.answers = [httpx.Response(500, json={"error": "boom"})]
    s = sensor(deferrable=False)
    intervals = []
    for _ in range(5):
        assert s.poke({}).is_done is False
        intervals.append(s.poke_interval)
    assert intervals[-1] > intervals[0]
    assert max(intervals) <= DEFAULT_POLL_POLICY.max_error_delay_s


def test_poke_fails_on_a_permanent_error(retrieves: Retrieves) -> None:
    retrieves.answers = [httpx.Response(401, json={"error": "Authentication failed"})]
    with pytest.raises(AirflowFailException, match="Authentication failed"):
        sensor(deferrable=False).poke({})


def test_deferrable_defaults_to_the_airflow_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sensor().deferrable is False  # [operators] default_deferrable is unset here
    assert sensor(deferrable=True).deferrable is True


def test_sensor_does_no_io_at_construction(retrieves: Retrieves) -> None:
    sensor(deferrable=True)
    assert retrieves.requests == []


def test_a_rendered_null_download_url_is_passed_on_as_none(retrieves: Retrieves) -> None:
    with pytest.raises(TaskDeferred) as info:
        sensor(deferrable=True, download_url="None").execute({})
    assert info.value.trigger.serialize()[1]["download_url"] is None
    retrieves.answers = [mp4()]
    assert sensor(deferrable=True, download_url="None").execute({})["download_url"] is None
