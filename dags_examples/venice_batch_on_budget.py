"""A batch of prompts with dynamic task mapping, stopped before any charge if it is over budget.

Every prompt is priced first (free). The quotes are summed, and the batch only proceeds to the paid
generation when the total fits ``BATCH_BUDGET_USD``. Each mapped generation is resumable on its own:
a retry of map index 3 never re-queues map index 3.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowFailException
from venice_example_settings import VIDEO_BUCKET, video_key

from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator, VeniceVideoQuoteOperator

BATCH_BUDGET_USD = 5.00
PROMPTS = [
    "A lighthouse in a storm, waves crashing, cinematic.",
    "Time-lapse of a market square in Venice from dawn to dusk.",
    "A paper boat drifting down a rain-soaked street.",
]
REQUEST = {"model": "wan-2-7-text-to-video", "duration": "5s", "resolution": "720p", "aspect_ratio": "16:9"}

with DAG(
    dag_id="venice_batch_on_budget",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    tags=["venice", "example"],
    default_args={"retries": 2},
):
    quotes = VeniceVideoQuoteOperator.partial(task_id="quote", **REQUEST).expand(prompt=PROMPTS)

    @task
    def check_budget(quotes: list[dict[str, float]]) -> float:
        """Fail the batch before any charge when the summed quotes exceed the budget."""
        total = round(sum(q["quote_usd"] for q in quotes), 4)
        if total > BATCH_BUDGET_USD:
            raise AirflowFailException(
                f"batch quote ${total} exceeds the budget ${BATCH_BUDGET_USD}; nothing queued"
            )
        print(f"Batch of {len(quotes)} videos quoted at ${total} (budget ${BATCH_BUDGET_USD}).")
        return total

    generate = VeniceGenerateVideoOperator.partial(
        task_id="generate",
        s3_bucket=VIDEO_BUCKET,
        s3_key=video_key(),
        deferrable=True,
        **REQUEST,
    ).expand(prompt=PROMPTS)

    check_budget(quotes.output) >> generate
