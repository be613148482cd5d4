"""VeniceGenerateVideoOperator: queue, wait, deliver to S3, complete, resumably across tries.

Runs against the in-process emulator and moto's in-process S3; a try is a fresh operator instance
with the same task state store, as Airflow does it. Every delivery test runs twice: with an emulator
that answers a finished job's ``/video/retrieve`` with the mp4 whatever the ``Accept`` header, and with
one that answers JSON ``COMPLETED`` when the header names ``application/json`` (issue 12, #8).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
import zlib
from datetime import timedelta
from typing import Any

import pytest
import structlog
from airflow.sdk import DAG, Asset, AssetAlias

from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator
from airflow_provider_venice.triggers.video import VeniceVideoTrigger
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException, TaskDeferred
from tests.integration import s3_fixtures
from tests.integration.s3_fixtures import (
    ASSET_EXTRA_KEYS,
    BUCKET,
    MB,
    RECORD_KEY,
    REQUESTS,
    RESULT_KEYS,
    T2V,
    VPS,
    AlteredVideo,
    FailingStore,
    FakeStore,
    FakeTaskInstance,
    ProcessKilled,
    RewriteJson,
    alias_events,
    another_writer_races,
    assert_nothing_left,
    calls_to,
    check_poster_and_probe,
    job_state,
    kill_at_write,
    kill_during_upload,
    make_context,
    object_bytes,
    object_exists,
    read_manifest,
    rename_box,
    uploads_in_progress,
    venice_paths,
    video_downloads,
)

aws_env = s3_fixtures.aws_env
moto_s3 = s3_fixtures.moto_s3
venice = s3_fixtures.venice_each_accept_mode

KEY = "generated/0.mp4"
GRACE_S = 300  # the deferral outlives the trigger's own deadline by this much


def generate(model: str = T2V, **kwargs: Any) -> VeniceGenerateVideoOperator:
    arguments: dict[str, Any] = {
        **REQUESTS[model],
        "s3_bucket": BUCKET,
        "s3_key": KEY,
        "deferrable": False,
        "window_interval_s": 0.05,
        **kwargs,
    }
    return VeniceGenerateVideoOperator(task_id="generate", **arguments)


def counts(calls: list[dict[str, Any]]) -> dict[str, int]:
    tally = {
        endpoint: len(calls_to(calls, endpoint))
        for endpoint in ("/video/quote", "/video/queue", "/video/retrieve", "/_media", "/video/complete")
    }
    tally["downloads"] = len(video_downloads(calls))
    return tally


def crc32_b64(body: bytes) -> str:
    return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()


def check_result(s3: Any, result: dict[str, Any], model: str, key: str = KEY) -> dict[str, Any]:
    """The result describes the object exactly; the object is a verified mp4; its manifest matches."""
    assert set(result) == RESULT_KEYS
    body = object_bytes(s3, BUCKET, key)
    head = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    assert result["s3_uri"] == f"s3://{BUCKET}/{key}"
    assert (result["bucket"], result["key"]) == (BUCKET, key)
    assert result["sha256"] == hashlib.sha256(body).hexdigest()
    assert result["size_bytes"] == len(body) == head["ContentLength"] > 0
    assert result["checksum_crc32"] == crc32_b64(body)
    # moto keeps the checksum of multipart uploads only; S3 keeps it for every write
    assert head.get("ChecksumCRC32", result["checksum_crc32"]) == result["checksum_crc32"]
    assert result["content_type"] == head["ContentType"] == "video/mp4"
    assert body[4:8] == b"ftyp"
    assert result["model"] == model
    assert result["quote_usd"] is not None
    assert result["quote_usd"] > 0
    assert result["manifest_uri"] == f"s3://{BUCKET}/{key}.json"
    manifest = read_manifest(s3, BUCKET, key)
    assert manifest["kind"] == "airflow-provider-venice/video"
    assert manifest["s3_uri"] == result["s3_uri"]
    for field in ("queue_id", "model", "quote_usd", "sha256", "size_bytes", "checksum_crc32"):
        assert manifest[field] == result[field], field
    assert manifest["etag"].strip('"') == head["ETag"].strip('"')
    checksum = {"algorithm": "CRC32", "type": "FULL_OBJECT", "value": result["checksum_crc32"]}
    assert manifest["s3_checksum"] == checksum
    # probed by ranged reads once verified: the emulator's video lasts as long as was asked for
    probe = check_poster_and_probe(s3, result)
    assert result["poster_uri"] == f"s3://{BUCKET}/{key}.poster.jpg"
    assert probe["duration_s"] == pytest.approx(float(manifest["request"]["duration"].rstrip("s")), abs=0.1)
    return manifest


def run_trigger(trigger: VeniceVideoTrigger) -> dict[str, Any]:
    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            payload: dict[str, Any] = event.payload
            return payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first_event(), 30))


def defer(op: VeniceGenerateVideoOperator, context: dict[str, Any]) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    return deferred.value


def triggered(deferred: TaskDeferred) -> VeniceVideoTrigger:
    """The trigger as the triggerer rebuilds it from its serialised form, due at once."""
    classpath, kwargs = deferred.trigger.serialize()
    assert classpath == "airflow_provider_venice.triggers.video.VeniceVideoTrigger"
    return VeniceVideoTrigger(**{**kwargs, "next_poll_at": 0.0})


# --- the contract --------------------------------------------------------------------------------


def test_defaults_wait_in_the_triggerer_push_each_key_and_announce_through_the_alias():
    op = VeniceGenerateVideoOperator(
        task_id="g", model=T2V, prompt="p", duration="5s", s3_bucket=BUCKET, s3_key=KEY
    )
    assert op.deferrable is True  # issue 12, #15: the README's first DAG must not hold a worker slot
    assert op.multiple_outputs is True
    assert op.outlets == [AssetAlias("venice-videos")]
    assert {"s3_key", "manifest_key", "poster_key"} <= set(op.template_fields)
    assert (op.poster_key, op.poster_format, op.poster_max_side) == (None, "jpeg", 640)
    assert op.s3_checksum == "FULL_OBJECT"


def test_a_mapped_generate_task_announces_through_the_alias_too():
    # .partial() fills outlets=[] (Airflow's default) before __init__ runs: the alias must survive it
    with DAG("mapped_outlets", schedule=None):
        mapped = VeniceGenerateVideoOperator.partial(
            task_id="g", model=T2V, duration="5s", s3_bucket=BUCKET
        ).expand(prompt=["a", "b"], s3_key=["a.mp4", "b.mp4"])
        own = VeniceGenerateVideoOperator.partial(
            task_id="own", model=T2V, duration="5s", s3_bucket=BUCKET, outlets=[]
        ).expand(prompt=["a"], s3_key=["a.mp4"])
    assert mapped.outlets == [AssetAlias("venice-videos")]
    assert own.outlets == []


def test_poster_options_reach_the_delivery(venice, moto_s3):
    venice()

    result = generate(poster_key="posters/0.webp", poster_format="webp", poster_max_side=64).execute(
        make_context()
    )

    check_poster_and_probe(moto_s3, result, max_side=64)
    assert result["poster_uri"] == f"s3://{BUCKET}/posters/0.webp"
    assert moto_s3.head_object(Bucket=BUCKET, Key="posters/0.webp")["ContentType"] == "image/webp"
    assert not object_exists(moto_s3, BUCKET, KEY + ".poster.jpg")


def test_no_poster_when_asked_for_none_but_the_probe_data_all_the_same(venice, moto_s3):
    venice()

    result = generate(poster_key="").execute(make_context())

    probe = check_poster_and_probe(moto_s3, result, poster=False)
    assert probe["duration_s"] == pytest.approx(5.0, abs=0.1)
    listed = [item["Key"] for item in moto_s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert sorted(listed) == [KEY, KEY + ".json"]


def test_s3_checksum_none_reaches_the_manifest(venice, moto_s3):
    venice()

    result = generate(s3_checksum="NONE").execute(make_context())

    assert read_manifest(moto_s3, BUCKET, KEY)["s3_checksum"] is None
    assert result["sha256"] == hashlib.sha256(object_bytes(moto_s3, BUCKET, KEY)).hexdigest()


def test_a_bad_s3_checksum_or_poster_setting_fails_before_anything_is_paid(venice):
    emulator = venice()

    with pytest.raises(AirflowFailException, match=r"^s3_checksum: "):
        generate(s3_checksum="MD5").execute(make_context())
    with pytest.raises(AirflowFailException, match=r"^poster_format: "):
        generate(poster_format="gif").execute(make_context())

    assert emulator.calls() == []


@pytest.mark.parametrize("model", [T2V, VPS])
def test_generate_end_to_end_without_deferring(venice, moto_s3, model):
    emulator = venice()
    context = make_context(ti=FakeTaskInstance())

    result = generate(model).execute(context)

    manifest = check_result(moto_s3, result, model)
    assert manifest["request"]["prompt"] == REQUESTS[model]["prompt"]
    assert manifest["task"]["task_id"] == "generate"
    calls = emulator.calls()
    assert calls_to(calls, "/video/queue")[0]["body"]["prompt"] == REQUESTS[model]["prompt"]
    tally = counts(calls)
    assert tally["/video/quote"] == tally["/video/queue"] == tally["/video/complete"] == 1
    assert tally["downloads"] == 1
    assert all(
        call["body"]["delete_media_on_completion"] is False for call in calls_to(calls, "/video/retrieve")
    )
    if model == VPS:
        assert venice_paths(calls)[-3:] == ["GET /_media", "DELETE /_media", "POST /api/v1/video/complete"]
        assert all("authorization" not in call for call in calls_to(calls, "/_media"))
    else:
        assert venice_paths(calls)[-2:] == ["POST /api/v1/video/retrieve", "POST /api/v1/video/complete"]
    assert job_state(emulator, result["queue_id"])["media_deleted"] is True
    assert context["task_state_store"].get(RECORD_KEY)["stage"] == "completed"
    assert uploads_in_progress(moto_s3, BUCKET) == []
    # the asset event for the concrete object, through the alias, carries the job and its cost
    [(asset, extra)] = alias_events(context)
    assert asset == Asset(result["s3_uri"])
    assert set(extra) == ASSET_EXTRA_KEYS
    assert extra == {key: result[key] for key in ASSET_EXTRA_KEYS}


def test_a_large_video_goes_up_in_parts_with_a_full_object_crc32(venice, moto_s3):
    venice(video_bytes=20 * MB)
    op = generate()
    operations: list[str] = []
    op.s3_hook.get_conn().meta.events.register(
        "before-call.s3", lambda model, **_: operations.append(model.name)
    )

    result = op.execute(make_context())

    check_result(moto_s3, result, T2V)
    assert result["size_bytes"] == 20 * MB
    assert operations.count("UploadPart") >= 2
    assert operations.count("CompleteMultipartUpload") == 1
    assert "CopyObject" not in operations  # the checksum is S3's own, computed on the write
    head = moto_s3.head_object(Bucket=BUCKET, Key=KEY, ChecksumMode="ENABLED")
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (result["checksum_crc32"], "FULL_OBJECT")


# --- deferral ------------------------------------------------------------------------------------


def test_deferrable_generate_defers_with_a_timeout_then_delivers_in_execute_complete(venice, moto_s3):
    emulator = venice(job_seconds=600)
    context = make_context()

    deferred = defer(generate(deferrable=True, wait_timeout=timedelta(hours=2)), context)

    assert deferred.method_name == "execute_complete"
    # a deployment without a triggerer fails the try once the deadline and a grace have passed
    assert deferred.timeout is not None
    assert timedelta(hours=2) < deferred.timeout <= timedelta(hours=2, seconds=GRACE_S)
    assert deferred.trigger.serialize()[1]["deadline"] > 0
    assert not object_exists(moto_s3, BUCKET, KEY)
    assert counts(emulator.calls())["downloads"] == 0
    emulator.advance(1200)
    event = run_trigger(triggered(deferred))
    assert event["status"] == "success"

    # back from the triggerer: a fresh operator instance, the same task state store
    result = generate(deferrable=True).execute_complete(context, event)

    check_result(moto_s3, result, T2V)
    tally = counts(emulator.calls())
    assert (tally["/video/queue"], tally["/video/complete"], tally["downloads"]) == (1, 1, 1)
    assert alias_events(context)[0][1]["queue_id"] == result["queue_id"]


@pytest.mark.parametrize(
    "event",
    [
        None,
        {},
        {"status": "maybe"},
        {"status": "SUCCESS"},
        {"status": "error", "message": "Venice job q ended with status FAILED"},
        {"status": "timeout", "message": "still unfinished"},
        {"status": "success", "queue_id": "someone-elses-job"},
    ],
)
def test_execute_complete_refuses_bad_or_error_events_without_delivering(venice, moto_s3, event):
    emulator = venice(job_seconds=600)
    context = make_context()
    defer(generate(deferrable=True), context)
    before = len(emulator.calls())

    with pytest.raises(AirflowException):
        generate(deferrable=True).execute_complete(context, event)

    assert emulator.calls()[before:] == []
    assert_nothing_left(moto_s3, BUCKET, KEY)


def test_a_retry_after_a_timeout_event_resumes_the_job_without_paying_again(venice, moto_s3):
    """The trigger's deadline passed; the task is retried (a new try) and the job has finished since."""
    emulator = venice(job_seconds=600)
    store = FakeStore()
    deferred = defer(generate(deferrable=True, wait_timeout=1), make_context(store))
    event = run_trigger(triggered(deferred))
    assert event["status"] == "timeout"
    with pytest.raises(AirflowException) as timed_out:
        generate(deferrable=True).execute_complete(make_context(store), event)
    assert not isinstance(timed_out.value, AirflowFailException)  # retries apply
    emulator.advance(1200)

    result = generate(deferrable=True).execute(make_context(store))

    check_result(moto_s3, result, T2V)
    tally = counts(emulator.calls())
    assert (tally["/video/queue"], tally["/video/complete"], tally["downloads"]) == (1, 1, 1)


