"""The fault matrix: every failure the Venice API, the network or S3 can throw at a generate task.

Each case runs ``VeniceGenerateVideoOperator`` (or the operator the endpoint belongs to) in-process
against the emulator (its fault plan, through the hook's transport seam) and moto S3 (failures from
boto3 event hooks), and checks two things: the END STATE (the video in S3 exactly once and the job
completed; or a clear error naming the queue_id with the job still retrievable) and the CALL LOG
(one charge per task instance; no release before a verified upload). Cases that need a real socket
(read timeouts, a body cut mid-stream) are in ``test_fault_matrix_socket.py``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from typing import Any

import httpx
import pytest
from reliability_support import (
    BUCKET,
    COMPLETE,
    MIB,
    MODELS,
    QUEUE,
    QUOTE,
    RETRIEVE,
    T2V,
    TRANSCRIPTIONS,
    VPS,
    FakeStore,
    Stack,
    Venice,
    delivery_keys,
    make_context,
    manifest_key,
    poster_key,
)

from airflow_provider_venice.client import QueueVideoRequest, RetryPolicy, VeniceClient
from airflow_provider_venice.lifecycle.failures import VideoDeliveryError
from airflow_provider_venice.operators.transcription import VeniceVideoTranscriptionOperator
from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator, VeniceVideoQueueOperator
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException, TaskDeferred

KEY = "videos/reliability.mp4"
UNKNOWN = "no answer arrived"


def generate(model: str = T2V, key: str = KEY, **fields: Any) -> VeniceGenerateVideoOperator:
    fields.setdefault("prompt", "a red fox running through fresh snow")
    fields.setdefault("duration", "5s" if model == T2V else "6s")
    fields.setdefault("window_interval_s", 0.2)
    fields.setdefault("deferrable", False)  # waits on the worker here; the deferral cases say so
    return VeniceGenerateVideoOperator(
        task_id="generate", model=model, s3_bucket=BUCKET, s3_key=key, **fields
    )


def run(op: Any, store: FakeStore) -> dict[str, Any]:
    return dict(op.execute(make_context(store)))


def fails(op: Any, store: FakeStore, kind: type[BaseException] = AirflowException) -> BaseException:
    with pytest.raises(kind) as info:
        op.execute(make_context(store))
    return info.value


def the_job(venice: Venice) -> dict[str, Any]:
    jobs = venice.jobs()
    assert len(jobs) == 1, jobs
    return jobs[0]


# --- 429 with and without Retry-After, on every endpoint ---------------------------------------------

ENDPOINTS = [
    pytest.param("/models", None, T2V, id="models"),
    pytest.param("/video/quote", None, T2V, id="quote"),
    pytest.param("/video/queue", None, T2V, id="queue"),
    pytest.param("/video/retrieve", None, T2V, id="retrieve"),
    pytest.param("/video/complete", None, T2V, id="complete"),
    pytest.param("/_media", "GET", VPS, id="download_url-GET"),
    pytest.param("/_media", "DELETE", VPS, id="download_url-DELETE"),
]


@pytest.mark.parametrize("retry_after", [0, None], ids=["retry-after", "no-retry-after"])
@pytest.mark.parametrize(("endpoint", "method", "model"), ENDPOINTS)
def test_rate_limited_endpoint_is_waited_out(
    stack: Stack, endpoint: str, method: str | None, model: str, retry_after: float | None
) -> None:
    fault: dict[str, Any] = {"endpoint": endpoint, "status": 429, "times": 2}
    if retry_after is not None:
        fault["retry_after"] = retry_after
    if method:
        fault["method"] = method
    stack.venice.emu.add_faults(fault)
    result = run(generate(model), FakeStore())
    stack.assert_delivered_once(result, KEY)
    assert stack.venice.emu.state.faults.pending() == []  # both 429s were served
    if endpoint == "/video/queue":  # answered before processing: resent, still one job
        assert [c["status"] for c in stack.venice.queue_calls()] == [429, 429, 200]


@pytest.mark.parametrize("retry_after", [0, None], ids=["retry-after", "no-retry-after"])
def test_rate_limited_transcription_is_waited_out(venice: Venice, retry_after: float | None) -> None:
    fault: dict[str, Any] = {"endpoint": "/video/transcriptions", "status": 429, "times": 2}
    if retry_after is not None:
        fault["retry_after"] = retry_after
    venice.emu.add_faults(fault)
    op = VeniceVideoTranscriptionOperator(
        task_id="transcribe", url="https://www.youtube.com/watch?v=dQw4w9WgXcQ"
    )
    result = op.execute(make_context())
    assert result["transcript"]
    assert [c["status"] for c in venice.calls(TRANSCRIPTIONS)] == [429, 429, 200]


def test_503_without_retry_after_backs_off_instead_of_waiting_for_the_rate_limit_window(
    venice: Venice,
) -> None:
    """Regression: the request-rate reset header (next window, possibly hours away) is not a retry hint.

    Before the fix a 503 or 429 without Retry-After waited until ``x-ratelimit-reset-requests`` even with
    plenty of requests left, and gave up at once when that was beyond the retry budget.
    """
    venice.emu.add_faults({"endpoint": "/video/quote", "status": 503, "times": 2})
    delays: list[float] = []
    policy = RetryPolicy(max_retries=4, base_delay_s=0.5)
    with VeniceClient(
        "k", base_url=venice.emu.base_url, transport=venice.transport, retry=policy, sleep=delays.append
    ) as client:
        client.quote(QueueVideoRequest(model=T2V, prompt="p", duration="5s").to_quote_request())
    assert len(delays) == 2
    assert delays[0] <= 0.5 * 1.25, delays
    assert delays[1] <= 1.0 * 1.25, delays


# --- the paid call: what is resent and what is not ------------------------------------------------------


def test_503_on_queue_is_resent_because_it_was_answered_before_processing(stack: Stack) -> None:
    stack.venice.emu.add_faults({"endpoint": "/video/queue", "status": 503, "retry_after": 0, "times": 3})
    result = run(generate(), FakeStore())
    stack.assert_delivered_once(result, KEY)
    assert [c["status"] for c in stack.venice.queue_calls()] == [503, 503, 503, 200]


@pytest.mark.parametrize(
    ("fault", "job_created"),
    [
        pytest.param({"action": "drop_before"}, False, id="reset-before-processing"),
        pytest.param({"action": "drop_after"}, True, id="reset-after-processing"),
        pytest.param({"status": 500}, False, id="500-inference-failed"),
        pytest.param({"status": 504}, False, id="504-gateway-timeout"),
    ],
)
def test_queue_without_an_answer_is_never_resent(
    stack: Stack, fault: dict[str, Any], job_created: bool
) -> None:
    """Sent but unanswered: the job may exist, so it is not resent, not by the client nor by a retry."""
    stack.venice.emu.add_faults({"endpoint": "/video/queue", **fault})
    store = FakeStore()
    error = fails(generate(), store, AirflowFailException)
    assert "outcome is unknown" in str(error)
    assert len(stack.venice.queue_calls()) == 1
    assert len(stack.venice.jobs()) == (1 if job_created else 0)
    again = fails(generate(), store, AirflowFailException)  # a manual retry of the task instance
    assert "Not queueing again" in str(again)
    assert len(stack.venice.queue_calls()) == 1
    if job_created:  # the job Venice made is still there to be found and retrieved
        assert the_job(stack.venice)["media_deleted"] is False
    stack.assert_not_released()
    assert stack.s3.objects() == []


def test_queue_connection_refused_is_resent_because_it_provably_never_arrived(stack: Stack) -> None:
    refused: list[str] = []

    def refuse_first_queue(request: httpx.Request, send: Any) -> None:
        if request.url.path == QUEUE and not refused:
            refused.append(str(request.url))
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    stack.venice.transport.hooks.append(refuse_first_queue)
    result = run(generate(), FakeStore())
    assert refused
    stack.assert_delivered_once(result, KEY)
    assert len(stack.venice.queue_calls()) == 1  # the refused one never reached Venice


# --- waiting and retrieving -------------------------------------------------------------------------


def test_503_on_retrieve_for_a_while(stack: Stack) -> None:
    """More 503s in a row than the client retries: the operator keeps polling and delivers."""
    stack.venice.connect(max_retries=2)
    stack.venice.emu.add_faults({"endpoint": "/video/retrieve", "status": 503, "retry_after": 0, "times": 5})
    result = run(generate(), FakeStore())
    stack.assert_delivered_once(result, KEY)
    assert [c["status"] for c in stack.venice.calls(RETRIEVE)][:5] == [503] * 5


@pytest.mark.parametrize("action", ["drop_before", "drop_after", "truncate"])
def test_connection_reset_on_retrieve_is_retried(stack: Stack, action: str) -> None:
    stack.venice.emu.add_faults({"endpoint": "/video/retrieve", "action": action, "times": 2})
    result = run(generate(), FakeStore())
    stack.assert_delivered_once(result, KEY)


def test_reset_after_complete_was_processed_counts_as_done(stack: Stack) -> None:
    """Complete deleted the media but the answer was lost: the retry's 404 means already done."""
    stack.venice.emu.add_faults({"endpoint": "/video/complete", "action": "drop_after"})
    result = run(generate(), FakeStore())
    stack.assert_delivered_once(result, KEY)
    assert [c["status"] for c in stack.venice.calls(COMPLETE)] == [200, 404]


