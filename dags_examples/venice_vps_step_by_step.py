"""A VPS-backed (private) model, step by step: quote, queue, wait, deliver via ``download_url``.

Private models answer ``/video/queue`` with a ``download_url`` valid for 24 hours; the finished video
is fetched from there (never with the API key), then the link is deleted and the job completed. The
separate tasks show each stage, handing the job on as a native value (``job=queue.output``);
``VeniceGenerateVideoOperator`` does the same in one task. The wait starts in the triggerer straight
from the scheduler (``start_from_trigger=True``, Airflow 3.3): no worker runs until the video is
ready. Airflow 3.1 and 3.2, and ``airflow dags test``, run it on a worker first, which then defers.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG
from venice_example_settings import VIDEO_BUCKET, video_key

from airflow_provider_venice.operators.video import VeniceVideoQueueOperator, VeniceVideoQuoteOperator
from airflow_provider_venice.sensors.video import VeniceVideoSensor
from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator

MODEL = "grok-imagine-text-to-video-private"

with DAG(
    dag_id="venice_vps_step_by_step",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    tags=["venice", "example"],
    default_args={"retries": 2},
):
    request = {"model": MODEL, "prompt": "A gondola gliding under a stone bridge at dawn.", "duration": "6s"}
    quote = VeniceVideoQuoteOperator(task_id="quote", **request)
    queue = VeniceVideoQueueOperator(task_id="queue", max_usd=1.50, **request)
    # The job travels as a native value: the sensor waits in the triggerer, then hands the job on.
    wait = VeniceVideoSensor(task_id="wait", job=queue.output, timeout=3600, start_from_trigger=True)
    deliver = VeniceVideoToS3Operator(
        task_id="deliver",
        job=wait.output,
        s3_bucket=VIDEO_BUCKET,
        s3_key=video_key(),
    )
    quote >> queue
