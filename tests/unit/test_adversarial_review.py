"""Adversarial review of the money path (issue 12): each test fails because of a defect it names.

Unit level: the in-process emulator or the scripted fake Venice over httpx transports, moto's in-process
S3 with botocore event hooks for S3 faults, and fake task state stores. A try is a fresh operator
instance over the same task state store, as Airflow runs it.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from airflow.sdk import BaseHook
from botocore.awsrequest import AWSResponse

from airflow_provider_venice.client import NO_RETRY, VeniceClient
from airflow_provider_venice.lifecycle.failures import DestinationTakenError
from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator, VeniceVideoQueueOperator
from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator
from airflow_provider_venice.triggers.video import VeniceVideoTrigger
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException, TaskDeferred
from tests.integration import s3_fixtures
from tests.integration.s3_fixtures import (
    BUCKET,
    RECORD_KEY,
    REQUESTS,
    T2V,
    FailingStore,
    FakeStore,
    calls_to,
    job_state,
    make_context,
    object_bytes,
    queue_job,
)
from tests.unit.operators import conftest as scripted

aws_env = s3_fixtures.aws_env
moto_s3 = s3_fixtures.moto_s3
venice = s3_fixtures.venice  # the in-process emulator behind ``venice_default``
fake_venice = scripted.venice  # the scripted fake Venice (``httpx.MockTransport``)

KEY = "videos/adversarial.mp4"
QUEUE = "/api/v1/video/queue"


def queue_op(**fields: Any) -> VeniceVideoQueueOperator:
    fields = {"model": T2V, "duration": "5s", "prompt": "a red fox running through fresh snow", **fields}
    return VeniceVideoQueueOperator(task_id="queue", **fields)


def transfer(job: dict[str, Any], **kwargs: Any) -> VeniceVideoToS3Operator:
    return VeniceVideoToS3Operator(task_id="to_s3", job=job, s3_bucket=BUCKET, s3_key=KEY, **kwargs)


def generate(**kwargs: Any) -> VeniceGenerateVideoOperator:
    arguments: dict[str, Any] = {
        **REQUESTS[T2V],
        "s3_bucket": BUCKET,
        "s3_key": KEY,
        "deferrable": False,
        "window_interval_s": 0.05,
        **kwargs,
    }
    return VeniceGenerateVideoOperator(task_id="generate", **arguments)


class Rewrite(httpx.BaseTransport):
    """Passes each request to the emulator, then lets ``answer`` replace the response of one endpoint.

    ``answer(request, response)`` returns the response to give (the emulator has already acted on the
    request), or None to pass the emulator's answer through.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport,
        endpoint: str,
        answer: Callable[[httpx.Request, httpx.Response], httpx.Response | None],
    ) -> None:
        self._inner = inner
        self._endpoint = endpoint
        self._answer = answer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if not request.url.path.endswith(self._endpoint):
            return response
        replaced = self._answer(request, response)
        if replaced is None:
            return response
        response.read()
        response.close()
        return replaced


def exception_chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


# --- 1. the pay-once guard fails open on a record this version cannot read ------------------------


def _stage_from_another_version(record: Any) -> Any:
    return {**record, "stage": "probed"}  # a stage a newer (or older) provider version writes


def _state_backend_reference(record: Any) -> Any:
    # what ``task_state_store.get`` returns on a worker without ``[workers] state_store_backend`` for a
    # value written by a worker that has one (airflow.sdk.execution_time.context._wrap_external_ref)
    return {"__airflow_state_ref__": "s3://airflow-state/venice_job/ab12"}


@pytest.mark.parametrize(
    "rewrite",
    [_stage_from_another_version, _state_backend_reference],
    ids=["unknown-stage", "state-backend-reference"],
)
def test_a_record_this_version_cannot_read_is_never_taken_for_no_record(
    fake_venice: Any, rewrite: Callable[[Any], Any]
) -> None:
    """A paid job's record that this code cannot read must stop the task, not let it queue again.

    ``JobRecord.stage`` reads an unknown stage (or a dict without one) as None, and ``resume`` takes
    None for "no try ever queued": the retry pays a second time and overwrites the first queue_id.
    """
    store = scripted.FakeStore()
    first = queue_op().execute({"task_state_store": store})
    store.data[RECORD_KEY] = rewrite(store.data[RECORD_KEY])

    with pytest.raises(AirflowFailException):
        queue_op().execute({"task_state_store": store})

    assert len(fake_venice.calls(QUEUE)) == 1, "a retry paid for a second job"
    assert first["queue_id"] == "q-1"