def _rewrite_video(stack: Stack, rewrite: Any) -> None:
    """Let ``rewrite(response) -> response`` alter the answer of retrieves that carry the video."""

    def hook(request: httpx.Request, send: Any) -> httpx.Response | None:
        if request.url.path != RETRIEVE:
            return None
        response = send(request)
        if not response.headers.get("content-type", "").startswith("video/"):
            return response
        return rewrite(response)

    stack.venice.transport.hooks.append(hook)


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        pytest.param(lambda size: size + 1000, "cut short", id="fewer-bytes-than-declared"),
        pytest.param(lambda size: size - 1000, "more than the announced", id="more-bytes-than-declared"),
    ],
)
def test_content_length_mismatch_is_never_delivered_nor_released(
    stack: Stack, declared: Any, message: str
) -> None:
    def lie(response: httpx.Response) -> httpx.Response:
        body = response.read()
        headers = {"content-type": "video/mp4", "content-length": str(declared(len(body)))}
        return httpx.Response(200, headers=headers, content=body)

    _rewrite_video(stack, lie)
    store = FakeStore()
    error = fails(generate(), store, VideoDeliveryError)
    assert message in str(error)
    stack.assert_kept_for_later(error, the_job(stack.venice)["queue_id"])
    assert stack.s3.objects() == []
    stack.venice.transport.hooks.pop()  # Venice behaves again: the next try delivers the same job
    stack.assert_delivered_once(run(generate(), store), KEY)


