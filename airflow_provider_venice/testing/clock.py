"""Emulated time: the wall clock plus an offset that tests move forward by hand."""

from __future__ import annotations

import time


class Clock:
    """Wall-clock time shifted by a manual offset (``advance``); never runs backwards."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def now(self) -> float:
        """Emulated Unix time in seconds."""
        return time.time() + self.offset_s

    def advance(self, seconds: float) -> None:
        """Move emulated time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset_s += seconds
