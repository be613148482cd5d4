"""VeniceVideoTrigger: waits in the triggerer until a Venice job has finished.

It only ever reads ``/video/retrieve`` (the paid ``/video/queue`` happens on the worker), never asks
Venice to delete media, never downloads the video body, and does nothing to the job in ``cleanup()``
or ``on_kill()``: a trigger that another triggerer took over, or that runs twice for a while, cannot
harm the job. One async client and one pacer of polls (:mod:`.pacing`) are shared by every trigger on
the triggerer's event loop. Its deadline, next poll time and error count are in its keyword arguments,
so a trigger restarted elsewhere keeps its rhythm.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_venice.client import DEFAULT_POLL_POLICY
from airflow_provider_venice.hooks.venice import VeniceHook
from airflow_provider_venice.job import InvalidJobError, VeniceJob, job_from_arguments
from airflow_provider_venice.lifecycle.poll import DEFERRAL_GRACE_S, Poller
from airflow_provider_venice.triggers.pacing import shared_pacer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# Without a deadline and without Airflow's ``timeout_after`` (a trigger built by hand): wait a week.
DEFAULT_WAIT_S = 7 * 24 * 3600.0
# A waiting job's progress is logged at most this often (errors always are).
PROGRESS_LOG_EVERY_S = 300.0
JOB_FIELDS = ("job", "model", "queue_id", "download_url", "quote_usd", "request_fingerprint")


def is_template(value: Any) -> bool:
    """Whether ``value`` is a Jinja template still to be rendered (by the triggerer)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


