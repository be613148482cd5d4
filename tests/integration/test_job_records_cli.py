"""``venice-job-records``: list and purge the job records kept in Variables, on a real metadata database."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_provider_venice.lifecycle.stores import KEY_PREFIX

pytestmark = pytest.mark.integration

DAY_S = 86400

SEED = """
import json, sys
from airflow.models.variable import Variable
for key, value in json.loads(sys.argv[1]).items():
    Variable.set(key, value)
"""

KEYS = """
from airflow.models.variable import Variable
from airflow.utils.session import create_session
from sqlalchemy import select
with create_session() as session:
    print("KEYS:", " ".join(sorted(session.scalars(select(Variable.key)).all())))
"""


def envelope(stage: str, age_days: float) -> str:
    task = {"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1}
    record = {"stage": stage, "job": {"model": "m", "queue_id": f"q-{stage}-{age_days:g}"}}
    return json.dumps(
        {"try_number": 1, "task": task, "updated_at": time.time() - age_days * DAY_S, "record": record}
    )


def keys(airflow_env: dict[str, str]) -> set[str]:
    """The keys of job records and of the test's other Variable (Airflow may log to stdout too)."""
    output = run(airflow_env, sys.executable, "-c", KEYS).splitlines()
    [line] = [line for line in output if line.startswith("KEYS:")]
    return {key for key in line.split()[1:] if key.startswith(KEY_PREFIX) or key == "venice_budget"}


def run(airflow_env: dict[str, str], *args: str) -> str:
    done = subprocess.run(args, env=airflow_env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_purge_removes_only_completed_records_past_the_retention(airflow_env: dict[str, str]) -> None:
    """Seeded records beside whatever the session's DAG runs left (on Airflow 3.1 and 3.2 their records
    are Variables too: recent ones, which no purge with a 30-day retention touches)."""
    seeded = {
        f"{KEY_PREFIX}old_completed": envelope("completed", 40),
        f"{KEY_PREFIX}new_completed": envelope("completed", 1),
        f"{KEY_PREFIX}old_queued": envelope("queued", 40),  # paid, not completed: money at risk
        f"{KEY_PREFIX}not_ours": "not json",
        "venice_budget": "100",  # someone else's Variable
    }
    python = sys.executable
    command = str(Path(python).with_name("venice-job-records"))
    before = keys(airflow_env)
    run(airflow_env, python, "-c", SEED, json.dumps(seeded))

    listed = run(airflow_env, command, "list")
    assert re.search(rf"^{KEY_PREFIX}old_queued  d/r/t\[-1\]  queued  q-queued-40  40\.0 days$", listed, re.M)
    assert f"{len(before | set(seeded)) - 1} Venice job records" in listed  # all but venice_budget

    dry = run(airflow_env, command, "purge", "--older-than-days", "30", "--dry-run")
    assert re.search(r"^would remove 1 of \d+ Venice job records", dry, re.M)
    assert keys(airflow_env) == before | set(seeded)

    done = run(airflow_env, command, "purge", "--older-than-days", "30")
    assert f"removing {KEY_PREFIX}old_completed" in done
    assert re.search(r"^removed 1 of \d+ Venice job records", done, re.M)
    left = (before | set(seeded)) - {f"{KEY_PREFIX}old_completed"}
    assert keys(airflow_env) == left


def test_a_negative_retention_is_refused_naming_the_option(airflow_env: dict[str, str]) -> None:
    command = str(Path(sys.executable).with_name("venice-job-records"))
    done = subprocess.run(
        [command, "purge", "--older-than-days", "-1"],
        env=airflow_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "--older-than-days" in done.stderr
