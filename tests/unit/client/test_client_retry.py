"""Retries: Retry-After, backoff, bounds, and the rule that a paid /video/queue is never resent blindly.

Delays are recorded by the injected ``sleep``; nothing here waits or measures time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from hypothesis import given, strategies as st

from airflow_provider_venice.client import (
    NO_RETRY,
    BadRequestError,
    CapacityError,
    GatewayTimeoutError,
    QueueOutcomeUnknownError,
    QueueVideoRequest,
    QuoteVideoRequest,
    RateLimitError,
    RetryPolicy,
    ServerError,
    VeniceTimeoutError,
    VeniceTransportError,
)
from airflow_provider_venice.client._retry import parse_retry_after

MODEL = "wan-2-7-text-to-video"
PROCESSING = {"status": "PROCESSING", "average_execution_time": 60000, "execution_duration": 1000}
QUEUED = {"model": MODEL, "queue_id": "q-1"}
QUEUE_REQUEST = QueueVideoRequest(model=MODEL, prompt="a cat", duration="5s")
DOWNLOAD_URL = "https://media.venice-cdn.test/files/q-1.mp4?sig=abc"

# Idempotent calls: (client method, args, JSON answer on success)
IDEMPOTENT: dict[str, tuple[str, tuple[Any, ...], Any]] = {
    "models": ("list_video_models", (), {"data": []}),
    "quote": ("quote", (QuoteVideoRequest(model=MODEL, duration="5s"),), {"quote": 0.5}),
    "retrieve": ("retrieve_status", (MODEL, "q-1"), PROCESSING),
    "complete": ("complete", (MODEL, "q-1"), {"success": True}),
    "transcriptions": ("transcribe", ("https://youtu.be/abc",), {"transcript": "hi"}),
}


def test_429_honours_retry_after_seconds(venice: Any, fake: Any) -> None:
    h = venice(
        fake.answer(429, json={"error": "Rate limit exceeded"}, headers={"Retry-After": "7"}),
        fake.answer(200, json={"quote": 0.35}),
    )
    assert h.call("quote", QuoteVideoRequest(model=MODEL, duration="5s")) == pytest.approx(0.35)
    assert len(h.requests) == 2
    (delay,) = h.sleeps
    assert 7.0 <= delay <= 8.0  # the header's value plus a little jitter


def test_429_honours_retry_after_http_date(venice: Any, fake: Any) -> None:
    when = datetime.now(UTC) + timedelta(seconds=20)
    h = venice(
        fake.answer(
            429, json={"error": "slow down"}, headers={"Retry-After": format_datetime(when, usegmt=True)}
        ),
        fake.answer(200, json=PROCESSING),
    )
    assert h.call("retrieve_status", MODEL, "q-1").state == "processing"
    (delay,) = h.sleeps
    assert 15.0 <= delay <= 22.0  # HTTP dates have one-second resolution


def test_429_honours_ratelimit_reset_header(venice: Any, fake: Any) -> None:
    reset_ms = int((time.time() + 9) * 1000)
    h = venice(
        fake.answer(429, json={"error": "slow down"}, headers={"x-ratelimit-reset-requests": str(reset_ms)}),
        fake.answer(200, json={"data": []}),
    )
    h.call("list_video_models")
    (delay,) = h.sleeps
    assert 5.0 <= delay <= 10.5


def test_429_without_hint_backs_off(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(429, json={"error": "slow down"}), fake.answer(200, json={"data": []}))
    h.call("list_video_models")
    (delay,) = h.sleeps
    assert 0.375 <= delay <= 0.625  # first backoff step 0.5 s +-25 %


def test_503_on_retrieve_is_retried_with_growing_backoff(venice: Any, fake: Any) -> None:
    h = venice(
        fake.answer(503, json={"error": "Model at capacity"}),
        fake.answer(503, json={"error": "Model at capacity"}),
        fake.answer(503, json={"error": "Model at capacity"}),
        fake.answer(200, json=PROCESSING),
    )
    assert h.call("retrieve_status", MODEL, "q-1").state == "processing"
    assert len(h.requests) == 4
    assert len(h.sleeps) == 3
    for delay, nominal in zip(h.sleeps, [0.5, 1.0, 2.0], strict=True):
        assert 0.75 * nominal <= delay <= 1.25 * nominal


def test_retries_bounded_by_max_retries(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(503, json={"error": "Model at capacity"}), retry=RetryPolicy(max_retries=3))
    with pytest.raises(CapacityError, match="Model at capacity"):
        h.call("retrieve_status", MODEL, "q-1")
    assert len(h.requests) == 4
    assert len(h.sleeps) == 3


def test_no_retry_policy_makes_one_request(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(500, json={"error": "Inference failed"}), retry=NO_RETRY)
    with pytest.raises(ServerError):
        h.call("list_video_models")
    assert len(h.requests) == 1
    assert h.sleeps == []


def test_retries_bounded_by_total_time(venice: Any, fake: Any) -> None:
    h = venice(
        fake.answer(429, json={"error": "slow down"}, headers={"Retry-After": "40"}),
        retry=RetryPolicy(max_retries=10, max_total_s=100),
    )
    with pytest.raises(RateLimitError):
        h.call("list_video_models")
    # 40 + 40 fit in 100 s; a third wait would not.
    assert len(h.sleeps) == 2
    assert len(h.requests) == 3
    assert sum(h.sleeps) <= 100


def test_retry_after_beyond_total_time_fails_at_once(venice: Any, fake: Any) -> None:
    h = venice(
        fake.answer(429, json={"error": "slow down"}, headers={"Retry-After": "600"}),
        retry=RetryPolicy(max_total_s=120),
    )
    with pytest.raises(RateLimitError) as info:
        h.call("list_video_models")
    assert info.value.retry_after == 600
    assert h.sleeps == []
    assert len(h.requests) == 1


def test_backoff_is_capped(venice: Any, fake: Any) -> None:
    h = venice(
        fake.answer(500, json={"error": "Inference failed"}),
        retry=RetryPolicy(max_retries=8, base_delay_s=1, max_delay_s=3, max_total_s=1000),
    )
    with pytest.raises(ServerError):
        h.call("complete", MODEL, "q-1")
    assert len(h.sleeps) == 8
    assert max(h.sleeps) <= 3 * 1.25


@pytest.mark.parametrize(
    "exc_type", [httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.RemoteProtocolError]
)
@pytest.mark.parametrize("endpoint", sorted(IDEMPOTENT))
def test_connection_errors_retried_for_idempotent_calls(
    venice: Any, fake: Any, endpoint: str, exc_type: type[httpx.TransportError]
) -> None:
    method, args, ok = IDEMPOTENT[endpoint]
    h = venice(fake.fail(exc_type), fake.fail(exc_type), fake.answer(200, json=ok))
    h.call(method, *args)
    assert len(h.requests) == 3
    assert len(h.sleeps) == 2


@pytest.mark.parametrize("status", [500, 504])
def test_server_errors_retried_for_idempotent_calls(venice: Any, fake: Any, status: int) -> None:
    h = venice(fake.answer(status, json={"error": "oops"}), fake.answer(200, json={"success": True}))
    assert h.call("complete", MODEL, "q-1").success
    assert len(h.requests) == 2


def test_exhausted_connection_failures_raise_transport_error(venice: Any, fake: Any) -> None:
    h = venice(fake.fail(httpx.ConnectError, "Connection refused"), retry=RetryPolicy(max_retries=2))
    with pytest.raises(VeniceTransportError, match=r"/models: connection failed: ConnectError") as info:
        h.call("list_video_models")
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(h.requests) == 3


def test_exhausted_timeouts_raise_timeout_error(venice: Any, fake: Any) -> None:
    h = venice(fake.fail(httpx.ReadTimeout, "timed out"), retry=RetryPolicy(max_retries=1))
    with pytest.raises(VeniceTimeoutError, match="/video/retrieve"):
        h.call("retrieve_status", MODEL, "q-1")
    assert len(h.requests) == 2


# --- /video/queue: never pay twice -------------------------------------------------------------


@pytest.mark.parametrize(
    "exc_type", [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteTimeout]
)
def test_queue_failure_after_sending_is_not_resent(
    venice: Any, fake: Any, exc_type: type[httpx.TransportError]
) -> None:
    h = venice(fake.fail(exc_type, "connection dropped"), fake.answer(200, json=QUEUED))
    with pytest.raises(QueueOutcomeUnknownError, match=r"/video/queue.*not resent") as info:
        h.call("queue", QUEUE_REQUEST)
    assert exc_type.__name__ in str(info.value)
    assert len(h.requests) == 1
    assert h.sleeps == []
    assert not info.value.retryable


def test_queue_504_is_outcome_unknown_and_not_resent(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(504, json={"error": "Gateway timeout"}), fake.answer(200, json=QUEUED))
    with pytest.raises(QueueOutcomeUnknownError, match="may or may not have been created") as info:
        h.call("queue", QUEUE_REQUEST)
    assert isinstance(info.value.__cause__, GatewayTimeoutError)
    assert len(h.requests) == 1


def test_queue_answer_cut_short_is_outcome_unknown(venice: Any, fake: Any) -> None:
    body = fake.LazyBody(200, piece=10, cut_after=20, head=b'{"model": "wan-2')
    h = venice(
        lambda r: httpx.Response(200, headers={"Content-Type": "application/json"}, stream=body),
        fake.answer(200, json=QUEUED),
    )
    with pytest.raises(QueueOutcomeUnknownError):
        h.call("queue", QUEUE_REQUEST)
    assert len(h.requests) == 1


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ConnectTimeout])
def test_queue_retried_when_connection_never_made(
    venice: Any, fake: Any, exc_type: type[httpx.TransportError]
) -> None:
    h = venice(fake.fail(exc_type), fake.answer(200, json=QUEUED))
    assert h.call("queue", QUEUE_REQUEST).queue_id == "q-1"
    assert len(h.requests) == 2
    assert len(h.sleeps) == 1


def test_queue_retried_after_429_with_retry_after(venice: Any, fake: Any) -> None:
    h = venice(
        fake.answer(429, json={"error": "Model overloaded"}, headers={"Retry-After": "3"}),
        fake.answer(200, json=QUEUED),
    )
    assert h.call("queue", QUEUE_REQUEST).queue_id == "q-1"
    assert len(h.requests) == 2
    assert 3.0 <= h.sleeps[0] <= 3.5


def test_queue_retried_after_503(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(503, json={"error": "Queue backed up"}), fake.answer(200, json=QUEUED))
    assert h.call("queue", QUEUE_REQUEST).queue_id == "q-1"
    assert len(h.requests) == 2


def test_queue_500_is_not_retried(venice: Any, fake: Any) -> None:
    # A 500 reached Venice: whether it created (and charged) a job is unknown, so it is not resent.
    h = venice(fake.answer(500, json={"error": "Upstream capacity"}), fake.answer(200, json=QUEUED))
    with pytest.raises(QueueOutcomeUnknownError, match="Upstream capacity") as info:
        h.call("queue", QUEUE_REQUEST)
    assert isinstance(info.value.__cause__, ServerError)
    assert len(h.requests) == 1
    assert h.sleeps == []


def test_queue_4xx_is_not_retried(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(400, json={"error": "prompt is required"}), fake.answer(200, json=QUEUED))
    with pytest.raises(BadRequestError):
        h.call("queue", QUEUE_REQUEST)
    assert len(h.requests) == 1


def test_queue_retries_still_bounded(venice: Any, fake: Any) -> None:
    h = venice(fake.answer(503, json={"error": "Queue backed up"}), retry=RetryPolicy(max_retries=2))
    with pytest.raises(CapacityError):
        h.call("queue", QUEUE_REQUEST)
    assert len(h.requests) == 3


# --- reading a 2xx body ----------------------------------------------------------------------


def test_retrieve_status_cut_short_is_a_transport_error_not_a_failed_job(venice: Any, fake: Any) -> None:
    body = fake.LazyBody(200, piece=10, cut_after=20, head=b'{"status": "PROCESS')
    h = venice(lambda r: httpx.Response(200, headers={"Content-Type": "application/json"}, stream=body))
    with pytest.raises(VeniceTransportError, match="/video/retrieve") as info:
        h.call("retrieve_status", MODEL, "q-1")
    assert info.value.retryable


# --- download_url ----------------------------------------------------------------------------


def test_download_url_5xx_retried_with_retry_after(venice: Any, fake: Any) -> None:
    h = venice(
        fake.answer(503, text="busy", headers={"Retry-After": "4"}),
        fake.answer(200, content=b"mp4data", headers={"Content-Type": "video/mp4"}),
    )
    _, total = h.stream("open_download_url", DOWNLOAD_URL, sink=lambda chunk: None)
    assert total == 7
    assert len(h.requests) == 2
    assert 4.0 <= h.sleeps[0] <= 4.5


def test_download_url_connection_errors_retried(venice: Any, fake: Any) -> None:
    h = venice(fake.fail(httpx.ConnectError), fake.answer(204))
    assert h.call("delete_download_url", DOWNLOAD_URL) is True
    assert len(h.requests) == 2


# --- the pure parts --------------------------------------------------------------------------


def test_parse_retry_after_forms() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("30", None, now) == 30.0
    assert parse_retry_after("1.5", None, now) == 1.5
    assert parse_retry_after("-5", None, now) == 0.0
    date = format_datetime(datetime.fromtimestamp(now + 42, UTC), usegmt=True)
    assert parse_retry_after(date, None, now) == pytest.approx(42.0)
    past = format_datetime(datetime.fromtimestamp(now - 42, UTC), usegmt=True)
    assert parse_retry_after(past, None, now) == 0.0
    assert parse_retry_after(None, str(int((now + 2.5) * 1000)), now) == pytest.approx(2.5)
    assert parse_retry_after("not a date", None, now) is None
    assert parse_retry_after("not a date", "garbage", now) is None
    assert parse_retry_after(None, None, now) is None


@given(retry_number=st.integers(min_value=1, max_value=60))
def test_backoff_within_jitter_of_the_curve(retry_number: int) -> None:
    policy = RetryPolicy()
    nominal = min(policy.max_delay_s, policy.base_delay_s * 2 ** (retry_number - 1))
    delay = policy.backoff_s(retry_number)
    assert 0.75 * nominal <= delay <= 1.25 * nominal


def test_download_url_429_retried(venice: Any, fake: Any) -> None:
    h = venice(
        fake.answer(429, text="slow down", headers={"Retry-After": "2"}),
        fake.answer(200, content=b"mp4", headers={"Content-Type": "video/mp4"}),
    )
    _, total = h.stream("open_download_url", DOWNLOAD_URL, sink=lambda chunk: None)
    assert total == 3
    assert len(h.requests) == 2
    assert 2.0 <= h.sleeps[0] <= 2.5
    assert all("authorization" not in r.headers for r in h.requests)


def test_download_url_redirect_then_5xx_is_retried_from_the_link(venice: Any, fake: Any) -> None:
    storage = "https://bucket.storage.test/q-1.mp4"
    h = venice(
        fake.answer(302, headers={"Location": storage}),
        fake.answer(502, text="bad gateway"),
        fake.answer(302, headers={"Location": storage}),
        fake.answer(200, content=b"mp4", headers={"Content-Type": "video/mp4"}),
    )
    _, total = h.stream("open_download_url", DOWNLOAD_URL, sink=lambda chunk: None)
    assert total == 3
    assert [str(r.url) for r in h.requests] == [DOWNLOAD_URL, storage, DOWNLOAD_URL, storage]
    assert all("authorization" not in r.headers for r in h.requests)
    assert len(h.sleeps) == 1