# --- retries: never pay twice, never deliver twice ------------------------------------------------


def break_delivery(how: str, emulator: Any, s3: Any) -> None:
    if how == "truncated-body":  # the VPS download (status checks go to /video/retrieve, untouched)
        emulator.add_faults({"endpoint": "/_media", "method": "GET", "action": "truncate"})
    else:
        s3.delete_bucket(Bucket=BUCKET)


def repair_delivery(how: str, emulator: Any, s3: Any) -> None:
    if how == "truncated-body":
        emulator.state.faults.clear()
    else:
        s3.create_bucket(Bucket=BUCKET)


@pytest.mark.parametrize(("how", "model"), [("truncated-body", VPS), ("missing-bucket", T2V)])
def test_retry_after_a_failed_upload_resumes_without_queueing_again(venice, moto_s3, how, model):
    emulator = venice()
    store = FakeStore()
    break_delivery(how, emulator, moto_s3)

    with pytest.raises(AirflowException) as first_try:
        generate(model).execute(make_context(store))

    record = store.get(RECORD_KEY)
    queue_id = record["job"]["queue_id"]
    # a body cut short fails its checks before anything is sealed; a missing bucket refuses the one PUT
    # of a video whose every byte passed them (sealed: "uploaded", with no object to commit later)
    assert record["stage"] == ("queued" if how == "truncated-body" else "uploaded")
    assert queue_id in str(first_try.value)
    assert counts(emulator.calls())["/video/complete"] == 0
    assert job_state(emulator, queue_id)["media_deleted"] is False
    repair_delivery(how, emulator, moto_s3)
    assert_nothing_left(moto_s3, BUCKET, KEY)

    result = generate(model).execute(make_context(store))

    check_result(moto_s3, result, model)
    assert result["queue_id"] == queue_id
    tally = counts(emulator.calls())
    assert (tally["/video/quote"], tally["/video/queue"], tally["/video/complete"]) == (1, 1, 1)
    assert store.get(RECORD_KEY)["stage"] == "completed"


