"""A video a day: Venice generates it, and it lands in S3 under the run's date.

One task prices, queues, waits for and delivers the video. It waits in the triggerer (deferrable, the
default), streams the mp4 into S3, checks it, writes a manifest beside it (``<key>.json``), and only
then releases the job at Venice.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator

with DAG(
    dag_id="my_video_dag",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule="@daily",
    catchup=False,
    tags=["venice"],
):
    VeniceGenerateVideoOperator(
        task_id="generate_video",
        model="wan-2-7-text-to-video",
        prompt="A gondola gliding through the canals of Venice at dawn, mist over the water.",
        duration="5s",
        aspect_ratio="16:9",
        resolution="720p",
        max_usd=1.00,  # refuse to pay more than a dollar for one video
        s3_bucket="my-video-bucket",
        s3_key="videos/{{ dag.dag_id }}/{{ ds }}.mp4",
    )
