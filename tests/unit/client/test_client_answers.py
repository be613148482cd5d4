"""What the clients make of Venice's 2xx answers, and what they ask /video/retrieve for.

A 2xx /video/queue answer means a job exists and was paid for: it is read leniently, and when its
queue_id cannot be read the outcome is unknown. A quote is a finite amount of money. A status poll takes
JSON or the mp4; a download asks for the mp4 only.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from airflow_provider_venice.client import (
    QueueOutcomeUnknownError,
    QueueResponse,
    QueueVideoRequest,
    QuoteVideoRequest,
    VeniceError,
)
from airflow_provider_venice.client._core import ClientCore, Endpoint

MODEL = "wan-2-7-text-to-video"


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


# --- a 2xx /video/queue answer: the job exists and was charged --------------------------------------

QUEUE_REQUEST = QueueVideoRequest(model=MODEL, prompt="a cat", duration="5s")


@pytest.mark.parametrize(
    "answer",
    [{"queue_id": "q-7"}, {"model": None, "queue_id": "q-7"}, {"model": "", "queue_id": "q-7"}],
    ids=["absent", "null", "empty"],
)
def test_queue_answer_without_model_takes_the_request_model(venice: Any, fake: Any, answer: Any) -> None:
    h = venice(fake.answer(200, json=answer))
    queued = h.call("queue", QUEUE_REQUEST)
    assert (queued.model, queued.queue_id, queued.download_url) == (MODEL, "q-7", None)


def test_queue_answer_keeps_its_own_model_and_extra_fields_are_ignored(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(200, json={"model": "wan-2-7-alias", "queue_id": "q-7", "eta": 30}))
    queued = h.call("queue", QUEUE_REQUEST)
    assert (queued.model, queued.queue_id) == ("wan-2-7-alias", "q-7")


@pytest.mark.parametrize(
    "answer", [{"model": MODEL, "queue_id": "q-7"}, {"model": MODEL, "queue_id": "q-7", "download_url": None}]
)
def test_queue_answer_download_url_null_or_absent_means_none(venice: Any, fake: Any, answer: Any) -> None:
    h = venice(fake.answer(200, json=answer))
    assert h.call("queue", QUEUE_REQUEST).download_url is None


@pytest.mark.parametrize(
    ("body", "snippet"),
    [
        (b'{"model": "wan-2-7-text-to-video"}', "wan-2-7-text-to-video"),
        (b'{"model": "m", "queue_id": null}', "queue_id"),
        (b'{"model": "m", "queue_id": 12345}', "12345"),
        (b'{"model": "m", "queue_id": ""}', "queue_id"),
        (b'{"model": "m", "queue_id": ["q-1"]}', "q-1"),
        (b"<html>502 upstream hiccup</html>", "upstream hiccup"),
        (b'[{"queue_id": "q-1"}]', "queue_id"),
        (b"", "''"),
    ],
    ids=["missing", "null", "number", "empty", "list", "not-json", "json-array", "empty-body"],
)
def test_queue_answer_without_a_queue_id_is_outcome_unknown(
    venice: Any, fake: Any, body: bytes, snippet: str
) -> None:
    h = venice(fake.answer(200, content=body, headers={"Content-Type": "application/json"}))
    with pytest.raises(QueueOutcomeUnknownError, match="not resent") as info:
        h.call("queue", QUEUE_REQUEST)
    assert type(info.value) is QueueOutcomeUnknownError
    assert snippet in str(info.value)
    assert len(h.requests) == 1


def test_queue_answer_snippet_is_short(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(200, content=b'{"junk": "' + b"x" * 10_000 + b'"}'))
    with pytest.raises(QueueOutcomeUnknownError) as info:
        h.call("queue", QUEUE_REQUEST)
    assert len(str(info.value)) < 600


# --- a quote is a finite amount of money -----------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"quote": NaN}',
        b'{"quote": Infinity}',
        b'{"quote": -Infinity}',
        b'{"quote": 1e999}',
        b'{"quote": -0.01}',
        b'{"quote": "0.35"}',
        b'{"quote": true}',
        b'{"quote": null}',
    ],
)
def test_quote_must_be_a_finite_non_negative_number(venice: Any, fake: Any, body: bytes) -> None:
    h = venice(fake.answer(200, content=body, headers={"Content-Type": "application/json"}))
    with pytest.raises(VeniceError, match=r"/video/quote sent an unexpected answer") as info:
        h.call("quote", QuoteVideoRequest(model=MODEL, duration="5s"))
    assert type(info.value) is VeniceError


@pytest.mark.parametrize(("body", "price"), [(b'{"quote": 0}', 0.0), (b'{"quote": 2}', 2.0)])
def test_quote_accepts_zero_and_whole_numbers(venice: Any, fake: Any, body: bytes, price: float) -> None:
    h = venice(fake.answer(200, content=body, headers={"Content-Type": "application/json"}))
    assert h.call("quote", QuoteVideoRequest(model=MODEL, duration="5s")) == price


def test_quote_sends_reference_video_total_duration(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(200, json={"quote": 1.5}))
    h.call("quote", QUEUE_REQUEST.to_quote_request(reference_video_total_duration=42.5))
    assert body_of(h.requests[0]) == {
        "model": MODEL,
        "duration": "5s",
        "reference_video_total_duration": 42.5,
    }


# --- /video/retrieve: a status poll takes JSON or the mp4, a download asks for the mp4 -----------------


def test_retrieve_status_accepts_json_or_mp4(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(200, json={"status": "PROCESSING"}))
    h.call("retrieve_status", MODEL, "q-1")
    assert h.requests[0].headers["Accept"] == "application/json, video/mp4"


@pytest.mark.parametrize("how", ["open_video", "download_video"])
def test_video_download_asks_for_video_mp4_only(venice: Any, fake: Any, how: str) -> None:
    h = venice(fake.answer(200, content=b"\x00\x00\x00\x18ftypisom", headers={"Content-Type": "video/mp4"}))
    if how == "open_video":
        h.stream("open_video", MODEL, "q-1", sink=lambda chunk: None)
    else:
        h.call("download_video", MODEL, "q-1", lambda chunk: None)
    (request,) = h.requests
    assert request.headers.get_list("Accept") == ["video/mp4"]
    assert request.url.path == "/api/v1/video/retrieve"
    assert request.headers["Authorization"] == f"Bearer {fake.KEY}"


def accept_sensitive_venice(request: httpx.Request) -> httpx.Response:
    """A server that answers JSON COMPLETED to a finished non-VPS job when Accept names JSON."""
    if "application/json" in request.headers.get("Accept", ""):
        return httpx.Response(200, json={"status": "COMPLETED", "execution_duration": 90000})
    return httpx.Response(
        200, content=b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100, headers={"Content-Type": "video/mp4"}
    )


def test_server_answering_json_completed_still_delivers_the_mp4(venice: Any, fake: Any) -> None:
    h = venice(accept_sensitive_venice)
    status = h.call("retrieve_status", MODEL, "q-1")
    assert (status.state, status.is_done) == ("completed", True)
    received: list[bytes] = []
    assert h.call("download_video", MODEL, "q-1", received.append) == 112
    assert b"".join(received)[4:12] == b"ftypisom"


@pytest.mark.parametrize("link", ["", 42, {"url": "https://x"}])
def test_queue_answer_with_an_unusable_download_url_keeps_the_job(
    venice: Any, fake: Any, link: Any, caplog: pytest.LogCaptureFixture
) -> None:
    h = venice(fake.answer(200, json={"model": MODEL, "queue_id": "q-7", "download_url": link}))
    with caplog.at_level("WARNING", logger="airflow_provider_venice.client"):
        queued = h.call("queue", QUEUE_REQUEST)
    assert (queued.queue_id, queued.download_url) == ("q-7", None)
    assert "unusable download_url" in caplog.text


@pytest.mark.parametrize("endpoint", [e for e in Endpoint if e.charges])
def test_any_unreadable_2xx_on_a_charging_endpoint_is_outcome_unknown(endpoint: Endpoint) -> None:
    with pytest.raises(QueueOutcomeUnknownError, match="could not be read"):
        ClientCore.parse(endpoint, b'{"unexpected": true}', QueueResponse)


# --- downloads ask for the bytes as stored; /video/complete is read leniently ------------------------


def test_video_downloads_ask_for_the_bytes_as_stored(venice: Any, fake: Any) -> None:
    """``Accept-Encoding: identity``: a compressed answer's Content-Length is not the video's size."""
    h = venice(fake.answer(200, content=b"\x00\x00\x00\x18ftypisom", headers={"Content-Type": "video/mp4"}))
    h.call("download_video", MODEL, "q-1", lambda chunk: None)
    (request,) = h.requests
    assert request.headers["Accept-Encoding"] == "identity"


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_an_encoded_video_answer_has_no_usable_length(encoding: str) -> None:
    from airflow_provider_venice.client._status import content_length

    headers = {"Content-Type": "video/mp4", "Content-Length": "123", "Content-Encoding": encoding}
    assert content_length(httpx.Response(200, headers=headers)) is None
    assert content_length(httpx.Response(200, headers={"Content-Length": "123"})) == 123
    plain = {"Content-Length": "123", "Content-Encoding": "identity"}
    assert content_length(httpx.Response(200, headers=plain)) == 123


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 204},
        {"status": 200, "content": b""},
        {"status": 200, "text": "OK"},
        {"status": 200, "json": {"success": True}},
        {"status": 200, "json": {"released": "yes"}},
    ],
    ids=["204", "empty", "text", "success", "other-json"],
)
def test_any_2xx_complete_means_released(venice: Any, fake: Any, answer: dict[str, Any]) -> None:
    h = venice(fake.answer(**answer))
    assert h.call("complete", MODEL, "q-1").success is True


def test_a_complete_that_says_success_false_is_a_retryable_error(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(200, json={"success": False}))
    with pytest.raises(VeniceError) as caught:
        h.call("complete", MODEL, "q-1")
    assert caught.value.retryable
    assert "success" in str(caught.value)