def test_a_body_that_is_not_an_mp4_is_never_delivered_nor_released(stack: Stack) -> None:
    html = b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>" * 100
    _rewrite_video(stack, lambda r: httpx.Response(200, headers={"content-type": "video/mp4"}, content=html))
    error = fails(generate(), FakeStore(), VideoDeliveryError)
    assert "not an MP4" in str(error)
    stack.assert_kept_for_later(error, the_job(stack.venice)["queue_id"])
    assert stack.s3.objects() == []


def test_expired_download_url_fails_permanently_naming_the_job(stack: Stack) -> None:
    """A VPS job delivered more than 24 h after queueing: its download_url answers 403."""

    def a_day_passes(request: httpx.Request, send: Any) -> None:
        if request.url.path == RETRIEVE:
            stack.venice.emu.advance(25 * 3600)
            stack.venice.transport.hooks.remove(a_day_passes)

    stack.venice.transport.hooks.append(a_day_passes)
    error = fails(generate(VPS), FakeStore(), AirflowFailException)
    assert "can no longer be fetched" in str(error)  # an honest error: the paid video is gone
    assert "can be delivered again" not in str(error)
    assert "expire" in str(error)
    assert "403" in str(error)
    stack.assert_kept_for_later(error, the_job(stack.venice)["queue_id"])
    media = [c for c in stack.venice.calls() if c["path"].startswith("/_media/")]
    assert [(c["method"], c["status"]) for c in media] == [("GET", 403)]  # no DELETE: nothing released


