"""Integration DAG: requests Venice would refuse, one task each; none may ever reach ``/video/queue``.

``retries=2``: an invalid request fails permanently, so no try may be retried either.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_venice.operators.video import VeniceVideoQueueOperator

CASES: dict[str, dict[str, Any]] = {
    "duration": {"model": "wan-2-7-text-to-video", "duration": "7s"},
    "model": {"model": "no-such-video-model", "duration": "5s"},
    "image_url": {"model": "wan-2-7-image-to-video", "duration": "5s"},
    "upscale_factor": {"model": "wan-2-7-text-to-video", "duration": "5s", "upscale_factor": 2},
    "reference_image_urls": {
        "model": "wan-2-7-reference-to-video",
        "duration": "5s",
        "image_url": "https://example.com/start.png",
        "reference_image_urls": ["https://example.com/ref.png"] * 10,
    },
    "max_usd": {"model": "wan-2-7-text-to-video", "duration": "10s", "max_usd": 0.01},
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
