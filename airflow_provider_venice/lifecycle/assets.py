"""Announce delivered videos as Airflow asset events, so downstream DAGs can run on each new video."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

DEFAULT_ASSET_ALIAS = "venice-videos"
EXTRA_KEYS = (
    "s3_uri",
    "size_bytes",
    "sha256",
    "manifest_uri",
    "poster_uri",
    "duration_s",
    "width",
    "height",
    "frame_rate",
    "video_codec",
    "has_audio",
    "model",
    "queue_id",
    "quote_usd",
)


def default_outlets() -> list[AssetAlias]:
    """Return the default outlets of delivering operators: the ``venice-videos`` asset alias.

    An alias, because the object's key is usually templated and known only at run time (and because a
    plain ``s3://`` Asset makes Airflow load the Amazon provider, and boto3, when the DAG is parsed).
    Each delivery adds an event for the concrete ``s3://bucket/key`` asset through it; downstream DAGs
    schedule on ``AssetAlias("venice-videos")``.
    """
    return [AssetAlias(DEFAULT_ASSET_ALIAS)]


def announce(context: Mapping[str, Any], outlets: Iterable[Any], result: Mapping[str, Any]) -> None:
    """Add an event for ``s3://bucket/key`` through each alias outlet, and the details to each asset's."""
    extra = {key: result.get(key) for key in EXTRA_KEYS}
    for outlet in outlets:
        if isinstance(outlet, AssetAlias):
            context["outlet_events"][outlet].add(Asset(result["s3_uri"]), extra=extra)
        elif isinstance(outlet, Asset):
            context["outlet_events"][outlet].extra = extra
