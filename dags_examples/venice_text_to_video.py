"""Text to video, with audio, on a budget: one task prices, queues, waits and delivers to S3.

The request is checked against the model's capabilities before anything is paid, priced with
``/video/quote``, and refused if the quote is above ``max_usd``. The task then waits in the triggerer
(deferrable), streams the mp4 into S3, verifies it, and only then completes the Venice job. A retry
resumes the same Venice job: it never pays twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG
from venice_example_settings import VIDEO_BUCKET, video_key

from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator

with DAG(
    dag_id="venice_text_to_video",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    tags=["venice", "example"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
):
    VeniceGenerateVideoOperator(
        task_id="generate_video",
        model="wan-2-7-text-to-video",
        prompt="Commerce being conducted in the city of Venice, Italy, at golden hour.",
        negative_prompt="low resolution, worst quality, defects",
        duration="5s",
        aspect_ratio="16:9",
        resolution="720p",
        audio=True,
        max_usd=1.00,
        s3_bucket=VIDEO_BUCKET,
        s3_key=video_key(),
    )
