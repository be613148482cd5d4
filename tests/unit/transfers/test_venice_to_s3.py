"""VeniceVideoToS3Operator against the in-process emulator and moto's in-process S3.

Each delivery is checked in S3 (bytes, size, SHA-256, full-object CRC32, the manifest beside the video,
no leftover multipart upload) and in the emulator's call log (what was downloaded, deleted and
completed, and with which headers). A try is a fresh operator instance with the same task state
store. The delivery tests run against both readings of ``/video/retrieve`` (issue 12, #8).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
import zlib
from typing import Any

import pytest
import structlog
from airflow.sdk import DAG, Asset, AssetAlias

from airflow_provider_venice.lifecycle.destination import Destination
from airflow_provider_venice.lifecycle.failures import VideoDeliveryError
from airflow_provider_venice.lifecycle.receive import VideoReceiver
from airflow_provider_venice.testing import run_emulator
from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException
from tests.integration import s3_fixtures
from tests.integration.s3_fixtures import (
    ASSET_EXTRA_KEYS,
    BUCKET,
    MB,
    RECORD_KEY,
    RESULT_KEYS,
    T2V,
    VPS,
    AlteredVideo,
    FailingStore,
    FakeStore,
    FakeTaskInstance,
    ProcessKilled,
    alias_events,
    another_writer_races,
    assert_nothing_left,
    calls_to,
    check_poster_and_probe,
    fail_upload_parts,
    job_state,
    kill_at_write,
    kill_during_upload,
    largesize_box,
    make_context,
    object_bytes,
    object_exists,
    queue_job,
    read_manifest,
    rename_box,
    resize_box,
    top_level_boxes,
    uploads_in_progress,
    venice_connection,
    venice_paths,
    video_downloads,
)

aws_env = s3_fixtures.aws_env
moto_s3 = s3_fixtures.moto_s3
venice = s3_fixtures.venice_each_accept_mode

KEY = "videos/out.mp4"


def transfer(job: dict[str, Any], key: str = KEY, **kwargs: Any) -> VeniceVideoToS3Operator:
    """The transfer as a DAG author writes it: ``job=queue.output`` (a native dict)."""
    return VeniceVideoToS3Operator(task_id="to_s3", job=job, s3_bucket=BUCKET, s3_key=key, **kwargs)


def crc32_b64(body: bytes) -> str:
    return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()


def check_delivered(
    s3: Any,
    result: dict[str, Any],
    job: dict[str, Any],
    key: str = KEY,
    *,
    poster: str | bool = True,
    probed: bool = True,
) -> bytes:
    """The result describes the object exactly, the object is the verified mp4, its manifest matches,
    and so do its probe data and poster (``poster``: at the default key, at this key, or none;
    ``probed=False``: the video could not be decoded, and the manifest says why)."""
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
    assert body[4:8] == b"ftyp"
    assert result["content_type"] == head["ContentType"] == "video/mp4"
    assert (result["model"], result["queue_id"]) == (job["model"], job["queue_id"])
    assert result["quote_usd"] == job["quote_usd"] is not None
    assert head["Metadata"]["venice-queue-id"] == job["queue_id"]
    assert result["manifest_uri"] == f"s3://{BUCKET}/{key}.json"
    manifest = read_manifest(s3, BUCKET, key)
    assert manifest["kind"] == "airflow-provider-venice/video"
    for field in ("s3_uri", "queue_id", "model", "quote_usd", "sha256", "size_bytes", "checksum_crc32"):
        assert manifest[field] == result[field], field
    assert manifest["etag"].strip('"') == head["ETag"].strip('"')
    checksum = {"algorithm": "CRC32", "type": "FULL_OBJECT", "value": result["checksum_crc32"]}
    assert manifest["s3_checksum"] == checksum
    assert uploads_in_progress(s3, BUCKET) == []
    check_poster_and_probe(s3, result, poster=bool(poster), probed=probed)
    if poster:
        poster_key = poster if isinstance(poster, str) else key + ".poster.jpg"
        assert result["poster_uri"] == f"s3://{BUCKET}/{poster_key}"
    return body


def assert_failed_cleanly(
    emulator: Any, s3: Any, job: dict[str, Any], error: BaseException, key: str = KEY
) -> None:
    assert job["queue_id"] in str(error)
    assert_nothing_left(s3, BUCKET, key)
    assert not object_exists(s3, BUCKET, key + ".json")
    calls = emulator.calls()
    assert calls_to(calls, "/video/complete") == []
    assert calls_to(calls, "/_media", method="DELETE") == []
    assert job_state(emulator, job["queue_id"])["media_deleted"] is False


# --- the contract --------------------------------------------------------------------------------


def test_a_mapped_delivery_announces_through_the_alias_too() -> None:
    # .partial() fills outlets=[] (Airflow's default) before __init__ runs: the alias must survive it
    with DAG("mapped_outlets", schedule=None):
        mapped = VeniceVideoToS3Operator.partial(task_id="t", s3_bucket=BUCKET).expand(
            job=[{"model": T2V, "queue_id": "q"}], s3_key=[KEY]
        )
    assert mapped.outlets == [AssetAlias("venice-videos")]


def test_defaults_push_each_key_and_announce_through_the_alias() -> None:
    op = VeniceVideoToS3Operator(
        task_id="t", job={"model": T2V, "queue_id": "q"}, s3_bucket=BUCKET, s3_key=KEY
    )
    assert op.multiple_outputs is True
    assert op.outlets == [AssetAlias("venice-videos")]
    assert "job" in op.template_fields
    assert {"s3_key", "manifest_key", "poster_key"} <= set(op.template_fields)
    assert (op.replace, op.complete) == (False, True)
    assert (op.poster_key, op.poster_format, op.poster_max_side, op.s3_checksum) == (
        None,
        "jpeg",
        640,
        "FULL_OBJECT",
    )


# --- deliveries ----------------------------------------------------------------------------------


def test_delivers_a_finished_video_then_completes_the_job(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)
    context = make_context(ti=FakeTaskInstance(task_id="to_s3"))

    result = transfer(job).execute(context)

    check_delivered(moto_s3, result, job)
    assert read_manifest(moto_s3, BUCKET, KEY)["task"]["task_id"] == "to_s3"
    calls = emulator.calls()
    assert venice_paths(calls)[-2:] == ["POST /api/v1/video/retrieve", "POST /api/v1/video/complete"]
    assert [call["status"] for call in calls_to(calls, "/video/complete")] == [200]
    assert len(video_downloads(calls)) == 1
    assert calls_to(calls, "/_media") == []
    assert job_state(emulator, job["queue_id"])["media_deleted"] is True
    assert context["task_state_store"].get(RECORD_KEY)["stage"] == "completed"
    # the asset event for the concrete object, through the venice-videos alias, with the details
    [(asset, extra)] = alias_events(context)
    assert asset == Asset(f"s3://{BUCKET}/{KEY}")
    assert AssetAlias("venice-videos") in context["outlet_events"]
    assert set(extra) == ASSET_EXTRA_KEYS
    assert extra == {key: result[key] for key in ASSET_EXTRA_KEYS}


def test_vps_delivery_downloads_without_the_api_key_deletes_the_link_then_completes(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, VPS)
    assert job["download_url"]
    before = len(emulator.calls())

    result = transfer(job).execute(make_context())

    check_delivered(moto_s3, result, job)
    calls = emulator.calls()[before:]
    assert venice_paths(calls) == ["GET /_media", "DELETE /_media", "POST /api/v1/video/complete"]
    download, delete, complete = calls
    assert "authorization" not in download, "the API key was sent to the download_url host"
    assert "authorization" not in delete
    assert (download["status"], delete["status"]) == (200, 204)
    assert complete["status"] == 400  # Venice does not know VPS jobs for complete: taken as done
    assert job_state(emulator, job["queue_id"])["media_deleted"] is True


@pytest.mark.parametrize(
    "shape",
    ["queue-output", "sensor-output", "separate-keys"],
)
def test_the_job_is_accepted_as_native_values(venice, moto_s3, shape):
    """``job=queue.output``, ``job=wait.output`` (with its extra keys), or ``queue.output["..."]``."""
    emulator = venice()
    job = queue_job(emulator, VPS)
    if shape == "separate-keys":
        op = VeniceVideoToS3Operator(task_id="to_s3", s3_bucket=BUCKET, s3_key=KEY, **job)
    elif shape == "sensor-output":
        sensed = {
            **job,
            "status": "COMPLETED",
            "execution_duration_ms": 1200,
            "request_fingerprint": "f" * 32,
        }
        op = transfer(sensed)
    else:
        op = transfer({**job, "request_fingerprint": None})

    result = op.execute(make_context())

    check_delivered(moto_s3, result, job)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"job": "{'model': 'wan-2-7-text-to-video', 'queue_id': 'q-1'}"}, "job"),
        ({"job": None}, "job"),
        ({"job": {"model": T2V, "queue_id": "Q", "download_url": "None"}}, "download_url"),
        ({"job": {"model": T2V, "queue_id": "Q", "quote_usd": "0.35"}}, "quote_usd"),
        ({"job": {"model": T2V, "queue_id": "Q", "quote_usd": float("inf")}}, "quote_usd"),
        ({"job": {"model": T2V, "queue_id": "Q", "quote_usd": -0.5}}, "quote_usd"),
        ({"model": T2V, "queue_id": "Q", "quote_usd": "0.35"}, "quote_usd"),
        ({"model": T2V, "queue_id": "Q", "download_url": "None"}, "download_url"),
        ({"model": T2V, "queue_id": ""}, "queue_id"),
    ],
    ids=[
        "rendered-dict",
        "no-job",
        "download-url-None-text",
        "quote-as-text",
        "quote-infinite",
        "quote-negative",
        "argument-quote-as-text",
        "argument-download-url-None-text",
        "empty-queue-id",
    ],
)
def test_what_is_not_a_job_is_refused_naming_the_field_before_anything(venice, moto_s3, arguments, field):
    """No code parses ``'None'`` or a price back from text: pass the job natively."""
    emulator = venice()
    op = VeniceVideoToS3Operator(task_id="to_s3", s3_bucket=BUCKET, s3_key=KEY, **arguments)

    with pytest.raises(AirflowFailException, match=field):
        op.execute(make_context())

    assert emulator.calls() == []
    assert not object_exists(moto_s3, BUCKET, KEY)


def test_large_video_goes_up_in_parts_with_a_full_object_crc32(moto_s3, venice):
    emulator = venice(video_bytes=20 * MB)
    job = queue_job(emulator, T2V)
    op = transfer(job, key="big.mp4")
    operations: list[str] = []
    op.s3_hook.get_conn().meta.events.register(
        "before-call.s3", lambda model, **_: operations.append(model.name)
    )

    result = op.execute(make_context())

    check_delivered(moto_s3, result, job, "big.mp4")
    assert result["size_bytes"] == 20 * MB
    assert operations.count("UploadPart") >= 2
    assert operations.count("CompleteMultipartUpload") == 1
    assert "CopyObject" not in operations  # no second pass over the bytes to stamp metadata
    head = moto_s3.head_object(Bucket=BUCKET, Key="big.mp4", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (result["checksum_crc32"], "FULL_OBJECT")


def test_a_video_whose_mdat_has_a_64_bit_size_is_delivered(venice, moto_s3):
    """MP4 boxes may give their size in 64 bits (``size == 1``; every mdat over 4 GiB does)."""
    emulator = venice(transport=lambda inner: AlteredVideo(inner, largesize_box("mdat")))
    job = queue_job(emulator, T2V)

    result = transfer(job).execute(make_context())

    # the 8 header bytes added shift mdat's payload past the chunk offsets in moov: a valid MP4 whose
    # frames do not decode; it is delivered all the same, with the probe error in its manifest (issue 13)
    body = check_delivered(moto_s3, result, job, poster=False, probed=False)
    assert [kind for kind, _, size in top_level_boxes(body) if size == 1] == ["mdat"]


@pytest.mark.parametrize("model", [T2V, VPS])
def test_complete_false_leaves_the_job_retrievable(venice, moto_s3, model):
    emulator = venice()
    job = queue_job(emulator, model)
    before = len(emulator.calls())

    result = transfer(job, complete=False).execute(make_context())

    check_delivered(moto_s3, result, job)
    calls = emulator.calls()[before:]
    assert calls_to(calls, "/video/complete") == []
    assert calls_to(calls, "/_media", method="DELETE") == []
    assert job_state(emulator, job["queue_id"])["media_deleted"] is False
    # and it can be delivered again
    again = transfer(job, key="again.mp4", complete=False).execute(make_context())
    assert again["sha256"] == result["sha256"]


def test_replace_true_overwrites_an_existing_key(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)
    moto_s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"old")

    result = transfer(job, replace=True).execute(make_context())

    check_delivered(moto_s3, result, job)


def test_a_plain_asset_outlet_gets_the_event_extra(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)
    asset = Asset(f"s3://{BUCKET}/{KEY}")
    context = make_context()

    result = transfer(job, outlets=[asset]).execute(context)

    extra = context["outlet_events"][asset].extra
    assert extra == {key: result[key] for key in ASSET_EXTRA_KEYS}


def test_poster_options_reach_the_delivery(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, VPS)

    result = transfer(job, poster_key="posters/out.jpg", poster_max_side=100).execute(make_context())

    check_delivered(moto_s3, result, job, poster="posters/out.jpg")
    check_poster_and_probe(moto_s3, result, max_side=100)
    assert not object_exists(moto_s3, BUCKET, KEY + ".poster.jpg")


def test_no_poster_when_asked_for_none(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)

    result = transfer(job, poster_key="").execute(make_context())

    check_delivered(moto_s3, result, job, poster=False)
    listed = [item["Key"] for item in moto_s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert sorted(listed) == [KEY, KEY + ".json"]


def test_no_manifest_when_asked_for_none(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)

    result = transfer(job, manifest_key="").execute(make_context())

    assert result["manifest_uri"] is None
    assert not object_exists(moto_s3, BUCKET, KEY + ".json")
    assert result["sha256"] == hashlib.sha256(object_bytes(moto_s3, BUCKET, KEY)).hexdigest()


# --- refusals before anything happens -------------------------------------------------------------


def test_existing_key_with_replace_false_fails_before_any_download(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)
    moto_s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"keep me")
    before = len(emulator.calls())

    with pytest.raises(AirflowFailException, match="exists and replace=False") as caught:
        transfer(job).execute(make_context())

    assert job["queue_id"] in str(caught.value)
    assert emulator.calls()[before:] == []
    assert object_bytes(moto_s3, BUCKET, KEY) == b"keep me"


def test_a_forged_manifest_does_not_make_another_object_this_jobs(venice, moto_s3):
    """A manifest naming this job beside an object it does not describe is not trusted."""
    emulator = venice()
    job = queue_job(emulator, T2V)
    moto_s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"keep me")
    forged = {  # right job, right size: only the ETag tells that it describes another object
        "kind": "airflow-provider-venice/video",
        "queue_id": job["queue_id"],
        "etag": '"0123456789abcdef0123456789abcdef"',
        "size_bytes": 7,
        "sha256": hashlib.sha256(b"keep me").hexdigest(),
    }
    moto_s3.put_object(Bucket=BUCKET, Key=KEY + ".json", Body=json.dumps(forged).encode())

    with pytest.raises(AirflowFailException, match="replace=False"):
        transfer(job).execute(make_context())

    assert object_bytes(moto_s3, BUCKET, KEY) == b"keep me"
    assert calls_to(emulator.calls(), "/video/complete") == []


@pytest.mark.parametrize(
    ("bucket", "key"),
    [
        ("Upper_Case", "k.mp4"),
        ("ab", "k.mp4"),
        ("a..b", "k.mp4"),
        ("-bucket", "k.mp4"),
        (BUCKET, ""),
        (BUCKET, "/absolute.mp4"),
        (BUCKET, "k" * 1025),
    ],
)
def test_bad_bucket_or_key_fails_before_anything_happens(venice, moto_s3, bucket, key):
    emulator = venice()
    job = queue_job(emulator, T2V)
    before = len(emulator.calls())
    op = VeniceVideoToS3Operator(task_id="to_s3", job=job, s3_bucket=bucket, s3_key=key)

    with pytest.raises(AirflowFailException, match="s3_bucket" if bucket != BUCKET else "s3_key"):
        op.execute(make_context())

    assert emulator.calls()[before:] == []


@pytest.mark.parametrize("bucket", ["abc", "my.videos-2024", "a" * 63])
def test_valid_locations_pass(bucket):
    destination = Destination(bucket, "videos/2024-01-01/0.mp4")
    assert destination.manifest_uri == f"s3://{bucket}/videos/2024-01-01/0.mp4.json"


def test_a_manifest_key_equal_to_the_video_key_is_refused():
    with pytest.raises(AirflowFailException, match="manifest_key"):
        Destination(BUCKET, KEY, manifest_key=KEY)


# --- failures leave nothing behind and the job untouched ------------------------------------------


def truncated_at_half(body: bytes) -> bytes:
    return body[: len(body) // 2]


def trailing_partial_box(body: bytes) -> bytes:
    return body + struct.pack(">I4s", 16, b"free") + b"\0" * 4


@pytest.mark.parametrize(
    ("alteration", "size", "message"),
    [
        ({"body": lambda body: b"<html>oops</html>" + body[17:]}, MB, "not an MP4"),
        ({"body": lambda body: body[:7]}, MB, "box header|not an MP4"),
        ({"content_length": lambda length: length + 1}, 20 * MB, "cut short"),
        ({"body": truncated_at_half, "content_length": lambda length: length * 2}, 20 * MB, "cut short"),
        ({"content_length": lambda length: length - 1}, 20 * MB, "more than the announced"),
        ({"body": truncated_at_half, "chunked": True}, MB, "cut short"),
        ({"body": truncated_at_half, "chunked": True}, 20 * MB, "cut short"),
        ({"body": rename_box("moov", "free")}, MB, "moov"),
        ({"body": rename_box("mdat", "free"), "chunked": True}, MB, "mdat"),
        ({"body": resize_box("mdat", +1), "chunked": True}, MB, "cut short|box"),
        ({"body": resize_box("moov", -1)}, MB, "box"),
        ({"body": trailing_partial_box, "chunked": True}, MB, "cut short|box"),
    ],
    ids=[
        "html-body",
        "tiny-body",
        "length-plus-one",
        "half-body",
        "length-minus-one",
        "chunked-half-body",
        "chunked-half-body-multipart",
        "no-moov",
        "chunked-no-mdat",
        "chunked-mdat-one-byte-longer",
        "moov-one-byte-shorter",
        "chunked-trailing-partial-box",
    ],
)
def test_a_bad_body_is_not_stored_and_the_job_is_not_completed(venice, moto_s3, alteration, size, message):
    """Issue 12, #7: byte count and MP4 boxes are checked while streaming, with or without a length."""
    emulator = venice(video_bytes=size, transport=lambda inner: AlteredVideo(inner, **alteration))
    job = queue_job(emulator, T2V)
    store = FakeStore()

    with pytest.raises(VideoDeliveryError, match=message) as caught:
        transfer(job).execute(make_context(store))

    assert_failed_cleanly(emulator, moto_s3, job, caught.value)
    assert (store.get(RECORD_KEY) or {}).get("stage") not in ("delivered", "completed")


