"""VeniceVideoTrigger against the in-process emulator (its ASGI app through an httpx transport).

The emulator's clock is advanced by hand, so no test sleeps for longer than the trigger's polling
floor (1 s); assertions are about calls and events, never about how fast something ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import structlog

from airflow_provider_venice.hooks.venice import register_transports, unregister_transports
from airflow_provider_venice.job import VeniceJob
from airflow_provider_venice.lifecycle.poll import DEFERRAL_GRACE_S, Poller
from airflow_provider_venice.testing import VeniceEmulator
from airflow_provider_venice.triggers.video import DEFAULT_WAIT_S, ProgressLog, VeniceVideoTrigger
from airflow_provider_venice.version_compat import AIRFLOW_V_3_3_PLUS

T2V = "wan-2-7-text-to-video"  # the emulator's estimate for it is 0.8 x the true length
VPS = "grok-imagine-text-to-video-private"
RETRIEVE = "/api/v1/video/retrieve"
EVENT_KEYS = {
    "status",
    "message",
    "model",
    "queue_id",
    "download_url",
    "quote_usd",
    "request_fingerprint",
    "execution_duration_ms",
}


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[VeniceEmulator]:
    """An emulator behind ``venice_default``; the client does not retry, so the trigger sees errors."""
    emu = VeniceEmulator(job_seconds=10)
    conn = {
        "conn_type": "venice",
        "host": emu.base_url,
        "password": "sk-trigger-test",
        "extra": {"max_retries": 0, "timeout_s": 10},
    }
    monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", json.dumps(conn))
    register_transports(emu.base_url, emu.sync_transport(), emu.async_transport())
    yield emu
    unregister_transports(emu.base_url)


def queue(emu: VeniceEmulator, model: str = T2V, prompt: str = "a fox in the snow") -> dict[str, Any]:
    body = {"model": model, "prompt": prompt, "duration": "5s" if model == T2V else "6s"}
    with emu.client() as http:
        response = http.post("/video/queue", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def trigger(job: dict[str, Any], **kwargs: Any) -> VeniceVideoTrigger:
    kwargs.setdefault("deadline", time.time() + 300)
    kwargs.setdefault("window_interval_s", 0.2)
    return VeniceVideoTrigger(
        model=job["model"], queue_id=job["queue_id"], download_url=job.get("download_url"), **kwargs
    )


def never_paid_nor_released(emu: VeniceEmulator) -> None:
    """A trigger only reads: no /video/queue, no /video/complete, no DELETE of a download_url."""
    paths = [(call["method"], call["path"]) for call in emu.calls()]
    assert ("POST", "/api/v1/video/complete") not in paths
    assert all(method != "DELETE" for method, _ in paths)


def retrieves(emu: VeniceEmulator) -> list[dict[str, Any]]:
    return [call for call in emu.calls() if call["path"] == RETRIEVE]


def run(
    trig: VeniceVideoTrigger,
    emu: VeniceEmulator,
    on_retrieve: dict[int, Callable[[], None]] | None = None,
) -> list[dict[str, Any]]:
    """Run the trigger to its end; ``on_retrieve[n]`` runs once the emulator has seen n retrieves."""
    pending = dict(on_retrieve or {})

    async def controller(task: asyncio.Task[list[Any]]) -> None:
        while pending and not task.done():
            seen = len(retrieves(emu))
            for count in sorted(pending):
                if seen >= count:
                    pending.pop(count)()
            await asyncio.sleep(0.01)

    async def main() -> list[Any]:
        async def collect() -> list[Any]:
            return [event async for event in trig.run()]

        task = asyncio.ensure_future(collect())
        await controller(task)
        return await asyncio.wait_for(task, timeout=30)

    queued = [call for call in emu.calls() if call["path"] == "/api/v1/video/queue"]
    events = asyncio.run(main())
    before = len(emu.calls())
    assert len(events) == 1, events  # exactly one event
    optional = {"retryable"} if events[0].payload.get("status") == "error" else set()
    assert set(events[0].payload) - optional == EVENT_KEYS
    assert [call for call in emu.calls() if call["path"] == "/api/v1/video/queue"] == queued
    never_paid_nor_released(emu)
    bodies = [call["body"] for call in retrieves(emu) if call["body"] is not None]  # None: faulted
    assert bodies or not retrieves(emu)
    for body in bodies:
        assert body["delete_media_on_completion"] is False
    assert len(emu.calls()) == before
    return [event.payload for event in events]


async def until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Wait (polling every 10 ms) until ``condition()`` holds; fail after ``timeout_s``."""
    for _ in range(int(timeout_s * 100)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


def only_retrieves_since(emu: VeniceEmulator, index: int) -> None:
    assert {call["path"] for call in emu.calls()[index:]} <= {RETRIEVE}


# --- serialisation -------------------------------------------------------------------------------


def test_serialize_round_trip_is_plain_json() -> None:
    original = VeniceVideoTrigger(
        model=VPS,
        queue_id="q-1",
        deadline=1_900_000_000.5,
        download_url="https://venice.test/_media/t/q-1.mp4",
        quote_usd=0.42,
        request_fingerprint="0123456789abcdef",
        venice_conn_id="venice_other",
        next_poll_at=1_899_999_000.0,
        window_interval_s=3.0,
        errors_in_row=2,
    )
    classpath, kwargs = original.serialize()
    assert classpath == "airflow_provider_venice.triggers.video.VeniceVideoTrigger"
    assert json.loads(json.dumps(kwargs, allow_nan=False)) == kwargs
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs == {
        "model": VPS,
        "queue_id": "q-1",
        "deadline": 1_900_000_000.5,
        "download_url": "https://venice.test/_media/t/q-1.mp4",
        "quote_usd": 0.42,
        "request_fingerprint": "0123456789abcdef",
        "venice_conn_id": "venice_other",
        "next_poll_at": 1_899_999_000.0,
        "window_interval_s": 3.0,
        "errors_in_row": 2,
    }


def test_watching_carries_the_pollers_job_deadline_and_error_count() -> None:
    job = VeniceJob(T2V, "q-7", None, 0.35, "fp-1")
    poller = Poller(job, deadline=1_900_000_000.0, window_interval_s=2.0, errors_in_row=3)
    before = time.time()
    trig = VeniceVideoTrigger.watching(poller, 12.0, "venice_other")
    kwargs = trig.serialize()[1]
    assert {key: kwargs[key] for key in ("model", "queue_id", "download_url", "quote_usd")} == {
        "model": T2V,
        "queue_id": "q-7",
        "download_url": None,
        "quote_usd": 0.35,
    }
    assert kwargs["request_fingerprint"] == "fp-1"
    assert (kwargs["deadline"], kwargs["window_interval_s"], kwargs["errors_in_row"]) == (
        1_900_000_000.0,
        2.0,
        3,
    )
    assert kwargs["venice_conn_id"] == "venice_other"
    assert before + 12.0 <= kwargs["next_poll_at"] <= time.time() + 12.0


@pytest.mark.parametrize(
    ("field", "value"),
    [("download_url", "None"), ("quote_usd", float("nan")), ("quote_usd", -1.0), ("queue_id", "")],
)
def test_a_trigger_refuses_what_is_not_a_job(field: str, value: Any) -> None:
    arguments = {"model": T2V, "queue_id": "q-1", "deadline": time.time() + 60, field: value}
    with pytest.raises(ValueError, match=field):
        VeniceVideoTrigger(**arguments)


def test_serialize_keeps_absolute_times_after_polling(emulator: VeniceEmulator) -> None:
    """A trigger handed to another triggerer keeps its deadline and its next poll time."""
    job = queue(emulator)
    emulator.advance(9)
    trig = trigger(job, deadline=time.time() + 300)
    deadline = trig.serialize()[1]["deadline"]

    def check_state() -> None:
        kwargs = trig.serialize()[1]
        assert kwargs["deadline"] == deadline
        emulator.advance(5)

    run(trig, emulator, {1: check_state})
    assert trig.serialize()[1]["deadline"] == deadline
    assert trig.serialize()[1]["next_poll_at"] > 0


# --- outcomes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [T2V, VPS], ids=["binary-mp4", "vps-completed"])
def test_success_after_processing(emulator: VeniceEmulator, model: str) -> None:
    job = queue(emulator, model)
    start = len(emulator.calls())
    emulator.advance(9)  # near the end: the trigger polls at its short interval, not a long sleep
    [event] = run(trigger(job, quote_usd=0.35), emulator, {1: lambda: emulator.advance(5)})
    assert event["status"] == "success"
    assert event["model"] == model
    assert event["queue_id"] == job["queue_id"]
    assert event["download_url"] == job.get("download_url")
    assert event["quote_usd"] == 0.35
    assert event["execution_duration_ms"] >= 9000
    assert [call["status"] for call in retrieves(emulator)] == [200, 200]
    only_retrieves_since(emulator, start)
    if model == VPS:
        assert event["download_url"]
        assert emulator.jobs()[0]["media_deleted"] is False


def test_success_at_once_when_the_job_already_finished(emulator: VeniceEmulator) -> None:
    job = queue(emulator)
    emulator.advance(60)
    [event] = run(trigger(job), emulator)
    assert event["status"] == "success"
    assert len(retrieves(emulator)) == 1
    assert emulator.jobs()[0]["status"] == "COMPLETED"  # retrieve did not delete the media


def test_provider_refusal_is_an_error_event(emulator: VeniceEmulator) -> None:
    job = queue(emulator, prompt="a refusedbyprovider scene")
    emulator.advance(60)
    [event] = run(trigger(job), emulator)
    assert event["status"] == "error"
    assert "422" in event["message"]
    assert "provider_content_policy" in event["message"]
    assert job["queue_id"] in event["message"]


def test_unknown_queue_id_is_an_error_event(emulator: VeniceEmulator) -> None:
    [event] = run(trigger({"model": T2V, "queue_id": "no-such-job"}), emulator)
    assert event["status"] == "error"
    assert "Request ID is invalid" in event["message"]
    assert len(retrieves(emulator)) == 1


def test_unknown_connection_is_an_error_event(emulator: VeniceEmulator) -> None:
    [event] = run(trigger({"model": T2V, "queue_id": "q"}, venice_conn_id="venice_missing"), emulator)
    assert event["status"] == "error"
    assert "venice_missing" in event["message"]
    assert event["queue_id"] in event["message"]
    assert event["retryable"] is True  # a lookup may fail for a moment: the task's retries apply
    assert emulator.calls() == []


def test_timeout_after_one_last_check(emulator: VeniceEmulator) -> None:
    job = queue(emulator)
    emulator.advance(9)
    deadline = time.time() + 0.3
    [event] = run(trigger(job, deadline=deadline), emulator)
    assert event["status"] == "timeout"
    assert job["queue_id"] in event["message"]
    calls = retrieves(emulator)
    assert len(calls) == 2  # the first poll, then one last check at the deadline
    assert calls[-1]["time"] - emulator.state.clock.offset_s >= deadline - 0.05


def test_deadline_already_passed_but_job_finished_is_success(emulator: VeniceEmulator) -> None:
    """A job that finished just before a late check is not reported as timed out."""
    job = queue(emulator)
    emulator.advance(60)
    [event] = run(trigger(job, deadline=time.time() - 10), emulator)
    assert event["status"] == "success"
    assert len(retrieves(emulator)) == 1


def test_deadline_already_passed_and_job_running_is_timeout_after_one_check(
    emulator: VeniceEmulator,
) -> None:
    job = queue(emulator)
    [event] = run(trigger(job, deadline=time.time() - 10), emulator)
    assert event["status"] == "timeout"
    assert len(retrieves(emulator)) == 1


def test_capacity_error_honours_retry_after_then_succeeds(emulator: VeniceEmulator) -> None:
    job = queue(emulator)
    emulator.advance(60)
    emulator.add_faults({"endpoint": "/video/retrieve", "status": 503, "retry_after": 1.5})
    trig = trigger(job)
    [event] = run(trig, emulator)
    assert event["status"] == "success"
    calls = retrieves(emulator)
    assert [call["status"] for call in calls] == [503, 200]
    assert calls[1]["time"] - calls[0]["time"] >= 1.5 - 0.05
    # the count of errors was part of its state while it waited (another triggerer would carry on)
    assert trig.serialize()[1]["errors_in_row"] == 1


def test_a_trigger_resumed_with_errors_backs_off_from_its_count(emulator: VeniceEmulator) -> None:
    """A trigger moved to another triggerer after 2 errors backs off from there, not from zero."""
    job = queue(emulator)
    emulator.advance(60)
    emulator.add_faults({"endpoint": "/video/retrieve", "status": 500})
    fresh, resumed = trigger(job), trigger(job, errors_in_row=2)

    async def after_one_error(trig: VeniceVideoTrigger) -> float:
        task = asyncio.ensure_future(trig.run().__anext__())
        await until(lambda: bool(retrieves(emulator)) and trig.next_poll_at != 0.0)
        task.cancel()
        return trig.next_poll_at - time.time()

    first_delay = asyncio.run(after_one_error(fresh))
    emulator.add_faults({"endpoint": "/video/retrieve", "status": 500})
    resumed_delay = asyncio.run(after_one_error(resumed))
    # error_base 2 s x 2^(errors before) x [0.75, 1.25]: 1.5-2.5 s from zero, 6-10 s after two
    assert first_delay <= 2.5
    assert resumed_delay >= 6 - 0.5


def test_running_twice_is_harmless(emulator: VeniceEmulator) -> None:
    """Two triggerers may run the same trigger for a while: the same event, the job untouched."""
    job = queue(emulator)
    emulator.advance(60)
    [one] = run(trigger(job), emulator)
    [two] = run(trigger(job), emulator)
    assert one["status"] == two["status"] == "success"
    assert emulator.jobs()[0]["media_deleted"] is False


def test_a_cancelled_trigger_and_its_cleanup_do_nothing_to_the_job(emulator: VeniceEmulator) -> None:
    """Cancelled on reassignment (another triggerer takes over): no complete, no delete."""
    job = queue(emulator)
    trig = trigger(job)

    async def main() -> None:
        task = asyncio.ensure_future(trig.run().__anext__())
        await until(lambda: bool(retrieves(emulator)))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await trig.cleanup()

    asyncio.run(main())
    never_paid_nor_released(emulator)
    assert {call["path"] for call in emulator.calls()} == {"/api/v1/video/queue", RETRIEVE}
    assert emulator.jobs()[0]["media_deleted"] is False


def test_rate_limit_and_server_errors_are_retried_then_succeed(emulator: VeniceEmulator) -> None:
    job = queue(emulator)
    emulator.advance(60)
    emulator.add_faults({"endpoint": "/video/retrieve", "status": 429, "retry_after": 0})
    [event] = run(trigger(job), emulator)
    assert event["status"] == "success"
    assert [call["status"] for call in retrieves(emulator)] == [429, 200]


def test_dropped_connection_is_retried(emulator: VeniceEmulator) -> None:
    job = queue(emulator)
    emulator.advance(60)
    emulator.add_faults({"endpoint": "/video/retrieve", "action": "drop_before"})
    [event] = run(trigger(job), emulator)
    assert event["status"] == "success"
    assert len(retrieves(emulator)) == 2


def test_restarted_trigger_waits_for_its_next_poll_time(emulator: VeniceEmulator) -> None:
    job = queue(emulator)
    emulator.advance(60)
    next_poll_at = time.time() + 0.5
    [event] = run(trigger(job, next_poll_at=next_poll_at), emulator)
    assert event["status"] == "success"
    [call] = retrieves(emulator)
    assert call["time"] - emulator.state.clock.offset_s >= next_poll_at - 0.05


def test_many_triggers_share_one_loop(emulator: VeniceEmulator) -> None:
    jobs = [queue(emulator) for _ in range(5)]
    emulator.advance(60)
    triggers = [trigger(job) for job in jobs]

    async def main() -> list[list[Any]]:
        async def collect(trig: VeniceVideoTrigger) -> list[Any]:
            return [event async for event in trig.run()]

        return list(await asyncio.gather(*(collect(t) for t in triggers)))

    results = asyncio.run(main())
    assert [len(events) for events in results] == [1] * 5
    assert {events[0].payload["queue_id"] for events in results} == {job["queue_id"] for job in jobs}
    assert all(events[0].payload["status"] == "success" for events in results)


# --- cleanup and on_kill (apache/airflow#41231, #73454) ----------------------------------------------


class Recorder:
    """An ``httpx.MockTransport`` handler that records every request and answers PROCESSING."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        return httpx.Response(200, json={"status": "PROCESSING", "average_execution_time": 600_000})


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """Venice behind ``venice_default`` as a recording mock transport."""
    base_url, fake = "https://venice.test/api/v1", Recorder()
    conn = {"conn_type": "venice", "host": base_url, "password": "sk-kill", "extra": {"max_retries": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", json.dumps(conn))
    register_transports(base_url, httpx.MockTransport(fake.handle), httpx.MockTransport(fake.handle))
    yield fake
    unregister_transports(base_url)


def test_on_kill_and_cleanup_of_a_fresh_trigger_make_no_request(recorder: Recorder) -> None:
    trig = trigger({"model": T2V, "queue_id": "q-kill"})

    async def main() -> None:
        await trig.on_kill()
        await trig.cleanup()

    asyncio.run(main())
    assert recorder.requests == []


def test_on_kill_after_reassignment_leaves_the_job_alone(recorder: Recorder) -> None:
    """What 3.3.2 does to a stalled triggerer's triggers: cancel "by user action", on_kill, cleanup."""
    trig = trigger({"model": T2V, "queue_id": "q-kill"})

    async def main() -> None:
        task = asyncio.ensure_future(trig.run().__anext__())
        await until(lambda: bool(recorder.requests))
        task.cancel("Trigger cancelled by user action")  # the triggerer's message; on_kill follows
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await trig.on_kill()
        await trig.cleanup()

    asyncio.run(main())
    assert recorder.requests == [("POST", "/api/v1/video/retrieve")]


def test_on_kill_and_cleanup_leave_an_emulated_job_running(emulator: VeniceEmulator) -> None:
    job = queue(emulator)
    trig = trigger(job)

    async def main() -> None:
        task = asyncio.ensure_future(trig.run().__anext__())
        await until(lambda: bool(retrieves(emulator)))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await trig.on_kill()
        await trig.cleanup()

    asyncio.run(main())
    never_paid_nor_released(emulator)
    assert {call["path"] for call in emulator.calls()} == {"/api/v1/video/queue", RETRIEVE}
    [state] = emulator.jobs()
    assert state["media_deleted"] is False
    assert state["status"] != "CANCELLED"


def test_the_trigger_defines_its_own_harmless_on_kill_and_cleanup() -> None:
    """Not inherited by accident: a base class that one day cancels would not reach the Venice job."""
    assert "on_kill" in VeniceVideoTrigger.__dict__
    assert "cleanup" in VeniceVideoTrigger.__dict__


# --- started from the scheduler: templated fields rendered in the triggerer -------------------------

RENDERED_IN_TRIGGERER = pytest.mark.skipif(
    not AIRFLOW_V_3_3_PLUS, reason="triggers render templated fields from Airflow 3.3 (start_from_trigger)"
)


@RENDERED_IN_TRIGGERER
def test_templated_fields_are_checked_only_once_rendered() -> None:
    trig = VeniceVideoTrigger(job="{{ ti.xcom_pull(task_ids='queue') }}", download_url="{{ none }}")
    assert trig.job == "{{ ti.xcom_pull(task_ids='queue') }}"  # kept raw: the triggerer renders it
    trig.template_fields = ("job", "download_url")  # what the triggerer keeps for a sensor
    job = {"model": T2V, "queue_id": "q-x", "download_url": None, "quote_usd": 0.35}
    trig.render_template_fields({"ti": _XComTI(job), "none": None})  # type: ignore[arg-type]
    assert trig.job == job  # native: the dict itself, not its text
    assert trig.download_url is None
    assert trig.watched_job() == VeniceJob(T2V, "q-x", None, 0.35)


@RENDERED_IN_TRIGGERER
def test_a_rendered_queue_id_is_used() -> None:
    trig = VeniceVideoTrigger(model=T2V, queue_id="{{ dag_run.conf['queue_id'] }}")
    trig.template_fields = ("model", "queue_id")
    trig.render_template_fields({"dag_run": _Run({"queue_id": "q-conf"})})  # type: ignore[arg-type]
    assert trig.watched_job().queue_id == "q-conf"


@RENDERED_IN_TRIGGERER
def test_an_id_that_renders_to_a_number_stays_text() -> None:
    trig = VeniceVideoTrigger(model=T2V, queue_id="{{ dag_run.conf['queue_id'] }}")
    trig.template_fields = ("model", "queue_id")
    trig.render_template_fields({"dag_run": _Run({"queue_id": "12345"})})  # type: ignore[arg-type]
    assert trig.watched_job().queue_id == "12345"


@RENDERED_IN_TRIGGERER
def test_a_template_that_renders_to_no_job_is_an_error_event(recorder: Recorder) -> None:
    trig = VeniceVideoTrigger(model=T2V, queue_id="{{ nothing }}")
    trig.template_fields = ("queue_id",)
    trig.render_template_fields({"nothing": None})  # type: ignore[arg-type]

    async def main() -> list[Any]:
        return [event async for event in trig.run()]

    [event] = asyncio.run(main())
    assert event.payload["status"] == "error"
    assert "queue_id" in event.payload["message"]
    assert "retryable" not in event.payload  # a retry renders the same value
    assert recorder.requests == []


def test_without_a_deadline_the_deferral_timeout_less_the_grace_is_used() -> None:
    trig = VeniceVideoTrigger(model=T2V, queue_id="q-1")
    trig.timeout_after = datetime.fromtimestamp(2_000_000_000, tz=UTC)  # set by the triggerer
    assert trig._deadline() == 2_000_000_000 - DEFERRAL_GRACE_S
    assert trig.serialize()[1]["deadline"] == 2_000_000_000 - DEFERRAL_GRACE_S
    lone = VeniceVideoTrigger(model=T2V, queue_id="q-1")
    assert time.time() + DEFAULT_WAIT_S - 5 < lone._deadline() <= time.time() + DEFAULT_WAIT_S


class _XComTI:
    def __init__(self, value: Any) -> None:
        self.value = value

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.value


class _Run:
    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf


# --- how much a waiting trigger logs ----------------------------------------------------------------


def progress_lines(logs: list[dict[str, Any]]) -> list[str]:
    return [str(entry["event"]) for entry in logs if "next check in" in str(entry.get("event", ""))]


def test_progress_is_logged_at_the_first_look_and_then_every_few_minutes(emulator: VeniceEmulator) -> None:
    """Each line a trigger logs wakes the triggerer's supervisor, which queries the metadata database."""
    job = queue(emulator)
    emulator.advance(6)  # 4 s before the end of a 10 s job: looks a second apart
    with structlog.testing.capture_logs() as logs:
        [event] = run(trigger(job), emulator)
    assert event["status"] == "success"
    assert len(retrieves(emulator)) >= 4  # at least three answers still processing, then the video
    [line] = progress_lines(logs)
    assert "processing for 6s" in line


def test_an_error_and_the_recovery_after_it_are_always_logged(emulator: VeniceEmulator) -> None:
    job = queue(emulator)
    emulator.advance(5)  # 5 s before the end of a 10 s job: looks a second apart
    fail_next = {"endpoint": "/video/retrieve", "status": 503, "retry_after": 1}
    with structlog.testing.capture_logs() as logs:
        [event] = run(trigger(job), emulator, {1: lambda: emulator.add_faults(fail_next)})
    assert event["status"] == "success"
    assert [call["status"] for call in retrieves(emulator)][:4] == [200, 503, 200, 200]
    lines = progress_lines(logs)
    assert len(lines) == 3, lines  # the first look, the 503, the first answer after it; not the 4th look
    assert "transient error" in lines[1]
    assert "processing for" in lines[2]


def test_progress_log_rhythm() -> None:
    now = [0.0]
    progress = ProgressLog(every_s=300, clock=lambda: now[0])
    seen = []
    for step in range(0, 700, 50):
        now[0] = float(step)
        seen.append(progress.worth_logging(news=step == 100))
    logged = [step for step, yes in zip(range(0, 700, 50), seen, strict=True) if yes]
    assert logged == [0, 100, 400]  # the first, the news, then 300 s after the last line