# --- 2. the API key in an exception message --------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A loopback port that accepts connections and never answers (the request fails before that)."""
    server = socket.create_server(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/api/v1"
    finally:
        server.close()


@pytest.mark.parametrize(
    "api_key",
    [
        "sk-live-0123\n456789-secretpart",
        "sk-live-0123\x00456789-secretpart",
        "sk-live-0123é456789-secretpart",
    ],
    ids=["newline", "nul", "non-ascii"],
)
def test_an_api_key_that_is_not_a_valid_header_value_never_reaches_an_exception(
    silent_server: str, api_key: str
) -> None:
    """A key pasted with a stray character: h11 refuses the header naming its value, and the client
    turns that into ``VeniceTransportError("... Illegal header value b'Bearer sk-...'")`` (a non-ASCII
    key raises a ``UnicodeEncodeError`` whose ``object`` is ``"Bearer sk-..."``)."""
    with (
        pytest.raises(BaseException) as caught,  # noqa: PT011 (any error: what it carries is the point)
        VeniceClient(api_key, base_url=silent_server, retry=NO_RETRY) as client,
    ):
        client.list_video_models()
    for error in exception_chain(caught.value):
        for text in (str(error), repr(error), repr(vars(error)) if hasattr(error, "__dict__") else ""):
            assert "secretpart" not in text, f"{type(error).__name__} carries the API key: {text[:120]}"


# --- 3. a compressed mp4 -----------------------------------------------------------------------


class GzipVideo(httpx.BaseTransport):
    """Passes requests to the emulator and sends its mp4 answers gzip-encoded (as a CDN may, since the
    client's ``Accept-Encoding`` offers gzip): ``Content-Length`` is then the compressed size."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner
        self.encoded: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if response.headers.get("content-type") != "video/mp4":
            return response
        body = gzip.compress(response.read())
        self.encoded.append(request.headers.get("accept-encoding", ""))
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        headers.update({"content-encoding": "gzip", "content-length": str(len(body))})
        return httpx.Response(response.status_code, headers=headers, content=body, request=request)


def test_a_gzip_encoded_mp4_is_delivered(venice, moto_s3):
    """The client offers ``Accept-Encoding: gzip`` and httpx decodes the body, but the receiver checks
    the decoded bytes against the *encoded* ``Content-Length``: "received more than the announced N
    bytes", on every try, until the job (or a VPS link, after 24 h) is gone."""
    gzipped: list[GzipVideo] = []

    def wrap(inner: httpx.BaseTransport) -> httpx.BaseTransport:
        gzipped.append(GzipVideo(inner))
        return gzipped[0]

    emulator = venice(transport=wrap)
    job = queue_job(emulator, T2V)

    result = transfer(job).execute(make_context(FakeStore()))

    assert gzipped[0].encoded, "no mp4 was sent"
    assert object_bytes(moto_s3, BUCKET, KEY)[4:8] == b"ftyp"
    assert result["size_bytes"] == len(object_bytes(moto_s3, BUCKET, KEY))


# --- 4. a conditional write that landed, retried, and answered 412 ------------------------------


def land_then_answer_412(s3_client: Any, other: Any, key: str) -> list[str]:
    """The first ``PutObject`` of ``key`` reaches S3 and is stored, but its answer is lost; botocore's
    retry of the same conditional write (``If-None-Match: *``) then finds the object and gets 412.

    Simulated with another client writing exactly what this one sends, then the 412 in its place.
    """
    landed: list[str] = []

    def capture(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == key and not landed:
            context["landed"] = {name: value for name, value in params.items() if name != "IfNoneMatch"}

    def answer(context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        sent = context.get("landed")
        if sent is None or landed:
            return None
        other.put_object(**sent)
        landed.append(key)
        error = {
            "Code": "PreconditionFailed",
            "Message": "At least one of the pre-conditions you specified did not hold",
        }
        return AWSResponse("https://s3.test", 412, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 412},
        }

    s3_client.meta.events.register("before-parameter-build.s3.PutObject", capture)
    s3_client.meta.events.register("before-call.s3.PutObject", answer)
    return landed


def test_a_412_answering_the_retry_of_this_tries_own_write_is_not_another_writer(venice, moto_s3):
    """``_conditional`` takes every PreconditionFailed for another writer's object. When it answers the
    retry of this try's own write (the first attempt landed, its answer was lost), the task fails
    permanently saying another writer won, and leaves its own unverified object blocking the key."""
    emulator = venice()
    job = queue_job(emulator, T2V)
    store = FakeStore()
    op = transfer(job)
    landed = land_then_answer_412(op.s3_hook.get_conn(), moto_s3, KEY)

    try:
        result = op.execute(make_context(store))
    except DestinationTakenError as exc:
        pytest.fail(f"this try's own write was taken for another writer's: {exc}")

    assert landed == [KEY]
    assert result["queue_id"] == job["queue_id"]
    assert moto_s3.head_object(Bucket=BUCKET, Key=KEY)["Metadata"]["venice-queue-id"] == job["queue_id"]


# --- 5. one unreadable 2xx /video/retrieve answer while waiting ------------------------------------


@pytest.mark.parametrize(
    "odd",
    [
        lambda: httpx.Response(204),
        lambda: httpx.Response(
            200, text="<html>upstream hiccup</html>", headers={"content-type": "text/html"}
        ),
    ],
    ids=["204-no-content", "html-from-a-proxy"],
)
def test_one_unreadable_2xx_retrieve_answer_does_not_fail_the_paid_job(venice, moto_s3, odd):
    """``json_status`` reads a 2xx retrieve whose body is not JSON as a *failed job*; the poller then
    raises AirflowFailException ("Venice job ... failed"), so one odd answer from a proxy ends the paid
    job's task with no retries, reporting a failure that did not happen."""
    answered: list[int] = []

    def once(_request: httpx.Request, _response: httpx.Response) -> httpx.Response | None:
        if answered:
            return None
        answered.append(1)
        return odd()

    emulator = venice(transport=lambda inner: Rewrite(inner, "/video/retrieve", once))

    result = generate().execute(make_context(FakeStore()))

    assert answered == [1]
    assert result["size_bytes"] > 0
    assert len(calls_to(emulator.calls(), "/video/queue")) == 1


# --- 6. a transient connection lookup failure in the triggerer ------------------------------------


def test_a_connection_lookup_that_fails_once_in_the_triggerer_leaves_the_task_retryable(
    venice, moto_s3, monkeypatch
):
    """The trigger turns any failure of ``aget_connection`` into an ``error`` event, and ``read_event``
    turns every error event into AirflowFailException: a momentary API-server or secrets-backend
    failure in the triggerer fails the paid job's task with no retries."""
    venice(job_seconds=600)
    store = FakeStore()
    op = generate(deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(make_context(store))
    _, kwargs = deferred.value.trigger.serialize()
    trigger = VeniceVideoTrigger(**{**kwargs, "next_poll_at": 0.0})

    async def unreachable(*_: Any, **__: Any) -> Any:
        raise ConnectionError("the API server did not answer")

    monkeypatch.setattr(BaseHook, "aget_connection", unreachable)  # Airflow's, not this provider's

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            payload: dict[str, Any] = event.payload
            return payload
        raise AssertionError("no event")

    event = asyncio.run(asyncio.wait_for(first_event(), 30))

    with pytest.raises(AirflowException) as caught:
        generate(deferrable=True).execute_complete(make_context(store), event)
    assert not isinstance(caught.value, AirflowFailException), (
        f"a transient triggerer failure failed the task permanently: {caught.value}"
    )


# --- 7. a cleared task whose request changed, after a try killed right after its write ------------


def killed_right_after_writing(s3_client: Any, key: str) -> list[str]:
    """The worker dies just after S3 stored this client's ``PutObject`` of ``key`` (before any check)."""
    killed: list[str] = []

    def mark(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == key:
            context["ours"] = True

    def kill(context: dict[str, Any], **_: Any) -> None:
        if context.get("ours") and not killed:
            killed.append(key)
            raise s3_fixtures.ProcessKilled(f"killed right after writing {key}")

    s3_client.meta.events.register("before-parameter-build.s3.PutObject", mark)
    s3_client.meta.events.register("after-call.s3.PutObject", kill)
    return killed


def test_a_new_request_clears_the_unverified_object_an_earlier_try_of_this_task_left(venice, moto_s3):
    """``resume`` sets the old record aside with ``start_over()``, dropping its ``upload`` entry (the
    token of the unverified object, the multipart upload id) before anything looks at it. The object
    this task itself left at its key, unverified, then makes ``before_paying`` refuse for ever:
    "exists and replace=False", and a multipart upload left the same way is never aborted."""
    emulator = venice()
    store = FakeStore()
    first = generate()
    killed = killed_right_after_writing(first.s3_hook.get_conn(), KEY)
    with pytest.raises(s3_fixtures.ProcessKilled):
        first.execute(make_context(store))
    assert killed == [KEY]
    record = store.get(RECORD_KEY)
    # one PUT: the try sealed its upload (every byte checked) before S3 stored it, then died unverified
    assert record["stage"] == "uploaded"
    leftover = moto_s3.head_object(Bucket=BUCKET, Key=KEY)["Metadata"]
    assert leftover["venice-upload-token"] == record["upload"]["token"]  # this task's own, unverified

    # the DAG author changes the prompt and clears the task
    result = generate(prompt="a grey wolf in fog").execute(make_context(store))

    assert result["queue_id"] != record["job"]["queue_id"]
    assert len(calls_to(emulator.calls(), "/video/queue")) == 2
    # the old job's sealed object was not committed for the new request: the new job's video is there
    head = moto_s3.head_object(Bucket=BUCKET, Key=KEY)
    assert head["Metadata"]["venice-queue-id"] == result["queue_id"]
    assert head["Metadata"]["venice-upload-token"] != record["upload"]["token"]


# --- 8. a 2xx /video/complete without the expected body -------------------------------------------


def test_a_2xx_complete_without_a_json_body_counts_as_released(venice, moto_s3):
    """Venice released the job (204 No Content), but ``CompleteResponse`` wants ``{"success": ...}``: the
    delivered task fails permanently (AirflowFailException) after its video is safely in S3."""
    emulator = venice(
        transport=lambda inner: Rewrite(inner, "/video/complete", lambda _req, _resp: httpx.Response(204))
    )
    job = queue_job(emulator, T2V)
    store = FakeStore()

    result = transfer(job).execute(make_context(store))

    assert result["queue_id"] == job["queue_id"]
    assert job_state(emulator, job["queue_id"])["media_deleted"] is True
    assert store.get(RECORD_KEY)["stage"] == "completed"


# --- 9. failures of the delivery that do not name the paid job -----------------------------------


def refuse_head(s3_client: Any) -> None:
    """S3 answers 403 AccessDenied to ``HeadObject`` (a policy change, an expired role session)."""

    def answer(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Code": "403", "Message": "Forbidden"}
        return AWSResponse("https://s3.test", 403, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }

    s3_client.meta.events.register("before-call.s3.HeadObject", answer)


@pytest.mark.parametrize("failure", ["delivered-record-refused", "head-object-403"])
def test_a_failed_delivery_names_the_queue_id(venice, moto_s3, failure):
    """``deliver_once`` names the job only for failures inside its upload and check blocks. The store
    refusing the ``delivered`` record (``RecordWriteError``), and S3 errors of the look-ups before the
    upload (``_already_delivered``, ``_clear_earlier_try``, ``object_exists``), leave it raw:
    "the task state store refused the job record: ..." or botocore's "An error occurred (403)...",
    with no queue_id and no word that the paid job was kept."""
    emulator = venice()
    job = queue_job(emulator, T2V)
    store: FakeStore = FailingStore("delivered") if failure == "delivered-record-refused" else FakeStore()
    op = transfer(job)
    if failure == "head-object-403":
        refuse_head(op.s3_hook.get_conn())

    with pytest.raises(Exception) as caught:  # noqa: PT011 (the message is the point)
        op.execute(make_context(store))

    assert calls_to(emulator.calls(), "/video/complete") == []
    assert job["queue_id"] in str(caught.value), f"the error does not name the paid job: {caught.value}"
