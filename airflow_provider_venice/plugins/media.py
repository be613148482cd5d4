"""The videos' bytes in S3: poster frames read through the app, and presigned URLs made at click time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

PLAY_URL_EXPIRY_S = 300


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


def read_poster(conn_id: str, uri: str) -> Poster:
    """Read a poster frame (a small image written beside the video) from S3."""
    bucket, key = split_s3_uri(uri)
    answer = _client(conn_id).get_object(Bucket=bucket, Key=key)
    return Poster(answer["Body"].read(), str(answer.get("ContentType") or "image/jpeg"))


def play_url(conn_id: str, uri: str) -> str:
    """Sign a short-lived GET URL that plays the video inline in the browser."""
    bucket, key = split_s3_uri(uri)
    params = {
        "Bucket": bucket,
        "Key": key,
        "ResponseContentType": "video/mp4",
        "ResponseContentDisposition": "inline",
    }
    url: str = _client(conn_id).generate_presigned_url(
        "get_object", Params=params, ExpiresIn=PLAY_URL_EXPIRY_S
    )
    return url
