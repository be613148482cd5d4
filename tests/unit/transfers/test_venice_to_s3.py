"""VeniceVideoToS3Operator against the in-process emulator and moto's in-process S3.

Each delivery is checked in S3 (bytes, size, SHA-256 in metadata, no leftover multipart upload) and in
the emulator's call log (what was downloaded, deleted and completed, and with which headers).
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import re
import threading
from typing import Any

import pytest
from airflow.sdk import Asset, AssetAlias
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from botocore.awsrequest import AWSResponse

from airflow_provider_venice.testing import run_emulator
from airflow_provider_venice.transfers.venice_to_s3 import (
    TRANSFER_CONFIG,
    VeniceVideoToS3Operator,
    VerifyingReader,
    VideoDeliveryError,
    check_s3_location,
)
from tests.integration import s3_fixtures
from tests.integration.s3_fixtures import (
    BUCKET,
    MB,
    RESULT_KEYS,
    T2V,
    VPS,
    AlteredVideo,
    alias_events,
    assert_nothing_left,
    calls_to,
    fail_upload_parts,
    job_state,
    make_context,
    object_bytes,
    object_exists,
    queue_job,
    venice_connection,
    venice_paths,
)

aws_env = s3_fixtures.aws_env
moto_s3 = s3_fixtures.moto_s3
venice = s3_fixtures.venice


def transfer(job: dict[str, Any], key: str = "videos/out.mp4", **kwargs: Any) -> VeniceVideoToS3Operator:
    arguments = {
        "model": job["model"],
        "queue_id": job["queue_id"],
        "download_url": job["download_url"],
        "quote_usd": job["quote_usd"],
        "s3_bucket": BUCKET,
        "s3_key": key,
        **kwargs,
    }
    return VeniceVideoToS3Operator(task_id="to_s3", **arguments)


def check_delivered(s3: Any, result: dict[str, Any], job: dict[str, Any], key: str) -> bytes:
    """The result describes the object exactly, and the object is the verified mp4."""
    assert set(result) == RESULT_KEYS
    body = object_bytes(s3, BUCKET, key)
    head = s3.head_object(Bucket=BUCKET, Key=key)
    digest = hashlib.sha256(body).hexdigest()
    assert result["s3_uri"] == f"s3://{BUCKET}/{key}"
    assert (result["bucket"], result["key"]) == (BUCKET, key)
    assert result["sha256"] == digest == head["Metadata"]["sha256"]
    assert result["size_bytes"] == len(body) == head["ContentLength"] > 0
    assert body[4:8] == b"ftyp"
    assert result["content_type"] == head["ContentType"] == "video/mp4"
    assert (result["model"], result["queue_id"]) == (job["model"], job["queue_id"])
    assert result["quote_usd"] == job["quote_usd"] is not None
    assert head["Metadata"]["venice-queue-id"] == job["queue_id"]
    return body


# --- deliveries ----------------------------------------------------------------------------------


def test_delivers_a_finished_video_then_completes_the_job(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)
    context = make_context()

    result = transfer(job).execute(context)

    check_delivered(moto_s3, result, job, "videos/out.mp4")
    calls = emulator.calls()
    assert venice_paths(calls)[-2:] == ["POST /api/v1/video/retrieve", "POST /api/v1/video/complete"]
    assert [call["status"] for call in calls_to(calls, "/video/complete")] == [200]
    assert calls_to(calls, "/_media") == []
    assert job_state(emulator, job["queue_id"])["media_deleted"] is True
    # the asset event for the concrete object, through the venice-videos alias
    [(asset, extra)] = alias_events(context)
    assert asset == Asset(f"s3://{BUCKET}/videos/out.mp4")
    assert AssetAlias("venice-videos") in context["outlet_events"]
    assert {k: extra[k] for k in ("queue_id", "model", "quote_usd")} == {
        "queue_id": job["queue_id"],
        "model": T2V,
        "quote_usd": job["quote_usd"],
    }


def test_vps_delivery_downloads_without_the_api_key_deletes_the_link_then_completes(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, VPS)
    assert job["download_url"]
    before = len(emulator.calls())

    result = transfer(job).execute(make_context())

    check_delivered(moto_s3, result, job, "videos/out.mp4")
    calls = emulator.calls()[before:]
    assert venice_paths(calls) == ["GET /_media", "DELETE /_media", "POST /api/v1/video/complete"]
    download, delete, complete = calls
    assert "authorization" not in download, "the API key was sent to the download_url host"
    assert "authorization" not in delete
    assert (download["status"], delete["status"]) == (200, 204)
    assert complete["status"] == 400  # Venice does not know VPS jobs for complete: taken as done
    assert job_state(emulator, job["queue_id"])["media_deleted"] is True


def test_large_video_goes_up_in_parts(venice, moto_s3):
    emulator = venice(video_bytes=20 * MB)
    job = queue_job(emulator, T2V)

    operator = transfer(job, key="big.mp4")
    operations: list[str] = []
    operator.s3_hook.get_conn().meta.events.register(
        "before-call.s3", lambda model, **_: operations.append(model.name)
    )

    result = operator.execute(make_context())

    check_delivered(moto_s3, result, job, "big.mp4")
    assert result["size_bytes"] == 20 * MB
    assert operations.count("UploadPart") == math.ceil(20 * MB / TRANSFER_CONFIG["multipart_chunksize"])
    assert operations.count("CopyObject") == 1  # the metadata stamp: one request, not a part-by-part copy
    head = moto_s3.head_object(Bucket=BUCKET, Key="big.mp4", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(result["sha256"])).decode()


@pytest.mark.parametrize("model", [T2V, VPS])
def test_complete_false_leaves_the_job_retrievable(venice, moto_s3, model):
    emulator = venice()
    job = queue_job(emulator, model)
    before = len(emulator.calls())

    result = transfer(job, complete=False).execute(make_context())

    check_delivered(moto_s3, result, job, "videos/out.mp4")
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
    moto_s3.put_object(Bucket=BUCKET, Key="videos/out.mp4", Body=b"old")

    result = transfer(job, replace=True).execute(make_context())

    check_delivered(moto_s3, result, job, "videos/out.mp4")


def test_templated_quote_is_passed_through_as_a_number(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)
    op = transfer({**job, "quote_usd": None}, quote_usd="0.35")  # as rendered from a template

    assert op.execute(make_context())["quote_usd"] == 0.35


def test_a_plain_asset_outlet_gets_the_event_extra(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)
    asset = Asset(f"s3://{BUCKET}/videos/out.mp4")
    context = make_context()

    transfer(job, outlets=[asset]).execute(context)

    extra = context["outlet_events"][asset].extra
    assert extra["queue_id"] == job["queue_id"]
    assert extra["model"] == T2V
    assert extra["quote_usd"] == job["quote_usd"]


# --- refusals before anything happens -------------------------------------------------------------


def test_existing_key_with_replace_false_fails_before_any_download(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)
    moto_s3.put_object(Bucket=BUCKET, Key="videos/out.mp4", Body=b"keep me")
    before = len(emulator.calls())

    with pytest.raises(AirflowFailException, match="exists and replace=False"):
        transfer(job).execute(make_context())

    assert emulator.calls()[before:] == []
    assert object_bytes(moto_s3, BUCKET, "videos/out.mp4") == b"keep me"


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
    op = VeniceVideoToS3Operator(
        task_id="to_s3", model=T2V, queue_id=job["queue_id"], s3_bucket=bucket, s3_key=key
    )

    with pytest.raises(AirflowFailException, match="s3_bucket" if bucket != BUCKET else "s3_key"):
        op.execute(make_context())

    assert emulator.calls()[before:] == []


@pytest.mark.parametrize("bucket", ["abc", "my.videos-2024", "a" * 63])
def test_valid_locations_pass(bucket):
    check_s3_location(bucket, "videos/2024-01-01/0.mp4")


# --- failures leave nothing behind and the job untouched ------------------------------------------


def assert_failed_cleanly(
    emulator: Any, s3: Any, job: dict[str, Any], error: BaseException, key: str
) -> None:
    assert job["queue_id"] in str(error)
    assert_nothing_left(s3, BUCKET, key)
    calls = emulator.calls()
    assert calls_to(calls, "/video/complete") == []
    assert calls_to(calls, "/_media", method="DELETE") == []
    assert job_state(emulator, job["queue_id"])["media_deleted"] is False


def truncated_at_half(body: bytes) -> bytes:
    return body[: len(body) // 2]


@pytest.mark.parametrize(
    ("alteration", "size", "message"),
    [
        ({"body": lambda body: b"<html>oops</html>" + body[17:]}, MB, "not an MP4"),
        ({"body": lambda body: body[:7]}, MB, "not an MP4"),
        ({"content_length": lambda length: length + 1}, 20 * MB, "cut short"),
        ({"body": truncated_at_half, "content_length": lambda length: length * 2}, 20 * MB, "cut short"),
        ({"content_length": lambda length: length - 1}, 20 * MB, "more than the announced"),
    ],
    ids=["html-body", "tiny-body", "length-plus-one", "half-body", "length-minus-one"],
)
def test_a_bad_body_is_not_stored_and_the_job_is_not_completed(venice, moto_s3, alteration, size, message):
    emulator = venice(video_bytes=size, transport=lambda inner: AlteredVideo(inner, **alteration))
    job = queue_job(emulator, T2V)

    with pytest.raises(VideoDeliveryError, match=message) as caught:
        transfer(job).execute(make_context())

    assert_failed_cleanly(emulator, moto_s3, job, caught.value, "videos/out.mp4")


def test_a_truncated_retrieve_in_process_fails_with_the_queue_id(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)
    emulator.add_faults({"endpoint": "/video/retrieve", "action": "truncate"})

    with pytest.raises(AirflowException) as caught:
        transfer(job).execute(make_context())

    assert_failed_cleanly(emulator, moto_s3, job, caught.value, "videos/out.mp4")


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
        assert "cut short" in str(caught.value)
        assert_failed_cleanly(server.emulator, moto_s3, job, caught.value, "videos/out.mp4")
        [download] = calls_to(server.calls(), endpoint, method=method)
        assert download["status"] == 200


def test_a_missing_bucket_fails_with_the_queue_id(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)
    op = transfer(job)
    op.s3_bucket = "no-such-bucket"

    with pytest.raises(VideoDeliveryError, match="no-such-bucket") as caught:
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
    assert_failed_cleanly(emulator, moto_s3, job, caught.value, "videos/out.mp4")


def test_a_failed_metadata_stamp_leaves_no_object_and_a_retry_delivers(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, T2V)
    op = transfer(job)
    op.s3_hook.get_conn().meta.events.register(
        "before-call.s3.CopyObject",
        lambda **_: (
            AWSResponse("https://s3.test", 503, {}, None),
            {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}},
        ),
    )

    with pytest.raises(VideoDeliveryError, match="SlowDown") as caught:
        op.execute(make_context())

    assert_failed_cleanly(emulator, moto_s3, job, caught.value, "videos/out.mp4")
    # the next try (replace=False) is not refused by an unverified leftover object
    result = transfer(job).execute(make_context())
    check_delivered(moto_s3, result, job, "videos/out.mp4")


def test_an_s3_checksum_that_differs_from_the_bytes_received_fails_and_removes_the_object(venice, moto_s3):
    """S3 computes the object's SHA-256 on the stamping copy; a mismatch means S3 holds other bytes."""
    emulator = venice()
    job = queue_job(emulator, T2V)
    op = transfer(job)
    other = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()

    def tamper(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "HeadObject" and "ChecksumSHA256" in parsed:
            parsed["ChecksumSHA256"] = other

    op.s3_hook.get_conn().meta.events.register("after-call.s3.HeadObject", tamper)

    with pytest.raises(VideoDeliveryError, match=re.escape(f"SHA-256 {other} in S3")) as caught:
        op.execute(make_context())

    assert_failed_cleanly(emulator, moto_s3, job, caught.value, "videos/out.mp4")


@pytest.mark.parametrize("model", [T2V, VPS])
def test_a_retry_after_a_failed_release_completes_without_downloading_again(venice, moto_s3, model):
    emulator = venice()
    job = queue_job(emulator, model)
    emulator.add_faults({"endpoint": "/video/complete", "status": 503})

    with pytest.raises(AirflowException, match="safely in"):
        transfer(job).execute(make_context())

    first = check_delivered(moto_s3, {**transfer_result(moto_s3, job)}, job, "videos/out.mp4")
    before = len(emulator.calls())

    result = transfer(job).execute(make_context())  # replace=False: the key exists, but it is this job's

    check_delivered(moto_s3, result, job, "videos/out.mp4")
    assert object_bytes(moto_s3, BUCKET, "videos/out.mp4") == first
    calls = emulator.calls()[before:]
    expected = (
        ["POST /api/v1/video/complete"] if model == T2V else ["DELETE /_media", "POST /api/v1/video/complete"]
    )
    assert venice_paths(calls) == expected


def transfer_result(s3: Any, job: dict[str, Any]) -> dict[str, Any]:
    """The result a delivery of ``job`` to ``videos/out.mp4`` returns, rebuilt from S3."""
    head = s3.head_object(Bucket=BUCKET, Key="videos/out.mp4")
    return {
        "s3_uri": f"s3://{BUCKET}/videos/out.mp4",
        "bucket": BUCKET,
        "key": "videos/out.mp4",
        "size_bytes": head["ContentLength"],
        "sha256": head["Metadata"]["sha256"],
        "content_type": head["ContentType"],
        "model": job["model"],
        "queue_id": job["queue_id"],
        "quote_usd": job["quote_usd"],
    }


def test_an_expired_download_url_fails_without_retries(venice, moto_s3):
    emulator = venice()
    job = queue_job(emulator, VPS)
    emulator.advance(25 * 3600)

    with pytest.raises(AirflowFailException, match="expire") as caught:
        transfer(job).execute(make_context())

    assert_failed_cleanly(emulator, moto_s3, job, caught.value, "videos/out.mp4")
    [download] = calls_to(emulator.calls(), "/_media")
    assert download["status"] in (403, 404, 410)


def test_on_kill_during_an_upload_aborts_it(venice, moto_s3):
    emulator = venice(video_bytes=60 * MB)
    job = queue_job(emulator, T2V)
    op = transfer(job)
    uploading, killed = threading.Event(), threading.Event()

    def first_part_in_flight(params: dict[str, Any], **_: Any) -> None:
        if int(params["query_string"]["partNumber"]) == 1:
            uploading.set()
            killed.wait(30)

    op.s3_hook.get_conn().meta.events.register("before-call.s3.UploadPart", first_part_in_flight)
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
    assert_failed_cleanly(emulator, moto_s3, job, error, "videos/out.mp4")


# --- the reader on its own -----------------------------------------------------------------------

MP4_HEAD = b"\x00\x00\x00\x18ftypisom"


def test_reader_passes_bytes_through_and_hashes_them():
    data = MP4_HEAD + bytes(range(256)) * 100
    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    reader = io.BufferedReader(VerifyingReader(iter(chunks), len(data), threading.Event()), 4096)
    raw = reader.raw

    assert reader.read() == data
    assert isinstance(raw, VerifyingReader)
    assert raw.size == len(data)
    assert raw.digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_reader_without_content_length_still_checks_the_signature():
    reader = VerifyingReader(iter([b"\x00\x00", b"\x00\x18ft", b"ypisom", b"rest"]), None, threading.Event())
    assert io.BufferedReader(reader).read().endswith(b"rest")

    bad = VerifyingReader(iter([b"\x00\x00", b"\x00\x18mo", b"ov"]), None, threading.Event())
    with pytest.raises(VideoDeliveryError, match="not an MP4"):
        io.BufferedReader(bad).read()


def test_reader_refuses_an_empty_body():
    with pytest.raises(VideoDeliveryError, match="not an MP4"):
        io.BufferedReader(VerifyingReader(iter([]), 0, threading.Event())).read()


def test_reader_stops_when_aborted():
    abort = threading.Event()
    reader = io.BufferedReader(VerifyingReader(iter([MP4_HEAD, b"x" * 10]), None, abort), 8)
    assert reader.read(8) == MP4_HEAD[:8]
    abort.set()
    with pytest.raises(VideoDeliveryError, match="cancelled"):
        reader.read()


def test_object_exists_helper_sees_exact_keys(moto_s3):
    moto_s3.put_object(Bucket=BUCKET, Key="a/b.mp4", Body=b"x")
    assert object_exists(moto_s3, BUCKET, "a/b.mp4")
    assert not object_exists(moto_s3, BUCKET, "a/b")
