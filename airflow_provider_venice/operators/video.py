"""Operators for Venice video jobs: price, queue (pay once), and finalise."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_venice._airflow import JobRecord, as_airflow_failure, release_job
from airflow_provider_venice.client import (
    DEFAULT_POLL_POLICY,
    QueueOutcomeUnknownError,
    VeniceError,
    VeniceRequestInvalidError,
)
from airflow_provider_venice.hooks.venice import VeniceHook
from airflow_provider_venice.sensors.video import check_job, completed_job, seconds
from airflow_provider_venice.transfers.venice_to_s3 import (
    check_s3_location,
    default_outlets,
    deliver_to_s3,
    delivery_result,
    emit_asset_event,
    make_s3_hook,
)
from airflow_provider_venice.triggers.video import VeniceVideoTrigger

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk import Context

    from airflow_provider_venice.client import QueueVideoRequest, VeniceClient

VIDEO_FIELDS = (
    "model",
    "prompt",
    "negative_prompt",
    "duration",
    "aspect_ratio",
    "resolution",
    "upscale_factor",
    "audio",
    "image_url",
    "end_image_url",
    "audio_url",
    "video_url",
    "reference_image_urls",
    "elements",
    "scene_image_urls",
)


class VeniceVideoRequestOperator(BaseOperator):
    """Base of the video operators: the API's request fields as arguments, checked before anything is paid.

    Values rendered from templates as text (``"2"``, ``"true"``) are converted to the API's types.
    """

    template_fields: Sequence[str] = (*VIDEO_FIELDS, "venice_conn_id")

    def __init__(
        self,
        *,
        model: str,
        duration: str | None = None,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        aspect_ratio: str | None = None,
        resolution: str | None = None,
        upscale_factor: int | str | None = None,
        audio: bool | str | None = None,
        image_url: str | None = None,
        end_image_url: str | None = None,
        audio_url: str | None = None,
        video_url: str | None = None,
        reference_image_urls: list[str] | None = None,
        elements: list[dict[str, Any]] | None = None,
        scene_image_urls: list[str] | None = None,
        venice_conn_id: str = VeniceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.duration = duration
        self.prompt = prompt
        self.negative_prompt = negative_prompt
        self.aspect_ratio = aspect_ratio
        self.resolution = resolution
        self.upscale_factor = upscale_factor
        self.audio = audio
        self.image_url = image_url
        self.end_image_url = end_image_url
        self.audio_url = audio_url
        self.video_url = video_url
        self.reference_image_urls = reference_image_urls
        self.elements = elements
        self.scene_image_urls = scene_image_urls
        self.venice_conn_id = venice_conn_id

    @cached_property
    def hook(self) -> VeniceHook:
        """The Venice hook (created on first use, never at DAG parse time)."""
        return VeniceHook(self.venice_conn_id)

    def video_request(self) -> QueueVideoRequest:
        """Build the request from the (rendered) fields; a wrong type fails naming the field."""
        from airflow_provider_venice.client import build_queue_request

        fields = {name: _native(name, getattr(self, name)) for name in VIDEO_FIELDS}
        if fields["duration"] is None:
            raise AirflowFailException("duration: required (e.g. '5s', or 'Auto' where the model allows it)")
        try:
            return build_queue_request(**fields)
        except VeniceRequestInvalidError as exc:
            raise AirflowFailException(f"invalid Venice video request: {exc}") from None

    def checked_request(self, client: VeniceClient) -> QueueVideoRequest:
        """Build the request and check it against the model's live capabilities; nothing is paid."""
        from airflow_provider_venice.client import validate_queue_request, video_catalogue

        request = self.video_request()
        try:
            validate_queue_request(request, video_catalogue(client))
        except VeniceRequestInvalidError as exc:
            raise AirflowFailException(f"invalid Venice video request: {exc}") from None
        except VeniceError as exc:
            raise as_airflow_failure(exc, " (while reading the model catalogue)") from exc
        return request


class VeniceVideoQuoteOperator(VeniceVideoRequestOperator):
    """Price a video job with ``/video/quote`` (free; creates nothing).

    Returns ``{"model", "quote_usd"}``. Takes the API's request fields as arguments.
    """

    template_fields: Sequence[str] = (*VIDEO_FIELDS, "venice_conn_id")
    ui_color = "#e8f1ff"

    def __init__(self, **kwargs: Any) -> None:
        # Defined here so that Airflow's operator metaclass wraps it (it cannot wrap the mixin's).
        super().__init__(**kwargs)

    def execute(self, context: Context) -> dict[str, Any]:
        """Check the request, then ask Venice for its price."""
        client = self.hook.get_conn()
        request = self.checked_request(client)
        try:
            quote = client.quote(request.to_quote_request())
        except VeniceError as exc:
            raise as_airflow_failure(exc) from exc
        self.log.info("Venice quote for %s (%s): $%.4f", request.model, request.duration, quote)
        return {"model": request.model, "quote_usd": quote}


