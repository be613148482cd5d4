"""Which job records ``venice-job-records purge`` removes: completed ones past the retention, nothing else."""

from __future__ import annotations

import json

import pytest

from airflow_provider_venice.maintenance import DAY_S, RecordVariable

NOW = 1_800_000_000.0
TASK = {"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": 2}


def stored(stage: str | None, age_days: float | None, **extra: object) -> str:
    record = {"stage": stage, "job": {"model": "m", "queue_id": "q-1"}} if stage else {"job": None}
    envelope = {"try_number": 1, "task": TASK, "record": record, **extra}
    if age_days is not None:
        envelope["updated_at"] = NOW - age_days * DAY_S
    return json.dumps(envelope)


@pytest.mark.parametrize(
    ("text", "purgeable"),
    [
        (stored("completed", 31), True),
        (stored("completed", 29), False),
        (stored("queued", 400), False),  # paid and not completed: money at risk, never purged
        (stored("delivered", 400), False),  # delivered but not released at Venice
        (stored("queueing", 400), False),  # the outcome of a paid request is unknown
        (stored("completed", None), False),  # no age: never guessed
        ("not json", False),
        (json.dumps(["a", "list"]), False),
        (json.dumps({"record": "text"}), False),
        (None, False),
    ],
)
def test_only_completed_records_past_the_retention_are_purgeable(text, purgeable):
    assert RecordVariable.read("k", text).purgeable(NOW, 30) is purgeable


def test_a_zero_retention_purges_every_completed_record():
    assert RecordVariable.read("k", stored("completed", 0.001)).purgeable(NOW, 0)
    assert not RecordVariable.read("k", stored("queued", 0.001)).purgeable(NOW, 0)


def test_a_record_describes_its_task_stage_job_and_age():
    line = RecordVariable.read("venice_job_record_ab", stored("queued", 2.5)).describe(NOW)
    assert line == "venice_job_record_ab  d/r/t[2]  queued  q-1  2.5 days"
    assert RecordVariable.read("k", "oops").describe(NOW) == "k  not ours  -  -  unknown age"
