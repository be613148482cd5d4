"""The videos' bytes in S3: poster frames read through the app, and presigned URLs made at click time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

PLAY_URL_EXPIRY_S = 300
POSTER_MAX_BYTES = 4 * 1024 * 1024
POSTER_TYPES = ("image/jpeg", "image/png", "image/webp")
QUEUE_ID_METADATA = "venice-queue-id"  # set on every video the operators upload


class NotOurs(LookupError):
    """The object is not one the provider delivered (or not an image, for a poster): it is not served."""


@dataclass(frozen=True)
class Poster:
    """A poster frame's bytes and media type."""

    body: bytes
    content_type: str


def split_s3_uri(uri: str) -> tuple[str, str]:
    """Return ``(bucket, key)`` of an ``s3://bucket/key`` URI; ValueError when it is not one."""
    parts = urlsplit(uri)
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or not key:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return parts.netloc, key


def _client(conn_id: str) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=conn_id).get_conn()


def read_poster(conn_id: str, uri: str, video_uri: str | None) -> Poster:
    """Read a poster frame: a small image in the video's bucket (anything else raises :class:`NotOurs`).

    The URIs come from asset events, which any task may add through the alias: the page serves only an
    image, of bounded size, from the bucket its video is in, never another kind of object.
    """
    bucket, key = split_s3_uri(uri)
    if video_uri is None or split_s3_uri(video_uri)[0] != bucket:
        raise NotOurs(f"{uri} is not in its video's bucket")
    answer = _client(conn_id).get_object(Bucket=bucket, Key=key)
    content_type = str(answer.get("ContentType") or "").split(";")[0].strip().lower()
    if content_type not in POSTER_TYPES or int(answer.get("ContentLength") or 0) > POSTER_MAX_BYTES:
        answer["Body"].close()
        raise NotOurs(f"{uri} is not a poster frame ({content_type or 'no type'})")
    return Poster(answer["Body"].read(POSTER_MAX_BYTES + 1)[:POSTER_MAX_BYTES], content_type)


def play_url(conn_id: str, uri: str, queue_id: str | None) -> str:
    """Sign a short-lived GET URL that plays the video inline in the browser.

    Only a video the operators delivered is signed: its object carries the job's queue_id in its
    metadata (and the one expected, when known). A URI from an XCom or an asset event that names any
    other object raises :class:`NotOurs`, so the page never signs what a task merely claims.
    """
    bucket, key = split_s3_uri(uri)
    client = _client(conn_id)
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # missing, no access: nothing to sign either way
        raise NotOurs(f"{uri} cannot be read: {exc}") from None
    found = (head.get("Metadata") or {}).get(QUEUE_ID_METADATA)
    if not found or (queue_id is not None and found != queue_id):
        raise NotOurs(f"{uri} is not a video delivered by the Venice operators")
    params = {
        "Bucket": bucket,
        "Key": key,
        "ResponseContentType": "video/mp4",
        "ResponseContentDisposition": "inline",
    }
    url: str = client.generate_presigned_url("get_object", Params=params, ExpiresIn=PLAY_URL_EXPIRY_S)
    return url
