"""Control routes under ``/_emulator/``: reset, call log, jobs, clock, faults and config."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse
from starlette.routing import Route

from airflow_provider_venice.testing.faults import parse_faults

if TYPE_CHECKING:
    from starlette.requests import Request

    from airflow_provider_venice.testing.state import EmulatorState

ADMIN_PREFIX = "/_emulator"


def admin_routes(state: EmulatorState) -> list[Route]:
    """Return the admin routes bound to ``state``; invalid input answers 400 ``{"error": ...}``."""
    admin = _Admin(state)
    return [
        Route(f"{ADMIN_PREFIX}/reset", admin.reset, methods=["POST"]),
        Route(f"{ADMIN_PREFIX}/calls", admin.calls, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/jobs", admin.jobs, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/clock", admin.clock, methods=["GET", "POST"]),
        Route(f"{ADMIN_PREFIX}/faults", admin.faults, methods=["GET", "POST", "DELETE"]),
        Route(f"{ADMIN_PREFIX}/config", admin.config, methods=["GET", "POST"]),
    ]


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    body = json.loads(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    return body


class _Admin:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def reset(self, request: Request) -> JSONResponse:
        self.state.reset(**await _json(request))
        return JSONResponse({"config": self.state.config.model_dump()})

    async def calls(self, request: Request) -> JSONResponse:
        return JSONResponse({"calls": self.state.calls()})

    async def jobs(self, request: Request) -> JSONResponse:
        return JSONResponse({"jobs": self.state.jobs_snapshot(), "balance_usd": self.state.balance_usd})

    async def clock(self, request: Request) -> JSONResponse:
        if request.method == "POST":
            self.state.advance(float((await _json(request)).get("advance_s", 0)))
        clock = self.state.clock
        return JSONResponse({"now": clock.now(), "offset_s": clock.offset_s})

    async def faults(self, request: Request) -> JSONResponse:
        if request.method == "POST":
            self.state.faults.add(parse_faults(await _json(request)))
        elif request.method == "DELETE":
            self.state.faults.clear()
        return JSONResponse({"faults": self.state.faults.pending()})

    async def config(self, request: Request) -> JSONResponse:
        if request.method == "POST":
            self.state.configure(**await _json(request))
        return JSONResponse({"config": self.state.config.model_dump(), "balance_usd": self.state.balance_usd})