@pytest.mark.parametrize("model", [T2V, VPS])
def test_retry_after_delivery_only_completes(venice, moto_s3, model):
    emulator = venice()
    store = FakeStore()
    emulator.add_faults({"endpoint": "/video/complete", "status": 503})

    with pytest.raises(AirflowException, match="safely in"):
        generate(model).execute(make_context(store))

    assert store.get(RECORD_KEY)["stage"] == "delivered"
    stored = object_bytes(moto_s3, BUCKET, KEY)
    before = len(emulator.calls())
    context = make_context(store)

    result = generate(model).execute(context)

    calls = emulator.calls()[before:]
    assert calls_to(calls, "/video/complete")[-1]["status"] == (400 if model == VPS else 200)
    expected = (
        ["POST /api/v1/video/complete"] if model == T2V else ["DELETE /_media", "POST /api/v1/video/complete"]
    )
    assert venice_paths(calls) == expected
    assert result["sha256"] == hashlib.sha256(stored).hexdigest()
    assert store.get(RECORD_KEY)["stage"] == "completed"
    assert alias_events(context)[0][1]["queue_id"] == result["queue_id"]

    # a further try after completion calls Venice no more, and still reports the video
    before = len(emulator.calls())
    assert generate(model).execute(make_context(store)) == result
    assert emulator.calls()[before:] == []


