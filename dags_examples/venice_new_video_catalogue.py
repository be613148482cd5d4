"""A downstream DAG scheduled on new videos: runs whenever an example DAG delivers one to S3.

Delivering operators announce each video through the ``venice-videos`` asset alias as an event of the
concrete ``s3://bucket/key`` asset. The event's extra carries the video's S3 URI, size, sha256,
Venice queue_id, model and price, so this DAG needs no lookups to catalogue it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, AssetAlias, task

with DAG(
    dag_id="venice_new_video_catalogue",
    start_date=datetime(2026, 1, 1),
    schedule=[AssetAlias("venice-videos")],
    catchup=False,
    tags=["venice", "example"],
):

    @task
    def catalogue(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Record every new video announced by the triggering asset events."""
        # Each event is listed under its asset and again under the alias it came through: count it once.
        videos = [
            dict(event.extra)
            for asset, events in (triggering_asset_events or {}).items()
            if not isinstance(asset, AssetAlias)
            for event in events
        ]
        for video in videos:
            print(
                f"New video {video.get('s3_uri')} ({video.get('size_bytes')} bytes) from {video.get('model')}"
            )
        return videos

    catalogue()
