"""S3 delivery over real sockets: the emulator and moto's S3 server as child processes.

The emulator (``venice-emulator``) and ``moto_server`` run as separate processes on free loopback ports
and are stopped by pid at the end of the module, also when a test fails. The 300 MB delivery runs in a
child process of its own, which reports its peak RSS growth from ``/proc/self/status``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from airflow.sdk.exceptions import AirflowException

from airflow_provider_venice.testing.processes import ServiceProcess, start_emulator_process
from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator
from tests.integration import s3_fixtures
from tests.integration.s3_fixtures import (
    AWS_ENV,
    MB,
    RESULT_KEYS,
    T2V,
    VPS,
    assert_nothing_left,
    aws_connection,
    calls_to,
    make_context,
    object_sha256,
    queue_job,
    server_s3_client,
    venice_connection,
    venice_paths,
)

pytestmark = pytest.mark.integration

aws_env = s3_fixtures.aws_env
s3_server = s3_fixtures.s3_server

BIG_VIDEO_BYTES = 300_000_000
RSS_GROWTH_LIMIT = 150 * 1024 * 1024
SMALL_VIDEO_BYTES = 20 * MB


@pytest.fixture(scope="module")
def emulator_process() -> Iterator[ServiceProcess]:
    """``venice-emulator`` serving 20 MB videos, jobs finished at once; stopped by pid."""
    process = start_emulator_process("--job-seconds", "0", "--video-bytes", str(SMALL_VIDEO_BYTES))
    try:
        yield process
    finally:
        process.stop()


def admin(emulator: ServiceProcess, path: str) -> str:
    return emulator.url.removesuffix("/api/v1") + "/_emulator" + path


def emulator_calls(emulator: ServiceProcess) -> list[dict[str, Any]]:
    response = httpx.get(admin(emulator, "/calls"))
    response.raise_for_status()
    calls: list[dict[str, Any]] = response.json()["calls"]
    return calls


@pytest.fixture
def wired(
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    emulator_process: ServiceProcess,
    s3_server: ServiceProcess,
) -> tuple[ServiceProcess, Any, str]:
    """Connections to both processes in this process; a fresh bucket; the emulator reset."""
    httpx.post(admin(emulator_process, "/reset"), json={}).raise_for_status()
    monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", venice_connection(emulator_process.url))
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(s3_server.url))
    s3 = server_s3_client(s3_server.url)
    bucket = f"it-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    return emulator_process, s3, bucket


def transfer(job: dict[str, Any], bucket: str, key: str = "videos/out.mp4") -> VeniceVideoToS3Operator:
    return VeniceVideoToS3Operator(
        task_id="to_s3",
        model=job["model"],
        queue_id=job["queue_id"],
        download_url=job["download_url"],
        quote_usd=job["quote_usd"],
        s3_bucket=bucket,
        s3_key=key,
    )


@pytest.mark.parametrize("model", [T2V, VPS])
def test_delivery_over_http(wired, model):
    emulator, s3, bucket = wired
    job = queue_job(emulator.url, model)

    result = transfer(job, bucket).execute(make_context())

    assert set(result) == RESULT_KEYS
    head = s3.head_object(Bucket=bucket, Key="videos/out.mp4")
    assert (result["size_bytes"], result["sha256"]) == object_sha256(s3, bucket, "videos/out.mp4")
    assert result["size_bytes"] == head["ContentLength"] == SMALL_VIDEO_BYTES
    assert head["Metadata"]["sha256"] == result["sha256"]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    calls = emulator_calls(emulator)
    if model == VPS:
        assert venice_paths(calls)[-3:] == ["GET /_media", "DELETE /_media", "POST /api/v1/video/complete"]
        assert all("authorization" not in call for call in calls_to(calls, "/_media"))
        assert calls[-1]["status"] == 400  # taken as done for VPS jobs
    else:
        assert venice_paths(calls)[-2:] == ["POST /api/v1/video/retrieve", "POST /api/v1/video/complete"]
        assert calls[-1]["status"] == 200


@pytest.mark.parametrize("model", [T2V, VPS])
def test_a_body_cut_over_http_leaves_no_object_and_no_upload(wired, model):
    emulator, s3, bucket = wired
    job = queue_job(emulator.url, model)
    endpoint, method = ("/_media", "GET") if model == VPS else ("/video/retrieve", "POST")
    fault = {"endpoint": endpoint, "method": method, "action": "truncate"}
    httpx.post(admin(emulator, "/faults"), json={"faults": [fault]}).raise_for_status()
    op = transfer(job, bucket)
    s3_calls: list[str] = []
    op.s3_hook.get_conn().meta.events.register(
        "after-call.s3", lambda event_name, **_: s3_calls.append(event_name.rsplit(".", 1)[-1])
    )

    with pytest.raises(AirflowException, match="cut short") as caught:
        op.execute(make_context())

    assert job["queue_id"] in str(caught.value)
    assert "CreateMultipartUpload" in s3_calls  # so "no upload left" below means it was aborted
    assert_nothing_left(s3, bucket, "videos/out.mp4")
    calls = emulator_calls(emulator)
    assert calls_to(calls, "/video/complete") == []
    assert calls_to(calls, "/_media", method="DELETE") == []


def test_a_missing_bucket_over_http_fails_with_the_queue_id(wired):
    emulator, s3, bucket = wired
    job = queue_job(emulator.url, T2V)
    s3.delete_bucket(Bucket=bucket)

    with pytest.raises(AirflowException, match="NoSuchBucket") as caught:
        transfer(job, bucket).execute(make_context())

    assert job["queue_id"] in str(caught.value)
    assert calls_to(emulator_calls(emulator), "/video/complete") == []


# The 300 MB delivery, in a child process so that its peak RSS is its own. The child builds its hooks
# and clients first (warm-up), resets the peak-RSS mark, then delivers and reports the growth.
CHILD = r"""
import json, re, sys
from airflow_provider_venice.client import QueueVideoRequest, VeniceClient
from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator

