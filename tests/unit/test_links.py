"""The "Video" and "Venice job" extra links: relative, URL-encoded, per map index, stored before deferring."""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import structlog
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.sdk import DAG, BaseOperatorLink

from airflow_provider_venice import get_provider_info
from airflow_provider_venice.links import DELIVERY_LINKS, VeniceJobLink, VeniceVideoLink, store_links
from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator, VeniceVideoQueueOperator
from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator
from airflow_provider_venice.version_compat import TaskDeferred
from tests.integration import s3_fixtures
from tests.integration.s3_fixtures import BUCKET, REQUESTS, T2V, FakeTaskInstance, make_context

aws_env = s3_fixtures.aws_env
moto_s3 = s3_fixtures.moto_s3
venice = s3_fixtures.venice

RUN_ID = "manual__2026-12-03T04:47:44.123456+00:00"  # a manual run: "+" and ":" must be encoded
LINKS = {"Video": "_link_venice_video", "Venice job": "_link_venice_job"}


class RecordingTaskInstance(FakeTaskInstance):
    """A task instance whose XCom pushes are kept in order."""

    def __init__(self, map_index: int = -1) -> None:
        super().__init__(map_index=map_index)
        self.run_id = RUN_ID
        self.pushed: list[tuple[str, Any]] = []

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed.append((key, value))


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, strict_parsing=True)


def generate(**kwargs: Any) -> VeniceGenerateVideoOperator:
    return VeniceGenerateVideoOperator(
        task_id="generate", **REQUESTS[T2V], s3_bucket=BUCKET, s3_key="links/0.mp4", **kwargs
    )


@pytest.mark.parametrize("map_index", [-1, 3])
@pytest.mark.parametrize(("link", "route"), [(VeniceVideoLink(), "video"), (VeniceJobLink(), "job")])
def test_a_link_is_the_relative_address_of_its_task_instance_in_the_venice_page(
    link: BaseOperatorLink, route: str, map_index: int
) -> None:
    key = TaskInstanceKey("venice_dag", "generate", RUN_ID, try_number=2, map_index=map_index)

    url = link.get_link(generate(), ti_key=key)

    assert url == (
        f"venice/links/{route}?dag_id=venice_dag"
        "&run_id=manual__2026-12-03T04%3A47%3A44.123456%2B00%3A00"
        f"&task_id=generate&map_index={map_index}"
    )
    assert query(url) == {
        "dag_id": ["venice_dag"],
        "run_id": [RUN_ID],  # the "+" survives decoding (unencoded it would read as a space)
        "task_id": ["generate"],
        "map_index": [str(map_index)],
    }


def test_a_link_depends_on_the_task_instance_only() -> None:
    """Airflow rewrites links after a deferral and on each try: no state of the operator may show."""
    a = TaskInstanceKey("d", "t", RUN_ID, try_number=1, map_index=0)
    b = TaskInstanceKey("d", "t", RUN_ID, try_number=7, map_index=0)
    runtime_ti = RecordingTaskInstance(map_index=0)  # what the worker passes as ti_key
    runtime_ti.dag_id, runtime_ti.task_id = "d", "t"
    for link in DELIVERY_LINKS:
        urls = {
            link.get_link(op, ti_key=key) for op in (generate(), generate()) for key in (a, b, runtime_ti)
        }
        assert len(urls) == 1, urls


def test_an_unmapped_task_instance_without_map_index_is_minus_one() -> None:
    ti = RecordingTaskInstance()
    ti.map_index = None  # type: ignore[assignment]
    assert query(VeniceVideoLink().get_link(generate(), ti_key=ti))["map_index"] == ["-1"]


def test_the_delivering_operators_declare_both_links_with_fixed_xcom_keys() -> None:
    for operator in (VeniceGenerateVideoOperator, VeniceVideoToS3Operator):
        assert {link.name: link.xcom_key for link in operator.operator_extra_links} == LINKS
    # the queue operator delivers nothing, so it has no video to link to
    assert not VeniceVideoQueueOperator.operator_extra_links


def test_the_serialized_dag_names_each_link_by_its_xcom_key_for_mapped_tasks_too() -> None:
    """The API server reads links from XCom by these keys; it never runs our code."""
    from airflow.serialization import serialized_objects as ser

    serializer = getattr(ser, "DagSerialization", None) or ser.SerializedDAG
    with DAG("venice_links", schedule=None) as dag:
        VeniceGenerateVideoOperator.partial(
            task_id="mapped", model=T2V, duration="5s", s3_bucket=BUCKET, s3_key="k/{{ ti.map_index }}.mp4"
        ).expand(prompt=["a", "b"])
        VeniceVideoToS3Operator(task_id="to_s3", model=T2V, queue_id="q-1", s3_bucket=BUCKET, s3_key="k.mp4")
    tasks = [task.get("__var", task) for task in serializer.to_dict(dag)["dag"]["tasks"]]
    assert {task["task_id"]: task["_operator_extra_links"] for task in tasks} == {
        "mapped": LINKS,
        "to_s3": LINKS,
    }


def test_the_provider_info_lists_both_links_and_each_imports() -> None:
    names = get_provider_info()["extra-links"]
    classes = [
        getattr(importlib.import_module(path.rpartition(".")[0]), path.rpartition(".")[2]) for path in names
    ]
    assert all(issubclass(cls, BaseOperatorLink) for cls in classes)
    assert sorted(cls().name for cls in classes) == sorted(LINKS)


def test_store_links_pushes_what_airflow_would_store() -> None:
    ti = RecordingTaskInstance(map_index=3)
    op = generate()

    store_links(op, {"ti": ti})

    assert ti.pushed == [(link.xcom_key, link.get_link(op, ti_key=ti)) for link in DELIVERY_LINKS]


def test_store_links_never_fails_the_task() -> None:
    class Refusing(RecordingTaskInstance):
        def xcom_push(self, key: str, value: Any) -> None:
            raise RuntimeError("API server unavailable")

    store_links(generate(), {})  # no task instance: nothing to do
    with structlog.testing.capture_logs() as logs:
        store_links(generate(), {"ti": Refusing()})
    warned = [entry["event"] for entry in logs if entry["log_level"] == "warning"]
    assert warned == [f"Could not store the {name!r} link before deferring." for name in LINKS]


def test_a_deferring_generate_stores_its_links_before_it_defers(venice, moto_s3) -> None:
    venice(job_seconds=600)
    ti = RecordingTaskInstance(map_index=2)

    with pytest.raises(TaskDeferred):
        generate(deferrable=True).execute(make_context(ti=ti))

    links = {key: value for key, value in ti.pushed if key.startswith("_link_")}
    assert links == {
        "_link_venice_video": VeniceVideoLink().get_link(generate(), ti_key=ti),
        "_link_venice_job": VeniceJobLink().get_link(generate(), ti_key=ti),
    }
    assert query(links["_link_venice_video"])["map_index"] == ["2"]
