"""Run-time settings of the emulator, changeable through ``/_emulator/config`` and ``reset``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EmulatorConfig(BaseModel):
    """Emulator settings. ``None`` for ``job_seconds``/``video_bytes`` means the per-model default.

    ``retrieve_json_on_accept``: when true, a ``/video/retrieve`` of a finished non-VPS job whose
    ``Accept`` header names ``application/json`` answers ``{"status": "COMPLETED", ...}`` instead of
    the mp4 (independent clients disagree on whether Venice does this; by default it is ignored).
    ``moov_at_end``: when true, every video is written ``ftyp`` + ``mdat`` + ``moov`` (not
    fast-started) instead of ``ftyp`` + ``moov`` + ``mdat``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    invalid_key: str = "bad-key"
    banned_word: str = "forbidden"
    refuse_word: str = "refusedbyprovider"
    transcriptions_retired: bool = False
    retrieve_json_on_accept: bool = False
    moov_at_end: bool = False
    job_seconds: float | None = Field(default=None, ge=0)
    video_bytes: int | None = Field(default=None, ge=0)
    balance_usd: float = Field(default=100.0, ge=0)
    max_body_bytes: int = Field(default=35 * 1024 * 1024, gt=0)
    seed: int = 0

    def updated(self, changes: dict[str, Any]) -> EmulatorConfig:
        """Return a validated copy with ``changes`` applied (``ValueError`` on bad names or values)."""
        return EmulatorConfig.model_validate({**self.model_dump(), **changes})