class VeniceVideoTrigger(BaseTrigger):
    """Poll ``/video/retrieve`` until the job is done, failed, or ``deadline`` (epoch seconds) passes.

    Fires exactly one event: ``{"status": "success" | "error" | "timeout", "message", "model", "queue_id",
    "download_url", "quote_usd", "request_fingerprint", "execution_duration_ms"}``; an error that a retry
    may get past (the connection could not be looked up) also carries ``"retryable": True``.

    Started straight from the scheduler (``VeniceVideoSensor(start_from_trigger=True)``, Airflow 3.3),
    the job's fields may be templates that the triggerer renders natively before ``run()``, under the
    sensor's own field names (``job``, ``model``, ``queue_id``, ``download_url``, ``venice_conn_id``);
    they are checked when the trigger runs. Without a ``deadline`` it waits until Airflow's timeout for
    the deferral less a grace period, an absolute time that survives restarts.
    """

    # Templated fields render to native values: ``{{ ti.xcom_pull(task_ids='queue') }}`` is the job's dict
    # and a missing ``download_url`` stays None (Airflow 3.2+; 3.1 cannot start a task from a trigger).
    render_template_as_native_obj = True

    def __init__(
        self,
        *,
        model: str | None = None,
        queue_id: str | None = None,
        deadline: float | None = None,
        download_url: str | None = None,
        quote_usd: float | None = None,
        request_fingerprint: str | None = None,
        venice_conn_id: str = VeniceHook.default_conn_name,
        next_poll_at: float = 0.0,
        window_interval_s: float = DEFAULT_POLL_POLICY.window_interval_s,
        errors_in_row: int = 0,
        job: Any = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.job = job
        self.model = model
        self.queue_id = queue_id
        self.download_url = download_url
        self.quote_usd = quote_usd
        self.request_fingerprint = request_fingerprint
        self.deadline = None if deadline is None else float(deadline)
        self.venice_conn_id = venice_conn_id
        self.next_poll_at = float(next_poll_at)
        self.window_interval_s = float(window_interval_s)
        self.errors_in_row = int(errors_in_row)
        if not any(is_template(getattr(self, name)) for name in (*JOB_FIELDS, "venice_conn_id")):
            self.watched_job()  # plain values: refuse what is not a job now, naming the field

    @classmethod
    def watching(cls, poller: Poller, delay_s: float, venice_conn_id: str) -> VeniceVideoTrigger:
        """Carry on with ``poller`` in the triggerer, looking again in ``delay_s`` seconds."""
        return cls(
            **poller.job.to_xcom(),
            **poller.state(),
            venice_conn_id=venice_conn_id,
            next_poll_at=time.time() + delay_s,
        )

    @classmethod
    def classpath(cls) -> str:
        """Return the import path the triggerer loads this class from."""
        return f"{cls.__module__}.{cls.__qualname__}"

    def watched_job(self) -> VeniceJob:
        """Return the job watched, from ``job`` or its fields; raises :class:`InvalidJobError`."""
        job = job_from_arguments(self.job, self.model, self.queue_id, self.download_url, self.quote_usd)
        if self.job is None and self.request_fingerprint is not None:
            return VeniceJob(**{**job.to_xcom(), "request_fingerprint": self.request_fingerprint})
        return job

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the import path and plain-JSON keyword arguments that rebuild this trigger."""
        kwargs: dict[str, Any] = {name: getattr(self, name) for name in JOB_FIELDS if name != "job"}
        if self.job is not None:
            kwargs["job"] = self.job
        return (
            self.classpath(),
            {
                **kwargs,
                "deadline": self.deadline,
                "venice_conn_id": self.venice_conn_id,
                "next_poll_at": self.next_poll_at,
                "window_interval_s": self.window_interval_s,
                "errors_in_row": self.errors_in_row,
            },
        )

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render as Airflow 3.3's triggerer does; ids that rendered to numbers (``"123"``) stay text."""
        super().render_template_fields(context, jinja_env)
        for name in ("model", "queue_id", "venice_conn_id"):
            value = getattr(self, name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                setattr(self, name, str(value))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait for the job and yield exactly one event."""
        yield TriggerEvent(await self._wait())  # type: ignore[no-untyped-call]

    async def cleanup(self) -> None:
        """Release nothing: the shared client outlives triggers, and the Venice job is never touched."""

    async def on_kill(self) -> None:
        """Leave the Venice job alone.

        Airflow 3.3.2 also calls ``on_kill`` when a stalled triggerer loses its triggers to another one
        (apache/airflow#73454), and a job already paid for is best left to finish: a later try resumes it.
        """
        watched = self.queue_id or (self.job.get("queue_id") if isinstance(self.job, dict) else None)
        self.log.info("Venice job %s is left as it is (nothing is cancelled).", watched)

    async def _wait(self) -> dict[str, Any]:
        try:
            job = self.watched_job()
        except InvalidJobError as exc:
            return self._event("error", f"VeniceVideoTrigger was not given a Venice job: {exc}", None)
        poller = Poller(job, self._deadline(), self.window_interval_s, self.errors_in_row)
        try:
            client = await VeniceHook(self.venice_conn_id).aget_client()
        except Exception as exc:  # a lookup can fail for a moment (API server, secrets backend): retryable
            message = (
                f"cannot use connection {self.venice_conn_id!r} to watch Venice job {job.queue_id}: {exc}"
            )
            return {**self._event("error", message, poller), "retryable": True}
        pacer, progress = shared_pacer(), ProgressLog()
        while True:
            await asyncio.sleep(max(0.0, min(self.next_poll_at, poller.deadline) - time.time()))
            await pacer.turn()
            decision = await poller.acheck(client)
            if decision.action == "done":
                return self._event("success", "video ready", poller)
            if decision.action == "failed":
                return self._event("error", str(poller.failure(decision.message)), poller)
            if poller.past_deadline():
                return self._event("timeout", str(poller.timeout()), poller)
            recovered = self.errors_in_row > 0 and poller.errors_in_row == 0
            self.next_poll_at = time.time() + decision.delay_s
            self.errors_in_row = poller.errors_in_row
            if progress.worth_logging(decision.status is None or recovered):
                self.log.info(
                    "Venice job %s: %s; next check in %.0fs.",
                    job.queue_id,
                    decision.message,
                    decision.delay_s,
                )

    def _deadline(self) -> float:
        if self.deadline is None:
            timeout_after = getattr(self, "timeout_after", None)  # set by the triggerer from the deferral
            if timeout_after is not None:
                if timeout_after.tzinfo is None:  # Airflow keeps it in UTC; a naive one is read as UTC
                    timeout_after = timeout_after.replace(tzinfo=UTC)
                self.deadline = timeout_after.timestamp() - DEFERRAL_GRACE_S
            else:
                self.deadline = time.time() + DEFAULT_WAIT_S
        return self.deadline

    def _event(self, status: str, message: str, poller: Poller | None) -> dict[str, Any]:
        if poller is None:
            fields = {name: _plain(getattr(self, name)) for name in JOB_FIELDS if name != "job"}
        else:
            fields = poller.job.to_xcom()
        duration = poller.execution_duration_ms if poller else None
        return {"status": status, "message": message, **fields, "execution_duration_ms": duration}


class ProgressLog:
    """When a waiting trigger writes a line: the first look, every error, otherwise every few minutes.

    Each line a trigger logs wakes the triggerer's supervisor loop, and every wake-up queries the
    metadata database, so a line per poll from thousands of waiting jobs becomes a steady database load.
    """

    def __init__(self, every_s: float = PROGRESS_LOG_EVERY_S, clock: Any = time.monotonic) -> None:
        self.every_s, self._clock = every_s, clock
        self._last: float | None = None

    def worth_logging(self, news: bool) -> bool:
        """Whether to log this look at the job (``news``: an error, or the first answer after errors)."""
        now = self._clock()
        if news or self._last is None or now - self._last >= self.every_s:
            self._last = now
            return True
        return False


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | float) else str(value)[:200]
