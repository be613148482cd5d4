"""When to try a call again, and after how long.

Rules (see ``venice-api.md``): a 4xx other than 429 is never retried; 429, 500, 503, 504 and connection
failures are retried with exponential backoff and jitter, honouring ``Retry-After``, bounded in attempts
and in total time. ``/video/queue`` charges and has no idempotency key, so it is resent only when the
first request provably was not processed: the connection was never made, or Venice answered 429/503.
Any other server error or lost answer on queue means the outcome is unknown: it is never resent.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_provider_venice.client._errors import (
    CapacityError,
    QueueOutcomeUnknownError,
    RateLimitError,
    ServerError,
    VeniceAPIError,
    VeniceError,
    VeniceTransportError,
)

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for retrying one call: attempts, backoff curve and total time."""

    max_retries: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_total_s: float = 120.0

    def backoff_s(self, retry_number: int) -> float:
        """Exponential backoff (0.5, 1, 2, 4, ... capped) with up to 25 % jitter either way."""
        delay = min(self.max_delay_s, self.base_delay_s * (2 ** max(0, retry_number - 1)))
        return float(delay * random.uniform(0.75, 1.25))


NO_RETRY = RetryPolicy(max_retries=0)


@dataclass
class RetryBudget:
    """The retry state of one call; ``delay_before_retry`` either returns a delay or raises."""

    policy: RetryPolicy
    charges: bool
    clock: Callable[[], float] = time.monotonic
    retries: int = 0
    started: float = field(default=0.0)
    slept: float = 0.0

    def __post_init__(self) -> None:
        self.started = self.clock()

    def delay_before_retry(self, error: VeniceError, *, request_sent: bool) -> float:
        """Return how long to wait before the next attempt, or raise ``error`` when there is none.

        ``request_sent`` is false only when the connection was never made, so Venice cannot have seen
        the request. The total-time bound counts the delays already handed out as well as the clock, so
        it holds whatever ``sleep`` the client was given.
        """
        if self.charges:
            self._check_safe_to_resend(error, request_sent=request_sent)
        if not error.retryable or self.retries >= self.policy.max_retries:
            raise error
        self.retries += 1
        delay = self._delay_for(error)
        elapsed = max(self.clock() - self.started, self.slept)
        if elapsed + delay > self.policy.max_total_s:
            raise error
        self.slept += delay
        return delay

    def _delay_for(self, error: VeniceError) -> float:
        hint = getattr(error, "retry_after", None)
        if isinstance(hint, int | float) and hint >= 0:
            return float(hint) + random.uniform(0, min(1.0, 0.1 * hint + 0.1))
        return self.policy.backoff_s(self.retries)

    @staticmethod
    def _check_safe_to_resend(error: VeniceError, *, request_sent: bool) -> None:
        if isinstance(error, RateLimitError | CapacityError):
            return  # answered before processing
        if isinstance(error, VeniceTransportError):
            if request_sent:
                raise QueueOutcomeUnknownError(str(error)) from error
            return
        if isinstance(error, ServerError):
            # 500 and 504 reached Venice: whether a job was created and charged is not known.
            raise QueueOutcomeUnknownError(str(error)) from error
        if isinstance(error, VeniceAPIError):
            raise error  # a definite refusal (4xx): nothing was created, never resent


def parse_retry_after(value: str | None, reset_ms: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``x-ratelimit-reset-requests`` (ms)."""
    now = time.time() if now is None else now
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            from email.utils import parsedate_to_datetime

            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                pass
    if reset_ms:
        try:
            return max(0.0, float(reset_ms) / 1000.0 - now)
        except ValueError:
            return None
    return None