class VeniceVideoQueueOperator(VeniceVideoRequestOperator):
    """Start a paid video job with ``/video/queue``, at most once per task instance.

    The request is checked against the model's capabilities first. With ``max_usd``, the job is priced
    and refused when the quote is higher. The queue_id is kept in the task state store, so a retry of
    the same task instance (and map index) returns the job it already paid for instead of paying again.

    Returns ``{"model", "queue_id", "download_url", "quote_usd"}``.

    :param max_usd: refuse to queue when the quote is above this many US dollars.
    """

    template_fields: Sequence[str] = (*VIDEO_FIELDS, "venice_conn_id", "max_usd")
    ui_color = "#cfe3ff"

    def __init__(self, *, max_usd: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_usd = max_usd

    def execute(self, context: Context) -> dict[str, Any]:
        """Queue the job, or resume the one an earlier try queued."""
        return self.queue_once(context)

    def queue_once(self, context: Context) -> dict[str, Any]:
        """Return this task instance's job, queueing (and paying for) it only if no earlier try did."""
        record = JobRecord(context)
        if (job := resumed_job(record, self.log)) is not None:
            return job
        client = self.hook.get_conn()
        request = self.checked_request(client)
        quote = self._price(client, request)
        record.save(stage="queueing", model=request.model)
        try:
            response = client.queue(request)
        except QueueOutcomeUnknownError as exc:
            raise AirflowFailException(str(exc)) from exc
        except VeniceError as exc:
            record.forget()
            raise as_airflow_failure(exc) from exc
        job = {
            "model": response.model or request.model,
            "queue_id": response.queue_id,
            "download_url": response.download_url,
            "quote_usd": quote,
        }
        record.save(stage="queued", **job)
        self.log.info("Venice job queued: model=%s queue_id=%s", job["model"], job["queue_id"])
        return job

    def _price(self, client: VeniceClient, request: QueueVideoRequest) -> float | None:
        try:
            quote = client.quote(request.to_quote_request())
        except VeniceError as exc:
            if self.max_usd is not None:
                raise as_airflow_failure(exc, " (the quote is needed to enforce max_usd)") from exc
            self.log.warning("No quote from Venice (%s); queueing without one.", exc)
            return None
        self.log.info("Venice quote for %s (%s): $%.4f", request.model, request.duration, quote)
        if self.max_usd is not None and quote > float(self.max_usd):
            raise AirflowFailException(
                f"max_usd: the quote ${quote:.4f} for {request.model} is above the budget of "
                f"${float(self.max_usd):.4f}; nothing was queued or charged"
            )
        return quote


def resumed_job(record: JobRecord, log: Any) -> dict[str, Any] | None:
    """Return the job an earlier try of this task instance queued, or None when there is none.

    Raises when an earlier try sent ``/video/queue`` without learning the outcome: queueing again
    could pay twice.
    """
    if (job := record.job()) is not None:
        log.info("Resuming Venice job %s queued by an earlier try (not queueing again).", job["queue_id"])
        return job
    if not record.load():
        return None
    raise AirflowFailException(
        "An earlier try of this task sent /video/queue but did not record Venice's answer, so a job "
        "may already exist and be charged. Not queueing again; check your Venice account, then "
        "clear this task's state (or start a new run) to queue anew."
    )


class VeniceVideoCompleteOperator(BaseOperator):
    """Finalise a Venice job with ``/video/complete``, which deletes Venice's copy of the video.

    For VPS jobs (with a ``download_url``) the file behind the link is deleted first, and Venice's
    "Request ID is invalid" answer to complete is taken as done. Call this only after the video is
    safely stored. Returns ``{"model", "queue_id", "completed"}``.
    """

    template_fields: Sequence[str] = ("model", "queue_id", "download_url", "venice_conn_id")

    def __init__(
        self,
        *,
        model: str,
        queue_id: str,
        download_url: str | None = None,
        venice_conn_id: str = VeniceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.queue_id = queue_id
        self.download_url = download_url
        self.venice_conn_id = venice_conn_id

    @cached_property
    def hook(self) -> VeniceHook:
        """The Venice hook."""
        return VeniceHook(self.venice_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        """Release the job's media at Venice."""
        try:
            release_job(self.hook.get_conn(), self.model, self.queue_id, self.download_url, self.log)
        except VeniceError as exc:
            raise as_airflow_failure(exc, f" (queue_id {self.queue_id})") from exc
        return {"model": self.model, "queue_id": self.queue_id, "completed": True}


def _native(name: str, value: Any) -> Any:
    """Convert template-rendered text to the API's type for numeric and boolean fields."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if name == "upscale_factor" and text.isdigit():
        return int(text)
    if name == "audio" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if name in ("reference_image_urls", "scene_image_urls", "elements") and text.startswith("["):
        import json

        try:
            return json.loads(text)
        except ValueError:
            return value
    return value


class VeniceGenerateVideoOperator(VeniceVideoQueueOperator):
    """Generate a video and deliver it to S3 in one task: check, price, queue, wait, deliver, complete.

    Made for DAG authors and dynamic task mapping (``.partial(...).expand(prompt=[...])``). It is the
    queue operator, the sensor's trigger and the S3 transfer in sequence, resumable per task instance
    and map index: the stage reached (queued, delivered, completed) is kept in the task state store,
    so a retry continues where the last try stopped and never queues or uploads twice.

    Returns the same dict as :class:`VeniceVideoToS3Operator`.

    :param s3_bucket: destination bucket.
    :param s3_key: destination key (templated, e.g. ``videos/{{ ds }}/{{ ti.map_index }}.mp4``).
    :param replace: overwrite an existing object; when False an existing key fails before queueing.
    :param deferrable: wait in the triggerer (default from ``[operators] default_deferrable``).
    :param wait_timeout: how long to wait for Venice to finish, in seconds or a timedelta.
    """

    template_fields: Sequence[str] = (
        *VeniceVideoQueueOperator.template_fields,
        "s3_bucket",
        "s3_key",
        "aws_conn_id",
    )
    ui_color = "#b9e0c4"

    def __init__(
        self,
        *,
        s3_bucket: str,
        s3_key: str,
        aws_conn_id: str | None = "aws_default",
        replace: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        wait_timeout: timedelta | float = timedelta(hours=6),
        window_interval_s: float = DEFAULT_POLL_POLICY.window_interval_s,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", default_outlets())
        super().__init__(**kwargs)
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.aws_conn_id = aws_conn_id
        self.replace = replace
        self.deferrable = deferrable
        self.wait_timeout = wait_timeout
        self.window_interval_s = window_interval_s
        self._abort = threading.Event()

    @cached_property
    def s3_hook(self) -> S3Hook:
        """The S3 hook, with a bounded multipart transfer configuration."""
        return make_s3_hook(self.aws_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        """Resume from the stage an earlier try reached, or start from the beginning."""
        check_s3_location(self.s3_bucket, self.s3_key)
        record = JobRecord(context)
        state = record.load() or {}
        if state.get("stage") in ("delivered", "completed"):
            return self._finish(context, record)
        if not state.get("queue_id") and not self.replace:
            self._refuse_existing_key()
        job = self.queue_once(context)
        return self._wait_then_deliver(context, job)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Back from the triggerer: deliver the finished video."""
        record = JobRecord(context)
        job = record.job()
        completed_job(event, job["queue_id"] if job else "unknown")
        if job is None:
            raise AirflowFailException("the task state store lost this task's Venice job; cannot deliver it")
        return self._deliver(context, record, job)

    def on_kill(self) -> None:
        """Abort an upload in flight."""
        self._abort.set()

    def _refuse_existing_key(self) -> None:
        if self.s3_hook.check_for_key(self.s3_key, self.s3_bucket):
            raise AirflowFailException(
                f"s3://{self.s3_bucket}/{self.s3_key} exists and replace=False; nothing was queued or paid"
            )

    def _wait_then_deliver(self, context: Context, job: dict[str, Any]) -> dict[str, Any]:
        client = self.hook.get_conn()
        deadline = time.time() + seconds(self.wait_timeout)
        errors_in_row = 0
        while True:
            decision, errors_in_row = check_job(
                client, job["model"], job["queue_id"], errors_in_row, self.window_interval_s
            )
            if decision.action == "done":
                return self._deliver(context, JobRecord(context), job)
            self.log.info("Venice job %s: %s.", job["queue_id"], decision.message)
            if time.time() >= deadline:
                raise AirflowException(f"Venice job {job['queue_id']} unfinished after wait_timeout")
            if self.deferrable:
                self.defer(
                    trigger=VeniceVideoTrigger(
                        model=job["model"],
                        queue_id=job["queue_id"],
                        download_url=job.get("download_url"),
                        venice_conn_id=self.venice_conn_id,
                        deadline=deadline,
                        next_poll_at=time.time() + decision.delay_s,
                        window_interval_s=self.window_interval_s,
                    ),
                    method_name="execute_complete",
                )
            time.sleep(min(decision.delay_s, max(0.0, deadline - time.time())))

    def _deliver(self, context: Context, record: JobRecord, job: dict[str, Any]) -> dict[str, Any]:
        delivery = deliver_to_s3(
            client=self.hook.get_conn(),
            s3_hook=self.s3_hook,
            job=job,
            bucket=self.s3_bucket,
            key=self.s3_key,
            abort=self._abort,
        )
        self.log.info(
            "Delivered %s (%d bytes, sha256 %s).", delivery.s3_uri, delivery.size_bytes, delivery.sha256
        )
        record.save(stage="delivered", result=delivery_result(delivery, job))
        return self._finish(context, record)

    def _finish(self, context: Context, record: JobRecord) -> dict[str, Any]:
        state = record.load() or {}
        result: dict[str, Any] = state["result"]
        if state.get("stage") != "completed":
            try:
                release_job(
                    self.hook.get_conn(),
                    result["model"],
                    result["queue_id"],
                    state.get("download_url"),
                    self.log,
                )
            except VeniceError as exc:
                raise as_airflow_failure(exc, f" (video safely in {result['s3_uri']})") from exc
            record.save(stage="completed")
        emit_asset_event(context, list(self.outlets), result)
        return result
