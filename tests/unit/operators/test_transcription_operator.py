"""VeniceVideoTranscriptionOperator over a scripted Venice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from airflow_provider_venice.version_compat import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from conftest import FakeVenice

from airflow_provider_venice.operators.transcription import VeniceVideoTranscriptionOperator

TRANSCRIBE = "/api/v1/video/transcriptions"
WATCH = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def op(url: str = WATCH, **kwargs: Any) -> VeniceVideoTranscriptionOperator:
    return VeniceVideoTranscriptionOperator(task_id="transcribe", url=url, **kwargs)


@pytest.mark.parametrize(
    "url",
    [
        "https://vimeo.com/123",
        "https://www.youtube.com/",
        "https://www.youtube.com/watch",
        "https://www.youtube.com/channel/abc",
        "https://youtu.be/",
        "ftp://www.youtube.com/watch?v=abc",
        "https://notyoutube.com/watch?v=abc",
        "https://www.youtube.com.evil.example/watch?v=abc",
        "www.youtube.com/watch?v=abc",
        "",
    ],
)
def test_non_youtube_urls_fail_before_any_call(venice: FakeVenice, url: str) -> None:
    with pytest.raises(AirflowFailException, match="not a YouTube video URL"):
        op(url).execute({})
    assert venice.requests == []


@pytest.mark.parametrize(
    "url",
    [
        WATCH,
        "https://youtube.com/watch?v=abc&t=10",
        "https://m.youtube.com/watch?v=abc",
        "https://youtu.be/dQw4w9WgXcQ",
        "https://www.youtube.com/shorts/abc123",
        "http://www.youtube.com/live/abc",
    ],
)
def test_youtube_urls_are_sent_as_given(venice: FakeVenice, url: str) -> None:
    op(url).execute({})
    assert venice.bodies(TRANSCRIBE) == [{"url": url, "response_format": "json"}]


def test_bad_response_format_fails_before_any_call(venice: FakeVenice) -> None:
    with pytest.raises(AirflowFailException, match="json, text"):
        op(response_format="srt").execute({})
    assert venice.requests == []


def test_json_format_returns_transcript_and_language(venice: FakeVenice) -> None:
    assert op().execute({}) == {"transcript": "hello world", "lang": "en"}


def test_text_format_returns_only_the_transcript(venice: FakeVenice) -> None:
    assert op(response_format="text").execute({}) == {"transcript": "hello world"}
    assert venice.bodies(TRANSCRIBE)[0]["response_format"] == "text"


def test_retired_endpoint_fails_permanently_saying_so(venice: FakeVenice) -> None:
    venice.on("POST", TRANSCRIBE, json_response(410, {"error": "This endpoint has been retired."}))
    with pytest.raises(AirflowFailException, match="retired") as info:
        op().execute({})
    assert "410" in str(info.value)
    assert len(venice.calls(TRANSCRIBE)) == 1


def test_transient_errors_are_retryable(venice: FakeVenice) -> None:
    venice.on("POST", TRANSCRIBE, json_response(503, {"error": "busy"}))
    with pytest.raises(AirflowException) as info:
        op().execute({})
    assert not isinstance(info.value, AirflowFailException)


def test_permanent_errors_fail(venice: FakeVenice) -> None:
    venice.on("POST", TRANSCRIBE, json_response(400, {"error": "Video has no captions"}))
    with pytest.raises(AirflowFailException, match="no captions"):
        op().execute({})


def test_transport_failure_is_retryable(venice: FakeVenice) -> None:
    venice.on("POST", TRANSCRIBE, httpx.ConnectError("refused"))
    with pytest.raises(AirflowException) as info:
        op().execute({})
    assert not isinstance(info.value, AirflowFailException)
