from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
from emulator_helpers import T2V, UPSCALE, VPS, valid_body

from airflow_provider_venice.testing import probe_mp4

if TYPE_CHECKING:
    from airflow_provider_venice.testing import VeniceEmulator

DAY = 24 * 3600


def _retrieve(client: httpx.Client, job: dict[str, Any], **extra: Any) -> httpx.Response:
    return client.post("/video/retrieve", json={"model": job["model"], "queue_id": job["queue_id"], **extra})


def test_running_job_reports_processing_with_both_timings(
    client: httpx.Client, venice_emulator: VeniceEmulator, queue: Any
) -> None:
    job = queue()
    venice_emulator.advance(10)

    response = _retrieve(client, job)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "PROCESSING"
    assert body["execution_duration"] >= 10_000
    assert body["average_execution_time"] > 0


def test_average_execution_time_is_deliberately_off(
    client: httpx.Client, venice_emulator: VeniceEmulator, queue: Any
) -> None:
    venice_emulator.configure(job_seconds=100)
    averages = {
        model: _retrieve(client, queue(model)).json()["average_execution_time"] for model in (T2V, VPS)
    }
    assert averages[T2V] != 100_000
    assert averages[VPS] != 100_000
    assert averages[T2V] != averages[VPS]


def test_job_completes_when_the_clock_is_advanced(
    client: httpx.Client, venice_emulator: VeniceEmulator, queue: Any
) -> None:
    venice_emulator.configure(job_seconds=600)
    job = queue(aspect_ratio="9:16", duration="10s")
    venice_emulator.advance(590)
    assert _retrieve(client, job).json()["status"] == "PROCESSING"

    venice_emulator.advance(20)
    response = _retrieve(client, job)

    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.content[4:8] == b"ftyp"
    info = probe_mp4(response.content)
    assert (info.duration_s, info.width, info.height) == (10, 90, 160)


def test_accept_json_header_is_ignored(
    client: httpx.Client, venice_emulator: VeniceEmulator, queue: Any
) -> None:
    job = queue()
    venice_emulator.advance(3600)
    response = client.post(
        "/video/retrieve",
        json={"model": T2V, "queue_id": job["queue_id"]},
        headers={"Accept": "application/json"},
    )
    assert response.headers["content-type"] == "video/mp4"


def test_video_bytes_pads_the_file(client: httpx.Client, venice_emulator: VeniceEmulator, queue: Any) -> None:
    venice_emulator.configure(video_bytes=3_000_000)
    job = queue()
    venice_emulator.advance(3600)
    response = _retrieve(client, job)
    assert len(response.content) == 3_000_000
    assert probe_mp4(response.content).duration_s == 5


def test_retrieve_can_be_repeated_until_complete(
    client: httpx.Client, venice_emulator: VeniceEmulator, queue: Any
) -> None:
    job = queue()
    venice_emulator.advance(3600)
    assert _retrieve(client, job).headers["content-type"] == "video/mp4"
    assert _retrieve(client, job).headers["content-type"] == "video/mp4"

    assert client.post("/video/complete", json={"model": T2V, "queue_id": job["queue_id"]}).json() == {
        "success": True
    }
    gone = _retrieve(client, job)
    assert gone.status_code == 404
    assert "error" in gone.json()
    assert client.post("/video/complete", json={"model": T2V, "queue_id": job["queue_id"]}).status_code == 404


