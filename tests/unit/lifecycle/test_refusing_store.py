"""A corrupted part is refused by S3: checked against a store that verifies checksums, as AWS S3 does.

moto 5.2.5 verifies no checksum at all, so :class:`RefusingStore` stands in front of it on the operator's
own boto3 client (the one ``S3Hook`` builds): moto's botocore handler is taken off that client and
called from the store, which first checks each request exactly as it left the client (botocore's
``before-send``), the way S3 checks what it receives:

* ``UploadPart`` / ``PutObject``: ``x-amz-checksum-crc32`` against the CRC32 of the body received;
  400 ``BadDigest`` when they differ.
* ``CompleteMultipartUpload``: every listed part exists and its listed CRC32 is the one received
  (400 ``InvalidPart``), the checksum type is the one the upload was created with (400
  ``InvalidRequest``), ``x-amz-mp-object-size`` is the size of the parts (400 ``InvalidRequest``), and
  the full-object ``x-amz-checksum-crc32`` is the CRC32 of the parts' bytes as received, in order
  (400 ``BadDigest``).

Accepted requests go on to moto, which stores them. A part is corrupted "in flight" by a ``before-send``
hook of its own operation, which botocore runs before the store's (more specific events first): it
flips one byte of the body after the checksum header was computed, on every attempt.
"""

from __future__ import annotations

import base64
import io
import re
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from airflow_provider_venice.lifecycle.s3upload import MIN_PART_SIZE
from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException
from tests.integration.s3_fixtures import (
    BUCKET,
    RECORD_KEY,
    FakeStore,
    calls_to,
    job_state,
    make_context,
    object_bytes,
    object_exists,
    queue_job,
    read_manifest,
    uploads_in_progress,
    video_downloads,
)

KEY = "refusing/video.mp4"
THREE_PARTS = 2 * MIN_PART_SIZE + 4321


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


# --- the refusing store ------------------------------------------------------------------------------


@dataclass
class Exchange:
    """One request the store received and how it answered (``code`` None when moto took it)."""

    operation: str
    key: str
    headers: dict[str, str]
    body_crc32: str | None
    code: str | None = None
    upload_id: str | None = None
    part_number: int | None = None


@dataclass
class Upload:
    key: str
    headers: dict[str, str]
    parts: dict[int, bytes] = field(default_factory=dict)


class RefusingStore:
    """S3 that verifies checksums (see the module docstring), in front of moto on one boto3 client."""

    def __init__(self, client: Any) -> None:
        from moto.core.models import botocore_stubber

        self._moto = botocore_stubber
        client.meta.events.unregister("before-send", botocore_stubber)
        client.meta.events.register("before-send", self._receive)
        self._lock = threading.Lock()
        self.uploads: dict[str, Upload] = {}
        self.exchanges: list[Exchange] = []
        self.aborted: list[str] = []

    # what it saw
    def of(self, operation: str, key: str = KEY) -> list[Exchange]:
        return [e for e in self.exchanges if e.operation == operation and e.key == key]

    def refused(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.code is not None]

    # the server
    def _receive(self, request: Any, event_name: str, **kwargs: Any) -> Any:
        if not event_name.startswith("before-send.s3."):
            return self._moto(event_name=event_name, request=request, **kwargs)
        operation = event_name.rsplit(".", 1)[-1]
        url = urlsplit(request.url)
        key = unquote(url.path).lstrip("/")
        if not url.netloc.startswith(BUCKET + "."):
            key = key.removeprefix(BUCKET).lstrip("/")
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        headers = {
            str(name).lower(): value.decode() if isinstance(value, bytes) else str(value)
            for name, value in request.headers.items()
        }
        body = _plain_body(request, headers)
        exchange = Exchange(
            operation,
            key,
            headers,
            crc32_b64(body) if body is not None else None,
            upload_id=query.get("uploadId"),
            part_number=int(query["partNumber"]) if "partNumber" in query else None,
        )
        with self._lock:
            self.exchanges.append(exchange)
        refusal = self._check(exchange, body)
        if refusal is not None:
            exchange.code = refusal[0]
            return _error(request, *refusal)
        response = self._moto(event_name=event_name, request=request, **kwargs)
        if response is not None and response.status_code < 300:
            self._keep(exchange, body, response)
        return response

    def _check(self, exchange: Exchange, body: bytes | None) -> tuple[str, str] | None:
        sent = exchange.headers.get("x-amz-checksum-crc32")
        in_body = exchange.operation in ("PutObject", "UploadPart") and body is not None
        if in_body and sent and sent != exchange.body_crc32:
            return "BadDigest", "The CRC32 you specified did not match the calculated checksum."
        if exchange.operation == "CompleteMultipartUpload" and exchange.upload_id in self.uploads:
            return self._check_completion(exchange, body or b"")
        return None

    def _check_completion(self, exchange: Exchange, body: bytes) -> tuple[str, str] | None:
        upload = self.uploads[str(exchange.upload_id)]
        created = upload.headers.get("x-amz-checksum-type")
        asked = exchange.headers.get("x-amz-checksum-type")
        if created and asked and created != asked:
            return "InvalidRequest", f"The upload was created using the {created} checksum mode."
        listed = _listed_parts(body)
        received = b""
        for number, checksum in listed:
            if number not in upload.parts:
                return "InvalidPart", f"Part {number} was not uploaded."
            if checksum is not None and checksum != crc32_b64(upload.parts[number]):
                return "InvalidPart", f"The checksum of part {number} does not match the part received."
            received += upload.parts[number]
        size = exchange.headers.get("x-amz-mp-object-size")
        if size is not None and int(size) != len(received):
            return "InvalidRequest", f"The object size {size} is not the size of the parts ({len(received)})."
        whole = exchange.headers.get("x-amz-checksum-crc32")
        if whole and (created or asked) == "FULL_OBJECT" and whole != crc32_b64(received):
            return "BadDigest", "The CRC32 you specified did not match the calculated checksum."
        return None

    def _keep(self, exchange: Exchange, body: bytes | None, response: Any) -> None:
        with self._lock:
            if exchange.operation == "CreateMultipartUpload":
                found = re.search(rb"<UploadId>(.*?)</UploadId>", response.content)
                assert found is not None, response.content
                exchange.upload_id = found.group(1).decode()
                self.uploads[exchange.upload_id] = Upload(exchange.key, exchange.headers)
            elif exchange.operation == "UploadPart" and exchange.upload_id in self.uploads:
                assert body is not None
                assert exchange.part_number is not None
                self.uploads[exchange.upload_id].parts[exchange.part_number] = body
            elif exchange.operation == "AbortMultipartUpload" and exchange.upload_id:
                self.aborted.append(exchange.upload_id)


