"""When to look at a job again: the one polling decision shared by the sensor, the trigger and operators.

Venice tells us, on every ``PROCESSING`` answer, how long such jobs usually take
(``average_execution_time``) and how long this one has run (``execution_duration``). That estimate is
imperfect (off by up to about 30 %), so we sleep through the part of the job that cannot be the end,
then poll at a short interval through the window where it can finish, and back off slowly if the job
runs far past the estimate. The decision is stateless: everything it needs comes from the last answer,
so a trigger restarted on another triggerer picks up the same rhythm.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from airflow_provider_venice.client._errors import VeniceError

if TYPE_CHECKING:
    from airflow_provider_venice.client._core import JobStatus


@dataclass(frozen=True)
class PollPolicy:
    """Tunables of the polling rhythm (seconds unless said otherwise)."""

    floor_s: float = 1.0
    window_interval_s: float = 4.0
    max_sleep_s: float = 60.0
    earliest_finish: float = 0.75
    late_after: float = 1.5
    max_late_interval_s: float = 30.0
    error_base_s: float = 2.0
    max_error_delay_s: float = 60.0


DEFAULT_POLL_POLICY = PollPolicy()


@dataclass(frozen=True)
class PollDecision:
    """What to do after one retrieve: ``wait`` ``delay_s``, or stop because the job is ``done``/``failed``."""

    action: Literal["wait", "done", "failed"]
    delay_s: float = 0.0
    status: JobStatus | None = None
    message: str = ""


def decide_next_poll(
    observed: JobStatus | VeniceError, *, errors_in_row: int = 0, policy: PollPolicy = DEFAULT_POLL_POLICY
) -> PollDecision:
    """Decide from one retrieve answer (or its error) whether the job is done, and when to look again.

    ``errors_in_row`` counts the transient errors just before this one (0 for the first), for backoff.
    """
    if isinstance(observed, VeniceError):
        return _after_error(observed, errors_in_row, policy)
    if observed.is_done:
        return PollDecision("done", status=observed, message="video ready")
    if observed.state == "failed":
        return PollDecision("failed", status=observed, message=observed.message or "job failed")
    delay = processing_delay(observed, policy)
    return PollDecision("wait", delay_s=delay, status=observed, message=progress_text(observed))


def processing_delay(status: JobStatus, policy: PollPolicy = DEFAULT_POLL_POLICY) -> float:
    """Seconds to wait after a ``PROCESSING`` answer, from Venice's estimate and the time run so far."""
    average = (status.average_execution_time_ms or 0) / 1000.0
    elapsed = (status.execution_duration_ms or 0) / 1000.0
    if average <= 0:
        return _clamp(
            max(elapsed * 0.1, policy.window_interval_s), policy.floor_s, policy.max_late_interval_s
        )
    until_window = policy.earliest_finish * average - elapsed
    if until_window > policy.window_interval_s:
        return _clamp(until_window, policy.floor_s, policy.max_sleep_s)
    overrun = elapsed / average - policy.late_after
    if overrun <= 0:
        return max(policy.floor_s, policy.window_interval_s)
    stretched = policy.window_interval_s * (1.0 + 2.0 * overrun)
    return _clamp(stretched, policy.floor_s, policy.max_late_interval_s)


def progress_text(status: JobStatus) -> str:
    """Describe a running job for people reading the logs: elapsed against Venice's estimate."""
    elapsed = (status.execution_duration_ms or 0) / 1000.0
    average = (status.average_execution_time_ms or 0) / 1000.0
    if average <= 0:
        return f"processing for {elapsed:.0f}s (no estimate from Venice)"
    percent = 100.0 * elapsed / average
    return f"processing for {elapsed:.0f}s of an estimated {average:.0f}s ({percent:.0f}%)"


def _after_error(error: VeniceError, errors_in_row: int, policy: PollPolicy) -> PollDecision:
    if not error.retryable:
        return PollDecision("failed", message=str(error))
    hint = getattr(error, "retry_after", None)
    if isinstance(hint, int | float) and hint >= 0:
        delay = float(hint) + random.uniform(0, min(2.0, 0.1 * hint + 0.2))
    else:
        delay = policy.error_base_s * (2 ** min(errors_in_row, 8)) * random.uniform(0.75, 1.25)
    delay = _clamp(delay, policy.floor_s, policy.max_error_delay_s)
    return PollDecision("wait", delay_s=delay, message=f"transient error, retrying in {delay:.0f}s: {error}")


def _clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))
