"""The fault plan: scripted errors, dropped connections, truncated bodies and latency.

Each fault names an ``endpoint`` (``"/video/retrieve"``, a full path such as
``"/api/v1/models"``, or a prefix such as ``"/_media"``) and exactly one effect: a ``status``
(with optional ``retry_after`` and ``body``), an ``action`` (``drop_before``, ``drop_after``,
``truncate``) or ``latency_s``. It applies to the next ``times`` matching calls (default 1), or
to each matching call with ``probability`` (drawn from a seeded RNG, so runs are reproducible),
and then at most ``times`` times if both are given.
"""

from __future__ import annotations

import random
import threading
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

API_PREFIX = "/api/v1"

_DEFAULT_MESSAGES = {
    429: "Rate limit exceeded. Please try again later.",
    500: "Inference failed. Please try again later.",
    503: "The model is at capacity. Please try again later.",
    504: "Gateway timeout.",
}


class Fault(BaseModel):
    """One scripted fault; see the module docstring for the fields."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str
    method: str | None = None
    status: int | None = Field(default=None, ge=400, le=599)
    retry_after: float | None = Field(default=None, ge=0)
    body: dict[str, Any] | str | None = None
    action: Literal["drop_before", "drop_after", "truncate"] | None = None
    latency_s: float | None = Field(default=None, ge=0)
    times: int | None = Field(default=None, ge=1)
    probability: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _one_effect(self) -> Fault:
        effects = [self.status is not None, self.action is not None, self.latency_s is not None]
        if sum(effects) != 1:
            raise ValueError("a fault needs exactly one of status, action or latency_s")
        if self.times is None and self.probability is None:
            self.times = 1
        return self

    @property
    def kind(self) -> str:
        """``status``, ``latency`` or the action name, for the call log."""
        if self.action is not None:
            return self.action
        return "status" if self.status is not None else "latency"

    def matches(self, path: str, method: str) -> bool:
        """Tell whether this fault applies to a request for ``path`` (full URL path) with ``method``."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        endpoint = self.endpoint.rstrip("/")
        return path in {endpoint, API_PREFIX + endpoint} or path.startswith(endpoint + "/")

    def error_body(self) -> dict[str, Any] | str:
        """Return the body of a ``status`` fault: the given one, or Venice's ``{"error": ...}``."""
        if self.body is not None:
            return self.body
        return {"error": _DEFAULT_MESSAGES.get(self.status or 500, "Request failed.")}


class FaultPlan:
    """Pending faults, consumed in order by matching requests. Thread-safe."""

    def __init__(self, seed: int = 0) -> None:
        self._faults: list[Fault] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def add(self, faults: list[Fault]) -> None:
        """Append faults to the plan."""
        with self._lock:
            self._faults.extend(faults)

    def reseed(self, seed: int) -> None:
        """Restart the random draws of ``probability`` faults from ``seed``."""
        with self._lock:
            self._random.seed(seed)

    def clear(self) -> None:
        """Remove every pending fault."""
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        """Return the faults still to apply, as JSON objects."""
        with self._lock:
            return [fault.model_dump(exclude_none=True) for fault in self._faults]

    def take(self, path: str, method: str) -> Fault | None:
        """Return the fault to apply to this request, if any, counting it against its ``times``."""
        with self._lock:
            for fault in self._faults:
                if not fault.matches(path, method):
                    continue
                if fault.probability is not None and self._random.random() >= fault.probability:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                return fault
        return None


def parse_faults(data: Any) -> list[Fault]:
    """Parse a ``{"faults": [...]}`` object or a bare list (``ValueError`` when invalid)."""
    items = data.get("faults") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError('expected {"faults": [...]}')
    return [Fault.model_validate(item) for item in items]
