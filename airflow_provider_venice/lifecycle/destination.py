"""Where a video goes: one S3 object, and its manifest beside it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MANIFEST_SUFFIX = ".json"


@dataclass(frozen=True)
class Destination:
    """An S3 object for a video, checked like S3 checks names, before anything is paid or downloaded.

    :param replace: overwrite an object already there; when False the write itself is conditional.
    :param manifest_key: the key of the JSON manifest written last, when the video is verified; by
        default the video's key plus ``.json``; ``""`` for none.
    """

    bucket: str
    key: str
    replace: bool = False
    manifest_key: str | None = None

    def __post_init__(self) -> None:
        bucket, key = self.bucket, self.key
        if not isinstance(bucket, str) or not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise AirflowFailException(
                f"s3_bucket: {bucket!r} is not a valid bucket name (3-63 characters: lowercase letters, "
                "digits, dots and hyphens, starting and ending with a letter or digit)"
            )
        if not _valid_key(key):
            raise AirflowFailException(
                f"s3_key: {str(key)[:80]!r} is not a valid key (1-1024 bytes, not starting with '/')"
            )
        if self.manifest_key is None:
            object.__setattr__(self, "manifest_key", key + MANIFEST_SUFFIX)
        elif self.manifest_key and (not _valid_key(self.manifest_key) or self.manifest_key == key):
            raise AirflowFailException(
                f"manifest_key: {str(self.manifest_key)[:80]!r} must be a valid key other than the video's"
            )

    @property
    def uri(self) -> str:
        """``s3://bucket/key`` of the video."""
        return f"s3://{self.bucket}/{self.key}"

    @property
    def manifest_uri(self) -> str | None:
        """``s3://bucket/key`` of the manifest, or None when no manifest is written."""
        return f"s3://{self.bucket}/{self.manifest_key}" if self.manifest_key else None


def _valid_key(key: object) -> bool:
    return isinstance(key, str) and bool(key) and not key.startswith("/") and len(key.encode()) <= 1024


def s3_hook(aws_conn_id: str | None) -> S3Hook:
    """Build the Amazon provider's S3 hook (imported here: boto3 is never loaded at DAG parse time)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id)