# --- permanent errors in the middle of a batch --------------------------------------------------------


@pytest.mark.parametrize("status", [401, 402, 403, 422])
def test_permanent_queue_error_mid_batch_fails_only_that_task(stack: Stack, status: int) -> None:
    keys = [f"videos/batch-{index}.mp4" for index in range(3)]
    results: dict[int, Any] = {}
    for index, key in enumerate(keys):
        if index == 1:
            stack.venice.emu.add_faults({"endpoint": "/video/queue", "status": status})
        try:
            results[index] = run(generate(key=key, prompt=f"scene number {index}"), FakeStore())
        except AirflowException as exc:
            results[index] = exc
    error = results[1]
    assert isinstance(error, AirflowFailException), error  # permanent: no pointless task retries
    assert f"/video/queue answered {status}" in str(error)
    assert stack.s3.objects() == delivery_keys(keys[0], keys[2])  # nothing of the failed task
    assert len(stack.venice.jobs()) == 2
    assert [c["status"] for c in stack.venice.queue_calls()] == [200, status, 200]
    for index in (0, 2):
        assert results[index]["queue_id"] in {j["queue_id"] for j in stack.venice.jobs()}


@pytest.mark.parametrize("status", [401, 403])
def test_permanent_retrieve_error_mid_batch_names_the_job_and_keeps_it(stack: Stack, status: int) -> None:
    """The key is revoked (or the region blocked) after queueing: fail clearly; a later try delivers."""
    stack.venice.emu.add_faults({"endpoint": "/video/retrieve", "status": status})
    store = FakeStore()
    error = fails(generate(), store, AirflowFailException)
    assert f"/video/retrieve answered {status}" in str(error)
    stack.assert_kept_for_later(error, the_job(stack.venice)["queue_id"])
    stack.assert_delivered_once(run(generate(), store), KEY)  # cleared and rerun: same job, paid once


def test_provider_refusal_after_queueing_is_a_clear_permanent_error(stack: Stack) -> None:
    """422 on retrieve: the provider refused the job (credits refunded); nothing to deliver."""
    error = fails(generate(prompt="a refusedbyprovider scene"), FakeStore(), AirflowFailException)
    queue_id = the_job(stack.venice)["queue_id"]
    assert queue_id in str(error)
    assert "422" in str(error)
    stack.assert_not_released()
    assert stack.s3.objects() == []


# --- S3 failures -------------------------------------------------------------------------------------------


S3_STEPS = [
    pytest.param("CreateMultipartUpload", KEY, id="CreateMultipartUpload"),
    pytest.param("UploadPart", KEY, id="UploadPart"),
    pytest.param("CompleteMultipartUpload", KEY, id="CompleteMultipartUpload"),
    pytest.param("HeadObject", KEY, id="HeadObject-read-back"),
    pytest.param("PutObject", manifest_key(KEY), id="PutObject-manifest"),
]


@pytest.mark.parametrize(("operation", "key"), S3_STEPS)
def test_s3_failure_leaves_no_object_no_release_and_the_retry_delivers_once(
    stack: Stack, operation: str, key: str
) -> None:
    """Each S3 step of a delivery fails once: the video is not delivered (no manifest), nothing of it is
    left, nothing is released, and the next try delivers the same job once."""
    stack.venice.emu.configure(video_bytes=20 * MIB)  # three parts of 8 MiB; the manifest is one PUT
    if operation == "HeadObject":  # the read-back after the upload (earlier HEADs ask "is the key free?")
        stack.s3.faults.on(
            "CompleteMultipartUpload", lambda: stack.s3.faults.fail("HeadObject", key=KEY), key=KEY
        )
    else:
        stack.s3.faults.fail(operation, key=key)
    store = FakeStore()
    error = fails(generate(), store)
    assert not isinstance(error, AirflowFailException)  # transient: the task may retry
    stack.assert_kept_for_later(error, the_job(stack.venice)["queue_id"])  # incl. no object left
    if operation in ("UploadPart", "CompleteMultipartUpload"):
        assert "AbortMultipartUpload" in stack.s3.faults.operations
    stack.s3.faults.clear()
    result = run(generate(), store)
    assert result["size_bytes"] >= 20 * MIB
    stack.assert_delivered_once(result, KEY)
    assert len(stack.venice.queue_calls()) == 1


