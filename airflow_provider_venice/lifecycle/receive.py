"""Receive a video's bytes once: count, hash and check them as they pass on their way to S3."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from airflow_provider_venice.lifecycle.failures import VideoDeliveryError
from airflow_provider_venice.lifecycle.mp4 import Mp4StructureError, Mp4Walker

if TYPE_CHECKING:
    import threading


class VideoReceiver:
    """Checks every chunk of one video: byte count against ``Content-Length``, MP4 structure and SHA-256.

    ``abort`` (a threading event, set by ``on_kill``) makes the next chunk fail, which stops the upload.
    """

    def __init__(self, expected_length: int | None, abort: threading.Event) -> None:
        self.expected_length = expected_length
        self._abort = abort
        self.size = 0
        self._sha256 = hashlib.sha256()
        self.mp4 = Mp4Walker()

    def take(self, chunk: bytes) -> None:
        """Check and account for the next chunk."""
        if self._abort.is_set():
            raise VideoDeliveryError("delivery cancelled (the task was killed)")
        self.size += len(chunk)
        if self.expected_length is not None and self.size > self.expected_length:
            raise VideoDeliveryError(f"received more than the announced {self.expected_length} bytes")
        try:
            self.mp4.feed(chunk)
        except Mp4StructureError as exc:
            raise VideoDeliveryError(str(exc)) from None
        self._sha256.update(chunk)

    def finish(self) -> None:
        """Check the whole body: every announced byte arrived and the MP4 boxes add up exactly."""
        if self.expected_length is not None and self.size != self.expected_length:
            raise VideoDeliveryError(f"body cut short: {self.size} of {self.expected_length} bytes received")
        try:
            self.mp4.finish()
        except Mp4StructureError as exc:
            raise VideoDeliveryError(str(exc)) from None

    @property
    def sha256(self) -> str:
        """The SHA-256 of the bytes received so far, in hex."""
        return self._sha256.hexdigest()