def test_a_truncated_retrieve_in_process_fails_with_the_queue_id(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)
    emulator.add_faults({"endpoint": "/video/retrieve", "action": "truncate"})

    with pytest.raises(AirflowException) as caught:
        transfer(job).execute(make_context())

    assert_failed_cleanly(emulator, moto_s3, job, caught.value)


@pytest.mark.parametrize("model", [T2V, VPS])
def test_a_body_cut_mid_stream_over_a_socket_aborts_the_multipart_upload(monkeypatch, moto_s3, model):
    # Over a real socket the emulator sends half of the 20 MB body and closes: parts are uploaded by
    # then, so a multipart upload exists on the server and must be aborted.
    with run_emulator("127.0.0.1", 0, job_seconds=0, video_bytes=20 * MB) as server:
        monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", venice_connection(server.base_url))
        job = queue_job(server.base_url, model)
        assert model == T2V or job["download_url"].startswith(server.root_url)
        endpoint, method = ("/_media", "GET") if model == VPS else ("/video/retrieve", "POST")
        server.add_faults({"endpoint": endpoint, "method": method, "action": "truncate"})
        op = transfer(job)
        s3_calls: list[str] = []
        op.s3_hook.get_conn().meta.events.register(
            "after-call.s3", lambda event_name, **_: s3_calls.append(event_name.rsplit(".", 1)[-1])
        )

        with pytest.raises(AirflowException) as caught:
            op.execute(make_context())

        assert "CreateMultipartUpload" in s3_calls, "the body was cut before a multipart upload began"
        assert "AbortMultipartUpload" in s3_calls
        assert_failed_cleanly(server.emulator, moto_s3, job, caught.value)
        [download] = calls_to(server.calls(), endpoint, method=method)
        assert download["status"] == 200


