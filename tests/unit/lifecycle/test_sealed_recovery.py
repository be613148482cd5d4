"""The manifest is the commit point of a delivery; a try killed before it is resumed without a new download.

Over the in-process emulator and moto's in-process S3, with VeniceGenerateVideoOperator (queue, wait,
deliver, release in one task). A try is a fresh operator with the same task state store. What S3 saw is
recorded with botocore hooks on the operator's own S3 client (``before-parameter-build``: operation, key
and checksum mode of each call, in order); a killed worker is :class:`ProcessKilled` raised from such a
hook (a ``BaseException``: no clean-up of ours runs, as after a SIGKILL).

* Contents: every documented field of the manifest, with the values of the bytes really stored.
* Order: the video is committed, read back and verified, probed, its poster written, then the manifest;
  the record says ``uploaded`` (size, CRC32, SHA-256) just before S3 commits, ``delivered`` only once the
  manifest exists; ``/video/complete`` only after that. A failed verification writes no manifest.
* A try killed between the object and its manifest: the next try commits that object (one queue, one
  download, one write of the video in all) when S3 holds it whole; when it does not (size or CRC32
  differ, no CRC32 reported, another writer's object), only this task's own object is removed, and the
  video is uploaded again (or, for another writer's object with ``replace=False``, left alone).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

import boto3
import pytest

from airflow_provider_venice.lifecycle.s3upload import MIN_PART_SIZE
from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException
from tests.integration.s3_fixtures import (
    API_KEY,
    BUCKET,
    RECORD_KEY,
    REQUESTS,
    T2V,
    FakeStore,
    FakeTaskInstance,
    ProcessKilled,
    calls_to,
    job_state,
    kill_at_write,
    make_context,
    object_bytes,
    object_exists,
    read_manifest,
    uploads_in_progress,
    video_downloads,
)

KEY = "sealed/video.mp4"
MANIFEST_KEY = KEY + ".json"
POSTER_KEY = KEY + ".poster.jpg"
REQUEST = {**REQUESTS[T2V], "aspect_ratio": "9:16"}
MULTIPART = 2 * MIN_PART_SIZE + 777  # three parts
SIZES = [pytest.param(None, id="single-put"), pytest.param(MULTIPART, id="multipart")]
COMMITS = ("PutObject", "CompleteMultipartUpload")
DOCUMENTED_FIELDS = {
    "schema_version",
    "kind",
    "s3_uri",
    "bucket",
    "key",
    "size_bytes",
    "sha256",
    "checksum_crc32",
    "s3_checksum",
    "content_type",
    "etag",
    "version_id",
    "model",
    "queue_id",
    "quote_usd",
    "request_fingerprint",
    "request",
    "timings",
    "task",
    "probe",
    "poster",
}


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def generate(**kwargs: Any) -> VeniceGenerateVideoOperator:
    return VeniceGenerateVideoOperator(
        task_id="generate",
        **REQUEST,
        s3_bucket=BUCKET,
        s3_key=KEY,
        deferrable=False,
        window_interval_s=0.05,
        **kwargs,
    )


def context(store: FakeStore, try_number: int = 1) -> dict[str, Any]:
    return make_context(store, FakeTaskInstance(try_number=try_number))


class S3Calls:
    """The S3 calls one client made, in order: ``(operation, key, checksum mode asked)``."""

    def __init__(self, client: Any) -> None:
        self.calls: list[tuple[str, str | None, bool]] = []
        client.meta.events.register("before-parameter-build.s3", self._keep)

    def _keep(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, params.get("Key"), params.get("ChecksumMode") == "ENABLED"))

    def index(self, operation: str | tuple[str, ...], key: str, *, after: int = -1) -> int:
        """Index of the first call of ``operation`` on ``key`` after index ``after`` (-1 when none)."""
        operations = (operation,) if isinstance(operation, str) else operation
        for index, (name, called, _) in enumerate(self.calls):
            if index > after and name in operations and called == key:
                return index
        return -1

    def count(self, operation: str | tuple[str, ...], key: str) -> int:
        operations = (operation,) if isinstance(operation, str) else operation
        return sum(1 for name, called, _ in self.calls if name in operations and called == key)

    def verified_after(self, index: int) -> int:
        """Index of the first read-back of the video with S3's checksum after ``index`` (-1 when none)."""
        for at, (name, called, checksum) in enumerate(self.calls):
            if at > index and name == "HeadObject" and called == KEY and checksum:
                return at
        return -1


