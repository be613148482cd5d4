"""S3's limits on parts, and the checksums a delivery asks S3 to check (``s3_checksum``).

Part sizes are checked against S3's rules for 1 MiB, 1 GiB, 100 GiB, the largest object S3 takes and an
unknown length, and the memory an upload holds is measured against part size x parts in flight. The
``s3_checksum`` modes are checked on the wire: every request the operator's own S3 client sends is seen
by a botocore ``before-send`` hook (after botocore added whatever headers it adds itself) and compared
with the mode: ``FULL_OBJECT`` (each part's CRC32 and the whole object's), ``COMPOSITE`` (each part's
only, no checksum type) and ``NONE`` (no checksum headers at all, for stores that refuse them).
"""

from __future__ import annotations

import base64
import re
import threading
import time
import tracemalloc
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from airflow_provider_venice.lifecycle import s3upload
from airflow_provider_venice.lifecycle.receive import VideoReceiver
from airflow_provider_venice.lifecycle.s3upload import (
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    PARTS_IN_FLIGHT,
    UploadTarget,
    part_size,
    upload_video,
)
from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator
from airflow_provider_venice.testing import Mp4File, VideoSpec
from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator
from airflow_provider_venice.version_compat import AirflowFailException
from tests.integration.s3_fixtures import (
    BUCKET,
    REQUESTS,
    T2V,
    calls_to,
    make_context,
    object_bytes,
    queue_job,
    read_manifest,
    uploads_in_progress,
)

MIB = 1024 * 1024
GIB = 1024 * MIB
TIB = 1024 * GIB
S3_MIN_PART = 5 * MIB  # S3's floor for every part but the last
S3_MAX_PART = 5 * GIB
S3_MAX_PARTS = 10_000
S3_MAX_OBJECT = 5 * TIB
KEY = "modes/video.mp4"
MULTIPART_BYTES = 2 * MIN_PART_SIZE + 1000  # three parts
WRITES = ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