def test_a_try_killed_mid_upload_leaves_an_upload_the_next_try_aborts_then_delivers_once(venice, moto_s3):
    """Issue 12, #14: the killed try's multipart upload is in the record; the next try aborts it."""
    emulator = venice(video_bytes=20 * MB)
    store = FakeStore()
    op = generate()
    left = kill_during_upload(op.s3_hook.get_conn(), at_part=2)

    with pytest.raises(ProcessKilled):
        op.execute(make_context(store))

    record = store.get(RECORD_KEY)
    assert record["stage"] == "uploading"
    assert [upload["UploadId"] for upload in uploads_in_progress(moto_s3, BUCKET)] == left
    assert record["upload"]["upload_id"] == left[0]

    result = generate().execute(make_context(store))

    check_result(moto_s3, result, T2V)
    assert uploads_in_progress(moto_s3, BUCKET) == []
    tally = counts(emulator.calls())
    assert (tally["/video/queue"], tally["/video/complete"]) == (1, 1)
    assert store.get(RECORD_KEY)["stage"] == "completed"


def test_on_kill_during_an_upload_aborts_it_and_keeps_the_job(venice, moto_s3):
    emulator = venice(video_bytes=40 * MB)
    store = FakeStore()
    op = generate()
    uploading, killed = threading.Event(), threading.Event()

    def parts_in_flight(**_: Any) -> None:  # every part waits until on_kill was called
        uploading.set()
        killed.wait(30)

    op.s3_hook.get_conn().meta.events.register("before-call.s3.UploadPart", parts_in_flight)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            op.execute(make_context(store))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert uploading.wait(30), "the upload did not start"
        op.on_kill()
    finally:
        killed.set()
        worker.join(60)
    assert not worker.is_alive()

    [error] = errors
    assert "cancelled" in str(error)
    queue_id = store.get(RECORD_KEY)["job"]["queue_id"]
    assert queue_id in str(error)
    assert_nothing_left(moto_s3, BUCKET, KEY)
    assert counts(emulator.calls())["/video/complete"] == 0
    assert job_state(emulator, queue_id)["media_deleted"] is False


