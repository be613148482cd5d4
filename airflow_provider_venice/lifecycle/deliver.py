"""Deliver once: stream a finished job's video into S3, check it, and write the manifest that commits it.

Order of a delivery, each step recorded before the next can lose anything:

1. A video this task instance already delivered (record) or that a manifest says is this job's is
   taken as it is: no second download.
2. What an earlier, killed try left is cleared: its multipart upload is aborted, and an object it
   wrote but never verified (it carries that try's upload token) is removed, by ETag, so nothing
   another writer put there since is touched.
3. The video streams from Venice into S3 once, checked on the way (byte count, MP4 boxes, SHA-256),
   with S3 checking the full-object CRC32; with ``replace=False`` the write is conditional.
4. The stored object is compared with what was sent (size, ETag, checksum); on a mismatch only this
   try's own object is removed.
5. The manifest is written, then the record says ``delivered``. Only then may the job be released.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_venice.client import DownloadUrlError, VeniceError
from airflow_provider_venice.job import Stage
from airflow_provider_venice.lifecycle import manifest as manifests
from airflow_provider_venice.lifecycle.failures import (
    DestinationTakenError,
    VideoDeliveryError,
    as_airflow_failure,
)
from airflow_provider_venice.lifecycle.receive import VideoReceiver
from airflow_provider_venice.lifecycle.record import RecordWriteError
from airflow_provider_venice.lifecycle.s3upload import (
    UPLOAD_TOKEN,
    StoredObject,
    UploadTarget,
    abort_upload,
    error_status,
    upload_video,
)

if TYPE_CHECKING:
    import threading

    from airflow_provider_venice.client import VeniceClient
    from airflow_provider_venice.job import VeniceJob
    from airflow_provider_venice.lifecycle.destination import Destination
    from airflow_provider_venice.lifecycle.record import JobRecord


class ObjectReplacedError(VideoDeliveryError):
    """Another writer replaced the object right after this try wrote it (``replace=True``)."""


@dataclass(frozen=True)
class Delivery:
    """A verified video in S3."""

    s3_uri: str
    bucket: str
    key: str
    size_bytes: int
    sha256: str
    checksum_crc32: str
    content_type: str
    etag: str
    version_id: str | None
    manifest_uri: str | None

    def result(self, job: VeniceJob) -> dict[str, Any]:
        """Return the XCom result of a delivering task: where the video is, what it is, its job and cost."""
        shown = ("s3_uri", "bucket", "key", "size_bytes", "sha256", "checksum_crc32", "content_type")
        return {
            **{name: getattr(self, name) for name in shown},
            "manifest_uri": self.manifest_uri,
            "model": job.model,
            "queue_id": job.queue_id,
            "quote_usd": job.quote_usd,
        }

    @classmethod
    def from_record(cls, value: Any) -> Delivery | None:
        """Read a delivery back from the job record (None when it is not one)."""
        names = {field.name for field in fields(cls)}
        if not isinstance(value, dict) or not names <= set(value):
            return None
        return cls(**{name: value[name] for name in names})


def deliver_once(
    *,
    client: VeniceClient,
    s3: Any,
    job: VeniceJob,
    destination: Destination,
    record: JobRecord,
    abort: threading.Event,
    log: Any,
    request: dict[str, Any] | None = None,
    task: dict[str, Any] | None = None,
) -> Delivery:
    """Put the video of finished ``job`` in ``destination`` exactly once; the job is not released here."""
    keep = f" (queue_id {job.queue_id}; the job was kept, not completed, and can be delivered again)"
    try:
        if (done := _already_delivered(s3, job, destination, record, log)) is not None:
            return done
        clear_earlier_try(s3, destination, record, log)
        taken = not destination.replace and object_exists(s3, destination)
    except Exception as exc:
        raise _delivery_failure(exc, job, destination, keep) from exc
    if taken:
        raise AirflowFailException(
            f"{destination.uri} exists and replace=False; nothing was downloaded{keep}"
        )
    started_at = time.time()
    token = uuid.uuid4().hex
    target = UploadTarget(destination.bucket, destination.key, _metadata(job, token), not destination.replace)

    def started(upload_id: str | None) -> None:
        record.advance(Stage.UPLOADING, upload={"token": token, "upload_id": upload_id})

    try:
        with _open(client, job) as video:
            receiver = VideoReceiver(video.content_length, abort)
            stored = upload_video(s3, target, video.chunks, receiver, started)
    except Exception as exc:
        raise _delivery_failure(exc, job, destination, keep) from exc
    try:
        delivery = _verify(s3, destination, stored, receiver.sha256, keep)
        if destination.manifest_key:
            timings = {
                "queued_at": record.get("queued_at"),
                "finished_at": started_at,
                "delivered_at": time.time(),
            }
            body = manifests.build_manifest(
                destination=destination,
                job=job,
                video=_manifest_facts(delivery),
                request=request,
                timings=timings,
                task=task,
            )
            _step(lambda: manifests.write_manifest(s3, destination, body), "writing the manifest", keep)
    except ObjectReplacedError:
        raise  # the object at the key is another writer's now: not ours to remove
    except Exception:
        _remove_own(s3, destination, stored.etag, log)  # this try's unverified video: nothing half-done stays
        raise
    try:
        record.advance(Stage.DELIVERED, delivery=asdict(delivery), upload=None)
    except RecordWriteError as exc:
        raise AirflowException(f"{exc}; the verified video is in {destination.uri}{keep}") from exc
    log.info("Delivered %s (%d bytes, sha256 %s).", delivery.s3_uri, delivery.size_bytes, delivery.sha256)
    return delivery


def _already_delivered(
    s3: Any, job: VeniceJob, destination: Destination, record: JobRecord, log: Any
) -> Delivery | None:
    recorded = Delivery.from_record(record.get("delivery"))
    if recorded is not None and record.stage is Stage.COMPLETED:
        return recorded
    head = _head(s3, destination)
    if recorded is not None and record.stage is Stage.DELIVERED:
        if head is not None and manifests.same_etag(head.get("ETag"), recorded.etag):
            log.info("%s already holds the verified video of %s.", recorded.s3_uri, job.queue_id)
            return recorded
        log.warning("%s no longer holds the video delivered earlier; delivering it again.", recorded.s3_uri)
    manifest = manifests.read_manifest(s3, destination) if head is not None else None
    if head is None or manifest is None or not manifests.matches(manifest, head, job.queue_id):
        return None
    adopted = Delivery(
        destination.uri,
        destination.bucket,
        destination.key,
        int(head["ContentLength"]),
        str(manifest.get("sha256")),
        str(manifest.get("checksum_crc32")),
        str(head.get("ContentType") or "video/mp4"),
        str(head["ETag"]),
        head.get("VersionId"),
        destination.manifest_uri,
    )
    log.info("%s holds the verified video of %s (its manifest says so).", adopted.s3_uri, job.queue_id)
    record.advance(Stage.DELIVERED, delivery=asdict(adopted), upload=None)
    return adopted


def clear_earlier_try(s3: Any, destination: Destination, record: JobRecord, log: Any) -> None:
    """Clear what an earlier, killed try of this task left at the destination (recorded in ``upload``)."""
    upload = record.get("upload")
    if not isinstance(upload, dict):
        return
    if upload.get("upload_id"):
        abort_upload(s3, destination.bucket, destination.key, str(upload["upload_id"]))
        log.info("Aborted the multipart upload %s an earlier try left.", upload["upload_id"])
    head = _head(s3, destination)
    if head is not None and (head.get("Metadata") or {}).get(UPLOAD_TOKEN) == upload.get("token"):
        _remove_own(s3, destination, str(head["ETag"]), log)
        log.info("Removed the unverified object an earlier try of this task left at %s.", destination.uri)


def _verify(s3: Any, destination: Destination, stored: StoredObject, sha256: str, keep: str) -> Delivery:
    head = _step(lambda: _head(s3, destination, checksum=True), "reading the stored object back", keep)
    problem = ""
    if head is None:
        problem = "is gone right after the upload"
    elif not manifests.same_etag(head.get("ETag"), stored.etag):
        raise ObjectReplacedError(
            f"{destination.uri} was replaced by another writer right after the upload{keep}"
        )
    elif head.get("ContentLength") != stored.size:
        problem = f"holds {head.get('ContentLength')} bytes, not the {stored.size} sent"
    elif (
        (crc := head.get("ChecksumCRC32"))
        and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
        and (crc != stored.checksum_crc32)
    ):
        problem = f"has CRC32 {crc} in S3, not the {stored.checksum_crc32} sent"
    if problem:
        raise VideoDeliveryError(f"{destination.uri} {problem}; removed this try's object{keep}")
    assert head is not None
    return Delivery(
        destination.uri,
        destination.bucket,
        destination.key,
        stored.size,
        sha256,
        stored.checksum_crc32,
        str(head.get("ContentType") or "video/mp4"),
        str(head["ETag"]),
        head.get("VersionId") or stored.version_id,
        destination.manifest_uri,
    )


def _remove_own(s3: Any, destination: Destination, etag: str, log: Any) -> None:
    """Delete the object only if it is still the one with ``etag`` (this task's own write)."""
    try:
        s3.delete_object(Bucket=destination.bucket, Key=destination.key, IfMatch=etag)
    except Exception as exc:  # 412: another writer's object is there now; leave it
        log.warning(
            "Did not remove %s (%s): it is gone, or another writer's object is there now.",
            destination.uri,
            exc,
        )


def object_exists(s3: Any, destination: Destination) -> bool:
    """Whether an object is at the destination's key."""
    return _head(s3, destination) is not None


def _head(s3: Any, destination: Destination, checksum: bool = False) -> dict[str, Any] | None:
    extra = {"ChecksumMode": "ENABLED"} if checksum else {}
    try:
        head: dict[str, Any] = s3.head_object(Bucket=destination.bucket, Key=destination.key, **extra)
    except Exception as exc:  # botocore ClientError: 404 means no object
        if error_status(exc) == 404:
            return None
        raise
    return head


def _open(client: VeniceClient, job: VeniceJob) -> Any:
    if job.download_url:
        return client.open_download_url(job.download_url)
    return client.open_video(job.model, job.queue_id)


def _metadata(job: VeniceJob, token: str) -> dict[str, str]:
    metadata = {"venice-queue-id": job.queue_id, "venice-model": job.model, UPLOAD_TOKEN: token}
    if job.quote_usd is not None:
        metadata["venice-quote-usd"] = repr(job.quote_usd)
    if job.request_fingerprint:
        metadata["venice-request-fingerprint"] = job.request_fingerprint
    return metadata


def _manifest_facts(delivery: Delivery) -> dict[str, Any]:
    return {
        "size_bytes": delivery.size_bytes,
        "sha256": delivery.sha256,
        "checksum_crc32": delivery.checksum_crc32,
        "s3_checksum": {"algorithm": "CRC32", "type": "FULL_OBJECT", "value": delivery.checksum_crc32},
        "content_type": delivery.content_type,
        "etag": delivery.etag,
        "version_id": delivery.version_id,
    }


def _step(action: Any, what: str, keep: str) -> Any:
    try:
        return action()
    except Exception as exc:  # S3 errors of many kinds: the video is not committed yet
        raise VideoDeliveryError(f"S3 failed while {what}: {exc}{keep}") from exc


def _delivery_failure(
    exc: Exception, job: VeniceJob, destination: Destination, keep: str
) -> AirflowException:
    if isinstance(exc, DestinationTakenError):
        return DestinationTakenError(f"{exc}{keep}")
    if isinstance(exc, DownloadUrlError):
        return AirflowFailException(
            f"The video of Venice job {job.queue_id} can no longer be fetched: {exc}. It was paid for, and "
            "Venice cannot deliver it again: its download_url expired (24 h after queueing) or was deleted."
        )
    if isinstance(exc, VeniceError):
        return as_airflow_failure(exc, keep)
    if isinstance(exc, VideoDeliveryError):
        return VideoDeliveryError(f"Venice video not delivered to {destination.uri}: {exc}{keep}")
    if isinstance(exc, RecordWriteError):
        return AirflowException(f"{exc}; nothing was written to {destination.uri}{keep}")
    return VideoDeliveryError(f"S3 upload to {destination.uri} failed: {exc}{keep}")
