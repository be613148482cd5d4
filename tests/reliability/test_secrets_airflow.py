"""Secrets through real Airflow runs: ``airflow dags test`` of the example DAGs and of a DAG with failing
tasks, with a recognisable API key. The key must appear in no output, no task log, nothing in the
metadata database (XComs, rendered template fields, task state) and no request to a download_url.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import httpx
import pytest
from reliability_support import SECRET

from airflow_provider_venice.testing.processes import start_emulator_process, start_s3_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
BUCKET = "reliability-videos"


def _files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(path) for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


@pytest.mark.timeout(900)
def test_the_key_leaks_nowhere_in_real_airflow_runs(tmp_path: Path) -> None:
    home, dags = tmp_path / "airflow_home", tmp_path / "dags"
    dags.mkdir()
    for source in [
        *(ROOT / "dags_examples").glob("*.py"),
        Path(__file__).parent / "dags" / "venice_rel_secrets.py",
    ]:
        shutil.copy(source, dags / source.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",  # at DEBUG, Airflow itself logs MaskSecret(value=...)
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        VENICE_VIDEO_BUCKET=BUCKET,
        VENICE_REL_BUCKET=BUCKET,
    )
    outputs: list[str] = []
    with (
        start_emulator_process("--job-seconds", "2", env=env) as emulator,
        start_s3_server(env=env) as s3_server,
    ):
        root = emulator.url.removesuffix("/api/v1")
        env["AIRFLOW_CONN_VENICE_DEFAULT"] = json.dumps(
            {"conn_type": "venice", "host": emulator.url, "password": SECRET, "extra": {"max_retries": 2}}
        )
        env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
            {"conn_type": "aws", "extra": {"endpoint_url": s3_server.url, "region_name": "us-east-1"}}
        )
        s3 = boto3.client(
            "s3", endpoint_url=s3_server.url, aws_access_key_id="test", aws_secret_access_key="test",
            region_name="us-east-1",
        )  # fmt: skip
        s3.create_bucket(Bucket=BUCKET)
        migrate = subprocess.run(
            [AIRFLOW, "db", "migrate"], env=env, capture_output=True, timeout=300, check=False
        )
        assert migrate.returncode == 0, migrate.stderr[-3000:]

        def dags_test(dag_id: str) -> str:
            run = subprocess.run(
                [AIRFLOW, "dags", "test", dag_id],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            outputs.append(run.stdout + run.stderr)
            return outputs[-1]

        assert "state=success" in dags_test("venice_text_to_video")
        assert "state=success" in dags_test("venice_vps_step_by_step")
        failing = dags_test("venice_rel_secrets")
        assert "state=failed" in failing  # it did fail, so its error paths ran
        httpx.post(f"{root}/_emulator/config", json={"invalid_key": SECRET}).raise_for_status()
        rejected = dags_test("venice_text_to_video")  # the key itself is refused: 401 everywhere
        assert "401" in rejected
        assert "state=failed" in rejected
        calls = httpx.get(f"{root}/_emulator/calls").json()["calls"]
        jobs = httpx.get(f"{root}/_emulator/jobs").json()["jobs"]

    leaks = [
        text[max(0, text.find(SECRET) - 1500) : text.find(SECRET) + 200] for text in outputs if SECRET in text
    ]
    assert not leaks, leaks[0] if leaks else ""
    assert _files_containing(home, SECRET.encode()) == []
    # positive controls: what the search covers really holds the runs' data
    database = b"".join(path.read_bytes() for path in home.glob("airflow.db*"))
    assert b"rendered-marker manual__" in database  # the rendered template field is stored there
    assert any(job["queue_id"].encode() in database for job in jobs)  # so are XComs / task state
    assert list((home / "logs").rglob("*.log")) or any("generate" in text for text in outputs)
    media = [call for call in calls if call["path"].startswith("/_media/")]
    assert media
    assert all("authorization" not in call for call in media)
    assert SECRET not in json.dumps(calls)
