"""The OpenLineage run facet of a Venice job. Needs the OpenLineage provider: import it only lazily.

Without OpenLineage the compat module's ``RunFacet`` is a function, and subclassing it fails, so only
:mod:`airflow_provider_venice.lineage`'s builder imports this module, from inside the methods that the
OpenLineage provider calls.
"""

from __future__ import annotations

import attrs
from airflow.providers.common.compat.openlineage.facet import RunFacet

SCHEMA_URL = "urn:airflow-provider-venice:openlineage:VeniceJobRunFacet:1-0-0"


@attrs.define
class VeniceJobRunFacet(RunFacet):
    """The Venice job a task run paid for (or tried to), keyed ``venice_job`` in the run's facets.

    :param queue_id: Venice's id of the job; None when the run failed before Venice created one.
    :param cost_usd: the quote the job was paid at, in US dollars.
    :param duration_s: the delivered video's duration; ``width``/``height`` its size in pixels.
    :param stage: how far the job got (``queued``, ``uploading``, ``delivered``, ``completed``, ...).
    :param error: on failure, the error's type and message.
    """

    queue_id: str | None = None
    model: str | None = None
    cost_usd: float | None = None
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    stage: str | None = None
    error: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL
