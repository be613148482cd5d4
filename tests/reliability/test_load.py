"""Load: 200 mapped generate tasks through ``airflow dags test`` while ~10 % of queue and retrieve calls
fail with 429/503 (the emulator's seeded probability faults): 200 videos in S3, each with its manifest
and its poster, exactly 200 queue calls that created a job, 200 completes, and no job paid twice.

The emulator and moto's S3 server run as separate processes on free loopback ports; Airflow uses a
temporary AIRFLOW_HOME. Runtime on 2 cores: see docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import boto3
import httpx
import pytest
from reliability_support import delivery_keys, is_companion

from airflow_provider_venice.testing.processes import start_emulator_process, start_s3_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAGS = Path(__file__).resolve().parent / "dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
BUCKET = "reliability-videos"
COUNT = int(os.environ.get("VENICE_REL_LOAD_N", "200"))
FAULTS = [
    {"endpoint": "/video/queue", "status": 429, "retry_after": 0, "probability": 0.05},
    {"endpoint": "/video/queue", "status": 503, "probability": 0.05},
    {"endpoint": "/video/retrieve", "status": 503, "retry_after": 0, "probability": 0.05},
    {"endpoint": "/video/retrieve", "status": 429, "probability": 0.05},
]


@pytest.mark.timeout(1500)
def test_200_mapped_generations_under_rate_limits_pay_and_deliver_each_once(tmp_path: Path) -> None:
    home = tmp_path / "airflow_home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        VENICE_REL_LOAD_N=str(COUNT),
        VENICE_REL_BUCKET=BUCKET,
    )
    with (
        start_emulator_process("--job-seconds", "0", "--balance", "100000", env=env) as emulator,
        start_s3_server(env=env) as s3_server,
    ):
        root = emulator.url.removesuffix("/api/v1")
        env["AIRFLOW_CONN_VENICE_DEFAULT"] = json.dumps(
            {
                "conn_type": "venice",
                "host": emulator.url,
                "password": "load-key",
                "extra": {"max_retries": 5, "timeout_s": 30},
            }
        )
        env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
            {"conn_type": "aws", "extra": {"endpoint_url": s3_server.url, "region_name": "us-east-1"}}
        )
        s3 = boto3.client(
            "s3",
            endpoint_url=s3_server.url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket=BUCKET)
        migrate = subprocess.run(
            [AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        httpx.post(f"{root}/_emulator/faults", json={"faults": FAULTS}).raise_for_status()

        run = subprocess.run(
            [AIRFLOW, "dags", "test", "venice_rel_load"],
            env=env,
            capture_output=True,
            text=True,
            timeout=1400,
            check=False,
        )
        output = run.stdout + run.stderr
        assert run.returncode == 0, output[-5000:]
        assert "state=success" in output, output[-5000:]

        calls = httpx.get(f"{root}/_emulator/calls").json()["calls"]
        jobs = httpx.get(f"{root}/_emulator/jobs").json()["jobs"]
        paginator = s3.get_paginator("list_objects_v2")
        listed = [
            o["Key"]
            for page in paginator.paginate(Bucket=BUCKET, Prefix="load/")
            for o in page.get("Contents", [])
        ]
        keys = [key for key in listed if not is_companion(key)]
        manifests = {
            key: json.loads(s3.get_object(Bucket=BUCKET, Key=f"{key}.json")["Body"].read())
            for key in keys
            if f"{key}.json" in listed
        }

    by_status = Counter((call["path"], call["status"]) for call in calls)
    faulted = Counter(call["path"] for call in calls if call.get("fault"))
    print(f"calls: {dict(by_status)}; faulted: {dict(faulted)}")
    assert faulted["/api/v1/video/queue"] > 0
    assert faulted["/api/v1/video/retrieve"] > 0
    assert by_status[("/api/v1/video/queue", 200)] == COUNT
    assert len(jobs) == COUNT
    assert len({job["prompt"] for job in jobs}) == COUNT  # one job per map index, none paid twice
    assert by_status[("/api/v1/video/complete", 200)] == COUNT
    assert all(job["media_deleted"] for job in jobs)
    assert len(keys) == COUNT == len(set(keys))
    assert sorted(listed) == delivery_keys(*keys)  # each video, its manifest and its poster, nothing else
    assert len(listed) == 3 * COUNT
    assert {key.rsplit("/", 1)[1] for key in keys} == {f"{index}.mp4" for index in range(COUNT)}
    assert len(manifests) == COUNT
    completed = {call["body"]["queue_id"] for call in calls if call["path"] == "/api/v1/video/complete"}
    assert (
        {manifest["queue_id"] for manifest in manifests.values()}
        == completed
        == {j["queue_id"] for j in jobs}
    )
