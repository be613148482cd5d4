"""The ``retrieve_json_on_accept`` switch and the call log's ``accept`` field."""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from emulator_helpers import KEY, T2V, VPS, valid_body

from airflow_provider_venice.testing import VeniceEmulator, probe_mp4, run_emulator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_venice.testing.emulator import EmulatorControls

NO_HEADER = None
# (Accept header sent, whether it names application/json)
ACCEPTS = [
    (NO_HEADER, False),
    ("video/mp4", False),
    ("*/*", False),
    ("application/*", False),
    ("application/json;q=0", False),
    ("application/json", True),
    ("video/mp4, application/json", True),
    ("application/json;q=0.9", True),
    ("Application/JSON; charset=utf-8", True),
]


def _retrieve(http: httpx.Client, job: dict[str, Any], accept: str | None, **extra: Any) -> httpx.Response:
    """Retrieve with exactly this Accept header (``None``: none at all, not httpx's default ``*/*``)."""
    body = {"model": job["model"], "queue_id": job["queue_id"], **extra}
    request = http.build_request("POST", "/video/retrieve", json=body)
    del request.headers["accept"]
    if accept is not None:
        request.headers["accept"] = accept
    return http.send(request)


@pytest.fixture(params=["asgi", pytest.param("socket", marks=pytest.mark.integration)])
def served(request: pytest.FixtureRequest) -> Iterator[Callable[..., tuple[EmulatorControls, httpx.Client]]]:
    """``start(**config)``: an emulator in-process or on a socket, and a client for it."""
    with ExitStack() as stack:

        def start(**config: Any) -> tuple[EmulatorControls, httpx.Client]:
            if request.param == "asgi":
                emulator = VeniceEmulator(**config)
                return emulator, stack.enter_context(emulator.client(api_key=KEY))
            server = stack.enter_context(run_emulator(**config))
            return server, stack.enter_context(httpx.Client(base_url=server.base_url, headers=_auth()))

        yield start


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def _finished_job(controls: EmulatorControls, http: httpx.Client, model: str = T2V) -> dict[str, Any]:
    job = dict(http.post("/video/queue", json=valid_body(model)).json())
    controls.advance(3600)
    return job


def _assert_video(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert probe_mp4(response.content).duration_s == 5


@pytest.mark.parametrize(("accept", "names_json"), ACCEPTS)
@pytest.mark.parametrize("json_on_accept", [False, True], ids=["default", "json-on-accept"])
def test_retrieve_of_a_finished_job_per_accept_header(
    served: Any, json_on_accept: bool, accept: str | None, names_json: bool
) -> None:
    controls, http = served(retrieve_json_on_accept=json_on_accept)
    job = _finished_job(controls, http)

    response = _retrieve(http, job, accept)

    assert controls.calls()[-1]["accept"] == accept
    if not (json_on_accept and names_json):
        _assert_video(response)
        return
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    [snapshot] = controls.jobs()
    assert response.json() == {
        "status": "COMPLETED",
        "average_execution_time": response.json()["average_execution_time"],
        "execution_duration": round((snapshot["finishes_at"] - snapshot["created_at"]) * 1000),
    }
    assert response.json()["average_execution_time"] > 0
    assert snapshot["media_deleted"] is False
    assert snapshot["status"] == "COMPLETED"
    _assert_video(_retrieve(http, job, "video/mp4"))


def test_json_answer_keeps_the_media_even_with_delete_media_on_completion(served: Any) -> None:
    controls, http = served(retrieve_json_on_accept=True)
    job = _finished_job(controls, http)

    answer = _retrieve(http, job, "application/json", delete_media_on_completion=True)

    assert answer.json()["status"] == "COMPLETED"
    assert controls.jobs()[0]["media_deleted"] is False
    _assert_video(_retrieve(http, job, "video/mp4"))
    assert http.post("/video/complete", json={"model": T2V, "queue_id": job["queue_id"]}).status_code == 200
    assert _retrieve(http, job, "application/json").status_code == 404


def test_running_vps_and_refused_jobs_are_unchanged_by_the_switch(served: Any) -> None:
    controls, http = served(retrieve_json_on_accept=True, job_seconds=60)
    running = dict(http.post("/video/queue", json=valid_body()).json())
    vps = dict(http.post("/video/queue", json=valid_body(VPS)).json())
    refused = dict(http.post("/video/queue", json=valid_body(prompt="a refusedbyprovider cat")).json())

    processing = _retrieve(http, running, "application/json")
    assert processing.headers["content-type"] == "application/json"
    assert processing.json()["status"] == "PROCESSING"
    controls.advance(60)
    for accept in ("application/json", "video/mp4", NO_HEADER):
        assert _retrieve(http, vps, accept).json() == {"status": "COMPLETED"}
        assert _retrieve(http, refused, accept).status_code == 422


def test_switch_via_configure_admin_config_and_reset() -> None:
    emulator = VeniceEmulator()
    with emulator.client(api_key=KEY) as http:
        job = _finished_job(emulator, http)
        assert _retrieve(http, job, "application/json").headers["content-type"] == "video/mp4"

        emulator.configure(retrieve_json_on_accept=True)
        assert _retrieve(http, job, "application/json").json()["status"] == "COMPLETED"

        admin = http.post(f"{emulator.admin_url}/config", json={"retrieve_json_on_accept": False}).json()
        assert admin["config"]["retrieve_json_on_accept"] is False
        assert _retrieve(http, job, "application/json").headers["content-type"] == "video/mp4"

        reset = http.post(f"{emulator.admin_url}/reset", json={"retrieve_json_on_accept": True}).json()
        assert reset["config"]["retrieve_json_on_accept"] is True
        job = _finished_job(emulator, http)
        assert _retrieve(http, job, "application/json").json()["status"] == "COMPLETED"

        emulator.reset()
        assert emulator.state.config.retrieve_json_on_accept is False


def test_pytest_fixture_configure_reaches_the_socket_server(venice_emulator_server: Any) -> None:
    venice_emulator_server.configure(retrieve_json_on_accept=True)
    with httpx.Client(base_url=venice_emulator_server.base_url, headers=_auth()) as http:
        job = _finished_job(venice_emulator_server, http)
        assert _retrieve(http, job, "video/mp4, application/json").json()["status"] == "COMPLETED"


def test_call_log_records_the_accept_header_of_every_call(venice_emulator: VeniceEmulator) -> None:
    with venice_emulator.client(api_key=KEY) as http:
        http.get("/models")  # httpx's default Accept
        http.get("/models", headers={"Accept": "application/json"})
        job = _finished_job(venice_emulator, http, VPS)
        _retrieve(http, job, NO_HEADER)
        _retrieve(http, job, "video/mp4;q=1, application/json;q=0.5")
        http.get(job["download_url"], headers={"Accept": "video/mp4"})

    assert [call["accept"] for call in venice_emulator.calls()] == [
        "*/*",
        "application/json",
        "*/*",
        None,
        "video/mp4;q=1, application/json;q=0.5",
        "video/mp4",
    ]


def test_repeated_accept_headers_are_all_read(venice_emulator: VeniceEmulator) -> None:
    venice_emulator.configure(retrieve_json_on_accept=True)
    with venice_emulator.client(api_key=KEY) as http:
        job = _finished_job(venice_emulator, http)
        body = {"model": T2V, "queue_id": job["queue_id"]}
        headers = httpx.Headers([("accept", "video/mp4"), ("accept", "application/json")])
        response = http.post("/video/retrieve", json=body, headers=headers)

    assert response.json()["status"] == "COMPLETED"
    assert venice_emulator.calls()[-1]["accept"] == "video/mp4, application/json"
