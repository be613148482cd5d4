"""The video model catalogue, fetched once per process and base URL and kept for a while."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_venice.client._models import VideoModel
    from airflow_provider_venice.client._sync import VeniceClient

CATALOGUE_MAX_AGE_S = 600.0
_lock = threading.Lock()
_cache: dict[str, tuple[float, dict[str, VideoModel]]] = {}


def video_catalogue(client: VeniceClient, max_age_s: float = CATALOGUE_MAX_AGE_S) -> dict[str, VideoModel]:
    """Return ``GET /models?type=video`` indexed by id, cached per process and base URL."""
    now = time.monotonic()
    with _lock:
        cached = _cache.get(client.base_url)
        if cached and now - cached[0] < max_age_s:
            return cached[1]
    catalogue = client.list_video_models().by_id()
    with _lock:
        _cache[client.base_url] = (now, catalogue)
    return catalogue


def forget_catalogues() -> None:
    """Drop every cached catalogue (the next validation fetches it again)."""
    with _lock:
        _cache.clear()
