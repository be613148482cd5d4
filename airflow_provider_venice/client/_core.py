"""The I/O-free half of the Venice client, shared by the sync and async halves.

It builds requests, maps transport failures and error responses to the error tree, and reads retrieve
responses into a typed :class:`JobStatus` from the status code and ``Content-Type`` alone.
"""

from __future__ import annotations

import enum
import json
import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from airflow_provider_venice import __version__
from airflow_provider_venice.client._errors import (
    DownloadUrlError,
    QueueOutcomeUnknownError,
    VeniceAPIError,
    VeniceError,
    VeniceTimeoutError,
    VeniceTransportError,
    api_error,
    decode_body,
    venice_message,
)
from airflow_provider_venice.client._models import Transcription
from airflow_provider_venice.client._retry import RetryBudget, RetryPolicy, parse_retry_after
from airflow_provider_venice.client._urls import check_base_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from airflow_provider_venice.client._models import _Request

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0, pool=30.0)
USER_AGENT = (
    f"airflow-provider-venice/{__version__} httpx/{httpx.__version__} python/{platform.python_version()}"
)
# Connections per client, all kept alive: a triggerer's thousands of waiting jobs share these few.
POOL_SIZE = 20
MAX_ERROR_BODY = 64 * 1024
MAX_STATUS_BODY = 1024 * 1024
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

ModelT = TypeVar("ModelT", bound=BaseModel)


class Endpoint(enum.Enum):
    """The Venice endpoints this client speaks, with their method and whether a call charges money."""

    MODELS = ("GET", "/models", False)
    QUOTE = ("POST", "/video/quote", False)
    QUEUE = ("POST", "/video/queue", True)
    RETRIEVE = ("POST", "/video/retrieve", False)
    COMPLETE = ("POST", "/video/complete", False)
    TRANSCRIPTIONS = ("POST", "/video/transcriptions", False)

    def __init__(self, method: str, path: str, charges: bool) -> None:
        self.method = method
        self.path = path
        self.charges = charges


@dataclass(frozen=True)
class JobStatus:
    """What one ``/video/retrieve`` answer says about a job, read without the video body.

    ``state`` is ``processing``, ``video_ready`` (the answer is the mp4 itself), ``completed`` (JSON
    ``COMPLETED``: fetch ``download_url`` for VPS models) or ``failed``.
    """

    state: Literal["processing", "video_ready", "completed", "failed"]
    average_execution_time_ms: int | None = None
    execution_duration_ms: int | None = None
    content_type: str | None = None
    content_length: int | None = None
    message: str | None = None

    @property
    def is_done(self) -> bool:
        """Whether the video is ready to be fetched."""
        return self.state in ("video_ready", "completed")


