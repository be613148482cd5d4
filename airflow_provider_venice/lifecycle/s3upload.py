"""Stream a video into one S3 object in bounded memory, with S3 checking a full-object checksum.

Parts are cut from the stream as it arrives and sent by a few threads: memory holds at most
``PARTS_IN_FLIGHT`` parts being sent plus the one being filled. Each part carries its CRC32, and the
upload is completed with the CRC32 of the whole object (``ChecksumType=FULL_OBJECT``), combined from
the parts' CRCs without a second pass over the bytes; S3 refuses the completion when the parts it holds
do not add up to it. CRC32 rather than CRC32C or CRC64NVME because the standard library computes it
(``zlib``), while botocore needs the ``awscrt`` extension for the other two; S3 supports all three as
full-object checksums. With ``if_none_match`` the write is conditional (``If-None-Match: *``): it fails
with :class:`DestinationTakenError` if another writer created the object first.
"""

from __future__ import annotations

import base64
import io
import logging
import mmap
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_venice.lifecycle.failures import DestinationTakenError, VideoDeliveryError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_venice.lifecycle.receive import VideoReceiver

MIB = 1024 * 1024
MIN_PART_SIZE = 8 * MIB  # S3's floor is 5 MiB
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
PARTS_IN_FLIGHT = 3
GROWTH_EVERY = 1000  # parts; without a Content-Length the part size doubles this often
Part = mmap.mmap | io.BytesIO  # a part's bytes, sent as the request body as they are
UPLOAD_TOKEN = "venice-upload-token"  # noqa: S105 (a metadata name: which try wrote the object)
log = logging.getLogger(__name__)


CHECKSUM_MODES = ("FULL_OBJECT", "COMPOSITE", "NONE")


@dataclass(frozen=True)
class UploadTarget:
    """Where and how to write: the object, its metadata, whether it must not exist yet, which checksums.

    ``checksum``: ``FULL_OBJECT`` (each part's CRC32 and the whole object's, checked by S3), ``COMPOSITE``
    (each part's CRC32 only, for stores that refuse full-object checksums), or ``NONE`` (no checksum
    headers, for stores that refuse them; our own checks still run).
    """

    bucket: str
    key: str
    metadata: dict[str, str]
    if_none_match: bool
    content_type: str = "video/mp4"
    checksum: str = "FULL_OBJECT"

    def __post_init__(self) -> None:
        if self.checksum not in CHECKSUM_MODES:
            raise ValueError(f"s3_checksum: {self.checksum!r}; allowed: {', '.join(CHECKSUM_MODES)}")

    def part_checksum(self, crc: int) -> dict[str, str]:
        """Return the checksum arguments of one part (or of a single PUT)."""
        return {} if self.checksum == "NONE" else {"ChecksumCRC32": crc32_b64(crc)}


@dataclass(frozen=True)
class StoredObject:
    """What S3 answered for the object written: its ETag and version, and what we sent."""

    etag: str
    version_id: str | None
    size: int
    crc32: int
    parts: int
    whole_crc32: bool = True  # whether S3 was given (and reports) the CRC32 of the whole object

    @property
    def checksum_crc32(self) -> str:
        """The full-object CRC32 as S3 writes it (base64 of the big-endian value)."""
        return crc32_b64(self.crc32)


