"""What each task does with its job, from one call into the lifecycle: queue, generate, deliver.

An operator renders its arguments, then makes one call here; the flow loads the job record once and
goes down from stage to stage (queue once, wait, deliver once, release once, announce), writing the
record only when the job reaches a new stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from airflow_provider_venice.job import Stage, fingerprint
from airflow_provider_venice.lifecycle.assets import announce
from airflow_provider_venice.lifecycle.deliver import deliver_once, resume_committed
from airflow_provider_venice.lifecycle.manifest import task_identity
from airflow_provider_venice.lifecycle.poll import Poller, deadline_after, read_event
from airflow_provider_venice.lifecycle.queue import budget, check_request, price, queue_paid, resume
from airflow_provider_venice.lifecycle.record import JobRecord
from airflow_provider_venice.lifecycle.release import release_delivered
from airflow_provider_venice.lifecycle.s3object import object_exists, settle_earlier_try
from airflow_provider_venice.version_compat import AirflowFailException

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterable, Mapping

    from airflow_provider_venice.client import QueueVideoRequest, QuoteVideoRequest, VeniceClient
    from airflow_provider_venice.job import VeniceJob
    from airflow_provider_venice.lifecycle.destination import Destination


@dataclass(frozen=True)
class Order:
    """What a paying task asks for, rendered from its arguments; nothing is sent yet."""

    request: QueueVideoRequest
    quote_request: QuoteVideoRequest
    max_usd: Any


@dataclass(frozen=True)
class Tools:
    """What a flow works with: the Venice client and S3 client (made on first use), and where to log."""

    venice: Callable[[], VeniceClient]
    s3: Callable[[], Any]
    log: Any
    abort: threading.Event


def queue_job(context: Mapping[str, Any], order: Order, tools: Tools) -> VeniceJob:
    """Return this task instance's job for the order, paying for it only if no earlier try did."""
    return _queue_once(JobRecord(context, tools.log), order, tools, None, None)


def generate_video(
    context: Mapping[str, Any],
    order: Order,
    destination: Destination,
    tools: Tools,
    *,
    wait_timeout: Any,
    window_interval_s: float,
    defer: Callable[[Poller, float], NoReturn] | None,
    outlets: Iterable[Any],
) -> dict[str, Any]:
    """Queue (or resume) the job, wait (``defer`` hands the wait to the triggerer), deliver, release."""
    record = JobRecord(context, tools.log)
    job = _queue_once(record, order, tools, destination, task_identity(context))
    if record.stage not in (Stage.DELIVERED, Stage.COMPLETED):
        poller = Poller(job, deadline_after(wait_timeout), window_interval_s)
        decision = poller.check(tools.venice())
        while decision.action != "done":
            if poller.past_deadline():
                raise poller.timeout()
            tools.log.info("Venice job %s: %s.", job.queue_id, decision.message)
            if defer is not None:
                defer(poller, decision.delay_s)
            time.sleep(min(decision.delay_s, max(0.0, poller.deadline - time.time())))
            decision = poller.check(tools.venice())
    return _deliver_and_release(context, record, job, destination, tools, order.request.to_json(), outlets)


def generate_after_wait(
    context: Mapping[str, Any],
    event: Any,
    order: Order,
    destination: Destination,
    tools: Tools,
    *,
    outlets: Iterable[Any],
) -> dict[str, Any]:
    """Back from the triggerer: check its event, then deliver and release the finished video."""
    record = JobRecord(context, tools.log)
    job = record.job
    if job is None:
        raise AirflowFailException("the job record of this task holds no Venice job; cannot deliver it")
    read_event(event, job)
    return _deliver_and_release(context, record, job, destination, tools, order.request.to_json(), outlets)


def deliver_job(
    context: Mapping[str, Any],
    job: VeniceJob,
    destination: Destination,
    tools: Tools,
    *,
    complete: bool,
    outlets: Iterable[Any],
) -> dict[str, Any]:
    """Deliver a finished job to the destination once, then release it (when ``complete``)."""
    record = JobRecord(context, tools.log)
    owner = fingerprint(job.queue_id, destination.uri)
    if record.stage is not None and record.get("request_fingerprint") != owner:
        tools.log.warning(
            "The job record of this task holds %s for another job or destination; delivering %s to %s anew.",
            record.describe(),
            job.queue_id,
            destination.uri,
        )
        record.start_over()
    if record.stage is None:
        record.note(request_fingerprint=owner, destination=destination.uri, job=job.to_xcom())
    return _deliver_and_release(context, record, job, destination, tools, None, outlets, complete=complete)


def _queue_once(
    record: JobRecord,
    order: Order,
    tools: Tools,
    destination: Destination | None,
    task: dict[str, Any] | None,
) -> VeniceJob:
    max_usd = budget(order.max_usd)
    request_fingerprint = fingerprint(order.request.to_json())
    where = destination.uri if destination else None
    if (job := resume(record, request_fingerprint, where, tools.log)) is not None:
        return job
    if destination is not None and record.stage is None and not record.unreadable:
        committed = resume_committed(tools.s3(), destination, record, request_fingerprint, task, tools.log)
        if committed is not None:
            return committed
    client = tools.venice()
    check_request(client, order.request)
    if destination is not None:
        _clear_the_key(destination, record, tools)
    quote = price(client, order.quote_request, max_usd, tools.log)
    return queue_paid(
        client,
        order.request,
        record,
        quote_usd=quote,
        request_fingerprint=request_fingerprint,
        destination=where,
        log=tools.log,
    )


def _clear_the_key(destination: Destination, record: JobRecord, tools: Tools) -> None:
    """Before paying: clear what an earlier try of this task left at the key; refuse a key already taken."""
    s3 = tools.s3()
    settle_earlier_try(s3, destination, record, tools.log, adopt=False)
    record.note(upload=None)
    if not destination.replace and object_exists(s3, destination):
        raise AirflowFailException(f"{destination.uri} exists and replace=False; nothing was queued or paid")


def _deliver_and_release(
    context: Mapping[str, Any],
    record: JobRecord,
    job: VeniceJob,
    destination: Destination,
    tools: Tools,
    request: dict[str, Any] | None,
    outlets: Iterable[Any],
    *,
    complete: bool = True,
) -> dict[str, Any]:
    delivery = deliver_once(
        client=tools.venice(),
        s3=tools.s3(),
        job=job,
        destination=destination,
        record=record,
        abort=tools.abort,
        log=tools.log,
        request=request,
        task=task_identity(context),
    )
    if complete:
        release_delivered(tools.venice(), job, delivery, record, tools.log)
    result = delivery.result(job)
    announce(context, outlets, result)
    return result
