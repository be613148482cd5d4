"""The API key reaches the Venice API's Authorization header and nowhere else; plain http only on loopback."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_venice.client import (
    NO_RETRY,
    AsyncVeniceClient,
    QueueVideoRequest,
    RetryPolicy,
    VeniceClient,
    VeniceError,
    check_base_url,
)

MODEL = "wan-2-7-text-to-video"
QUEUE_REQUEST = QueueVideoRequest(model=MODEL, prompt="a cat", duration="5s")


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
        "bad-json": (fake.answer(200, json={"nope": 1}), "complete", (MODEL, "q-1")),
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
