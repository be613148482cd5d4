from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
from emulator_helpers import T2V, valid_body

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_venice.testing import VeniceEmulator


@pytest.fixture
def admin(venice_emulator: VeniceEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=venice_emulator.admin_url, transport=venice_emulator.sync_transport()) as http:
        yield http


def test_jobs_and_clock(admin: httpx.Client, client: httpx.Client, queue: Any) -> None:
    job = queue()
    listed = admin.get("/jobs").json()
    assert [(j["queue_id"], j["status"]) for j in listed["jobs"]] == [(job["queue_id"], "PROCESSING")]
    assert listed["balance_usd"] < 100

    clock = admin.post("/clock", json={"advance_s": 3600}).json()

    assert clock["offset_s"] == 3600
    assert admin.get("/jobs").json()["jobs"][0]["status"] == "COMPLETED"
    assert client.post("/video/retrieve", json={"model": T2V, "queue_id": job["queue_id"]}).status_code == 200


def test_calls_are_listed_and_admin_requests_are_not(admin: httpx.Client, client: httpx.Client) -> None:
    client.get("/models", params={"type": "video"})
    admin.get("/jobs")
    calls = admin.get("/calls").json()["calls"]
    assert [(c["method"], c["path"], c["query"], c["status"]) for c in calls] == [
        ("GET", "/api/v1/models", "type=video", 200)
    ]


def test_faults_config_and_reset(admin: httpx.Client, client: httpx.Client) -> None:
    fault = {"endpoint": "/video/quote", "status": 503, "retry_after": 2, "times": 2}
    assert admin.post("/faults", json={"faults": [fault]}).json()["faults"] == [fault]
    assert admin.post("/config", json={"transcriptions_retired": True, "balance_usd": 0.1}).status_code == 200
    body = {"model": T2V, "duration": "5s"}

    assert [client.post("/video/quote", json=body).status_code for _ in range(3)] == [503, 503, 200]
    assert client.post("/video/transcriptions", json={"url": "https://youtu.be/abcdefgh"}).status_code == 410
    assert client.post("/video/queue", json=valid_body()).status_code == 402

    admin.post("/reset", json={"job_seconds": 1})

    assert admin.get("/config").json()["config"]["job_seconds"] == 1
    assert admin.get("/faults").json()["faults"] == []
    assert admin.get("/calls").json()["calls"] == []
    assert client.post("/video/queue", json=valid_body()).status_code == 200


def test_faults_can_be_cleared(admin: httpx.Client, client: httpx.Client) -> None:
    admin.post("/faults", json={"faults": [{"endpoint": "/models", "status": 500}]})
    assert admin.delete("/faults").json() == {"faults": []}
    assert client.get("/models").status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/faults", {"faults": [{"endpoint": "/models"}]}),
        ("/faults", {"faults": [{"endpoint": "/models", "status": 500, "action": "truncate"}]}),
        ("/faults", {"faults": [{"endpoint": "/models", "action": "explode"}]}),
        ("/faults", {"nope": []}),
        ("/config", {"no_such_setting": 1}),
        ("/config", {"job_seconds": -1}),
        ("/clock", {"advance_s": -5}),
        ("/reset", {"balance_usd": "lots"}),
    ],
)
def test_invalid_admin_input_is_a_400(admin: httpx.Client, path: str, body: dict[str, Any]) -> None:
    response = admin.post(path, json=body)
    assert response.status_code == 400
    assert response.json()["error"]
