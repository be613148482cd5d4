"""The Venice plugin: the page's app mounted at ``/venice`` and its entry in the Airflow UI's navigation.

Plugins load in every Airflow component (scheduler, dag-processor, workers), so this module imports
nothing heavy: the app and its routes are built on the first request the API server hands it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.plugins_manager import AirflowPlugin

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    Scope = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
    Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class LazyApp:
    """An ASGI app that builds the Venice FastAPI app when it first serves a request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (or lifespan) with the real app."""
        if self._app is None:
            from airflow_provider_venice.plugins.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class VenicePlugin(AirflowPlugin):
    """Registers the Venice page (videos, spend, money at risk) with the Airflow UI."""

    name = "venice"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": "/venice", "name": "Venice"}]
    external_views = [
        {
            "name": "Venice",
            "href": "venice/",
            "url_route": "venice",
            "destination": "nav",
            "category": "browse",
            "icon": "venice/static/icon.svg",
        }
    ]
