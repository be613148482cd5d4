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


class AnnouncesThroughAlias:
    """Mixin of delivering operators: ``outlets`` default to :func:`default_outlets`, mapped tasks too.

    ``Operator.partial()`` fills every argument the DAG author left out with Airflow's own default
    (``outlets=[]``) before ``__init__`` ever runs, so the default must also be given there.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("outlets", default_outlets())
        super().__init__(**kwargs)

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """Map the operator (``.partial().expand()``), announcing through the alias unless told otherwise."""
        kwargs.setdefault("outlets", default_outlets())
        return super().partial(**kwargs)  # type: ignore[misc]


def announce(context: Mapping[str, Any], outlets: Iterable[Any], result: Mapping[str, Any]) -> None:
    """Add an event for ``s3://bucket/key`` through each alias outlet, and the details to each asset's."""
    extra = {key: result.get(key) for key in EXTRA_KEYS}
    for outlet in outlets:
        if isinstance(outlet, AssetAlias):
            context["outlet_events"][outlet].add(Asset(result["s3_uri"]), extra=extra)
        elif isinstance(outlet, Asset):
            context["outlet_events"][outlet].extra = extra
