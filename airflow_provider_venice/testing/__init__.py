"""An offline emulator of the Venice video API, for tests and for DAG authors.

Three ways to use it:

* in-process: ``VeniceEmulator().sync_transport()`` / ``.async_transport()`` for httpx clients;
* on a free loopback port: ``with run_emulator() as server: server.base_url``, or the pytest
  fixtures in :mod:`airflow_provider_venice.testing.pytest_plugin`;
* from a shell: ``venice-emulator --port 0`` prints its base URL on the first line.

For the operators that deliver to S3, :func:`start_local_s3` (and the ``venice_s3_server`` fixture)
runs moto's S3-compatible server on a free loopback port (the ``testing`` extra).
"""

from __future__ import annotations

from airflow_provider_venice.testing.catalogue import MODELS, VideoModel
from airflow_provider_venice.testing.config import EmulatorConfig
from airflow_provider_venice.testing.emulator import VeniceEmulator
from airflow_provider_venice.testing.errors import ApiError, DropConnection
from airflow_provider_venice.testing.faults import Fault
from airflow_provider_venice.testing.mp4 import Mp4File, Mp4Info, VideoSpec, probe_mp4
from airflow_provider_venice.testing.s3 import S3Server, S3ServerUnavailableError, start_local_s3
from airflow_provider_venice.testing.server import EmulatorServer, run_emulator
from airflow_provider_venice.testing.state import EmulatorState

__all__ = [
    "MODELS",
    "ApiError",
    "DropConnection",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorState",
    "Fault",
    "Mp4File",
    "Mp4Info",
    "S3Server",
    "S3ServerUnavailableError",
    "VeniceEmulator",
    "VideoModel",
    "VideoSpec",
    "probe_mp4",
    "run_emulator",
    "start_local_s3",
]
