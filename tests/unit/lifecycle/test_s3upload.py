"""Streaming a video into S3: part sizes, CRC32 arithmetic, and uploads against moto's in-process S3.

What the client sent is read from botocore's ``before-send`` events (the wire headers and bodies), and
S3 failures are injected with ``before-call`` hooks that answer in the server's place.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from botocore.httpchecksum import Crc32Checksum
from hypothesis import given, settings, strategies as st

from airflow_provider_venice.lifecycle import s3upload
from airflow_provider_venice.lifecycle.failures import DestinationTakenError, VideoDeliveryError
from airflow_provider_venice.lifecycle.receive import VideoReceiver
from airflow_provider_venice.lifecycle.s3upload import (
    MAX_PART_SIZE,
    MAX_PARTS,
    MIB,
    MIN_PART_SIZE,
    PARTS_IN_FLIGHT,
    StoredObject,
    UploadTarget,
    abort_upload,
    crc32_b64,
    crc32_combine,
    error_status,
    part_size,
    upload_video,
)
from airflow_provider_venice.testing import Mp4File, VideoSpec
from tests.integration.s3_fixtures import (
    BUCKET,
    assert_nothing_left,
    fail_upload_parts,
    object_bytes,
    object_sha256,
    uploads_in_progress,
)

KEY = "videos/out.mp4"
GIB = 1024 * MIB
TIB = 1024 * GIB
CHUNK = 256 * 1024
METADATA = {"venice-queue-id": "q-1", "venice-model": "wan-2-7-text-to-video"}


# --- CRC32 arithmetic ----------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_crc32_combine_equals_the_crc32_of_the_concatenation(a: bytes, b: bytes) -> None:
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


@given(st.lists(st.binary(max_size=64), max_size=12))
def test_crc32_combine_folds_any_number_of_parts(parts: list[bytes]) -> None:
    crc = 0
    for part in parts:
        crc = crc32_combine(crc, zlib.crc32(part), len(part))
    assert crc == zlib.crc32(b"".join(parts))


@pytest.mark.parametrize("length", [1, 7, 8, MIB, 8 * MIB + 13])
def test_crc32_combine_with_long_parts(length: int) -> None:
    head, tail = b"ftyp-and-moov" * 11, bytes(range(256)) * (length // 256) + bytes(length % 256)
    assert crc32_combine(zlib.crc32(head), zlib.crc32(tail), len(tail)) == zlib.crc32(head + tail)


def test_crc32_combine_with_an_empty_second_part_is_the_first() -> None:
    assert crc32_combine(0xDEADBEEF, 0, 0) == 0xDEADBEEF


@given(st.binary(max_size=200))
def test_crc32_b64_is_what_botocore_and_s3_write(data: bytes) -> None:
    checksum = Crc32Checksum()
    checksum.update(data)
    assert crc32_b64(zlib.crc32(data)) == checksum.b64digest()


def test_crc32_b64_is_base64_of_four_big_endian_bytes() -> None:
    assert crc32_b64(0) == "AAAAAA=="
    assert crc32_b64(0xFFFFFFFF) == "/////w=="
    assert base64.b64decode(crc32_b64(0x01020304)) == b"\x01\x02\x03\x04"


def test_stored_object_gives_its_crc32_as_s3_writes_it() -> None:
    stored = StoredObject('"etag"', None, 3, zlib.crc32(b"abc"), 1)
    assert stored.checksum_crc32 == crc32_b64(zlib.crc32(b"abc"))


# --- part sizes ----------------------------------------------------------------------------------

lengths = st.integers(0, MAX_PARTS * MAX_PART_SIZE)


@settings(max_examples=500)
@given(lengths, st.integers(1, MAX_PARTS))
def test_part_size_for_a_known_length(length: int, number: int) -> None:
    size = part_size(number, length)
    assert MIN_PART_SIZE <= size <= MAX_PART_SIZE
    assert size % MIB == 0
    assert -(-length // size) <= MAX_PARTS  # never more than 10,000 parts
    assert part_size(1, length) == size  # every part of a known length is the same size


@pytest.mark.parametrize("length", [0, 1, MIN_PART_SIZE, MAX_PARTS * MIN_PART_SIZE])
def test_part_size_is_at_least_8_mib(length: int) -> None:
    assert part_size(1, length) == MIN_PART_SIZE == 8 * MIB


def test_part_size_grows_just_enough_for_10000_parts() -> None:
    length = MAX_PARTS * MIN_PART_SIZE + 1
    assert part_size(1, length) == MIN_PART_SIZE + MIB
    assert part_size(1, MAX_PARTS * MAX_PART_SIZE) == MAX_PART_SIZE


@pytest.mark.parametrize("length", [MAX_PARTS * MAX_PART_SIZE + 1, 60 * TIB])
def test_part_size_refuses_more_than_10000_parts_of_5_gib(length: int) -> None:
    with pytest.raises(VideoDeliveryError, match=f"{length} bytes is more than one S3 object can hold"):
        part_size(1, length)


def test_part_size_for_an_unknown_length_grows_to_reach_5_tib() -> None:
    sizes = [part_size(number, None) for number in range(1, MAX_PARTS + 1)]
    assert sizes[0] == MIN_PART_SIZE
    assert all(MIN_PART_SIZE <= size <= MAX_PART_SIZE for size in sizes)
    assert sizes == sorted(sizes)
    assert sum(sizes) >= 5 * TIB
    assert sizes[-1] <= MAX_PART_SIZE


@given(st.integers(1, 100 * MAX_PARTS))
def test_part_size_for_an_unknown_length_never_exceeds_5_gib(number: int) -> None:
    assert MIN_PART_SIZE <= part_size(number, None) <= MAX_PART_SIZE


# --- against moto ---------------------------------------------------------------------------------


def video(size: int | None = None) -> Mp4File:
    return Mp4File(VideoSpec.for_request("5s", "16:9"), size)


def whole(file: Mp4File) -> bytes:
    return b"".join(file.chunks(CHUNK))


class CountingChunks:
    """The video's chunks, counting the bytes handed out."""

    def __init__(self, file: Mp4File, chunk_size: int = CHUNK) -> None:
        self.taken = 0
        self._chunks = file.chunks(chunk_size)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.taken += len(chunk)
            yield chunk


