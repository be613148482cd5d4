"""VeniceVideoTrigger: waits in the triggerer until a Venice job has finished.

It only ever reads ``/video/retrieve`` (the paid ``/video/queue`` happens on the worker), never asks
Venice to delete media, and never downloads the video body. One async client is shared by every
trigger on the triggerer's event loop. Its deadline and next poll time are absolute, so a trigger
restarted on another triggerer keeps both.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_venice.client import (
    DEFAULT_POLL_POLICY,
    PollPolicy,
    VeniceError,
    decide_next_poll,
)
from airflow_provider_venice.hooks.venice import VeniceHook

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_provider_venice.client import AsyncVeniceClient, JobStatus


class VeniceVideoTrigger(BaseTrigger):
    """Poll ``/video/retrieve`` until the job is done, failed, or ``deadline`` (epoch seconds) passes.

    Fires exactly one event: ``{"status": "success" | "error" | "timeout", "model", "queue_id",
    "download_url", "execution_duration_ms", "message"}``.
    """

    def __init__(
        self,
        *,
        model: str,
        queue_id: str,
        deadline: float,
        download_url: str | None = None,
        venice_conn_id: str = VeniceHook.default_conn_name,
        next_poll_at: float = 0.0,
        window_interval_s: float = DEFAULT_POLL_POLICY.window_interval_s,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.model = model
        self.queue_id = queue_id
        self.deadline = float(deadline)
        self.download_url = download_url
        self.venice_conn_id = venice_conn_id
        self.next_poll_at = float(next_poll_at)
        self.window_interval_s = float(window_interval_s)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the import path and plain-JSON keyword arguments that rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "model": self.model,
                "queue_id": self.queue_id,
                "deadline": self.deadline,
                "download_url": self.download_url,
                "venice_conn_id": self.venice_conn_id,
                "next_poll_at": self.next_poll_at,
                "window_interval_s": self.window_interval_s,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait for the job and yield exactly one event."""
        yield TriggerEvent(await self._wait())  # type: ignore[no-untyped-call]

    async def _wait(self) -> dict[str, Any]:
        try:
            client = await VeniceHook(self.venice_conn_id).aget_client()
        except Exception as exc:  # a missing connection raises Airflow's own error, not ours
            return self._event("error", f"cannot use connection {self.venice_conn_id!r}: {exc}")
        policy = PollPolicy(window_interval_s=self.window_interval_s)
        errors_in_row = 0
        last: JobStatus | None = None
        while True:
            await asyncio.sleep(max(0.0, min(self.next_poll_at, self.deadline) - time.time()))
            observed = await _observe(client, self.model, self.queue_id)
            decision = decide_next_poll(observed, errors_in_row=errors_in_row, policy=policy)
            if not isinstance(observed, VeniceError) and observed.state == "processing":
                last = observed
            if decision.action == "done":
                return self._event("success", "video ready", last)
            if decision.action == "failed":
                return self._event("error", f"Venice job {self.queue_id} failed: {decision.message}", last)
            errors_in_row = errors_in_row + 1 if isinstance(observed, VeniceError) else 0
            if time.time() >= self.deadline:
                return self._event(
                    "timeout", f"Venice job {self.queue_id} still unfinished at the deadline", last
                )
            self.next_poll_at = time.time() + decision.delay_s
            self.log.info(
                "Venice job %s: %s; next check in %.0fs.", self.queue_id, decision.message, decision.delay_s
            )

    def _event(self, status: str, message: str, last: JobStatus | None = None) -> dict[str, Any]:
        return {
            "status": status,
            "message": message,
            "model": self.model,
            "queue_id": self.queue_id,
            "download_url": self.download_url,
            "execution_duration_ms": last.execution_duration_ms if last else None,
        }


async def _observe(client: AsyncVeniceClient, model: str, queue_id: str) -> JobStatus | VeniceError:
    try:
        return await client.retrieve_status(model, queue_id)
    except VeniceError as exc:
        return exc
