"""Image to video: animate a still image given by URL (or a ``data:`` URL for small images).

Trigger it with your own image: ``airflow dags trigger venice_image_to_video -c '{"image_url": "https://..."}'``.
The image-to-video model requires ``image_url``; leaving it out fails before anything is paid.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param
from venice_example_settings import VIDEO_BUCKET, video_key

from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator

with DAG(
    dag_id="venice_image_to_video",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    tags=["venice", "example"],
    params={"image_url": Param("https://images.example.com/venice-cityscape.jpg", type="string")},
    default_args={"retries": 2},
):
    VeniceGenerateVideoOperator(
        task_id="animate_image",
        model="wan-2-7-image-to-video",
        prompt="The camera slowly zooms out, revealing the cityscape.",
        image_url="{{ params.image_url }}",
        duration="5s",
        aspect_ratio="16:9",
        max_usd=2.00,
        s3_bucket=VIDEO_BUCKET,
        s3_key=video_key(),
    )
