"""The emulator's ASGI application: API, ``download_url`` and admin routes behind the middleware."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from airflow_provider_venice.testing.admin import admin_routes
from airflow_provider_venice.testing.api import api_routes
from airflow_provider_venice.testing.errors import ApiError
from airflow_provider_venice.testing.middleware import EmulatorMiddleware

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.types import ASGIApp

    from airflow_provider_venice.testing.state import EmulatorState


def create_app(state: EmulatorState) -> ASGIApp:
    """Build the ASGI app serving ``state``; every error answers Venice's ``{"error": ...}`` shape."""
    app = Starlette(
        routes=[*api_routes(state), *admin_routes(state)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            ValueError: _invalid_input,
        },
    )
    return EmulatorMiddleware(app, state)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body, exc.status, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, exc.status_code, exc.headers)


async def _invalid_input(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, 400)
