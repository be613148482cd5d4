"""Integration DAG: requests Venice would refuse, one task each; none may ever reach ``/video/queue``.

``retries=2``: an invalid request fails permanently, so no try may be retried either. Besides invalid
video requests: a budget that is not a finite amount (``"nan"``), and values rendered as text where a
job or an amount belongs (``"None"`` from an ``xcom_pull`` template), which are refused rather than
read as "none".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_venice.operators.video import VeniceVideoQueueOperator
from airflow_provider_venice.sensors.video import VeniceVideoSensor

T2V = "wan-2-7-text-to-video"
RENDERED_NONE = "{{ ti.xcom_pull(task_ids='no_such_task') }}"  # renders as the text "None"
CASES: dict[str, dict[str, Any]] = {
    "duration": {"model": T2V, "duration": "7s"},
    "model": {"model": "no-such-video-model", "duration": "5s"},
    "image_url": {"model": "wan-2-7-image-to-video", "duration": "5s"},
    "upscale_factor": {"model": T2V, "duration": "5s", "upscale_factor": 2},
    "reference_image_urls": {
        "model": "wan-2-7-reference-to-video",
        "duration": "5s",
        "image_url": "https://example.com/start.png",
        "reference_image_urls": ["https://example.com/ref.png"] * 10,
    },
    "max_usd": {"model": T2V, "duration": "10s", "max_usd": 0.01},
    "max_usd_nan": {"model": T2V, "duration": "5s", "max_usd": "nan"},
    "max_usd_rendered_none": {"model": T2V, "duration": "5s", "max_usd": RENDERED_NONE},
}

with DAG(
    dag_id="venice_it_invalid",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=0)},
):
    for case, fields in CASES.items():
        VeniceVideoQueueOperator(task_id=f"queue_bad_{case}", prompt="A cat on a piano.", **fields)
    # The old way of handing a job on: a non-VPS job's download_url rendered from a template is "None".
    VeniceVideoSensor(
        task_id="wait_rendered_none_download_url",
        model=T2V,
        queue_id="0f0e4a3c-not-queued-here",
        download_url=RENDERED_NONE,
        timeout=60,
    )
