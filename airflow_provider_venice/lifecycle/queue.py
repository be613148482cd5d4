"""Queue once: price a checked request, refuse it over budget, pay for it at most once per task instance.

``/video/queue`` charges and has no idempotency key. So the record says ``queueing`` before the request
leaves, and ``queued`` with the queue_id as soon as Venice answers; the queue_id is written to the task
log before that, so it survives a failed write. A try that finds ``queueing`` without an answer never
sends the request again: the first one may have been charged.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_venice.client import (
    QueueOutcomeUnknownError,
    VeniceAPIError,
    VeniceError,
    VeniceRequestInvalidError,
    VeniceTransportError,
)
from airflow_provider_venice.job import InvalidJobError, Stage, VeniceJob, money
from airflow_provider_venice.lifecycle.failures import as_airflow_failure
from airflow_provider_venice.version_compat import AirflowFailException

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_venice.client import QueueVideoRequest, QuoteVideoRequest, VeniceClient
    from airflow_provider_venice.lifecycle.record import JobRecord

_NOT_QUEUED = "check your Venice account before queueing again"
T = TypeVar("T")


def refusing_invalid(build: Callable[[], T]) -> T:
    """Build or check a request; a request Venice would refuse fails the task at once, naming the field."""
    try:
        return build()
    except VeniceRequestInvalidError as exc:
        raise AirflowFailException(f"invalid Venice video request: {exc}") from None
    except VeniceError as exc:
        raise as_airflow_failure(exc, " (while reading the model catalogue)") from exc


def check_request(client: VeniceClient, request: QueueVideoRequest | QuoteVideoRequest) -> None:
    """Check a queue or quote request against the model's live capabilities (free; cached catalogue)."""
    from airflow_provider_venice.client import (
        QueueVideoRequest,
        validate_queue_request,
        validate_quote_request,
        video_catalogue,
    )

    if isinstance(request, QueueVideoRequest):
        refusing_invalid(lambda: validate_queue_request(request, video_catalogue(client)))
    else:
        refusing_invalid(lambda: validate_quote_request(request, video_catalogue(client)))


def resume(
    record: JobRecord, request_fingerprint: str, destination: str | None, log: Any
) -> VeniceJob | None:
    """Return the job an earlier try of this task instance queued for this same request, if any.

    A record made for another request (the prompt, model or destination changed before the task was
    cleared) is set aside with a warning naming its job, which is left undelivered and not completed.
    Raises when an earlier try sent this request without learning the outcome: queueing again could
    pay twice.
    """
    stage = record.stage
    if record.unreadable:
        raise AirflowFailException(
            "The job record of this task was written by another version of the provider, or through a "
            "state backend this worker is not configured for, and cannot be read here. It may hold a paid "
            f"job: not queueing again. Run the task where the record can be read, or {_NOT_QUEUED} and "
            "clear this task's state (or start a new run) to queue anew."
        )
    if stage is None:
        return None
    if not record.get("request_fingerprint"):
        raise AirflowFailException(
            f"The job record of this task holds {record.describe()} that cannot be matched to a request. "
            f"Not queueing again, since that job may be paid for: {_NOT_QUEUED}, then clear this task's "
            "state (or start a new run) to queue anew."
        )
    if record.get("request_fingerprint") != request_fingerprint or record.get("destination") != destination:
        log.warning(
            "The job record of this task holds %s, made for a different request or destination (%s then, "
            "%s now). It is left as it is: not delivered by this task and not completed at Venice. "
            "Starting a new job for the current request.",
            record.describe(),
            record.get("destination") or "no destination",
            destination or "no destination",
        )
        # An upload of the earlier job to this same key is this task's own: keep its token, so that what
        # it left (an unverified object, a multipart upload) can be cleared before the key is checked.
        record.start_over(keep=("upload",) if record.get("destination") == destination else ())
        return None
    job = record.job
    if stage is Stage.QUEUEING or job is None:
        raise AirflowFailException(
            "An earlier try of this task sent /video/queue but never recorded Venice's answer, so a job "
            f"may exist and be charged. Not queueing again: {_NOT_QUEUED}, then clear this task's state "
            "(airflow tasks clear, or a new DAG run) to queue anew."
        )
    log.info("Resuming Venice job %s (%s) queued by an earlier try; not queueing again.", job.queue_id, stage)
    return job