def _plain_body(request: Any, headers: dict[str, str]) -> bytes | None:
    if "aws-chunked" in headers.get("content-encoding", ""):
        return None  # botocore's own trailer checksum: moto decodes it
    raw = request.body
    if hasattr(raw, "read"):
        data: bytes = raw.read()
        raw.seek(0)
        return data
    return bytes(raw) if isinstance(raw, bytes | bytearray) else None


def _listed_parts(body: bytes) -> list[tuple[int, str | None]]:
    parts = []
    for part in re.findall(rb"<Part>(.*?)</Part>", body, re.S):
        number = re.search(rb"<PartNumber>(\d+)</PartNumber>", part)
        checksum = re.search(rb"<ChecksumCRC32>(.*?)</ChecksumCRC32>", part)
        assert number is not None, body
        parts.append((int(number.group(1)), checksum.group(1).decode() if checksum else None))
    return parts


def _error(request: Any, code: str, message: str) -> AWSResponse:
    from moto.core.botocore_stubber import MockRawResponse

    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>refusing-store</RequestId></Error>"
    )
    return AWSResponse(request.url, 400, {"content-type": "application/xml"}, MockRawResponse(body))


# --- corruption in flight ----------------------------------------------------------------------------


def corrupt_in_flight(
    client: Any, operation: str, part: int | None = None, *, recompute: bool = False
) -> list[int]:
    """Flip a byte of ``operation``'s body (of part ``part``) after its checksum header was computed.

    With ``recompute``, the part's CRC32 header is recomputed over the flipped bytes (as when the bytes
    were damaged before the client computed it): the part then passes, and only the full-object
    checksum of the completion can catch it. Returns the part numbers (or 0 for a PUT) corrupted.
    """
    corrupted: list[int] = []

    def flip(request: Any, **_: Any) -> None:
        query = parse_qs(urlsplit(request.url).query)
        number = int(query["partNumber"][0]) if "partNumber" in query else 0
        if part is not None and number != part:
            return
        if operation == "PutObject" and not urlsplit(request.url).path.endswith(KEY):
            return
        data = bytearray(request.body.read())
        data[len(data) // 2] ^= 0x01
        request.body = io.BytesIO(bytes(data))
        if recompute:
            del request.headers["x-amz-checksum-crc32"]
            request.headers["x-amz-checksum-crc32"] = crc32_b64(bytes(data))
        corrupted.append(number)

    client.meta.events.register(f"before-send.s3.{operation}", flip)
    return corrupted


# --- fixtures ----------------------------------------------------------------------------------------


def transfer(job: dict[str, Any]) -> VeniceVideoToS3Operator:
    return VeniceVideoToS3Operator(task_id="to_s3", job=job, s3_bucket=BUCKET, s3_key=KEY)


def behind_store(op: VeniceVideoToS3Operator) -> tuple[Any, RefusingStore]:
    client = op.s3_hook.get_conn()
    return client, RefusingStore(client)


def assert_refused_cleanly(emulator: Any, moto_s3: Any, job: dict[str, Any], error: BaseException) -> None:
    assert job["queue_id"] in str(error)
    assert isinstance(error, AirflowException)
    assert not isinstance(error, AirflowFailException), "a refused upload must be retryable"
    assert not object_exists(moto_s3, BUCKET, KEY)
    assert not object_exists(moto_s3, BUCKET, KEY + ".json")
    assert not object_exists(moto_s3, BUCKET, KEY + ".poster.jpg")
    assert uploads_in_progress(moto_s3, BUCKET) == []
    assert calls_to(emulator.calls(), "/video/complete") == []
    assert job_state(emulator, job["queue_id"])["media_deleted"] is False


def retry_delivers(emulator: Any, moto_s3: Any, job: dict[str, Any], store: FakeStore) -> None:
    op = transfer(job)
    _, refusing = behind_store(op)
    result = op.execute(make_context(store))
    assert refusing.refused() == []
    body = object_bytes(moto_s3, BUCKET, KEY)
    assert result["size_bytes"] == len(body)
    assert read_manifest(moto_s3, BUCKET, KEY)["checksum_crc32"] == crc32_b64(body)
    assert len(calls_to(emulator.calls(), "/video/complete")) == 1
    assert store.data[RECORD_KEY]["stage"] == "completed"


# --- the store itself --------------------------------------------------------------------------------


def test_the_store_refuses_what_s3_refuses_and_takes_the_rest(moto_s3: Any) -> None:
    client = boto3.client("s3", region_name="us-east-1")
    store = RefusingStore(client)
    one, two = b"a" * (5 * 1024 * 1024), b"b" * 1000
    with pytest.raises(ClientError, match="BadDigest"):
        client.put_object(Bucket=BUCKET, Key=KEY, Body=one, ChecksumCRC32=crc32_b64(two))
    upload = client.create_multipart_upload(
        Bucket=BUCKET, Key=KEY, ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
    )["UploadId"]
    with pytest.raises(ClientError, match="BadDigest"):
        client.upload_part(
            Bucket=BUCKET, Key=KEY, UploadId=upload, PartNumber=1, Body=one, ChecksumCRC32=crc32_b64(two)
        )
    parts = [
        {
            "PartNumber": number,
            "ETag": client.upload_part(
                Bucket=BUCKET,
                Key=KEY,
                UploadId=upload,
                PartNumber=number,
                Body=data,
                ChecksumCRC32=crc32_b64(data),
            )["ETag"],
            "ChecksumCRC32": crc32_b64(data),
        }
        for number, data in ((1, one), (2, two))
    ]

    def complete(**extra: Any) -> Any:
        return client.complete_multipart_upload(
            Bucket=BUCKET, Key=KEY, UploadId=upload, MultipartUpload={"Parts": parts}, **extra
        )

    with pytest.raises(ClientError, match="BadDigest"):
        complete(ChecksumCRC32=crc32_b64(two + one), ChecksumType="FULL_OBJECT")
    with pytest.raises(ClientError, match="InvalidRequest"):
        complete(ChecksumCRC32=crc32_b64(one + two), ChecksumType="COMPOSITE")
    with pytest.raises(ClientError, match="InvalidRequest"):
        complete(ChecksumCRC32=crc32_b64(one + two), ChecksumType="FULL_OBJECT", MpuObjectSize=1)
    assert not object_exists(moto_s3, BUCKET, KEY)
    complete(ChecksumCRC32=crc32_b64(one + two), ChecksumType="FULL_OBJECT", MpuObjectSize=len(one + two))
    assert object_bytes(moto_s3, BUCKET, KEY) == one + two
    assert [e.code for e in store.refused()] == [
        "BadDigest",
        "BadDigest",
        "BadDigest",
        "InvalidRequest",
        "InvalidRequest",
    ]


# --- a healthy delivery: what we send matches the bytes -----------------------------------------------


def test_a_healthy_multipart_delivery_sends_checksums_that_match_the_bytes(venice: Any, moto_s3: Any) -> None:
    emulator = venice(video_bytes=THREE_PARTS)
    job = queue_job(emulator)
    op = transfer(job)
    _, store = behind_store(op)

    result = op.execute(make_context())

    assert store.refused() == []
    body = object_bytes(moto_s3, BUCKET, KEY)
    [create] = store.of("CreateMultipartUpload")
    assert create.headers.get("x-amz-checksum-algorithm") == "CRC32"
    assert create.headers.get("x-amz-checksum-type") == "FULL_OBJECT"
    parts = sorted(store.of("UploadPart"), key=lambda e: e.part_number or 0)
    assert [e.part_number for e in parts] == [1, 2, 3]
    for exchange in parts:
        assert exchange.headers["x-amz-checksum-crc32"] == exchange.body_crc32
    received = b"".join(store.uploads[str(create.upload_id)].parts[number] for number in (1, 2, 3))
    assert received == body
    [complete] = store.of("CompleteMultipartUpload")
    assert complete.headers["x-amz-checksum-crc32"] == crc32_b64(body) == result["checksum_crc32"]
    assert complete.headers["x-amz-checksum-type"] == "FULL_OBJECT"
    assert complete.headers["x-amz-mp-object-size"] == str(len(body))
    assert read_manifest(moto_s3, BUCKET, KEY)["s3_checksum"] == {
        "algorithm": "CRC32",
        "type": "FULL_OBJECT",
        "value": crc32_b64(body),
    }


def test_a_healthy_single_put_sends_the_checksum_of_its_bytes(venice: Any, moto_s3: Any) -> None:
    emulator = venice()
    job = queue_job(emulator)
    op = transfer(job)
    _, store = behind_store(op)

    op.execute(make_context())

    assert store.refused() == []
    [put] = store.of("PutObject")
    body = object_bytes(moto_s3, BUCKET, KEY)
    assert put.headers["x-amz-checksum-crc32"] == put.body_crc32 == crc32_b64(body)


# --- corruption is refused -----------------------------------------------------------------------------


def test_a_part_corrupted_in_flight_is_refused_and_the_upload_aborted(venice: Any, moto_s3: Any) -> None:
    emulator = venice(video_bytes=THREE_PARTS)
    job = queue_job(emulator)
    store = FakeStore()
    op = transfer(job)
    client, refusing = behind_store(op)
    corrupted = corrupt_in_flight(client, "UploadPart", part=2)

    with pytest.raises(AirflowException) as caught:
        op.execute(make_context(store))

    assert corrupted, "the part was never corrupted"
    assert {(e.operation, e.part_number, e.code) for e in refusing.refused()} == {
        ("UploadPart", 2, "BadDigest")
    }
    [create] = refusing.of("CreateMultipartUpload")
    assert refusing.aborted == [create.upload_id]
    assert refusing.of("CompleteMultipartUpload") == []
    assert refusing.of("PutObject", KEY + ".json") == []
    assert_refused_cleanly(emulator, moto_s3, job, caught.value)
    assert store.data[RECORD_KEY]["stage"] not in ("uploaded", "delivered", "completed")

    retry_delivers(emulator, moto_s3, job, store)
    assert len(video_downloads(emulator.calls())) == 2


def test_a_part_damaged_before_its_checksum_is_refused_at_completion(venice: Any, moto_s3: Any) -> None:
    """The part's CRC32 matches its damaged bytes; the whole object's, of the bytes received, does not."""
    emulator = venice(video_bytes=THREE_PARTS)
    job = queue_job(emulator)
    store = FakeStore()
    op = transfer(job)
    client, refusing = behind_store(op)
    corrupted = corrupt_in_flight(client, "UploadPart", part=3, recompute=True)

    with pytest.raises(AirflowException) as caught:
        op.execute(make_context(store))

    assert corrupted == [3]
    assert [e.operation for e in refusing.refused()] == ["CompleteMultipartUpload"]
    assert refusing.refused()[0].code in ("BadDigest", "InvalidPart")
    [create] = refusing.of("CreateMultipartUpload")
    [complete] = refusing.of("CompleteMultipartUpload")
    received = b"".join(refusing.uploads[str(create.upload_id)].parts[number] for number in (1, 2, 3))
    # the full-object CRC32 is of the bytes received from Venice: on its own it refuses the damaged object
    assert complete.headers["x-amz-checksum-crc32"] != crc32_b64(received)
    assert complete.headers["x-amz-checksum-type"] == "FULL_OBJECT"
    assert refusing.aborted == [create.upload_id]
    assert refusing.of("PutObject", KEY + ".json") == []
    assert_refused_cleanly(emulator, moto_s3, job, caught.value)

    retry_delivers(emulator, moto_s3, job, store)


def test_a_single_put_corrupted_in_flight_is_refused(venice: Any, moto_s3: Any) -> None:
    emulator = venice()
    job = queue_job(emulator)
    store = FakeStore()
    op = transfer(job)
    client, refusing = behind_store(op)
    corrupted = corrupt_in_flight(client, "PutObject")

    with pytest.raises(AirflowException) as caught:
        op.execute(make_context(store))

    assert corrupted == [0]
    assert [(e.operation, e.key, e.code) for e in refusing.refused()] == [("PutObject", KEY, "BadDigest")]
    assert_refused_cleanly(emulator, moto_s3, job, caught.value)

    retry_delivers(emulator, moto_s3, job, store)
