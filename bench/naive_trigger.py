"""The baseline of the triggerer benchmark: the reference polling loop, as a trigger.

It opens a new ``httpx.AsyncClient`` (and so a new connection pool, TLS context and TCP connection)
for every poll and polls every 5 s whatever Venice says about the expected run time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
from airflow.sdk import BaseHook
from airflow.triggers.base import BaseTrigger, TriggerEvent

POLL_INTERVAL_S = 5.0


class NaiveVideoTrigger(BaseTrigger):
    def __init__(self, *, model: str, queue_id: str, venice_conn_id: str = "venice_default") -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.model = model
        self.queue_id = queue_id
        self.venice_conn_id = venice_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"model": self.model, "queue_id": self.queue_id, "venice_conn_id": self.venice_conn_id},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        conn = await BaseHook.aget_connection(self.venice_conn_id)
        url = f"{conn.host.rstrip('/')}/video/retrieve"
        headers = {"Authorization": f"Bearer {conn.password}"}
        body = {"model": self.model, "queue_id": self.queue_id}
        while True:
            try:
                async with httpx.AsyncClient(timeout=30.0) as client:
                    response = await client.post(url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                self.log.info("Venice job %s: %s; retrying in 5s.", self.queue_id, exc)
            else:
                if response.headers.get("content-type", "").startswith("video/"):
                    yield TriggerEvent({"status": "success", "queue_id": self.queue_id})  # type: ignore[no-untyped-call]
                    return
                status = response.json().get("status") if response.status_code == 200 else None
                if status != "PROCESSING":
                    yield TriggerEvent({"status": "error", "queue_id": self.queue_id})  # type: ignore[no-untyped-call]
                    return
                self.log.info("Venice job %s: processing; next check in 5s.", self.queue_id)
            await asyncio.sleep(POLL_INTERVAL_S)
