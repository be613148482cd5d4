"""Run the DAGs in ``dags/`` offline: the Venice emulator, a local S3 and a throwaway Airflow home.

Airflow reads its configuration when it is first imported, so the environment is set here, at the top
of the first conftest pytest loads, before any test module imports Airflow.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))

# Nothing from your shell (or your real Airflow deployment) leaks into the tests.
for name in list(os.environ):
    if name.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")) or name == "AIRFLOW_CONFIG":
        del os.environ[name]
os.environ.update(
    AIRFLOW_HOME=str(AIRFLOW_HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(PROJECT / "dags"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
)

# The fixtures venice_emulator_server (the Venice API on a free local port) and venice_s3_server
# (moto's S3 server on a free local port), from `pip install airflow-provider-venice[testing]`.
pytest_plugins = ["airflow_provider_venice.testing.pytest_plugin"]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Delete the throwaway Airflow home when the test session ends."""
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def airflow_db() -> None:
    """Create Airflow's metadata database (SQLite, in the throwaway home) once per test session."""
    from airflow.utils import db

    db.initdb()


@pytest.fixture
def airflow_connections(venice_emulator_server, venice_s3_server, monkeypatch) -> None:
    """Point the ``venice_default`` and ``aws_default`` connections at the emulator and the local S3."""
    venice_emulator_server.configure(job_seconds=2)  # a video takes 2 s here, not a minute
    venice = {"conn_type": "venice", "host": venice_emulator_server.base_url, "password": "test-api-key"}
    aws = {
        "conn_type": "aws",
        "login": "testing",  # any key works against the local S3
        "password": "testing",
        "extra": {"endpoint_url": venice_s3_server.endpoint_url, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", json.dumps(venice))
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(aws))
