"""A batch of videos, one mapped generate task each, written the way a DAG author would.

Triggered with ``{"tag": "...", "count": N}``: N videos of one prompt list, each delivered to
``s3://$VENICE_VIDEO_BUCKET/videos/<tag>/<map index>.mp4`` and released at Venice once stored.
Each task waits in the triggerer (deferrable) and retries twice, resuming the job it already paid for.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator

BUCKET = os.environ.get("VENICE_VIDEO_BUCKET", "venice-scale-videos")

with DAG(
    dag_id="venice_scale_batch",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    max_active_runs=4,
    max_active_tasks=1000,
    params={"tag": Param("batch", type="string"), "count": Param(100, type="integer", minimum=1)},
    default_args={"retries": 2, "retry_delay": timedelta(seconds=3)},
    tags=["venice", "scale"],
):

    @task
    def prompts(params: dict) -> list[str]:
        """One prompt per video of the batch."""
        return [
            f"{params['tag']} #{index}: a gondola passes under a bridge at dusk"
            for index in range(params["count"])
        ]

    VeniceGenerateVideoOperator.partial(
        task_id="generate",
        model="wan-2-7-text-to-video",
        duration="5s",
        resolution="720p",
        s3_bucket=BUCKET,
        s3_key="videos/{{ params.tag }}/{{ ti.map_index }}.mp4",
        deferrable=True,
    ).expand(prompt=prompts())
