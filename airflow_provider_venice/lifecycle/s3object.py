"""What is at the video's key: read it back, compare it with what was sent, remove only this task's own.

Every removal is conditional on the ETag of an object this task wrote (its upload token in the
object's metadata says so), so an object another writer put at the key is never touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_venice.job import Stage
from airflow_provider_venice.lifecycle.failures import VideoDeliveryError
from airflow_provider_venice.lifecycle.s3upload import (
    UPLOAD_TOKEN,
    StoredObject,
    abort_upload,
    crc32_b64,
    error_status,
)

if TYPE_CHECKING:
    from airflow_provider_venice.lifecycle.destination import Destination
    from airflow_provider_venice.lifecycle.record import JobRecord


class ObjectReplacedError(VideoDeliveryError):
    """Another writer replaced the object right after this try wrote it (``replace=True``)."""


def head(s3: Any, destination: Destination, *, checksum: bool = False) -> dict[str, Any] | None:
    """Return the video object's HEAD (with S3's checksum when asked), or None when there is none."""
    extra = {"ChecksumMode": "ENABLED"} if checksum else {}
    try:
        answer: dict[str, Any] = s3.head_object(Bucket=destination.bucket, Key=destination.key, **extra)
    except Exception as exc:  # botocore ClientError: 404 means no object
        if error_status(exc) == 404:
            return None
        raise
    return answer


def object_exists(s3: Any, destination: Destination) -> bool:
    """Whether an object is at the destination's key."""
    return head(s3, destination) is not None


def same_etag(one: Any, other: Any) -> bool:
    """Whether two ETags name the same object version (S3 quotes them in some answers, not in others)."""
    return bool(one) and str(one).strip('"') == str(other or "").strip('"')


def remove_own(s3: Any, bucket: str, key: str, etag: str, log: Any) -> None:
    """Delete ``s3://bucket/key`` only if it is still the object with ``etag`` (this task's own write)."""
    try:
        s3.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except Exception as exc:  # 412: another writer's object is there now; leave it
        log.warning(
            "Did not remove s3://%s/%s (%s): it is gone, or another writer's is there now.", bucket, key, exc
        )


def check_stored(s3: Any, destination: Destination, stored: StoredObject, keep: str) -> dict[str, Any]:
    """Read the object back and compare it with what was sent: ETag, size, S3's full-object CRC32.

    Raises :class:`ObjectReplacedError` when another writer's object is there now (not ours to remove),
    and :class:`VideoDeliveryError` for any other mismatch.
    """
    try:
        answer = head(s3, destination, checksum=True)
    except Exception as exc:  # S3 errors of many kinds
        raise VideoDeliveryError(f"S3 failed while reading the stored object back: {exc}{keep}") from exc
    if answer is None:
        raise VideoDeliveryError(f"{destination.uri} is gone right after the upload{keep}")
    if not same_etag(answer.get("ETag"), stored.etag):
        raise ObjectReplacedError(
            f"{destination.uri} was replaced by another writer right after the upload{keep}"
        )
    problem = _mismatch(answer, stored.size, stored.crc32 if stored.whole_crc32 else None)
    if problem:
        raise VideoDeliveryError(f"{destination.uri} {problem}; removed this try's object{keep}")
    return answer


def settle_earlier_try(
    s3: Any, destination: Destination, record: JobRecord, log: Any, *, adopt: bool
) -> StoredObject | None:
    """Settle what an earlier, killed try of this task left at the key (its ``upload`` in the record).

    With ``adopt``, an object that try sealed (every byte checked, size and CRC32 recorded) and that S3
    holds whole is returned, to be committed without a second download. Otherwise its multipart upload
    is aborted and an object it wrote is removed (by ETag).
    """
    upload = record.get("upload")
    if not isinstance(upload, dict):
        return None
    found = head(s3, destination, checksum=True)
    ours = found is not None and (found.get("Metadata") or {}).get(UPLOAD_TOKEN) == upload.get("token")
    if adopt and ours and record.stage is Stage.UPLOADED and found is not None:
        size, crc = upload.get("size"), upload.get("crc32")
        asked = destination.checksum == "FULL_OBJECT" or (
            destination.checksum != "NONE" and not upload.get("upload_id")
        )
        whole = (
            asked and found.get("ChecksumCRC32") and found.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
        )
        if whole and isinstance(size, int) and isinstance(crc, int) and not _mismatch(found, size, crc):
            log.info("%s holds the video an earlier try uploaded and sealed; committing it.", destination.uri)
            return StoredObject(str(found["ETag"]), found.get("VersionId"), size, crc, 0)
    if upload.get("upload_id"):
        abort_upload(s3, destination.bucket, destination.key, str(upload["upload_id"]))
        log.info("Aborted the multipart upload %s an earlier try left.", upload["upload_id"])
    if ours and found is not None:
        remove_own(s3, destination.bucket, destination.key, str(found["ETag"]), log)
        log.info("Removed the unverified object an earlier try of this task left at %s.", destination.uri)
    return None


def _mismatch(answer: dict[str, Any], size: int, crc: int | None) -> str:
    """Say how the object differs from what was sent; ``crc`` None: S3 holds no whole-object CRC32."""
    if answer.get("ContentLength") != size:
        return f"holds {answer.get('ContentLength')} bytes, not the {size} sent"
    reported = answer.get("ChecksumCRC32")
    whole = answer.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
    if crc is not None and reported and whole and reported != crc32_b64(crc):
        return f"has CRC32 {reported} in S3, not the {crc32_b64(crc)} sent"
    return ""
