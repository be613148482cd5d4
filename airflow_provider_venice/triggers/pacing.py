"""Spacing the status polls of every Venice trigger on one triggerer, so they cannot stall its event loop.

A triggerer runs all of its triggers on one event loop. Each poll costs that loop about a millisecond
of CPU, and thousands of waiting jobs can ask for more polls a second than the loop can serve beside
its other triggers and heartbeats; then every trigger on it runs late, Airflow's included. The pacer
hands out turns at most ``per_second`` a second (after a short burst), first come first served, so
an overloaded triggerer polls each job a little less often instead of falling behind on everything.
The rate is ``[venice] trigger_polls_per_second`` (0 turns pacing off).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

DEFAULT_POLLS_PER_SECOND = 50.0
BURST = 10

log = logging.getLogger(__name__)

_PACERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PollPacer] = weakref.WeakKeyDictionary()


class PollPacer:
    """Turns at most ``per_second`` a second, allowing ``burst`` at once after a quiet spell."""

    def __init__(
        self,
        per_second: float,
        burst: int = BURST,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.spacing = 1.0 / per_second if per_second > 0 else 0.0
        self.burst_s = max(0, burst - 1) * self.spacing
        self._clock = clock
        self._sleep = sleep
        self._next_free = float("-inf")

    async def turn(self) -> float:
        """Wait for the next free turn; return the seconds waited."""
        if not self.spacing:
            return 0.0
        now = self._clock()
        slot = max(now - self.burst_s, self._next_free)
        self._next_free = slot + self.spacing  # taken before sleeping: no other caller gets this slot
        wait = slot - now
        if wait <= 0:
            return 0.0
        await self._sleep(wait)
        return wait


def configured_rate() -> float:
    """``[venice] trigger_polls_per_second``: 50 unless set, 0 or less for no pacing, 50 if unreadable."""
    from airflow.configuration import conf

    value = conf.get("venice", "trigger_polls_per_second", fallback=None)
    if value is None:
        return DEFAULT_POLLS_PER_SECOND
    try:
        return float(value)
    except ValueError:
        log.warning(
            "[venice] trigger_polls_per_second = %r is not a number of polls a second; using %s",
            value,
            DEFAULT_POLLS_PER_SECOND,
        )
        return DEFAULT_POLLS_PER_SECOND


def shared_pacer() -> PollPacer:
    """Return the pacer of the running event loop (one per triggerer process), made on first use."""
    loop = asyncio.get_running_loop()
    pacer = _PACERS.get(loop)
    if pacer is None:
        pacer = _PACERS[loop] = PollPacer(configured_rate())
    return pacer
