"""Parse-cost DAG: one task of every operator and sensor of the Venice provider."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_venice.operators.transcription import VeniceVideoTranscriptionOperator
from airflow_provider_venice.operators.video import (
    VeniceGenerateVideoOperator,
    VeniceVideoCompleteOperator,
    VeniceVideoQueueOperator,
    VeniceVideoQuoteOperator,
)
from airflow_provider_venice.sensors.video import VeniceVideoSensor
from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator

MODEL = "wan-2-7-text-to-video"
REQUEST = {"model": MODEL, "prompt": "A lighthouse in a storm.", "duration": "5s", "resolution": "720p"}

with DAG(dag_id="bench_venice_all_operators", start_date=datetime(2026, 1, 1), schedule=None, catchup=False):
    quote = VeniceVideoQuoteOperator(task_id="quote", **REQUEST)
    queue = VeniceVideoQueueOperator(task_id="queue", max_usd=2.0, **REQUEST)
    wait = VeniceVideoSensor(task_id="wait", job=queue.output)
    deliver = VeniceVideoToS3Operator(
        task_id="deliver", job=wait.output, s3_bucket="videos", s3_key="bench/{{ ds }}.mp4", complete=False
    )
    complete = VeniceVideoCompleteOperator(task_id="complete", job=queue.output)
    generate = VeniceGenerateVideoOperator(
        task_id="generate", s3_bucket="videos", s3_key="bench/{{ ds }}-one-task.mp4", **REQUEST
    )
    transcribe = VeniceVideoTranscriptionOperator(
        task_id="transcribe", url="https://www.youtube.com/watch?v=dQw4w9WgXcQ"
    )
    quote >> queue
    deliver >> complete >> generate >> transcribe