def part_size(number: int, content_length: int | None) -> int:
    """Return the size of part ``number`` (from 1): fixed when the length is known, growing when it is not."""
    if content_length is not None:
        needed = -(-content_length // MAX_PARTS)
        size = max(MIN_PART_SIZE, -(-needed // MIB) * MIB)
        if size > MAX_PART_SIZE:
            raise VideoDeliveryError(f"{content_length} bytes is more than one S3 object can hold")
        return size
    return min(MAX_PART_SIZE, MIN_PART_SIZE << ((number - 1) // GROWTH_EVERY))


def upload_video(
    s3: Any,
    target: UploadTarget,
    chunks: Iterator[bytes],
    receiver: VideoReceiver,
    started: Callable[[str], None],
    sealed: Callable[[str | None, int, int], None],
) -> StoredObject:
    """Write the stream to ``target``; ``receiver`` checks every byte and the whole before S3 commits it.

    ``started(upload_id)`` is called once a multipart upload exists, before any part is sent;
    ``sealed(upload_id, size, crc32)`` once every byte passed the checks, just before S3 is asked to
    commit the object (``upload_id`` None for a single PUT). If either raises, nothing is committed and
    the multipart upload is aborted.
    """
    source = _PartSource(chunks, receiver)
    first, last = source.next_part(part_size(1, receiver.expected_length))
    if last:
        try:
            receiver.finish()
            crc, size = crc32_of(first)
            sealed(None, size, crc)
            return _put(s3, target, first, crc, size)
        finally:
            first.close()
    checksums = {"ChecksumAlgorithm": "CRC32"} if target.checksum != "NONE" else {}
    if target.checksum == "FULL_OBJECT":
        checksums["ChecksumType"] = "FULL_OBJECT"
    upload_id = s3.create_multipart_upload(
        Bucket=target.bucket,
        Key=target.key,
        ContentType=target.content_type,
        Metadata=target.metadata,
        **checksums,
    )["UploadId"]
    try:
        started(upload_id)
        parts = _send_parts(s3, target, upload_id, first, source)
        receiver.finish()
        crc = _combined_crc(parts)
        sealed(upload_id, receiver.size, crc)
        return _complete(s3, target, upload_id, parts, receiver.size, crc)
    except BaseException:
        abort_upload(s3, target.bucket, target.key, upload_id)
        raise


def abort_upload(s3: Any, bucket: str, key: str, upload_id: str) -> None:
    """Abort a multipart upload; one S3 no longer knows (completed or aborted already) is fine."""
    try:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except Exception as exc:  # botocore's errors: the failure that led here is the one to report
        if _error_code(exc) != "NoSuchUpload":
            log.warning(
                "Could not abort the multipart upload %s of s3://%s/%s (%s); S3's "
                "AbortIncompleteMultipartUpload lifecycle rule removes it later.",
                upload_id,
                bucket,
                key,
                exc,
            )


class _PartSource:
    """Cuts the chunk stream into parts of the sizes asked for, checking each chunk as it arrives."""

    def __init__(self, chunks: Iterator[bytes], receiver: VideoReceiver) -> None:
        self._chunks = chunks
        self._receiver = receiver
        self._carry: bytes | memoryview = b""
        self._ended = False
        self.length = receiver.expected_length

    def next_part(self, size: int) -> tuple[Part, bool]:
        """Return the next ``size`` bytes (fewer at the end) and whether they end the stream.

        Chunks are written straight into the part's own anonymous memory map, which is sent as the
        request body as it is and unmapped once sent: a part is never copied whole, and the memory of a
        sent part goes back to the system at once (heap buffers of this size would stay with the process).
        """
        part = mmap.mmap(-1, size)
        piece: bytes | memoryview | None = self._carry or self._next_chunk()
        self._carry = b""
        while piece is not None:
            room = size - part.tell()
            if len(piece) > room:
                view = memoryview(piece)
                part.write(view[:room])
                self._carry = view[room:]
                break
            part.write(piece)
            if part.tell() >= size:
                break
            piece = self._next_chunk()
        if not self._carry:
            self._carry = self._next_chunk() or b""  # look ahead: is this the last part?
        last = self._ended and not self._carry
        written = part.tell()
        if not written:
            part.close()
            return io.BytesIO(), last
        if written < size:
            part.resize(written)
        part.seek(0)
        return part, last

    def _next_chunk(self) -> bytes | None:
        for chunk in self._chunks:
            if chunk:
                self._receiver.take(chunk)
                return chunk
        self._ended = True
        return None


def _send_parts(s3: Any, target: UploadTarget, upload_id: str, first: Part, source: _PartSource) -> list[Any]:
    slots = threading.Semaphore(PARTS_IN_FLIGHT)
    futures: list[Future[dict[str, Any]]] = []
    with ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="venice-s3-part") as pool:
        data, last, number = first, False, 1
        while True:
            _wait_for_slot(slots, futures)
            futures.append(pool.submit(_send_part, s3, target, upload_id, number, data, slots))
            if last:
                break
            number += 1
            if number > MAX_PARTS:
                raise VideoDeliveryError(f"the video needs more than S3's {MAX_PARTS} parts")
            data, last = source.next_part(part_size(number, source.length))
        return [future.result() for future in futures]


def _wait_for_slot(slots: threading.Semaphore, futures: list[Future[dict[str, Any]]]) -> None:
    while not slots.acquire(timeout=0.2):
        _raise_first_failure(futures)
    _raise_first_failure(futures)


def _raise_first_failure(futures: list[Future[dict[str, Any]]]) -> None:
    for future in futures:
        if future.done() and (error := future.exception()) is not None:
            raise error


def _send_part(
    s3: Any, target: UploadTarget, upload_id: str, number: int, data: Part, slots: threading.Semaphore
) -> dict[str, Any]:
    try:
        crc, size = crc32_of(data)
        answer = s3.upload_part(
            Bucket=target.bucket,
            Key=target.key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            **target.part_checksum(crc),
        )
        return {"PartNumber": number, "ETag": answer["ETag"], "crc": crc, "size": size}
    finally:
        data.close()
        slots.release()


def crc32_of(data: Part) -> tuple[int, int]:
    """Return the CRC32 and the size of a part, read in place."""
    if isinstance(data, io.BytesIO):
        with data.getbuffer() as view:
            return zlib.crc32(view), view.nbytes
    return zlib.crc32(data), len(data)


def _combined_crc(parts: list[Any]) -> int:
    crc = int(parts[0]["crc"])
    for part in parts[1:]:
        crc = crc32_combine(crc, part["crc"], part["size"])
    return crc


def _complete(
    s3: Any, target: UploadTarget, upload_id: str, parts: list[Any], size: int, crc: int
) -> StoredObject:
    listed = [
        {"PartNumber": p["PartNumber"], "ETag": p["ETag"], **target.part_checksum(p["crc"])} for p in parts
    ]
    extra: dict[str, Any] = {"IfNoneMatch": "*"} if target.if_none_match else {}
    if target.checksum == "FULL_OBJECT":
        extra.update(ChecksumCRC32=crc32_b64(crc), ChecksumType="FULL_OBJECT")
    answer = _conditional(
        s3,
        target,
        lambda: s3.complete_multipart_upload(
            Bucket=target.bucket,
            Key=target.key,
            UploadId=upload_id,
            MultipartUpload={"Parts": listed},
            MpuObjectSize=size,
            **extra,
        ),
    )
    whole = target.checksum == "FULL_OBJECT"
    return StoredObject(answer["ETag"], answer.get("VersionId"), size, crc, len(parts), whole)


def _put(s3: Any, target: UploadTarget, data: Part, crc: int, size: int) -> StoredObject:
    extra: dict[str, Any] = {"IfNoneMatch": "*"} if target.if_none_match else {}
    if target.checksum != "NONE":
        extra.update(ChecksumAlgorithm="CRC32", **target.part_checksum(crc))
    answer = _conditional(
        s3,
        target,
        lambda: s3.put_object(
            Bucket=target.bucket,
            Key=target.key,
            Body=data,
            ContentType=target.content_type,
            Metadata=target.metadata,
            **extra,
        ),
    )
    return StoredObject(answer["ETag"], answer.get("VersionId"), size, crc, 1, target.checksum != "NONE")


def _conditional(s3: Any, target: UploadTarget, write: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Write, conditionally; a refusal is checked against the object's upload token first.

    botocore resends a write whose answer was lost, and S3 may refuse the resent one (412, or
    NoSuchUpload for a completed multipart upload): if the object carries this try's token, the first
    write landed, and it is ours.
    """
    try:
        return write()
    except Exception as exc:  # botocore's ClientError, told apart by its code
        if _error_code(exc) not in ("PreconditionFailed", "NoSuchUpload"):
            raise
        try:
            head = s3.head_object(Bucket=target.bucket, Key=target.key)
        except Exception:  # no object (or no access): the refusal stands
            head = {}
        token = target.metadata.get(UPLOAD_TOKEN)
        if token and (head.get("Metadata") or {}).get(UPLOAD_TOKEN) == token:
            return {"ETag": head["ETag"], "VersionId": head.get("VersionId")}  # our write landed first
        if _error_code(exc) == "NoSuchUpload":
            raise
        raise DestinationTakenError(
            f"s3://{target.bucket}/{target.key} was created by another writer while this video was "
            "uploading, and replace=False: it was left as it is"
        ) from exc


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def error_status(exc: BaseException) -> int | None:
    """Return the HTTP status of a botocore error (404 for a missing object), or None for other errors."""
    response = getattr(exc, "response", None)
    status = (
        response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(response, dict) else None
    )
    return int(status) if status else None


def crc32_b64(crc: int) -> str:
    """Encode a CRC32 value the way S3 writes checksums: base64 of its four big-endian bytes."""
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def crc32_combine(crc_a: int, crc_b: int, length_b: int) -> int:
    """Return the CRC32 of ``A + B`` from the CRC32 of ``A``, the CRC32 of ``B`` and the length of ``B``.

    Appending ``length_b`` zero bytes to ``A`` is a linear map on its CRC; it is applied by repeated
    squaring of the one-zero-bit operator (as zlib's ``crc32_combine`` does), then ``B``'s CRC is added.
    """
    if length_b <= 0:
        return crc_a
    operator = [0xEDB88320] + [1 << bit for bit in range(31)]  # one zero bit
    for _ in range(3):  # one zero bit -> two -> four -> eight: one zero byte
        operator = _square(operator)
    remaining = length_b
    while remaining:
        if remaining & 1:
            crc_a = _apply(operator, crc_a)
        remaining >>= 1
        if remaining:
            operator = _square(operator)
    return crc_a ^ crc_b


def _apply(matrix: list[int], vector: int) -> int:
    result, row = 0, 0
    while vector:
        if vector & 1:
            result ^= matrix[row]
        vector >>= 1
        row += 1
    return result


def _square(matrix: list[int]) -> list[int]:
    return [_apply(matrix, column) for column in matrix]
