"""Errors raised by the emulator's state, carrying the Venice status code and error body."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An API error: HTTP ``status``, JSON ``body`` in Venice's shape, and extra ``headers``."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


class DropConnection(Exception):
    """Raised by the emulator's ASGI layer to make the server drop the client's connection.

    ``flush`` asks to deliver what was already sent (a truncated body) before closing.
    """

    def __init__(self, flush: bool = False) -> None:
        super().__init__("connection dropped by an emulator fault")
        self.flush = flush


def error(status: int, message: str) -> ApiError:
    """Build an error with the common ``{"error": message}`` body."""
    return ApiError(status, {"error": message})


def invalid_request_id() -> ApiError:
    """Build Venice's answer for an unknown or released ``queue_id``."""
    return error(400, "Request ID is invalid")
