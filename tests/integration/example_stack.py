"""The example DAGs' stack: the emulator, an S3 server and an Airflow home wired together, and its checks.

Used by the example-DAG runs (``test_example_dags_run.py``, on this virtualenv's Airflow) and by the
wheel test (``tests/dist``, on a clean virtual environment's Airflow and ``venice-emulator``). The
emulator and the S3-compatible server (moto, from this virtualenv) run as separate processes on free
loopback ports and are stopped by pid when the stack closes.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx

from airflow_provider_venice.testing.processes import start_emulator_process, start_s3_server
from tests.integration.delivery_checks import all_keys, assert_delivered, delivery_keys, video_keys
from tests.integration.s3_fixtures import aws_connection, server_s3_client

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

BUCKET = "venice-videos"
RUN_TIMEOUT_S = 600


@contextmanager
def example_stack(
    home: Path,
    *,
    airflow: str,
    dags_folder: Path,
    base_env: dict[str, str],
    cwd: Path | None = None,
    emulator_command: Sequence[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Start the emulator and an S3 server, create the bucket, migrate a fresh Airflow home in ``home``.

    ``airflow`` is the CLI that runs the DAGs from ``dags_folder`` (in ``cwd``, with ``base_env`` and the
    stack's variables); ``emulator_command`` the emulator to start (default: this interpreter's). Yields the
    stack: ``env``, ``emulator`` (its root URL), ``s3`` (a client), ``airflow`` and ``cwd``.
    """
    env = {
        **base_env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "VENICE_VIDEO_BUCKET": BUCKET,
    }
    with (
        start_emulator_process("--job-seconds", "3", env=env, command=emulator_command) as emulator,
        start_s3_server(env=env) as s3,
    ):
        env["AIRFLOW_CONN_VENICE_DEFAULT"] = json.dumps(
            {"conn_type": "venice", "password": "example-key", "host": emulator.url}
        )
        env["AIRFLOW_CONN_AWS_DEFAULT"] = aws_connection(s3.url)
        client = server_s3_client(s3.url)
        client.create_bucket(Bucket=BUCKET)
        migrated = subprocess.run(
            [airflow, "db", "migrate"], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
        )
        assert migrated.returncode == 0, (migrated.stdout + migrated.stderr)[-5000:]
        yield {
            "env": env,
            "emulator": emulator.url.removesuffix("/api/v1"),
            "s3": client,
            "airflow": airflow,
            "cwd": cwd,
        }


def run_dag(stack: dict[str, Any], dag_id: str, **emulator_config: Any) -> list[dict[str, Any]]:
    """Run one DAG with ``airflow dags test`` after resetting the emulator; return the calls it made."""
    httpx.post(f"{stack['emulator']}/_emulator/reset", json=emulator_config).raise_for_status()
    result = subprocess.run(
        [stack["airflow"], "dags", "test", dag_id],
        env=stack["env"],
        cwd=stack["cwd"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "state=success" in output, output[-5000:]
    calls: list[dict[str, Any]] = httpx.get(f"{stack['emulator']}/_emulator/calls").json()["calls"]
    return calls


def call_counts(calls: list[dict[str, Any]]) -> Counter[tuple[str, str, int]]:
    """How many calls of each ``(method, path, status)`` the emulator saw (downloads as ``media``)."""
    return Counter(
        (call["method"], call["path"].split("/_media/")[0] or "media", call["status"]) for call in calls
    )


def dag_keys(stack: dict[str, Any], dag_id: str) -> set[str]:
    """Every object under ``videos/<dag_id>/`` in the bucket."""
    return set(all_keys(stack["s3"], BUCKET, f"videos/{dag_id}/"))


def assert_example_delivered(
    stack: dict[str, Any], dag_id: str, calls: list[dict[str, Any]], videos: int, before: set[str]
) -> list[str]:
    """``videos`` new videos under ``videos/<dag_id>/``, each with its matching manifest, its poster and its
    job completed; nothing else new there."""
    s3 = stack["s3"]
    keys = [key for key in video_keys(s3, BUCKET, f"videos/{dag_id}/") if key not in before]
    assert len(keys) == videos, keys
    assert dag_keys(stack, dag_id) - before == set(delivery_keys(*keys))  # each with its manifest and poster
    completed = {call["body"]["queue_id"] for call in calls if call["path"].endswith("/video/complete")}
    delivered = set()
    for key in keys:
        queue_id = s3.head_object(Bucket=BUCKET, Key=key)["Metadata"]["venice-queue-id"]
        assert_delivered(s3, BUCKET, key, queue_id)
        delivered.add(queue_id)
    assert delivered == completed
    return keys
