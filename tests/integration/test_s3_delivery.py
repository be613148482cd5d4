"""S3 delivery over real sockets: the emulator and moto's S3 server as child processes.

The emulator (``venice-emulator``) and ``moto_server`` run as separate processes on free loopback ports
and are stopped by pid at the end of the module, also when a test fails. A delivery is checked against
the one-pass contract: the manifest beside the video exists and matches the stored bytes (size,
SHA-256, ETag, queue_id), and the job is released only after it. The 300 MB delivery and the worker
killed mid-upload run in child processes of their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_venice.lifecycle.failures import DestinationTakenError
from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator
from airflow_provider_venice.testing.processes import ServiceProcess, start_emulator_process
from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException
from tests.integration import s3_fixtures
from tests.integration.delivery_checks import (
    CutProxy,
    FileStore,
    all_keys,
    assert_delivered,
    delivery_keys,
    manifest_key,
    poster_key,
    read_manifest,
    stored_sha256,
    top_level_boxes,
    wait_until,
)
from tests.integration.s3_fixtures import (
    AWS_ENV,
    MB,
    T2V,
    VPS,
    FakeStore,
    assert_nothing_left,
    aws_connection,
    calls_to,
    make_context,
    queue_job,
    server_s3_client,
    uploads_in_progress,
    venice_connection,
    venice_paths,
)

pytestmark = pytest.mark.integration

aws_env = s3_fixtures.aws_env
s3_server = s3_fixtures.s3_server

ROOT = Path(__file__).resolve().parents[2]
BIG_VIDEO_BYTES = 300_000_000
RSS_GROWTH_LIMIT = 150 * 1024 * 1024
SMALL_VIDEO_BYTES = 20 * MB
KEY = "videos/out.mp4"


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


def emulator_jobs(emulator: ServiceProcess) -> dict[str, dict[str, Any]]:
    response = httpx.get(admin(emulator, "/jobs"))
    response.raise_for_status()
    return {job["queue_id"]: job for job in response.json()["jobs"]}


def reset(emulator: ServiceProcess, **config: Any) -> None:
    """Forget every job and call; run with the process's settings plus ``config`` from now on."""
    httpx.post(admin(emulator, "/reset"), json=config).raise_for_status()


@pytest.fixture
def wired(
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    emulator_process: ServiceProcess,
    s3_server: ServiceProcess,
) -> tuple[ServiceProcess, Any, str]:
    """Connections to both processes in this process; a fresh bucket; the emulator reset."""
    reset(emulator_process)
    monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", venice_connection(emulator_process.url))
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(s3_server.url))
    s3 = server_s3_client(s3_server.url)
    bucket = f"it-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    return emulator_process, s3, bucket


def transfer(job: dict[str, Any], bucket: str, key: str = KEY) -> VeniceVideoToS3Operator:
    """The S3 transfer of ``job``, handed over whole as DAG authors do (``job=wait.output``)."""
    return VeniceVideoToS3Operator(task_id="to_s3", job=job, s3_bucket=bucket, s3_key=key)


MODES = [
    pytest.param(T2V, {}, id="t2v"),
    pytest.param(VPS, {}, id="vps"),
    pytest.param(T2V, {"retrieve_json_on_accept": True}, id="t2v-json-on-accept"),
    pytest.param(T2V, {"moov_at_end": True}, id="t2v-moov-at-end"),
]


@pytest.mark.parametrize(("model", "config"), MODES)
def test_delivery_over_http(wired, model, config):
    emulator, s3, bucket = wired
    reset(emulator, **config)
    job = queue_job(emulator.url, model)

    result = transfer(job, bucket).execute(make_context())

    assert_delivered(s3, bucket, KEY, job["queue_id"], result)
    assert result["size_bytes"] == SMALL_VIDEO_BYTES
    assert all_keys(s3, bucket) == delivery_keys(KEY)
    assert uploads_in_progress(s3, bucket) == []
    calls = emulator_calls(emulator)
    if model == VPS:
        assert venice_paths(calls)[-3:] == ["GET /_media", "DELETE /_media", "POST /api/v1/video/complete"]
        assert all("authorization" not in call for call in calls_to(calls, "/_media"))
        assert calls[-1]["status"] == 400  # taken as done for VPS jobs
    else:
        assert venice_paths(calls)[-2:] == ["POST /api/v1/video/retrieve", "POST /api/v1/video/complete"]
        assert calls[-1]["status"] == 200
        download = calls[-2]
        assert download["status"] == 200
        # Asked for the video itself, so a server answering JSON to a JSON Accept still sends the mp4.
        assert "application/json" not in (download["accept"] or "").lower(), download["accept"]


