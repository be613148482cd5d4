"""The synchronous Venice client: a thin I/O half over :class:`ClientCore`."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx

from airflow_provider_venice.client._core import (
    ACCEPT_STATUS,
    ACCEPT_VIDEO,
    DEFAULT_TIMEOUT,
    MAX_ERROR_BODY,
    MAX_STATUS_BODY,
    Call,
    ClientCore,
    Endpoint,
    ModelT,
    redact,
)
from airflow_provider_venice.client._errors import DownloadUrlError, VideoNotReadyError
from airflow_provider_venice.client._models import (
    CompleteResponse,
    CompleteVideoRequest,
    ModelList,
    QueueResponse,
    QueueVideoRequest,
    QuoteResponse,
    QuoteVideoRequest,
    RetrieveVideoRequest,
    Transcription,
    TranscriptionRequest,
    _Request,
)
from airflow_provider_venice.client._retry import RetryPolicy
from airflow_provider_venice.client._status import (
    JobStatus,
    VideoStream,
    content_length,
    is_video,
    json_status,
    video_status,
)
from airflow_provider_venice.client._urls import DEFAULT_BASE_URL

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CHUNK_SIZE = 1024 * 1024


class VeniceClient:
    """Synchronous client for the Venice video API; reuse one instance across calls.

    ``transport`` is the test seam (``httpx.MockTransport`` or the emulator's transport).
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._core = ClientCore(api_key, base_url, timeout, retry or RetryPolicy())
        self._http = httpx.Client(transport=transport, **self._core.client_kwargs())
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"VeniceClient(base_url={self._core.base_url!r})"

    @property
    def base_url(self) -> str:
        """The API base URL, e.g. ``https://api.venice.ai/api/v1``."""
        return self._core.base_url

    def __enter__(self) -> VeniceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def list_video_models(self) -> ModelList:
        """``GET /models?type=video``: the video model catalogue."""
        return self._json(Endpoint.MODELS, None, ModelList)

    def quote(self, request: QuoteVideoRequest) -> float:
        """``POST /video/quote``: the price in USD of a job (free; creates nothing)."""
        return self._json(Endpoint.QUOTE, request, QuoteResponse).quote

    def queue(self, request: QueueVideoRequest) -> QueueResponse:
        """``POST /video/queue``: start a job, which charges; never resent when it may have arrived.

        A 2xx answer without a readable ``queue_id`` raises :class:`QueueOutcomeUnknownError`; a
        missing ``model`` in the answer is taken from ``request``.
        """
        response = self._send(self._core.api_call(Endpoint.QUEUE, request))
        return self._core.queue_response(_read_capped(response, MAX_STATUS_BODY, Endpoint.QUEUE), request)

    def retrieve_status(self, model: str, queue_id: str) -> JobStatus:
        """``POST /video/retrieve`` for the job's status only; a finished video's body is not read."""
        response = self._retrieve(model, queue_id, ACCEPT_STATUS)
        if is_video(response):
            response.close()
            return video_status(response)
        return json_status(_read_capped(response, MAX_STATUS_BODY, Endpoint.RETRIEVE))

    @contextmanager
    def open_video(self, model: str, queue_id: str, chunk_size: int = CHUNK_SIZE) -> Iterator[VideoStream]:
        """Stream a finished job's mp4 from ``/video/retrieve`` (asked for as ``video/mp4`` only)."""
        response = self._retrieve(model, queue_id, ACCEPT_VIDEO)
        try:
            if not is_video(response):
                status = json_status(_read_capped(response, MAX_STATUS_BODY, Endpoint.RETRIEVE))
                raise VideoNotReadyError(
                    queue_id, status.state, f": {status.message}" if status.message else ""
                )
            yield VideoStream(
                response.headers.get("content-type"),
                content_length(response),
                _guarded(response.iter_bytes(chunk_size), Endpoint.RETRIEVE.path),
            )
        finally:
            response.close()

    def download_video(
        self, model: str, queue_id: str, sink: Callable[[bytes], object], chunk_size: int = CHUNK_SIZE
    ) -> int:
        """Stream a finished job's mp4 into ``sink`` chunk by chunk; return the number of bytes."""
        with self.open_video(model, queue_id, chunk_size) as video:
            return _drain(video.chunks, sink)

    @contextmanager
    def open_download_url(self, url: str, chunk_size: int = CHUNK_SIZE) -> Iterator[VideoStream]:
        """Stream a VPS job's mp4 from its ``download_url`` (a plain GET, never with the API key)."""
        response = self._send(self._core.plain_call("GET", url))
        try:
            yield VideoStream(
                response.headers.get("content-type"),
                content_length(response),
                _guarded(response.iter_bytes(chunk_size), "download_url"),
            )
        finally:
            response.close()

    def delete_download_url(self, url: str) -> bool:
        """Delete a VPS job's file behind ``download_url``; False when it was already gone (404)."""
        try:
            self._send(self._core.plain_call("DELETE", url)).close()
        except DownloadUrlError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def complete(self, model: str, queue_id: str) -> CompleteResponse:
        """``POST /video/complete``: finalise the job, which deletes Venice's copy of the media.

        Any 2xx answer means released (an empty 204 too), unless it says ``"success": false``.
        """
        request = CompleteVideoRequest(model=model, queue_id=queue_id)
        response = self._send(self._core.api_call(Endpoint.COMPLETE, request))
        return self._core.complete_response(_read_capped(response, MAX_STATUS_BODY, Endpoint.COMPLETE))

    def transcribe(self, url: str, response_format: str = "json") -> Transcription:
        """``POST /video/transcriptions``: transcribe a YouTube video (json or text)."""
        request = TranscriptionRequest.model_validate({"url": url, "response_format": response_format})
        response = self._send(self._core.api_call(Endpoint.TRANSCRIPTIONS, request))
        raw = _read_capped(response, MAX_STATUS_BODY * 16, Endpoint.TRANSCRIPTIONS)
        return self._core.transcription(response, raw)

    def _json(self, endpoint: Endpoint, body: _Request | None, model: type[ModelT]) -> ModelT:
        response = self._send(self._core.api_call(endpoint, body))
        return self._core.parse(endpoint, _read_capped(response, MAX_STATUS_BODY, endpoint), model)

    def _retrieve(self, model: str, queue_id: str, accept: str) -> httpx.Response:
        body = RetrieveVideoRequest(model=model, queue_id=queue_id)
        return self._send(self._core.api_call(Endpoint.RETRIEVE, body, accept))

    def _send(self, call: Call) -> httpx.Response:
        """Send with retries; return a 2xx response whose body is not read yet.

        Every attempt is a fresh request, redacted (no API key left on it) as soon as it was sent.
        """
        budget = self._core.budget(call)
        while True:
            request = call.build()
            try:
                response = self._http.send(request, stream=True, follow_redirects=call.follow_redirects)
            except httpx.TransportError as exc:
                delay = self._core.delay_after_failure(call, budget, exc)
            else:
                if response.is_success:
                    return response
                raw = _read_capped(response, MAX_ERROR_BODY)
                delay = self._core.delay_after_refusal(call, budget, response, raw)
            finally:
                redact(request)
            self._sleep(delay)


def _read_capped(response: httpx.Response, limit: int, endpoint: Endpoint | None = None) -> bytes:
    """Read at most ``limit`` bytes of a (small) body, then close the response.

    With ``endpoint`` the body is a 2xx answer, and a body cut short raises instead of being truncated.
    """
    buffer = bytearray()
    try:
        for chunk in response.iter_bytes():
            buffer += chunk
            if len(buffer) >= limit:
                break
    except httpx.TransportError as exc:
        if endpoint is not None:
            raise ClientCore.body_error(endpoint, exc) from exc
        # an error body: the status already says what happened; a cut error body adds nothing
    finally:
        response.close()
    return bytes(buffer[:limit])


def _guarded(chunks: Iterator[bytes], where: str) -> Iterator[bytes]:
    """Re-raise transport failures while streaming a body as :class:`VeniceTransportError`."""
    try:
        yield from chunks
    except httpx.TransportError as exc:
        raise ClientCore.stream_error(where, exc) from exc


def _drain(chunks: Iterator[bytes], sink: Callable[[bytes], object]) -> int:
    total = 0
    for chunk in chunks:
        sink(chunk)
        total += len(chunk)
    return total