def budget(max_usd: Any) -> float | None:
    """Read ``max_usd`` (a number, or a number rendered from a template) as a finite, non-negative amount.

    Only None means no budget: text that is not a number, an empty rendering included, is refused.
    """
    if max_usd is None:
        return None
    value = max_usd
    if isinstance(max_usd, str):
        try:
            value = float(max_usd.strip())
        except ValueError:
            value = max_usd
    try:
        return money("max_usd", value)
    except InvalidJobError as exc:
        raise AirflowFailException(f"{exc}; nothing was queued or charged") from None


def price(client: VeniceClient, request: QuoteVideoRequest, max_usd: float | None, log: Any) -> float | None:
    """Quote the job (free); refuse it when the quote is above ``max_usd``.

    Without ``max_usd`` a failed or unusable quote is only logged: the job is queued without a price.
    """
    try:
        quote = client.quote(request)  # a finite amount >= 0: the client refuses any other answer
    except VeniceError as exc:
        if max_usd is not None:
            raise as_airflow_failure(
                exc, " (the quote is needed to enforce max_usd; nothing was queued)"
            ) from exc
        log.warning("No usable quote from Venice (%s); queueing without one.", exc)
        return None
    log.info("Venice quote for %s (%s): $%.4f", request.model, request.duration, quote)
    if max_usd is not None and quote > max_usd:
        raise AirflowFailException(
            f"max_usd: the quote ${quote:.4f} for {request.model} is above the budget of ${max_usd:.4f}; "
            "nothing was queued or charged"
        )
    return quote


def queue_paid(
    client: VeniceClient,
    request: QueueVideoRequest,
    record: JobRecord,
    *,
    quote_usd: float | None,
    request_fingerprint: str,
    destination: str | None,
    log: Any,
) -> VeniceJob:
    """Send ``/video/queue`` once and record the job; the caller has checked there is no earlier one."""
    record.advance(Stage.QUEUEING, request_fingerprint=request_fingerprint, destination=destination, job=None)
    try:
        response = client.queue(request)
    except QueueOutcomeUnknownError as exc:
        raise AirflowFailException(str(exc)) from exc
    except VeniceError as exc:
        if not _refused(exc):
            raise AirflowFailException(
                f"Venice /video/queue failed after the request may have reached Venice ({exc}); the job may "
                f"exist and be charged. It was not resent: {_NOT_QUEUED}."
            ) from exc
        _forget_quietly(record, log)
        raise as_airflow_failure(exc, "; nothing was queued or charged") from exc
    queue_id, model = response.queue_id, response.model or request.model
    log.info("Venice job queued and paid for: queue_id=%s model=%s quote_usd=%s", queue_id, model, quote_usd)
    try:
        job = VeniceJob(model, queue_id, response.download_url, quote_usd, request_fingerprint)
        record.advance(Stage.QUEUED, job=job.to_xcom(), queued_at=time.time())
    except Exception as exc:
        raise AirflowFailException(
            f"Venice job {queue_id} ({model}) was queued and paid for, but recording it failed: {exc}. "
            f"The job is not lost: deliver it with VeniceVideoToS3Operator(model={model!r}, "
            f"queue_id={queue_id!r}, download_url={response.download_url!r}, ...). This task will not "
            "queue again."
        ) from exc
    return job


def _refused(error: VeniceError) -> bool:
    """Whether Venice provably created nothing: a refusal answered before processing, or no connection.

    The client raises a transport error for ``/video/queue`` only when the request never left, and
    answers 4xx (429 included) and 503 before processing; a 500 or 504 may hide a charged job.
    """
    if isinstance(error, VeniceTransportError):
        return True
    return isinstance(error, VeniceAPIError) and (400 <= error.status < 500 or error.status == 503)


def _forget_quietly(record: JobRecord, log: Any) -> None:
    try:
        record.forget()
    except Exception as exc:  # the refusal is the error that matters; the next try says "unknown"
        log.warning("Could not clear the job record after Venice refused the request: %s", exc)
