"""Fixtures: a scripted Venice over ``httpx.MockTransport`` and a fake task state store.

Operators build their own hooks, so the seam is ``register_transports``: the ``venice_default``
connection (from ``AIRFLOW_CONN_VENICE_DEFAULT``) points at ``BASE_URL``, and every hook for that URL
sends through the fake's transport.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_venice.client import forget_catalogues
from airflow_provider_venice.hooks.venice import register_transports, unregister_transports

BASE_URL = "https://venice.test/api/v1"
API_KEY = "sk-test-0123456789abcdef"
T2V = "wan-2-7-text-to-video"
I2V = "wan-2-7-image-to-video"
REF = "wan-2-7-reference-to-video"
VPS = "grok-imagine-text-to-video-private"
UPSCALE = "topaz-video-upscale"
DOWNLOAD_URL = "https://media.venice.test/files/q-vps.mp4?sig=abc"

CATALOGUE = {
    "object": "list",
    "type": "video",
    "data": [
        {
            "id": model_id,
            "object": "model",
            "type": "video",
            "model_spec": {"name": model_id, "constraints": constraints},
        }
        for model_id, constraints in {
            T2V: {
                "model_type": "text-to-video",
                "durations": ["5s", "10s"],
                "resolutions": ["720p", "1080p"],
                "aspect_ratios": ["16:9", "9:16"],
                "audio": True,
                "audio_configurable": True,
                "prompt_character_limit": 200,
            },
            I2V: {
                "model_type": "image-to-video",
                "durations": ["5s"],
                "resolutions": ["720p"],
                "aspect_ratios": ["16:9"],
            },
            REF: {
                "model_type": "image-to-video",
                "durations": ["5s"],
                "resolutions": ["720p"],
                "aspect_ratios": ["16:9"],
                "supports_reference_images": True,
                "supports_elements": True,
                "supports_scene_images": True,
            },
            VPS: {  # its audio is always on: audio=True is accepted, audio=False refused
                "model_type": "text-to-video",
                "durations": ["6s"],
                "resolutions": ["720p"],
                "aspect_ratios": ["16:9"],
                "audio": True,
                "audio_configurable": False,
            },
            UPSCALE: {"model_type": "video", "durations": ["Auto"], "upscale_factors": [1, 2, 4]},
        }.items()
    ],
}

Responder = httpx.Response | Callable[[httpx.Request], httpx.Response]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


class FakeVenice:
    """Answers like Venice by default; ``on(method, path, *responses)`` scripts the next answers.

    A scripted responder may be an ``httpx.Response`` or a callable; an exception instance is raised
    (e.g. ``httpx.ReadTimeout``). The last scripted answer for a route repeats.
    """

    connection = staticmethod(lambda max_retries=0: connection(max_retries))

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.authorizations: list[str | None] = []  # as sent: the client redacts a request once sent
        self.scripts: dict[tuple[str, str], list[Any]] = {}
        self.queue_count = 0

    # scripting --------------------------------------------------------------------------------
    def on(self, method: str, path: str, *responses: Any) -> None:
        self.scripts[(method.upper(), path)] = list(responses)

    # inspection -------------------------------------------------------------------------------
    def calls(self, path: str | None = None, method: str | None = None) -> list[httpx.Request]:
        return [
            r
            for r in self.requests
            if (path is None or _path(r) == path) and (method is None or r.method == method.upper())
        ]

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.calls(path)]

    def authorization(self, path: str) -> list[str | None]:
        """The Authorization header of each call to ``path``, as it was sent."""
        return [auth for r, auth in zip(self.requests, self.authorizations, strict=True) if _path(r) == path]

    def paths(self) -> list[str]:
        return [f"{r.method} {_path(r)}" for r in self.requests]

    # transport --------------------------------------------------------------------------------
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        self.authorizations.append(request.headers.get("authorization"))
        key = (request.method, _path(request))
        script = self.scripts.get(key)
        if script:
            answer = script.pop(0) if len(script) > 1 else script[0]
            if isinstance(answer, BaseException):
                raise answer
            return answer(request) if callable(answer) else answer
        return self.default(request)

    def default(self, request: httpx.Request) -> httpx.Response:
        path = _path(request)
        if request.url.host != "venice.test":  # a download_url host
            return httpx.Response(204 if request.method == "DELETE" else 200)
        if path == "/api/v1/models":
            return json_response(200, CATALOGUE)
        body = json.loads(request.content or b"{}")
        if path == "/api/v1/video/quote":
            return json_response(200, {"quote": 0.35})
        if path == "/api/v1/video/queue":
            self.queue_count += 1
            answer = {"model": body["model"], "queue_id": f"q-{self.queue_count}"}
            if body["model"] == VPS:
                answer["download_url"] = DOWNLOAD_URL
            return json_response(200, answer)
        if path == "/api/v1/video/retrieve":
            return json_response(
                200, {"status": "PROCESSING", "average_execution_time": 60000, "execution_duration": 1000}
            )
        if path == "/api/v1/video/complete":
            return json_response(200, {"success": True})
        if path == "/api/v1/video/transcriptions":
            if body.get("response_format") == "text":
                return httpx.Response(200, text="hello world", headers={"content-type": "text/plain"})
            return json_response(200, {"transcript": "hello world", "lang": "en"})
        return json_response(404, {"error": "no such route"})


def _path(request: httpx.Request) -> str:
    return request.url.path


RECORD_KEY = "venice_job"  # the job record in the task state store


class FakeStore:
    """``context["task_state_store"]``: get/set/delete over a dict, surviving across tries.

    ``fail_stage``: the first write of the job record reaching that stage raises ``error`` instead
    (the API server unreachable, or the worker killed at that moment); later writes succeed.
    """

    def __init__(self, fail_stage: str | None = None, error: BaseException | None = None) -> None:
        self.data: dict[str, Any] = {}
        self.fail_stage = fail_stage
        self.error = error if error is not None else ConnectionError("task state store unavailable")
        self.refused: list[Any] = []
        self.on_set: Callable[[str, Any], None] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        if self.on_set is not None:
            self.on_set(key, value)
        if (
            self.fail_stage is not None
            and key == RECORD_KEY
            and isinstance(value, dict)
            and value.get("stage") == self.fail_stage
            and not self.refused
        ):
            self.refused.append(value)
            raise self.error
        self.data[key] = json.loads(json.dumps(value))  # what a real store keeps is JSON

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def connection(max_retries: int = 0, base_url: str = BASE_URL) -> str:
    return json.dumps(
        {
            "conn_type": "venice",
            "host": base_url,
            "password": API_KEY,
            "extra": {"max_retries": max_retries, "timeout_s": 5},
        }
    )


@pytest.fixture
def venice(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVenice]:
    """A fresh fake Venice behind the ``venice_default`` connection (no client retries)."""
    fake = FakeVenice()
    monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", connection())
    forget_catalogues()
    register_transports(BASE_URL, fake.transport())
    yield fake
    unregister_transports(BASE_URL)
    forget_catalogues()


@pytest.fixture
def store() -> FakeStore:
    """A task state store surviving across tries of one task instance."""
    return FakeStore()


@pytest.fixture
def context(store: FakeStore) -> dict[str, Any]:
    """A task context holding only the task state store."""
    return {"task_state_store": store}


@pytest.fixture
def new_store() -> Callable[..., FakeStore]:
    """Make the task state store of another task instance (``fail_stage``, ``error``: see FakeStore)."""
    return FakeStore
