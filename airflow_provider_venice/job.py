"""The typed Venice job: what one ``/video/queue`` created, and how it travels between tasks.

A job is handed from task to task as native XCom values, never as rendered text: ``job=queue.output``
(the whole job) or ``queue.output["queue_id"]`` (one key; the operators that return a job push each key
as its own XCom). :meth:`VeniceJob.from_xcom` is the one way back from such a value to a job, and it
refuses what is not a job (a Jinja-rendered ``"None"``, a quote as text) with an error naming the field.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

XCOM_KEYS = ("model", "queue_id", "download_url", "quote_usd", "request_fingerprint")


class Stage(enum.StrEnum):
    """How far a task instance got with its job; kept in the job record across tries."""

    QUEUEING = "queueing"  # /video/queue was sent; Venice's answer is not recorded (maybe charged)
    QUEUED = "queued"  # Venice answered with a queue_id: the job exists and is paid for
    UPLOADING = "uploading"  # an S3 upload of the video was started
    UPLOADED = "uploaded"  # every byte passed our checks; their size and sums are kept; S3 is committing
    DELIVERED = "delivered"  # the video is in S3 and passed every check (the manifest is written)
    COMPLETED = "completed"  # /video/complete released Venice's copy


class InvalidJobError(ValueError):
    """A value handed to an operator is not a Venice job; the message names the field."""


@dataclass(frozen=True)
class VeniceJob:
    """One Venice video job: the model, its queue_id, a VPS ``download_url``, its price, its request.

    ``request_fingerprint`` identifies the request the job was queued for (see :func:`fingerprint`).
    """

    model: str
    queue_id: str
    download_url: str | None = None
    quote_usd: float | None = None
    request_fingerprint: str | None = None

    def __post_init__(self) -> None:
        _check_text("model", self.model)
        _check_text("queue_id", self.queue_id)
        if self.download_url is not None:
            _check_url("download_url", self.download_url)
        if self.quote_usd is not None:
            object.__setattr__(self, "quote_usd", money("quote_usd", self.quote_usd))
        if self.request_fingerprint is not None:
            _check_text("request_fingerprint", self.request_fingerprint)

    def to_xcom(self) -> dict[str, Any]:
        """Return the job as a plain JSON dict (its XCom form)."""
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Any, field: str = "job") -> VeniceJob:
        """Read a job from its XCom form (a dict with at least ``model`` and ``queue_id``) or a job.

        Keys beyond the job's own (a sensor's ``status``, say) are ignored.
        """
        if isinstance(value, VeniceJob):
            return value
        if not isinstance(value, Mapping):
            raise InvalidJobError(
                f"{field}: expected a Venice job (a dict with model and queue_id, e.g. job=queue.output), "
                f"got {type(value).__name__} {str(value)[:80]!r}"
            )
        known: dict[str, Any] = {key: value.get(key) for key in XCOM_KEYS}
        try:
            return cls(**known)
        except InvalidJobError as exc:
            raise InvalidJobError(f"{field}.{exc}") from None


def job_from_arguments(
    job: Any, model: Any = None, queue_id: Any = None, download_url: Any = None, quote_usd: Any = None
) -> VeniceJob:
    """Read an operator's job: the whole ``job`` (``job=queue.output``), or its ``model`` and ``queue_id``.

    Raises :class:`InvalidJobError` naming what is missing or wrong.
    """
    if job is not None:
        return VeniceJob.from_xcom(job)
    if model is None and queue_id is None:
        raise InvalidJobError("job: pass the job (job=queue.output), or model and queue_id")
    parts = {"model": model, "queue_id": queue_id, "download_url": download_url, "quote_usd": quote_usd}
    try:
        return VeniceJob(**parts)
    except InvalidJobError as exc:
        raise InvalidJobError(str(exc)) from None


def money(field: str, value: Any) -> float:
    """Return ``value`` as a finite, non-negative amount of US dollars, or raise naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJobError(f"{field}: expected a number of US dollars, got {value!r}")
    amount = float(value)
    if not math.isfinite(amount) or amount < 0:
        raise InvalidJobError(f"{field}: must be a finite amount of at least 0 US dollars, got {value!r}")
    return amount


def fingerprint(*parts: Any) -> str:
    """Return a short, stable digest of JSON-able ``parts`` (a request body, a destination)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _check_text(field: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidJobError(f"{field}: expected a non-empty string, got {value!r}")


def _check_url(field: str, value: Any) -> None:
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
    except ValueError:  # e.g. an unclosed IPv6 bracket
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidJobError(
            f"{field}: expected an http(s) URL or None, got {str(value)[:80]!r} (pass the job natively, "
            "e.g. job=queue.output or queue.output['download_url'], not a rendered template string)"
        )
