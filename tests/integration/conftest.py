"""Integration fixtures: a temporary AIRFLOW_HOME migrated once per session, and the emulator on a socket.

DAGs under ``dags/`` run with ``airflow dags test`` in a subprocess (one process, triggers inline, the
task state store available) against the emulator served on a free loopback port by this process, so
the test reads the emulator's call log directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_venice.testing import EmulatorServer, run_emulator

DAGS = Path(__file__).resolve().parent / "dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
JOB_SECONDS = 3.0
RUN_TIMEOUT_S = 180


@dataclass
class DagRun:
    """What ``airflow dags test`` did: its exit status and its output."""

    returncode: int
    output: str

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and "state=success" in self.output

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a fresh AIRFLOW_HOME whose metadata database was migrated once."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_HOME"))
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
    )
    result = subprocess.run(
        [AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return env


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    """The emulator over a real socket on 127.0.0.1 (free port), jobs taking a few seconds."""
    with run_emulator("127.0.0.1", 0, job_seconds=JOB_SECONDS) as server:
        yield server


@pytest.fixture
def dags_test(airflow_env: dict[str, str], emulator: EmulatorServer) -> Any:
    """Run ``airflow dags test <dag_id>`` with ``venice_default`` pointing at the emulator."""

    def run(dag_id: str, **env: str) -> DagRun:
        connection = {"conn_type": "venice", "host": emulator.base_url, "password": "it-api-key"}
        full_env = {**airflow_env, "AIRFLOW_CONN_VENICE_DEFAULT": json.dumps(connection), **env}
        result = subprocess.run(
            [AIRFLOW, "dags", "test", dag_id],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
        return DagRun(result.returncode, result.stdout + result.stderr)

    return run
