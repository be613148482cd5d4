"""OpenLineage events and extra links of example DAGs run with ``airflow dags test``.

The stack of the example-DAG runs (the emulator and an S3 server as processes, a fresh Airflow home)
with the OpenLineage provider's file transport writing one event per line. A run's COMPLETE event of a
generate task carries the S3 video with its size and the ``venice_job`` facet; a job that fails after
it was paid for gives a FAIL event naming it. The extra links are read from the run's XComs in the
metadata database (SQLite), one pair per map index.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from tests.integration.example_stack import BUCKET, RUN_TIMEOUT_S, example_stack, run_dag

pytest.importorskip(
    "airflow.providers.openlineage",
    reason="the OpenLineage provider (the openlineage extra) is not installed in this environment",
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
NAMESPACE = "venice-test"
WAIT_JOB_S = 12  # long enough that the links are read while the job still runs
LINK_KEYS = {"_link_venice_video": "video", "_link_venice_job": "job"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The example stack with OpenLineage's file transport appending every event to ``ol.jsonl``."""
    home = tmp_path_factory.mktemp("airflow_home")
    events = home / "ol.jsonl"
    transport = {"type": "file", "log_file_path": str(events), "append": True}
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": NAMESPACE,
    }
    with example_stack(home, airflow=AIRFLOW, dags_folder=ROOT / "dags_examples", base_env=env) as stack:
        yield {**stack, "events": events, "db": home / "airflow.db"}


def task_events(stack: dict[str, Any], job_name: str, run_id: str) -> list[dict[str, Any]]:
    """The OpenLineage events of one task (``<dag_id>.<task_id>``) in one DAG run."""
    lines = stack["events"].read_text().splitlines() if stack["events"].exists() else []
    events = [json.loads(line) for line in lines if line.strip()]
    return [
        event
        for event in events
        if event["job"]["name"] == job_name
        and event["run"]["facets"]["airflow"]["dagRun"]["run_id"] == run_id
    ]


def last_run_id(stack: dict[str, Any], dag_id: str) -> str:
    with sqlite3.connect(stack["db"]) as db:
        [(run_id,)] = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchall()
    return str(run_id)


def link_xcoms(stack: dict[str, Any], dag_id: str, run_id: str, task_id: str) -> dict[tuple[int, str], str]:
    """The stored extra links of a task in a run: ``{(map_index, xcom key): url}``."""
    with sqlite3.connect(stack["db"], timeout=10) as db:
        rows = db.execute(
            "SELECT map_index, key, value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? "
            "AND key IN (?, ?)",
            (dag_id, run_id, task_id, *LINK_KEYS),
        ).fetchall()
    return {(map_index, key): json.loads(value) for map_index, key, value in rows}


def emulator_jobs(stack: dict[str, Any]) -> list[dict[str, Any]]:
    """The jobs queued (paid for) since the emulator was last reset."""
    jobs: list[dict[str, Any]] = httpx.get(f"{stack['emulator']}/_emulator/jobs").json()["jobs"]
    return jobs