def status_kib(field):
    with open("/proc/self/status") as status:
        return int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.M).group(1))

class Outlets(dict):
    def __missing__(self, key):
        self[key] = accessor = type("Accessor", (), {"extra": {}, "add": lambda self, *a, **k: None})()
        return accessor

emulator_url, bucket, api_key = sys.argv[1:4]
with VeniceClient(api_key, base_url=emulator_url) as client:
    request = {"model": "wan-2-7-text-to-video", "prompt": "a long take", "duration": "5s"}
    job = client.queue(QueueVideoRequest(**request))
op = VeniceVideoToS3Operator(
    task_id="to_s3", model=job.model or "wan-2-7-text-to-video", queue_id=job.queue_id,
    s3_bucket=bucket, s3_key="big/video.mp4",
)
op.s3_hook.get_conn()
op.hook.get_conn()
try:
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # reset VmHWM to the current RSS
    reset = True
except OSError:
    reset = False
rss_before = status_kib("VmRSS")
hwm_before = status_kib("VmHWM")
result = op.execute({"outlet_events": Outlets()})
print(json.dumps({
    "rss_before_kib": rss_before, "hwm_before_kib": hwm_before, "hwm_after_kib": status_kib("VmHWM"),
    "hwm_reset": reset, "result": result,
}))
"""


def test_a_300_mb_video_is_delivered_with_bounded_memory(s3_server, tmp_path):
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")},
        **AWS_ENV,
        "AIRFLOW_HOME": str(tmp_path / "airflow_home"),
    }
    emulator = start_emulator_process("--job-seconds", "0", "--video-bytes", str(BIG_VIDEO_BYTES))
    try:
        bucket = f"big-{uuid.uuid4().hex[:12]}"
        s3 = server_s3_client(s3_server.url)
        s3.create_bucket(Bucket=bucket)
        env["AIRFLOW_CONN_VENICE_DEFAULT"] = venice_connection(emulator.url)
        env["AIRFLOW_CONN_AWS_DEFAULT"] = aws_connection(s3_server.url)
        child = subprocess.run(
            [sys.executable, "-c", CHILD, emulator.url, bucket, s3_fixtures.API_KEY],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert child.returncode == 0, child.stderr[-4000:]
        report = json.loads(child.stdout.strip().splitlines()[-1])
        calls = emulator_calls(emulator)
    finally:
        emulator.stop()

    result = report["result"]
    growth = (report["hwm_after_kib"] - report["rss_before_kib"]) * 1024
    print(f"300 MB delivery: peak RSS growth {growth / 2**20:.1f} MiB ({report})")
    assert result["size_bytes"] == BIG_VIDEO_BYTES
    assert growth < RSS_GROWTH_LIMIT, f"peak RSS grew by {growth / 2**20:.0f} MiB while delivering 300 MB"
    head = s3.head_object(Bucket=bucket, Key="big/video.mp4")
    assert head["ContentLength"] == BIG_VIDEO_BYTES
    assert head["Metadata"]["sha256"] == result["sha256"]
    digest = hashlib.sha256()
    for chunk in s3.get_object(Bucket=bucket, Key="big/video.mp4")["Body"].iter_chunks(8 * 1024 * 1024):
        digest.update(chunk)
    assert digest.hexdigest() == result["sha256"]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert [call["status"] for call in calls_to(calls, "/video/complete")] == [200]
