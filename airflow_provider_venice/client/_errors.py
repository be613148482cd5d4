"""One error tree for everything that can go wrong talking to Venice.

Every message names the endpoint, the HTTP status and Venice's own words, and never the API key (no
request headers are ever put into an error). ``retryable`` tells callers whether trying the same call
again later can help; permanent errors (every 4xx but 429) must not be retried, because a burst of
failed 4xx responses locks the key out.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

_SNIPPET = 300


class VeniceError(Exception):
    """Root of every error raised by this package's Venice client."""

    retryable: ClassVar[bool] = False


class VeniceRequestInvalidError(VeniceError, ValueError):
    """A request was refused before it was sent: ``field`` names what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class VeniceTransportError(VeniceError):
    """The connection failed (refused, reset, DNS) before a complete answer arrived."""

    retryable = True

    def __init__(self, endpoint: str, detail: str) -> None:
        self.endpoint = endpoint
        super().__init__(f"Venice {endpoint}: connection failed: {detail}")


class VeniceTimeoutError(VeniceTransportError):
    """Venice did not answer in time."""


class QueueOutcomeUnknownError(VeniceError):
    """A ``/video/queue`` request may have reached Venice, and whether it created a job is unknown.

    Venice has no idempotency key, so resending could pay twice; the job may or may not exist.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(
            "Venice /video/queue: the request was sent but its outcome is unknown "
            f"({detail}); the job may or may not have been created and charged. It was not resent, "
            "to avoid paying twice. Check your Venice account before queueing again."
        )


class UnreadableAnswerError(VeniceError):
    """A 2xx answer that says nothing readable (an empty 204, a proxy's HTML page); worth asking again."""

    retryable = True

    def __init__(self, endpoint: str, snippet: str) -> None:
        self.endpoint = endpoint
        super().__init__(f"Venice {endpoint} sent an unreadable answer: {snippet!r}")


class VideoJobFailedError(VeniceError):
    """Venice reported a terminal, non-successful status for a job."""

    def __init__(self, queue_id: str, status: str, message: str) -> None:
        self.queue_id = queue_id
        self.status = status
        super().__init__(f"Venice job {queue_id} ended with status {status}: {message}")


class VideoNotReadyError(VeniceError):
    """The video was asked for, but the job has not finished (or Venice answered JSON instead)."""

    def __init__(self, queue_id: str, state: str, detail: str = "") -> None:
        self.queue_id = queue_id
        self.state = state
        super().__init__(f"Venice job {queue_id} has no video to download yet (state {state}){detail}")


