"""The emulator served over a real socket by uvicorn in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from airflow_provider_venice.testing.emulator import EmulatorControls, VeniceEmulator
from airflow_provider_venice.testing.errors import DropConnection

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Iterator

    from starlette.types import Receive, Scope, Send
    from uvicorn.server import ServerState

_START_TIMEOUT_S = 10.0


class _DroppingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing the socket when the app raises ``DropConnection``.

    ``abort()`` drops the connection at once; with ``flush`` (a truncated body) ``close()``
    first delivers what was already written.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        inner = self.app

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            try:
                await inner(scope, receive, send)
            except DropConnection as exc:
                if self.cycle is not None:
                    self.cycle.disconnected = True
                if exc.flush:
                    self.transport.close()
                else:
                    self.transport.abort()

        self.app = app


class EmulatorServer(EmulatorControls):
    """A running emulator on ``host``: ``base_url``, ``admin_url``, ``emulator`` and ``state``."""

    def __init__(self, emulator: VeniceEmulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        self.state = emulator.state
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.create_server((host, port), family=family)
        bound_host, bound_port = self._socket.getsockname()[:2]
        url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.root_url = f"http://{url_host}:{bound_port}"
        self.base_url = f"{self.root_url}/api/v1"
        self.admin_url = f"{self.root_url}/_emulator"
        config = uvicorn.Config(
            emulator.app, http=_DroppingH11Protocol, lifespan="off", access_log=False, log_config=None,
            log_level="warning",
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> None:
        """Start serving; returns once the server accepts requests."""
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Venice emulator server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving and wait for the server thread to end."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join()
        self._socket.close()

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def run_emulator(host: str = "127.0.0.1", port: int = 0, **config: Any) -> Iterator[EmulatorServer]:
    """Serve a new emulator (``config``: :class:`EmulatorConfig` fields) on a free port meanwhile."""
    with EmulatorServer(VeniceEmulator(**config), host, port) as server:
        yield server