@pytest.mark.parametrize("size", [MB, 20 * MB], ids=["single-put", "multipart"])
def test_a_try_killed_before_the_manifest_is_committed_without_a_second_download(venice, moto_s3, size):
    """Issue 13 (was issue 12, #6, "delivers anew"): the killed try had sealed its upload (size, CRC32,
    token recorded) and S3 holds that object whole, so the next try commits it: no second download."""
    emulator = venice(video_bytes=size)
    store = FakeStore()
    op = generate()
    killed = kill_at_write(op.s3_hook.get_conn(), "PutObject", KEY + ".json")

    with pytest.raises(ProcessKilled):
        op.execute(make_context(store))

    assert killed
    assert object_exists(moto_s3, BUCKET, KEY)  # the video is there, not yet committed by a manifest
    assert not object_exists(moto_s3, BUCKET, KEY + ".json")
    assert counts(emulator.calls())["/video/complete"] == 0
    record = store.get(RECORD_KEY)
    assert record["stage"] == "uploaded"
    head = moto_s3.head_object(Bucket=BUCKET, Key=KEY)
    assert record["upload"]["token"] == head["Metadata"]["venice-upload-token"]
    assert record["upload"]["size"] == head["ContentLength"]
    first = head["ETag"]

    result = generate().execute(make_context(store))

    check_result(moto_s3, result, T2V)
    assert moto_s3.head_object(Bucket=BUCKET, Key=KEY)["ETag"] == first  # the same object, committed
    assert result["sha256"] == record["upload"]["sha256"]
    tally = counts(emulator.calls())
    assert tally["downloads"] == 1
    assert (tally["/video/queue"], tally["/video/complete"]) == (1, 1)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda upload: upload.update(crc32=upload["crc32"] ^ 1),
        lambda upload: upload.update(size=upload["size"] + 1),
    ],
    ids=["crc32", "size"],
)
def test_a_try_killed_before_the_manifest_whose_object_does_not_match_is_delivered_anew(
    venice, moto_s3, spoil
):
    """Issue 12, #6, still: an object that does not match what its try sealed is never committed."""
    emulator = venice()
    store = FakeStore()
    op = generate()
    kill_at_write(op.s3_hook.get_conn(), "PutObject", KEY + ".json")
    with pytest.raises(ProcessKilled):
        op.execute(make_context(store))
    first = store.data[RECORD_KEY]["upload"]["token"]
    spoil(store.data[RECORD_KEY]["upload"])

    result = generate().execute(make_context(store))

    check_result(moto_s3, result, T2V)
    assert moto_s3.head_object(Bucket=BUCKET, Key=KEY)["Metadata"]["venice-upload-token"] != first
    tally = counts(emulator.calls())
    assert tally["downloads"] == 2  # trusted nothing it could not verify
    assert (tally["/video/queue"], tally["/video/complete"]) == (1, 1)