def header(request: Any, name: str) -> str | None:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def body_of(request: Any) -> bytes:
    return bytes_of(request.body)


def bytes_of(body: Any) -> bytes:
    """The bytes of a request body, whatever botocore holds it in (bytes or a file)."""
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if hasattr(body, "getvalue"):
        return bytes(body.getvalue())
    position = body.tell()
    data = body.read()
    body.seek(position)
    return bytes(data)


class Wire:
    """What the client sent, per operation, as botocore's ``before-send`` events show it."""

    OPERATIONS = (
        "PutObject",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
    )

    def __init__(self, s3: Any) -> None:
        self.sent: list[tuple[str, Any, bytes]] = []
        self._lock = threading.Lock()
        for operation in self.OPERATIONS:
            s3.meta.events.register(f"before-send.s3.{operation}", self._recorder(operation))

    def _recorder(self, operation: str) -> Any:
        def record(request: Any, **_: Any) -> None:
            with self._lock:
                self.sent.append(
                    (operation, request, body_of(request) if operation != "CreateMultipartUpload" else b"")
                )

        return record

    def of(self, operation: str) -> list[tuple[Any, bytes]]:
        return [(request, body) for name, request, body in self.sent if name == operation]

    def operations(self) -> list[str]:
        return [name for name, _, _ in self.sent]

    def parts(self) -> dict[int, tuple[Any, bytes]]:
        """Each part sent, by part number (the parts are sent in parallel, in any order)."""
        found = {}
        for request, body in self.of("UploadPart"):
            number = int(parse_qs(urlsplit(request.url).query)["partNumber"][0])
            found[number] = (request, body)
        return dict(sorted(found.items()))

    def part_sizes(self) -> list[int]:
        return [len(body) for _, body in self.parts().values()]


def target(if_none_match: bool = True, key: str = KEY) -> UploadTarget:
    return UploadTarget(BUCKET, key, dict(METADATA), if_none_match)


