"""Routes of the Venice API under ``/api/v1`` and of the VPS ``download_url`` files."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from airflow_provider_venice.testing.errors import ApiError, error
from airflow_provider_venice.testing.faults import API_PREFIX
from airflow_provider_venice.testing.state import MEDIA_PREFIX, Delivery

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from starlette.requests import Request

    from airflow_provider_venice.testing.mp4 import Mp4File
    from airflow_provider_venice.testing.state import EmulatorState


def api_routes(state: EmulatorState) -> list[Route]:
    """Return the API and ``download_url`` routes bound to ``state``."""
    api = _Api(state)
    video = f"{API_PREFIX}/video"
    return [
        Route(f"{API_PREFIX}/models", api.models, methods=["GET"]),
        Route(f"{video}/quote", api.quote, methods=["POST"]),
        Route(f"{video}/queue", api.queue, methods=["POST"]),
        Route(f"{video}/retrieve", api.retrieve, methods=["POST"]),
        Route(f"{video}/complete", api.complete, methods=["POST"]),
        Route(f"{video}/transcriptions", api.transcriptions, methods=["POST"]),
        Route(MEDIA_PREFIX + "/{token}/{filename}", api.media, methods=["GET", "DELETE"]),
    ]


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """Read the JSON object in the body; past ``limit`` bytes drain the rest and raise 413."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        message = (
            f"Request payload too large: {size} bytes, the limit is {limit} bytes. "
            "data: URLs count toward it; prefer hosted URLs."
        )
        raise ApiError(413, {"code": "PAYLOAD_TOO_LARGE", "error": message})
    try:
        body = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        raise error(400, "Invalid request: the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise error(400, "Invalid request: the body must be a JSON object")
    return body


def video_response(file: Mp4File, background: BackgroundTask | None = None) -> StreamingResponse:
    """Stream ``file`` as ``video/mp4`` with its ``Content-Length``."""
    return StreamingResponse(
        _aiter(file.chunks()),
        media_type="video/mp4",
        headers={"content-length": str(file.size)},
        background=background,
    )


def names_json(accept: str) -> bool:
    """Tell whether an ``Accept`` header value names ``application/json`` (with any ``q`` but 0).

    ``application/json``, ``video/mp4, application/json`` and ``application/json;q=0.9`` do;
    ``video/mp4``, ``*/*``, ``application/*``, an empty value and ``application/json;q=0`` do not.
    """
    for media_range in accept.split(","):
        media_type, *params = (part.strip().lower() for part in media_range.split(";"))
        if media_type != "application/json":
            continue
        weights = [param.partition("=")[2].strip() for param in params if param.startswith("q=")]
        if not weights or _weight(weights[0]) > 0:
            return True
    return False


def _weight(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 1.0


async def _aiter(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


class _Api:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def _body(self, request: Request) -> dict[str, Any]:
        return await read_json(request, self.state.config.max_body_bytes)

    async def models(self, request: Request) -> Response:
        return JSONResponse(self.state.models(request.query_params.get("type", "text")))

    async def quote(self, request: Request) -> Response:
        return JSONResponse(self.state.quote(await self._body(request)))

    async def queue(self, request: Request) -> Response:
        return JSONResponse(self.state.queue(await self._body(request), str(request.base_url)))

    async def retrieve(self, request: Request) -> Response:
        accept = ", ".join(request.headers.getlist("accept"))
        result = self.state.retrieve(await self._body(request), accepts_json=names_json(accept))
        if not isinstance(result, Delivery):
            return JSONResponse(result)
        cleanup = BackgroundTask(self.state.delete_media, result.queue_id) if result.delete_after else None
        return video_response(result.file, cleanup)

    async def complete(self, request: Request) -> Response:
        return JSONResponse(self.state.complete(await self._body(request)))

    async def transcriptions(self, request: Request) -> Response:
        result = self.state.transcribe(await self._body(request))
        return PlainTextResponse(result) if isinstance(result, str) else JSONResponse(result)

    async def media(self, request: Request) -> Response:
        token, filename = request.path_params["token"], request.path_params["filename"]
        if request.method == "DELETE":
            self.state.delete_download(token, filename)
            return Response(status_code=204)
        return video_response(self.state.download(token, filename))