def s3_now() -> Any:
    """Another client on moto's in-process S3, to look at the bucket from outside the task."""
    return boto3.client("s3", region_name="us-east-1")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def alter_checksum_heads(
    client: Any, change: Callable[[dict[str, Any]], None], *, times: int = 1
) -> list[int]:
    """Change S3's answer to the first ``times`` HEADs of the video that ask for its checksum."""
    altered: list[int] = []

    def flag(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        headers = {name.lower(): value for name, value in params.get("headers", {}).items()}
        context["venice_checksum_head"] = headers.get("x-amz-checksum-mode") == "ENABLED"

    def alter(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if context.get("venice_checksum_head") and "ContentLength" in parsed and len(altered) < times:
            change(parsed)
            altered.append(1)

    client.meta.events.register("before-call.s3.HeadObject", flag)
    client.meta.events.register("after-call.s3.HeadObject", alter)
    return altered


def after_commit(client: Any, change: Callable[[dict[str, Any]], None]) -> list[int]:
    """Change the first checksum HEAD of the video that follows its commit (the verification)."""
    committed: list[str] = []
    altered: list[int] = []

    def commit(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == KEY:
            committed.append(KEY)

    def flag(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        headers = {name.lower(): value for name, value in params.get("headers", {}).items()}
        context["venice_verify"] = bool(committed) and headers.get("x-amz-checksum-mode") == "ENABLED"

    def alter(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if context.get("venice_verify") and "ContentLength" in parsed and not altered:
            change(parsed)
            altered.append(1)

    for operation in COMMITS:
        client.meta.events.register(f"before-parameter-build.s3.{operation}", commit)
    client.meta.events.register("before-call.s3.HeadObject", flag)
    client.meta.events.register("after-call.s3.HeadObject", alter)
    return altered


def block_abort(client: Any) -> None:
    """A killed process aborts nothing: its ``AbortMultipartUpload`` never leaves."""

    def refuse(**_: Any) -> None:
        raise ProcessKilled("a killed process sends nothing")

    client.meta.events.register("before-parameter-build.s3.AbortMultipartUpload", refuse)


def assert_manifest_matches(moto_s3: Any, queue_id: str) -> tuple[dict[str, Any], bytes]:
    body = object_bytes(moto_s3, BUCKET, KEY)
    head = moto_s3.head_object(Bucket=BUCKET, Key=KEY)
    manifest = read_manifest(moto_s3, BUCKET, KEY)
    assert manifest["queue_id"] == queue_id
    assert manifest["size_bytes"] == len(body) == head["ContentLength"]
    assert manifest["sha256"] == sha256_of(body)
    assert manifest["checksum_crc32"] == crc32_b64(body)
    assert manifest["etag"].strip('"') == head["ETag"].strip('"')
    return manifest, body


def iso(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


# --- what the manifest says ----------------------------------------------------------------------------


@pytest.mark.parametrize("video_bytes", SIZES)
def test_the_manifest_holds_every_documented_field(
    venice: Any, moto_s3: Any, video_bytes: int | None
) -> None:
    emulator = venice(video_bytes=video_bytes)
    store = FakeStore()
    started = time.time()

    result = generate().execute(context(store))

    ended = time.time()
    manifest, body = assert_manifest_matches(moto_s3, result["queue_id"])
    head = moto_s3.head_object(Bucket=BUCKET, Key=KEY)
    [job] = emulator.jobs()
    assert set(manifest) == DOCUMENTED_FIELDS, set(manifest) ^ DOCUMENTED_FIELDS
    assert (manifest["schema_version"], manifest["kind"]) == (1, "airflow-provider-venice/video")
    assert (manifest["s3_uri"], manifest["bucket"], manifest["key"]) == (f"s3://{BUCKET}/{KEY}", BUCKET, KEY)
    assert manifest["s3_checksum"] == {"algorithm": "CRC32", "type": "FULL_OBJECT", "value": crc32_b64(body)}
    assert manifest["content_type"] == head["ContentType"] == "video/mp4"
    assert "version_id" in manifest
    assert (manifest["model"], manifest["queue_id"]) == (T2V, job["queue_id"])
    assert manifest["quote_usd"] == job["quote_usd"] == result["quote_usd"]
    fingerprint = store.data[RECORD_KEY]["request_fingerprint"]
    assert manifest["request_fingerprint"] == fingerprint == head["Metadata"]["venice-request-fingerprint"]
    assert manifest["request"] == REQUEST
    assert API_KEY not in json.dumps(manifest)
    timings = manifest["timings"]
    assert set(timings) == {"queued_at", "finished_at", "delivered_at"}
    queued, finished, delivered = (
        iso(timings[name]) for name in ("queued_at", "finished_at", "delivered_at")
    )
    assert started - 1 <= queued <= finished <= delivered <= ended + 1
    assert manifest["task"] == {
        "dag_id": "venice_unit",
        "run_id": "manual__2025-01-01T00:00:00+00:00",
        "task_id": "generate",
        "map_index": -1,
        "try_number": 1,
    }
    assert manifest["probe"] == {
        "made": True,
        "duration_s": 5.0,
        "width": 90,
        "height": 160,
        "frame_rate": 1.0,
        "video_codec": "h264",
        "has_audio": False,
        "audio_codec": None,
    }
    poster = object_bytes(moto_s3, BUCKET, POSTER_KEY)
    assert manifest["poster"] == {
        "s3_uri": f"s3://{BUCKET}/{POSTER_KEY}",
        "key": POSTER_KEY,
        "width": 90,
        "height": 160,
        "content_type": "image/jpeg",
        "size_bytes": len(poster),
    }
    for name in ("s3_uri", "size_bytes", "sha256", "checksum_crc32", "model", "queue_id", "quote_usd"):
        assert result[name] == manifest[name], name
    assert result["manifest_uri"] == f"s3://{BUCKET}/{MANIFEST_KEY}"
    assert result["poster_uri"] == manifest["poster"]["s3_uri"]


# --- the order of a delivery ---------------------------------------------------------------------------


@pytest.mark.parametrize("video_bytes", SIZES)
def test_no_manifest_is_written_before_the_video_is_verified(
    venice: Any, moto_s3: Any, video_bytes: int | None
) -> None:
    emulator = venice(video_bytes=video_bytes)
    store = FakeStore()
    op = generate()
    client = op.s3_hook.get_conn()
    seen = S3Calls(client)
    at_manifest: list[dict[str, Any]] = []

    def look(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") != MANIFEST_KEY:
            return
        committed = seen.index(COMMITS, KEY)
        verified = seen.verified_after(committed)
        at_manifest.append(
            {
                "committed": committed >= 0,
                "verified": verified >= 0,
                "probed_after_verification": seen.index("GetObject", KEY, after=max(verified, 0))
                > verified
                >= 0,
                "poster_written": seen.index("PutObject", POSTER_KEY, after=max(verified, 0)) > verified >= 0,
                "video_exists": object_exists(s3_now(), BUCKET, KEY),
                "stage": store.data[RECORD_KEY]["stage"],
                "completes": len(calls_to(emulator.calls(), "/video/complete")),
            }
        )

    client.meta.events.register("before-parameter-build.s3.PutObject", look)

    op.execute(context(store))

    assert at_manifest == [
        {
            "committed": True,
            "verified": True,
            "probed_after_verification": True,
            "poster_written": True,
            "video_exists": True,
            "stage": "uploaded",
            "completes": 0,
        }
    ]


def test_the_record_says_delivered_only_once_the_manifest_exists(venice: Any, moto_s3: Any) -> None:
    emulator = venice()
    stages: list[tuple[str, bool, int]] = []

    class WatchingStore(FakeStore):
        def set(self, key: str, value: Any) -> None:
            if (
                key == RECORD_KEY
                and isinstance(value, dict)
                and value.get("stage") in ("delivered", "completed")
            ):
                has_manifest = object_exists(s3_now(), BUCKET, MANIFEST_KEY)
                stages.append(
                    (value["stage"], has_manifest, len(calls_to(emulator.calls(), "/video/complete")))
                )
            super().set(key, value)

    store = WatchingStore()
    result = generate().execute(context(store))

    assert stages == [("delivered", True, 0), ("completed", True, 1)]
    assert_manifest_matches(moto_s3, result["queue_id"])


@pytest.mark.parametrize("video_bytes", SIZES)
def test_the_upload_is_sealed_in_the_record_just_before_s3_commits_it(
    venice: Any, moto_s3: Any, video_bytes: int | None
) -> None:
    venice(video_bytes=video_bytes)
    store = FakeStore()
    op = generate()
    client = op.s3_hook.get_conn()
    at_commit: list[dict[str, Any]] = []
    upload_ids: list[str] = []

    def look(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == KEY:
            at_commit.append(json.loads(json.dumps(store.data[RECORD_KEY])))

    for operation in COMMITS:
        client.meta.events.register(f"before-parameter-build.s3.{operation}", look)
    client.meta.events.register(
        "after-call.s3.CreateMultipartUpload", lambda parsed, **_: upload_ids.append(parsed["UploadId"])
    )

    op.execute(context(store))

    body = object_bytes(moto_s3, BUCKET, KEY)
    head = moto_s3.head_object(Bucket=BUCKET, Key=KEY)
    [record] = at_commit
    assert record["stage"] == "uploaded"
    upload = record["upload"]
    assert upload["size"] == len(body)
    assert upload["crc32"] == zlib.crc32(body)
    assert upload["sha256"] == sha256_of(body)
    assert upload["token"] == head["Metadata"]["venice-upload-token"]
    assert upload.get("upload_id") == (upload_ids[0] if video_bytes else None)
    assert store.data[RECORD_KEY]["stage"] == "completed"
    assert "upload" not in store.data[RECORD_KEY]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param(
            lambda head: head.update(ContentLength=head["ContentLength"] - 1), "bytes, not the", id="size"
        ),
        pytest.param(lambda head: head.update(ChecksumCRC32="AAAAAA=="), "CRC32 AAAAAA==", id="crc32"),
    ],
)
def test_a_failed_verification_writes_no_manifest(
    venice: Any, moto_s3: Any, change: Any, problem: str
) -> None:
    emulator = venice(video_bytes=MULTIPART)
    store = FakeStore()
    op = generate()
    client = op.s3_hook.get_conn()
    seen = S3Calls(client)
    altered = after_commit(client, change)

    with pytest.raises(AirflowException, match=problem) as caught:
        op.execute(context(store))

    assert altered == [1]
    [job] = emulator.jobs()
    assert job["queue_id"] in str(caught.value)
    assert not isinstance(caught.value, AirflowFailException)
    assert seen.count("PutObject", MANIFEST_KEY) == 0
    assert not object_exists(moto_s3, BUCKET, MANIFEST_KEY)
    assert not object_exists(moto_s3, BUCKET, KEY)  # this try's own object, removed
    assert not object_exists(moto_s3, BUCKET, POSTER_KEY)
    assert calls_to(emulator.calls(), "/video/complete") == []
    assert store.data[RECORD_KEY]["stage"] not in ("delivered", "completed")


def test_a_manifest_that_cannot_be_written_leaves_no_video_and_no_poster(venice: Any, moto_s3: Any) -> None:
    """The manifest write fails (S3 refuses it): nothing of this try stays, the job is kept."""
    from botocore.awsrequest import AWSResponse

    emulator = venice()
    store = FakeStore()
    op = generate()
    client = op.s3_hook.get_conn()

    def refuse(params: dict[str, Any], **_: Any) -> Any:
        if not params["url_path"].endswith(MANIFEST_KEY):
            return None
        error = {"Code": "AccessDenied", "Message": "Access Denied"}
        return AWSResponse("https://s3.test", 403, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }

    client.meta.events.register("before-call.s3.PutObject", refuse)

    with pytest.raises(AirflowException, match="manifest") as caught:
        op.execute(context(store))

    [job] = emulator.jobs()
    assert job["queue_id"] in str(caught.value)
    assert calls_to(emulator.calls(), "/video/complete") == []
    assert not object_exists(moto_s3, BUCKET, KEY)
    assert not object_exists(moto_s3, BUCKET, POSTER_KEY), (
        "the poster of an undelivered video was left behind"
    )


# --- a try killed between the object and its manifest -------------------------------------------------


def kill_before_manifest(emulator: Any, moto_s3: Any, store: FakeStore) -> tuple[S3Calls, dict[str, Any]]:
    """Run the first try and kill it as it sends the manifest; return its S3 calls and its record."""
    first = generate()
    client = first.s3_hook.get_conn()
    seen = S3Calls(client)
    killed = kill_at_write(client, "PutObject", MANIFEST_KEY)
    with pytest.raises(ProcessKilled):
        first.execute(context(store, 1))
    assert killed == [MANIFEST_KEY]
    record = json.loads(json.dumps(store.data[RECORD_KEY]))
    assert record["stage"] == "uploaded"
    assert object_exists(moto_s3, BUCKET, KEY)
    assert not object_exists(moto_s3, BUCKET, MANIFEST_KEY)
    assert calls_to(emulator.calls(), "/video/complete") == []
    return seen, record


@pytest.mark.parametrize("video_bytes", SIZES)
def test_a_try_killed_before_its_manifest_is_committed_by_the_next_without_a_second_download(
    venice: Any, moto_s3: Any, video_bytes: int | None
) -> None:
    emulator = venice(video_bytes=video_bytes)
    store = FakeStore()
    first, record = kill_before_manifest(emulator, moto_s3, store)
    stored = moto_s3.head_object(Bucket=BUCKET, Key=KEY)

    second = generate()
    seen = S3Calls(second.s3_hook.get_conn())
    result = second.execute(context(store, 2))

    calls = emulator.calls()
    assert len(calls_to(calls, "/video/queue")) == 1
    assert len(video_downloads(calls)) == 1
    assert first.count(COMMITS, KEY) + seen.count(COMMITS, KEY) == 1
    assert seen.count(("UploadPart", "CreateMultipartUpload", "DeleteObject"), KEY) == 0
    manifest, _ = assert_manifest_matches(moto_s3, result["queue_id"])
    assert manifest["etag"].strip('"') == stored["ETag"].strip('"')  # the first try's object
    assert manifest["sha256"] == record["upload"]["sha256"] == result["sha256"]
    assert manifest["task"]["try_number"] == 2
    assert manifest["probe"]["made"] is True
    assert object_exists(moto_s3, BUCKET, POSTER_KEY)
    completes = calls_to(calls, "/video/complete")
    assert [call["status"] for call in completes] == [200]
    assert store.data[RECORD_KEY]["stage"] == "completed"
    assert uploads_in_progress(moto_s3, BUCKET) == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda head: head.update(ContentLength=head["ContentLength"] + 1), id="size-differs"),
        pytest.param(lambda head: head.update(ChecksumCRC32="AAAAAA=="), id="crc32-differs"),
        pytest.param(lambda head: head.pop("ChecksumCRC32", None), id="no-crc32-reported"),
        pytest.param(lambda head: head.update(ChecksumType="COMPOSITE"), id="composite-checksum"),
    ],
)
@pytest.mark.parametrize("video_bytes", SIZES)
def test_a_killed_tries_object_that_does_not_match_is_removed_and_uploaded_again(
    venice: Any, moto_s3: Any, video_bytes: int | None, change: Any
) -> None:
    emulator = venice(video_bytes=video_bytes)
    store = FakeStore()
    first, _ = kill_before_manifest(emulator, moto_s3, store)
    left = moto_s3.head_object(Bucket=BUCKET, Key=KEY)["ETag"]

    second = generate()
    client = second.s3_hook.get_conn()
    seen = S3Calls(client)
    removed: list[str | None] = []
    client.meta.events.register(
        "before-parameter-build.s3.DeleteObject",
        lambda params, **_: removed.append(params.get("IfMatch")) if params.get("Key") == KEY else None,
    )
    altered = alter_checksum_heads(client, change)
    result = second.execute(context(store, 2))

    assert altered == [1]
    assert [etag.strip('"') for etag in removed if etag] == [left.strip('"')]  # its own object, by ETag
    assert len(removed) == 1
    calls = emulator.calls()
    assert len(calls_to(calls, "/video/queue")) == 1
    assert len(video_downloads(calls)) == 2
    assert first.count(COMMITS, KEY) == seen.count(COMMITS, KEY) == 1
    assert_manifest_matches(moto_s3, result["queue_id"])
    assert len(calls_to(calls, "/video/complete")) == 1
    assert store.data[RECORD_KEY]["stage"] == "completed"
    assert uploads_in_progress(moto_s3, BUCKET) == []


@pytest.mark.parametrize("video_bytes", SIZES)
def test_another_writers_object_after_the_kill_is_left_alone(
    venice: Any, moto_s3: Any, video_bytes: int | None
) -> None:
    emulator = venice(video_bytes=video_bytes)
    store = FakeStore()
    kill_before_manifest(emulator, moto_s3, store)
    s3_now().put_object(
        Bucket=BUCKET, Key=KEY, Body=b"theirs", Metadata={"venice-upload-token": "someone-else"}
    )

    second = generate()
    seen = S3Calls(second.s3_hook.get_conn())
    with pytest.raises(AirflowFailException, match="replace=False") as caught:
        second.execute(context(store, 2))

    [job] = emulator.jobs()
    assert job["queue_id"] in str(caught.value)
    assert object_bytes(moto_s3, BUCKET, KEY) == b"theirs"
    assert seen.count("DeleteObject", KEY) == 0
    assert seen.count(COMMITS, KEY) == 0
    assert len(video_downloads(emulator.calls())) == 1
    assert calls_to(emulator.calls(), "/video/complete") == []
    assert uploads_in_progress(moto_s3, BUCKET) == []
    assert job_state(emulator, job["queue_id"])["media_deleted"] is False


def test_another_writers_object_after_the_kill_is_replaced_only_by_a_new_upload(
    venice: Any, moto_s3: Any
) -> None:
    emulator = venice(video_bytes=MULTIPART)
    store = FakeStore()
    first = generate(replace=True)
    killed = kill_at_write(first.s3_hook.get_conn(), "PutObject", MANIFEST_KEY)
    with pytest.raises(ProcessKilled):
        first.execute(context(store, 1))
    assert killed
    s3_now().put_object(
        Bucket=BUCKET, Key=KEY, Body=b"theirs", Metadata={"venice-upload-token": "someone-else"}
    )

    second = generate(replace=True)
    seen = S3Calls(second.s3_hook.get_conn())
    result = second.execute(context(store, 2))

    assert seen.count("DeleteObject", KEY) == 0  # not this task's object: never removed, only overwritten
    assert seen.count(COMMITS, KEY) == 1
    assert len(video_downloads(emulator.calls())) == 2
    assert_manifest_matches(moto_s3, result["queue_id"])
    assert len(calls_to(emulator.calls(), "/video/complete")) == 1


@pytest.mark.parametrize(
    ("video_bytes", "commit"),
    [
        pytest.param(None, "PutObject", id="single-put"),
        pytest.param(MULTIPART, "CompleteMultipartUpload", id="multipart"),
    ],
)
def test_a_try_killed_after_sealing_but_before_s3_committed_uploads_again(
    venice: Any, moto_s3: Any, video_bytes: int | None, commit: str
) -> None:
    emulator = venice(video_bytes=video_bytes)
    store = FakeStore()
    first = generate()
    client = first.s3_hook.get_conn()
    killed = kill_at_write(client, commit, KEY)
    block_abort(client)
    with pytest.raises(ProcessKilled):
        first.execute(context(store, 1))
    assert killed == [KEY]
    assert store.data[RECORD_KEY]["stage"] == "uploaded"
    assert not object_exists(moto_s3, BUCKET, KEY)
    assert len(uploads_in_progress(moto_s3, BUCKET)) == (1 if video_bytes else 0)

    result = generate().execute(context(store, 2))

    calls = emulator.calls()
    assert len(calls_to(calls, "/video/queue")) == 1
    assert len(video_downloads(calls)) == 2
    assert_manifest_matches(moto_s3, result["queue_id"])
    assert uploads_in_progress(moto_s3, BUCKET) == []
    assert len(calls_to(calls, "/video/complete")) == 1