def test_a_try_killed_after_the_manifest_is_taken_as_delivered_without_a_second_download(venice, moto_s3):
    """Issue 12, #6: a video whose manifest matches it is delivered, whatever the record says."""
    emulator = venice()
    store = FailingStore("delivered", error=ProcessKilled("killed before recording the delivery"))

    with pytest.raises(ProcessKilled):
        generate().execute(make_context(store))

    assert store.get(RECORD_KEY)["stage"] == "uploaded"
    first = object_bytes(moto_s3, BUCKET, KEY)

    result = generate().execute(make_context(store))

    check_result(moto_s3, result, T2V)
    assert object_bytes(moto_s3, BUCKET, KEY) == first
    tally = counts(emulator.calls())
    assert (tally["downloads"], tally["/video/queue"], tally["/video/complete"]) == (1, 1, 1)


def test_a_manifest_that_no_longer_matches_the_object_is_not_trusted(venice, moto_s3):
    """Another writer replaced the video after its manifest was written: nothing is claimed or removed."""
    emulator = venice()
    store = FailingStore("delivered", error=ProcessKilled("killed before recording the delivery"))
    with pytest.raises(ProcessKilled):
        generate().execute(make_context(store))
    queue_id = store.get(RECORD_KEY)["job"]["queue_id"]
    moto_s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"another writer's video")

    with pytest.raises(AirflowFailException, match="replace=False") as caught:
        generate().execute(make_context(store))

    assert queue_id in str(caught.value)
    assert object_bytes(moto_s3, BUCKET, KEY) == b"another writer's video"
    assert counts(emulator.calls())["/video/complete"] == 0
    assert job_state(emulator, queue_id)["media_deleted"] is False


# --- replace=False holds at the write ------------------------------------------------------------


@pytest.mark.parametrize("size", [MB, 20 * MB], ids=["single-put", "multipart"])
def test_another_writer_creating_the_key_during_the_upload_wins_and_the_job_is_kept(venice, moto_s3, size):
    """Issue 12, #3: ``If-None-Match: *`` on the write; the losing job is not completed."""
    emulator = venice(video_bytes=size)
    store = FakeStore()
    op = generate()
    raced = another_writer_races(op.s3_hook.get_conn(), moto_s3, BUCKET, KEY)

    with pytest.raises(AirflowFailException) as caught:
        op.execute(make_context(store))

    assert raced == ["PutObject" if size == MB else "CompleteMultipartUpload"]
    queue_id = store.get(RECORD_KEY)["job"]["queue_id"]
    assert queue_id in str(caught.value)
    assert object_bytes(moto_s3, BUCKET, KEY) == b"theirs"
    assert not object_exists(moto_s3, BUCKET, KEY + ".json")
    assert uploads_in_progress(moto_s3, BUCKET) == []
    assert counts(emulator.calls())["/video/complete"] == 0
    assert job_state(emulator, queue_id)["media_deleted"] is False
    assert store.get(RECORD_KEY)["stage"] not in ("delivered", "completed")

    # a retry neither overwrites nor removes the other writer's object, nor completes the job
    with pytest.raises(AirflowFailException, match="replace=False"):
        generate().execute(make_context(store))
    assert object_bytes(moto_s3, BUCKET, KEY) == b"theirs"
    assert counts(emulator.calls())["/video/complete"] == 0
    assert counts(emulator.calls())["/video/queue"] == 1


def test_with_replace_true_an_object_replaced_before_verification_is_not_claimed(venice, moto_s3):
    emulator = venice()
    op = generate(replace=True)
    raced = another_writer_races(op.s3_hook.get_conn(), moto_s3, BUCKET, KEY, after=True)

    with pytest.raises(AirflowException) as caught:
        op.execute(make_context())

    assert raced
    assert "another writer" in str(caught.value)
    assert object_bytes(moto_s3, BUCKET, KEY) == b"theirs"  # clean-up removes only its own object
    assert not object_exists(moto_s3, BUCKET, KEY + ".json")
    assert counts(emulator.calls())["/video/complete"] == 0


