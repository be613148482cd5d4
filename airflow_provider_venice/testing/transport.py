"""httpx transports that run the emulator's ASGI app in-process, without a socket.

Both buffer each response body in memory (``httpx.ASGITransport`` does), so use the socket
server (:func:`~airflow_provider_venice.testing.server.run_emulator`) for very large videos. A
dropped connection surfaces as ``httpx.RemoteProtocolError`` when the request is sent; a truncated
body does too, instead of partway through reading it as over a socket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio.from_thread
import httpx

from airflow_provider_venice.testing.errors import DropConnection

if TYPE_CHECKING:
    from starlette.types import ASGIApp


class AsyncEmulatorTransport(httpx.ASGITransport):
    """``httpx.ASGITransport`` that turns an emulated dropped connection into a transport error."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Run the app for ``request``; a drop raises ``httpx.RemoteProtocolError``."""
        try:
            return await super().handle_async_request(request)
        except DropConnection as exc:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a complete response.", request=request
            ) from exc


class SyncEmulatorTransport(httpx.BaseTransport):
    """A transport for sync ``httpx.Client``: runs the app on an event loop in a helper thread."""

    def __init__(self, app: ASGIApp) -> None:
        self._transport = AsyncEmulatorTransport(app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to the app and return the buffered response."""
        content = request.read()

        async def call() -> tuple[int, httpx.Headers, bytes]:
            inner = httpx.Request(request.method, request.url, headers=request.headers, content=content)
            response = await self._transport.handle_async_request(inner)
            return response.status_code, response.headers, await response.aread()

        with anyio.from_thread.start_blocking_portal() as portal:
            status, headers, body = portal.call(call)
        return httpx.Response(status, headers=headers, content=body, request=request)
