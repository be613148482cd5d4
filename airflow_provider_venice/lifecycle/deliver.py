"""Deliver once: stream a finished job's video into S3, check it, and write the manifest that commits it.

Order of a delivery, each step recorded before the next can lose anything:

1. A video this task instance already delivered (record) or that a manifest says is this job's is
   taken as it is: no second download.
2. What an earlier, killed try left is settled: an object it sealed (every byte checked, its size and
   CRC32 recorded) that S3 holds whole is committed without a second download; otherwise its multipart
   upload is aborted and an object it wrote is removed, by ETag, so nothing another writer put there
   since is touched.
3. The video streams from Venice into S3 once, checked on the way (byte count, MP4 boxes, SHA-256),
   with S3 checking the full-object CRC32; with ``replace=False`` the write is conditional.
4. The stored object is compared with what was sent (size, ETag, checksum); on a mismatch only this
   try's own object is removed.
5. The video is probed and its poster written (optional; never fatal), then the manifest, then the
   record says ``delivered``. Only then may the job be released.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from airflow_provider_venice.client import DownloadUrlError, VeniceError
from airflow_provider_venice.job import InvalidJobError, Stage, VeniceJob
from airflow_provider_venice.lifecycle import manifest as manifests
from airflow_provider_venice.lifecycle.failures import (
    DestinationTakenError,
    VideoDeliveryError,
    as_airflow_failure,
)
from airflow_provider_venice.lifecycle.probe import PROBE_FIELDS, probe_video
from airflow_provider_venice.lifecycle.receive import VideoReceiver
from airflow_provider_venice.lifecycle.record import RecordWriteError
from airflow_provider_venice.lifecycle.s3object import (
    ObjectReplacedError,
    check_stored,
    head,
    object_exists,
    remove_own,
    same_etag,
    settle_earlier_try,
)
from airflow_provider_venice.lifecycle.s3upload import (
    UPLOAD_TOKEN,
    StoredObject,
    UploadTarget,
    crc32_b64,
    upload_video,
)
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException

if TYPE_CHECKING:
    import threading

    from airflow_provider_venice.client import VeniceClient
    from airflow_provider_venice.lifecycle.destination import Destination
    from airflow_provider_venice.lifecycle.record import JobRecord


@dataclass(frozen=True)
class Delivery:
    """A verified video in S3, with what its probe found and where its poster is."""

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
    probe: dict[str, Any] | None = None
    poster_uri: str | None = None

    def result(self, job: VeniceJob) -> dict[str, Any]:
        """Return the XCom result of a delivering task: where the video is, what it is, its job and cost."""
        shown = ("s3_uri", "bucket", "key", "size_bytes", "sha256", "checksum_crc32", "content_type")
        probe = self.probe if self.probe and self.probe.get("made") else {}
        return {
            **{name: getattr(self, name) for name in shown},
            "manifest_uri": self.manifest_uri,
            "poster_uri": self.poster_uri,
            **{name: probe.get(name) for name in PROBE_FIELDS},
            "model": job.model,
            "queue_id": job.queue_id,
            "quote_usd": job.quote_usd,
        }

    @classmethod
    def from_record(cls, value: Any) -> Delivery | None:
        """Read a delivery back from the job record (None when it is not one)."""
        names = {field.name for field in fields(cls)}
        if not isinstance(value, dict) or not {"s3_uri", "etag", "sha256"} <= set(value):
            return None
        known: dict[str, Any] = {name: value.get(name) for name in names}
        return cls(**known)


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
    started_at = time.time()
    try:
        if (done := _already_delivered(s3, job, destination, record, log)) is not None:
            return done
        recovered = settle_earlier_try(s3, destination, record, log, adopt=True)
        taken = recovered is None and not destination.replace and object_exists(s3, destination)
    except Exception as exc:
        raise _delivery_failure(exc, job, destination, keep) from exc
    if taken:
        raise AirflowFailException(
            f"{destination.uri} exists and replace=False; nothing was downloaded{keep}"
        )
    try:
        if recovered is not None:
            stored, sha256 = recovered, str(record.get("upload")["sha256"])
        else:
            stored, sha256 = _upload(client, s3, job, destination, record, abort)
    except Exception as exc:
        raise _delivery_failure(exc, job, destination, keep) from exc
    try:
        check_stored(s3, destination, stored, keep)
        delivery = _commit(s3, job, destination, stored, sha256, log, keep, request, task, record, started_at)
    except ObjectReplacedError:
        raise  # the object at the key is another writer's now: not ours to remove
    except Exception:
        remove_own(s3, destination.bucket, destination.key, stored.etag, log)  # nothing half-done stays
        raise
    try:
        record.advance(Stage.DELIVERED, delivery=asdict(delivery), upload=None)
    except RecordWriteError as exc:
        raise AirflowException(f"{exc}; the verified video is in {destination.uri}{keep}") from exc
    log.info("Delivered %s (%d bytes, sha256 %s).", delivery.s3_uri, delivery.size_bytes, delivery.sha256)
    return delivery


def _upload(
    client: VeniceClient,
    s3: Any,
    job: VeniceJob,
    destination: Destination,
    record: JobRecord,
    abort: threading.Event,
) -> tuple[StoredObject, str]:
    """Stream the video from Venice into S3 once, checked on the way; record each step of the upload."""
    token = uuid.uuid4().hex
    target = UploadTarget(
        destination.bucket,
        destination.key,
        _metadata(job, token),
        if_none_match=not destination.replace,
        checksum=destination.checksum,
    )
    with _open(client, job) as video:
        receiver = VideoReceiver(video.content_length, abort)

        def started(upload_id: str) -> None:
            record.advance(Stage.UPLOADING, upload={"token": token, "upload_id": upload_id})

        def sealed(upload_id: str | None, size: int, crc32: int) -> None:
            upload = {
                "token": token,
                "upload_id": upload_id,
                "size": size,
                "crc32": crc32,
                "sha256": receiver.sha256,
            }
            record.advance(Stage.UPLOADED, upload=upload)

        stored = upload_video(s3, target, video.chunks, receiver, started, sealed)
    return stored, receiver.sha256


def _commit(
    s3: Any,
    job: VeniceJob,
    destination: Destination,
    stored: StoredObject,
    sha256: str,
    log: Any,
    keep: str,
    request: dict[str, Any] | None,
    task: dict[str, Any] | None,
    record: JobRecord,
    started_at: float,
) -> Delivery:
    """Probe the verified video, write its poster and then its manifest: the delivery's commit point."""
    outcome = probe_video(s3, destination, stored.size, stored.etag, destination.poster)
    probe: dict[str, Any] = {"made": True, **(outcome.probe or {})}
    if outcome.error:
        log.warning(
            "No probe data for %s (the video is delivered all the same): %s", destination.uri, outcome.error
        )
        probe = {"made": False, "error": outcome.error}
    poster = {name: value for name, value in (outcome.poster or {}).items() if name != "etag"} or None
    delivery = Delivery(
        destination.uri,
        destination.bucket,
        destination.key,
        stored.size,
        sha256,
        crc32_b64(stored.crc32),
        "video/mp4",
        stored.etag,
        stored.version_id,
        destination.manifest_uri,
        probe,
        poster["s3_uri"] if poster else None,
    )
    if destination.manifest_key:
        timings = {
            "queued_at": record.get("queued_at"),
            "finished_at": started_at,
            "delivered_at": time.time(),
        }
        body = manifests.build_manifest(
            destination=destination,
            job=job,
            video=_manifest_facts(delivery, destination.checksum, stored.whole_crc32),
            request=request,
            timings=timings,
            task=task,
            probe=probe,
            poster=poster,
        )
        try:
            manifests.write_manifest(s3, destination, body)
        except Exception as exc:  # S3 errors of many kinds: the video is not committed yet
            if outcome.poster and outcome.poster.get("etag"):
                remove_own(s3, destination.bucket, outcome.poster["key"], outcome.poster["etag"], log)
            raise VideoDeliveryError(f"S3 failed while writing the manifest: {exc}{keep}") from exc
    return delivery


