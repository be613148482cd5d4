"""pytest fixtures for the emulator.

Enable with ``pytest_plugins = ["airflow_provider_venice.testing.pytest_plugin"]`` in a
``conftest.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_venice.testing.emulator import VeniceEmulator
from airflow_provider_venice.testing.server import run_emulator

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_venice.testing.server import EmulatorServer


@pytest.fixture
def venice_emulator() -> VeniceEmulator:
    """Provide a fresh in-process emulator; use its ``sync_transport()`` / ``async_transport()``."""
    return VeniceEmulator()


@pytest.fixture
def venice_emulator_server() -> Iterator[EmulatorServer]:
    """Serve a fresh emulator on a free loopback port, stopped at teardown."""
    with run_emulator() as server:
        yield server