def test_existing_key_with_replace_false_fails_before_queueing(venice, moto_s3):
    emulator = venice()
    moto_s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"keep me")

    with pytest.raises(AirflowFailException, match="nothing was queued"):
        generate().execute(make_context())

    assert counts(emulator.calls())["/video/queue"] == 0
    assert counts(emulator.calls())["/video/quote"] == 0
    assert object_bytes(moto_s3, BUCKET, KEY) == b"keep me"


def test_replace_true_overwrites_an_existing_key(venice, moto_s3):
    venice()
    moto_s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"old")

    result = generate(replace=True).execute(make_context())

    check_result(moto_s3, result, T2V)


# --- a cleared task whose request changed ---------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "a grey wolf in snow"},
        {"model": VPS, "duration": "6s", "resolution": None},
        {"s3_key": "other.mp4"},
    ],
    ids=["prompt", "model", "s3_key"],
)
def test_a_cleared_task_whose_request_changed_starts_a_new_job_and_never_delivers_the_old_one(
    venice, moto_s3, change
):
    """Issue 12, #4: the old, finished job is logged as left undelivered, and is not completed."""
    emulator = venice()
    store = FakeStore()
    moto_s3.delete_bucket(Bucket=BUCKET)
    with pytest.raises(AirflowException):
        generate().execute(make_context(store))
    old = store.get(RECORD_KEY)["job"]["queue_id"]
    moto_s3.create_bucket(Bucket=BUCKET)
    key = change.get("s3_key", KEY)
    before = len(emulator.calls())

    with structlog.testing.capture_logs() as logs:
        result = generate(**change).execute(make_context(store))

    model = change.get("model", T2V)
    check_result(moto_s3, result, model, key)
    assert result["queue_id"] != old
    manifest = read_manifest(moto_s3, BUCKET, key)
    assert manifest["queue_id"] == result["queue_id"]
    assert manifest["request"]["prompt"] == change.get("prompt", REQUESTS[T2V]["prompt"])
    calls = emulator.calls()
    assert len(calls_to(calls, "/video/queue")) == 2
    downloaded = [call for call in video_downloads(calls[before:]) if old in str(call["body"]) + call["path"]]
    assert downloaded == [], "the old job's video was fetched for the new request"
    assert job_state(emulator, old)["media_deleted"] is False
    assert [call["body"]["queue_id"] for call in calls_to(calls, "/video/complete")] == [result["queue_id"]]
    warnings = [str(entry["event"]) for entry in logs if entry["log_level"] == "warning"]
    assert any(old in line and "not completed" in line for line in warnings), warnings
    if key == KEY:
        assert object_exists(moto_s3, BUCKET, KEY)
    else:
        assert not object_exists(moto_s3, BUCKET, KEY)


# --- what the queue answered ----------------------------------------------------------------------


def test_a_queue_answer_without_model_is_recorded_with_the_requested_model_and_delivered(venice, moto_s3):
    """Issue 12, #2: a 2xx answer means the job exists and was charged; the model is the request's."""
    without_model = lambda body: {key: value for key, value in body.items() if key != "model"}  # noqa: E731
    emulator = venice(transport=lambda inner: RewriteJson(inner, "/video/queue", without_model))
    store = FakeStore()

    result = generate().execute(make_context(store))

    check_result(moto_s3, result, T2V)
    assert store.get(RECORD_KEY)["job"]["model"] == T2V
    assert counts(emulator.calls())["/video/complete"] == 1


def test_a_queue_answer_without_a_queue_id_is_an_unknown_outcome_that_is_never_queued_again(venice, moto_s3):
    emulator = venice(transport=lambda inner: RewriteJson(inner, "/video/queue", lambda body: {"model": T2V}))
    store = FakeStore()

    with pytest.raises(AirflowFailException, match="outcome is unknown"):
        generate().execute(make_context(store))
    with pytest.raises(AirflowFailException, match="never recorded Venice's answer"):
        generate().execute(make_context(store))

    assert counts(emulator.calls())["/video/queue"] == 1
    assert_nothing_left(moto_s3, BUCKET, KEY)


# --- refusals before anything is paid -------------------------------------------------------------


