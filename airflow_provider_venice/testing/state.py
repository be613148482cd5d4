"""The emulator's state and its operations, in plain Python (no HTTP).

Each API operation takes the decoded JSON body and returns the success body, or raises
:class:`~airflow_provider_venice.testing.errors.ApiError` with Venice's status and error body.
All methods are thread-safe: the server thread and the test thread share one state.
"""

from __future__ import annotations

import re
import secrets
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_venice.testing.catalogue import models_response
from airflow_provider_venice.testing.clock import Clock
from airflow_provider_venice.testing.config import EmulatorConfig
from airflow_provider_venice.testing.errors import ApiError, error, invalid_request_id
from airflow_provider_venice.testing.faults import FaultPlan
from airflow_provider_venice.testing.jobs import Job
from airflow_provider_venice.testing.mp4 import Mp4File, VideoSpec
from airflow_provider_venice.testing.transcription import transcribe
from airflow_provider_venice.testing.validation import Problems, validate_queue, validate_quote

if TYPE_CHECKING:
    from airflow_provider_venice.testing.catalogue import VideoModel

MEDIA_PREFIX = "/_media"
RATE_LIMIT_REQUESTS = 500
INSUFFICIENT_BALANCE = "Insufficient USD or Diem balance to complete request"


@dataclass(frozen=True)
class Delivery:
    """A finished video to stream; ``delete_after`` asks to delete it once fully sent."""

    file: Mp4File
    queue_id: str
    delete_after: bool = False


