"""Load: N mapped generate tasks (``VENICE_REL_LOAD_N``, default 200), each resumable on its own."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator

COUNT = int(os.environ.get("VENICE_REL_LOAD_N", "200"))
BUCKET = os.environ.get("VENICE_REL_BUCKET", "reliability-videos")

with DAG(
    dag_id="venice_rel_load",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    max_active_tasks=COUNT,
    default_args={"retries": 3, "retry_delay": timedelta(seconds=1)},
):
    VeniceGenerateVideoOperator.partial(
        task_id="generate",
        model="wan-2-7-text-to-video",
        duration="5s",
        resolution="720p",
        s3_bucket=BUCKET,
        s3_key="load/{{ run_id | replace(':', '_') }}/{{ ti.map_index }}.mp4",
        deferrable=True,
        window_interval_s=0.5,
    ).expand(prompt=[f"Scene {index}: a gondola passes under a bridge." for index in range(COUNT)])