def test_a_missing_bucket_fails_with_the_queue_id(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)
    op = transfer(job)
    op.s3_bucket = "no-such-bucket"

    with pytest.raises(AirflowException, match="no-such-bucket") as caught:
        op.execute(make_context())

    assert job["queue_id"] in str(caught.value)
    assert calls_to(emulator.calls(), "/video/complete") == []
    assert job_state(emulator, job["queue_id"])["media_deleted"] is False


def test_a_failing_part_aborts_the_multipart_upload(venice, moto_s3):
    emulator = venice(video_bytes=30 * MB)
    job = queue_job(emulator, T2V)
    op = transfer(job)
    refused = fail_upload_parts(op.s3_hook.get_conn(), from_part=2)

    with pytest.raises(VideoDeliveryError, match="InternalError") as caught:
        op.execute(make_context())

    assert refused, "the upload never reached part 2"
    assert_failed_cleanly(emulator, moto_s3, job, caught.value)


@pytest.mark.parametrize("size", [MB, 20 * MB], ids=["single-put", "multipart"])
def test_a_crc32_in_s3_that_differs_from_the_bytes_sent_fails_and_removes_only_this_object(
    venice, moto_s3, size
):
    """S3 holds other bytes than were sent: this try's object is removed, the job is kept."""
    emulator = venice(video_bytes=size)
    job = queue_job(emulator, T2V)
    op = transfer(job)
    other = crc32_b64(b"other bytes")

    def tamper(parsed: dict[str, Any], **_: Any) -> None:
        parsed["ChecksumCRC32"] = other

    op.s3_hook.get_conn().meta.events.register("after-call.s3.HeadObject", tamper)

    with pytest.raises(VideoDeliveryError, match=f"CRC32 {other}") as caught:
        op.execute(make_context())

    assert_failed_cleanly(emulator, moto_s3, job, caught.value)


