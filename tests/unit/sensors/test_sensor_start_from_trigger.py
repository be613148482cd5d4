"""VeniceVideoSensor(start_from_trigger=True): the trigger's start arguments, and every fallback.

Airflow 3.3 creates the trigger from ``start_trigger_args`` at scheduling time and renders, in the
triggerer, the sensor's templated fields that are also trigger keywords and trigger attributes. Where
that cannot happen (3.1, 3.2, mapped tasks) ``execute`` runs on a worker and defers as usual.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import structlog
from airflow.sdk import DAG

from airflow_provider_venice.hooks.venice import register_transports, unregister_transports
from airflow_provider_venice.lifecycle.poll import DEFERRAL_GRACE_S
from airflow_provider_venice.operators.video import VeniceVideoQueueOperator
from airflow_provider_venice.sensors.start_from_trigger import TRIGGER_TEMPLATE_FIELDS
from airflow_provider_venice.sensors.video import VeniceVideoSensor
from airflow_provider_venice.triggers.video import VeniceVideoTrigger
from airflow_provider_venice.version_compat import AIRFLOW_V_3_3_PLUS, AirflowFailException, TaskDeferred

MODEL = "wan-2-7-text-to-video"
BASE_URL = "https://venice.test/api/v1"
CLASSPATH = "airflow_provider_venice.triggers.video.VeniceVideoTrigger"


def dag() -> DAG:
    return DAG("start_from_trigger_test", schedule=None, start_date=datetime(2026, 1, 1))


def started(**kwargs: Any) -> VeniceVideoSensor:
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("queue_id", "{{ dag_run.conf['queue_id'] }}")
    kwargs.setdefault("task_id", "wait")
    return VeniceVideoSensor(start_from_trigger=True, **kwargs)


def test_off_by_default_and_on_the_class() -> None:
    assert VeniceVideoSensor.start_from_trigger is False
    assert VeniceVideoSensor.start_trigger_args is None  # a mapped sensor sees this: no start from trigger
    plain = VeniceVideoSensor(task_id="wait", model=MODEL, queue_id="q-1")
    assert plain.start_from_trigger is False
    assert plain.start_trigger_args is None


def test_start_trigger_args_name_the_trigger_and_its_templated_fields() -> None:
    s = started(timeout=3600, window_interval_s=2.5, venice_conn_id="venice_other")
    assert s.start_from_trigger is True
    args = s.start_trigger_args
    assert args is not None
    assert (args.trigger_cls, args.next_method, args.next_kwargs) == (CLASSPATH, "execute_complete", None)
    assert args.timeout == timedelta(seconds=3600 + DEFERRAL_GRACE_S)
    kwargs = args.trigger_kwargs
    assert kwargs == {  # the fields not given (job, download_url) are left out: the trigger's are None
        "model": MODEL,
        "queue_id": "{{ dag_run.conf['queue_id'] }}",
        "venice_conn_id": "venice_other",
        "window_interval_s": 2.5,
    }
    assert json.loads(json.dumps(kwargs)) == kwargs
    trigger = VeniceVideoTrigger(**kwargs)  # what the triggerer builds, before rendering
    assert (trigger.job, trigger.download_url) == (None, None)
    # the triggerer renders operator template_fields that are trigger kwargs *and* trigger attributes
    shared = [f for f in s.template_fields if f in kwargs and hasattr(trigger, f)]
    assert sorted(shared) == ["model", "queue_id", "venice_conn_id"]
    assert trigger.queue_id == "{{ dag_run.conf['queue_id'] }}"


@pytest.mark.parametrize(
    ("given", "templated"),
    [
        ({"model": MODEL, "queue_id": "q-{{ ds }}"}, ["model", "queue_id", "venice_conn_id"]),
        ({"job": "{{ ti.xcom_pull(task_ids='queue') }}"}, ["job", "venice_conn_id"]),
        (
            {"model": MODEL, "queue_id": "q-1", "download_url": "{{ params.url }}"},
            ["model", "queue_id", "download_url", "venice_conn_id"],
        ),
    ],
)
def test_only_the_fields_given_are_templated_and_handed_to_the_trigger(
    given: dict[str, Any], templated: list[str]
) -> None:
    """A field left out of the serialised task comes back as None in every DAG copy the triggerer keeps
    per waiting task, at the cost of a larger attribute dict each: fields not given are not templated."""
    s = VeniceVideoSensor(task_id="wait", start_from_trigger=True, **given)
    assert list(s.template_fields) == templated
    assert s.start_trigger_args is not None
    kwargs = s.start_trigger_args.trigger_kwargs or {}
    assert sorted(kwargs) == sorted([*templated, "window_interval_s"])
    plain = VeniceVideoSensor(task_id="plain", **given)  # without start_from_trigger: the class's fields
    assert plain.template_fields == VeniceVideoSensor.template_fields == TRIGGER_TEMPLATE_FIELDS


def test_task_outputs_become_xcom_pull_templates_with_the_dependency_kept() -> None:
    with dag():
        queue = VeniceVideoQueueOperator(task_id="queue", model=MODEL, prompt="a fox", duration="5s")
        whole = started(task_id="whole", job=queue.output, queue_id=None, model=None)
        parts = started(task_id="parts", queue_id=queue.output["queue_id"])
    assert whole.start_trigger_args is not None
    assert parts.start_trigger_args is not None
    assert whole.start_trigger_args.trigger_kwargs["job"] == (
        "{{ ti.xcom_pull(task_ids='queue', key='return_value', map_indexes=-1) }}"
    )
    assert parts.start_trigger_args.trigger_kwargs["queue_id"] == (
        "{{ ti.xcom_pull(task_ids='queue', key='queue_id', map_indexes=-1) }}"
    )
    assert whole.upstream_task_ids == parts.upstream_task_ids == {"queue"}


def test_an_output_that_is_not_a_plain_task_output_is_refused_naming_the_argument() -> None:
    with dag():
        queue = VeniceVideoQueueOperator(task_id="queue", model=MODEL, prompt="a fox", duration="5s")
        with pytest.raises(ValueError, match="start_from_trigger=True: job"):
            started(job=queue.output.map(lambda value: value), queue_id=None)


def test_start_from_trigger_needs_deferrable() -> None:
    with pytest.raises(ValueError, match="start_from_trigger=True needs deferrable=True"):
        started(deferrable=False)


def test_the_serialized_dag_keeps_the_start_arguments() -> None:
    from airflow.serialization import serialized_objects as ser

    serializer = getattr(ser, "DagSerialization", None) or ser.SerializedDAG
    with dag() as d:
        started(timeout=600)
    task = serializer.from_dict(serializer.to_dict(d)).get_task("wait")
    assert task.start_from_trigger is True
    assert task.start_trigger_args.trigger_cls == CLASSPATH
    kwargs = task.start_trigger_args.trigger_kwargs
    kwargs = kwargs.get("__var", kwargs)  # 3.3 keeps them BaseSerialization-encoded
    assert kwargs["queue_id"] == "{{ dag_run.conf['queue_id'] }}"


def test_a_mapped_sensor_keeps_the_class_arguments_so_the_scheduler_sends_it_to_a_worker() -> None:
    """Airflow 3.3.2 ignores per-instance start arguments of mapped tasks: they must not start at all."""
    with dag():
        mapped = VeniceVideoSensor.partial(task_id="wait", model=MODEL, start_from_trigger=True).expand(
            queue_id=["q-1", "q-2"]
        )
    assert mapped.start_trigger_args is None
    from airflow.serialization import serialized_objects as ser

    serializer = getattr(ser, "DagSerialization", None) or ser.SerializedDAG
    task = serializer.from_dict(serializer.to_dict(mapped.dag)).get_task("wait")
    assert task.start_trigger_args is None  # so the 3.3 scheduler's defer_task() leaves it to a worker


@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="the triggerer renders start_from_trigger fields from 3.3")
def test_the_triggerer_keeps_exactly_the_shared_template_fields() -> None:
    s = started()
    args = s.start_trigger_args
    assert args is not None
    trigger = VeniceVideoTrigger(**(args.trigger_kwargs or {}))
    trigger.task_instance = _RuntimeTI(s)  # type: ignore[assignment]
    assert sorted(trigger.template_fields) == ["model", "queue_id", "venice_conn_id"]


# --- fallback: the sensor runs on a worker anyway -------------------------------------------------------


@pytest.fixture
def processing(monkeypatch: pytest.MonkeyPatch) -> Any:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "PROCESSING", "average_execution_time": 60_000})

    conn = {"conn_type": "venice", "host": BASE_URL, "password": "sk-start", "extra": {"max_retries": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", json.dumps(conn))
    register_transports(BASE_URL, httpx.MockTransport(handle))
    yield
    unregister_transports(BASE_URL)


@pytest.mark.parametrize(
    ("map_index", "reason"),
    [(-1, "before 3.3" if not AIRFLOW_V_3_3_PLUS else "the scheduler sent it"), (0, None), (3, None)],
)
def test_on_a_worker_it_defers_as_usual_and_says_why(
    processing: Any, map_index: int, reason: str | None
) -> None:
    s = started(queue_id="q-1")
    if reason is None:
        reason = "mapped task" if AIRFLOW_V_3_3_PLUS else "before 3.3"
    with structlog.testing.capture_logs() as logs, pytest.raises(TaskDeferred) as info:
        s.execute({"ti": _WorkerTI(map_index)})  # type: ignore[arg-type]
    assert isinstance(info.value.trigger, VeniceVideoTrigger)
    assert info.value.trigger.serialize()[1]["queue_id"] == "q-1"
    texts = [f"{entry.get('event')} {entry.get('positional_args', '')}" for entry in logs]
    notes = [text for text in texts if "start_from_trigger does not apply" in text]
    assert len(notes) == 1
    assert reason in notes[0]


class _WorkerTI:
    def __init__(self, map_index: int) -> None:
        self.map_index = map_index


class _RuntimeTI:
    def __init__(self, task: VeniceVideoSensor) -> None:
        self.task, self.task_id = task, task.task_id


# --- resumed on a worker: its fields render to text, the trigger's event names the job ------------------


@pytest.mark.parametrize(
    "fields",
    [
        # job="{{ ti.xcom_pull(task_ids='queue', map_indexes=-1) }}" rendered by a worker, not natively
        {"job": "{'model': 'wan-2-7-text-to-video', 'queue_id': 'q-9', 'download_url': None}"},
        # download_url="{{ dag_run.conf.get('download_url') }}" rendered to the text "None"
        {"model": MODEL, "queue_id": "q-9", "download_url": "None"},
    ],
)
def test_resumed_from_a_trigger_start_the_job_is_the_one_the_event_names(fields: dict[str, Any]) -> None:
    s = VeniceVideoSensor(task_id="wait", start_from_trigger=True, **{"model": None, **fields})
    event = {"status": "success", "message": "video ready", "model": MODEL, "queue_id": "q-9"}
    result = s.execute_complete({}, {**event, "download_url": None, "execution_duration_ms": 5})  # type: ignore[arg-type]
    assert (result["model"], result["queue_id"], result["status"]) == (MODEL, "q-9", "COMPLETED")


def test_without_start_from_trigger_a_field_that_is_no_job_still_fails_naming_it() -> None:
    s = VeniceVideoSensor(task_id="wait", job="{'queue_id': 'q-9'}")
    event = {"status": "success", "message": "video ready", "model": MODEL, "queue_id": "q-9"}
    with pytest.raises(AirflowFailException, match="job"):
        s.execute_complete({}, event)  # type: ignore[arg-type]
