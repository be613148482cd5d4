"""A queued video job and how its state reads at a given emulated time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_venice.testing.catalogue import VideoModel
    from airflow_provider_venice.testing.mp4 import VideoSpec

DOWNLOAD_URL_LIFETIME_S = 24 * 3600


@dataclass
class Job:
    """One queued job. It runs for ``run_seconds`` of emulated time after ``created_at``."""

    queue_id: str
    model: VideoModel
    prompt: str
    video: VideoSpec
    quote_usd: float
    created_at: float
    run_seconds: float
    refused: bool = False
    download_token: str | None = None
    download_url: str | None = None
    media_deleted: bool = False
    refunded: bool = False

    def finished(self, now: float) -> bool:
        """Tell whether generation has ended (successfully or refused) at emulated time ``now``."""
        return now >= self.created_at + self.run_seconds

    def link_expired(self, now: float) -> bool:
        """Tell whether the ``download_url`` has expired (24 emulated hours after queueing)."""
        return now >= self.created_at + DOWNLOAD_URL_LIFETIME_S

    def progress(self, now: float) -> dict[str, Any]:
        """Return the PROCESSING body; its average is off from the true run time by a model factor."""
        return {
            "status": "PROCESSING",
            "average_execution_time": self._average_ms(),
            "execution_duration": round(max(0.0, now - self.created_at) * 1000),
        }

    def completed(self) -> dict[str, Any]:
        """Return the COMPLETED body of a finished job; ``execution_duration`` is its whole run time."""
        return {
            "status": "COMPLETED",
            "average_execution_time": self._average_ms(),
            "execution_duration": round(self.run_seconds * 1000),
        }

    def _average_ms(self) -> int:
        return round(self.run_seconds * 1000 * self.model.estimate_factor)

    def status(self, now: float) -> str:
        """Return ``PROCESSING``, ``REFUSED``, ``COMPLETED`` or ``DELETED`` for the admin job list."""
        if self.media_deleted:
            return "DELETED"
        if not self.finished(now):
            return "PROCESSING"
        return "REFUSED" if self.refused else "COMPLETED"

    def snapshot(self, now: float) -> dict[str, Any]:
        """Describe the job as JSON for ``GET /_emulator/jobs``."""
        return {
            "queue_id": self.queue_id,
            "model": self.model.id,
            "status": self.status(now),
            "prompt": self.prompt,
            "seconds": self.video.seconds,
            "width": self.video.width,
            "height": self.video.height,
            "quote_usd": self.quote_usd,
            "created_at": self.created_at,
            "finishes_at": self.created_at + self.run_seconds,
            "download_url": self.download_url,
            "media_deleted": self.media_deleted,
        }
