"""The I/O-free half of the Venice client, shared by the sync and async halves.

It builds requests, maps transport failures and error responses to the error tree, decides (and logs)
each retry and reads 2xx answers (retrieve answers: ``_status``). Each half has one send loop over a
:class:`Call`; once a request was sent, its Authorization header is redacted in place, so no exception,
response or traceback frame that refers to it can show the API key.
"""

from __future__ import annotations

import enum
import json
import logging
import platform
import traceback
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from airflow_provider_venice import __version__
from airflow_provider_venice.client._errors import (
    DownloadUrlError,
    QueueOutcomeUnknownError,
    UnreadableAnswerError,
    VeniceAPIError,
    VeniceError,
    VeniceTimeoutError,
    VeniceTransportError,
    api_error,
    decode_body,
    venice_message,
)
from airflow_provider_venice.client._models import CompleteResponse, QueueResponse, Transcription
from airflow_provider_venice.client._retry import RetryBudget, RetryPolicy, parse_retry_after
from airflow_provider_venice.client._status import (  # re-exported: the status types' former home
    AsyncVideoStream as AsyncVideoStream,
    JobStatus as JobStatus,
    VideoStream as VideoStream,
)
from airflow_provider_venice.client._urls import check_base_url

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_venice.client._models import QueueVideoRequest, _Request

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0, pool=30.0)
USER_AGENT = (
    f"airflow-provider-venice/{__version__} httpx/{httpx.__version__} python/{platform.python_version()}"
)
# Connections per client, all kept alive: a triggerer's thousands of waiting jobs share these few.
# httpcore checks every pooled connection on each request, so a bigger pool costs loop time per poll.
POOL_SIZE = 8
MAX_ERROR_BODY = 64 * 1024
MAX_STATUS_BODY = 1024 * 1024
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# What /video/retrieve is asked for: a status poll takes either answer, a download wants the mp4 only
# (some servers answer JSON COMPLETED to a finished non-VPS job when the Accept header names JSON).
ACCEPT_STATUS = "application/json, video/mp4"
ACCEPT_VIDEO = "video/mp4"
REDACTED = "Bearer [redacted]"
DOWNLOAD_URL_LABEL = "download_url"
_SNIPPET = 200

logger = logging.getLogger("airflow_provider_venice.client")

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


@dataclass(frozen=True)
class Call:
    """One call to send with retries: how to build each attempt, and how to read a refusal.

    ``where`` names the target in errors and logs (the endpoint path, or ``download_url``); ``charges``
    says whether a resend could pay twice. A fresh request is built for every attempt.
    """

    where: str
    charges: bool
    build: Callable[[], httpx.Request]
    refusal: Callable[[httpx.Response, bytes], VeniceError]
    follow_redirects: bool = False


def _failure_detail(exc: httpx.TransportError) -> str:
    """Describe an httpx failure, and clear the locals of its finished httpx and httpcore frames.

    httpcore keeps its own copy of the request headers in those frames, out of reach of :func:`redact`;
    a traceback renderer that shows locals would print it. The frames' lines stay.
    """
    traceback.clear_frames(exc.__traceback__)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def redact(request: httpx.Request) -> None:
    """Replace a sent request's Authorization header in place, wherever that request is referenced.

    Exceptions (``exc.request``), responses (``response.request``) and traceback frames keep the request
    object; after this none of them shows the API key.
    """
    if "authorization" in request.headers:
        request.headers["Authorization"] = REDACTED