def _already_delivered(
    s3: Any, job: VeniceJob, destination: Destination, record: JobRecord, log: Any
) -> Delivery | None:
    recorded = Delivery.from_record(record.get("delivery"))
    if recorded is not None and record.stage is Stage.COMPLETED:
        return recorded
    found = head(s3, destination)
    if recorded is not None and record.stage is Stage.DELIVERED:
        if found is not None and same_etag(found.get("ETag"), recorded.etag):
            log.info("%s already holds the verified video of %s.", recorded.s3_uri, job.queue_id)
            return recorded
        log.warning("%s no longer holds the video delivered earlier; delivering it again.", recorded.s3_uri)
    manifest = manifests.read_manifest(s3, destination) if found is not None else None
    if found is None or manifest is None or not manifests.matches(manifest, found, job.queue_id):
        return None
    adopted = _from_manifest(destination, found, manifest)
    log.info("%s holds the verified video of %s (its manifest says so).", adopted.s3_uri, job.queue_id)
    record.advance(Stage.DELIVERED, delivery=asdict(adopted), upload=None)
    return adopted


def resume_committed(
    s3: Any,
    destination: Destination,
    record: JobRecord,
    request_fingerprint: str,
    task: dict[str, Any] | None,
    log: Any,
) -> VeniceJob | None:
    """Before paying: find a video this same task instance delivered for this same request, by its manifest.

    A completed job's record is removed where it is kept in a Variable (Airflow 3.1 and 3.2), so a
    cleared task finds no record; its manifest, naming this task instance and request over an object
    it matches, says the job was paid, delivered and completed. The record is rebuilt in memory as
    completed: no second payment, no second download, no call to Venice.
    """
    if task is None or not destination.manifest_key:
        return None
    found = head(s3, destination)
    manifest = manifests.read_manifest(s3, destination) if found is not None else None
    if found is None or manifest is None or manifest.get("request_fingerprint") != request_fingerprint:
        return None
    delivered_by = manifest.get("task")
    if not isinstance(delivered_by, dict):
        return None
    if any(delivered_by.get(name) != task.get(name) for name in ("dag_id", "run_id", "task_id", "map_index")):
        return None
    try:
        job = VeniceJob.from_xcom(manifest)
    except InvalidJobError:
        return None
    if not manifests.matches(manifest, found, job.queue_id):
        return None
    delivery = _from_manifest(destination, found, manifest)
    log.info(
        "%s holds the video this task instance delivered for this same request (Venice job %s, paid for "
        "and released by an earlier try); not queueing again.",
        delivery.s3_uri,
        job.queue_id,
    )
    record.note(
        stage=Stage.COMPLETED.value,
        job=job.to_xcom(),
        request_fingerprint=request_fingerprint,
        destination=destination.uri,
        delivery=asdict(delivery),
    )
    return job


