"""VeniceVideoSensor: waits for a queued Venice job to finish, deferring to the triggerer by default."""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_venice._airflow import as_airflow_failure, optional_url
from airflow_provider_venice.client import (
    DEFAULT_POLL_POLICY,
    PollDecision,
    PollPolicy,
    VeniceError,
    decide_next_poll,
)
from airflow_provider_venice.hooks.venice import VeniceHook
from airflow_provider_venice.triggers.video import VeniceVideoTrigger

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_provider_venice.client import JobStatus, VeniceClient

EVENT_STATUSES = ("success", "error", "timeout")


class VeniceVideoSensor(BaseSensorOperator):
    """Wait until a Venice video job has finished.

    It checks the job once on the worker; if it is still running it defers to
    :class:`VeniceVideoTrigger` (``deferrable=True``, the default when ``[operators]
    default_deferrable`` is set) or keeps poking (use ``mode="reschedule"`` to free the worker slot
    between checks). Either way the time between checks follows Venice's own estimate of the job's
    length rather than a fixed interval.

    Returns ``{"status": "COMPLETED", "model", "queue_id", "download_url", "execution_duration_ms"}``.

    :param model: the model the job was queued with.
    :param queue_id: the job's id from ``/video/queue``.
    :param download_url: the VPS ``download_url`` from ``/video/queue``, passed through to the result.
    :param deferrable: wait in the triggerer instead of on a worker.
    """

    template_fields: Sequence[str] = ("model", "queue_id", "download_url", "venice_conn_id")
    ui_color = "#dff5e1"

    def __init__(
        self,
        *,
        model: str,
        queue_id: str,
        download_url: str | None = None,
        venice_conn_id: str = VeniceHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        window_interval_s: float = DEFAULT_POLL_POLICY.window_interval_s,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", DEFAULT_POLL_POLICY.window_interval_s)
        super().__init__(**kwargs)
        self.model = model
        self.queue_id = queue_id
        self.download_url = download_url
        self.venice_conn_id = venice_conn_id
        self.deferrable = deferrable
        self.window_interval_s = window_interval_s
        self._errors_in_row = 0

    @cached_property
    def hook(self) -> VeniceHook:
        """The Venice hook."""
        return VeniceHook(self.venice_conn_id)

    def execute(self, context: Context) -> Any:
        """Check once; then defer to the triggerer, or poke as an ordinary sensor."""
        if not self.deferrable:
            return super().execute(context)
        decision = self._check()
        if decision.action == "done":
            return self._result(decision.status)
        self.log.info("Venice job %s: %s; deferring.", self.queue_id, decision.message)
        self.defer(
            trigger=VeniceVideoTrigger(
                model=self.model,
                queue_id=self.queue_id,
                download_url=optional_url(self.download_url),
                venice_conn_id=self.venice_conn_id,
                deadline=time.time() + seconds(self.timeout),
                next_poll_at=time.time() + decision.delay_s,
                window_interval_s=self.window_interval_s,
            ),
            method_name="execute_complete",
        )

    def poke(self, context: Context) -> PokeReturnValue:
        """Check the job once; the next poke comes when the polling policy says."""
        decision = self._check()
        if decision.action == "done":
            return PokeReturnValue(is_done=True, xcom_value=self._result(decision.status))
        self.poke_interval = decision.delay_s
        self.log.info(
            "Venice job %s: %s; next check in %.0fs.", self.queue_id, decision.message, decision.delay_s
        )
        return PokeReturnValue(is_done=False)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Turn the trigger's event into the sensor's result, or a failure carrying Venice's message."""
        return completed_job(event, self.queue_id)

    def _check(self) -> PollDecision:
        decision, self._errors_in_row = check_job(
            self.hook.get_conn(), self.model, self.queue_id, self._errors_in_row, self.window_interval_s
        )
        return decision

    def _result(self, status: JobStatus | None) -> dict[str, Any]:
        return {
            "status": "COMPLETED",
            "model": self.model,
            "queue_id": self.queue_id,
            "download_url": optional_url(self.download_url),
            "execution_duration_ms": status.execution_duration_ms if status else None,
        }


def seconds(timeout: timedelta | float | None) -> float:
    """Return a timeout as seconds (a week when unset)."""
    if isinstance(timeout, timedelta):
        return timeout.total_seconds()
    return float(timeout) if timeout is not None else 7 * 24 * 3600.0


def check_job(
    client: VeniceClient, model: str, queue_id: str, errors_in_row: int, window_interval_s: float
) -> tuple[PollDecision, int]:
    """Look at a job once; return the polling decision and the new count of transient errors in a row.

    Raises an Airflow failure when the job failed or the error is permanent.
    """
    observed: JobStatus | VeniceError
    try:
        observed = client.retrieve_status(model, queue_id)
    except VeniceError as exc:
        observed = exc
    policy = PollPolicy(window_interval_s=window_interval_s)
    decision = decide_next_poll(observed, errors_in_row=errors_in_row, policy=policy)
    if decision.action == "failed":
        if isinstance(observed, VeniceError):
            raise as_airflow_failure(observed, f" (queue_id {queue_id})")
        raise AirflowFailException(f"Venice job {queue_id} failed: {decision.message}")
    return decision, errors_in_row + 1 if isinstance(observed, VeniceError) else 0


def completed_job(event: dict[str, Any] | None, queue_id: str) -> dict[str, Any]:
    """Validate a :class:`VeniceVideoTrigger` event and return the COMPLETED result, or raise.

    Error events fail the task with Venice's message; a timeout raises an ordinary (retryable) error.
    """
    status = (event or {}).get("status")
    if event is None or status not in EVENT_STATUSES:
        raise AirflowException(f"VeniceVideoTrigger sent an unexpected event: {event!r}")
    if status == "error":
        raise AirflowFailException(str(event.get("message")))
    if status == "timeout":
        raise AirflowException(f"{event.get('message')} (queue_id {queue_id}; the job may still finish)")
    return {
        "status": "COMPLETED",
        "model": event.get("model"),
        "queue_id": event.get("queue_id"),
        "download_url": event.get("download_url"),
        "execution_duration_ms": event.get("execution_duration_ms"),
    }
