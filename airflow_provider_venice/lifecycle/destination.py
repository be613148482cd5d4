"""Where a video goes: one S3 object, and its manifest beside it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_venice.lifecycle.probe import POSTER_SUFFIXES, PosterSpec
from airflow_provider_venice.lifecycle.s3upload import CHECKSUM_MODES
from airflow_provider_venice.version_compat import AirflowFailException

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MANIFEST_SUFFIX = ".json"


@dataclass(frozen=True)
class Destination:
    """An S3 object for a video and what goes beside it, checked before anything is paid or downloaded.

    :param replace: overwrite an object already there; when False the write itself is conditional.
    :param manifest_key: the key of the JSON manifest written last, when the video is verified; by
        default the video's key plus ``.json``; ``""`` for none.
    :param poster_key: the key of the poster frame (by default the video's key plus ``.poster.jpg``, or
        ``.webp``); ``""`` for none. ``poster_format`` is ``jpeg`` or ``webp``, ``poster_max_side`` its
        long side in pixels.
    :param checksum: the checksums S3 is asked to check: ``FULL_OBJECT``, ``COMPOSITE`` or ``NONE``.
    """

    bucket: str
    key: str
    replace: bool = False
    manifest_key: str | None = None
    poster_key: str | None = None
    poster_format: str = "jpeg"
    poster_max_side: int = 640
    checksum: str = "FULL_OBJECT"

    @classmethod
    def of_task(cls, task: Any) -> Destination:
        """Read the destination from a delivering operator's rendered arguments (``s3_bucket``, ...)."""
        return cls(
            task.s3_bucket,
            task.s3_key,
            bool(task.replace),
            task.manifest_key,
            task.poster_key,
            task.poster_format,
            task.poster_max_side,
            task.s3_checksum,
        )

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
        suffix = POSTER_SUFFIXES.get(self.poster_format, "jpg")
        self._companion("manifest_key", key + MANIFEST_SUFFIX, (key,))
        self._companion("poster_key", f"{key}.poster.{suffix}", (key, str(self.manifest_key)))
        if self.checksum not in CHECKSUM_MODES:
            raise AirflowFailException(
                f"s3_checksum: {self.checksum!r}; allowed: {', '.join(CHECKSUM_MODES)}"
            )
        try:
            self.poster  # noqa: B018 (builds the poster spec, which checks its format and size)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None

    def _companion(self, name: str, default: str, taken: tuple[str, ...]) -> None:
        """Check (or default) the key of an object written beside the video: the manifest, the poster."""
        value = getattr(self, name)
        if value is None:
            if not _valid_key(default):
                raise AirflowFailException(
                    f"{name}: the default {default[:40]!r}... is longer than S3's 1024 bytes; pass a shorter "
                    f"s3_key, or {name}"
                )
            object.__setattr__(self, name, default)
        elif value and (not _valid_key(value) or value in taken):
            raise AirflowFailException(
                f"{name}: {str(value)[:80]!r} must be a valid key other than the video's (and the manifest's)"
            )

    @property
    def uri(self) -> str:
        """``s3://bucket/key`` of the video."""
        return f"s3://{self.bucket}/{self.key}"

    @property
    def poster(self) -> PosterSpec | None:
        """The poster frame to write beside the video, or None when it is off."""
        if not self.poster_key:
            return None
        return PosterSpec(self.poster_key, self.poster_max_side, self.poster_format)

    @property
    def manifest_uri(self) -> str | None:
        """``s3://bucket/key`` of the manifest, or None when no manifest is written."""
        return f"s3://{self.bucket}/{self.manifest_key}" if self.manifest_key else None


def _valid_key(key: object) -> bool:
    return isinstance(key, str) and bool(key) and not key.startswith("/") and len(key.encode()) <= 1024


def s3_hook(aws_conn_id: str | None, checksum: str = "FULL_OBJECT") -> S3Hook:
    """Build the Amazon provider's S3 hook (imported here: boto3 is never loaded at DAG parse time).

    With ``checksum="NONE"`` its client sends checksums only where S3 requires them (botocore otherwise
    adds a CRC32 trailer to every upload, which the stores that need ``NONE`` refuse).
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    if checksum != "NONE":
        return S3Hook(aws_conn_id=aws_conn_id)
    from botocore.config import Config

    quiet = Config(request_checksum_calculation="when_required", response_checksum_validation="when_required")
    return S3Hook(aws_conn_id=aws_conn_id, config=quiet)