def upload(
    s3: Any,
    file: Mp4File,
    *,
    if_none_match: bool = True,
    expected: int | bool | None = True,
    started: Any = None,
    sealed: Any = None,
    chunks: Any = None,
    abort: threading.Event | None = None,
) -> StoredObject:
    length = file.size if expected is True else (None if expected is False else expected)
    receiver = VideoReceiver(length, abort or threading.Event())  # type: ignore[arg-type]
    return upload_video(
        s3,
        target(if_none_match),
        iter(chunks if chunks is not None else file.chunks(CHUNK)),
        receiver,
        started or (lambda upload_id: None),
        sealed or (lambda upload_id, size, crc32: None),
    )


class Sealings:
    """Records each ``sealed(upload_id, size, crc32)`` call, with what S3 had been sent by then."""

    def __init__(self, wire: Wire) -> None:
        self.calls: list[tuple[str | None, int, int]] = []
        self.sent_before: list[list[str]] = []
        self._wire = wire

    def __call__(self, upload_id: str | None, size: int, crc32: int) -> None:
        self.calls.append((upload_id, size, crc32))
        self.sent_before.append(self._wire.operations())


def test_a_small_video_goes_as_one_put_object(moto_s3: Any) -> None:
    wire, file, started = Wire(moto_s3), video(), []
    sealed = Sealings(wire)
    stored = upload(moto_s3, file, started=started.append, sealed=sealed)
    data = whole(file)
    assert wire.operations() == ["PutObject"]
    assert started == []  # no multipart upload exists: nothing to record before the one PUT
    # sealed once every byte passed the checks, before S3 was asked to write anything
    assert sealed.calls == [(None, len(data), zlib.crc32(data))]
    assert sealed.sent_before == [[]]
    assert (stored.size, stored.parts, stored.crc32) == (len(data), 1, zlib.crc32(data))
    request, body = wire.of("PutObject")[0]
    assert body == data
    assert header(request, "x-amz-checksum-crc32") == crc32_b64(zlib.crc32(data))
    assert header(request, "Content-Type") == "video/mp4"
    assert object_bytes(moto_s3, BUCKET, KEY) == data
    head = moto_s3.head_object(Bucket=BUCKET, Key=KEY)
    assert head["Metadata"] == METADATA
    assert head["ContentType"] == "video/mp4"
    assert stored.etag == head["ETag"]


def test_a_video_of_exactly_one_part_goes_as_one_put_object(moto_s3: Any) -> None:
    wire = Wire(moto_s3)
    stored = upload(moto_s3, video(MIN_PART_SIZE))
    assert wire.operations() == ["PutObject"]
    assert stored.size == MIN_PART_SIZE