class DownloadUrlError(VeniceError):
    """A VPS ``download_url`` could not be fetched: expired (valid 24 h), deleted, or refused."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        hint = " (download links expire 24 h after queueing)" if status in (403, 404, 410) else ""
        super().__init__(f"download_url answered {status}{hint}: {message}")


class VeniceAPIError(VeniceError):
    """Venice answered with an error status; subclasses give each status its meaning."""

    status_code: ClassVar[int] = 0

    def __init__(self, endpoint: str, status: int, message: str, body: Any = None) -> None:
        self.endpoint = endpoint
        self.status = status
        self.venice_message = message
        self.body = body
        super().__init__(f"Venice {endpoint} answered {status} ({self.meaning()}): {message}")

    @classmethod
    def meaning(cls) -> str:
        """Say in a few words what the status means."""
        return (cls.__doc__ or "error").splitlines()[0].rstrip(".")


class BadRequestError(VeniceAPIError):
    """Bad request parameters."""

    status_code = 400

    @property
    def is_invalid_request_id(self) -> bool:
        """Whether Venice does not know the queue_id (also what it answers for released VPS jobs)."""
        return "request id is invalid" in self.venice_message.lower()


class AuthenticationError(VeniceAPIError):
    """Invalid API key, or a Pro-only model."""

    status_code = 401


class PaymentRequiredError(VeniceAPIError):
    """Insufficient balance."""

    status_code = 402


class RegionUnavailableError(VeniceAPIError):
    """Model unavailable in your region."""

    status_code = 403


class NotFoundError(VeniceAPIError):
    """Unknown job, or its media expired or was already deleted."""

    status_code = 404


class ConsentRequiredError(VeniceAPIError):
    """The model needs a consent flow first."""

    status_code = 409


class EndpointRetiredError(VeniceAPIError):
    """The endpoint was retired by Venice."""

    status_code = 410


class PayloadTooLargeError(VeniceAPIError):
    """Request payload too large; host media instead of inlining data: URLs."""

    status_code = 413


class ContentPolicyError(VeniceAPIError):
    """Content policy violation."""

    status_code = 422

    def __init__(self, endpoint: str, status: int, message: str, body: Any = None) -> None:
        fields = _error_fields(body)
        self.suggested_prompt: str | None = _str_or_none(fields.get("suggested_prompt"))
        self.credits_refunded: bool | None = _bool_or_none(fields.get("credits_refunded"))
        self.recommended_model: str | None = _str_or_none(fields.get("recommended_model"))
        super().__init__(endpoint, status, message, body)


class RateLimitError(VeniceAPIError):
    """Rate limited or model overloaded."""

    status_code = 429
    retryable = True

    def __init__(
        self, endpoint: str, status: int, message: str, body: Any = None, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(endpoint, status, message, body)


class ServerError(VeniceAPIError):
    """Inference failed or Venice had an internal error."""

    status_code = 500
    retryable = True


class CapacityError(ServerError):
    """Model at capacity or queue backed up."""

    status_code = 503

    def __init__(
        self, endpoint: str, status: int, message: str, body: Any = None, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(endpoint, status, message, body)


class GatewayTimeoutError(ServerError):
    """Gateway timeout."""

    status_code = 504


_BY_STATUS: dict[int, type[VeniceAPIError]] = {
    cls.status_code: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        PaymentRequiredError,
        RegionUnavailableError,
        NotFoundError,
        ConsentRequiredError,
        EndpointRetiredError,
        PayloadTooLargeError,
        ContentPolicyError,
        RateLimitError,
        ServerError,
        CapacityError,
        GatewayTimeoutError,
    )
}


def api_error(endpoint: str, status: int, raw_body: bytes, retry_after: float | None) -> VeniceAPIError:
    """Build the error for an error response from its status and whatever body shape Venice sent."""
    body = decode_body(raw_body)
    message = venice_message(body) or f"HTTP {status}"
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else VeniceAPIError)
    if cls in (RateLimitError, CapacityError):
        return cls(endpoint, status, message, body, retry_after=retry_after)
    return cls(endpoint, status, message, body)


def venice_message(body: Any) -> str:
    """Extract a readable message from any of Venice's error body shapes (or a plain-text body)."""
    if isinstance(body, str):
        return body.strip()[:_SNIPPET]
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        message = str(error.get("message") or error.get("code") or "")
        kind = error.get("type") or error.get("code")
        if kind and str(kind) not in message:
            message = f"{message} [{kind}]" if message else str(kind)
    else:
        message = str(error or body.get("message") or "")
    if (code := body.get("code")) and str(code) not in message:
        message = f"{message} [{code}]"
    if (details := _flatten_details(body.get("details"))) and details not in message:
        message = f"{message} ({details})"
    if isinstance(suggested := body.get("suggested_prompt"), str):
        message = f"{message}; suggested prompt: {suggested!r}"
    return message.strip()[: _SNIPPET * 3]


def _flatten_details(details: Any, path: str = "") -> str:
    """Turn a ``details`` tree of ``_errors`` lists (or a plain string) into ``field: problem`` text."""
    if isinstance(details, str):
        return details
    if not isinstance(details, dict):
        return ""
    parts = [f"{path or 'request'}: {err}" for err in details.get("_errors", []) if err]
    for key, sub in details.items():
        if key != "_errors" and (text := _flatten_details(sub, f"{path}.{key}" if path else str(key))):
            parts.append(text)
    return "; ".join(parts)


def _error_fields(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        return {}
    nested = body.get("error")
    return {**body, **nested} if isinstance(nested, dict) else body


def decode_body(raw: bytes) -> Any:
    """Decode a response body as JSON when it is JSON, else as text."""
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _bool_or_none(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None