class _Secret:
    """Holds the API key so that no repr, log line or traceback local can show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


class ClientCore:
    """Request building and response parsing shared by :class:`VeniceClient` and its async twin."""

    def __init__(
        self, api_key: str, base_url: str, timeout: httpx.Timeout | float, retry: RetryPolicy
    ) -> None:
        if not api_key or not api_key.strip():
            raise VeniceError("a Venice API key is required (the connection's password field)")
        self.api_key = _Secret(api_key.strip())
        self.base_url = check_base_url(base_url)
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.retry = retry

    def __repr__(self) -> str:
        return f"ClientCore(base_url={self.base_url!r})"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the ``httpx`` client; no credentials at client level."""
        return {
            "timeout": self.timeout,
            "limits": httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE),
            "headers": {"User-Agent": USER_AGENT},
            "follow_redirects": False,
        }

    def budget(self, endpoint: Endpoint) -> RetryBudget:
        """Start the retry bookkeeping of one call."""
        return RetryBudget(self.retry, charges=endpoint.charges)

    def build(self, endpoint: Endpoint, body: _Request | None = None) -> httpx.Request:
        """Build an authenticated API request."""
        # ``Client.send`` does not merge the client's default headers: every request carries its own.
        headers = {"Authorization": f"Bearer {self.api_key.reveal()}", "User-Agent": USER_AGENT}
        if endpoint is Endpoint.MODELS:
            return httpx.Request("GET", f"{self.base_url}/models", params={"type": "video"}, headers=headers)
        if endpoint is Endpoint.RETRIEVE:
            headers["Accept"] = "video/mp4, application/json"
        return httpx.Request(
            endpoint.method,
            f"{self.base_url}{endpoint.path}",
            content=json.dumps(body.to_json() if body else {}).encode(),
            headers={**headers, "Content-Type": "application/json"},
        )

    @staticmethod
    def build_plain(method: str, url: str) -> httpx.Request:
        """Build a request to a non-API URL (a VPS ``download_url``): never with the API key."""
        return httpx.Request(method, url, headers={"User-Agent": USER_AGENT})

    @staticmethod
    def transport_error(endpoint: Endpoint, exc: httpx.TransportError) -> tuple[VeniceError, bool]:
        """Map an httpx failure to our error, and say whether the request may have reached Venice."""
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        sent = not isinstance(exc, _NOT_SENT)
        if isinstance(exc, httpx.TimeoutException):
            return VeniceTimeoutError(endpoint.path, detail), sent
        return VeniceTransportError(endpoint.path, detail), sent

    @staticmethod
    def body_error(endpoint: Endpoint, exc: httpx.TransportError) -> VeniceError:
        """Map a failure while reading a 2xx answer's body; the request certainly reached Venice.

        For ``/video/queue`` the job exists but its queue_id was lost, so the outcome is unknown.
        """
        error, _ = ClientCore.transport_error(endpoint, exc)
        if endpoint.charges:
            return QueueOutcomeUnknownError(f"answer cut short: {error}")
        return error

    @staticmethod
    def error_from(endpoint: Endpoint, response: httpx.Response, raw_body: bytes) -> VeniceAPIError:
        """Build the error for a non-2xx response."""
        return api_error(endpoint.path, response.status_code, raw_body, retry_hint(response))

    @staticmethod
    def parse(endpoint: Endpoint, raw_body: bytes, model: type[ModelT]) -> ModelT:
        """Parse a successful JSON answer into ``model``."""
        try:
            return model.model_validate_json(raw_body)
        except ValidationError as exc:
            snippet = raw_body[:200].decode("utf-8", errors="replace")
            raise VeniceError(f"Venice {endpoint.path} sent an unexpected answer: {snippet!r}") from exc

    def transcription(self, response: httpx.Response, raw_body: bytes) -> Transcription:
        """Parse a transcription answer: ``text/plain`` for the text format, JSON otherwise."""
        if response.headers.get("content-type", "").startswith("text/plain"):
            return Transcription(transcript=raw_body.decode("utf-8", errors="replace"))
        return self.parse(Endpoint.TRANSCRIPTIONS, raw_body, Transcription)

    @staticmethod
    def plain_error(response: httpx.Response, raw_body: bytes) -> VeniceError:
        """Build the error for a failed request to a ``download_url`` (5xx stay retryable)."""
        message = venice_message(decode_body(raw_body)) or response.reason_phrase
        if response.status_code >= 500 or response.status_code == 429:
            return api_error("download_url", response.status_code, raw_body, retry_hint(response))
        return DownloadUrlError(response.status_code, message)

    @staticmethod
    def is_video(response: httpx.Response) -> bool:
        """Whether a 2xx retrieve answer is the video itself (judged by its headers only)."""
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        return bool(content_type.startswith("video/") or content_type == "application/octet-stream")

    @staticmethod
    def content_length(response: httpx.Response) -> int | None:
        """Return the declared body size, if any."""
        value = response.headers.get("content-length")
        return int(value) if value and value.isdigit() else None

    def video_status(self, response: httpx.Response) -> JobStatus:
        """Status for a retrieve answer whose body is the video (the body is not read)."""
        return JobStatus(
            state="video_ready",
            content_type=response.headers.get("content-type"),
            content_length=self.content_length(response),
        )

    @staticmethod
    def json_status(raw_body: bytes) -> JobStatus:
        """Status for a JSON retrieve answer: PROCESSING, COMPLETED or anything else (failed)."""
        try:
            body = json.loads(raw_body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            snippet = raw_body[:200].decode("utf-8", errors="replace")
            return JobStatus(state="failed", message=f"unreadable retrieve answer: {snippet!r}")
        status = str(body.get("status", "")).upper()
        average = _int_or_none(body.get("average_execution_time"))
        elapsed = _int_or_none(body.get("execution_duration"))
        if status in ("PROCESSING", "QUEUED", "PENDING", "IN_PROGRESS"):
            return JobStatus("processing", average, elapsed)
        if status == "COMPLETED":
            return JobStatus("completed", average, elapsed)
        message = body.get("error") or body.get("error_code") or f"status {status or 'missing'}"
        return JobStatus("failed", average, elapsed, message=f"{status or 'UNKNOWN'}: {message}")


def retry_hint(response: httpx.Response) -> float | None:
    """Seconds to wait before retrying, from ``Retry-After`` or the request-rate reset time.

    The reset time of the request-rate window (``x-ratelimit-reset-requests``, sent on every answer) is a
    hint only when that window is used up: a 503 or 429 while requests remain (model at capacity) is
    backed off normally instead of waiting for a window that may reset hours later.
    """
    remaining = response.headers.get("x-ratelimit-remaining-requests", "").strip()
    exhausted = not remaining.isdigit() or int(remaining) == 0
    reset_ms = response.headers.get("x-ratelimit-reset-requests") if exhausted else None
    return parse_retry_after(response.headers.get("retry-after"), reset_ms)


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class VideoStream:
    """An mp4 being received: its declared type and size, and its body as an iterator of chunks."""

    content_type: str | None
    content_length: int | None
    chunks: Iterator[bytes]


@dataclass(frozen=True)
class AsyncVideoStream:
    """The async twin of :class:`VideoStream`."""

    content_type: str | None
    content_length: int | None
    chunks: AsyncIterator[bytes]