def test_a_video_over_one_part_goes_as_a_multipart_upload_with_checksums(moto_s3: Any) -> None:
    file = video(2 * MIN_PART_SIZE + 3 * MIB + 17)
    wire, events = Wire(moto_s3), []
    moto_s3.meta.events.register("before-send.s3.UploadPart", lambda **_: events.append("part"))
    moto_s3.meta.events.register(
        "before-send.s3.CompleteMultipartUpload", lambda **_: events.append("complete")
    )
    sealed = Sealings(wire)

    def seal(upload_id: str | None, size: int, crc32: int) -> None:
        events.append(f"sealed {upload_id}")
        sealed(upload_id, size, crc32)

    stored = upload(
        moto_s3, file, started=lambda upload_id: events.append(f"started {upload_id}"), sealed=seal
    )
    data = whole(file)

    assert wire.operations()[0] == "CreateMultipartUpload"
    assert wire.operations()[-1] == "CompleteMultipartUpload"
    upload_id = events[0].removeprefix("started ")
    assert events[0].startswith("started ")
    assert events[0] != "started None"
    assert events.count("part") == 3
    # sealed after every part, with the upload's id, the size and the whole CRC32; then S3 commits
    assert events[-2:] == [f"sealed {upload_id}", "complete"]
    assert sealed.calls == [(upload_id, len(data), zlib.crc32(data))]
    assert "CompleteMultipartUpload" not in sealed.sent_before[0]

    create, _ = wire.of("CreateMultipartUpload")[0]
    assert header(create, "x-amz-checksum-algorithm") == "CRC32"
    assert header(create, "x-amz-checksum-type") == "FULL_OBJECT"
    assert header(create, "x-amz-meta-venice-queue-id") == "q-1"

    parts = wire.parts()
    assert sorted(parts) == [1, 2, 3]
    assert [len(parts[n][1]) for n in (1, 2, 3)] == [MIN_PART_SIZE, MIN_PART_SIZE, 3 * MIB + 17]
    assert b"".join(parts[n][1] for n in (1, 2, 3)) == data
    for number, (request, body) in parts.items():
        assert header(request, "x-amz-checksum-crc32") == crc32_b64(zlib.crc32(body)), number

    complete, _ = wire.of("CompleteMultipartUpload")[0]
    assert header(complete, "x-amz-checksum-crc32") == crc32_b64(zlib.crc32(data))
    assert header(complete, "x-amz-checksum-type") == "FULL_OBJECT"
    assert header(complete, "x-amz-mp-object-size") == str(len(data))
    assert header(complete, "If-None-Match") == "*"

    assert (stored.size, stored.parts, stored.crc32) == (len(data), 3, zlib.crc32(data))
    assert object_sha256(moto_s3, BUCKET, KEY) == (len(data), hashlib.sha256(data).hexdigest())
    head = moto_s3.head_object(Bucket=BUCKET, Key=KEY, ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == stored.checksum_crc32
    assert head["Metadata"] == METADATA
    assert head["ContentType"] == "video/mp4"
    assert uploads_in_progress(moto_s3, BUCKET) == []


def test_a_video_of_unknown_length_goes_in_parts_too(moto_s3: Any) -> None:
    file = video(MIN_PART_SIZE + 5)
    wire = Wire(moto_s3)
    stored = upload(moto_s3, file, expected=False)
    assert wire.part_sizes() == [MIN_PART_SIZE, 5]
    assert stored.size == file.size
    assert object_sha256(moto_s3, BUCKET, KEY)[1] == hashlib.sha256(whole(file)).hexdigest()


def test_chunks_larger_than_a_part_are_cut(moto_s3: Any) -> None:
    file = video(2 * MIN_PART_SIZE + 1)
    data = whole(file)
    wire = Wire(moto_s3)
    upload(
        moto_s3,
        file,
        chunks=[data[:10], data[10 : 2 * MIN_PART_SIZE + 1], b"", data[2 * MIN_PART_SIZE + 1 :]],
    )
    assert wire.part_sizes() == [MIN_PART_SIZE, MIN_PART_SIZE, 1]
    assert object_bytes(moto_s3, BUCKET, KEY) == data


def test_with_if_none_match_the_single_put_is_conditional(moto_s3: Any) -> None:
    wire = Wire(moto_s3)
    upload(moto_s3, video(), if_none_match=True)
    assert header(wire.of("PutObject")[0][0], "If-None-Match") == "*"


@pytest.mark.parametrize("size", [None, MIN_PART_SIZE + 1])
def test_without_if_none_match_the_write_overwrites(moto_s3: Any, size: int | None) -> None:
    moto_s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"an older video")
    wire = Wire(moto_s3)
    upload(moto_s3, video(size), if_none_match=False)
    for operation in ("PutObject", "CompleteMultipartUpload"):
        for request, _ in wire.of(operation):
            assert header(request, "If-None-Match") is None
    assert object_bytes(moto_s3, BUCKET, KEY) == whole(video(size))


def create_meanwhile(s3: Any, operation: str) -> bytes:
    """Make another writer create the key just before ``operation`` is sent (once)."""
    other = boto3.client("s3", region_name="us-east-1")
    theirs = b"the other writer's video"
    done: list[bool] = []

    def race(**_: Any) -> None:
        if not done:
            done.append(True)
            other.put_object(Bucket=BUCKET, Key=KEY, Body=theirs)

    s3.meta.events.register(f"before-call.s3.{operation}", race)
    return theirs


@pytest.mark.parametrize(
    ("size", "operation"), [(None, "PutObject"), (MIN_PART_SIZE + 1, "CompleteMultipartUpload")]
)
def test_a_key_created_meanwhile_is_left_to_the_other_writer(
    moto_s3: Any, size: int | None, operation: str
) -> None:
    theirs = create_meanwhile(moto_s3, operation)
    wire = Wire(moto_s3)
    with pytest.raises(DestinationTakenError) as caught:
        upload(moto_s3, video(size), if_none_match=True)
    assert f"s3://{BUCKET}/{KEY}" in str(caught.value)
    assert "replace=False" in str(caught.value)
    assert header(wire.of(operation)[0][0], "If-None-Match") == "*"
    assert object_bytes(moto_s3, BUCKET, KEY) == theirs
    assert uploads_in_progress(moto_s3, BUCKET) == []


