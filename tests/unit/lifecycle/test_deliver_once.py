"""Deliver once, against the in-process emulator and moto's in-process S3.

The operator tests cover the ordinary delivery; these look at what only the lifecycle decides: adopting
a video its manifest vouches for, refusing an object that is not ours, clearing what an earlier try
left (and only that), removing only this try's own object after a failed check, and the order of the
commit (record ``uploading`` for a multipart upload, record ``uploaded`` once every byte passed the
checks, the video, its poster, the manifest, then the record ``delivered``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import boto3
import pytest

from airflow_provider_venice.client import NO_RETRY, VeniceClient
from airflow_provider_venice.job import Stage, VeniceJob
from airflow_provider_venice.lifecycle.deliver import UPLOAD_TOKEN, Delivery, deliver_once
from airflow_provider_venice.lifecycle.destination import Destination
from airflow_provider_venice.lifecycle.failures import DestinationTakenError, VideoDeliveryError
from airflow_provider_venice.lifecycle.manifest import KIND, read_manifest
from airflow_provider_venice.lifecycle.record import RECORD_KEY
from airflow_provider_venice.lifecycle.s3upload import MIN_PART_SIZE
from airflow_provider_venice.testing import VeniceEmulator
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException
from tests.integration.s3_fixtures import (
    BUCKET,
    T2V,
    VPS,
    assert_nothing_left,
    calls_to,
    object_bytes,
    object_exists,
    queue_job,
    uploads_in_progress,
)
from tests.unit.lifecycle.lifecycle_helpers import CountingStore, RecordingLog, new_record

API_KEY = "sk-deliver-tests-0123456789"
KEY = "videos/fox.mp4"
MANIFEST_KEY = KEY + ".json"
REQUEST = {"model": T2V, "prompt": "a red fox in snow", "duration": "5s", "resolution": "720p"}


@dataclass
class World:
    """The emulator, its client, moto's S3 and one task instance's store."""

    emulator: VeniceEmulator
    client: VeniceClient
    s3: Any
    store: CountingStore = field(default_factory=CountingStore)
    log: RecordingLog = field(default_factory=RecordingLog)

    def job(self, model: str = T2V) -> VeniceJob:
        return VeniceJob.from_xcom({**queue_job(self.emulator, model), "request_fingerprint": "fp" * 16})

    def deliver(
        self,
        job: VeniceJob,
        destination: Destination | None = None,
        store: CountingStore | None = None,
        abort: threading.Event | None = None,
    ) -> Delivery:
        return deliver_once(
            client=self.client,
            s3=self.s3,
            job=job,
            destination=destination or Destination(BUCKET, KEY),
            record=new_record(store or self.store, self.log),
            abort=abort or threading.Event(),
            log=self.log,
            request=REQUEST,
            task={"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1, "try_number": 1},
        )

    def downloads(self) -> int:
        calls = self.emulator.calls()
        return len(calls_to(calls, "/video/retrieve")) + len(calls_to(calls, "/_media", "GET"))


@pytest.fixture
def world(moto_s3: Any, venice: Callable[..., VeniceEmulator]) -> World:
    emulator = venice()
    client = VeniceClient(
        API_KEY, base_url=emulator.base_url, transport=emulator.sync_transport(), retry=NO_RETRY
    )
    return World(emulator, client, moto_s3)


def other_client() -> Any:
    """Another writer's S3 client (moto's in-process S3 is shared; no hooks of ours on it)."""
    return boto3.client("s3", region_name="us-east-1")


def sent(s3: Any, operation: str) -> list[Any]:
    """Record the requests ``operation`` sends on ``s3`` (botocore's ``before-send``)."""
    requests: list[Any] = []
    s3.meta.events.register(f"before-send.s3.{operation}", lambda request, **_: requests.append(request))
    return requests


def header(request: Any, name: str) -> str | None:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def on_verify(s3: Any, change: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
    """Change what S3 answers to the read-back after the upload (the HeadObject with checksums).

    Returns a function that stops changing it.
    """

    def flag(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        headers = {name.lower(): value for name, value in params.get("headers", {}).items()}
        context["venice_verify"] = headers.get("x-amz-checksum-mode") == "ENABLED"

    def alter(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if context.get("venice_verify") and "ContentLength" in parsed:
            change(parsed)

    s3.meta.events.register("before-call.s3.HeadObject", flag)
    s3.meta.events.register("after-call.s3.HeadObject", alter)

    def stop() -> None:
        s3.meta.events.unregister("before-call.s3.HeadObject", flag)
        s3.meta.events.unregister("after-call.s3.HeadObject", alter)

    return stop


# --- the ordinary delivery, as a base --------------------------------------------------------------


@pytest.mark.parametrize("model", [T2V, VPS])
def test_a_delivery_is_verified_recorded_and_committed_by_its_manifest(world: World, model: str) -> None:
    job = world.job(model)
    delivery = world.deliver(job)
    body = object_bytes(world.s3, BUCKET, KEY)
    assert body[4:8] == b"ftyp"
    assert delivery.sha256 == hashlib.sha256(body).hexdigest()
    assert delivery.size_bytes == len(body)
    assert (delivery.s3_uri, delivery.manifest_uri) == (
        f"s3://{BUCKET}/{KEY}",
        f"s3://{BUCKET}/{MANIFEST_KEY}",
    )
    head = world.s3.head_object(Bucket=BUCKET, Key=KEY)
    assert head["Metadata"]["venice-queue-id"] == job.queue_id
    assert head["Metadata"]["venice-model"] == model
    assert head["Metadata"][UPLOAD_TOKEN]
    assert delivery.etag == head["ETag"]
    manifest = read_manifest(world.s3, Destination(BUCKET, KEY))
    assert manifest is not None
    assert (manifest["kind"], manifest["queue_id"], manifest["etag"]) == (KIND, job.queue_id, head["ETag"])
    assert (manifest["size_bytes"], manifest["sha256"]) == (len(body), delivery.sha256)
    stored = world.store.record
    assert stored is not None
    assert stored["stage"] == "delivered"
    assert "upload" not in stored
    assert Delivery.from_record(stored["delivery"]) == delivery
    assert world.downloads() == 1
    assert uploads_in_progress(world.s3, BUCKET) == []


def test_a_large_video_is_delivered_in_parts(world: World) -> None:
    world.emulator.configure(video_bytes=MIN_PART_SIZE + 1000)
    delivery = world.deliver(world.job())
    assert delivery.size_bytes == MIN_PART_SIZE + 1000
    head = world.s3.head_object(Bucket=BUCKET, Key=KEY, ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-2"')
    assert head["ChecksumCRC32"] == delivery.checksum_crc32


PROBED = {
    "made": True,
    "duration_s": 5.0,
    "width": 1280,
    "height": 720,
    "frame_rate": 24.0,
    "video_codec": "h264",
    "has_audio": True,
    "audio_codec": "aac",
}
NO_PROBE = dict.fromkeys(("duration_s", "width", "height", "frame_rate", "video_codec", "has_audio"))


def test_the_result_of_a_delivery() -> None:
    delivery = Delivery(
        "s3://b/k",
        "b",
        "k",
        3,
        "s" * 64,
        "AAAAAA==",
        "video/mp4",
        '"e"',
        None,
        "s3://b/k.json",
        PROBED,
        "s3://b/k.poster.jpg",
    )
    job = VeniceJob(T2V, "q-1", quote_usd=0.35)
    assert delivery.result(job) == {
        "s3_uri": "s3://b/k",
        "bucket": "b",
        "key": "k",
        "size_bytes": 3,
        "sha256": "s" * 64,
        "checksum_crc32": "AAAAAA==",
        "content_type": "video/mp4",
        "manifest_uri": "s3://b/k.json",
        "poster_uri": "s3://b/k.poster.jpg",
        "duration_s": 5.0,
        "width": 1280,
        "height": 720,
        "frame_rate": 24.0,
        "video_codec": "h264",
        "has_audio": True,
        "model": T2V,
        "queue_id": "q-1",
        "quote_usd": 0.35,
    }
    assert Delivery.from_record(json.loads(json.dumps(asdict(delivery)))) == delivery
    assert Delivery.from_record({"s3_uri": "s3://b/k"}) is None
    assert Delivery.from_record("s3://b/k") is None


@pytest.mark.parametrize("probe", [None, {"made": False, "error": "InvalidDataError: no moov"}])
def test_the_result_of_a_delivery_without_probe_data_holds_none_for_it(probe: Any) -> None:
    delivery = Delivery("s3://b/k", "b", "k", 3, "s" * 64, "AAAAAA==", "video/mp4", '"e"', None, None, probe)
    result = delivery.result(VeniceJob(T2V, "q-1"))
    assert result["poster_uri"] is None
    assert {name: result[name] for name in NO_PROBE} == NO_PROBE
    assert "error" not in result
    assert "made" not in result


def test_a_delivery_recorded_before_probes_existed_reads_back() -> None:
    delivery = Delivery("s3://b/k", "b", "k", 3, "s" * 64, "AAAAAA==", "video/mp4", '"e"', None, None)
    older = {name: value for name, value in asdict(delivery).items() if name not in ("probe", "poster_uri")}
    assert Delivery.from_record(older) == delivery


# --- already delivered -----------------------------------------------------------------------------


def test_a_video_whose_manifest_matches_is_adopted_without_download(world: World) -> None:
    job = world.job()
    first = world.deliver(job)
    another_instance = CountingStore()  # e.g. the record was lost, or another task delivers the same job
    adopted = world.deliver(job, store=another_instance)
    assert world.downloads() == 1
    assert (adopted.etag, adopted.size_bytes, adopted.sha256) == (first.etag, first.size_bytes, first.sha256)
    assert adopted.checksum_crc32 == first.checksum_crc32
    assert another_instance.record is not None
    assert another_instance.record["stage"] == "delivered"
    assert "manifest says so" in world.log.text("info")


def test_a_recorded_delivery_still_in_place_is_not_downloaded_again(world: World) -> None:
    job = world.job()
    first = world.deliver(job)
    puts = sent(world.s3, "PutObject")
    assert world.deliver(job) == first
    assert world.downloads() == 1
    assert puts == []


def test_a_completed_job_is_not_even_looked_for(world: World) -> None:
    job = world.job()
    first = world.deliver(job)
    record = new_record(world.store)
    record.advance(Stage.COMPLETED)
    heads = sent(world.s3, "HeadObject")
    world.s3.delete_object(Bucket=BUCKET, Key=KEY)
    assert world.deliver(job) == first
    assert heads == []
    assert world.downloads() == 1


def test_a_recorded_delivery_that_is_gone_is_delivered_again(world: World) -> None:
    job = world.job()
    world.deliver(job)
    world.s3.delete_object(Bucket=BUCKET, Key=KEY)
    again = world.deliver(job)
    assert world.downloads() == 2
    assert object_exists(world.s3, BUCKET, KEY)
    assert again.etag == world.s3.head_object(Bucket=BUCKET, Key=KEY)["ETag"]
    assert "no longer holds" in world.log.text("warning")


def test_a_manifest_of_another_job_is_not_adopted(world: World) -> None:
    world.deliver(world.job())
    other_job = world.job()
    with pytest.raises(AirflowFailException, match="replace=False"):
        world.deliver(other_job, store=CountingStore())
    assert world.downloads() == 1


def test_a_manifest_that_does_not_match_the_object_is_not_adopted(world: World) -> None:
    job = world.job()
    world.deliver(job)
    other_client().put_object(Bucket=BUCKET, Key=KEY, Body=b"replaced by someone")
    with pytest.raises(AirflowFailException, match="replace=False"):
        world.deliver(job, store=CountingStore())
    assert object_bytes(world.s3, BUCKET, KEY) == b"replaced by someone"


# --- an object that is not ours ---------------------------------------------------------------------


def test_an_existing_object_without_manifest_is_refused_when_replace_is_false(world: World) -> None:
    other_client().put_object(Bucket=BUCKET, Key=KEY, Body=b"someone else's video")
    job = world.job()
    with pytest.raises(AirflowFailException) as caught:
        world.deliver(job)
    message = str(caught.value)
    assert f"s3://{BUCKET}/{KEY} exists and replace=False" in message
    assert "nothing was downloaded" in message
    assert job.queue_id in message
    assert world.downloads() == 0
    assert object_bytes(world.s3, BUCKET, KEY) == b"someone else's video"
    assert world.store.record is None  # not even an upload was started


def test_an_existing_object_is_replaced_when_replace_is_true(world: World) -> None:
    other_client().put_object(Bucket=BUCKET, Key=KEY, Body=b"an older video")
    delivery = world.deliver(world.job(), Destination(BUCKET, KEY, replace=True))
    assert object_bytes(world.s3, BUCKET, KEY)[4:8] == b"ftyp"
    assert delivery.size_bytes > 100


def test_a_key_taken_during_the_upload_is_left_to_the_other_writer(world: World) -> None:
    theirs = b"the other writer's video"
    raced: list[bool] = []

    def race(params: dict[str, Any], **_: Any) -> None:
        if not raced and not params["url_path"].endswith(".json"):
            raced.append(True)
            other_client().put_object(Bucket=BUCKET, Key=KEY, Body=theirs)

    world.s3.meta.events.register("before-call.s3.PutObject", race)
    job = world.job()
    with pytest.raises(DestinationTakenError) as caught:
        world.deliver(job)
    assert job.queue_id in str(caught.value)
    assert object_bytes(world.s3, BUCKET, KEY) == theirs
    assert not object_exists(world.s3, BUCKET, MANIFEST_KEY)
    assert world.store.record is not None
    # one PUT: no multipart upload to record; every byte had passed the checks before S3 was asked
    assert world.store.record["stage"] == "uploaded"
    assert world.store.record["upload"]["upload_id"] is None


# --- what an earlier try left -----------------------------------------------------------------------


def earlier_try(store: CountingStore, job: VeniceJob, token: str, upload_id: str | None) -> None:
    record = new_record(store)
    record.advance(Stage.QUEUED, job=job.to_xcom())
    record.advance(Stage.UPLOADING, upload={"token": token, "upload_id": upload_id})


def test_an_earlier_tries_multipart_upload_is_aborted(world: World) -> None:
    job = world.job()
    upload_id = world.s3.create_multipart_upload(Bucket=BUCKET, Key=KEY)["UploadId"]
    world.s3.upload_part(Bucket=BUCKET, Key=KEY, UploadId=upload_id, PartNumber=1, Body=b"x" * 100)
    earlier_try(world.store, job, "token-of-try-1", upload_id)
    world.deliver(job)
    assert uploads_in_progress(world.s3, BUCKET) == []
    assert upload_id in world.log.text("info")
    assert world.store.record is not None
    assert world.store.record["stage"] == "delivered"


def test_an_earlier_tries_upload_already_gone_is_fine(world: World) -> None:
    job = world.job()
    earlier_try(world.store, job, "token-of-try-1", "no-such-upload")
    assert world.deliver(job).size_bytes > 0


def test_an_object_carrying_the_recorded_token_is_removed_by_etag(world: World) -> None:
    job = world.job()
    leftover = other_client().put_object(
        Bucket=BUCKET,
        Key=KEY,
        Body=b"an unverified video of try 1",
        Metadata={UPLOAD_TOKEN: "token-of-try-1"},
    )
    earlier_try(world.store, job, "token-of-try-1", None)
    deletes = sent(world.s3, "DeleteObject")
    delivery = world.deliver(job)
    assert len(deletes) == 1
    assert header(deletes[0], "If-Match") == leftover["ETag"]
    assert world.downloads() == 1
    assert object_bytes(world.s3, BUCKET, KEY)[4:8] == b"ftyp"
    assert delivery.etag != leftover["ETag"]


def test_an_object_of_another_writer_is_never_removed(world: World) -> None:
    job = world.job()
    theirs = b"another writer's video"
    other_client().put_object(Bucket=BUCKET, Key=KEY, Body=theirs, Metadata={UPLOAD_TOKEN: "their-token"})
    earlier_try(world.store, job, "token-of-try-1", None)
    deletes = sent(world.s3, "DeleteObject")
    with pytest.raises(AirflowFailException, match="replace=False"):
        world.deliver(job)
    assert deletes == []
    assert object_bytes(world.s3, BUCKET, KEY) == theirs
    assert world.downloads() == 0


def test_an_object_without_token_is_never_removed(world: World) -> None:
    job = world.job()
    other_client().put_object(Bucket=BUCKET, Key=KEY, Body=b"plain object")
    earlier_try(world.store, job, "token-of-try-1", None)
    deletes = sent(world.s3, "DeleteObject")
    with pytest.raises(AirflowFailException):
        world.deliver(job)
    assert deletes == []
    assert object_bytes(world.s3, BUCKET, KEY) == b"plain object"


# --- checks after the upload -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda head: head.update(ContentLength=head["ContentLength"] + 1), "bytes, not the"),
        (
            lambda head: head.update(ChecksumCRC32="AAAAAA==", ChecksumType="FULL_OBJECT"),
            "has CRC32 AAAAAA==",
        ),
    ],
    ids=["size", "crc32"],
)
def test_a_failed_check_removes_only_this_tries_own_object(
    world: World, change: Callable[[dict[str, Any]], None], words: str
) -> None:
    stop = on_verify(world.s3, change)
    deletes = sent(world.s3, "DeleteObject")
    job = world.job()
    with pytest.raises(VideoDeliveryError) as caught:
        world.deliver(job)
    message = str(caught.value)
    assert words in message
    assert "removed this try's object" in message
    assert job.queue_id in message
    assert len(deletes) == 1
    assert header(deletes[0], "If-Match")  # only if it is still this try's object
    assert not object_exists(world.s3, BUCKET, KEY)
    assert not object_exists(world.s3, BUCKET, MANIFEST_KEY)
    assert world.store.record is not None
    assert world.store.record["stage"] == "uploaded"  # sealed by us, refused by the read-back
    # the next try finds nothing to commit and delivers again
    stop()
    delivery = world.deliver(job)
    assert world.downloads() == 2
    assert delivery.size_bytes == world.s3.head_object(Bucket=BUCKET, Key=KEY)["ContentLength"]


def test_an_object_replaced_right_after_the_upload_is_left_alone(world: World) -> None:
    theirs = b"written right after ours"
    raced: list[bool] = []

    def race(params: dict[str, Any], **_: Any) -> None:
        headers = {name.lower(): value for name, value in params.get("headers", {}).items()}
        if not raced and headers.get("x-amz-checksum-mode") == "ENABLED":
            raced.append(True)
            other_client().put_object(Bucket=BUCKET, Key=KEY, Body=theirs)

    world.s3.meta.events.register("before-call.s3.HeadObject", race)
    deletes = sent(world.s3, "DeleteObject")
    with pytest.raises(VideoDeliveryError, match="replaced by another writer"):
        world.deliver(world.job())
    assert deletes == []
    assert object_bytes(world.s3, BUCKET, KEY) == theirs
    assert not object_exists(world.s3, BUCKET, MANIFEST_KEY)


def test_a_body_cut_short_leaves_nothing_and_keeps_the_job(world: World) -> None:
    world.emulator.add_faults({"endpoint": "/video/retrieve", "action": "truncate"})
    job = world.job()
    with pytest.raises(AirflowException) as caught:
        world.deliver(job)
    assert job.queue_id in str(caught.value)
    assert_nothing_left(world.s3, BUCKET, KEY)
    assert world.emulator.jobs()[0]["media_deleted"] is False


def test_a_killed_task_stops_the_delivery_and_leaves_nothing(world: World) -> None:
    abort = threading.Event()
    abort.set()
    with pytest.raises(VideoDeliveryError, match="cancelled"):
        world.deliver(world.job(), abort=abort)
    assert_nothing_left(world.s3, BUCKET, KEY)
    assert world.store.record is None


def test_an_expired_download_url_says_the_video_is_lost(world: World) -> None:
    job = world.job(VPS)
    assert job.download_url
    world.client.delete_download_url(job.download_url)
    with pytest.raises(AirflowFailException) as caught:
        world.deliver(job)
    assert "can no longer be fetched" in str(caught.value)
    assert job.queue_id in str(caught.value)
    assert_nothing_left(world.s3, BUCKET, KEY)


def test_a_store_refusing_the_upload_record_writes_nothing(world: World) -> None:
    store = CountingStore(fail_on_set=[1])
    with pytest.raises(AirflowException) as caught:
        world.deliver(world.job(), store=store)
    assert "nothing was written" in str(caught.value)
    assert_nothing_left(world.s3, BUCKET, KEY)


# --- the commit order -------------------------------------------------------------------------------


@pytest.mark.parametrize("multipart", [False, True], ids=["one-put", "multipart"])
def test_the_manifest_follows_the_video_and_the_record_follows_the_manifest(
    world: World, multipart: bool
) -> None:
    if multipart:
        world.emulator.configure(video_bytes=MIN_PART_SIZE + 1000)
    events: list[str] = []
    reader = other_client()

    def written(value: dict[str, Any]) -> None:
        events.append(f"record {value['stage']}")
        if value["stage"] == "delivered":
            assert object_exists(reader, BUCKET, MANIFEST_KEY), (
                "delivered recorded before the manifest exists"
            )

    def put(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["venice_name"] = params["url_path"].rsplit("/", 1)[-1]
        events.append(f"put {context['venice_name']}")

    def stored(context: dict[str, Any], **_: Any) -> None:
        events.append(f"stored {context['venice_name']}")

    for operation in ("PutObject", "CompleteMultipartUpload"):
        world.s3.meta.events.register(f"before-call.s3.{operation}", put)
        world.s3.meta.events.register(f"after-call.s3.{operation}", stored)
    world.store.before_set = written
    world.deliver(world.job())
    started = ["record uploading"] if multipart else []  # a multipart upload exists before any part
    assert events == [
        *started,
        "record uploaded",  # every byte passed the checks: sealed before S3 is asked to commit
        "put fox.mp4",
        "stored fox.mp4",
        "put fox.mp4.poster.jpg",
        "stored fox.mp4.poster.jpg",
        "put fox.mp4.json",
        "stored fox.mp4.json",
        "record delivered",
    ]
    uploads = [value.get("upload") for value in world.store.written]
    sealed = uploads[len(started)]
    assert sealed is not None
    assert set(sealed) == {"token", "upload_id", "size", "crc32", "sha256"}
    assert (sealed["upload_id"] is not None) == multipart
    if multipart:
        assert uploads[0] == {"token": sealed["token"], "upload_id": sealed["upload_id"]}
    head = world.s3.head_object(Bucket=BUCKET, Key=KEY)
    assert sealed["token"] == head["Metadata"][UPLOAD_TOKEN]
    assert sealed["size"] == head["ContentLength"]
    assert sealed["sha256"] == hashlib.sha256(object_bytes(world.s3, BUCKET, KEY)).hexdigest()


def test_a_failed_manifest_write_is_not_a_delivery(world: World) -> None:
    def refuse(params: dict[str, Any], **_: Any) -> None:
        if params["url_path"].endswith(".json"):
            raise ConnectionError("S3 endpoint unreachable")

    world.s3.meta.events.register("before-call.s3.PutObject", refuse)
    job = world.job()
    with pytest.raises(VideoDeliveryError) as caught:
        world.deliver(job)
    assert "writing the manifest" in str(caught.value)
    assert job.queue_id in str(caught.value)
    assert world.store.record is not None
    assert world.store.record["stage"] == "uploaded"
    assert not object_exists(world.s3, BUCKET, KEY)  # this try removed its own uncommitted video
    # so the next try has nothing to commit and delivers again
    world.s3.meta.events.unregister("before-call.s3.PutObject", refuse)
    world.deliver(job)
    assert world.downloads() == 2
    assert world.store.record["stage"] == "delivered"


def test_a_failed_delivered_record_is_adopted_by_the_next_try(world: World) -> None:
    store = CountingStore(fail_on_set=[2])  # one PUT: 1: uploaded, 2: delivered
    job = world.job()
    with pytest.raises(AirflowException):
        world.deliver(job, store=store)
    assert object_exists(world.s3, BUCKET, MANIFEST_KEY)
    world.deliver(job, store=store)
    assert world.downloads() == 1
    assert store.record is not None
    assert store.record["stage"] == "delivered"


def test_no_manifest_key_means_no_manifest(world: World) -> None:
    delivery = world.deliver(world.job(), Destination(BUCKET, KEY, manifest_key=""))
    assert delivery.manifest_uri is None
    keys = [item["Key"] for item in world.s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == [KEY, KEY + ".poster.jpg"]
    assert world.store.record is not None
    assert world.store.record["stage"] == "delivered"


def test_no_manifest_key_and_no_poster_key_leave_the_video_alone(world: World) -> None:
    delivery = world.deliver(world.job(), Destination(BUCKET, KEY, manifest_key="", poster_key=""))
    assert (delivery.manifest_uri, delivery.poster_uri) == (None, None)
    assert [item["Key"] for item in world.s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == [KEY]
    assert delivery.probe is not None
    assert delivery.probe["made"] is True  # probed all the same


def test_no_secret_reaches_s3_the_record_or_the_log(world: World) -> None:
    world.deliver(world.job(VPS))
    head = world.s3.head_object(Bucket=BUCKET, Key=KEY)
    manifest = object_bytes(world.s3, BUCKET, MANIFEST_KEY).decode()
    places = [
        json.dumps(head["Metadata"]),
        manifest,
        json.dumps(world.store.data[RECORD_KEY]),
        world.log.text(),
    ]
    for text in places:
        assert API_KEY not in text
        assert "authorization" not in text.lower()
        assert "bearer" not in text.lower()
