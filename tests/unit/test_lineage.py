"""OpenLineage of the generate and to-S3 operators: the S3 video as output, the Venice job as a run facet.

The operators run against the in-process emulator and moto's in-process S3 (no network, no Airflow
database); the test then calls the methods the OpenLineage provider calls after a try, with a task
instance whose context holds the same task state store, and compares the returned ``OperatorLineage``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.openlineage.facet import (
    OutputDataset,
    OutputStatisticsOutputDatasetFacet,
)
from airflow.providers.openlineage.conf import is_disabled
from airflow.providers.openlineage.extractors import OperatorLineage
from airflow.providers.openlineage.extractors.base import DefaultExtractor
from openlineage.client.serde import Serde

from airflow_provider_venice.lineage import RunFacts
from airflow_provider_venice.lineage_facets import SCHEMA_URL, VeniceJobRunFacet
from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator
from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException, TaskDeferred
from tests.integration import s3_fixtures
from tests.integration.s3_fixtures import AWS_ENV, BUCKET, REQUESTS, T2V, FakeStore, make_context, queue_job

aws_env = s3_fixtures.aws_env
moto_s3 = s3_fixtures.moto_s3
venice = s3_fixtures.venice

ROOT = Path(__file__).resolve().parents[2]
KEY = "lineage/0.mp4"


# The methods run in a process forked from the task's, where they must not read anything through the task
# instance (its channel to Airflow is not theirs to use): they get one that has nothing to read.
TASK_INSTANCE = object()


@pytest.fixture
def openlineage_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenLineage configured (a transport is set), as when the provider would send events.

    The provider does not cache its configuration under pytest, so the variable takes effect at once.
    """
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "console")
    assert not is_disabled()


def generate(**kwargs: Any) -> VeniceGenerateVideoOperator:
    arguments = {"s3_bucket": BUCKET, "s3_key": KEY, "deferrable": False, "window_interval_s": 0.05, **kwargs}
    return VeniceGenerateVideoOperator(task_id="generate", **REQUESTS[T2V], **arguments)


def expected(size: int | None = None, *, key: str = KEY, facet: dict[str, Any]) -> OperatorLineage[Any, Any]:
    statistics = {"outputStatistics": OutputStatisticsOutputDatasetFacet(size=size, fileCount=1)}
    output = OutputDataset(namespace=f"s3://{BUCKET}", name=key, outputFacets=statistics if size else {})
    return OperatorLineage(outputs=[output], run_facets={"venice_job": VeniceJobRunFacet(**facet)})


def delivered_facet(result: dict[str, Any], stage: str = "completed") -> dict[str, Any]:
    return {
        "queue_id": result["queue_id"],
        "model": T2V,
        "cost_usd": result["quote_usd"],
        "duration_s": result["duration_s"],
        "width": result["width"],
        "height": result["height"],
        "stage": stage,
    }


def test_run_facts_make_the_s3_output_with_its_size_and_the_venice_job_facet() -> None:
    facts = RunFacts("videos", "a/b.mp4", 1234, "q-1", T2V, 0.35, 5.0, 1280, 720, "completed")

    lineage = facts.lineage()

    assert lineage == OperatorLineage(
        outputs=[
            OutputDataset(
                namespace="s3://videos",
                name="a/b.mp4",
                outputFacets={"outputStatistics": OutputStatisticsOutputDatasetFacet(size=1234, fileCount=1)},
            )
        ],
        run_facets={
            "venice_job": VeniceJobRunFacet(
                queue_id="q-1",
                model=T2V,
                cost_usd=0.35,
                duration_s=5.0,
                width=1280,
                height=720,
                stage="completed",
            )
        },
    )
    # as the event carries it: the facet's own fields, its schema, no empty ones
    facet = Serde.to_dict(lineage.run_facets["venice_job"])
    assert facet.pop("_producer")
    assert facet == {
        "_schemaURL": SCHEMA_URL,
        "queue_id": "q-1",
        "model": T2V,
        "cost_usd": 0.35,
        "duration_s": 5.0,
        "width": 1280,
        "height": 720,
        "stage": "completed",
    }


