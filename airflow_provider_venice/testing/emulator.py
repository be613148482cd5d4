"""The in-process emulator: state, ASGI app and httpx transports in one object."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from airflow_provider_venice.testing.app import create_app
from airflow_provider_venice.testing.faults import parse_faults
from airflow_provider_venice.testing.state import EmulatorState
from airflow_provider_venice.testing.transport import AsyncEmulatorTransport, SyncEmulatorTransport

if TYPE_CHECKING:
    from airflow_provider_venice.testing.config import EmulatorConfig

# https: clients refuse plain http for non-loopback hosts; in-process there is no TLS at all.
IN_PROCESS_URL = "https://venice.test"


class EmulatorControls:
    """Shortcuts to the admin operations, acting on ``self.state`` directly (no HTTP)."""

    state: EmulatorState

    def calls(self) -> list[dict[str, Any]]:
        """Return every logged request, oldest first (admin requests are not logged)."""
        return self.state.calls()

    def jobs(self) -> list[dict[str, Any]]:
        """Return every job, oldest first."""
        return self.state.jobs_snapshot()

    def reset(self, **config: Any) -> None:
        """Forget everything; start again from the initial config plus ``config``."""
        self.state.reset(**config)

    def advance(self, seconds: float) -> None:
        """Move emulated time forward."""
        self.state.advance(seconds)

    def add_faults(self, *faults: dict[str, Any]) -> None:
        """Add faults, each a dict as accepted by ``POST /_emulator/faults``."""
        self.state.faults.add(parse_faults(list(faults)))

    def configure(self, **changes: Any) -> None:
        """Change config at run time (``transcriptions_retired``, ``balance_usd``, ...)."""
        self.state.configure(**changes)


class VeniceEmulator(EmulatorControls):
    """An emulator to use in-process: ``.app`` (ASGI), ``.state`` and httpx transports.

    Point clients at :attr:`base_url` with one of the transports; any host name works.
    """

    base_url = f"{IN_PROCESS_URL}/api/v1"
    admin_url = f"{IN_PROCESS_URL}/_emulator"

    def __init__(self, config: EmulatorConfig | None = None, **changes: Any) -> None:
        self.state = EmulatorState(config, **changes)
        self.app = create_app(self.state)

    def async_transport(self) -> httpx.AsyncBaseTransport:
        """Return a transport for ``httpx.AsyncClient`` (responses are buffered)."""
        return AsyncEmulatorTransport(self.app)

    def sync_transport(self) -> httpx.BaseTransport:
        """Return a transport for ``httpx.Client`` (responses are buffered)."""
        return SyncEmulatorTransport(self.app)

    def client(self, api_key: str = "test-key", **kwargs: Any) -> httpx.Client:
        """Return an ``httpx.Client`` for :attr:`base_url` with a bearer key, over :meth:`sync_transport`."""
        headers = {"Authorization": f"Bearer {api_key}"}
        return httpx.Client(
            base_url=self.base_url, transport=self.sync_transport(), headers=headers, **kwargs
        )

    def async_client(self, api_key: str = "test-key", **kwargs: Any) -> httpx.AsyncClient:
        """Return an ``httpx.AsyncClient`` for :attr:`base_url` with a bearer key."""
        headers = {"Authorization": f"Bearer {api_key}"}
        return httpx.AsyncClient(
            base_url=self.base_url, transport=self.async_transport(), headers=headers, **kwargs
        )
