"""Transcribe a YouTube video with Venice's ``/video/transcriptions``."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from airflow.sdk import BaseOperator

from airflow_provider_venice.client import EndpointRetiredError, VeniceError
from airflow_provider_venice.hooks.venice import VeniceHook
from airflow_provider_venice.lifecycle.failures import as_airflow_failure
from airflow_provider_venice.version_compat import AirflowFailException

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

_YOUTUBE_HOSTS = {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com"}
_RESPONSE_FORMATS = ("json", "text")


def check_youtube_url(url: str) -> None:
    """Raise ``AirflowFailException`` unless ``url`` points at one YouTube video."""
    parts = urlsplit(str(url).strip())
    host = (parts.hostname or "").lower()
    path = parts.path.rstrip("/")
    if parts.scheme in ("http", "https"):
        if host == "youtu.be" and len(path) > 1:
            return
        if host in _YOUTUBE_HOSTS and (
            (path == "/watch" and parse_qs(parts.query).get("v"))
            or path.startswith(("/shorts/", "/live/", "/embed/"))
        ):
            return
    raise AirflowFailException(
        f"url: {str(url)[:80]!r} is not a YouTube video URL; Venice transcribes only YouTube videos "
        "(https://www.youtube.com/watch?v=..., https://youtu.be/..., .../shorts/...)"
    )


class VeniceVideoTranscriptionOperator(BaseOperator):
    """Transcribe a YouTube video's audio.

    Returns ``{"transcript", "lang"}`` for ``response_format="json"`` and ``{"transcript"}`` for
    ``"text"``. The URL is checked before the call. Venice has been reported to retire this endpoint
    (410 Gone); that fails the task at once with a clear message instead of retrying.

    :param url: the YouTube video URL.
    :param response_format: ``json`` (with the detected language) or ``text``.
    """

    template_fields: Sequence[str] = ("url", "response_format", "venice_conn_id")

    def __init__(
        self,
        *,
        url: str,
        response_format: str = "json",
        venice_conn_id: str = VeniceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.url = url
        self.response_format = response_format
        self.venice_conn_id = venice_conn_id

    @cached_property
    def hook(self) -> VeniceHook:
        """The Venice hook."""
        return VeniceHook(self.venice_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        """Check the URL and format, then transcribe."""
        check_youtube_url(self.url)
        if self.response_format not in _RESPONSE_FORMATS:
            raise AirflowFailException(
                f"response_format: {self.response_format!r} is not allowed; allowed: json, text"
            )
        try:
            result = self.hook.get_conn().transcribe(self.url, self.response_format)
        except EndpointRetiredError as exc:
            raise AirflowFailException(
                f"Venice has retired /video/transcriptions (410 Gone): {exc.venice_message}. "
                "Download the audio yourself and use Venice's /audio/transcriptions instead."
            ) from exc
        except VeniceError as exc:
            raise as_airflow_failure(exc) from exc
        self.log.info("Transcribed %s: %d characters.", self.url, len(result.transcript))
        if self.response_format == "text":
            return {"transcript": result.transcript}
        return {"transcript": result.transcript, "lang": result.lang}
