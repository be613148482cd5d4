"""VeniceHook: connections from AIRFLOW_CONN_* (JSON and URI), clients, test_connection.

No Airflow database: connections come from environment variables, HTTP from ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from airflow_provider_venice.client import (
    DEFAULT_BASE_URL,
    AsyncVeniceClient,
    RateLimitError,
    VeniceClient,
    VeniceError,
)
from airflow_provider_venice.hooks.venice import (
    VeniceHook,
    VeniceSettings,
    register_transports,
    shared_async_client,
    unregister_transports,
)

KEY = "sk-SECRET-123"
EMULATOR_URL = "http://127.0.0.1:9/api/v1"
CATALOGUE = {"object": "list", "data": [{"id": "wan-2-7-text-to-video"}, {"id": "topaz-video-upscale"}]}


def set_json_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str = "venice_default", **fields: Any) -> None:
    conn = {"conn_type": "venice", "password": KEY, "host": EMULATOR_URL, **fields}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


class Recorder:
    """A MockTransport handler answering from a fixed responder and recording requests.

    The client redacts a request's Authorization header in place once it was sent, so the header is
    captured here, as it went out (``authorizations``), not read back from ``requests`` afterwards.
    """

    def __init__(self, status: int = 200, body: Any = CATALOGUE, headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.requests: list[httpx.Request] = []
        self.authorizations: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.authorizations.append(request.headers.get("Authorization"))
        return httpx.Response(self.status, json=self.body, headers=self.headers)


# --- reading the connection -------------------------------------------------------------------


def test_json_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(monkeypatch)
    hook = VeniceHook()
    assert hook.venice_conn_id == "venice_default"
    assert hook.settings.base_url == EMULATOR_URL
    assert hook.settings.api_key == KEY
    assert (hook.settings.timeout_s, hook.settings.max_retries) == (None, None)
    client = hook.get_conn()
    assert isinstance(client, VeniceClient)
    assert client.base_url == EMULATOR_URL
    assert hook.get_conn() is client


def test_uri_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", f"venice://:{KEY}@api.venice.ai/api%2Fv1")
    settings = VeniceHook().settings
    assert settings.base_url == "https://api.venice.ai/api/v1"
    assert settings.api_key == KEY


def test_uri_connection_host_only_uses_default_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", f"venice://:{KEY}@api.venice.ai")
    assert VeniceHook().settings.base_url == DEFAULT_BASE_URL


def test_uri_connection_to_loopback_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_EMU", f"venice://:{KEY}@127.0.0.1:8123/api%2Fv1?scheme=http")
    assert VeniceHook("emu").settings.base_url == "http://127.0.0.1:8123/api/v1"


def test_uri_connection_with_whole_base_url_as_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_EMU", f"venice://:{KEY}@http%3A%2F%2Flocalhost%3A8123%2Fapi%2Fv1")
    assert VeniceHook("emu").settings.base_url == "http://localhost:8123/api/v1"


def test_connection_without_host_uses_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", json.dumps({"conn_type": "venice", "password": KEY}))
    assert VeniceHook().settings.base_url == DEFAULT_BASE_URL


def test_missing_password_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_NOKEY", json.dumps({"conn_type": "venice", "host": "https://api.venice.ai/api/v1"})
    )
    hook = VeniceHook("nokey")
    with pytest.raises(VeniceError, match=r"'nokey' has no API key \(put it in the password field\)"):
        hook.get_conn()
    ok, message = hook.test_connection()
    assert not ok
    assert "no API key" in message


def test_plain_http_to_remote_host_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(monkeypatch, host="http://api.venice.ai/api/v1")
    with pytest.raises(VeniceError, match="plain http is only allowed for loopback") as info:
        VeniceHook().get_conn()
    assert KEY not in str(info.value)


def test_extras_timeout_and_retries_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(monkeypatch, extra={"timeout_s": 7, "max_retries": 2})
    # Retry-After: 0 keeps the real sleeps between retries under a tenth of a second each.
    recorder = Recorder(429, {"error": "slow down"}, {"Retry-After": "0"})
    hook = VeniceHook(transport=httpx.MockTransport(recorder))
    assert (hook.settings.timeout_s, hook.settings.max_retries) == (7.0, 2)
    with pytest.raises(RateLimitError):
        hook.get_conn().list_video_models()
    assert len(recorder.requests) == 3  # one try plus max_retries
    timeout = recorder.requests[0].extensions["timeout"]
    assert timeout["read"] == 7.0
    assert timeout["connect"] == 10.0


def test_extras_from_uri_query(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_VENICE_DEFAULT", f"venice://:{KEY}@api.venice.ai/api%2Fv1?timeout_s=12.5&max_retries=0"
    )
    recorder = Recorder(503, {"error": "busy"})
    hook = VeniceHook(transport=httpx.MockTransport(recorder))
    assert (hook.settings.timeout_s, hook.settings.max_retries) == (12.5, 0)
    with pytest.raises(VeniceError):
        hook.get_conn().list_video_models()
    assert len(recorder.requests) == 1
    assert recorder.requests[0].extensions["timeout"]["read"] == 12.5


@pytest.mark.parametrize(
    "extra", [{"timeout_s": "soon"}, {"max_retries": "many"}, {"max_retries": -1}, {"timeout_s": -5}]
)
def test_bad_extras_refused(monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any]) -> None:
    set_json_conn(monkeypatch, extra=extra)
    with pytest.raises(VeniceError, match=next(iter(extra))):
        VeniceHook().get_conn()


def test_no_key_in_settings_or_hook_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(monkeypatch)
    hook = VeniceHook()
    hook.get_conn()
    for text in (repr(hook.settings), str(hook.settings), repr(hook), repr(hook.get_conn())):
        assert KEY not in text
    assert EMULATOR_URL in repr(hook.settings)


def test_api_key_sent_as_bearer(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(monkeypatch)
    recorder = Recorder()
    VeniceHook(transport=httpx.MockTransport(recorder)).get_conn().list_video_models()
    (request,) = recorder.requests
    assert recorder.authorizations == [f"Bearer {KEY}"]
    assert str(request.url) == f"{EMULATOR_URL}/models?type=video"
    # once sent, the request object no longer holds the key (a traceback showing it cannot leak it)
    assert KEY not in str(request.headers.get("Authorization"))


# --- test_connection --------------------------------------------------------------------------


def test_test_connection_success(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(monkeypatch)
    recorder = Recorder()
    ok, message = VeniceHook(transport=httpx.MockTransport(recorder)).test_connection()
    assert ok is True
    assert EMULATOR_URL in message
    assert "2 video models" in message
    (request,) = recorder.requests
    assert request.method == "GET"
    assert request.url.path == "/api/v1/models"
    assert dict(request.url.params) == {"type": "video"}


def test_test_connection_bad_key(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(monkeypatch)
    recorder = Recorder(401, {"error": "Authentication failed"})
    ok, message = VeniceHook(transport=httpx.MockTransport(recorder)).test_connection()
    assert ok is False
    assert "401" in message
    assert "Authentication failed" in message
    assert KEY not in message
    assert len(recorder.requests) == 1  # a 4xx is never retried


def test_test_connection_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(monkeypatch, extra={"max_retries": 0})
    seen: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    ok, message = VeniceHook(transport=httpx.MockTransport(refuse)).test_connection()
    assert ok is False
    assert "connection failed" in message
    assert "Connection refused" in message
    assert KEY not in message
    assert len(seen) == 1


# --- async clients for triggers ---------------------------------------------------------------


def test_aget_client_shares_one_client_per_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(monkeypatch)
    recorder = Recorder()
    transport = httpx.MockTransport(recorder)

    async def main() -> tuple[AsyncVeniceClient, AsyncVeniceClient, int]:
        first = await VeniceHook(async_transport=transport).aget_client()
        second = await VeniceHook(async_transport=transport).aget_client()
        models = await first.list_video_models()
        return first, second, len(models.data)

    first, second, count = asyncio.run(main())
    assert first is second
    assert isinstance(first, AsyncVeniceClient)
    assert first.base_url == EMULATOR_URL
    assert count == 2
    assert recorder.authorizations[0] == f"Bearer {KEY}"
    assert KEY not in str(recorder.requests[0].headers.get("Authorization"))

    other_loop, _, _ = asyncio.run(main())
    assert other_loop is not first


def test_shared_async_client_keyed_by_settings() -> None:
    transport = httpx.MockTransport(Recorder())

    def settings(url: str = EMULATOR_URL, retries: int | None = None) -> VeniceSettings:
        return VeniceSettings(base_url=url, api_key=KEY, timeout_s=None, max_retries=retries)

    async def main() -> None:
        a = shared_async_client(settings(), transport)
        assert shared_async_client(settings(), transport) is a  # equal settings, distinct objects
        assert shared_async_client(settings(retries=1), transport) is not a
        assert shared_async_client(settings("http://localhost:9/api/v1"), transport) is not a
        assert shared_async_client(settings(), httpx.MockTransport(Recorder())) is not a
        await a.aclose()
        replacement = shared_async_client(settings(), transport)
        assert replacement is not a
        assert not replacement.is_closed

    asyncio.run(main())


def test_registered_transports_route_hooks_without_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(monkeypatch)
    recorder = Recorder()
    register_transports(EMULATOR_URL, httpx.MockTransport(recorder), httpx.MockTransport(recorder))
    try:
        assert VeniceHook().test_connection()[0]

        async def main() -> int:
            client = await VeniceHook().aget_client()
            return len((await client.list_video_models()).data)

        assert asyncio.run(main()) == 2
    finally:
        unregister_transports(EMULATOR_URL)
    assert len(recorder.requests) == 2
