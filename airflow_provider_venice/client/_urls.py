"""Where the Venice API is: the default base URL and the check that keeps the key off plain http."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from airflow_provider_venice import DEFAULT_BASE_URL
from airflow_provider_venice.client._errors import VeniceError

__all__ = ["DEFAULT_BASE_URL", "check_base_url"]


def check_base_url(base_url: str) -> str:
    """Return the normalised base URL, refusing plain ``http://`` unless the host is loopback."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise VeniceError(f"Venice base URL must be an http(s) URL with a host, got {parts.scheme!r} scheme")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise VeniceError(
            f"Venice base URL {parts.scheme}://{parts.hostname}: plain http is only allowed for loopback "
            "hosts (the emulator); use https so the API key is never sent in clear text"
        )
    return base_url.strip().rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
