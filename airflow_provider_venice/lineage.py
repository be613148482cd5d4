"""OpenLineage of the operators that deliver a Venice video: the S3 object written, and the Venice job.

Only the OpenLineage provider calls ``get_openlineage_facets_on_complete``/``_on_failure``, after a try,
in a process it forks from the task's (for a deferred task, the one that resumed). OpenLineage is
imported inside them, so without the ``openlineage`` extra nothing here changes what a task does.

The run's output is the video, ``OutputDataset("s3://<bucket>", "<key>")`` with its size: the uploads use
boto3 directly, so no hook lineage reports it, and an operator that returns datasets replaces hook
lineage anyway. The manifest and poster beside it are not outputs of their own: they describe this
dataset rather than feed anything, and would triple the nodes of every lineage graph. The Venice job is
the run facet ``venice_job`` (:class:`~airflow_provider_venice.lineage_facets.VeniceJobRunFacet`);
the error itself is in the ``errorMessage`` facet that the provider adds to every failure.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from airflow_provider_venice.version_compat import AirflowException

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.generated.base import OutputDatasetFacet

    from airflow_provider_venice.job import VeniceJob
    from airflow_provider_venice.lifecycle.record import JobRecord

FACET_KEY = "venice_job"
ERROR_CHARS = 1000
_Method = TypeVar("_Method", bound="Callable[..., dict[str, Any]]")


@dataclass(frozen=True)
class RunFacts:
    """What a try knew of its video and Venice job when it ended; None where it did not know."""

    bucket: str | None = None
    key: str | None = None
    size_bytes: int | None = None
    queue_id: str | None = None
    model: str | None = None
    cost_usd: float | None = None
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    stage: str | None = None
    error: str | None = None

    @classmethod
    def of_delivery(cls, result: Mapping[str, Any], stage: str | None, error: str | None = None) -> RunFacts:
        """Read the facts from a delivering task's result (its XCom form)."""
        return cls(
            bucket=result.get("bucket"),
            key=result.get("key"),
            size_bytes=result.get("size_bytes"),
            queue_id=result.get("queue_id"),
            model=result.get("model"),
            cost_usd=result.get("quote_usd"),
            duration_s=result.get("duration_s"),
            width=result.get("width"),
            height=result.get("height"),
            stage=stage,
            error=error,
        )

    def lineage(self) -> OperatorLineage[Any, Any]:
        """Return the OpenLineage of the run: the video as output (when known), the job as a facet."""
        from airflow.providers.common.compat.openlineage.facet import (
            OutputDataset,
            OutputStatisticsOutputDatasetFacet,
        )
        from airflow.providers.openlineage.extractors import OperatorLineage

        from airflow_provider_venice.lineage_facets import VeniceJobRunFacet

        outputs = []
        if self.bucket and self.key:
            facets: dict[str, OutputDatasetFacet] = {}
            if self.size_bytes is not None:
                facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(
                    size=self.size_bytes, fileCount=1
                )
            outputs.append(OutputDataset(namespace=f"s3://{self.bucket}", name=self.key, outputFacets=facets))
        facet = VeniceJobRunFacet(
            queue_id=self.queue_id,
            model=self.model,
            cost_usd=self.cost_usd,
            duration_s=self.duration_s,
            width=self.width,
            height=self.height,
            stage=self.stage,
            error=self.error,
        )
        return OperatorLineage(outputs=outputs, run_facets={FACET_KEY: facet})


class DeliveryLineageMixin:
    """OpenLineage methods of an operator that delivers a video to S3 (``s3_bucket``, ``s3_key``, ...).

    The provider calls them in a process forked from the task's, where the task's channel to Airflow
    (XComs, the task state store) must not be used; so they do no I/O. The operator decorates ``execute``
    (and ``execute_complete``) with :func:`kept_for_lineage`, which keeps the try's result on it, or, on
    a failure, its error and the job record (read while the task's process can still read it).
    """

    _lineage_result: dict[str, Any] | None = None
    _lineage_error: str | None = None
    _lineage_record: JobRecord | None = None
    _lineage_job: VeniceJob | None = None
    """The job the operator was handed, when it knows one before the record does."""

    def _lineage_stage_when_done(self) -> str:
        """Return the stage a successful try leaves the job at."""
        return "completed"

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        """Return the delivered video as output and the Venice job as the ``venice_job`` run facet."""
        if self._lineage_result is not None:
            return RunFacts.of_delivery(self._lineage_result, self._lineage_stage_when_done()).lineage()
        return self._facts_known().lineage()

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        """Return the destination (with its size once delivered) and what is known of the job."""
        return self._facts_known().lineage()

    def _facts_known(self) -> RunFacts:
        from airflow_provider_venice.lifecycle.deliver import Delivery
        from airflow_provider_venice.lifecycle.destination import Destination

        try:
            destination: Destination | None = Destination.of_task(self)
        except AirflowException:  # an invalid bucket or key: the run wrote nothing anywhere
            destination = None
        record = self._lineage_record
        # nothing to write to, or a record of another request or destination (a changed, cleared task)
        if destination is None or (
            record is not None and record.get("destination") not in (None, destination.uri)
        ):
            record = None
        job = (record.job if record else None) or self._lineage_job
        stage = record.stage.value if record and record.stage else None
        delivery = Delivery.from_record(record.get("delivery")) if record else None
        if delivery is not None and job is not None:
            return RunFacts.of_delivery(delivery.result(job), stage, self._lineage_error)
        return RunFacts(
            bucket=destination.bucket if destination else None,
            key=destination.key if destination else None,
            queue_id=job.queue_id if job else None,
            model=job.model if job else None,
            cost_usd=job.quote_usd if job else None,
            stage=stage,
            error=self._lineage_error,
        )


def kept_for_lineage(method: _Method) -> _Method:
    """Keep what an ``execute`` method returned, or the error it raised, for the OpenLineage events.

    On a failure, and only when OpenLineage is on, the job record is read once more (the stage the job
    reached, its queue_id), because the OpenLineage methods run where it cannot be read. A deferral
    (``TaskDeferred`` is a BaseException) passes through untouched; the error is re-raised as it was.
    """

    @functools.wraps(method)
    def run(
        self: DeliveryLineageMixin, context: Mapping[str, Any], *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        self._lineage_result, self._lineage_error, self._lineage_record = None, None, None
        try:
            result = method(self, context, *args, **kwargs)
        except Exception as exc:
            self._lineage_error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
            self._lineage_record = _job_record(context, self) if _openlineage_on() else None
            raise
        self._lineage_result = result
        return result

    return cast("_Method", run)


def _openlineage_on() -> bool:
    """Whether the OpenLineage provider is installed and will send events from this task."""
    try:
        from airflow.providers.openlineage.conf import is_disabled
    except ImportError:
        return False
    try:
        return not is_disabled()
    except Exception:  # a broken OpenLineage configuration is OpenLineage's to report
        return False


def _job_record(context: Mapping[str, Any], operator: Any) -> JobRecord | None:
    """Read the task's job record, or None: a failing read must not hide the task's own error."""
    from airflow_provider_venice.lifecycle.record import JobRecord

    try:
        return JobRecord(context, operator.log)
    except Exception:
        operator.log.debug("Could not read the Venice job record for OpenLineage.", exc_info=True)
        return None
