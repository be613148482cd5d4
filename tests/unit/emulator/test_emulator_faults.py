from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
from emulator_helpers import KEY, T2V, VPS, valid_body

from airflow_provider_venice.testing import VeniceEmulator

if TYPE_CHECKING:
    from airflow_provider_venice.testing import EmulatorServer

QUOTE = {"model": T2V, "duration": "5s"}


def test_status_fault_with_retry_after(client: httpx.Client, venice_emulator: VeniceEmulator) -> None:
    venice_emulator.add_faults({"endpoint": "/video/quote", "status": 429, "retry_after": 2, "times": 2})

    responses = [client.post("/video/quote", json=QUOTE) for _ in range(3)]

    assert [r.status_code for r in responses] == [429, 429, 200]
    assert responses[0].headers["retry-after"] == "2"
    assert responses[0].json() == {"error": "Rate limit exceeded. Please try again later."}
    assert [call.get("fault") for call in venice_emulator.calls()] == ["status", "status", None]


def test_status_fault_with_custom_body(client: httpx.Client, venice_emulator: VeniceEmulator) -> None:
    venice_emulator.add_faults(
        {"endpoint": "/video/queue", "status": 500, "body": {"error": "Inference failed", "code": "X"}},
        {"endpoint": "/video/queue", "status": 503, "body": "upstream down"},
    )
    assert client.post("/video/queue", json=valid_body()).json() == {"error": "Inference failed", "code": "X"}
    assert client.post("/video/queue", json=valid_body()).text == "upstream down"
    assert venice_emulator.jobs() == []


def test_faults_match_their_endpoint_and_method_only(
    client: httpx.Client, venice_emulator: VeniceEmulator
) -> None:
    venice_emulator.add_faults(
        {"endpoint": "/video/retrieve", "status": 503},
        {"endpoint": "/api/v1/models", "method": "POST", "status": 500},
    )
    assert client.post("/video/quote", json=QUOTE).status_code == 200
    assert client.get("/models").status_code == 200
    assert client.post("/video/retrieve", json={}).status_code == 503
    assert client.post("/models").status_code == 500


def test_probability_faults_are_reproducible_with_the_seed() -> None:
    def pattern(seed: int) -> list[int]:
        emulator = VeniceEmulator(seed=seed)
        emulator.add_faults({"endpoint": "/models", "status": 503, "probability": 0.5})
        with emulator.client() as http:
            return [http.get("/models").status_code for _ in range(40)]

    first = pattern(7)
    assert first == pattern(7)
    assert {200, 503} == set(first)
    assert first != pattern(8)


def test_configuring_the_seed_restarts_the_draws(
    venice_emulator: VeniceEmulator, client: httpx.Client
) -> None:
    venice_emulator.add_faults({"endpoint": "/models", "status": 503, "probability": 0.5})
    venice_emulator.configure(seed=3)
    first = [client.get("/models").status_code for _ in range(20)]
    venice_emulator.configure(seed=3)
    assert [client.get("/models").status_code for _ in range(20)] == first


def test_probability_with_times_stops_after_times(
    venice_emulator: VeniceEmulator, client: httpx.Client
) -> None:
    venice_emulator.add_faults({"endpoint": "/models", "status": 503, "probability": 1.0, "times": 2})
    assert [client.get("/models").status_code for _ in range(4)] == [503, 503, 200, 200]


def test_drop_before_in_process(client: httpx.Client, venice_emulator: VeniceEmulator) -> None:
    venice_emulator.add_faults({"endpoint": "/video/queue", "action": "drop_before"})
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/video/queue", json=valid_body())
    assert venice_emulator.jobs() == []
    assert venice_emulator.state.balance_usd == 100.0


def test_drop_after_in_process(client: httpx.Client, venice_emulator: VeniceEmulator) -> None:
    venice_emulator.add_faults({"endpoint": "/video/queue", "action": "drop_after"})
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/video/queue", json=valid_body())
    assert len(venice_emulator.jobs()) == 1
    assert venice_emulator.state.balance_usd < 100.0