PROBE_STEPS = [
    pytest.param("GetObject", KEY, 50, id="GetObject-probe"),  # every ranged read of the stored video
    pytest.param("PutObject", poster_key(KEY), 1, id="PutObject-poster"),
]


@pytest.mark.parametrize(("operation", "key", "times"), PROBE_STEPS)
def test_s3_failure_while_probing_still_delivers_once_without_probe_data(
    stack: Stack, operation: str, key: str, times: int
) -> None:
    """The probe (ranged reads of the verified video) and the poster write fail: the video is delivered all
    the same, once, its manifest saying why there is no probe data; no poster is left; one charge, one
    release, after the manifest."""
    stack.s3.faults.fail(operation, times=times, key=key)
    result = run(generate(), FakeStore())
    stack.assert_delivered_once(result, KEY, probed=False)
    assert (operation, key) in stack.s3.faults.calls
    if operation == "PutObject":
        assert "PutObject" in stack.s3.manifest(KEY)["probe"]["error"]


def test_worker_killed_during_the_upload_aborts_it(stack: Stack) -> None:
    """``on_kill`` while parts are in flight: the multipart upload is aborted, nothing is released."""
    stack.venice.emu.configure(video_bytes=20 * MIB)
    op = generate()
    stack.s3.faults.on("UploadPart", op.on_kill)
    error = fails(op, FakeStore(), VideoDeliveryError)
    assert "cancelled" in str(error)
    stack.assert_kept_for_later(error, the_job(stack.venice)["queue_id"])
    assert stack.s3.objects() == []
    assert "AbortMultipartUpload" in stack.s3.faults.operations


# --- processes dying ------------------------------------------------------------------------------


def test_worker_killed_after_queue_before_defer_resumes_without_paying_again(stack: Stack) -> None:
    """The try paid and recorded the job, then its worker died before the deferral was stored."""
    stack.venice.emu.configure(job_seconds=600)
    store = FakeStore()
    deferred = _deferred(generate(deferrable=True), store)  # ... the deferral never reaches the database
    assert store.data["venice_job"]["stage"] == "queued"
    stack.venice.emu.advance(600)
    result = run(generate(deferrable=True), store)  # the next try, from the start, on another worker
    assert result["queue_id"] == deferred.trigger.watched_job().queue_id
    stack.assert_delivered_once(result, KEY)
    assert len(stack.venice.queue_calls()) == 1


def test_worker_killed_after_delivery_before_complete_only_completes(stack: Stack) -> None:
    stack.venice.emu.add_faults({"endpoint": "/video/complete", "status": 503, "retry_after": 0, "times": 9})
    store = FakeStore()
    error = fails(generate(), store)
    assert "the video is safely in s3://" in str(error)
    stack.s3.faults.clear()
    stack.venice.emu.state.faults.clear()
    result = run(generate(), store)
    assert stack.s3.faults.operations == ["HeadObject"], stack.s3.faults.calls  # checked, not uploaded again
    assert stack.s3.objects() == delivery_keys(KEY)
    assert len(stack.venice.queue_calls()) == 1
    assert the_job(stack.venice)["media_deleted"] is True
    assert result["queue_id"] == the_job(stack.venice)["queue_id"]


def _deferred(op: VeniceGenerateVideoOperator, store: FakeStore) -> Any:
    with pytest.raises(TaskDeferred) as info:
        op.execute(make_context(store))
    return info.value


def _rebuild(stored: tuple[str, dict[str, Any]]) -> Any:
    path, kwargs = json.loads(json.dumps(stored))  # through JSON, as the database keeps it
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)


