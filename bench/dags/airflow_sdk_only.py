"""Parse-cost baseline DAG: the same shape with only Airflow's own operators."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, chain

with DAG(dag_id="bench_airflow_sdk_only", start_date=datetime(2026, 1, 1), schedule=None, catchup=False):
    names = ["quote", "queue", "wait", "deliver", "complete", "generate", "transcribe"]
    tasks = [EmptyOperator(task_id=name) for name in names]
    chain(*tasks)
