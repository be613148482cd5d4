"""pytest fixtures for the emulator and a local S3.

Enable with ``pytest_plugins = ["airflow_provider_venice.testing.pytest_plugin"]`` in a
``conftest.py``. ``venice_s3_server`` needs the ``testing`` extra
(``pip install 'airflow-provider-venice[testing]'``); moto and boto3 are imported only when it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_venice.testing.emulator import VeniceEmulator
from airflow_provider_venice.testing.s3 import S3ServerUnavailableError, start_local_s3
from airflow_provider_venice.testing.server import run_emulator

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_venice.testing.s3 import S3Server
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


@pytest.fixture(scope="session")
def _venice_s3_process() -> Iterator[S3Server]:
    """One moto S3 server per test session (starting one takes about a second)."""
    try:
        server = start_local_s3()
    except S3ServerUnavailableError as exc:
        pytest.fail(f"venice_s3_server: {exc}", pytrace=False)
    with server:
        yield server


@pytest.fixture
def venice_s3_server(_venice_s3_process: S3Server) -> S3Server:
    """Provide a local S3-compatible server (moto) on a free 127.0.0.1 port, emptied for each test.

    Point an ``aws`` connection at ``venice_s3_server.endpoint_url``; ``create_bucket(name)`` and
    ``client()`` (boto3) set it up and inspect it. The server process is stopped at the end of the
    session. Fails with the extra to install when moto's server is missing.
    """
    _venice_s3_process.reset()
    return _venice_s3_process
