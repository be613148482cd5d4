"""The shared async client lets at most POOL_SIZE requests out at once; the rest wait their turn.

Thousands of triggers share one client in a triggerer; without the cap they all queue inside httpx's
connection pool, whose bookkeeping grows with the queue (BENCHMARKS.md: a 2,000-trigger restart).
"""

from __future__ import annotations

import asyncio

import httpx

from airflow_provider_venice.client import AsyncVeniceClient, RetryPolicy
from airflow_provider_venice.client._core import POOL_SIZE

MODEL = "wan-2-7-text-to-video"
PROCESSING = {"status": "PROCESSING", "average_execution_time": 60000, "execution_duration": 1000}


class CountingHandler:
    """An async MockTransport handler that records how many requests it is answering at once."""

    def __init__(self, fail_first: int = 0) -> None:
        self.in_flight = 0
        self.peak = 0
        self.seen = 0
        self.fail_first = fail_first

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.seen += 1
        ordinal = self.seen
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.005)
            if ordinal <= self.fail_first:
                return httpx.Response(503, headers={"Retry-After": "0"}, json={"error": "busy"})
            return httpx.Response(200, json=PROCESSING)
        finally:
            self.in_flight -= 1


def _poll_many(handler: CountingHandler, count: int) -> list[str]:
    async def main() -> list[str]:
        async with AsyncVeniceClient(
            "sk-test", transport=httpx.MockTransport(handler), retry=RetryPolicy(max_retries=3)
        ) as client:
            statuses = await asyncio.gather(*(client.retrieve_status(MODEL, f"q-{i}") for i in range(count)))
        return [status.state for status in statuses]

    return asyncio.run(main())


def test_at_most_pool_size_requests_are_in_flight():
    handler = CountingHandler()
    states = _poll_many(handler, 10 * POOL_SIZE)
    assert states == ["processing"] * (10 * POOL_SIZE)
    assert handler.peak == POOL_SIZE


def test_a_request_waiting_to_retry_does_not_hold_a_place():
    """Back-offs are slept outside the cap: requests that wait for a retry let others through."""
    handler = CountingHandler(fail_first=POOL_SIZE)
    states = _poll_many(handler, 2 * POOL_SIZE)
    assert states == ["processing"] * (2 * POOL_SIZE)
    assert handler.seen == 3 * POOL_SIZE  # the first POOL_SIZE answers were 503s, each retried once
    assert handler.peak == POOL_SIZE
