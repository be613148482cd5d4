"""Fault-matrix cases that need a real socket: read timeouts, resets and a body cut mid-stream.

The emulator is served by uvicorn on a free loopback port in this process; the hook reaches it through
httpx's real HTTP transport (wrapped only to watch release calls), S3 is moto in-process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from reliability_support import (
    BUCKET,
    MIB,
    QUEUE,
    RETRIEVE,
    S3,
    T2V,
    FakeStore,
    Stack,
    Venice,
    WrappedTransport,
    make_context,
)

from airflow_provider_venice.client import forget_catalogues
from airflow_provider_venice.hooks.venice import register_transports, unregister_transports
from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator
from airflow_provider_venice.testing import run_emulator
from airflow_provider_venice.testing.processes import free_port
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException

pytestmark = pytest.mark.integration

KEY = "videos/socket.mp4"


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch, s3: S3) -> Iterator[Stack]:
    """The emulator on 127.0.0.1, a 1 s client read timeout, moto S3."""
    with run_emulator("127.0.0.1", 0, job_seconds=0, video_bytes=256 * 1024) as server:
        transport = WrappedTransport(httpx.HTTPTransport())
        forget_catalogues()
        register_transports(server.base_url, transport)
        venice = Venice(server, transport, monkeypatch)  # type: ignore[arg-type]
        venice.connect(max_retries=3, timeout_s=1.0)
        stack = Stack(venice, s3)
        stack.watch_releases()
        yield stack
        unregister_transports(server.base_url)
        forget_catalogues()


def generate(**fields: Any) -> VeniceGenerateVideoOperator:
    return VeniceGenerateVideoOperator(
        task_id="generate",
        model=T2V,
        prompt="a red fox running through fresh snow",
        duration="5s",
        s3_bucket=BUCKET,
        s3_key=KEY,
        window_interval_s=0.2,
        deferrable=False,
        **fields,
    )


def wait_for_calls(stack: Stack, path: str, count: int) -> None:
    """The server logs a call when it has finished with it; wait (bounded) until it has."""
    for _ in range(500):
        if len(stack.venice.calls(path)) >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"the emulator never logged {count} calls to {path}")


def test_read_timeout_on_queue_is_an_unknown_outcome_and_never_resent(wire: Stack) -> None:
    wire.venice.emu.add_faults({"endpoint": "/video/queue", "latency_s": 2.5})
    store = FakeStore()
    with pytest.raises(AirflowFailException) as info:
        generate().execute(make_context(store))
    assert "outcome is unknown" in str(info.value)
    assert "ReadTimeout" in str(info.value)
    wait_for_calls(wire, QUEUE, 1)
    assert len(wire.venice.queue_calls()) == 1
    # The emulator's latency comes before it reads the body, so it drops the hung-up request; real
    # Venice may well have created (and charged) the job, which is why nothing is resent.
    assert len(wire.venice.jobs()) <= 1
    with pytest.raises(AirflowFailException, match="Not queueing again"):
        generate().execute(make_context(store))
    assert len(wire.venice.queue_calls()) == 1
    wire.assert_not_released()


def test_read_timeout_on_retrieve_is_retried(wire: Stack) -> None:
    wire.venice.emu.add_faults({"endpoint": "/video/retrieve", "latency_s": 2.5, "times": 2})
    result = generate().execute(make_context())
    wire.assert_delivered_once(result, KEY)


@pytest.mark.parametrize("action", ["drop_before", "drop_after"])
def test_tcp_reset_on_queue_is_an_unknown_outcome(wire: Stack, action: str) -> None:
    wire.venice.emu.add_faults({"endpoint": "/video/queue", "action": action})
    store = FakeStore()
    with pytest.raises(AirflowFailException, match="outcome is unknown"):
        generate().execute(make_context(store))
    wait_for_calls(wire, QUEUE, 1)
    assert len(wire.venice.queue_calls()) == 1
    assert len(wire.venice.jobs()) == (1 if action == "drop_after" else 0)
    wire.assert_not_released()


def test_retrieve_body_cut_mid_stream_is_never_delivered_and_the_retry_is(wire: Stack) -> None:
    """A 20 MiB video cut after half its bytes, while parts are already uploading."""
    wire.venice.emu.configure(video_bytes=20 * MIB)
    seen: list[int] = []

    def cut_the_download(request: httpx.Request, send: Any) -> None:
        if request.url.path == RETRIEVE:
            seen.append(1)
            if len(seen) == 2:  # the first retrieve reads the status; the second streams the video
                wire.venice.emu.add_faults({"endpoint": "/video/retrieve", "action": "truncate"})

    wire.venice.transport.hooks.append(cut_the_download)
    store = FakeStore()
    with pytest.raises(AirflowException) as info:
        generate().execute(make_context(store))
    assert not isinstance(info.value, AirflowFailException)  # transient: the task retries
    assert "cut short" in str(info.value)
    queue_id = store.data["venice_job"]["job"]["queue_id"]
    wire.assert_kept_for_later(info.value, queue_id)
    assert wire.s3.objects() == []
    wire.venice.transport.hooks.remove(cut_the_download)
    result = generate().execute(make_context(store))
    assert result["size_bytes"] >= 20 * MIB
    wire.assert_delivered_once(result, KEY)


def test_venice_unreachable_fails_transiently_and_queues_nothing(
    monkeypatch: pytest.MonkeyPatch, s3: S3
) -> None:
    """Nothing listens on the port: the connection is refused, which provably sent nothing."""
    base_url = f"http://127.0.0.1:{free_port()}/api/v1"
    from reliability_support import connection

    monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", connection(base_url, max_retries=1))
    forget_catalogues()
    store = FakeStore()
    with pytest.raises(AirflowException) as info:
        generate().execute(make_context(store))
    assert not isinstance(info.value, AirflowFailException)
    assert "connection failed" in str(info.value)
    assert store.data == {}  # nothing to resume: the next try starts afresh
    assert s3.objects() == []