@pytest.mark.parametrize(("bucket", "key"), [("Bad_Bucket", KEY), (BUCKET, "/leading-slash.mp4")])
def test_bad_s3_location_fails_before_anything_is_paid(venice, bucket, key):
    emulator = venice()

    with pytest.raises(AirflowFailException, match="s3_bucket" if bucket != BUCKET else "s3_key"):
        generate(s3_bucket=bucket, s3_key=key).execute(make_context())

    assert emulator.calls() == []


def test_max_usd_below_the_quote_fails_before_queueing(venice, moto_s3):
    emulator = venice()

    with pytest.raises(AirflowFailException, match="max_usd"):
        generate(max_usd=0.01).execute(make_context())

    tally = counts(emulator.calls())
    assert (tally["/video/quote"], tally["/video/queue"]) == (1, 0)
    assert_nothing_left(moto_s3, BUCKET, KEY)


@pytest.mark.parametrize("max_usd", ["nan", "inf", -1])
def test_a_max_usd_that_is_not_a_finite_amount_is_refused_before_anything(venice, moto_s3, max_usd):
    emulator = venice()

    with pytest.raises(AirflowFailException, match="max_usd"):
        generate(max_usd=max_usd).execute(make_context())

    tally = counts(emulator.calls())
    assert (tally["/video/quote"], tally["/video/queue"]) == (0, 0)


def test_max_usd_rendered_from_a_template_is_enforced(venice, moto_s3):
    emulator = venice()

    result = generate(max_usd="1.5").execute(make_context())

    assert result["quote_usd"] <= 1.5
    with pytest.raises(AirflowFailException, match="max_usd"):
        generate(max_usd="0.01", s3_key="cheap.mp4").execute(make_context())
    assert counts(emulator.calls())["/video/queue"] == 1


# --- bodies that are not whole videos --------------------------------------------------------------


def cut_at_half(body: bytes) -> bytes:
    return body[: len(body) // 2]


@pytest.mark.parametrize("size", [MB, 20 * MB], ids=["single-put", "multipart"])
def test_a_chunked_body_cut_short_fails_verification_and_leaves_nothing(venice, moto_s3, size):
    """Issue 12, #7: no Content-Length to compare with: the MP4 boxes tell that bytes are missing."""
    emulator = venice(
        video_bytes=size, transport=lambda inner: AlteredVideo(inner, cut_at_half, chunked=True)
    )
    store = FakeStore()

    with pytest.raises(AirflowException, match="cut short") as caught:
        generate().execute(make_context(store))

    queue_id = store.get(RECORD_KEY)["job"]["queue_id"]
    assert queue_id in str(caught.value)
    assert_nothing_left(moto_s3, BUCKET, KEY)
    assert not object_exists(moto_s3, BUCKET, KEY + ".json")
    assert counts(emulator.calls())["/video/complete"] == 0
    assert job_state(emulator, queue_id)["media_deleted"] is False


def test_a_body_whose_mp4_boxes_do_not_add_up_fails_verification(venice, moto_s3):
    emulator = venice(transport=lambda inner: AlteredVideo(inner, rename_box("moov", "free")))

    with pytest.raises(AirflowException, match="moov"):
        generate().execute(make_context())

    assert_nothing_left(moto_s3, BUCKET, KEY)
    assert counts(emulator.calls())["/video/complete"] == 0


# --- a VPS job past its download_url's lifetime ----------------------------------------------------


def test_an_expired_download_url_fails_permanently_with_an_honest_message(venice, moto_s3):
    """Issue 12, #9: the paid video can no longer be fetched; never "can be delivered again"."""
    emulator = venice(job_seconds=600)
    store = FakeStore()
    context = make_context(store)
    deferred = defer(generate(VPS, deferrable=True), context)
    emulator.advance(25 * 3600)
    event = run_trigger(triggered(deferred))
    assert event["status"] == "success"

    with pytest.raises(AirflowFailException) as caught:
        generate(VPS, deferrable=True).execute_complete(context, event)

    message = str(caught.value)
    queue_id = store.get(RECORD_KEY)["job"]["queue_id"]
    assert queue_id in message
    assert "can no longer be fetched" in message
    assert "delivered again" not in message
    assert_nothing_left(moto_s3, BUCKET, KEY)
    assert counts(emulator.calls())["/video/complete"] == 0
    assert store.get(RECORD_KEY)["stage"] not in ("delivered", "completed")