def test_triggerer_killed_while_deferred_resumes_without_queueing(stack: Stack) -> None:
    stack.venice.emu.configure(job_seconds=600)
    store = FakeStore()
    op = generate(deferrable=True)
    deferred = _deferred(op, store)
    queue_calls = len(stack.venice.queue_calls())
    retrieves_before = len(stack.venice.calls(RETRIEVE))
    stored = deferred.trigger.serialize()  # what the scheduler keeps in the database at deferral
    assert stored[1]["next_poll_at"] > time.time()  # absolute: a restart does not poll early
    trigger = _rebuild(stored)
    trigger.next_poll_at = time.time()  # this test does not wait for it

    async def run_then_kill() -> None:
        task = asyncio.ensure_future(trigger.run().__anext__())
        while len(stack.venice.calls(RETRIEVE)) == retrieves_before:  # noqa: ASYNC110 - another loop's state
            await asyncio.sleep(0.01)
        task.cancel()  # the triggerer process dies mid-wait
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_then_kill())
    stack.venice.emu.advance(600)  # meanwhile the job finishes
    revived = _rebuild(stored)  # another triggerer picks it up from the database
    assert revived.watched_job() == trigger.watched_job()
    assert revived.deadline == trigger.deadline
    revived.next_poll_at = time.time()
    event = asyncio.run(revived.run().__anext__())
    assert event.payload["status"] == "success"
    assert len(stack.venice.queue_calls()) == queue_calls == 1
    assert stack.venice.calls(COMPLETE) == []  # the trigger never releases anything
    result = generate(deferrable=True).execute_complete(make_context(store), event.payload)
    stack.assert_delivered_once(result, KEY)


def test_emulator_restarted_while_waiting_fails_naming_the_job(stack: Stack) -> None:
    """Venice forgets the job (restart, or the id expired): fail clearly with the queue_id, pay nothing."""
    stack.venice.emu.configure(job_seconds=600)
    store = FakeStore()
    deferred = _deferred(generate(deferrable=True), store)
    queue_id = deferred.trigger.watched_job().queue_id
    stack.venice.emu.reset(job_seconds=600)  # every job is lost
    trigger = _rebuild(deferred.trigger.serialize())
    trigger.next_poll_at = time.time()
    event = asyncio.run(trigger.run().__anext__())
    assert event.payload["status"] == "error"
    with pytest.raises(AirflowFailException) as info:
        generate(deferrable=True).execute_complete(make_context(store), event.payload)
    assert queue_id in str(info.value)
    assert "Request ID is invalid" in str(info.value)
    assert stack.venice.queue_calls() == []  # none since the restart: nothing paid again
    assert stack.s3.objects() == []


def test_emulator_restarted_while_polling_on_the_worker_fails_naming_the_job(stack: Stack) -> None:
    def restart_before_first_retrieve(request: httpx.Request, send: Any) -> None:
        if request.url.path == RETRIEVE:
            stack.venice.emu.reset(job_seconds=0)
            stack.venice.transport.hooks.remove(restart_before_first_retrieve)

    stack.venice.transport.hooks.append(restart_before_first_retrieve)
    store = FakeStore()
    op = generate()
    with pytest.raises(AirflowFailException) as info:
        op.execute(make_context(store))
    queue_id = store.data["venice_job"]["job"]["queue_id"]
    assert queue_id in str(info.value)
    assert stack.venice.queue_calls() == []  # since the restart
    stack.assert_not_released()


# --- a retry of the plain queue operator ----------------------------------------------------------------


def test_queue_operator_retry_after_an_unknown_outcome_refuses(venice: Venice) -> None:
    venice.emu.add_faults({"endpoint": "/video/queue", "action": "drop_after"})
    store = FakeStore()
    op = VeniceVideoQueueOperator(task_id="queue", model=T2V, prompt="p", duration="5s")
    with pytest.raises(AirflowFailException):
        op.execute(make_context(store))
    for _ in range(3):
        with pytest.raises(AirflowFailException):
            op.execute(make_context(store))
    assert len(venice.queue_calls()) == 1
    assert len(venice.calls(QUOTE)) == 1
    assert len(venice.calls(MODELS)) == 1