def test_delete_media_on_completion_deletes_after_delivery(
    client: httpx.Client, venice_emulator: VeniceEmulator, queue: Any
) -> None:
    job = queue()
    venice_emulator.advance(3600)
    assert _retrieve(client, job, delete_media_on_completion=False).status_code == 200
    assert _retrieve(client, job, delete_media_on_completion=True).headers["content-type"] == "video/mp4"
    assert _retrieve(client, job).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"model": T2V, "queue_id": "00000000-0000-0000-0000-000000000000"},
        {"model": UPSCALE, "queue_id": None},
    ],
)
def test_unknown_queue_id_is_a_400_request_id_invalid(
    client: httpx.Client, queue: Any, body: dict[str, Any]
) -> None:
    body["queue_id"] = body["queue_id"] or queue()["queue_id"]  # a real id under the wrong model
    response = client.post("/video/retrieve", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": "Request ID is invalid"}


def test_retrieve_without_queue_id_names_the_field(client: httpx.Client) -> None:
    response = client.post("/video/retrieve", json={"model": T2V})
    assert response.status_code == 400
    assert "queue_id" in response.json()["details"]


def test_vps_job_completes_as_json_and_downloads_without_auth(
    client: httpx.Client, venice_emulator: VeniceEmulator, queue: Any
) -> None:
    job = queue(VPS)
    url = job["download_url"]
    assert url.startswith("https://venice.test/_media/")
    assert url.endswith(f"/{job['queue_id']}.mp4")
    with httpx.Client(transport=venice_emulator.sync_transport()) as anonymous:
        assert anonymous.get(url).status_code == 404  # not ready yet
        venice_emulator.advance(3600)

        assert _retrieve(client, job).json() == {"status": "COMPLETED"}
        video = anonymous.get(url)

    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    info = probe_mp4(video.content)
    assert (info.duration_s, info.width, info.height) == (6, 90, 160)


def test_vps_download_url_expires_after_24_emulated_hours(
    venice_emulator: VeniceEmulator, queue: Any
) -> None:
    job = queue(VPS)
    with httpx.Client(transport=venice_emulator.sync_transport()) as anonymous:
        venice_emulator.advance(DAY - 60)
        assert anonymous.get(job["download_url"]).status_code == 200
        venice_emulator.advance(61)
        expired = anonymous.get(job["download_url"])

    assert expired.status_code == 403
    assert "expired" in expired.json()["error"].lower()


def test_vps_delete_removes_the_file(
    client: httpx.Client, venice_emulator: VeniceEmulator, queue: Any
) -> None:
    job = queue(VPS)
    venice_emulator.advance(3600)
    with httpx.Client(transport=venice_emulator.sync_transport()) as anonymous:
        assert anonymous.delete(job["download_url"]).status_code == 204
        assert anonymous.get(job["download_url"]).status_code == 404
        assert anonymous.delete(job["download_url"]).status_code == 404
    assert _retrieve(client, job).status_code == 404


def test_wrong_download_token_is_a_404(venice_emulator: VeniceEmulator, queue: Any) -> None:
    job = queue(VPS)
    venice_emulator.advance(3600)
    forged = job["download_url"].replace("/_media/", "/_media/x")
    with httpx.Client(transport=venice_emulator.sync_transport()) as anonymous:
        assert anonymous.get(forged).status_code == 404


def test_vps_complete_answers_request_id_is_invalid(
    client: httpx.Client, venice_emulator: VeniceEmulator, queue: Any
) -> None:
    job = queue(VPS)
    venice_emulator.advance(3600)
    response = client.post("/video/complete", json={"model": VPS, "queue_id": job["queue_id"]})
    assert response.status_code == 400
    assert response.json() == {"error": "Request ID is invalid"}


def test_queue_reserves_the_quote_until_the_balance_runs_out(
    client: httpx.Client, venice_emulator: VeniceEmulator
) -> None:
    venice_emulator.configure(balance_usd=1.0)
    quote = client.post("/video/quote", json={"model": T2V, "duration": "5s", "resolution": "720p"}).json()[
        "quote"
    ]
    statuses = [client.post("/video/queue", json=valid_body()).status_code for _ in range(3)]

    assert statuses == [200, 200, 402]
    assert venice_emulator.state.balance_usd == pytest.approx(1.0 - 2 * quote)
    response = client.post("/video/queue", json=valid_body())
    assert response.status_code == 402
    assert response.json()["error"].startswith("Insufficient USD or Diem balance")
    assert len(venice_emulator.jobs()) == 2


def test_banned_word_is_a_422_with_a_suggested_prompt(
    client: httpx.Client, venice_emulator: VeniceEmulator
) -> None:
    response = client.post("/video/queue", json=valid_body(prompt="A Forbidden dance in Venice"))

    assert response.status_code == 422
    assert response.json()["suggested_prompt"] == "A dance in Venice"
    assert "error" in response.json()
    assert venice_emulator.jobs() == []
    assert venice_emulator.state.balance_usd == 100.0


def test_provider_refusal_is_a_422_on_retrieve_with_a_refund(
    client: httpx.Client, venice_emulator: VeniceEmulator, queue: Any
) -> None:
    job = queue(prompt="something refusedbyprovider here")
    assert venice_emulator.state.balance_usd < 100.0
    assert _retrieve(client, job).json()["status"] == "PROCESSING"
    venice_emulator.advance(3600)

    response = _retrieve(client, job)

    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["type"], error["credits_refunded"]) == ("provider_content_policy", True)
    assert error["message"]
    assert venice_emulator.state.balance_usd == 100.0
    assert _retrieve(client, job).status_code == 422
    assert venice_emulator.state.balance_usd == 100.0


def test_configurable_words(client: httpx.Client, venice_emulator: VeniceEmulator) -> None:
    venice_emulator.configure(banned_word="gondola")
    assert client.post("/video/queue", json=valid_body(prompt="A gondola")).status_code == 422
    assert client.post("/video/queue", json=valid_body(prompt="A forbidden thing")).status_code == 200
