"""Integration DAG: quote -> queue -> deferrable sensor -> complete, for the model in ``VENICE_IT_MODEL``.

The model comes from the environment (no I/O at parse time), so one file serves the non-VPS and the
VPS run. The job travels between tasks as a native value, the way DAG authors write it: the sensor
takes ``job=queue.output`` and hands the job on, the complete operator takes ``job=wait.output`` (with
its ``download_url`` for VPS jobs). Task results are checked by the test through the emulator's call log.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_venice.operators.video import (
    VeniceVideoCompleteOperator,
    VeniceVideoQueueOperator,
    VeniceVideoQuoteOperator,
)
from airflow_provider_venice.sensors.video import VeniceVideoSensor

MODEL = os.environ.get("VENICE_IT_MODEL", "wan-2-7-text-to-video")
DURATION = os.environ.get("VENICE_IT_DURATION", "5s")

with DAG(
    dag_id="venice_it_step_by_step",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
):
    request = {"model": MODEL, "prompt": "A lighthouse in a storm, waves crashing.", "duration": DURATION}
    quote = VeniceVideoQuoteOperator(task_id="quote", model=MODEL, duration=DURATION)  # no prompt needed
    queue = VeniceVideoQueueOperator(task_id="queue", max_usd=quote.output["quote_usd"], **request)
    wait = VeniceVideoSensor(task_id="wait", job=queue.output, timeout=120, window_interval_s=1.0)
    complete = VeniceVideoCompleteOperator(task_id="complete", job=wait.output)