class EmulatorState:
    """Catalogue, jobs, balance, clock, call log, fault plan and config of one emulator."""

    def __init__(self, config: EmulatorConfig | None = None, **changes: Any) -> None:
        self._lock = threading.RLock()
        self._initial_config = (config or EmulatorConfig()).updated(changes)
        self.reset()

    # --- control ---------------------------------------------------------------------------

    def reset(self, **changes: Any) -> None:
        """Forget jobs, calls and faults; restore balance and clock; config = initial + ``changes``."""
        with self._lock:
            self.config = self._initial_config.updated(changes)
            self.clock = Clock()
            self.balance_usd = self.config.balance_usd
            self.jobs: dict[str, Job] = {}
            self._calls: list[dict[str, Any]] = []
            self.faults = FaultPlan(self.config.seed)
            self._rate_window = (0, 0)

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change config at run time; a new ``balance_usd`` or ``seed`` also applies at once."""
        with self._lock:
            self.config = self.config.updated(changes)
            if "balance_usd" in changes:
                self.balance_usd = self.config.balance_usd
            if "seed" in changes:
                self.faults.reseed(self.config.seed)
            return self.config

    def advance(self, seconds: float) -> None:
        """Move emulated time forward for every job."""
        with self._lock:
            self.clock.advance(seconds)

    def record_call(self, entry: dict[str, Any]) -> None:
        """Append one request to the call log."""
        with self._lock:
            self._calls.append(entry)

    def calls(self) -> list[dict[str, Any]]:
        """Return every logged request, oldest first."""
        with self._lock:
            return list(self._calls)

    def jobs_snapshot(self) -> list[dict[str, Any]]:
        """Return every job as JSON, oldest first."""
        with self._lock:
            now = self.clock.now()
            return [job.snapshot(now) for job in self.jobs.values()]

    def rate_limit_headers(self) -> dict[str, str]:
        """Count one request and return ``x-ratelimit-*`` headers (informational, never enforced)."""
        with self._lock:
            window = int(self.clock.now() // 60)
            used = self._rate_window[1] + 1 if self._rate_window[0] == window else 1
            self._rate_window = (window, used)
        return {
            "x-ratelimit-limit-requests": str(RATE_LIMIT_REQUESTS),
            "x-ratelimit-remaining-requests": str(max(0, RATE_LIMIT_REQUESTS - used)),
            "x-ratelimit-reset-requests": str((window + 1) * 60_000),
        }

    # --- API operations --------------------------------------------------------------------

    def models(self, model_type: str) -> dict[str, Any]:
        """``GET /models?type=...``."""
        return models_response(model_type)

    def quote(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /video/quote``: ``{"quote": usd}``; free, creates nothing."""
        return {"quote": _price(validate_quote(body), body)}

    def queue(self, body: dict[str, Any], media_base_url: str) -> dict[str, Any]:
        """``POST /video/queue``: validate, apply content policy, reserve the quote, create the job."""
        model = validate_queue(body)
        prompt = body.get("prompt") or ""
        self._check_content_policy(prompt)
        price = _price(model, body)
        with self._lock:
            if price > self.balance_usd:
                raise error(402, INSUFFICIENT_BALANCE)
            self.balance_usd = round(self.balance_usd - price, 6)
            job = self._new_job(model, body, price, media_base_url)
            self.jobs[job.queue_id] = job
        response = {"model": model.id, "queue_id": job.queue_id}
        if job.download_url is not None:
            response["download_url"] = job.download_url
        return response

    def retrieve(self, body: dict[str, Any], *, accepts_json: bool = False) -> dict[str, Any] | Delivery:
        """``POST /video/retrieve``: a PROCESSING/COMPLETED body, or the finished video to stream.

        ``accepts_json`` tells whether the request's ``Accept`` header named ``application/json``;
        with the ``retrieve_json_on_accept`` config a finished non-VPS job then answers the
        COMPLETED body instead of the video, and its media is kept.
        """
        with self._lock:
            job = self._find(body)
            now = self.clock.now()
            if job.media_deleted:
                raise error(404, "Media not found: it was deleted or has expired")
            if not job.finished(now):
                return job.progress(now)
            if job.refused:
                raise self._refuse(job)
            if job.model.vps:
                return {"status": "COMPLETED"}
            if accepts_json and self.config.retrieve_json_on_accept:
                return job.completed()
            delete_after = body.get("delete_media_on_completion") is True
            return Delivery(self._video(job), job.queue_id, delete_after)

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /video/complete``: delete the media. VPS jobs answer 400, as Venice reportedly does."""
        with self._lock:
            job = self._find(body)
            if job.model.vps:
                raise invalid_request_id()
            if job.media_deleted:
                raise error(404, "Media not found: it was already deleted")
            job.media_deleted = True
        return {"success": True}

    def delete_media(self, queue_id: str) -> None:
        """Delete a job's media (after a ``delete_media_on_completion`` retrieve)."""
        with self._lock:
            self.jobs[queue_id].media_deleted = True

    def transcribe(self, body: dict[str, Any]) -> dict[str, Any] | str:
        """``POST /video/transcriptions``: JSON body or plain text; 410 when retired."""
        return transcribe(body, self.config.transcriptions_retired)

    # --- download_url (VPS) ----------------------------------------------------------------

    def download(self, token: str, filename: str) -> Mp4File:
        """``GET`` on a ``download_url``: the file once the job finished; 403 once expired."""
        with self._lock:
            job = self._linked_job(token, filename)
            if not job.finished(self.clock.now()) or job.refused:
                raise error(404, "Not found: the video is not ready")
            return self._video(job)

    def delete_download(self, token: str, filename: str) -> None:
        """``DELETE`` on a ``download_url``: remove the file; later requests answer 404."""
        with self._lock:
            self._linked_job(token, filename).media_deleted = True

    # --- helpers ---------------------------------------------------------------------------

    def _check_content_policy(self, prompt: str) -> None:
        word = self.config.banned_word
        if word and word.lower() in prompt.lower():
            suggested = " ".join(re.sub(re.escape(word), "", prompt, flags=re.IGNORECASE).split())
            raise ApiError(
                422,
                {"error": "Your prompt violates the content policy.", "suggested_prompt": suggested},
            )

    def _new_job(self, model: VideoModel, body: dict[str, Any], price: float, base_url: str) -> Job:
        prompt = body.get("prompt") or ""
        refuse_word = self.config.refuse_word
        job = Job(
            queue_id=str(uuid.uuid4()),
            model=model,
            prompt=prompt,
            video=VideoSpec.for_request(body["duration"], body.get("aspect_ratio") or _aspect(model)),
            quote_usd=price,
            created_at=self.clock.now(),
            run_seconds=self.config.job_seconds if self.config.job_seconds is not None else model.job_seconds,
            refused=bool(refuse_word) and refuse_word.lower() in prompt.lower(),
        )
        if model.vps:
            job.download_token = secrets.token_urlsafe(16)
            job.download_url = f"{base_url.rstrip('/')}{MEDIA_PREFIX}/{job.download_token}/{job.queue_id}.mp4"
        return job

    def _video(self, job: Job) -> Mp4File:
        return Mp4File(job.video, self.config.video_bytes, moov_at_end=self.config.moov_at_end)

    def _find(self, body: dict[str, Any]) -> Job:
        problems = Problems()
        for key in ("model", "queue_id"):
            if not isinstance(body.get(key), str) or not body[key]:
                problems.add((key,), "is required")
        problems.raise_if_any()
        job = self.jobs.get(body["queue_id"])
        if job is None or job.model.id != body["model"]:
            raise invalid_request_id()
        return job

    def _refuse(self, job: Job) -> ApiError:
        if not job.refunded:
            self.balance_usd = round(self.balance_usd + job.quote_usd, 6)
            job.refunded = True
        return ApiError(
            422,
            {
                "error": {
                    "message": "The provider refused to generate this video (content policy).",
                    "type": "provider_content_policy",
                    "credits_refunded": True,
                }
            },
        )

    def _linked_job(self, token: str, filename: str) -> Job:
        job = self.jobs.get(filename.removesuffix(".mp4"))
        if job is None or job.download_token is None or not secrets.compare_digest(job.download_token, token):
            raise error(404, "Not found")
        if job.link_expired(self.clock.now()):
            raise error(403, "Expired: a download_url is valid for 24 hours after the job was queued")
        if job.media_deleted:
            raise error(404, "Not found: the file was deleted")
        return job


def _aspect(model: VideoModel) -> str:
    return model.aspect_ratios[0] if model.aspect_ratios else "16:9"


def _price(model: VideoModel, body: dict[str, Any]) -> float:
    return model.quote(
        body["duration"], body.get("resolution"), body.get("audio") is not False, body.get("upscale_factor")
    )