def test_unknown_destination_has_no_output() -> None:
    assert RunFacts(queue_id="q-1").lineage().outputs == []


def test_a_generated_video_is_the_output_with_its_size_and_the_job_its_facet(venice, moto_s3) -> None:
    venice()
    context = make_context()
    op = generate()
    result = op.execute(context)

    lineage = op.get_openlineage_facets_on_complete(TASK_INSTANCE)

    assert result["size_bytes"] > 0
    assert result["duration_s"] > 0
    assert result["width"] > 0
    assert lineage == expected(result["size_bytes"], facet=delivered_facet(result))


def test_the_resumed_process_of_a_deferred_generate_reports_the_delivery(venice, moto_s3) -> None:
    emulator = venice(job_seconds=600)
    store = FakeStore()
    first = generate(deferrable=True)
    with pytest.raises(TaskDeferred):
        first.execute(make_context(store))
    assert first._lineage_error is None  # a deferral is not a failure
    [job] = emulator.jobs()
    emulator.advance(1200)

    resumed = generate(deferrable=True)  # the resumed try runs on a fresh operator in another process
    context = make_context(store)
    event = {"status": "success", "queue_id": job["queue_id"], "model": T2V}
    result = resumed.execute_complete(context, event)

    lineage = resumed.get_openlineage_facets_on_complete(TASK_INSTANCE)
    assert lineage == expected(result["size_bytes"], facet=delivered_facet(result))


def test_a_job_that_fails_after_payment_reports_its_queue_id_stage_and_error(
    venice, moto_s3, openlineage_on
) -> None:
    emulator = venice(job_seconds=600)
    emulator.add_faults({"endpoint": "/video/retrieve", "status": 400, "times": 5})
    context = make_context()
    op = generate()
    with pytest.raises(AirflowFailException) as failed:
        op.execute(context)

    lineage = op.get_openlineage_facets_on_failure(TASK_INSTANCE)

    [job] = emulator.jobs()
    facet = {"queue_id": job["queue_id"], "model": T2V, "cost_usd": 0.35, "stage": "queued"}
    error = f"AirflowFailException: {failed.value}"
    assert lineage == expected(facet={**facet, "error": error})
    assert job["queue_id"] in error


def test_a_delivered_video_whose_release_failed_reports_its_size(venice, moto_s3, openlineage_on) -> None:
    emulator = venice()
    emulator.add_faults({"endpoint": "/video/complete", "status": 503})
    context = make_context()
    op = generate()
    with pytest.raises(AirflowException):
        op.execute(context)

    lineage = op.get_openlineage_facets_on_failure(TASK_INSTANCE)

    delivery = context["task_state_store"].get("venice_job")["delivery"]
    [output] = lineage.outputs
    assert output.outputFacets["outputStatistics"].size == delivery["size_bytes"] > 0
    facet = lineage.run_facets["venice_job"]
    assert (facet.stage, facet.queue_id) == ("delivered", emulator.jobs()[0]["queue_id"])
    assert facet.width > 0
    assert facet.error.startswith("AirflowException: ")


def test_a_request_refused_before_payment_reports_no_job(venice, moto_s3, openlineage_on) -> None:
    venice()
    context = make_context()
    op = generate(max_usd=0.01)
    with pytest.raises(AirflowFailException) as failed:
        op.execute(context)

    lineage = op.get_openlineage_facets_on_failure(TASK_INSTANCE)

    assert lineage == expected(facet={"error": f"AirflowFailException: {failed.value}"})


def test_without_openlineage_a_failure_reads_nothing_more(venice, moto_s3) -> None:
    emulator = venice(job_seconds=600)
    emulator.add_faults({"endpoint": "/video/retrieve", "status": 400, "times": 5})
    op = generate()
    with pytest.raises(AirflowFailException):
        op.execute(make_context())

    assert op._lineage_record is None  # no extra read of the job record: nothing changes without it
    assert op.get_openlineage_facets_on_failure(TASK_INSTANCE).run_facets["venice_job"].queue_id is None