def test_clean_up_after_a_failed_check_never_deletes_another_writers_object(venice, moto_s3):
    """The check fails, and meanwhile another writer replaced the object: only this try's is removed."""
    emulator = venice()
    job = queue_job(emulator, T2V)
    op = transfer(job, replace=True)
    raced: list[str] = []

    def tamper_then_race(parsed: dict[str, Any], **_: Any) -> None:
        if "ETag" in parsed and not raced:  # the read-back of the object just written
            parsed["ChecksumCRC32"] = crc32_b64(b"other bytes")
            raced.append(parsed["ETag"])
            moto_s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"theirs")

    op.s3_hook.get_conn().meta.events.register("after-call.s3.HeadObject", tamper_then_race)

    with pytest.raises(VideoDeliveryError, match="CRC32") as caught:
        op.execute(make_context())

    assert raced
    assert job["queue_id"] in str(caught.value)
    assert object_bytes(moto_s3, BUCKET, KEY) == b"theirs"
    assert calls_to(emulator.calls(), "/video/complete") == []


def test_a_failed_manifest_write_keeps_the_job_and_a_retry_delivers(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)
    store = FakeStore()
    op = transfer(job)

    def refuse_manifest(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == KEY + ".json":
            raise OSError("S3 went away")

    op.s3_hook.get_conn().meta.events.register("before-parameter-build.s3.PutObject", refuse_manifest)

    with pytest.raises(VideoDeliveryError, match="manifest") as caught:
        op.execute(make_context(store))

    assert job["queue_id"] in str(caught.value)
    assert calls_to(emulator.calls(), "/video/complete") == []
    assert not object_exists(moto_s3, BUCKET, KEY + ".json")

    result = transfer(job).execute(make_context(store))  # replace=False: its own leftover is no obstacle

    check_delivered(moto_s3, result, job)
    assert len(calls_to(emulator.calls(), "/video/complete")) == 1


@pytest.mark.parametrize("model", [T2V, VPS])
def test_a_retry_after_a_failed_release_completes_without_downloading_again(venice, moto_s3, model):
    emulator = venice()
    job = queue_job(emulator, model)
    store = FakeStore()
    emulator.add_faults({"endpoint": "/video/complete", "status": 503})

    with pytest.raises(AirflowException, match="safely in"):
        transfer(job).execute(make_context(store))

    first = object_bytes(moto_s3, BUCKET, KEY)
    assert store.get(RECORD_KEY)["stage"] == "delivered"
    before = len(emulator.calls())

    result = transfer(job).execute(make_context(store))  # replace=False: the key exists, but it is this job's

    check_delivered(moto_s3, result, job)
    assert object_bytes(moto_s3, BUCKET, KEY) == first
    calls = emulator.calls()[before:]
    expected = (
        ["POST /api/v1/video/complete"] if model == T2V else ["DELETE /_media", "POST /api/v1/video/complete"]
    )
    assert venice_paths(calls) == expected
    # a further try after completion calls Venice no more, and still reports the video
    before = len(emulator.calls())
    assert transfer(job).execute(make_context(store)) == result
    assert emulator.calls()[before:] == []


def test_a_new_task_instance_finds_a_delivered_video_by_its_manifest(venice, moto_s3):
    """Its own record is empty (another DAG run, say), but the manifest says the video is this job's."""
    emulator = venice()
    job = queue_job(emulator, T2V)
    emulator.add_faults({"endpoint": "/video/complete", "status": 503})
    with pytest.raises(AirflowException, match="safely in"):
        transfer(job).execute(make_context())
    before = len(emulator.calls())

    result = transfer(job).execute(make_context(FakeStore()))

    check_delivered(moto_s3, result, job)
    assert venice_paths(emulator.calls()[before:]) == ["POST /api/v1/video/complete"]


def test_an_expired_download_url_fails_permanently_with_an_honest_message(venice, moto_s3):
    """Issue 12, #9: the paid video can no longer be fetched; never "can be delivered again"."""
    emulator = venice()
    job = queue_job(emulator, VPS)
    emulator.advance(25 * 3600)

    with pytest.raises(AirflowFailException, match="can no longer be fetched") as caught:
        transfer(job).execute(make_context())

    assert "delivered again" not in str(caught.value)
    assert_failed_cleanly(emulator, moto_s3, job, caught.value)
    [download] = calls_to(emulator.calls(), "/_media")
    assert download["status"] in (403, 404, 410)


def test_on_kill_during_an_upload_aborts_it(venice, moto_s3):
    emulator = venice(video_bytes=60 * MB)
    job = queue_job(emulator, T2V)
    op = transfer(job)
    uploading, killed = threading.Event(), threading.Event()

    def parts_in_flight(**_: Any) -> None:  # every part waits until on_kill was called
        uploading.set()
        killed.wait(30)

    op.s3_hook.get_conn().meta.events.register("before-call.s3.UploadPart", parts_in_flight)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            op.execute(make_context())
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
    assert isinstance(error, VideoDeliveryError)
    assert "cancelled" in str(error)
    assert_failed_cleanly(emulator, moto_s3, job, error)


# --- tries that died -----------------------------------------------------------------------------


def test_a_try_killed_mid_upload_leaves_an_upload_the_next_try_aborts_then_delivers_once(venice, moto_s3):
    """Issue 12, #14."""
    emulator = venice(video_bytes=20 * MB)
    job = queue_job(emulator, T2V)
    store = FakeStore()
    op = transfer(job)
    left = kill_during_upload(op.s3_hook.get_conn(), at_part=2)

    with pytest.raises(ProcessKilled):
        op.execute(make_context(store))

    assert [upload["UploadId"] for upload in uploads_in_progress(moto_s3, BUCKET)] == left
    assert store.get(RECORD_KEY)["upload"]["upload_id"] == left[0]

    result = transfer(job).execute(make_context(store))

    check_delivered(moto_s3, result, job)
    assert uploads_in_progress(moto_s3, BUCKET) == []
    assert len(calls_to(emulator.calls(), "/video/complete")) == 1


@pytest.mark.parametrize("size", [MB, 20 * MB], ids=["single-put", "multipart"])
def test_a_try_killed_before_the_manifest_is_committed_without_a_second_download(venice, moto_s3, size):
    """Issue 13 (was issue 12, #6, "replaced, not trusted"): the earlier try sealed its upload and S3
    holds that object whole (its token, size and full-object CRC32 match the record): it is committed."""
    emulator = venice(video_bytes=size)
    job = queue_job(emulator, T2V)
    store = FakeStore()
    op = transfer(job)
    kill_at_write(op.s3_hook.get_conn(), "PutObject", KEY + ".json")

    with pytest.raises(ProcessKilled):
        op.execute(make_context(store))

    assert object_exists(moto_s3, BUCKET, KEY)
    assert not object_exists(moto_s3, BUCKET, KEY + ".json")
    assert store.get(RECORD_KEY)["stage"] == "uploaded"
    first = moto_s3.head_object(Bucket=BUCKET, Key=KEY)["ETag"]

    result = transfer(job).execute(make_context(store))

    check_delivered(moto_s3, result, job)
    assert moto_s3.head_object(Bucket=BUCKET, Key=KEY)["ETag"] == first
    assert len(video_downloads(emulator.calls())) == 1
    assert len(calls_to(emulator.calls(), "/video/complete")) == 1


def test_a_try_killed_before_the_manifest_whose_object_was_changed_is_not_trusted(venice, moto_s3):
    """Issue 12, #6, still: an object that is not whole as its try sealed it is replaced, not trusted."""
    emulator = venice()
    job = queue_job(emulator, T2V)
    store = FakeStore()
    op = transfer(job)
    kill_at_write(op.s3_hook.get_conn(), "PutObject", KEY + ".json")
    with pytest.raises(ProcessKilled):
        op.execute(make_context(store))
    sealed = store.get(RECORD_KEY)["upload"]
    # the object at the key still carries the try's token, but holds other bytes than it sealed
    moto_s3.put_object(
        Bucket=BUCKET,
        Key=KEY,
        Body=b"not the sealed video",
        Metadata={"venice-upload-token": sealed["token"]},
    )

    result = transfer(job).execute(make_context(store))

    check_delivered(moto_s3, result, job)
    assert len(video_downloads(emulator.calls())) == 2
    assert len(calls_to(emulator.calls(), "/video/complete")) == 1


def test_a_try_killed_after_the_manifest_is_delivered_without_a_second_download(venice, moto_s3):
    """Issue 12, #6: the manifest is the commit point, whatever the record says."""
    emulator = venice()
    job = queue_job(emulator, T2V)
    store = FailingStore("delivered", error=ProcessKilled("killed before recording the delivery"))

    with pytest.raises(ProcessKilled):
        transfer(job).execute(make_context(store))

    assert store.get(RECORD_KEY)["stage"] == "uploaded"
    result = transfer(job).execute(make_context(store))

    check_delivered(moto_s3, result, job)
    assert len(video_downloads(emulator.calls())) == 1
    assert len(calls_to(emulator.calls(), "/video/complete")) == 1


def test_a_record_for_another_job_or_destination_is_set_aside(venice, moto_s3):
    """Issue 12, #4: a cleared task handed another job delivers that job, and names the one set aside."""
    emulator = venice()
    first, second = queue_job(emulator, T2V), queue_job(emulator, T2V)
    store = FakeStore()
    emulator.add_faults({"endpoint": "/video/complete", "status": 503})
    with pytest.raises(AirflowException, match="safely in"):
        transfer(first).execute(make_context(store))

    with structlog.testing.capture_logs() as logs:
        result = transfer(second, key="second.mp4").execute(make_context(store))

    check_delivered(moto_s3, result, second, "second.mp4")
    assert read_manifest(moto_s3, BUCKET, "second.mp4")["queue_id"] == second["queue_id"]
    completes = calls_to(emulator.calls(), "/video/complete")
    assert [call["status"] for call in completes] == [503, 200]  # the first job only in its failed try
    assert completes[1]["body"]["queue_id"] == second["queue_id"]
    assert job_state(emulator, first["queue_id"])["media_deleted"] is False
    warnings = [str(entry["event"]) for entry in logs if entry["log_level"] == "warning"]
    assert any(first["queue_id"] in line for line in warnings), warnings


# --- replace=False holds at the write ------------------------------------------------------------


@pytest.mark.parametrize("size", [MB, 20 * MB], ids=["single-put", "multipart"])
def test_another_writer_creating_the_key_during_the_upload_wins_and_the_job_is_kept(venice, moto_s3, size):
    """Issue 12, #3: the write is conditional; the loser is not completed and names its queue_id."""
    emulator = venice(video_bytes=size)
    job = queue_job(emulator, T2V)
    op = transfer(job)
    raced = another_writer_races(op.s3_hook.get_conn(), moto_s3, BUCKET, KEY)

    with pytest.raises(AirflowFailException, match="another writer") as caught:
        op.execute(make_context())

    assert raced == ["PutObject" if size == MB else "CompleteMultipartUpload"]
    assert job["queue_id"] in str(caught.value)
    assert object_bytes(moto_s3, BUCKET, KEY) == b"theirs"
    assert not object_exists(moto_s3, BUCKET, KEY + ".json")
    assert uploads_in_progress(moto_s3, BUCKET) == []
    assert calls_to(emulator.calls(), "/video/complete") == []
    assert job_state(emulator, job["queue_id"])["media_deleted"] is False


def test_with_replace_true_an_object_replaced_before_verification_is_not_claimed(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)
    op = transfer(job, replace=True)
    raced = another_writer_races(op.s3_hook.get_conn(), moto_s3, BUCKET, KEY, after=True)

    with pytest.raises(AirflowException, match="another writer") as caught:
        op.execute(make_context())

    assert raced
    assert job["queue_id"] in str(caught.value)
    assert object_bytes(moto_s3, BUCKET, KEY) == b"theirs"
    assert calls_to(emulator.calls(), "/video/complete") == []


# --- the receiver on its own ----------------------------------------------------------------------


def mp4_file(mdat: int = 100, sizes_64bit: bool = False) -> bytes:
    ftyp = struct.pack(">I4s", 16, b"ftyp") + b"isom\0\0\0\0"
    moov = struct.pack(">I4s", 16, b"moov") + b"\0" * 8
    if sizes_64bit:
        data = struct.pack(">I4sQ", 1, b"mdat", 16 + mdat) + b"\1" * mdat
    else:
        data = struct.pack(">I4s", 8 + mdat, b"mdat") + b"\1" * mdat
    return ftyp + moov + data


def receive(body: bytes, chunk: int, length: int | None) -> VideoReceiver:
    receiver = VideoReceiver(length, threading.Event())
    for start in range(0, len(body), chunk):
        receiver.take(body[start : start + chunk])
    receiver.finish()
    return receiver


@pytest.mark.parametrize("chunk", [1, 3, 7, 8, 9, 1000])
@pytest.mark.parametrize("sizes_64bit", [False, True])
def test_box_headers_split_across_chunks_are_read_whole(chunk, sizes_64bit):
    body = mp4_file(sizes_64bit=sizes_64bit)
    receiver = receive(body, chunk, None)
    assert receiver.size == len(body)
    assert receiver.sha256 == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("chunk", [1, 5, 1000])
@pytest.mark.parametrize("cut", [1, 8, 20])
def test_a_body_cut_anywhere_fails_without_a_length(chunk, cut):
    with pytest.raises(VideoDeliveryError):
        receive(mp4_file()[:-cut], chunk, None)


def test_the_receiver_stops_when_aborted():
    abort = threading.Event()
    receiver = VideoReceiver(None, abort)
    receiver.take(mp4_file()[:16])
    abort.set()
    with pytest.raises(VideoDeliveryError, match="cancelled"):
        receiver.take(b"more")


def test_object_exists_helper_sees_exact_keys(moto_s3):
    moto_s3.put_object(Bucket=BUCKET, Key="a/b.mp4", Body=b"x")
    assert object_exists(moto_s3, BUCKET, "a/b.mp4")
    assert not object_exists(moto_s3, BUCKET, "a/b")
