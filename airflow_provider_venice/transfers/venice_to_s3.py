"""Deliver a finished Venice video to S3, verified, and only then release it at Venice.

The mp4 streams from ``/video/retrieve`` (or a VPS ``download_url``) through a file-like reader straight
into boto3's multipart upload: no temporary file and no whole body in memory. A reader rather than a
spooled temp file, because workers (Kubernetes pods above all) often have far less local disk than a
long 4k video needs, and because download and upload then overlap. Memory is bounded by the multipart
part size times the parts boto3 keeps in flight: 5 parts of 5 MiB (S3's smallest part), which measured
about 55 MiB of peak growth for a 1 GiB video and uploads faster than fewer, larger parts (BENCHMARKS.md).
With 5 MiB parts and S3's 10,000-part limit, one object can reach 48 GiB.

The reader checks the MP4 ``ftyp`` signature on the first bytes, hashes every byte with SHA-256 and
counts them; a body that is cut short, too long, or not an mp4 fails the read, and boto3 then aborts the
multipart upload, so no partial object is left. After the upload, the object's size is compared with the
byte count and the digest is stored in the object's metadata. Only then is the job released at Venice.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import threading
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import Asset, AssetAlias, BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_venice._airflow import as_airflow_failure, optional_url, release_job
from airflow_provider_venice.client import DownloadUrlError, VeniceError
from airflow_provider_venice.hooks.venice import VeniceHook

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from contextlib import AbstractContextManager

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk import Context

    from airflow_provider_venice.client import VeniceClient, VideoStream

MIB = 1024 * 1024
TRANSFER_CONFIG = {
    "multipart_threshold": 5 * MIB,
    "multipart_chunksize": 5 * MIB,
    "max_concurrency": 5,
    "max_io_queue": 4,
}
MAX_PARTS_IN_MEMORY = 5
# The metadata stamp is a server-side copy of the object onto itself. One CopyObject request does it up
# to S3's 5 GiB limit; above that, 512 MiB parts keep the part count low (10,000 parts reach 5 TiB).
# With the upload's small parts, a 1 GiB video took 128 UploadPartCopy requests instead of one.
COPY_CONFIG = {
    "multipart_threshold": 5 * 1024 * MIB,
    "multipart_chunksize": 512 * MIB,
    "max_concurrency": 4,
}
DEFAULT_ASSET_ALIAS = "venice-videos"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class VideoDeliveryError(AirflowException):
    """The video did not reach S3 intact; the Venice job was left as it was, so it can be delivered later."""


@dataclass(frozen=True)
class Delivery:
    """Where a video landed in S3 and what it is."""

    s3_uri: str
    bucket: str
    key: str
    size_bytes: int
    sha256: str
    content_type: str


def check_s3_location(bucket: str, key: str) -> None:
    """Refuse bucket and key names S3 would refuse, before anything is paid or downloaded."""
    if not isinstance(bucket, str) or not _BUCKET.match(bucket) or ".." in bucket:
        raise AirflowFailException(
            f"s3_bucket: {bucket!r} is not a valid bucket name (3-63 characters: lowercase letters, "
            "digits, dots and hyphens, starting and ending with a letter or digit)"
        )
    if not isinstance(key, str) or not key or key.startswith("/") or len(key.encode()) > 1024:
        raise AirflowFailException(
            f"s3_key: {str(key)[:80]!r} is not a valid key (1-1024 bytes, not starting with '/')"
        )


class VerifyingReader(io.RawIOBase):
    """A read-only file over a stream of chunks that checks, hashes and counts what passes through.

    ``abort`` (a threading event) makes the next read fail, which aborts an upload in flight.
    """

    def __init__(self, chunks: Iterator[bytes], expected_length: int | None, abort: threading.Event) -> None:
        super().__init__()
        self._chunks = chunks
        self._expected = expected_length
        self._abort = abort
        self._pending = memoryview(b"")
        self._head = b""
        self.size = 0
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        """Return True: this is a readable stream."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the stream; 0 at the verified end."""
        view = memoryview(buffer).cast("B")
        if not self._pending and not self._next_chunk():
            return 0
        count = min(len(view), len(self._pending))
        view[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def _next_chunk(self) -> bool:
        if self._abort.is_set():
            raise VideoDeliveryError("delivery cancelled (task killed)")
        for chunk in self._chunks:
            if chunk:
                self._accept(chunk)
                return True
        self._finish()
        return False

    def _accept(self, chunk: bytes) -> None:
        if len(self._head) < 8:
            self._head += chunk[: 8 - len(self._head)]
            if len(self._head) == 8 and self._head[4:8] != b"ftyp":
                raise VideoDeliveryError(
                    f"the body is not an MP4 file (starts with {self._head!r}, no ftyp box)"
                )
        self.size += len(chunk)
        if self._expected is not None and self.size > self._expected:
            raise VideoDeliveryError(f"received more than the announced {self._expected} bytes")
        self.digest.update(chunk)
        self._pending = memoryview(chunk)

    def _finish(self) -> None:
        if len(self._head) < 8:
            raise VideoDeliveryError(f"the body is not an MP4 file ({self.size} bytes, no ftyp box)")
        if self._expected is not None and self.size != self._expected:
            raise VideoDeliveryError(f"body cut short: {self.size} of {self._expected} bytes received")


def open_video_stream(
    client: VeniceClient, model: str, queue_id: str, download_url: str | None
) -> AbstractContextManager[VideoStream]:
    """Open the mp4 of a finished job: from its VPS ``download_url`` when it has one, else from retrieve."""
    if download_url:
        return client.open_download_url(download_url)
    return client.open_video(model, queue_id)


def deliver_to_s3(
    *,
    client: VeniceClient,
    s3_hook: S3Hook,
    job: dict[str, Any],
    bucket: str,
    key: str,
    abort: threading.Event,
) -> Delivery:
    """Stream a finished job's video into ``s3://bucket/key`` and verify it; the job is not released.

    Raises :class:`VideoDeliveryError` (naming the queue_id) when the video did not arrive intact, and
    ``AirflowFailException`` when it can never be delivered (e.g. an expired ``download_url``).
    """
    queue_id = job["queue_id"]
    note = f" (queue_id {queue_id}; the job was not completed and can be delivered again)"
    try:
        with open_video_stream(client, job["model"], queue_id, job.get("download_url")) as video:
            reader = VerifyingReader(video.chunks, video.content_length, abort)
            s3_hook.load_file_obj(io.BufferedReader(reader, buffer_size=MIB), key, bucket, replace=True)
    except DownloadUrlError as exc:
        raise AirflowFailException(f"{exc}{note}") from exc
    except VeniceError as exc:
        raise as_airflow_failure(exc, note) from exc
    except VideoDeliveryError as exc:
        raise VideoDeliveryError(f"Venice video not delivered: {exc}{note}") from exc
    except Exception as exc:  # S3 failures arrive as botocore/boto3 errors of many kinds
        raise VideoDeliveryError(f"S3 upload to s3://{bucket}/{key} failed: {exc}{note}") from exc
    sha256 = reader.digest.hexdigest()
    try:
        _verify_and_stamp(s3_hook, bucket, key, reader.size, sha256, job)
    except VideoDeliveryError:
        raise
    except Exception as exc:  # the object is there but unverified or unstamped: remove it, as on failure
        _remove_quietly(s3_hook, bucket, key)
        raise VideoDeliveryError(f"S3 could not verify s3://{bucket}/{key}: {exc}{note}") from exc
    return Delivery(f"s3://{bucket}/{key}", bucket, key, reader.size, sha256, "video/mp4")


def _remove_quietly(s3_hook: S3Hook, bucket: str, key: str) -> None:
    try:
        s3_hook.delete_objects(bucket, [key])
    except Exception:  # best effort; the error that matters is raised by the caller
        s3_hook.log.warning("Could not remove s3://%s/%s after a failed verification.", bucket, key)


def earlier_delivery(s3_hook: S3Hook, bucket: str, key: str, queue_id: str) -> Delivery | None:
    """Return the delivery already in ``s3://bucket/key`` when it is this job's verified video.

    Only a verified upload carries the ``sha256`` and ``venice-queue-id`` metadata, so a retry after
    a failed release finds the video in place and needs no second download.
    """
    head = s3_hook.head_object(key, bucket)
    metadata = (head or {}).get("Metadata") or {}
    if head is None or metadata.get("venice-queue-id") != str(queue_id) or not metadata.get("sha256"):
        return None
    content_type = str(head.get("ContentType") or "video/mp4")
    return Delivery(
        f"s3://{bucket}/{key}", bucket, key, int(head["ContentLength"]), metadata["sha256"], content_type
    )


def _verify_and_stamp(
    s3_hook: S3Hook, bucket: str, key: str, size: int, sha256: str, job: dict[str, Any]
) -> None:
    """Check the stored object's size, then record the digest and the job in its metadata.

    The stamp is a server-side copy of the object onto itself that also asks S3 for a SHA-256 checksum
    of the whole object; S3 computes it from the bytes it holds, so comparing it with the digest of the
    bytes received proves the object is what Venice sent (above 5 GiB the copy is multipart and S3's
    checksum is per part: then the size check and the metadata stand alone).
    """
    from boto3.s3.transfer import TransferConfig

    head = s3_hook.head_object(key, bucket) or {}
    if head.get("ContentLength") != size:
        stored_size = head.get("ContentLength")
        _refuse(s3_hook, bucket, key, job, f"holds {stored_size} bytes, not the {size} received")
    metadata = {"sha256": sha256, "venice-queue-id": str(job["queue_id"]), "venice-model": str(job["model"])}
    if job.get("quote_usd") is not None:
        metadata["venice-quote-usd"] = str(job["quote_usd"])
    s3 = s3_hook.get_conn()
    s3.copy(
        {"Bucket": bucket, "Key": key},
        bucket,
        key,
        ExtraArgs={
            "Metadata": metadata,
            "MetadataDirective": "REPLACE",
            "ContentType": "video/mp4",
            "ChecksumAlgorithm": "SHA256",
        },
        Config=TransferConfig(**COPY_CONFIG),
    )
    stored = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED").get("ChecksumSHA256")
    expected = base64.b64encode(bytes.fromhex(sha256)).decode()
    if stored and "-" not in stored and stored != expected:
        _refuse(s3_hook, bucket, key, job, f"has SHA-256 {stored} in S3, not the {expected} received")


def _refuse(s3_hook: S3Hook, bucket: str, key: str, job: dict[str, Any], problem: str) -> NoReturn:
    """Remove an object that failed verification and raise, naming the job that stays deliverable."""
    s3_hook.delete_objects(bucket, [key])
    raise VideoDeliveryError(
        f"s3://{bucket}/{key} {problem}; removed it (queue_id {job['queue_id']}; the job was not completed)"
    )


def delivery_result(delivery: Delivery, job: dict[str, Any]) -> dict[str, Any]:
    """Return the XCom result of a delivery: where and what it is, and its job and cost."""
    return {
        **asdict(delivery),
        "model": job["model"],
        "queue_id": job["queue_id"],
        "quote_usd": job.get("quote_usd"),
    }


def default_outlets() -> list[AssetAlias]:
    """Return the default outlets of delivering operators: the ``venice-videos`` asset alias.

    An alias, because the object's key is usually templated and known only at run time (and because a
    plain ``s3://`` Asset makes Airflow load the Amazon provider, and boto3, when the DAG is parsed).
    Each delivery adds an event for the concrete ``s3://bucket/key`` asset through it; downstream DAGs
    schedule on ``AssetAlias("venice-videos")``.
    """
    return [AssetAlias(DEFAULT_ASSET_ALIAS)]


def emit_asset_event(context: Context, outlets: list[Any], result: dict[str, Any]) -> None:
    """Announce the video: an event for ``s3://bucket/key`` through each alias, details on each asset."""
    extra = {key: result[key] for key in ("s3_uri", "size_bytes", "sha256", "model", "queue_id", "quote_usd")}
    for outlet in outlets:
        if isinstance(outlet, AssetAlias):
            context["outlet_events"][outlet].add(Asset(result["s3_uri"]), extra=extra)
        elif isinstance(outlet, Asset):
            context["outlet_events"][outlet].extra = extra


class VeniceVideoToS3Operator(BaseOperator):
    """Stream a finished Venice video into S3, verify it, then release the job at Venice.

    The video is streamed (bounded memory whatever its size), checked (MP4 signature, byte count,
    object size) and its SHA-256 stored in the object's metadata. Only after that is the VPS file
    deleted (``download_url`` jobs) and ``/video/complete`` called. On any failure the multipart
    upload is aborted, nothing is completed, and the error names the queue_id.

    Returns ``{"s3_uri", "bucket", "key", "size_bytes", "sha256", "content_type", "model", "queue_id",
    "quote_usd"}`` and announces the object through its outlets (by default the ``venice-videos`` asset
    alias, which gets an event for the concrete ``s3://bucket/key`` asset).

    :param replace: overwrite an existing object; when False, an existing key fails before any download
        (unless it already holds this job's verified video, left by an earlier try: then the job is only
        released).
    :param complete: release the job at Venice after a verified upload.
    :param quote_usd: the job's price, passed through to the result and the asset event.
    """

    template_fields: Sequence[str] = (
        "model",
        "queue_id",
        "download_url",
        "s3_bucket",
        "s3_key",
        "quote_usd",
        "venice_conn_id",
        "aws_conn_id",
    )
    ui_color = "#ffe8cc"

    def __init__(
        self,
        *,
        model: str,
        queue_id: str,
        s3_bucket: str,
        s3_key: str,
        download_url: str | None = None,
        aws_conn_id: str | None = "aws_default",
        venice_conn_id: str = VeniceHook.default_conn_name,
        replace: bool = False,
        complete: bool = True,
        quote_usd: float | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", default_outlets())
        super().__init__(**kwargs)
        self.model = model
        self.queue_id = queue_id
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.download_url = download_url
        self.aws_conn_id = aws_conn_id
        self.venice_conn_id = venice_conn_id
        self.replace = replace
        self.complete = complete
        self.quote_usd = quote_usd
        self._abort = threading.Event()

    @cached_property
    def hook(self) -> VeniceHook:
        """The Venice hook."""
        return VeniceHook(self.venice_conn_id)

    @cached_property
    def s3_hook(self) -> S3Hook:
        """The S3 hook, with a bounded multipart transfer configuration."""
        return make_s3_hook(self.aws_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        """Deliver, verify, release."""
        check_s3_location(self.s3_bucket, self.s3_key)
        delivery = earlier_delivery(self.s3_hook, self.s3_bucket, self.s3_key, self.queue_id)
        if delivery is not None:
            self.log.info(
                "%s already holds the verified video of %s (an earlier try).", delivery.s3_uri, self.queue_id
            )
        elif not self.replace and self.s3_hook.check_for_key(self.s3_key, self.s3_bucket):
            raise AirflowFailException(
                f"s3://{self.s3_bucket}/{self.s3_key} exists and replace=False; nothing was downloaded"
            )
        quote = str(self.quote_usd) if self.quote_usd is not None else ""
        job: dict[str, Any] = {
            "model": self.model,
            "queue_id": self.queue_id,
            "download_url": optional_url(self.download_url),
            "quote_usd": float(quote) if quote not in ("", "None") else None,
        }
        client = self.hook.get_conn()
        if delivery is None:
            delivery = deliver_to_s3(
                client=client,
                s3_hook=self.s3_hook,
                job=job,
                bucket=self.s3_bucket,
                key=self.s3_key,
                abort=self._abort,
            )
            self.log.info(
                "Delivered %s (%d bytes, sha256 %s).", delivery.s3_uri, delivery.size_bytes, delivery.sha256
            )
        if self.complete:
            try:
                release_job(client, self.model, self.queue_id, job["download_url"], self.log)
            except VeniceError as exc:
                raise as_airflow_failure(
                    exc, f" (video safely in {delivery.s3_uri}; queue_id {self.queue_id})"
                ) from exc
        result = delivery_result(delivery, job)
        emit_asset_event(context, list(self.outlets), result)
        return result

    def on_kill(self) -> None:
        """Abort an upload in flight (boto3 then aborts the multipart upload)."""
        self._abort.set()


def make_s3_hook(aws_conn_id: str | None) -> S3Hook:
    """Build the S3 hook with the bounded-memory transfer settings (imported here, never at parse time)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(
        aws_conn_id=aws_conn_id,
        transfer_config_args=dict(TRANSFER_CONFIG),
        extra_args={"ContentType": "video/mp4"},
    )
    # boto3's TransferConfig does not take this s3transfer setting as an argument; it bounds how many
    # parts of a non-seekable stream are held in memory at once.
    hook.transfer_config.max_in_memory_upload_chunks = MAX_PARTS_IN_MEMORY
    return hook
