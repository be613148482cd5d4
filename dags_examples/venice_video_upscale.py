"""Upscale an existing video 2x with an upscale model (``upscale_factor`` instead of ``resolution``).

Upscale models take ``video_url`` and ``duration="Auto"`` and need no prompt. Pass your own clip with
``-c '{"video_url": "https://..."}'``; a presigned S3 URL of an earlier video works well.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param
from venice_example_settings import VIDEO_BUCKET, video_key

from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator

with DAG(
    dag_id="venice_video_upscale",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    tags=["venice", "example"],
    params={
        "video_url": Param("https://media.example.com/clips/harbour-480p.mp4", type="string"),
        "upscale_factor": Param(2, enum=[1, 2, 4]),
    },
    default_args={"retries": 2},
):
    VeniceGenerateVideoOperator(
        task_id="upscale_video",
        model="topaz-video-upscale",
        video_url="{{ params.video_url }}",
        upscale_factor="{{ params.upscale_factor }}",
        duration="Auto",
        s3_bucket=VIDEO_BUCKET,
        s3_key=video_key(),
    )