@pytest.mark.parametrize("model", [T2V, VPS])
def test_a_body_cut_over_http_leaves_no_object_and_no_upload(wired, model):
    """The emulator's ``truncate`` fault: half the announced Content-Length arrives, then the socket closes.

    httpx sees fewer bytes than announced: a transport error, before the MP4 walker has a say.
    """
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
    assert_nothing_left(s3, bucket, KEY)
    assert all_keys(s3, bucket) == []
    calls = emulator_calls(emulator)
    assert calls_to(calls, "/video/complete") == []
    assert calls_to(calls, "/_media", method="DELETE") == []


def _half(body: bytes) -> int:
    return len(body) // 2


def _before_the_last_box(body: bytes) -> int:
    """Where the last top-level box starts: what arrives is a run of whole boxes, one missing."""
    return top_level_boxes(body)[-1][1]


@pytest.mark.parametrize(
    ("model", "config", "cut", "message"),
    [
        pytest.param(T2V, {}, _half, "body cut short", id="t2v-inside-a-box"),
        pytest.param(VPS, {}, _half, "body cut short", id="vps-inside-a-box"),
        pytest.param(T2V, {"moov_at_end": True}, _before_the_last_box, "no moov box", id="t2v-between-boxes"),
    ],
)
def test_a_body_cut_short_without_content_length_fails_verification(
    wired, monkeypatch, model, config, cut, message
):
    """A video answer with neither Content-Length nor chunked framing, ended early by closing the socket.

    The HTTP client takes it for a whole body; only the MP4 structure, walked while streaming, shows it
    is not. Nothing may be completed and nothing left in S3; the job stays retrievable.
    """
    emulator, s3, bucket = wired
    reset(emulator, **config)
    with CutProxy(emulator.url.removesuffix("/api/v1"), cut) as proxy:
        monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", venice_connection(proxy.root_url + "/api/v1"))
        job = queue_job(proxy.root_url + "/api/v1", model)
        with pytest.raises(AirflowException, match=message) as caught:
            transfer(job, bucket).execute(make_context())

    [(sent, size)] = proxy.cuts
    assert 0 < sent < size == SMALL_VIDEO_BYTES
    assert not isinstance(caught.value, AirflowFailException)  # transient: a retry may deliver it
    assert job["queue_id"] in str(caught.value)
    assert_nothing_left(s3, bucket, KEY)
    assert all_keys(s3, bucket) == []  # no manifest, no poster either
    calls = emulator_calls(emulator)
    assert calls_to(calls, "/video/complete") == []
    assert calls_to(calls, "/_media", method="DELETE") == []
    assert emulator_jobs(emulator)[job["queue_id"]]["media_deleted"] is False


def test_a_missing_bucket_over_http_fails_with_the_queue_id(wired):
    emulator, s3, bucket = wired
    job = queue_job(emulator.url, T2V)
    s3.delete_bucket(Bucket=bucket)

    with pytest.raises(AirflowException, match="NoSuchBucket") as caught:
        transfer(job, bucket).execute(make_context())

    assert job["queue_id"] in str(caught.value)
    assert calls_to(emulator_calls(emulator), "/video/complete") == []


# --- two task instances writing one key with replace=False at the same time -----------------------------


