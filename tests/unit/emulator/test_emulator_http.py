from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
from emulator_helpers import KEY, T2V, VPS, valid_body

if TYPE_CHECKING:
    from airflow_provider_venice.testing import VeniceEmulator

YOUTUBE_URLS = [
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
    "https://youtube.com/watch?feature=share&v=dQw4w9WgXcQ",
    "https://youtu.be/dQw4w9WgXcQ",
    "https://www.youtube.com/shorts/dQw4w9WgXcQ",
]


@pytest.mark.parametrize("url", YOUTUBE_URLS)
def test_transcription_json(client: httpx.Client, url: str) -> None:
    response = client.post("/video/transcriptions", json={"url": url, "response_format": "json"})
    assert response.status_code == 200
    assert response.json()["lang"] == "en"
    assert "dQw4w9WgXcQ" in response.json()["transcript"]


def test_transcription_text(client: httpx.Client) -> None:
    response = client.post("/video/transcriptions", json={"url": YOUTUBE_URLS[2], "response_format": "text"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "dQw4w9WgXcQ" in response.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://vimeo.com/12345678"}, "url"),
        ({"url": "https://example.com/watch?v=dQw4w9WgXcQ"}, "url"),
        ({}, "url"),
        ({"url": YOUTUBE_URLS[0], "response_format": "srt"}, "response_format"),
    ],
)
def test_transcription_rejects_other_input(client: httpx.Client, body: dict[str, Any], field: str) -> None:
    response = client.post("/video/transcriptions", json=body)
    assert response.status_code == 400
    assert field in response.json()["details"]


def test_retired_transcriptions_answer_410(client: httpx.Client, venice_emulator: VeniceEmulator) -> None:
    venice_emulator.configure(transcriptions_retired=True)
    response = client.post("/video/transcriptions", json={"url": YOUTUBE_URLS[0]})
    assert response.status_code == 410
    assert "retired" in response.json()["error"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": KEY},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer bad-key"},
    ],
    ids=["missing", "no-scheme", "basic", "invalid-key"],
)
def test_bad_or_missing_key_is_a_401(venice_emulator: VeniceEmulator, headers: dict[str, str]) -> None:
    with httpx.Client(
        base_url=venice_emulator.base_url, transport=venice_emulator.sync_transport()
    ) as anonymous:
        for request in (("GET", "/models"), ("POST", "/video/queue")):
            response = anonymous.request(*request, headers=headers, json=valid_body())
            assert response.status_code == 401
            assert isinstance(response.json()["error"], str)
    assert venice_emulator.jobs() == []


def test_invalid_key_is_configurable(client: httpx.Client, venice_emulator: VeniceEmulator) -> None:
    assert client.get("/models").status_code == 200
    venice_emulator.configure(invalid_key=KEY)
    assert client.get("/models").status_code == 401


def test_rate_limit_headers(client: httpx.Client) -> None:
    first = client.get("/models").headers
    second = client.get("/models").headers
    assert first["x-ratelimit-limit-requests"] == "500"
    assert int(second["x-ratelimit-remaining-requests"]) == int(first["x-ratelimit-remaining-requests"]) - 1
    assert int(first["x-ratelimit-reset-requests"]) > 1_600_000_000_000


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/nope", 404), ("GET", "/video/queue", 405)])
def test_unknown_routes_answer_json_errors(client: httpx.Client, method: str, path: str, status: int) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    assert isinstance(response.json()["error"], str)


def test_call_log_records_requests_in_order_without_the_key(
    client: httpx.Client, venice_emulator: VeniceEmulator, queue: Any
) -> None:
    job = queue(VPS)
    client.post("/video/retrieve", json={"model": VPS, "queue_id": job["queue_id"]})
    venice_emulator.advance(3600)
    with httpx.Client(transport=venice_emulator.sync_transport()) as anonymous:
        anonymous.get(job["download_url"])
        anonymous.get(job["download_url"], headers={"Authorization": "Bearer leaked"})

    calls = venice_emulator.calls()

    assert [(call["method"], call["path"], call["status"]) for call in calls] == [
        ("POST", "/api/v1/video/queue", 200),
        ("POST", "/api/v1/video/retrieve", 200),
        ("GET", job["download_url"].removeprefix("https://venice.test"), 200),
        ("GET", job["download_url"].removeprefix("https://venice.test"), 200),
    ]
    assert calls[0]["body"] == valid_body(VPS)
    assert calls[0]["time"] <= calls[2]["time"] - 3600
    assert "authorization" not in calls[2]
    assert calls[3]["authorization"] == "Bearer leaked"
    assert KEY not in repr(calls)


def test_reset_forgets_everything(client: httpx.Client, venice_emulator: VeniceEmulator, queue: Any) -> None:
    venice_emulator.configure(transcriptions_retired=True)
    venice_emulator.add_faults({"endpoint": "/models", "status": 500})
    queue()
    venice_emulator.advance(100)

    venice_emulator.reset()

    assert venice_emulator.jobs() == venice_emulator.calls() == []
    assert venice_emulator.state.balance_usd == 100.0
    assert venice_emulator.state.clock.offset_s == 0
    assert venice_emulator.state.config.transcriptions_retired is False
    assert client.get("/models").status_code == 200


@pytest.mark.anyio
async def test_async_transport(venice_emulator: VeniceEmulator) -> None:
    async with venice_emulator.async_client() as http:
        response = await http.post("/video/queue", json=valid_body(T2V))
        venice_emulator.advance(3600)
        video = await http.post(
            "/video/retrieve", json={"model": T2V, "queue_id": response.json()["queue_id"]}
        )
    assert video.headers["content-type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"
