"""VeniceVideoTrigger: waits in the triggerer until a Venice job has finished.

It only ever reads ``/video/retrieve`` (the paid ``/video/queue`` happens on the worker), never asks
Venice to delete media, never downloads the video body, and does nothing in cleanup: a trigger that
another triggerer took over, or that runs twice for a while, cannot harm the job. One async client is
shared by every trigger on the triggerer's event loop. Its deadline, next poll time and error count
are in its keyword arguments, so a trigger restarted elsewhere keeps its rhythm.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_venice.client import DEFAULT_POLL_POLICY
from airflow_provider_venice.hooks.venice import VeniceHook
from airflow_provider_venice.job import VeniceJob
from airflow_provider_venice.lifecycle.poll import Poller

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class VeniceVideoTrigger(BaseTrigger):
    """Poll ``/video/retrieve`` until the job is done, failed, or ``deadline`` (epoch seconds) passes.

    Fires exactly one event: ``{"status": "success" | "error" | "timeout", "message", "model", "queue_id",
    "download_url", "quote_usd", "request_fingerprint", "execution_duration_ms"}``; an error that a retry
    may get past (the connection could not be looked up) also carries ``"retryable": True``.
    """

    def __init__(
        self,
        *,
        model: str,
        queue_id: str,
        deadline: float,
        download_url: str | None = None,
        quote_usd: float | None = None,
        request_fingerprint: str | None = None,
        venice_conn_id: str = VeniceHook.default_conn_name,
        next_poll_at: float = 0.0,
        window_interval_s: float = DEFAULT_POLL_POLICY.window_interval_s,
        errors_in_row: int = 0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.job = VeniceJob(model, queue_id, download_url, quote_usd, request_fingerprint)
        self.deadline = float(deadline)
        self.venice_conn_id = venice_conn_id
        self.next_poll_at = float(next_poll_at)
        self.window_interval_s = float(window_interval_s)
        self.errors_in_row = int(errors_in_row)

    @classmethod
    def watching(cls, poller: Poller, delay_s: float, venice_conn_id: str) -> VeniceVideoTrigger:
        """Carry on with ``poller`` in the triggerer, looking again in ``delay_s`` seconds."""
        return cls(
            **poller.job.to_xcom(),
            **poller.state(),
            venice_conn_id=venice_conn_id,
            next_poll_at=time.time() + delay_s,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the import path and plain-JSON keyword arguments that rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **self.job.to_xcom(),
                "deadline": self.deadline,
                "venice_conn_id": self.venice_conn_id,
                "next_poll_at": self.next_poll_at,
                "window_interval_s": self.window_interval_s,
                "errors_in_row": self.errors_in_row,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait for the job and yield exactly one event."""
        yield TriggerEvent(await self._wait())  # type: ignore[no-untyped-call]

    async def _wait(self) -> dict[str, Any]:
        poller = Poller(self.job, self.deadline, self.window_interval_s, self.errors_in_row)
        try:
            client = await VeniceHook(self.venice_conn_id).aget_client()
        except Exception as exc:  # a lookup can fail for a moment (API server, secrets backend): retryable
            job, conn = self.job.queue_id, self.venice_conn_id
            message = f"cannot use connection {conn!r} to watch Venice job {job}: {exc}"
            return {**self._event("error", message, poller), "retryable": True}
        while True:
            await asyncio.sleep(max(0.0, min(self.next_poll_at, self.deadline) - time.time()))
            decision = await poller.acheck(client)
            if decision.action == "done":
                return self._event("success", "video ready", poller)
            if decision.action == "failed":
                return self._event("error", str(poller.failure(decision.message)), poller)
            if poller.past_deadline():
                return self._event("timeout", str(poller.timeout()), poller)
            self.next_poll_at = time.time() + decision.delay_s
            self.errors_in_row = poller.errors_in_row
            self.log.info(
                "Venice job %s: %s; next check in %.0fs.",
                self.job.queue_id,
                decision.message,
                decision.delay_s,
            )

    def _event(self, status: str, message: str, poller: Poller) -> dict[str, Any]:
        return {
            "status": status,
            "message": message,
            **self.job.to_xcom(),
            "execution_duration_ms": poller.execution_duration_ms,
        }
