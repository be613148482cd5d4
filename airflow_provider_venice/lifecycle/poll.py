"""The poller: one watch over one job, shared by the sensor, the trigger and the generate operator.

It looks at the job with ``/video/retrieve`` (never downloading the body), keeps the count of
transient errors in a row (for back-off) and the absolute deadline, and asks the client's pure
polling policy when to look again. Its state is a few plain numbers, so a trigger moved to another
triggerer, or a sensor rescheduled to another worker, carries on with the same rhythm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_venice.client import DEFAULT_POLL_POLICY, PollPolicy, VeniceError, decide_next_poll
from airflow_provider_venice.lifecycle.failures import as_airflow_failure
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from airflow_provider_venice.client import AsyncVeniceClient, JobStatus, PollDecision, VeniceClient
    from airflow_provider_venice.job import VeniceJob

# Waiting in the triggerer is the default: a video job runs for minutes, and a worker slot held that long
# is a worker slot wasted. Not ``[operators] default_deferrable``, which is off unless an admin sets it.
DEFAULT_DEFERRABLE = True
# Past the trigger's own deadline, the scheduler fails a deferral that no triggerer ever ran.
DEFERRAL_GRACE_S = 300.0
EVENT_STATUSES = ("success", "error", "timeout")


@dataclass
class Poller:
    """Watches ``job`` until ``deadline`` (epoch seconds).

    :param errors_in_row: transient errors seen just before, carried across reschedules and deferrals.
    """

    job: VeniceJob
    deadline: float
    window_interval_s: float = DEFAULT_POLL_POLICY.window_interval_s
    errors_in_row: int = 0

    def __post_init__(self) -> None:
        self.policy = PollPolicy(window_interval_s=float(self.window_interval_s))
        self.last_status: JobStatus | None = None
        self.last_error: VeniceError | None = None

    def decide(self, observed: JobStatus | VeniceError) -> PollDecision:
        """Take one retrieve answer (or its error) and return what to do next."""
        decision = decide_next_poll(observed, errors_in_row=self.errors_in_row, policy=self.policy)
        if isinstance(observed, VeniceError):
            self.last_error = observed
            self.errors_in_row += 1
        else:
            self.last_error = None
            self.errors_in_row = 0
            if observed.state == "processing" or self.last_status is None:
                self.last_status = observed
        return decision

    def check(self, client: VeniceClient) -> PollDecision:
        """Look at the job once from a worker; a failed job raises the Airflow failure to report."""
        observed: JobStatus | VeniceError
        try:
            observed = client.retrieve_status(self.job.model, self.job.queue_id)
        except VeniceError as exc:
            observed = exc
        decision = self.decide(observed)
        if decision.action == "failed":
            raise self.failure(decision.message)
        return decision

    async def acheck(self, client: AsyncVeniceClient) -> PollDecision:
        """Look at the job once from the triggerer; a failed job is a ``failed`` decision."""
        observed: JobStatus | VeniceError
        try:
            observed = await client.retrieve_status(self.job.model, self.job.queue_id)
        except VeniceError as exc:
            observed = exc
        return self.decide(observed)

    def failure(self, message: str) -> AirflowException:
        """Return the Airflow failure for a failed job, or for a permanent error while looking at it."""
        if self.last_error is not None:
            return as_airflow_failure(self.last_error, f" (queue_id {self.job.queue_id})")
        return AirflowFailException(f"Venice job {self.job.queue_id} failed: {message}")

    def timeout(self) -> AirflowException:
        """Return the (retryable) failure for a job still unfinished at the deadline; it is kept."""
        return AirflowException(
            f"Venice job {self.job.queue_id} still unfinished at the deadline; it was kept and may still "
            "finish (a retry of this task resumes it)"
        )

    def deferral_timeout(self) -> timedelta:
        """Return the timeout to defer with: past the deadline and a grace, no triggerer fails the try."""
        return timedelta(seconds=max(0.0, self.deadline - time.time()) + DEFERRAL_GRACE_S)

    def past_deadline(self) -> bool:
        """Whether the deadline has passed."""
        return time.time() >= self.deadline

    @property
    def execution_duration_ms(self) -> int | None:
        """How long Venice said the job ran, from the last answer that said so."""
        return self.last_status.execution_duration_ms if self.last_status else None

    def state(self) -> dict[str, Any]:
        """Return the poller's plain-JSON state (without the job), for trigger kwargs and the job record."""
        return {
            "deadline": self.deadline,
            "window_interval_s": self.window_interval_s,
            "errors_in_row": self.errors_in_row,
        }


def deadline_after(timeout: Any) -> float:
    """Return the epoch time ``timeout`` (seconds or a timedelta; a week when unset) from now."""
    seconds = timeout.total_seconds() if hasattr(timeout, "total_seconds") else timeout
    return time.time() + (float(seconds) if seconds is not None else 7 * 24 * 3600.0)


def read_event(event: dict[str, Any] | None, job: VeniceJob) -> dict[str, Any]:
    """Check a trigger event against an allow-list; return it when the job is done, else raise.

    An error event fails the task with Venice's message, without retries unless the event says a retry
    may help; a timeout is an ordinary, retryable failure (the job is kept, and the next try resumes it).
    """
    status = event.get("status") if isinstance(event, dict) else None
    if not isinstance(event, dict) or status not in EVENT_STATUSES:
        raise AirflowException(f"VeniceVideoTrigger sent an unexpected event: {event!r}")
    if event.get("queue_id") not in (None, job.queue_id):
        raise AirflowException(
            f"VeniceVideoTrigger reported on job {event.get('queue_id')}, not {job.queue_id}"
        )
    if status == "error":
        error = AirflowException if event.get("retryable") is True else AirflowFailException
        raise error(str(event.get("message")))
    if status == "timeout":
        raise AirflowException(f"{event.get('message')} (queue_id {job.queue_id}; the job may still finish)")
    return event
