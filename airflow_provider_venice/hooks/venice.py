"""VeniceHook: turns an Airflow ``venice`` connection into a Venice client."""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import httpx
from airflow.sdk import BaseHook

from airflow_provider_venice.client import DEFAULT_BASE_URL, VeniceError, check_base_url

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_venice.client import AsyncVeniceClient, VeniceClient

_DEFAULT_PATH = "api/v1"


@dataclass(frozen=True)
class VeniceSettings:
    """What a ``venice`` connection says: where the API is, the key, timeouts and retries."""

    base_url: str
    api_key: str
    timeout_s: float | None
    max_retries: int | None

    def __repr__(self) -> str:
        return f"VeniceSettings(base_url={self.base_url!r}, api_key='***')"

    @classmethod
    def from_connection(cls, conn: Connection) -> VeniceSettings:
        """Read a connection (JSON or URI form); the host may be a whole base URL or just a host name."""
        extra = conn.extra_dejson or {}
        if not conn.password:
            raise VeniceError(f"connection {conn.conn_id!r} has no API key (put it in the password field)")
        return cls(
            base_url=check_base_url(_base_url(conn, extra)),
            api_key=conn.password,
            timeout_s=_number(extra.get("timeout_s"), float, "timeout_s"),
            max_retries=_number(extra.get("max_retries"), int, "max_retries"),
        )

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by the sync and async clients."""
        from airflow_provider_venice.client import RetryPolicy

        kwargs: dict[str, Any] = {"base_url": self.base_url}
        if self.timeout_s is not None:
            kwargs["timeout"] = httpx.Timeout(self.timeout_s, connect=10.0, pool=30.0)
        if self.max_retries is not None:
            kwargs["retry"] = RetryPolicy(max_retries=self.max_retries)
        return kwargs


def _base_url(conn: Connection, extra: dict[str, Any]) -> str:
    host = (conn.host or "").strip()
    if not host:
        return DEFAULT_BASE_URL
    if "://" in host:
        return host
    scheme = str(extra.get("scheme") or "https")
    port = f":{conn.port}" if conn.port else ""
    path = (conn.schema or _DEFAULT_PATH).strip("/")
    return f"{scheme}://{host}{port}/{path}"


def _number(value: Any, kind: type[float] | type[int], name: str) -> Any:
    if value in (None, ""):
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise VeniceError(f"connection extra {name!r} must be a number, got {value!r}") from None
    if number < 0:
        raise VeniceError(f"connection extra {name!r} must not be negative, got {value!r}")
    return number


class VeniceHook(BaseHook):
    """Interact with the Venice AI video API.

    :param venice_conn_id: the ``venice`` connection: password = API key, host = base URL
        (default ``https://api.venice.ai/api/v1``), extras ``timeout_s`` and ``max_retries``.
    :param transport: an ``httpx`` transport to use instead of the network (tests, the emulator).
    """

    conn_name_attr = "venice_conn_id"
    default_conn_name = "venice_default"
    conn_type = "venice"
    hook_name = "Venice AI"

    def __init__(
        self,
        venice_conn_id: str = default_conn_name,
        *,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__()
        self.venice_conn_id = venice_conn_id
        self._transport = transport
        self._async_transport = async_transport

    @cached_property
    def settings(self) -> VeniceSettings:
        """The connection's settings (looked up once, synchronously)."""
        return VeniceSettings.from_connection(self.get_connection(self.venice_conn_id))

    def get_conn(self) -> VeniceClient:
        """Return the synchronous client for this connection (one per hook, reused across calls)."""
        return self.client

    @cached_property
    def client(self) -> VeniceClient:
        """The synchronous client for this connection."""
        return self._new_client()

    def _new_client(self, **overrides: Any) -> VeniceClient:
        from airflow_provider_venice.client import VeniceClient

        settings = self.settings
        transport = self._transport or _TRANSPORTS.get(settings.base_url, (None, None))[0]
        return VeniceClient(
            settings.api_key, transport=transport, **{**settings.client_kwargs(), **overrides}
        )

    async def aget_settings(self) -> VeniceSettings:
        """Look the connection up without blocking the event loop (for triggers)."""
        return VeniceSettings.from_connection(await self.aget_connection(self.venice_conn_id))

    async def aget_client(self) -> AsyncVeniceClient:
        """Return the async client for this connection, shared by every caller on this event loop."""
        settings = await self.aget_settings()
        transport = self._async_transport or _TRANSPORTS.get(settings.base_url, (None, None))[1]
        return shared_async_client(settings, transport)

    # The connection form. Airflow 3.2 and later read it from the provider info (``ui-field-behaviour``
    # and ``conn-fields`` in get_provider_info) and skip these two methods; Airflow 3.1 reads only them.
    # Both are made from the provider info, so the form is the same on every version.

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return the connection form's hidden fields, labels and placeholders (read by Airflow 3.1)."""
        behaviour = _connection_type_info()["ui-field-behaviour"]
        return {
            "hidden_fields": list(behaviour["hidden-fields"]),
            "relabeling": dict(behaviour["relabeling"]),
            "placeholders": dict(behaviour["placeholders"]),
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Return the connection form's extra fields (read by Airflow 3.1, whose UI stands in for wtforms)."""
        from flask_appbuilder.fieldwidgets import (  # type: ignore[import-not-found,import-untyped,unused-ignore]
            BS3TextFieldWidget,
        )
        from flask_babel import lazy_gettext  # type: ignore[import-not-found,import-untyped,unused-ignore]
        from wtforms import IntegerField, StringField  # type: ignore[import-not-found,import-untyped,unused-ignore]
        from wtforms.validators import (  # type: ignore[import-not-found,import-untyped,unused-ignore]
            NumberRange,
            Optional,
        )

        widgets: dict[str, Any] = {}
        for name, field in _connection_type_info()["conn-fields"].items():
            schema = field["schema"]
            integer = "integer" in schema["type"]  # wtforms has no float field Airflow 3.1 accepts
            widgets[name] = (IntegerField if integer else StringField)(
                lazy_gettext(field["label"]),
                description=field["description"],
                validators=[Optional(), NumberRange(min=schema["minimum"])] if integer else [Optional()],
                widget=BS3TextFieldWidget(),
            )
        return widgets

    def test_connection(self) -> tuple[bool, str]:
        """Check the key and base URL with ``GET /models?type=video`` (free), answering at once.

        Unlike task calls, it does not retry: the UI's Test button should report a dead host now.
        """
        from airflow_provider_venice.client import NO_RETRY

        try:
            with self._new_client(retry=NO_RETRY) as client:
                models = client.list_video_models()
        except VeniceError as exc:
            return False, str(exc)
        return True, f"Connected to {self.settings.base_url}: {len(models.data)} video models available."

    def close(self) -> None:
        """Close the synchronous client's connections, if one was made."""
        if "client" in self.__dict__:
            self.client.close()


_TRANSPORTS: dict[str, tuple[httpx.BaseTransport | None, httpx.AsyncBaseTransport | None]] = {}


def _connection_type_info() -> dict[str, Any]:
    """Return the ``venice`` connection type as the provider info declares it."""
    from airflow_provider_venice import get_provider_info

    [info] = get_provider_info()["connection-types"]
    return dict(info)


def register_transports(
    base_url: str,
    transport: httpx.BaseTransport | None = None,
    async_transport: httpx.AsyncBaseTransport | None = None,
) -> None:
    """Route every hook whose connection points at ``base_url`` through these transports.

    The test seam for code that builds its own hooks (operators, triggers): point the connection at
    the emulator's in-process base URL and register the emulator's transports for it.
    """
    _TRANSPORTS[check_base_url(base_url)] = (transport, async_transport)


def unregister_transports(base_url: str) -> None:
    """Undo :func:`register_transports`."""
    _TRANSPORTS.pop(check_base_url(base_url), None)


_SHARED: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[VeniceSettings, int], AsyncVeniceClient]
]
_SHARED = weakref.WeakKeyDictionary()


def shared_async_client(
    settings: VeniceSettings, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncVeniceClient:
    """Return the process's one async client for these settings on the running event loop.

    A triggerer runs every trigger on one loop; sharing one client (and its bounded connection pool)
    across all of them costs one pool instead of one per trigger or per poll.
    """
    from airflow_provider_venice.client import AsyncVeniceClient

    clients = _SHARED.setdefault(asyncio.get_running_loop(), {})
    key = (settings, id(transport))
    client = clients.get(key)
    if client is None or client.is_closed:
        client = AsyncVeniceClient(settings.api_key, transport=transport, **settings.client_kwargs())
        clients[key] = client
    return client
