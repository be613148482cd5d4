"""The API key reaches the Venice API's Authorization header and nowhere else; plain http only on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_venice.client import (
    NO_RETRY,
    AsyncVeniceClient,
    QueueVideoRequest,
    QuoteVideoRequest,
    RetryPolicy,
    VeniceClient,
    VeniceError,
    check_base_url,
)

MODEL = "wan-2-7-text-to-video"
QUEUE_REQUEST = QueueVideoRequest(model=MODEL, prompt="a cat", duration="5s")
QUOTE_REQUEST = QuoteVideoRequest(model=MODEL, duration="5s")


def chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def assert_no_key(error: BaseException, key: str) -> None:
    for link in chain(error):
        assert key not in str(link)
        assert key not in repr(link)
        assert key not in repr(getattr(link, "args", ()))
    assert key not in "".join(traceback.format_exception(error))


def _failures(fake: Any) -> dict[str, tuple[Any, str, tuple[Any, ...]]]:
    # The 401 body echoes what Venice would see of the header's scheme, never the key itself.
    return {
        "401": (fake.answer(401, json={"error": "Authentication failed"}), "list_video_models", ()),
        "402": (fake.answer(402, json={"error": "Insufficient balance"}), "queue", (QUEUE_REQUEST,)),
        "422": (
            fake.answer(422, json={"error": {"message": "refused", "type": "provider_content_policy"}}),
            "retrieve_status",
            (MODEL, "q-1"),
        ),
        "429": (fake.answer(429, json={"error": "slow"}), "complete", (MODEL, "q-1")),
        "503-html": (fake.answer(503, text="<html>busy</html>"), "retrieve_status", (MODEL, "q-1")),
        "connect": (fake.fail(httpx.ConnectError, "Connection refused"), "list_video_models", ()),
        "read-timeout": (fake.fail(httpx.ReadTimeout, "timed out"), "retrieve_status", (MODEL, "q-1")),
        "queue-unknown": (fake.fail(httpx.ReadTimeout, "timed out"), "queue", (QUEUE_REQUEST,)),
        "queue-504": (fake.answer(504, json={"error": "gateway"}), "queue", (QUEUE_REQUEST,)),
        "bad-json": (fake.answer(200, json={"nope": 1}), "quote", (QUEUE_REQUEST.to_quote_request(),)),
        "download-url": (fake.answer(403, text="expired"), "delete_download_url", ("https://cdn.test/x",)),
    }


@pytest.mark.parametrize(
    "case",
    [
        "401",
        "402",
        "422",
        "429",
        "503-html",
        "connect",
        "read-timeout",
        "queue-unknown",
        "queue-504",
        "bad-json",
        "download-url",
    ],
)
def test_api_key_in_no_exception(venice: Any, fake: Any, case: str) -> None:
    responder, method, args = _failures(fake)[case]
    h = venice(responder, retry=RetryPolicy(max_retries=1))
    with pytest.raises(VeniceError) as info:
        h.call(method, *args)
    assert_no_key(info.value, fake.KEY)
    # ... while the key did go where it belongs (except to the download URL).
    if method != "delete_download_url":
        assert h.requests[0].headers["Authorization"] == f"Bearer {fake.KEY}"


def test_api_key_in_no_streaming_exception(venice: Any, fake: Any) -> None:
    body = fake.LazyBody(100_000, piece=1000, cut_after=5000)
    h = venice(lambda r: httpx.Response(200, headers={"Content-Type": "video/mp4"}, stream=body))
    with pytest.raises(VeniceError) as info:
        h.call("download_video", MODEL, "q-1", lambda chunk: None)
    assert_no_key(info.value, fake.KEY)


# --- no exception that leaves the client carries the key, anywhere in its chain ----------------------


def capture(h: Any, method: str, *args: Any) -> BaseException:
    """Call the client and return what it raised (caught here, so no test frame with the key is walked)."""
    try:
        h.call(method, *args)
    except VeniceError as error:
        return error
    raise AssertionError(f"{method} raised nothing")


def _exceptions(error: BaseException) -> Iterator[BaseException]:
    """Every exception reachable from ``error``: causes, contexts and exceptions held in args."""
    seen: set[int] = set()
    stack: list[Any] = [error]
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [current.__cause__, current.__context__, *current.args]


def _texts(value: Any) -> Iterator[str]:
    """What a value shows: its repr, and the raw headers of any request or response it is or holds."""
    yield repr(value)
    requests: list[Any] = []
    if isinstance(value, httpx.Request):
        requests.append(value)
    if isinstance(value, httpx.Response):
        yield str(value.headers.raw)
        requests.append(getattr(value, "_request", None))
    if isinstance(value, httpx.RequestError):
        with contextlib.suppress(RuntimeError):  # an httpx error never bound to a request
            requests.append(value.request)
    for request in requests:
        if request is not None:
            # httpx masks Authorization in ``repr(headers)``: look at the raw bytes instead.
            yield str(request.headers.raw)


def _frames(error: BaseException) -> Iterator[Any]:
    tb = error.__traceback__
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def assert_key_nowhere(error: BaseException, key: str) -> None:
    """Walk the whole chain: messages, args, attributes, requests/responses and every traceback local."""
    assert key not in "".join(traceback.format_exception(error))
    for link in _exceptions(error):
        for value in (link, link.args, vars(link), *vars(link).values()):
            for text in _texts(value):
                assert key not in text, f"key in {type(link).__name__}: {text[:200]}"
        for frame in _frames(link):
            for name, local in frame.f_locals.items():
                for text in _texts(local):
                    assert key not in text, f"key in local {name!r} of {frame.f_code.co_name}: {text[:200]}"


def _cut_json(fake: Any, head: bytes) -> Any:
    def respond(request: httpx.Request) -> httpx.Response:
        body = fake.LazyBody(200, piece=10, cut_after=20, head=head)
        return httpx.Response(200, headers={"Content-Type": "application/json"}, stream=body)

    return respond


def _chain_failures(fake: Any) -> dict[str, tuple[Any, str, tuple[Any, ...]]]:
    video = fake.LazyBody(100_000, piece=1000, cut_after=5000)
    return {
        "connect-error": (fake.fail(httpx.ConnectError, "Connection refused"), "list_video_models", ()),
        "read-timeout": (fake.fail(httpx.ReadTimeout, "timed out"), "retrieve_status", (MODEL, "q-1")),
        "protocol-error-mid-body": (
            _cut_json(fake, b'{"status": "PROCESS'),
            "retrieve_status",
            (MODEL, "q-1"),
        ),
        "4xx": (fake.answer(400, json={"error": "Invalid request"}), "quote", (QUOTE_REQUEST,)),
        "5xx-exhausted": (fake.answer(503, json={"error": "at capacity"}), "complete", (MODEL, "q-1")),
        "queue-read-timeout": (fake.fail(httpx.ReadTimeout, "timed out"), "queue", (QUEUE_REQUEST,)),
        "queue-answer-cut": (_cut_json(fake, b'{"model": "wan-2'), "queue", (QUEUE_REQUEST,)),
        "queue-answer-unreadable": (fake.answer(200, json={"queue": 1}), "queue", (QUEUE_REQUEST,)),
        "video-cut-short": (
            lambda r: httpx.Response(200, headers={"Content-Type": "video/mp4"}, stream=video),
            "download_video",
            (MODEL, "q-1", lambda chunk: None),
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "connect-error",
        "read-timeout",
        "protocol-error-mid-body",
        "4xx",
        "5xx-exhausted",
        "queue-read-timeout",
        "queue-answer-cut",
        "queue-answer-unreadable",
        "video-cut-short",
    ],
)
def test_api_key_nowhere_in_the_exception_chain(venice: Any, fake: Any, case: str) -> None:
    responder, method, args = _chain_failures(fake)[case]
    h = venice(responder, retry=RetryPolicy(max_retries=2))
    error = capture(h, method, *args)
    assert_key_nowhere(error, fake.KEY)
    # Every attempt was authenticated on the wire; every request object was redacted afterwards.
    assert all(r.headers["Authorization"] == f"Bearer {fake.KEY}" for r in h.requests)
    assert all(r.headers["Authorization"] == "Bearer [redacted]" for r in h.venice.originals)


def test_the_chain_walker_finds_a_key_left_on_a_request(fake: Any) -> None:
    request = httpx.Request("GET", fake.BASE_URL, headers={"Authorization": f"Bearer {fake.KEY}"})
    error = VeniceError("wrapped")
    error.__cause__ = httpx.ConnectError("refused", request=request)
    with pytest.raises(AssertionError, match="key in ConnectError"):
        assert_key_nowhere(error, fake.KEY)


def test_sent_requests_and_responses_hold_no_key_after_the_call(venice: Any, fake: Any) -> None:
    h = venice(
        fake.answer(503, json={"error": "busy"}),
        fake.fail(httpx.ConnectError),
        fake.answer(200, json={"quote": 0.35}),
    )
    assert h.call("quote", QUOTE_REQUEST) == pytest.approx(0.35)
    assert len(h.requests) == 3
    # A fresh request per attempt, each one authenticated when it was sent ...
    assert len({id(r) for r in h.venice.originals}) == 3
    assert [r.headers["Authorization"] for r in h.requests] == [f"Bearer {fake.KEY}"] * 3
    # ... and none of them holds the key afterwards, nor does any response's request.
    for request in h.venice.originals:
        assert request.headers["Authorization"] == "Bearer [redacted]"
        assert fake.KEY not in str(request.headers.raw)
    for response in h.venice.responses:
        assert response.request.headers["Authorization"] == "Bearer [redacted]"


def test_streamed_video_response_holds_no_key_while_streaming(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(200, content=b"\x00\x00\x00\x18ftypisom", headers={"Content-Type": "video/mp4"}))
    seen: list[str] = []

    def sink(chunk: bytes) -> None:
        (response,) = h.venice.responses
        seen.append(str(response.request.headers.raw))

    h.call("download_video", MODEL, "q-1", sink)
    assert seen
    assert all(fake.KEY not in text for text in seen)


def test_api_key_in_no_client_repr(fake: Any) -> None:
    sync_client = VeniceClient(fake.KEY, base_url=fake.BASE_URL, transport=httpx.MockTransport(fake.answer()))
    async_client = AsyncVeniceClient(
        fake.KEY, base_url=fake.BASE_URL, transport=httpx.MockTransport(fake.answer())
    )
    for client in (sync_client, async_client):
        assert fake.BASE_URL in repr(client)
        assert fake.KEY not in repr(client)
        assert fake.KEY not in str(client)
        # Not in the attributes a debugger or a traceback's locals would show either.
        assert fake.KEY not in repr(vars(client))
        assert fake.KEY not in repr(vars(client._core))
        assert fake.KEY not in str(client._http.headers)
    sync_client.close()
    asyncio.run(async_client.aclose())


@pytest.mark.parametrize("key", ["", "   "])
def test_empty_api_key_refused(key: str) -> None:
    with pytest.raises(VeniceError, match="API key is required"):
        VeniceClient(key)


def test_api_key_whitespace_is_stripped(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(200, json={"data": []}), api_key=f"  {fake.KEY}\n")
    h.call("list_video_models")
    assert h.requests[0].headers["Authorization"] == f"Bearer {fake.KEY}"


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://api.venice.ai/api/v1", "https://api.venice.ai/api/v1"),
        ("https://api.venice.ai/api/v1/", "https://api.venice.ai/api/v1"),
        ("  https://proxy.example.com:8443/venice/api/v1 ", "https://proxy.example.com:8443/venice/api/v1"),
        ("http://127.0.0.1:8123/api/v1", "http://127.0.0.1:8123/api/v1"),
        ("http://127.0.0.5/api/v1", "http://127.0.0.5/api/v1"),
        ("http://localhost:8123/api/v1", "http://localhost:8123/api/v1"),
        ("http://LOCALHOST:8123/api/v1", "http://LOCALHOST:8123/api/v1"),
        ("http://[::1]:8123/api/v1", "http://[::1]:8123/api/v1"),
    ],
)
def test_base_url_accepted(url: str, normalised: str) -> None:
    assert check_base_url(url) == normalised
    assert VeniceClient("k", base_url=url).base_url == normalised


@pytest.mark.parametrize(
    "url",
    [
        "http://api.venice.ai/api/v1",
        "http://10.0.0.5:8123/api/v1",
        "http://192.168.1.10/api/v1",
        "http://127.0.0.1.evil.example/api/v1",
        "http://localhost.evil.example/api/v1",
        "http://[2001:db8::1]/api/v1",
        "ftp://api.venice.ai/api/v1",
        "api.venice.ai/api/v1",
        "https://",
        "",
    ],
)
def test_base_url_refused(url: str) -> None:
    with pytest.raises(VeniceError):
        check_base_url(url)
    with pytest.raises(VeniceError):
        VeniceClient("sk-SECRET-123", base_url=url)


def test_plain_http_refusal_names_the_rule_not_the_key(fake: Any) -> None:
    with pytest.raises(VeniceError, match="plain http is only allowed for loopback") as info:
        VeniceClient(fake.KEY, base_url="http://api.venice.ai/api/v1")
    assert_no_key(info.value, fake.KEY)


def test_refused_base_url_sends_nothing(fake: Any) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": []})

    with pytest.raises(VeniceError):
        VeniceClient(fake.KEY, base_url="http://venice.test/api/v1", transport=httpx.MockTransport(handler))
    assert seen == []


def test_no_retry_policy_constant() -> None:
    assert NO_RETRY.max_retries == 0