def test_a_receiver_error_while_streaming_aborts_the_multipart_upload(moto_s3: Any) -> None:
    file = video(3 * MIN_PART_SIZE)
    wire = Wire(moto_s3)
    with pytest.raises(VideoDeliveryError, match="more than the announced"):
        upload(moto_s3, file, expected=2 * MIN_PART_SIZE)
    assert wire.of("CreateMultipartUpload")
    assert wire.of("AbortMultipartUpload")
    assert not wire.of("CompleteMultipartUpload")
    assert_nothing_left(moto_s3, BUCKET, KEY)


def test_a_body_cut_short_aborts_before_completing(moto_s3: Any) -> None:
    file = video(2 * MIN_PART_SIZE)
    wire = Wire(moto_s3)
    with pytest.raises(VideoDeliveryError, match="cut short"):
        upload(moto_s3, file, expected=2 * MIN_PART_SIZE + 100)
    assert wire.of("UploadPart")
    assert not wire.of("CompleteMultipartUpload")
    assert_nothing_left(moto_s3, BUCKET, KEY)


def test_a_broken_mp4_is_never_committed_as_one_put(moto_s3: Any) -> None:
    wire = Wire(moto_s3)
    data = whole(video())
    with pytest.raises(VideoDeliveryError):
        upload(moto_s3, video(), chunks=[data[:-5]], expected=False)
    assert wire.operations() == []
    assert_nothing_left(moto_s3, BUCKET, KEY)


def test_the_abort_event_stops_the_upload_and_aborts_it(moto_s3: Any) -> None:
    file, abort = video(3 * MIN_PART_SIZE), threading.Event()
    chunks = CountingChunks(file)

    def killed_midway() -> Iterator[bytes]:
        for chunk in chunks:
            if chunks.taken > MIN_PART_SIZE + 4 * CHUNK:
                abort.set()
            yield chunk

    wire = Wire(moto_s3)
    with pytest.raises(VideoDeliveryError, match="cancelled"):
        upload(moto_s3, file, chunks=killed_midway(), abort=abort)
    assert wire.of("AbortMultipartUpload")
    assert_nothing_left(moto_s3, BUCKET, KEY)


def test_a_part_refused_by_s3_aborts_the_multipart_upload(moto_s3: Any) -> None:
    refused = fail_upload_parts(moto_s3, from_part=2)
    wire = Wire(moto_s3)
    with pytest.raises(ClientError, match="InternalError"):
        upload(moto_s3, video(3 * MIN_PART_SIZE + 1))
    assert 2 in refused
    assert wire.of("AbortMultipartUpload")
    assert not wire.of("CompleteMultipartUpload")
    assert_nothing_left(moto_s3, BUCKET, KEY)


def test_started_raising_aborts_the_multipart_upload(moto_s3: Any) -> None:
    def refuse(upload_id: str | None) -> None:
        raise RuntimeError(f"could not record {upload_id}")

    wire = Wire(moto_s3)
    with pytest.raises(RuntimeError, match="could not record"):
        upload(moto_s3, video(MIN_PART_SIZE + 1), started=refuse)
    assert wire.of("CreateMultipartUpload")
    assert not wire.of("UploadPart")
    assert wire.of("AbortMultipartUpload")
    assert_nothing_left(moto_s3, BUCKET, KEY)


def test_sealed_raising_before_a_single_put_writes_nothing(moto_s3: Any) -> None:
    def refuse(upload_id: str | None, size: int, crc32: int) -> None:
        raise RuntimeError("could not record")

    wire = Wire(moto_s3)
    with pytest.raises(RuntimeError):
        upload(moto_s3, video(), sealed=refuse)
    assert wire.operations() == []
    assert_nothing_left(moto_s3, BUCKET, KEY)


