from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from emulator_helpers import KEY, T2V, VPS, valid_body

from airflow_provider_venice.testing import probe_mp4, run_emulator

if TYPE_CHECKING:
    from airflow_provider_venice.testing import EmulatorServer

pytestmark = pytest.mark.integration

BIG = 200 * 1024 * 1024


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_run_emulator_serves_on_a_free_loopback_port() -> None:
    with run_emulator(job_seconds=5, balance_usd=7) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert server.base_url.endswith("/api/v1")
        assert server.admin_url == server.base_url.removesuffix("/api/v1") + "/_emulator"
        assert server.state.balance_usd == 7
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"}) as http:
            job = http.post("/video/queue", json=valid_body(VPS)).json()
            server.advance(5)
            assert http.post("/video/retrieve", json={"model": VPS, "queue_id": job["queue_id"]}).json() == {
                "status": "COMPLETED"
            }
        assert job["download_url"].startswith(server.base_url.removesuffix("/api/v1") + "/_media/")
        assert httpx.get(job["download_url"]).content[4:8] == b"ftyp"
        assert [call["path"] for call in server.calls()][:2] == [
            "/api/v1/video/queue",
            "/api/v1/video/retrieve",
        ]
        server.reset()
        assert server.jobs() == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.base_url + "/models")


def test_large_video_streams_in_bounded_memory(venice_emulator_server: EmulatorServer) -> None:
    venice_emulator_server.configure(video_bytes=BIG, job_seconds=0)
    peak = baseline = _rss_bytes()
    received = 0
    head = b""
    with httpx.Client(
        base_url=venice_emulator_server.base_url, headers={"Authorization": f"Bearer {KEY}"}
    ) as http:
        job = http.post("/video/queue", json=valid_body()).json()
        body = {"model": T2V, "queue_id": job["queue_id"]}
        with http.stream("POST", "/video/retrieve", json=body) as response:
            assert int(response.headers["content-length"]) == BIG
            for index, chunk in enumerate(response.iter_raw(1024 * 1024)):
                head = head or chunk
                received += len(chunk)
                if index % 8 == 0:
                    peak = max(peak, _rss_bytes())
    assert received == BIG
    assert probe_mp4(head).duration_s == 5
    assert peak - baseline < 100 * 1024 * 1024


def test_cli_prints_its_url_first_and_stops_on_sigterm() -> None:
    command = [sys.executable, "-m", "airflow_provider_venice.testing", "--port", "0", "--job-seconds", "1"]
    command += ["--video-bytes", "600000", "--balance", "3", "--invalid-key", "nope"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(30, process.kill)  # a safety net only; never reached when it works
    timer.start()
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/api/v1")
        assert httpx.get(f"{base_url}/models", headers={"Authorization": "Bearer nope"}).status_code == 401
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}) as http:
            assert http.post("/video/queue", json=valid_body()).status_code == 200
            config = httpx.get(base_url.removesuffix("/api/v1") + "/_emulator/config").json()
        assert config["config"]["job_seconds"] == 1
        assert config["config"]["video_bytes"] == 600000
        assert config["config"]["retrieve_json_on_accept"] is False  # only with --retrieve-json-on-accept
        assert config["config"]["moov_at_end"] is False  # only with --moov-at-end
        assert config["balance_usd"] < 3

        process.send_signal(signal.SIGTERM)
        assert process.wait() == 0
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_pytest_plugin_fixtures_are_fresh(venice_emulator_server: EmulatorServer) -> None:
    assert venice_emulator_server.jobs() == []
    assert venice_emulator_server.emulator.state is venice_emulator_server.state
