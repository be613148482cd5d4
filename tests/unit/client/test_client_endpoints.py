"""Every endpoint's happy path, sync and async, and what goes over the wire."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from airflow_provider_venice import __version__
from airflow_provider_venice.client import (
    DownloadUrlError,
    QueueVideoRequest,
    QuoteVideoRequest,
    UnreadableAnswerError,
    VideoElement,
    VideoNotReadyError,
)

CATALOGUE = {
    "object": "list",
    "type": "video",
    "data": [
        {
            "id": "wan-2-7-text-to-video",
            "object": "model",
            "type": "video",
            "created": 1760000000,
            "owned_by": "venice.ai",
            "model_spec": {
                "name": "Wan 2.7",
                "description": "...",
                "privacy": "anonymized",
                "beta": False,
                "offline": False,
                "traits": [],
                "unknown_future_field": {"x": 1},
                "constraints": {
                    "model_type": "text-to-video",
                    "durations": ["5s", "10s"],
                    "resolutions": ["720p", "1080p"],
                    "aspect_ratios": ["16:9", "9:16", "1:1"],
                    "audio": True,
                    "audio_configurable": True,
                    "prompt_character_limit": 2500,
                },
            },
        },
        {"id": "topaz-video-upscale", "object": "model", "type": "video"},
    ],
}
MODEL = "wan-2-7-text-to-video"
DOWNLOAD_URL = "https://media.venice-cdn.test/files/q-1.mp4?sig=abc"


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


def assert_api_request(request: httpx.Request, fake: Any, method: str, path: str) -> None:
    assert request.method == method
    assert str(request.url).startswith(fake.BASE_URL + path)
    assert request.headers["Authorization"] == f"Bearer {fake.KEY}"
    assert request.headers["User-Agent"].startswith(f"airflow-provider-venice/{__version__} ")
    if method == "POST":
        assert request.headers["Content-Type"] == "application/json"


def test_list_video_models(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(200, json=CATALOGUE))
    models = h.call("list_video_models")
    assert [m.id for m in models.data] == [MODEL, "topaz-video-upscale"]
    wan = models.by_id()[MODEL]
    assert wan.constraints.durations == ["5s", "10s"]
    assert wan.constraints.prompt_character_limit == 2500
    assert wan.model_spec.name == "Wan 2.7"
    (request,) = h.requests
    assert_api_request(request, fake, "GET", "/models")
    assert request.url.path == "/api/v1/models"
    assert dict(request.url.params) == {"type": "video"}
    assert request.content == b""


def test_quote(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(200, json={"quote": 0.35}))
    price = h.call("quote", QuoteVideoRequest(model=MODEL, duration="5s", resolution="720p", audio=False))
    assert price == pytest.approx(0.35)
    (request,) = h.requests
    assert_api_request(request, fake, "POST", "/video/quote")
    assert request.url.path == "/api/v1/video/quote"
    assert body_of(request) == {"model": MODEL, "duration": "5s", "resolution": "720p", "audio": False}


def full_queue_request() -> QueueVideoRequest:
    return QueueVideoRequest(
        model=MODEL,
        prompt="A lighthouse at dusk, @Element1 walks by, in the style of @Image1",
        duration="10s",
        negative_prompt="blurry",
        aspect_ratio="16:9",
        resolution="1080p",
        upscale_factor=2,
        audio=True,
        image_url="https://img.test/start.png",
        end_image_url="data:image/png;base64,iVBORw0KGgo=",
        audio_url="https://img.test/music.mp3",
        video_url="https://img.test/in.mp4",
        reference_image_urls=["https://img.test/r1.png", "https://img.test/r2.png"],
        elements=[
            VideoElement(
                frontal_image_url="https://img.test/face.png",
                reference_image_urls=["https://img.test/side.png"],
                video_url="https://img.test/walk.mp4",
            )
        ],
        scene_image_urls=["https://img.test/scene.png"],
    )


def test_queue_sends_every_field_by_its_api_name(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(200, json={"model": MODEL, "queue_id": "q-1"}))
    queued = h.call("queue", full_queue_request())
    assert (queued.model, queued.queue_id, queued.download_url) == (MODEL, "q-1", None)
    (request,) = h.requests
    assert_api_request(request, fake, "POST", "/video/queue")
    assert body_of(request) == {
        "model": MODEL,
        "prompt": "A lighthouse at dusk, @Element1 walks by, in the style of @Image1",
        "duration": "10s",
        "negative_prompt": "blurry",
        "aspect_ratio": "16:9",
        "resolution": "1080p",
        "upscale_factor": 2,
        "audio": True,
        "image_url": "https://img.test/start.png",
        "end_image_url": "data:image/png;base64,iVBORw0KGgo=",
        "audio_url": "https://img.test/music.mp3",
        "video_url": "https://img.test/in.mp4",
        "reference_image_urls": ["https://img.test/r1.png", "https://img.test/r2.png"],
        "elements": [
            {
                "frontal_image_url": "https://img.test/face.png",
                "reference_image_urls": ["https://img.test/side.png"],
                "video_url": "https://img.test/walk.mp4",
            }
        ],
        "scene_image_urls": ["https://img.test/scene.png"],
    }


def test_queue_minimal_body_and_download_url(venice: Any, fake: Any) -> None:
    vps = "grok-imagine-text-to-video-private"
    h = venice(fake.answer(200, json={"model": vps, "queue_id": "q-2", "download_url": DOWNLOAD_URL}))
    queued = h.call("queue", QueueVideoRequest(model=vps, prompt="a cat", duration="Auto"))
    assert queued.download_url == DOWNLOAD_URL
    assert queued.queue_id == "q-2"
    assert body_of(h.requests[0]) == {"model": vps, "prompt": "a cat", "duration": "Auto"}


def test_queue_request_forbids_unknown_fields() -> None:
    with pytest.raises(ValueError, match="durations"):
        QueueVideoRequest.model_validate({"model": MODEL, "prompt": "x", "duration": "5s", "durations": "5s"})


def test_retrieve_processing(venice: Any, fake: Any) -> None:
    h = venice(
        fake.answer(
            200, json={"status": "PROCESSING", "average_execution_time": 145000, "execution_duration": 53000}
        )
    )
    status = h.call("retrieve_status", MODEL, "q-1")
    assert status.state == "processing"
    assert not status.is_done
    assert (status.average_execution_time_ms, status.execution_duration_ms) == (145000, 53000)
    (request,) = h.requests
    assert_api_request(request, fake, "POST", "/video/retrieve")
    assert body_of(request) == {"model": MODEL, "queue_id": "q-1", "delete_media_on_completion": False}


def test_retrieve_finished_video_is_not_read(venice: Any, fake: Any) -> None:
    body = fake.LazyBody(50 * 1024 * 1024, explode=True)
    headers = {"Content-Type": "video/mp4", "Content-Length": str(body.total)}
    h = venice(lambda request: httpx.Response(200, headers=headers, stream=body))
    status = h.call("retrieve_status", MODEL, "q-1")
    assert status.state == "video_ready"
    assert status.is_done
    assert status.content_type == "video/mp4"
    assert status.content_length == 50 * 1024 * 1024
    assert body.reads == 0
    assert body.produced == 0
    assert body.closed


def test_retrieve_octet_stream_counts_as_video(venice: Any, fake: Any) -> None:
    body = fake.LazyBody(10, explode=True)
    h = venice(
        lambda r: httpx.Response(200, headers={"Content-Type": "application/octet-stream"}, stream=body)
    )
    status = h.call("retrieve_status", MODEL, "q-1")
    assert status.state == "video_ready"
    assert status.content_length is None
    assert body.reads == 0


def test_retrieve_completed_json(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(200, json={"status": "COMPLETED", "execution_duration": 90000}))
    status = h.call("retrieve_status", MODEL, "q-1")
    assert status.state == "completed"
    assert status.is_done
    assert status.execution_duration_ms == 90000
    assert status.average_execution_time_ms is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"status": "FAILED", "error": "generation crashed", "error_code": "E42"},
            "FAILED: generation crashed",
        ),
        ({"status": "SOMETHING_NEW"}, "SOMETHING_NEW"),
        ({"average_execution_time": 1}, "UNKNOWN"),
    ],
)
def test_retrieve_unknown_status_is_failed(venice: Any, fake: Any, body: Any, expected: str) -> None:
    h = venice(fake.answer(200, json=body))
    status = h.call("retrieve_status", MODEL, "q-1")
    assert status.state == "failed"
    assert not status.is_done
    assert expected in (status.message or "")


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"", b"[1, 2]"], ids=["html", "empty", "list"])
def test_retrieve_unreadable_answer_is_a_transient_error(venice: Any, fake: Any, body: bytes) -> None:
    """A 2xx answer that says nothing (a proxy's page, a 204) is asked again, never a failed job."""
    h = venice(fake.answer(200, content=body, headers={"Content-Type": "text/html"}))
    with pytest.raises(UnreadableAnswerError) as caught:
        h.call("retrieve_status", MODEL, "q-1")
    assert caught.value.retryable
    assert body[:10].decode() in str(caught.value)


def test_download_video_streams_into_sink(venice: Any, fake: Any) -> None:
    body = fake.LazyBody(300_000, piece=7_000)
    h = venice(lambda r: httpx.Response(200, headers={"Content-Type": "video/mp4"}, stream=body))
    received: list[bytes] = []
    total = h.call("download_video", MODEL, "q-1", received.append, chunk_size=65_536)
    assert total == 300_000 == sum(map(len, received))
    assert max(map(len, received)) <= 65_536
    assert received[0][4:12] == b"ftypisom"
    assert body_of(h.requests[0]) == {"model": MODEL, "queue_id": "q-1", "delete_media_on_completion": False}
    assert body.closed


def test_open_video_reports_type_and_size(venice: Any, fake: Any) -> None:
    body = fake.LazyBody(1000)
    headers = {"Content-Type": "video/mp4", "Content-Length": "1000"}
    h = venice(lambda r: httpx.Response(200, headers=headers, stream=body))
    sink: list[bytes] = []
    meta, total = h.stream("open_video", MODEL, "q-1", sink=sink.append)
    assert meta == ("video/mp4", 1000)
    assert total == 1000


def test_open_video_while_processing_raises_not_ready(venice: Any, fake: Any) -> None:
    h = venice(
        fake.answer(200, json={"status": "PROCESSING", "average_execution_time": 1, "execution_duration": 0})
    )
    with pytest.raises(VideoNotReadyError, match=r"q-1.*processing"):
        h.call("download_video", MODEL, "q-1", lambda chunk: None)


def test_open_download_url_sends_no_api_key(venice: Any, fake: Any) -> None:
    body = fake.LazyBody(200_000, piece=10_000)
    h = venice(lambda r: httpx.Response(200, headers={"Content-Type": "video/mp4"}, stream=body))
    sink: list[bytes] = []
    meta, total = h.stream("open_download_url", DOWNLOAD_URL, sink=sink.append)
    assert total == 200_000
    assert meta == ("video/mp4", None)
    (request,) = h.requests
    assert request.method == "GET"
    assert str(request.url) == DOWNLOAD_URL
    assert "authorization" not in request.headers
    assert fake.KEY not in str(request.headers.raw)
    assert request.headers["User-Agent"].startswith(f"airflow-provider-venice/{__version__} ")


def test_open_download_url_follows_redirect_without_api_key(venice: Any, fake: Any) -> None:
    h = venice(
        fake.answer(302, headers={"Location": "https://bucket.storage.test/q-1.mp4"}),
        fake.answer(200, content=b"\x00\x00\x00\x18ftypisom", headers={"Content-Type": "video/mp4"}),
    )
    sink: list[bytes] = []
    _, total = h.stream("open_download_url", DOWNLOAD_URL, sink=sink.append)
    assert total == 12
    assert [str(r.url) for r in h.requests] == [DOWNLOAD_URL, "https://bucket.storage.test/q-1.mp4"]
    assert all("authorization" not in r.headers for r in h.requests)


@pytest.mark.parametrize(("status", "expected"), [(200, True), (204, True), (404, False)])
def test_delete_download_url(venice: Any, fake: Any, status: int, expected: bool) -> None:
    h = venice(fake.answer(status))
    assert h.call("delete_download_url", DOWNLOAD_URL) is expected
    (request,) = h.requests
    assert request.method == "DELETE"
    assert str(request.url) == DOWNLOAD_URL
    assert "authorization" not in request.headers


def test_delete_download_url_other_refusal_raises(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(403, text="Request has expired"))
    with pytest.raises(DownloadUrlError, match=r"403.*expire.*Request has expired") as info:
        h.call("delete_download_url", DOWNLOAD_URL)
    assert info.value.status == 403
    assert len(h.requests) == 1


def test_complete(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(200, json={"success": True}))
    done = h.call("complete", MODEL, "q-1")
    assert done.success is True
    (request,) = h.requests
    assert_api_request(request, fake, "POST", "/video/complete")
    assert body_of(request) == {"model": MODEL, "queue_id": "q-1"}


def test_transcribe_json(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(200, json={"transcript": "hello world", "lang": "en"}))
    result = h.call("transcribe", "https://www.youtube.com/watch?v=abc")
    assert (result.transcript, result.lang) == ("hello world", "en")
    (request,) = h.requests
    assert_api_request(request, fake, "POST", "/video/transcriptions")
    assert body_of(request) == {"url": "https://www.youtube.com/watch?v=abc", "response_format": "json"}


def test_transcribe_text(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(200, text="hello\nworld", headers={"Content-Type": "text/plain; charset=utf-8"}))
    result = h.call("transcribe", "https://youtu.be/abc", response_format="text")
    assert (result.transcript, result.lang) == ("hello\nworld", None)
    assert body_of(h.requests[0]) == {"url": "https://youtu.be/abc", "response_format": "text"}


def test_transcribe_rejects_unknown_format_before_sending(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(200, json={"transcript": ""}))
    with pytest.raises(ValueError, match="response_format"):
        h.call("transcribe", "https://youtu.be/abc", response_format="srt")
    assert h.requests == []


def test_unexpected_success_body_is_a_clear_error(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(200, json={"price": 1}))
    with pytest.raises(Exception, match=r"/video/quote sent an unexpected answer") as info:
        h.call("quote", QuoteVideoRequest(model=MODEL, duration="5s"))
    assert type(info.value).__name__ == "VeniceError"