# --- part sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "length", [1 * MIB, 1 * GIB, 100 * GIB, S3_MAX_OBJECT], ids=["1MiB", "1GiB", "100GiB", "5TiB"]
)
def test_a_known_length_is_cut_in_parts_within_s3_limits(length: int) -> None:
    size = part_size(1, length)
    parts = -(-length // size)
    assert S3_MIN_PART <= MIN_PART_SIZE <= size <= S3_MAX_PART
    assert size == MIN_PART_SIZE or size % MIB == 0
    assert parts <= S3_MAX_PARTS
    # the part size is fixed for a known length: every part but the last is that size
    assert {part_size(number, length) for number in (1, 2, parts)} == {size}
    # as few parts as S3 allows, within one MiB of the smallest size that fits in 10,000 parts
    assert size == MIN_PART_SIZE or size - MIB < length / S3_MAX_PARTS


def test_the_expected_part_counts() -> None:
    assert part_size(1, 1 * MIB) == MIN_PART_SIZE == 8 * MIB  # one part: a single PUT
    assert -(-GIB // part_size(1, GIB)) == 128
    assert part_size(1, 100 * GIB) == 11 * MIB  # 10.24 MiB rounded up to whole MiB
    assert -(-100 * GIB // part_size(1, 100 * GIB)) == 9310


def test_a_length_beyond_what_s3_holds_is_refused() -> None:
    with pytest.raises(Exception, match="more than one S3 object can hold"):
        part_size(1, S3_MAX_PART * S3_MAX_PARTS + 1)


def test_an_unknown_length_grows_its_parts_to_reach_s3s_largest_object() -> None:
    sizes = [part_size(number, None) for number in range(1, S3_MAX_PARTS + 1)]
    assert sizes[0] == MIN_PART_SIZE
    assert all(S3_MIN_PART <= size <= S3_MAX_PART for size in sizes)
    assert sizes == sorted(sizes)  # never shrinks
    assert sum(sizes) >= S3_MAX_OBJECT  # one video can be as large as S3 allows
    # the first thousand parts stay small, so a short video of unknown length holds little memory
    assert max(sizes[:1000]) == MIN_PART_SIZE


def test_the_upload_constants_are_s3s() -> None:
    assert MAX_PARTS == S3_MAX_PARTS
    assert MAX_PART_SIZE == S3_MAX_PART
    assert 1 <= PARTS_IN_FLIGHT <= 16


class SlowS3:
    """Takes parts slowly and keeps only their sizes; counts the parts being sent at one time."""

    def __init__(self, delay_s: float = 0.02) -> None:
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.acknowledged = 0
        self.parts: dict[int, int] = {}

    def create_multipart_upload(self, **_: Any) -> dict[str, Any]:
        return {"UploadId": "upload-1"}

    def upload_part(self, *, PartNumber: int, Body: Any, **_: Any) -> dict[str, Any]:
        size = Body.getbuffer().nbytes if hasattr(Body, "getbuffer") else len(Body)
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.delay_s)
        with self.lock:
            self.in_flight -= 1
            self.acknowledged += size
            self.parts[PartNumber] = size
        return {"ETag": f'"etag-{PartNumber}"'}

    def complete_multipart_upload(self, **_: Any) -> dict[str, Any]:
        return {"ETag": '"done-1"'}

    def abort_multipart_upload(self, **_: Any) -> None:
        raise AssertionError("nothing failed: nothing to abort")


@dataclass
class Pulled:
    """How far the upload has read its source ahead of what S3 has acknowledged."""

    s3: SlowS3
    read: int = 0
    most_ahead: int = 0

    def chunks(self, video: Mp4File) -> Any:
        for chunk in video.chunks(MIB):
            self.read += len(chunk)
            self.most_ahead = max(self.most_ahead, self.read - self.s3.acknowledged)
            yield chunk


@pytest.mark.parametrize("known_length", [True, False], ids=["content-length", "unknown-length"])
def test_memory_stays_bounded_by_part_size_times_parts_in_flight(known_length: bool) -> None:
    video = Mp4File(VideoSpec.for_request("5s", "16:9"), 20 * MIN_PART_SIZE + 12345)
    s3 = SlowS3()
    pulled = Pulled(s3)
    receiver = VideoReceiver(video.size if known_length else None, threading.Event())
    target = UploadTarget(BUCKET, KEY, {}, if_none_match=False)
    tracemalloc.start()
    try:
        stored = upload_video(s3, target, pulled.chunks(video), receiver, lambda _: None, lambda *_: None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.size == video.size == sum(s3.parts.values())
    assert len(s3.parts) == 21
    assert s3.most_in_flight <= PARTS_IN_FLIGHT
    bound = MIN_PART_SIZE * (PARTS_IN_FLIGHT + 2)  # parts being sent, the one being filled, its pieces
    assert video.size > 3 * bound  # what is held does not grow with the video
    assert pulled.most_ahead <= bound, f"read {pulled.most_ahead} bytes ahead of S3 (bound {bound})"
    assert peak <= bound + MIN_PART_SIZE, f"peak {peak / MIB:.0f} MiB for a {video.size / MIB:.0f} MiB video"


# --- what is sent for each mode ----------------------------------------------------------------------


@dataclass
class Sent:
    """One request as it left the client: operation, key, headers (lowercase names), plain body."""

    operation: str
    key: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes | None

    def checksum_headers(self) -> dict[str, str]:
        """Headers that carry or announce a checksum (flexible checksums, trailers, aws-chunked)."""
        return {
            name: value
            for name, value in self.headers.items()
            if "checksum" in name
            or name in ("x-amz-trailer", "content-md5")
            or (name == "content-encoding" and "aws-chunked" in value)
        }


def record_sent(s3: Any) -> list[Sent]:
    """Record every S3 request ``s3`` sends, as sent (a ``before-send`` hook; plain bodies are kept)."""
    sent: list[Sent] = []

    def keep(request: Any, event_name: str, **_: Any) -> None:
        url = urlsplit(request.url)
        path = unquote(url.path).lstrip("/")
        if not url.netloc.startswith(BUCKET + "."):
            path = path.removeprefix(BUCKET).lstrip("/")
        headers = {
            str(name).lower(): value.decode() if isinstance(value, bytes) else str(value)
            for name, value in request.headers.items()
        }
        body = None
        if "aws-chunked" not in headers.get("content-encoding", ""):
            raw = request.body
            if hasattr(raw, "read"):
                body = raw.read()
                raw.seek(0)
            elif isinstance(raw, bytes | bytearray):
                body = bytes(raw)
        sent.append(Sent(event_name.rsplit(".", 1)[-1], path, parse_qs(url.query), headers, body))

    s3.meta.events.register("before-send.s3", keep)
    return sent


def video_writes(sent: list[Sent]) -> list[Sent]:
    return [request for request in sent if request.operation in WRITES and request.key == KEY]


def listed_part_checksums(complete: Sent) -> list[str | None]:
    assert complete.body is not None
    parts = re.findall(rb"<Part>(.*?)</Part>", complete.body, re.S)
    return [
        match.group(1).decode()
        if (match := re.search(rb"<ChecksumCRC32>(.*?)</ChecksumCRC32>", part))
        else None
        for part in parts
    ]


def deliver(
    venice: Any, moto_s3: Any, mode: str, video_bytes: int | None
) -> tuple[dict[str, Any], list[Sent]]:
    emulator = venice(video_bytes=video_bytes)
    job = queue_job(emulator)
    op = VeniceVideoToS3Operator(task_id="to_s3", job=job, s3_bucket=BUCKET, s3_key=KEY, s3_checksum=mode)
    sent = record_sent(op.s3_hook.get_conn())
    result = op.execute(make_context())
    assert result["queue_id"] == job["queue_id"]
    assert len(calls_to(emulator.calls(), "/video/complete")) == 1
    assert uploads_in_progress(moto_s3, BUCKET) == []
    return result, sent


def check_delivered(moto_s3: Any, result: dict[str, Any], mode: str) -> bytes:
    body = object_bytes(moto_s3, BUCKET, KEY)
    manifest = read_manifest(moto_s3, BUCKET, KEY)
    assert manifest["size_bytes"] == result["size_bytes"] == len(body)
    assert manifest["checksum_crc32"] == result["checksum_crc32"] == crc32_b64(body)
    if mode == "NONE":
        assert manifest["s3_checksum"] is None
    else:
        assert manifest["s3_checksum"]["algorithm"] == "CRC32"
        assert manifest["s3_checksum"]["type"] == mode
    return body


def test_full_object_sends_each_parts_crc32_and_the_whole_objects(venice: Any, moto_s3: Any) -> None:
    result, sent = deliver(venice, moto_s3, "FULL_OBJECT", MULTIPART_BYTES)
    body = check_delivered(moto_s3, result, "FULL_OBJECT")
    writes = video_writes(sent)
    [create] = [w for w in writes if w.operation == "CreateMultipartUpload"]
    assert create.headers.get("x-amz-checksum-algorithm") == "CRC32"
    assert create.headers.get("x-amz-checksum-type") == "FULL_OBJECT"
    parts = [w for w in writes if w.operation == "UploadPart"]
    assert len(parts) == 3
    for part in parts:
        assert part.body is not None
        assert part.headers.get("x-amz-checksum-crc32") == crc32_b64(part.body)
    [complete] = [w for w in writes if w.operation == "CompleteMultipartUpload"]
    assert complete.headers.get("x-amz-checksum-crc32") == crc32_b64(body)
    assert complete.headers.get("x-amz-checksum-type") == "FULL_OBJECT"
    assert complete.headers.get("x-amz-mp-object-size") == str(len(body))
    ordered = sorted(parts, key=lambda part: int(part.query["partNumber"][0]))
    assert listed_part_checksums(complete) == [crc32_b64(part.body or b"") for part in ordered]


def test_composite_sends_each_parts_crc32_but_no_full_object_checksum(venice: Any, moto_s3: Any) -> None:
    result, sent = deliver(venice, moto_s3, "COMPOSITE", MULTIPART_BYTES)
    check_delivered(moto_s3, result, "COMPOSITE")
    writes = video_writes(sent)
    [create] = [w for w in writes if w.operation == "CreateMultipartUpload"]
    assert create.headers.get("x-amz-checksum-algorithm") == "CRC32"
    assert "x-amz-checksum-type" not in create.headers
    parts = [w for w in writes if w.operation == "UploadPart"]
    assert len(parts) == 3
    for part in parts:
        assert part.body is not None
        assert part.headers.get("x-amz-checksum-crc32") == crc32_b64(part.body)
    [complete] = [w for w in writes if w.operation == "CompleteMultipartUpload"]
    assert "x-amz-checksum-crc32" not in complete.headers
    assert "x-amz-checksum-type" not in complete.headers
    ordered = sorted(parts, key=lambda part: int(part.query["partNumber"][0]))
    assert listed_part_checksums(complete) == [crc32_b64(part.body or b"") for part in ordered]


def test_composite_single_put_sends_its_crc32(venice: Any, moto_s3: Any) -> None:
    result, sent = deliver(venice, moto_s3, "COMPOSITE", None)
    # one PUT is one part: the CRC32 S3 checks is the whole object's, and the manifest says so
    body = check_delivered(moto_s3, result, "FULL_OBJECT")
    [put] = video_writes(sent)
    assert put.operation == "PutObject"
    assert put.headers.get("x-amz-checksum-crc32") == crc32_b64(body)
    assert "x-amz-checksum-type" not in put.headers


@pytest.mark.parametrize("video_bytes", [None, MULTIPART_BYTES], ids=["single-put", "multipart"])
def test_none_sends_no_checksum_headers_for_the_video(
    venice: Any, moto_s3: Any, video_bytes: int | None
) -> None:
    result, sent = deliver(venice, moto_s3, "NONE", video_bytes)
    check_delivered(moto_s3, result, "NONE")
    writes = video_writes(sent)
    assert {w.operation for w in writes} >= ({"PutObject"} if video_bytes is None else {"UploadPart"})
    offending = [(w.operation, w.checksum_headers()) for w in writes if w.checksum_headers()]
    assert offending == [], f"s3_checksum='NONE' still sent checksum headers: {offending}"
    complete = [w for w in writes if w.operation == "CompleteMultipartUpload"]
    assert all(checksum is None for w in complete for checksum in listed_part_checksums(w))


def test_none_sends_no_checksum_headers_for_the_manifest_and_poster(venice: Any, moto_s3: Any) -> None:
    """A store that refuses checksum headers refuses them on every write: the objects beside the video too."""
    result, sent = deliver(venice, moto_s3, "NONE", None)
    check_delivered(moto_s3, result, "NONE")
    beside = [w for w in sent if w.operation == "PutObject" and w.key != KEY]
    assert {w.key for w in beside} == {KEY + ".json", KEY + ".poster.jpg"}
    offending = [(w.key, w.checksum_headers()) for w in beside if w.checksum_headers()]
    assert offending == [], f"s3_checksum='NONE' still sent checksum headers: {offending}"


@pytest.mark.parametrize("mode", ["SHA256", "full", "", None])
def test_an_unknown_mode_fails_before_anything_is_paid_naming_the_field(
    venice: Any, moto_s3: Any, mode: Any
) -> None:
    emulator = venice()
    op = VeniceGenerateVideoOperator(
        task_id="generate",
        **REQUESTS[T2V],
        s3_bucket=BUCKET,
        s3_key=KEY,
        s3_checksum=mode,
        deferrable=False,
        window_interval_s=0.05,
    )
    with pytest.raises(AirflowFailException, match="s3_checksum"):
        op.execute(make_context())
    assert calls_to(emulator.calls(), "/video/queue") == []
    assert calls_to(emulator.calls(), "/video/quote") == []


def test_an_unknown_mode_fails_before_the_video_is_downloaded(venice: Any, moto_s3: Any) -> None:
    emulator = venice()
    job = queue_job(emulator)
    before = len(emulator.calls())
    op = VeniceVideoToS3Operator(task_id="to_s3", job=job, s3_bucket=BUCKET, s3_key=KEY, s3_checksum="CRC64")
    with pytest.raises(AirflowFailException, match="s3_checksum"):
        op.execute(make_context())
    assert emulator.calls()[before:] == []
    assert moto_s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_the_modes_are_the_documented_ones() -> None:
    assert s3upload.CHECKSUM_MODES == ("FULL_OBJECT", "COMPOSITE", "NONE")
    with pytest.raises(ValueError, match="s3_checksum"):
        UploadTarget(BUCKET, KEY, {}, if_none_match=False, checksum="CRC32C")