@pytest.mark.parametrize(("complete", "stage"), [(True, "completed"), (False, "delivered")])
def test_to_s3_reports_the_video_and_how_far_the_job_got(venice, moto_s3, complete, stage) -> None:
    emulator = venice()
    job = queue_job(emulator)
    context = make_context()
    op = VeniceVideoToS3Operator(task_id="to_s3", job=job, s3_bucket=BUCKET, s3_key=KEY, complete=complete)
    result = op.execute(context)

    lineage = op.get_openlineage_facets_on_complete(TASK_INSTANCE)

    assert lineage == expected(result["size_bytes"], facet=delivered_facet(result, stage))


def test_to_s3_failing_at_its_arguments_still_names_the_job_it_was_handed(
    venice, moto_s3, openlineage_on
) -> None:
    emulator = venice()
    job = queue_job(emulator)
    context = make_context()
    op = VeniceVideoToS3Operator(task_id="to_s3", job=job, s3_bucket="Not_A_Bucket", s3_key=KEY)
    with pytest.raises(AirflowFailException):
        op.execute(context)

    lineage = op.get_openlineage_facets_on_failure(TASK_INSTANCE)

    assert lineage.outputs == []  # nothing was or could be written
    facet = lineage.run_facets["venice_job"]
    assert (facet.queue_id, facet.model, facet.stage) == (job["queue_id"], T2V, None)
    assert facet.error.startswith("AirflowFailException: s3_bucket:")


def test_the_openlineage_provider_finds_the_methods_and_gets_the_same_lineage(venice, moto_s3) -> None:
    venice()
    context = make_context()
    op = generate()
    result = op.execute(context)

    extractor = DefaultExtractor(op)

    assert extractor.extract_on_complete(TASK_INSTANCE) == expected(
        result["size_bytes"], facet=delivered_facet(result)
    )
    assert extractor.extract() == OperatorLineage()  # nothing at start: the key may not even be rendered


NO_OPENLINEAGE = textwrap.dedent(
    """
    import sys

    # OpenLineage's client made unimportable before anything imports it, as without the openlineage extra
    # (the provider's own package stays: Airflow's configuration reads every installed provider's info)
    sys.modules["openlineage"] = None

    import json
    import os

    import boto3
    from moto import mock_aws

    from airflow_provider_venice.hooks.venice import register_transports
    from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator
    from airflow_provider_venice.testing import VeniceEmulator
    from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator
    from tests.integration.s3_fixtures import BUCKET, REQUESTS, T2V, make_context, venice_connection

    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        emulator = VeniceEmulator(job_seconds=0)
        register_transports(emulator.base_url, emulator.sync_transport(), emulator.async_transport())
        os.environ["AIRFLOW_CONN_VENICE_DEFAULT"] = venice_connection(emulator.base_url)
        op = VeniceGenerateVideoOperator(
            task_id="generate", **REQUESTS[T2V], s3_bucket=BUCKET, s3_key="no-ol.mp4", deferrable=False,
            window_interval_s=0.05,
        )
        result = op.execute(make_context())
    loaded = sorted(name for name in sys.modules if name.startswith("airflow_provider_venice.lineage"))
    try:
        import airflow_provider_venice.lineage_facets
        facets = "imported"
    except Exception as exc:
        facets = type(exc).__name__
    print(json.dumps({"size": result["size_bytes"], "loaded": loaded, "facets": facets,
                      "links": [link.name for link in VeniceVideoToS3Operator.operator_extra_links]}))
    """
)


def test_without_openlineage_the_operators_import_and_deliver_and_nothing_of_it_loads() -> None:
    env = {
        **{
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("AIRFLOW_CONN_", "AWS_"))
        },
        **AWS_ENV,
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws"}),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-c", NO_OPENLINEAGE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])

    assert found["size"] > 0
    # only our own OpenLineage-free module; the facet module, which needs OpenLineage, was never imported
    assert found["loaded"] == ["airflow_provider_venice.lineage"]
    assert found["facets"] == "TypeError"  # it cannot be: RunFacet is a function without OpenLineage
    assert found["links"] == ["Video", "Venice job"]