def _from_manifest(destination: Destination, found: dict[str, Any], manifest: dict[str, Any]) -> Delivery:
    poster = manifest.get("poster")
    return Delivery(
        destination.uri,
        destination.bucket,
        destination.key,
        int(found["ContentLength"]),
        str(manifest.get("sha256")),
        str(manifest.get("checksum_crc32")),
        str(found.get("ContentType") or "video/mp4"),
        str(found["ETag"]),
        found.get("VersionId"),
        destination.manifest_uri,
        manifest.get("probe") if isinstance(manifest.get("probe"), dict) else None,
        poster.get("s3_uri") if isinstance(poster, dict) else None,
    )


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


def _manifest_facts(delivery: Delivery, checksum: str, whole: bool) -> dict[str, Any]:
    """Return the video's facts for the manifest; ``s3_checksum`` says what S3 was asked to check."""
    s3_checksum: dict[str, Any] | None = None
    if whole:
        s3_checksum = {"algorithm": "CRC32", "type": "FULL_OBJECT", "value": delivery.checksum_crc32}
    elif checksum == "COMPOSITE":
        s3_checksum = {"algorithm": "CRC32", "type": "COMPOSITE"}  # each part's CRC32, checked by S3
    return {
        "size_bytes": delivery.size_bytes,
        "sha256": delivery.sha256,
        "checksum_crc32": delivery.checksum_crc32,
        "s3_checksum": s3_checksum,
        "content_type": delivery.content_type,
        "etag": delivery.etag,
        "version_id": delivery.version_id,
    }


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
