"""Succeeding and failing Venice tasks side by side, for the secrets search over a real Airflow run."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_venice.operators.video import (
    VeniceGenerateVideoOperator,
    VeniceVideoQueueOperator,
    VeniceVideoQuoteOperator,
)
from airflow_provider_venice.sensors.video import VeniceVideoSensor

BUCKET = os.environ.get("VENICE_REL_BUCKET", "reliability-videos")
T2V = "wan-2-7-text-to-video"
KEY = "secrets/{{ run_id | replace(':', '_') }}/{{ task.task_id }}.mp4"

with DAG(
    dag_id="venice_rel_secrets",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    default_args={"retries": 0},
):
    VeniceGenerateVideoOperator(
        task_id="generate_ok", model=T2V, prompt="a fox", duration="5s", s3_bucket=BUCKET, s3_key=KEY,
        deferrable=True, window_interval_s=0.5,
    )  # fmt: skip
    VeniceGenerateVideoOperator(
        task_id="generate_vps_ok", model="grok-imagine-text-to-video-private", prompt="a lighthouse",
        duration="6s", s3_bucket=BUCKET, s3_key=KEY, deferrable=True, window_interval_s=0.5,
    )  # fmt: skip
    VeniceVideoQueueOperator(task_id="invalid_request", model=T2V, prompt="p", duration="7s")
    VeniceGenerateVideoOperator(
        task_id="content_policy", model=T2V, prompt="something forbidden", duration="5s", s3_bucket=BUCKET,
        s3_key=KEY,
    )  # fmt: skip
    VeniceGenerateVideoOperator(
        task_id="refused_after_queueing", model=T2V, prompt="refusedbyprovider", duration="5s",
        s3_bucket=BUCKET, s3_key=KEY, deferrable=True, window_interval_s=0.5,
    )  # fmt: skip
    VeniceVideoSensor(task_id="unknown_job", model=T2V, queue_id="no-such-job", deferrable=True, timeout=60)
    VeniceVideoQuoteOperator(
        task_id="templated",
        model=T2V,
        prompt="rendered-marker {{ dag_run.run_id }} at {{ conn.venice_default.host }}",
        duration="5s",
    )