class CommitGate:
    """Holds each writer's request that creates the video object (not the manifest) until both writers
    reach it, then lets them through one at a time.

    Both have passed every "is the key free?" check and uploaded every byte before either commits, as two
    runs racing for one key do. The commits themselves go one after the other because S3 decides a
    conditional write atomically, while moto's server checks and then writes (two commits at the very
    same instant could both pass there, which real S3 never lets happen).
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.barrier = threading.Barrier(2, timeout=60)
        self.lock = threading.Lock()
        self.holder = threading.local()

    def attach(self, op: VeniceGenerateVideoOperator) -> None:
        events = op.s3_hook.get_conn().meta.events
        for operation in ("PutObject", "CompleteMultipartUpload"):
            events.register(f"before-parameter-build.s3.{operation}", self.enter)
            events.register(f"after-call.s3.{operation}", self.leave)
            events.register(f"after-call-error.s3.{operation}", self.leave)

    def enter(self, params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == self.key:
            self.barrier.wait()
            self.lock.acquire()
            self.holder.held = True

    def leave(self, **_: Any) -> None:
        if getattr(self.holder, "held", False):
            self.holder.held = False
            self.lock.release()


@pytest.mark.parametrize("video_bytes", [20 * MB, 2 * MB], ids=["multipart-upload", "single-put"])
def test_two_writers_of_one_key_with_replace_false_one_wins_the_other_is_kept(wired, video_bytes):
    """Two task instances (two DAG runs) deliver to one key, replace=False, their writes at the same moment.

    Both pass the "is the key free?" check before either writes, so only the conditional write
    (If-None-Match: *) can keep them apart: exactly one video wins; the other task fails naming its own
    queue_id, its job is not completed, its upload is aborted, and the winner's video and manifest are
    untouched (and so is its poster), also by the loser's retry.
    """
    emulator, s3, bucket = wired
    reset(emulator, video_bytes=video_bytes)
    gate = CommitGate(KEY)
    stores = {run: FakeStore() for run in ("run_a", "run_b")}
    outcomes: dict[str, Any] = {}

    def make(run: str) -> VeniceGenerateVideoOperator:
        return VeniceGenerateVideoOperator(
            task_id="generate",
            model=T2V,
            prompt=f"a red fox in fresh snow, take {run}",
            duration="5s",
            s3_bucket=bucket,
            s3_key=KEY,
            deferrable=False,
            window_interval_s=0.2,
        )

    def deliver(run: str) -> None:
        op = make(run)
        gate.attach(op)
        try:
            outcomes[run] = op.execute(make_context(stores[run]))
        except Exception as exc:  # the loser's failure is what the test looks at
            outcomes[run] = exc
            gate.barrier.abort()  # never leave the other writer waiting if this one failed early

    threads = [threading.Thread(target=deliver, args=(run,)) for run in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    winners = {run: value for run, value in outcomes.items() if isinstance(value, dict)}
    losers = {run: value for run, value in outcomes.items() if isinstance(value, BaseException)}
    assert len(winners) == 1, outcomes
    assert len(losers) == 1, outcomes
    [(_winner_run, result)] = winners.items()
    [(loser_run, error)] = losers.items()
    loser_queue_id = stores[loser_run].data["venice_job"]["job"]["queue_id"]
    assert isinstance(error, DestinationTakenError), repr(error)
    assert "created by another writer while this video was uploading" in str(error)  # at the write itself
    assert loser_queue_id in str(error)
    assert loser_queue_id != result["queue_id"]

    manifest = assert_delivered(s3, bucket, KEY, result["queue_id"], result)
    etag = s3.head_object(Bucket=bucket, Key=KEY)["ETag"]
    manifest_etag = s3.head_object(Bucket=bucket, Key=manifest_key(KEY))["ETag"]
    poster_etag = s3.head_object(Bucket=bucket, Key=poster_key(KEY))["ETag"]
    assert all_keys(s3, bucket) == delivery_keys(KEY)
    assert uploads_in_progress(s3, bucket) == []  # the loser's multipart upload was aborted
    calls = emulator_calls(emulator)
    assert len(calls_to(calls, "/video/queue")) == 2  # each task instance paid for its own job
    assert [call["body"]["queue_id"] for call in calls_to(calls, "/video/complete")] == [result["queue_id"]]
    jobs = emulator_jobs(emulator)
    assert jobs[loser_queue_id]["media_deleted"] is False  # kept: it can still be delivered elsewhere
    assert jobs[result["queue_id"]]["media_deleted"] is True

    # The loser's retry: the key is taken, so it fails again before downloading; nothing is touched.
    with pytest.raises(AirflowFailException, match="replace=False") as again:
        make(loser_run).execute(make_context(stores[loser_run]))
    assert loser_queue_id in str(again.value)
    assert s3.head_object(Bucket=bucket, Key=KEY)["ETag"] == etag
    assert s3.head_object(Bucket=bucket, Key=manifest_key(KEY))["ETag"] == manifest_etag
    assert s3.head_object(Bucket=bucket, Key=poster_key(KEY))["ETag"] == poster_etag
    assert all_keys(s3, bucket) == delivery_keys(KEY)
    assert read_manifest(s3, bucket, KEY) == manifest
    assert stored_sha256(s3, bucket, KEY)[1] == result["sha256"]
    assert len(calls_to(emulator_calls(emulator), "/video/queue")) == 2  # the retry paid nothing
    assert emulator_jobs(emulator)[loser_queue_id]["media_deleted"] is False


# --- a worker killed in the middle of a multipart upload ---------------------------------------------------

KILLED_VIDEO_BYTES = 96 * MB  # twelve 8 MiB parts: the kill lands while most are still to come

# One try of a generate task in a process of its own, its task state store in a file shared with the
# next try. The log goes to stderr; the result is the last line on stdout.
GENERATE_CHILD = r"""
import json, logging, sys
from tests.integration.delivery_checks import FileStore
from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator

