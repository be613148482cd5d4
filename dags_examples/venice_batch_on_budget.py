"""A batch of prompts with dynamic task mapping, stopped before any charge if it is over budget.

One video of the batch is priced first (free; the price depends on the model, duration and
resolution, not on the prompt). The batch only proceeds to the paid generation when the price of all
its videos fits ``BATCH_BUDGET_USD``. Each mapped generation is resumable on its own:
a retry of map index 3 never re-queues map index 3.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task
from venice_example_settings import VIDEO_BUCKET, video_key

from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator, VeniceVideoQuoteOperator
from airflow_provider_venice.version_compat import AirflowFailException

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
    quote = VeniceVideoQuoteOperator(task_id="quote", **REQUEST)

    @task
    def check_budget(quote_usd: float) -> float:
        """Fail the batch before any charge when the whole batch would cost more than the budget."""
        total = round(quote_usd * len(PROMPTS), 4)
        if total > BATCH_BUDGET_USD:
            # Fails without retrying. version_compat gives the class this Airflow's task runner catches
            # (airflow.sdk.exceptions' from Airflow 3.2 on, airflow.exceptions' on 3.1).
            raise AirflowFailException(
                f"batch quote ${total} exceeds the budget ${BATCH_BUDGET_USD}; nothing queued"
            )
        print(f"Batch of {len(PROMPTS)} videos quoted at ${total} (budget ${BATCH_BUDGET_USD}).")
        return total

    generate = VeniceGenerateVideoOperator.partial(
        task_id="generate",
        s3_bucket=VIDEO_BUCKET,
        s3_key=video_key(),
        max_usd=quote.output["quote_usd"],  # each video must cost what was budgeted, not more
        **REQUEST,
    ).expand(prompt=PROMPTS)

    check_budget(quote.output["quote_usd"]) >> generate
