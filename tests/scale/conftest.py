"""One scaled-out deployment (``cluster.start_cluster``) shared by every scenario of the module.

Scenarios run one after another, each on its own DAG run and its own tag (prompts, S3 prefix), so the
emulator's call log and the bucket can be read per scenario. A scenario that kills a component replaces
it before the next one starts. Logs of every component are attached to a failed test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.scale.cluster import Cluster, ClusterOptions, start_cluster

BATCH_DAG = "venice_scale_batch"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Attach the tails of the components' logs (and PostgreSQL's) to every failed scale test."""
    report: pytest.TestReport = yield
    cluster = getattr(item, "funcargs", {}).get("cluster")
    if report.failed and isinstance(cluster, Cluster):
        report.sections.append(("scale deployment logs", cluster.deployment.diagnostics(BATCH_DAG)))
        report.sections.append(("postgresql log", cluster.postgres.tail()))
    return report


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """PostgreSQL, Redis, api-server, scheduler, dag-processor, 2 Celery workers, 2 triggerers."""
    started = time.monotonic()
    with start_cluster(ClusterOptions(expected_dags=(BATCH_DAG,))) as running:
        print(f"\nscale deployment up in {time.monotonic() - started:.0f}s")
        yield running
