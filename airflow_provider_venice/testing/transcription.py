"""``/video/transcriptions``: YouTube URLs only, answered with a deterministic transcript."""

from __future__ import annotations

import re
from typing import Any

from airflow_provider_venice.testing.errors import error
from airflow_provider_venice.testing.validation import Problems

_YOUTUBE = re.compile(
    r"https?://(?:www\.|m\.)?(?:youtube\.com/(?:watch\?(?:[^#]*&)?v=|shorts/)|youtu\.be/)([\w-]{6,})"
)
_FORMATS = ("json", "text")


def transcribe(body: dict[str, Any], retired: bool) -> dict[str, Any] | str:
    """Answer a valid request: the JSON body (``response_format`` json) or plain text (text)."""
    if retired:
        raise error(410, "The /video/transcriptions endpoint has been retired.")
    problems = Problems()
    url = body.get("url")
    match = _YOUTUBE.match(url) if isinstance(url, str) else None
    if match is None:
        problems.add(
            ("url",), "must be a YouTube video URL (youtube.com/watch?v=, youtu.be/ or youtube.com/shorts/)"
        )
    response_format = body.get("response_format", "json")
    if response_format not in _FORMATS:
        problems.add(("response_format",), f"must be one of {', '.join(_FORMATS)}")
    problems.raise_if_any()
    assert match is not None
    transcript = f"Emulated transcript of YouTube video {match.group(1)}. Welcome to Venice."
    return {"transcript": transcript, "lang": "en"} if response_format == "json" else transcript