@pytest.mark.anyio
async def test_truncate_in_process_is_a_transport_error(venice_emulator: VeniceEmulator) -> None:
    venice_emulator.add_faults({"endpoint": "/models", "action": "truncate"})
    async with venice_emulator.async_client() as http:
        with pytest.raises(httpx.TransportError):
            await http.get("/models")
        assert (await http.get("/models")).status_code == 200


# --- over a real socket --------------------------------------------------------------------


def _read_into(response: httpx.Response, received: bytearray) -> None:
    for chunk in response.iter_raw():
        received += chunk


def _client(server: EmulatorServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"})


@pytest.mark.integration
def test_socket_429_with_retry_after(venice_emulator_server: EmulatorServer) -> None:
    venice_emulator_server.add_faults({"endpoint": "/video/retrieve", "status": 429, "retry_after": 3})
    with _client(venice_emulator_server) as http:
        response = http.post("/video/retrieve", json={"model": T2V, "queue_id": "x"})
        assert response.status_code == 429
        assert response.headers["retry-after"] == "3"
        assert http.post("/video/retrieve", json={"model": T2V, "queue_id": "x"}).status_code == 400


@pytest.mark.integration
def test_socket_drop_before_creates_no_job(venice_emulator_server: EmulatorServer) -> None:
    venice_emulator_server.add_faults({"endpoint": "/video/queue", "action": "drop_before"})
    with _client(venice_emulator_server) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            http.post("/video/queue", json=valid_body())
        assert http.get("/models").status_code == 200
    assert venice_emulator_server.jobs() == []
    assert venice_emulator_server.state.balance_usd == 100.0
    assert venice_emulator_server.calls()[0]["fault"] == "drop_before"


@pytest.mark.integration
def test_socket_drop_after_creates_the_job(venice_emulator_server: EmulatorServer) -> None:
    venice_emulator_server.add_faults({"endpoint": "/video/queue", "action": "drop_after"})
    with _client(venice_emulator_server) as http, pytest.raises(httpx.RemoteProtocolError):
        http.post("/video/queue", json=valid_body(VPS))
    jobs = venice_emulator_server.jobs()
    assert len(jobs) == 1
    assert venice_emulator_server.state.balance_usd == pytest.approx(100.0 - jobs[0]["quote_usd"])
    assert venice_emulator_server.calls()[0]["status"] == 200


@pytest.mark.integration
def test_socket_truncate_cuts_the_video_short(venice_emulator_server: EmulatorServer) -> None:
    with _client(venice_emulator_server) as http:
        job = http.post("/video/queue", json=valid_body()).json()
        venice_emulator_server.advance(3600)
        venice_emulator_server.add_faults({"endpoint": "/video/retrieve", "action": "truncate"})
        body = {"model": T2V, "queue_id": job["queue_id"], "delete_media_on_completion": True}
        received = bytearray()
        with http.stream("POST", "/video/retrieve", json=body) as response:
            expected = int(response.headers["content-length"])
            with pytest.raises(httpx.RemoteProtocolError):
                _read_into(response, received)
        assert 0 < len(received) < expected
        assert received[4:8] == b"ftyp"
        full = http.post("/video/retrieve", json={"model": T2V, "queue_id": job["queue_id"]})
        assert len(full.content) == expected  # not deleted: the cut delivery was not successful


@pytest.mark.integration
def test_socket_latency_still_answers(venice_emulator_server: EmulatorServer) -> None:
    venice_emulator_server.add_faults({"endpoint": "/models", "latency_s": 0.05})
    with _client(venice_emulator_server) as http:
        assert http.get("/models").status_code == 200
    assert venice_emulator_server.calls()[0]["fault"] == "latency"


@pytest.mark.integration
def test_socket_admin_endpoints(venice_emulator_server: EmulatorServer) -> None:
    fault: dict[str, Any] = {"endpoint": "/models", "status": 504}
    with httpx.Client(base_url=venice_emulator_server.admin_url) as admin:
        assert admin.post("/faults", json={"faults": [fault]}).status_code == 200
        with _client(venice_emulator_server) as http:
            assert http.get("/models").status_code == 504
        assert admin.get("/calls").json()["calls"][0]["status"] == 504
