"""A mapped VeniceGenerateVideoOperator over five prompts through ``airflow dags test``.

Airflow runs in a child process with a temporary AIRFLOW_HOME migrated once per session (the
``airflow_env`` fixture of this folder's conftest); the emulator and moto's S3 server are child
processes on free loopback ports, stopped by pid at the end. Five prompts must give five objects and
exactly five paid ``/video/queue`` calls and five ``/video/complete`` calls.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from airflow_provider_venice.testing.processes import start_emulator_process
from tests.integration import s3_fixtures
from tests.integration.s3_fixtures import (
    AWS_ENV,
    aws_connection,
    calls_to,
    server_s3_client,
    venice_connection,
)

pytestmark = pytest.mark.integration

s3_server = s3_fixtures.s3_server

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "s3_generate_mapped"
PROMPTS = 5


def test_mapped_generate_delivers_five_videos_paying_five_times(airflow_env, s3_server):
    bucket = f"mapped-{uuid.uuid4().hex[:12]}"
    s3 = server_s3_client(s3_server.url)
    s3.create_bucket(Bucket=bucket)
    emulator = start_emulator_process("--job-seconds", "2")
    try:
        env = {
            **airflow_env,
            **AWS_ENV,
            "AIRFLOW_CONN_VENICE_DEFAULT": venice_connection(emulator.url),
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(s3_server.url),
            "VENICE_S3_IT_BUCKET": bucket,
        }
        run = subprocess.run(
            [AIRFLOW, "dags", "test", DAG_ID],
            env=env,
            capture_output=True,
            text=True,
            timeout=200,
            check=False,
        )
        output = run.stdout + run.stderr
        calls = httpx.get(emulator.url.removesuffix("/api/v1") + "/_emulator/calls").json()["calls"]
    finally:
        emulator.stop()

    assert run.returncode == 0, output[-5000:]
    assert "state=success" in output, output[-5000:]
    objects = s3.list_objects_v2(Bucket=bucket, Prefix="mapped/").get("Contents", [])
    assert sorted(item["Key"] for item in objects) == [f"mapped/{index}.mp4" for index in range(PROMPTS)]
    queued = calls_to(calls, "/video/queue")
    completed = calls_to(calls, "/video/complete")
    assert len(queued) == PROMPTS
    assert len(completed) == PROMPTS
    assert all(call["status"] == 200 for call in queued + completed)
    assert len({call["body"]["prompt"] for call in queued}) == PROMPTS
    assert {call["body"]["queue_id"] for call in completed} == {
        s3.head_object(Bucket=bucket, Key=item["Key"])["Metadata"]["venice-queue-id"] for item in objects
    }
    for item in objects:
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        assert body[4:8] == b"ftyp"
        metadata = s3.head_object(Bucket=bucket, Key=item["Key"])["Metadata"]
        assert hashlib.sha256(body).hexdigest() == metadata["sha256"]