class ClientCore:
    """Request building and response parsing shared by :class:`VeniceClient` and its async twin."""

    def __init__(
        self, api_key: str, base_url: str, timeout: httpx.Timeout | float, retry: RetryPolicy
    ) -> None:
        if not api_key or not api_key.strip():
            raise VeniceError("a Venice API key is required (the connection's password field)")
        key = api_key.strip()
        if not (key.isascii() and key.isprintable()):
            # An HTTP library would refuse the header and quote it in its error: never let the key get there.
            raise VeniceError(
                "the Venice API key holds characters an HTTP header cannot carry (a line break, a control "
                "or non-ASCII character); check the connection's password field"
            )
        self.api_key = _Secret(key)
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

    def budget(self, call: Call) -> RetryBudget:
        """Start the retry bookkeeping of one call."""
        return RetryBudget(self.retry, charges=call.charges)

    def api_call(self, endpoint: Endpoint, body: _Request | None = None, accept: str | None = None) -> Call:
        """Describe an authenticated call to a Venice endpoint."""
        return Call(
            endpoint.path,
            endpoint.charges,
            partial(self.build, endpoint, body, accept),
            partial(self.error_from, endpoint),
        )

    @classmethod
    def plain_call(cls, method: str, url: str) -> Call:
        """Describe a call to a VPS ``download_url``: no API key, redirects followed, 5xx/429 retried."""
        return Call(DOWNLOAD_URL_LABEL, False, partial(cls.build_plain, method, url), cls.plain_error, True)

    def build(
        self, endpoint: Endpoint, body: _Request | None = None, accept: str | None = None
    ) -> httpx.Request:
        """Build an authenticated API request (``accept`` sets the Accept header)."""
        # ``Client.send`` does not merge the client's default headers: every request carries its own.
        headers = {"Authorization": f"Bearer {self.api_key.reveal()}", "User-Agent": USER_AGENT}
        if accept:
            headers["Accept"] = accept
        if accept == ACCEPT_VIDEO:
            headers["Accept-Encoding"] = "identity"  # the mp4 as stored: its Content-Length is its size
        if endpoint is Endpoint.MODELS:
            return httpx.Request("GET", f"{self.base_url}/models", params={"type": "video"}, headers=headers)
        return httpx.Request(
            endpoint.method,
            f"{self.base_url}{endpoint.path}",
            content=json.dumps(body.to_json() if body else {}).encode(),
            headers={**headers, "Content-Type": "application/json"},
        )

    @staticmethod
    def build_plain(method: str, url: str) -> httpx.Request:
        """Build a request to a non-API URL (a VPS ``download_url``): never with the API key."""
        return httpx.Request(method, url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})

    @staticmethod
    def transport_error(where: str, exc: httpx.TransportError) -> tuple[VeniceError, bool]:
        """Map an httpx failure to our error, and say whether the request may have reached the server."""
        detail = _failure_detail(exc)
        sent = not isinstance(exc, _NOT_SENT)
        if isinstance(exc, httpx.TimeoutException):
            return VeniceTimeoutError(where, detail), sent
        return VeniceTransportError(where, detail), sent

    @staticmethod
    def stream_error(where: str, exc: httpx.TransportError) -> VeniceTransportError:
        """Map a failure while streaming a video body (the body was cut short)."""
        return VeniceTransportError(where, f"body cut short: {_failure_detail(exc)}")

    def delay_after_failure(self, call: Call, budget: RetryBudget, exc: httpx.TransportError) -> float:
        """Seconds to wait after a transport failure (logged), or raise the final error from ``exc``."""
        error, sent = self.transport_error(call.where, exc)
        try:
            delay = budget.delay_before_retry(error, request_sent=sent)
        except VeniceError as final:
            raise final from exc
        log_retry(call.where, delay, type(exc).__name__)
        return delay

    def delay_after_refusal(
        self, call: Call, budget: RetryBudget, response: httpx.Response, raw_body: bytes
    ) -> float:
        """Seconds to wait after a non-2xx answer (logged), or raise the error it means."""
        delay = budget.delay_before_retry(call.refusal(response, raw_body), request_sent=True)
        log_retry(call.where, delay, str(response.status_code))
        return delay

    @staticmethod
    def body_error(endpoint: Endpoint, exc: httpx.TransportError) -> VeniceError:
        """Map a failure while reading a 2xx answer's body; the request certainly reached Venice.

        For ``/video/queue`` the job exists but its queue_id was lost, so the outcome is unknown.
        """
        error, _ = ClientCore.transport_error(endpoint.path, exc)
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
            raise unexpected_answer(endpoint, raw_body) from exc

    @staticmethod
    def queue_response(raw_body: bytes, request: QueueVideoRequest) -> QueueResponse:
        """Read a 2xx ``/video/queue`` answer leniently: the job exists and was charged.

        Only a non-empty string ``queue_id`` is required (else :class:`QueueOutcomeUnknownError`);
        a missing or empty ``model`` falls back to the request's, an unusable ``download_url`` to none.
        """
        body = _json_object(raw_body)
        queue_id = body.get("queue_id")
        if not isinstance(queue_id, str) or not queue_id.strip():
            raise unexpected_answer(Endpoint.QUEUE, raw_body)
        model, link = body.get("model"), body.get("download_url")
        if link is not None and not (isinstance(link, str) and link.strip()):
            logger.warning("Venice /video/queue answered an unusable download_url (%.80r); ignored", link)
        return QueueResponse(
            model=model if isinstance(model, str) and model.strip() else request.model,
            queue_id=queue_id,
            download_url=link if isinstance(link, str) and link.strip() else None,
        )

    @staticmethod
    def complete_response(raw_body: bytes) -> CompleteResponse:
        """Read a 2xx ``/video/complete`` answer leniently: released unless it says ``"success": false``."""
        if _json_object(raw_body).get("success") is False:
            raise UnreadableAnswerError(Endpoint.COMPLETE.path, _snippet(raw_body))
        return CompleteResponse(success=True)

    def transcription(self, response: httpx.Response, raw_body: bytes) -> Transcription:
        """Parse a transcription answer: ``text/plain`` for the text format, JSON otherwise."""
        if response.headers.get("content-type", "").startswith("text/plain"):
            return Transcription(transcript=raw_body.decode("utf-8", errors="replace"))
        return self.parse(Endpoint.TRANSCRIPTIONS, raw_body, Transcription)

    @staticmethod
    def plain_error(response: httpx.Response, raw_body: bytes) -> VeniceError:
        """Build the error for a failed request to a ``download_url`` (5xx and 429 stay retryable)."""
        message = venice_message(decode_body(raw_body)) or response.reason_phrase
        if response.status_code >= 500 or response.status_code == 429:
            return api_error(DOWNLOAD_URL_LABEL, response.status_code, raw_body, retry_hint(response))
        return DownloadUrlError(response.status_code, message)


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


def log_retry(where: str, delay: float, after: str) -> None:
    """Log one retry: ``retrying /video/retrieve in 2.0 s after 503`` (a status or an exception name)."""
    logger.info("retrying %s in %.1f s after %s", where, delay, after)


def unexpected_answer(endpoint: Endpoint, raw_body: bytes) -> VeniceError:
    """Build the error for a 2xx answer that cannot be read; on a charging endpoint, outcome unknown."""
    snippet = _snippet(raw_body)
    if endpoint.charges:
        return QueueOutcomeUnknownError(f"the 2xx answer could not be read: {snippet!r}")
    return VeniceError(f"Venice {endpoint.path} sent an unexpected answer: {snippet!r}")


def _json_object(raw_body: bytes) -> dict[str, Any]:
    """Decode the body as a JSON object; an empty dict when it is not one."""
    try:
        body = json.loads(raw_body)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _snippet(raw_body: bytes) -> str:
    return raw_body[:_SNIPPET].decode("utf-8", errors="replace")
