"""The poll pacer: turns at most N a second per event loop, a short burst first, first come first served.

A fake clock and a sleep that only records keep these tests free of timing; the trigger test checks
that every retrieve waited for a turn.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from airflow_provider_venice.hooks.venice import register_transports, unregister_transports
from airflow_provider_venice.testing import VeniceEmulator
from airflow_provider_venice.triggers import pacing
from airflow_provider_venice.triggers.pacing import DEFAULT_POLLS_PER_SECOND, PollPacer, shared_pacer
from airflow_provider_venice.triggers.video import VeniceVideoTrigger

T2V = "wan-2-7-text-to-video"
RATE_ENV = "AIRFLOW__VENICE__TRIGGER_POLLS_PER_SECOND"


class FakeTime:
    """A clock that moves only when told to, and a sleep that records what it was asked."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def pacer(per_second: float, burst: int = 3) -> tuple[PollPacer, FakeTime]:
    fake = FakeTime()
    return PollPacer(per_second, burst=burst, clock=fake.clock, sleep=fake.sleep), fake


def test_a_burst_goes_at_once_then_turns_are_spaced_by_the_rate() -> None:
    paced, fake = pacer(per_second=10, burst=3)
    waits = [asyncio.run(paced.turn()) for _ in range(6)]
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])
    assert fake.slept == pytest.approx([0.1, 0.2, 0.3])


def test_time_that_passed_frees_turns_again_up_to_the_burst() -> None:
    paced, fake = pacer(per_second=10, burst=3)
    for _ in range(5):
        asyncio.run(paced.turn())
    fake.now += 0.25  # the fifth turn was at +0.2: the next is free again, without a burst yet
    assert asyncio.run(paced.turn()) == pytest.approx(0.05)
    fake.now += 60  # a quiet minute earns a burst, not sixty seconds of turns
    waits = [asyncio.run(paced.turn()) for _ in range(5)]
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.2])


def test_callers_waiting_together_each_get_their_own_turn_in_order() -> None:
    paced, _ = pacer(per_second=4, burst=1)

    async def many() -> list[float]:
        return list(await asyncio.gather(*(paced.turn() for _ in range(5))))

    assert asyncio.run(many()) == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


@pytest.mark.parametrize("per_second", [0, -1])
def test_a_rate_of_zero_or_less_never_waits(per_second: float) -> None:
    paced, fake = pacer(per_second=per_second)
    assert [asyncio.run(paced.turn()) for _ in range(100)] == [0.0] * 100
    assert fake.slept == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, DEFAULT_POLLS_PER_SECOND),
        ("200", 200.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("fast", DEFAULT_POLLS_PER_SECOND),
    ],
)
def test_the_rate_comes_from_the_venice_section_of_the_airflow_config(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str | None, expected: float
) -> None:
    if value is None:
        monkeypatch.delenv(RATE_ENV, raising=False)
    else:
        monkeypatch.setenv(RATE_ENV, value)
    assert pacing.configured_rate() == expected
    if value == "fast":  # a typo does not stop the triggerer: it is named in the log, the default is used
        assert "trigger_polls_per_second = 'fast' is not a number" in caplog.text


def test_one_pacer_per_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RATE_ENV, "25")

    async def two_looks() -> tuple[PollPacer, PollPacer]:
        return shared_pacer(), shared_pacer()

    first, again = asyncio.run(two_looks())
    assert first is again
    assert first.spacing == pytest.approx(1 / 25)
    other, _ = asyncio.run(two_looks())
    assert other is not first  # another loop (another triggerer process) has its own


class CountingTransport(httpx.AsyncBaseTransport):
    """Forwards to the emulator; notes how many turns had been handed out at each retrieve."""

    def __init__(self, inner: httpx.AsyncBaseTransport, turns: list[int]) -> None:
        self.inner, self.turns = inner, turns
        self.turns_at_retrieve: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/video/retrieve"):
            self.turns_at_retrieve.append(len(self.turns))
        return await self.inner.handle_async_request(request)


def test_every_poll_of_every_trigger_waits_for_its_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    emu = VeniceEmulator(job_seconds=10)
    conn = {"conn_type": "venice", "host": emu.base_url, "password": "sk-pacing", "extra": {"max_retries": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", json.dumps(conn))
    turns: list[int] = []

    class CountingPacer(PollPacer):
        async def turn(self) -> float:
            turns.append(1)
            await asyncio.sleep(0)  # let the other triggers run meanwhile
            return 0.0

    counter = CountingPacer(0)
    monkeypatch.setattr("airflow_provider_venice.triggers.video.shared_pacer", lambda: counter)
    transport = CountingTransport(emu.async_transport(), turns)
    register_transports(emu.base_url, emu.sync_transport(), transport)
    with emu.client() as http:
        bodies = [{"model": T2V, "prompt": f"fox {n}", "duration": "5s"} for n in range(3)]
        jobs = [http.post("/video/queue", json=body).json() for body in bodies]
    emu.advance(60)  # every job is done at its first look

    async def watch_all() -> list[Any]:
        triggers = [
            VeniceVideoTrigger(model=job["model"], queue_id=job["queue_id"], deadline=time.time() + 60)
            for job in jobs
        ]
        return list(await asyncio.gather(*(first_event(t) for t in triggers)))

    try:
        events = asyncio.run(watch_all())
    finally:
        unregister_transports(emu.base_url)
    assert [event.payload["status"] for event in events] == ["success"] * 3
    assert len(transport.turns_at_retrieve) == 3
    # the n-th retrieve is sent only once n turns were handed out
    assert all(seen >= n for n, seen in enumerate(transport.turns_at_retrieve, start=1))


async def first_event(trigger: VeniceVideoTrigger) -> Any:
    async for event in trigger.run():
        return event
    raise AssertionError("no event")
