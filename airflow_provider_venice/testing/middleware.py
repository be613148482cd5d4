"""ASGI middleware around the API: call log, fault plan, bearer auth and rate-limit headers.

Requests under ``/_emulator/`` pass straight through and are not logged.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import anyio
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse, Response

from airflow_provider_venice.testing.admin import ADMIN_PREFIX
from airflow_provider_venice.testing.errors import DropConnection
from airflow_provider_venice.testing.faults import API_PREFIX
from airflow_provider_venice.testing.state import MEDIA_PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from airflow_provider_venice.testing.faults import Fault
    from airflow_provider_venice.testing.state import EmulatorState

LOGGED_BODY_LIMIT = 1024 * 1024
_BEARER = re.compile(r"bearer\s+(\S+)", re.IGNORECASE)


class _Cut(Exception):
    """A truncating fault has sent as much of the body as it lets through."""


class _Call:
    """One request as it goes into the call log."""

    def __init__(self, scope: Scope, now: float) -> None:
        self.path: str = scope["path"]
        self.entry: dict[str, Any] = {
            "time": now,
            "method": scope["method"],
            "path": self.path,
            "query": scope.get("query_string", b"").decode("latin-1"),
            "status": None,
            "body": None,
            "body_bytes": 0,
        }
        headers = Headers(scope=scope)
        accept = headers.getlist("accept")
        self.entry["accept"] = ", ".join(accept) if accept else None  # what the client asked for
        authorization = headers.get("authorization")
        if self.path.startswith(MEDIA_PREFIX + "/") and authorization is not None:
            self.entry["authorization"] = authorization  # to prove no API key is sent to download_url
        self._body = bytearray()
        self.recorded = False

    def add_body(self, chunk: bytes) -> None:
        self.entry["body_bytes"] += len(chunk)
        if len(self._body) + len(chunk) <= LOGGED_BODY_LIMIT:
            self._body += chunk

    def finish(self) -> dict[str, Any]:
        if self._body and len(self._body) == self.entry["body_bytes"]:
            try:
                self.entry["body"] = json.loads(self._body)
            except ValueError:
                self.entry["body"] = self._body.decode("utf-8", "replace")
        return self.entry


class EmulatorMiddleware:
    """Applies faults, checks the bearer key on ``/api/v1`` and records every request."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request through the fault plan, auth check and call log."""
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        call = _Call(scope, self.state.clock.now())
        fault = self.state.faults.take(call.path, scope["method"])
        if fault is not None:
            call.entry["fault"] = fault.kind
        try:
            await self._handle(scope, receive, send, call, fault)
        finally:
            self._record(call)

    def _record(self, call: _Call) -> None:
        """Log ``call`` once: before its last body message goes out, or when the request ends."""
        if not call.recorded:
            call.recorded = True
            self.state.record_call(call.finish())

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, call: _Call, fault: Fault | None
    ) -> None:
        if fault is not None and fault.latency_s is not None:
            await anyio.sleep(fault.latency_s)

        async def receive_logged() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                call.add_body(message.get("body", b""))
            return message

        if fault is not None and fault.action == "drop_before":
            # Read the request first: closing a socket with unread bytes sends a reset (ECONNRESET)
            # instead of the plain disconnect this fault promises.
            while (message := await receive_logged())["type"] == "http.request" and message.get("more_body"):
                pass
            raise DropConnection()

        send_faulty = _FaultySend(send, call, fault, self._extra_headers(call.path), self._record)
        app = self._response_for(scope, fault) or self.app
        cut = False
        try:
            await app(scope, receive_logged, send_faulty)
        except* _Cut:
            cut = True
        if cut:
            raise DropConnection(flush=True)
        if fault is not None and fault.action == "drop_after":
            raise DropConnection()

    def _extra_headers(self, path: str) -> list[tuple[bytes, bytes]]:
        if not path.startswith(API_PREFIX + "/"):
            return []
        headers = self.state.rate_limit_headers()
        return [(name.encode(), value.encode()) for name, value in headers.items()]

    def _response_for(self, scope: Scope, fault: Fault | None) -> Response | None:
        """Return the response replacing the app's: a scripted status, or a 401."""
        if fault is not None and fault.status is not None:
            headers = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
            body = fault.error_body()
            if isinstance(body, str):
                return PlainTextResponse(body, fault.status, headers)
            return JSONResponse(body, fault.status, headers)
        if not scope["path"].startswith(API_PREFIX + "/"):
            return None
        match = _BEARER.fullmatch(Headers(scope=scope).get("authorization", ""))
        if match is None:
            message = "Authentication failed: send the header 'Authorization: Bearer <API key>'"
            return JSONResponse({"error": message}, 401)
        if match.group(1) == self.state.config.invalid_key:
            return JSONResponse({"error": "Authentication failed: invalid API key"}, 401)
        return None


class _FaultySend:
    """Passes messages on, adding headers and logging the status; drops or cuts per the fault."""

    def __init__(
        self,
        send: Send,
        call: _Call,
        fault: Fault | None,
        headers: list[tuple[bytes, bytes]],
        record: Callable[[_Call], None],
    ) -> None:
        self._send = send
        self._call = call
        self._headers = headers
        self._action = fault.action if fault is not None else None
        self._budget = 0
        self._record = record

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._call.entry["status"] = message["status"]
            message = {**message, "headers": [*message.get("headers", []), *self._headers]}
            self._budget = _content_length(message) // 2
        if self._action == "drop_after":
            return
        if self._action == "truncate" and message["type"] == "http.response.body":
            body: bytes = message.get("body", b"")
            if len(body) >= self._budget:
                await self._send(
                    {"type": "http.response.body", "body": body[: self._budget], "more_body": True}
                )
                raise _Cut()
            self._budget -= len(body)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self._record(self._call)  # logged before the client can see the end of the response
        await self._send(message)


def _content_length(message: Message) -> int:
    for name, value in message.get("headers", []):
        if name.lower() == b"content-length":
            return int(value)
    return 0
