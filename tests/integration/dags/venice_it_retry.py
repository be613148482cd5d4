"""Integration DAG: the first try of ``queue`` pays for a job and then crashes; the retry must resume it.

``retries=1`` with no delay; the second try of ``queue`` must return the same queue_id without a
second ``/video/queue``, and the rest of the DAG must finish that one job. The sensor takes single keys
of the queue's result (``queue.output["queue_id"]``), the complete operator the whole job.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowException

from airflow_provider_venice.operators.video import VeniceVideoCompleteOperator, VeniceVideoQueueOperator
from airflow_provider_venice.sensors.video import VeniceVideoSensor

MODEL = os.environ.get("VENICE_IT_MODEL", "wan-2-7-text-to-video")


class CrashAfterQueueOperator(VeniceVideoQueueOperator):
    """Queues (pays), then fails on its first try, as a worker crash right after queueing would."""

    def execute(self, context: Any) -> dict[str, Any]:
        store = context.get("task_state_store")
        self.log.info("VENICE_IT try=%s task_state_store=%s", context["ti"].try_number, type(store).__name__)
        job = super().execute(context)
        if context["ti"].try_number == 1:
            raise AirflowException(f"VENICE_IT simulated crash after queueing {job['queue_id']}")
        return job


with DAG(
    dag_id="venice_it_retry",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
):
    queue = CrashAfterQueueOperator(
        task_id="queue", model=MODEL, prompt="A paper boat on a rainy street.", duration="5s"
    )
    wait = VeniceVideoSensor(
        task_id="wait",
        model=queue.output["model"],
        queue_id=queue.output["queue_id"],
        timeout=120,
        window_interval_s=1.0,
    )
    complete = VeniceVideoCompleteOperator(task_id="complete", job=queue.output)
    wait >> complete
