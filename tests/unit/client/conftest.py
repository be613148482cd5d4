"""A scripted Venice behind ``httpx.MockTransport``, driven through the sync or the async client.

Test modules reach the helpers through the ``fake`` fixture (a conftest is not importable in every
pytest import mode). The ``venice`` fixture is parametrised over both halves, so every
test that uses it checks both. The transport is the only seam: nothing of the package is patched,
and ``sleep`` is injected to record the retry delays instead of waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from airflow_provider_venice.client import AsyncVeniceClient, RetryPolicy, VeniceClient

KEY = "sk-SECRET-123"
BASE_URL = "https://venice.test/api/v1"

Responder = Callable[[httpx.Request], httpx.Response]


def answer(status: int = 200, json: Any = None, **kwargs: Any) -> Responder:
    """A responder that builds a fresh response for every request it answers."""

    def respond(request: httpx.Request) -> httpx.Response:
        if json is not None:
            return httpx.Response(status, json=json, **kwargs)
        return httpx.Response(status, **kwargs)

    return respond


def fail(exc_type: type[httpx.TransportError], message: str = "boom") -> Responder:
    """A responder that fails the way httpx reports a broken connection."""

    def respond(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return respond


class LazyBody(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body generated piece by piece on demand, never held whole in memory.

    Counts what it produced; ``cut_after`` bytes into the body it fails like a dropped connection;
    ``explode`` makes any attempt to read it fail the test.
    """

    def __init__(
        self,
        total: int,
        piece: int = 64 * 1024,
        *,
        cut_after: int | None = None,
        explode: bool = False,
        head: bytes = b"\x00\x00\x00\x18ftypisom",
    ) -> None:
        self.total = total
        self.piece = piece
        self.cut_after = cut_after
        self.explode = explode
        self.head = head
        self.produced = 0
        self.reads = 0
        self.closed = False

    def _pieces(self) -> Iterator[bytes]:
        self.reads += 1
        if self.explode:
            raise AssertionError("the body was read although only the status was asked for")
        filler = b"\x5a" * self.piece
        while self.produced < self.total:
            if self.cut_after is not None and self.produced >= self.cut_after:
                raise httpx.RemoteProtocolError("peer closed connection without sending complete body")
            size = min(self.piece, self.total - self.produced)
            data = (self.head + filler)[:size] if self.produced == 0 else filler[:size]
            self.produced += size
            yield data

    def __iter__(self) -> Iterator[bytes]:
        yield from self._pieces()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for data in self._pieces():
            yield data

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def snapshot(request: httpx.Request) -> httpx.Request:
    """A copy of a request as it went over the wire (the client redacts the original once it was sent)."""
    return httpx.Request(request.method, request.url, headers=request.headers.copy(), content=request.content)


class ScriptedVenice:
    """Answers each request with the next responder of its script (the last one repeats).

    ``requests`` holds copies of the requests as they arrived (headers included); ``originals`` the
    request objects the client sent and ``responses`` the responses handed back, to check what the
    client left on them afterwards.
    """

    def __init__(self, *script: Responder) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []
        self.originals: list[httpx.Request] = []
        self.responses: list[httpx.Response] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(snapshot(request))
        self.originals.append(request)
        if not self.script:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        responder = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        self.responses.append(responder(request))
        return self.responses[-1]


class Harness:
    """One client (sync or async) over a scripted Venice; calls return plain results either way."""

    def __init__(
        self,
        flavour: str,
        venice: ScriptedVenice,
        retry: RetryPolicy | None = None,
        api_key: str = KEY,
    ) -> None:
        self.flavour = flavour
        self.venice = venice
        self.sleeps: list[float] = []
        transport = httpx.MockTransport(venice)
        self.client: VeniceClient | AsyncVeniceClient
        if flavour == "sync":
            self.client = VeniceClient(
                api_key, base_url=BASE_URL, retry=retry, transport=transport, sleep=self.sleeps.append
            )
        else:

            async def record(delay: float) -> None:
                self.sleeps.append(delay)

            self.client = AsyncVeniceClient(
                api_key, base_url=BASE_URL, retry=retry, transport=transport, sleep=record
            )

    @property
    def requests(self) -> list[httpx.Request]:
        return self.venice.requests

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a client method; the async client's coroutine is run to completion."""
        result = getattr(self.client, method)(*args, **kwargs)
        if self.flavour == "async":
            return asyncio.run(result)
        return result

    def stream(self, opener: str, *args: Any, sink: Callable[[bytes], object]) -> tuple[Any, int]:
        """Open ``open_video`` / ``open_download_url``, drain its chunks into ``sink``.

        Return the stream's (content_type, content_length) and the number of bytes.
        """
        if isinstance(self.client, VeniceClient):
            with getattr(self.client, opener)(*args) as video:
                total = 0
                for chunk in video.chunks:
                    sink(chunk)
                    total += len(chunk)
                return (video.content_type, video.content_length), total

        async def drain() -> tuple[Any, int]:
            async with getattr(self.client, opener)(*args) as video:
                total = 0
                async for chunk in video.chunks:
                    sink(chunk)
                    total += len(chunk)
                return (video.content_type, video.content_length), total

        return asyncio.run(drain())


@pytest.fixture
def fake() -> SimpleNamespace:
    """The helpers: ``fake.answer``, ``fake.fail``, ``fake.LazyBody``, ``fake.KEY``, ``fake.BASE_URL``."""
    return SimpleNamespace(answer=answer, fail=fail, LazyBody=LazyBody, KEY=KEY, BASE_URL=BASE_URL)


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def venice(flavour: str) -> Callable[..., Harness]:
    """``venice(*responders, retry=...)``: a client of this test's flavour over a scripted Venice."""

    def make(*script: Responder, retry: RetryPolicy | None = None, api_key: str = KEY) -> Harness:
        return Harness(flavour, ScriptedVenice(*script), retry=retry, api_key=api_key)

    return make