logging.basicConfig(level=logging.INFO, stream=sys.stderr)

class Outlets(dict):
    def __getitem__(self, outlet):  # keyed by repr: Airflow 3.1's assets are not hashable
        accessor = type("Accessor", (), {"extra": {}, "add": lambda self, *a, **k: None})()
        return self.setdefault(repr(outlet), accessor)

store_path, bucket, key = sys.argv[1:4]
op = VeniceGenerateVideoOperator(
    task_id="generate", model="wan-2-7-text-to-video", prompt="a gondola under a bridge", duration="5s",
    s3_bucket=bucket, s3_key=key, deferrable=False, window_interval_s=0.2,
)
result = op.execute({"task_state_store": FileStore(store_path), "outlet_events": Outlets()})
print(json.dumps(result))
"""


def _generate_child(env: dict[str, str], store: Path, bucket: str, key: str, **popen: Any) -> Any:
    command = [sys.executable, "-c", GENERATE_CHILD, str(store), bucket, key]
    return subprocess.Popen(command, env=env, cwd=ROOT, text=True, **popen)


def _parts_uploaded(s3: Any, bucket: str) -> list[dict[str, Any]] | None:
    uploads = uploads_in_progress(s3, bucket)
    if not uploads:
        return None
    parts = s3.list_parts(Bucket=bucket, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"])
    return uploads if parts.get("Parts") else None


@pytest.mark.slow
def test_a_worker_killed_mid_upload_leaves_an_upload_the_next_try_aborts(s3_server, tmp_path):
    """SIGKILL a try while its multipart upload is in progress; the next try aborts it and delivers once.

    The next try (another process, the same task state store) must not queue again, must abort the
    multipart upload the killed try left (S3 would keep its parts, and bill them, until a lifecycle
    rule removes them), and must deliver the same job's video once, with its manifest.
    """
    emulator = start_emulator_process("--job-seconds", "0", "--video-bytes", str(KILLED_VIDEO_BYTES))
    first: subprocess.Popen[str] | None = None
    try:
        bucket = f"killed-{uuid.uuid4().hex[:12]}"
        s3 = server_s3_client(s3_server.url)
        s3.create_bucket(Bucket=bucket)
        env = {
            **{name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")},
            **AWS_ENV,
            "AIRFLOW_HOME": str(tmp_path / "airflow_home"),
            "AIRFLOW_CONN_VENICE_DEFAULT": venice_connection(emulator.url),
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(s3_server.url),
        }
        store_path = tmp_path / "task_state_store.json"
        first = _generate_child(
            env, store_path, bucket, KEY, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        [orphan] = wait_until("a multipart upload with a part in it", lambda: _parts_uploaded(s3, bucket))
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
        assert uploads_in_progress(s3, bucket) == [orphan], "the upload ended before the kill"
        record = FileStore(store_path).get("venice_job")
        assert record["stage"] == "uploading", record
        assert record["upload"]["upload_id"] == orphan["UploadId"]

        second = _generate_child(env, store_path, bucket, KEY, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = second.communicate(timeout=300)
        assert second.returncode == 0, err[-4000:]
        result = json.loads(out.strip().splitlines()[-1])
        calls = emulator_calls(emulator)
    finally:
        if first is not None and first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(30)
        emulator.stop()

    assert f"Aborted the multipart upload {orphan['UploadId']}" in out + err  # the task log
    assert uploads_in_progress(s3, bucket) == []
    assert result["queue_id"] == record["job"]["queue_id"]
    assert_delivered(s3, bucket, KEY, result["queue_id"], result)
    assert all_keys(s3, bucket) == delivery_keys(KEY)
    assert len(calls_to(calls, "/video/queue")) == 1  # the next try never queued again
    assert [call["status"] for call in calls_to(calls, "/video/complete")] == [200]
    assert FileStore(store_path).get("venice_job")["stage"] == "completed"


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
    def __getitem__(self, outlet):  # keyed by repr: Airflow 3.1's assets are not hashable
        accessor = type("Accessor", (), {"extra": {}, "add": lambda self, *a, **k: None})()
        return self.setdefault(repr(outlet), accessor)

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


@pytest.mark.slow
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
    assert_delivered(s3, bucket, "big/video.mp4", result["queue_id"], result)
    assert all_keys(s3, bucket) == delivery_keys("big/video.mp4")
    assert uploads_in_progress(s3, bucket) == []
    assert [call["status"] for call in calls_to(calls, "/video/complete")] == [200]
