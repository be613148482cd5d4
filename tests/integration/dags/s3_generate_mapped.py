"""Integration DAG: one mapped VeniceGenerateVideoOperator over five prompts, delivered to S3.

The bucket comes from the environment (``VENICE_S3_IT_BUCKET``; no I/O at parse time). Each mapped task
instance queues one job, waits in the triggerer, streams the video to ``mapped/<map_index>.mp4`` and
completes the job; the test counts the objects and the emulator's queue and complete calls.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator

BUCKET = os.environ.get("VENICE_S3_IT_BUCKET", "venice-s3-it")
PROMPTS = [
    "A lighthouse in a storm, waves crashing.",
    "A red fox running through fresh snow.",
    "Timelapse of clouds over a mountain lake.",
    "A paper boat drifting down a rainy street.",
    "Neon city street at night, rain reflections.",
]

with DAG(
    dag_id="s3_generate_mapped",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
):
    VeniceGenerateVideoOperator.partial(
        task_id="generate",
        model="wan-2-7-text-to-video",
        duration="5s",
        resolution="720p",
        s3_bucket=BUCKET,
        s3_key="mapped/{{ ti.map_index }}.mp4",
        deferrable=True,
        wait_timeout=120,
        window_interval_s=0.5,
    ).expand(prompt=PROMPTS)
