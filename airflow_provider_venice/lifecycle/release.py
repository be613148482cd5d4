"""Release a delivered job at Venice, which deletes Venice's copy: once, and only after delivery."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_venice.client import BadRequestError, NotFoundError, VeniceError
from airflow_provider_venice.job import Stage
from airflow_provider_venice.lifecycle.failures import as_airflow_failure

if TYPE_CHECKING:
    from airflow_provider_venice.client import VeniceClient
    from airflow_provider_venice.job import VeniceJob
    from airflow_provider_venice.lifecycle.deliver import Delivery
    from airflow_provider_venice.lifecycle.record import JobRecord


def release_delivered(
    client: VeniceClient, job: VeniceJob, delivery: Delivery, record: JobRecord, log: Any
) -> None:
    """Release a job whose video is delivered, unless an earlier try already did; record it."""
    if record.stage is Stage.COMPLETED:
        return
    if record.stage is not Stage.DELIVERED:
        raise AssertionError(f"releasing {job.queue_id} before its delivery was recorded")
    try:
        release(client, job, log)
    except VeniceError as exc:
        raise as_airflow_failure(
            exc, f" (queue_id {job.queue_id}; the video is safely in {delivery.s3_uri})"
        ) from exc
    record.advance(Stage.COMPLETED)


def release(client: VeniceClient, job: VeniceJob, log: Any) -> None:
    """Delete a VPS job's file behind its ``download_url``, then call ``/video/complete``.

    A job Venice no longer knows counts as released: 404 from complete (already completed), and
    "Request ID is invalid" for VPS jobs, which Venice answers once their file is deleted.
    """
    if job.download_url:
        gone = not client.delete_download_url(job.download_url)
        log.info(
            "Deleted the download_url file of %s%s.", job.queue_id, " (it was already gone)" if gone else ""
        )
    try:
        client.complete(job.model, job.queue_id)
    except BadRequestError as exc:
        if not (job.download_url and exc.is_invalid_request_id):
            raise
        log.info(
            "Venice does not track VPS job %s for /video/complete; released via download_url.", job.queue_id
        )
    except NotFoundError:
        log.warning("Venice job %s was already completed (404); nothing left to release.", job.queue_id)
    else:
        log.info("Venice job %s completed; Venice's copy of the video is deleted.", job.queue_id)