def run_failing(stack: dict[str, Any], dag_id: str, faults: list[dict[str, Any]]) -> str:
    """Run a DAG that must fail with ``faults`` planned at the emulator; return its output."""
    httpx.post(f"{stack['emulator']}/_emulator/reset", json={}).raise_for_status()
    httpx.post(f"{stack['emulator']}/_emulator/faults", json={"faults": faults}).raise_for_status()
    done = subprocess.run(
        [stack["airflow"], "dags", "test", dag_id],
        env=stack["env"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-5000:]
    return output


def test_each_mapped_generate_reports_its_video_and_job_and_stores_its_links(stack: dict[str, Any]) -> None:
    dag_id = "venice_batch_on_budget"
    run_dag(stack, dag_id)
    run_id = last_run_id(stack, dag_id)

    events = task_events(stack, f"{dag_id}.generate", run_id)
    complete = {
        event["run"]["facets"]["airflow"]["taskInstance"]["map_index"]: event
        for event in events
        if event["eventType"] == "COMPLETE"
    }
    assert sorted(complete) == [0, 1, 2]
    paid = {job["queue_id"] for job in emulator_jobs(stack)}
    reported = set()
    for map_index, event in complete.items():
        assert event["job"]["namespace"] == NAMESPACE
        [output] = event["outputs"]
        head = stack["s3"].head_object(Bucket=BUCKET, Key=output["name"])
        assert output["namespace"] == f"s3://{BUCKET}"
        assert output["name"].endswith(f"-{map_index}.mp4")
        statistics = output["outputFacets"]["outputStatistics"]
        assert (statistics["size"], statistics["fileCount"]) == (head["ContentLength"], 1)
        facet = event["run"]["facets"]["venice_job"]
        assert facet["queue_id"] == head["Metadata"]["venice-queue-id"]
        assert facet["model"] == "wan-2-7-text-to-video"
        assert facet["cost_usd"] > 0
        assert facet["stage"] == "completed"
        assert facet["duration_s"] == pytest.approx(5.0, abs=0.1)
        assert facet["width"] > 0
        assert facet["height"] > 0
        assert facet["_schemaURL"].endswith("VeniceJobRunFacet:1-0-0")
        reported.add(facet["queue_id"])
    assert reported == paid

    links = link_xcoms(stack, dag_id, run_id, "generate")
    assert sorted(links) == [(index, key) for index in range(3) for key in sorted(LINK_KEYS)]
    for (map_index, key), url in links.items():
        route, _, query = url.partition("?")
        assert route == f"venice/links/{LINK_KEYS[key]}"
        assert parse_qs(query) == {
            "dag_id": [dag_id],
            "run_id": [run_id],
            "task_id": ["generate"],
            "map_index": [str(map_index)],
        }


def test_a_job_failing_after_payment_sends_a_fail_event_naming_it(stack: dict[str, Any]) -> None:
    dag_id = "venice_text_to_video"
    # Venice refuses to report on the job it just queued: a permanent error, so the task fails at once
    output = run_failing(stack, dag_id, [{"endpoint": "/video/retrieve", "status": 400, "times": 10}])
    run_id = last_run_id(stack, dag_id)
    [queued] = emulator_jobs(stack)

    events = task_events(stack, f"{dag_id}.generate_video", run_id)
    [failed] = [event for event in events if event["eventType"] == "FAIL"] or pytest.fail(output[-8000:])

    [output] = failed["outputs"]
    assert output["namespace"] == f"s3://{BUCKET}"
    assert output["name"].startswith(f"videos/{dag_id}/")
    assert "outputStatistics" not in output.get("outputFacets", {})  # nothing was written
    facets = failed["run"]["facets"]
    venice_job = facets["venice_job"]
    assert venice_job["queue_id"] == queued["queue_id"]
    assert venice_job["stage"] == "queued"
    assert venice_job["cost_usd"] > 0
    assert venice_job["error"].startswith("AirflowFailException: ")
    assert queued["queue_id"] in facets["errorMessage"]["message"]  # added by the provider
    # the links were stored for the failed task too: the page says what to do with the paid job
    assert set(link_xcoms(stack, dag_id, run_id, "generate_video")) == {(-1, key) for key in LINK_KEYS}


def test_the_links_are_stored_while_the_task_waits_for_its_job(stack: dict[str, Any]) -> None:
    """Read the links from the database while ``airflow dags test`` runs the trigger inline."""
    dag_id = "venice_text_to_video"
    with sqlite3.connect(stack["db"]) as db:
        earlier = {row[0] for row in db.execute("SELECT run_id FROM dag_run WHERE dag_id = ?", (dag_id,))}
    httpx.post(f"{stack['emulator']}/_emulator/reset", json={"job_seconds": WAIT_JOB_S}).raise_for_status()
    command = [stack["airflow"], "dags", "test", dag_id]
    with subprocess.Popen(
        command, env=stack["env"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as process:
        try:
            seen = links_while_waiting(stack, dag_id, earlier, process)
        finally:
            assert process.wait(timeout=RUN_TIMEOUT_S) == 0
    run_id, links, job = seen
    assert job["status"] == "PROCESSING"  # read while the task was waiting for Venice
    assert sorted(links) == [(-1, key) for key in sorted(LINK_KEYS)]
    for url in links.values():
        assert parse_qs(url.partition("?")[2])["run_id"] == [run_id]


def links_while_waiting(
    stack: dict[str, Any], dag_id: str, earlier: set[str], process: subprocess.Popen[bytes]
) -> tuple[str, dict[tuple[int, str], str], dict[str, Any]]:
    """Poll until the new run's generate task has stored its links; return them with the job then."""
    while process.poll() is None:
        with sqlite3.connect(stack["db"], timeout=10) as db:
            runs = {row[0] for row in db.execute("SELECT run_id FROM dag_run WHERE dag_id = ?", (dag_id,))}
        [run_id] = runs - earlier or [None]
        links = link_xcoms(stack, dag_id, run_id, "generate_video") if run_id else {}
        if len(links) == len(LINK_KEYS):
            [job] = emulator_jobs(stack)
            return str(run_id), links, job
        time.sleep(0.2)
    raise AssertionError("the run ended before its links were seen")


def test_the_links_are_registered_with_the_providers_manager(stack: dict[str, Any]) -> None:
    done = subprocess.run(
        [stack["airflow"], "providers", "links", "-o", "json"],
        env=stack["env"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    listed = {row["extra_link_class_name"] for row in json.loads(done.stdout[done.stdout.index("[") :])}
    assert {
        "airflow_provider_venice.links.VeniceVideoLink",
        "airflow_provider_venice.links.VeniceJobLink",
    } <= listed
