"""VeniceVideoSensor: waits for a queued Venice job to finish, in the triggerer by default."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_venice.client import DEFAULT_POLL_POLICY
from airflow_provider_venice.hooks.venice import VeniceHook
from airflow_provider_venice.job import InvalidJobError, VeniceJob, job_from_arguments
from airflow_provider_venice.lifecycle.poll import DEFAULT_DEFERRABLE, Poller, deadline_after, read_event
from airflow_provider_venice.sensors.start_from_trigger import fallback_reason, start_trigger_args
from airflow_provider_venice.triggers.video import VeniceVideoTrigger
from airflow_provider_venice.version_compat import AirflowFailException

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_provider_venice.lifecycle.record import JobRecord


class VeniceVideoSensor(BaseSensorOperator):
    """Wait until a Venice video job has finished.

    Pass the job natively: ``job=queue.output`` (or ``model=...`` and ``queue_id=queue.output["queue_id"]``).
    It checks the job once on the worker; if it is still running it defers to
    :class:`VeniceVideoTrigger` (``deferrable=True``, the default) or, with ``deferrable=False``, keeps
    poking (use ``mode="reschedule"`` to free the worker slot between checks; the count of transient
    errors, which sets the back-off, is kept across reschedules). The time between checks follows
    Venice's own estimate of the job's length rather than a fixed interval.

    Returns the job plus ``{"status": "COMPLETED", "execution_duration_ms"}``, each key also pushed as
    its own XCom, so ``job=wait.output`` hands the job on.

    :param job: the job from ``VeniceVideoQueueOperator`` (a dict with ``model`` and ``queue_id``).
    :param deferrable: wait in the triggerer instead of on a worker.
    :param start_from_trigger: (Airflow 3.3) start the wait in the triggerer straight from the scheduler:
        no worker runs until the job has finished, and then only ``execute_complete``. The job's fields
        may be task outputs or templates (the triggerer renders them); ``deferrable`` must stay on.
        Where it cannot apply (Airflow 3.1 and 3.2, mapped tasks) the sensor defers from the worker as
        usual and logs why.
    """

    template_fields: Sequence[str] = ("job", "model", "queue_id", "download_url", "venice_conn_id")
    ui_color = "#dff5e1"

    def __init__(
        self,
        *,
        job: Any = None,
        model: str | None = None,
        queue_id: str | None = None,
        download_url: str | None = None,
        venice_conn_id: str = VeniceHook.default_conn_name,
        deferrable: bool = DEFAULT_DEFERRABLE,
        window_interval_s: float = DEFAULT_POLL_POLICY.window_interval_s,
        start_from_trigger: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", DEFAULT_POLL_POLICY.window_interval_s)
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        self.job = job
        self.model = model
        self.queue_id = queue_id
        self.download_url = download_url
        self.venice_conn_id = venice_conn_id
        self.deferrable = deferrable
        self.window_interval_s = window_interval_s
        self._poller: Poller | None = None
        self._record: JobRecord | None = None
        if start_from_trigger:
            if not deferrable:
                raise ValueError(f"{self.task_id}: start_from_trigger=True needs deferrable=True")
            fields = {"job": job, "model": model, "queue_id": queue_id, "download_url": download_url}
            self.start_trigger_args = start_trigger_args(
                {**fields, "venice_conn_id": venice_conn_id}, self.timeout, window_interval_s
            )
            self.start_from_trigger = True
            # The triggerer keeps a deserialised copy of this task's DAG per waiting task; a template
            # field left out of the serialised task is added back as None, which costs each copy of
            # this sensor a larger attribute dict. Fields not given (None) render to None anyway.
            self.template_fields = tuple(
                name for name in self.template_fields if getattr(self, name) is not None
            )

    @cached_property
    def hook(self) -> VeniceHook:
        """The Venice hook."""
        return VeniceHook(self.venice_conn_id)

    def execute(self, context: Context) -> Any:
        """Check once; then defer to the triggerer, or poke as an ordinary sensor."""
        from airflow_provider_venice.lifecycle.record import JobRecord

        if self.start_from_trigger:
            self.log.info(
                "start_from_trigger does not apply: %s; deferring from here.", fallback_reason(context)
            )
        job = self._watched_job()
        if not self.deferrable:
            self._record = JobRecord(context, self.log)
            errors_in_row = int(self._record.get("errors_in_row") or 0)
            self._poller = Poller(job, deadline_after(self.timeout), self.window_interval_s, errors_in_row)
            return super().execute(context)
        poller = Poller(job, deadline_after(self.timeout), self.window_interval_s)
        decision = poller.check(self.hook.get_conn())
        if decision.action == "done":
            return self._result(job, poller.execution_duration_ms)
        self.log.info("Venice job %s: %s; deferring.", job.queue_id, decision.message)
        self.defer(
            trigger=VeniceVideoTrigger.watching(poller, decision.delay_s, self.venice_conn_id),
            method_name="execute_complete",
            timeout=poller.deferral_timeout(),
        )

    def poke(self, context: Context) -> PokeReturnValue:
        """Check the job once; the next poke comes when the polling policy says."""
        assert self._poller is not None, "poke runs inside execute"
        assert self._record is not None, "poke runs inside execute"
        poller, before = self._poller, self._poller.errors_in_row
        decision = poller.check(self.hook.get_conn())
        if self.reschedule and poller.errors_in_row != before:
            self._record.write(errors_in_row=poller.errors_in_row)
        if decision.action == "done":
            return PokeReturnValue(
                is_done=True, xcom_value=self._result(poller.job, poller.execution_duration_ms)
            )
        self.poke_interval = decision.delay_s
        self.log.info(
            "Venice job %s: %s; next check in %.0fs.", poller.job.queue_id, decision.message, decision.delay_s
        )
        return PokeReturnValue(is_done=False)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Turn the trigger's event into the sensor's result, or a failure carrying Venice's message."""
        try:
            job = job_from_arguments(self.job, self.model, self.queue_id, self.download_url)
        except InvalidJobError as exc:
            job = self._job_the_trigger_watched(event, exc)
        event = read_event(event, job)
        return self._result(job, event.get("execution_duration_ms"))

    def _job_the_trigger_watched(self, event: Any, exc: InvalidJobError) -> VeniceJob:
        """Return the job the event names (a sensor started from the trigger), else fail with ``exc``.

        The triggerer rendered the templated fields to native values (a pulled job is a dict, a missing
        ``download_url`` is None); a worker renders the same templates to text, which reads as no job.
        """
        if not (self.start_from_trigger and isinstance(event, dict) and event.get("queue_id")):
            raise AirflowFailException(str(exc)) from None
        try:
            return job_from_arguments(
                None,
                event.get("model"),
                event.get("queue_id"),
                event.get("download_url"),
                event.get("quote_usd"),
            )
        except InvalidJobError as from_event:
            raise AirflowFailException(
                f"{exc}; the trigger's event names no job either: {from_event}"
            ) from None

    def _watched_job(self) -> VeniceJob:
        try:
            return job_from_arguments(self.job, self.model, self.queue_id, self.download_url)
        except InvalidJobError as exc:
            raise AirflowFailException(str(exc)) from None

    @staticmethod
    def _result(job: VeniceJob, execution_duration_ms: int | None) -> dict[str, Any]:
        return {**job.to_xcom(), "status": "COMPLETED", "execution_duration_ms": execution_duration_ms}