def test_sealed_raising_aborts_the_multipart_upload_before_completing(moto_s3: Any) -> None:
    def refuse(upload_id: str | None, size: int, crc32: int) -> None:
        raise RuntimeError(f"could not record {upload_id}")

    wire = Wire(moto_s3)
    with pytest.raises(RuntimeError, match="could not record"):
        upload(moto_s3, video(MIN_PART_SIZE + 1), sealed=refuse)
    assert len(wire.of("UploadPart")) == 2
    assert not wire.of("CompleteMultipartUpload")
    assert wire.of("AbortMultipartUpload")
    assert_nothing_left(moto_s3, BUCKET, KEY)


def test_abort_upload_aborts(moto_s3: Any) -> None:
    upload_id = moto_s3.create_multipart_upload(Bucket=BUCKET, Key=KEY)["UploadId"]
    abort_upload(moto_s3, BUCKET, KEY, upload_id)
    assert uploads_in_progress(moto_s3, BUCKET) == []


def test_abort_upload_tolerates_no_such_upload(moto_s3: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=s3upload.__name__)
    upload_id = moto_s3.create_multipart_upload(Bucket=BUCKET, Key=KEY)["UploadId"]
    abort_upload(moto_s3, BUCKET, KEY, upload_id)
    abort_upload(moto_s3, BUCKET, KEY, upload_id)  # already aborted
    abort_upload(moto_s3, BUCKET, KEY, "never-existed")
    assert [r for r in caplog.records if r.name == s3upload.__name__] == []


def test_abort_upload_warns_but_does_not_raise_on_other_errors(
    moto_s3: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=s3upload.__name__)

    def denied(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Code": "AccessDenied", "Message": "Access Denied"}
        return AWSResponse("https://s3.test", 403, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }

    moto_s3.meta.events.register("before-call.s3.AbortMultipartUpload", denied)
    abort_upload(moto_s3, BUCKET, KEY, "upload-123")
    warnings = [r.getMessage() for r in caplog.records if r.name == s3upload.__name__]
    assert len(warnings) == 1
    assert "upload-123" in warnings[0]
    assert f"s3://{BUCKET}/{KEY}" in warnings[0]


def test_at_most_parts_in_flight_are_sent_at_once_in_bounded_memory(moto_s3: Any) -> None:
    parts = PARTS_IN_FLIGHT + 3
    file = video(parts * MIN_PART_SIZE - MIB)
    chunks = CountingChunks(file)
    lock = threading.Lock()
    state = {"in_flight": 0, "most": 0, "done_bytes": 0, "most_held": 0}

    def held() -> None:
        """Bytes taken from the stream whose part has not finished uploading (so still in memory)."""
        state["most_held"] = max(state["most_held"], chunks.taken - state["done_bytes"])

    def starting(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["venice_part_bytes"] = len(bytes_of(params["body"]))
        with lock:
            state["in_flight"] += 1
            state["most"] = max(state["most"], state["in_flight"])
            held()
        if int(params["query_string"]["partNumber"]) <= PARTS_IN_FLIGHT:
            # the first parts wait (a while at most) until as many are in flight as may be
            waited = 0.0
            while state["in_flight"] < PARTS_IN_FLIGHT and waited < 2.0:
                time.sleep(0.01)
                waited += 0.01
        time.sleep(0.05)  # long enough for an unbounded uploader to start more, or read ahead

    def finished(context: dict[str, Any], **_: Any) -> None:
        with lock:
            held()
            state["in_flight"] -= 1
            state["done_bytes"] += context["venice_part_bytes"]

    moto_s3.meta.events.register("before-call.s3.UploadPart", starting)
    moto_s3.meta.events.register("after-call.s3.UploadPart", finished)
    stored = upload(moto_s3, file, chunks=chunks)
    assert stored.parts == parts
    assert state["done_bytes"] == file.size
    assert state["most"] == PARTS_IN_FLIGHT  # parallel, but never more than PARTS_IN_FLIGHT
    # in memory at most: the parts being sent, the one being filled, and one chunk looked ahead
    assert state["most_held"] <= (PARTS_IN_FLIGHT + 1) * MIN_PART_SIZE + CHUNK
    assert object_sha256(moto_s3, BUCKET, KEY)[0] == file.size


def test_error_status_reads_botocore_errors(moto_s3: Any) -> None:
    with pytest.raises(ClientError) as caught:
        moto_s3.head_object(Bucket=BUCKET, Key="missing")
    assert error_status(caught.value) == 404
    assert error_status(RuntimeError("no response")) is None
