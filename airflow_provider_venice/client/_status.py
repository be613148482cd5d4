"""Reading a ``/video/retrieve`` answer into a :class:`JobStatus`, from its status and headers alone.

A finished non-VPS job answers with the mp4 itself (``video/*`` or ``application/octet-stream``); its
body is never read to learn the status. A JSON answer says PROCESSING, COMPLETED or something else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_venice.client._errors import UnreadableAnswerError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    import httpx

_SNIPPET = 200
_RUNNING = ("PROCESSING", "QUEUED", "PENDING", "IN_PROGRESS")


@dataclass(frozen=True)
class JobStatus:
    """What one ``/video/retrieve`` answer says about a job, read without the video body.

    ``state`` is ``processing``, ``video_ready`` (the answer is the mp4 itself), ``completed`` (JSON
    ``COMPLETED``: the video is ready; fetch ``download_url`` for VPS models, ``open_video`` otherwise)
    or ``failed``.
    """

    state: Literal["processing", "video_ready", "completed", "failed"]
    average_execution_time_ms: int | None = None
    execution_duration_ms: int | None = None
    content_type: str | None = None
    content_length: int | None = None
    message: str | None = None

    @property
    def is_done(self) -> bool:
        """Whether the video is ready to be fetched."""
        return self.state in ("video_ready", "completed")


@dataclass(frozen=True)
class VideoStream:
    """An mp4 being received: its declared type and size, and its body as an iterator of chunks."""

    content_type: str | None
    content_length: int | None
    chunks: Iterator[bytes]


@dataclass(frozen=True)
class AsyncVideoStream:
    """The async twin of :class:`VideoStream`."""

    content_type: str | None
    content_length: int | None
    chunks: AsyncIterator[bytes]


def is_video(response: httpx.Response) -> bool:
    """Whether a 2xx retrieve answer is the video itself (judged by its headers only)."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return bool(content_type.startswith("video/") or content_type == "application/octet-stream")


def content_length(response: httpx.Response) -> int | None:
    """Return the size of the body as it will be read, if declared.

    A body sent with a ``Content-Encoding`` (gzip, say) is decoded while read, so its declared length is
    not the length read: then there is none.
    """
    if response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
        return None
    value = response.headers.get("content-length")
    return int(value) if value and value.isdigit() else None


def video_status(response: httpx.Response) -> JobStatus:
    """Status for a retrieve answer whose body is the video (the body is not read)."""
    return JobStatus(
        state="video_ready",
        content_type=response.headers.get("content-type"),
        content_length=content_length(response),
    )


def json_status(raw_body: bytes) -> JobStatus:
    """Status for a JSON retrieve answer: PROCESSING, COMPLETED or any other status (failed).

    A body that is not a JSON object says nothing about the job: :class:`UnreadableAnswerError`, a
    transient error, so the job is looked at again rather than given up.
    """
    try:
        body = json.loads(raw_body)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise UnreadableAnswerError("/video/retrieve", raw_body[:_SNIPPET].decode("utf-8", errors="replace"))
    status = str(body.get("status", "")).upper()
    average = _int_or_none(body.get("average_execution_time"))
    elapsed = _int_or_none(body.get("execution_duration"))
    if status in _RUNNING:
        return JobStatus("processing", average, elapsed)
    if status == "COMPLETED":
        return JobStatus("completed", average, elapsed)
    message = body.get("error") or body.get("error_code") or f"status {status or 'missing'}"
    return JobStatus("failed", average, elapsed, message=f"{status or 'UNKNOWN'}: {message}")


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
