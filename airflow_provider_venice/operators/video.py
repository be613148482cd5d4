"""Operators for Venice video jobs: price, queue (pay once), and finalise."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_venice._airflow import JobRecord, as_airflow_failure, release_job
from airflow_provider_venice.client import (
    QueueOutcomeUnknownError,
    QueueVideoRequest,
    VeniceClient,
    VeniceError,
    VeniceRequestInvalidError,
    build_queue_request,
    validate_queue_request,
    video_catalogue,
)
from airflow_provider_venice.hooks.venice import VeniceHook

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

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


class VeniceVideoRequestMixin:
    """The API's video request fields as operator arguments, with checking before anything is paid.

    Values rendered from templates as text (``"2"``, ``"true"``) are converted to the API's types.
    """

    venice_conn_id: str
    model: str

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
        fields = {name: _native(name, getattr(self, name)) for name in VIDEO_FIELDS}
        if fields["duration"] is None:
            raise AirflowFailException("duration: required (e.g. '5s', or 'Auto' where the model allows it)")
        try:
            return build_queue_request(**fields)
        except VeniceRequestInvalidError as exc:
            raise AirflowFailException(f"invalid Venice video request: {exc}") from None

    def checked_request(self, client: VeniceClient) -> QueueVideoRequest:
        """Build the request and check it against the model's live capabilities; nothing is paid."""
        request = self.video_request()
        try:
            validate_queue_request(request, video_catalogue(client))
        except VeniceRequestInvalidError as exc:
            raise AirflowFailException(f"invalid Venice video request: {exc}") from None
        except VeniceError as exc:
            raise as_airflow_failure(exc, " (while reading the model catalogue)") from exc
        return request


class VeniceVideoQuoteOperator(VeniceVideoRequestMixin, BaseOperator):
    """Price a video job with ``/video/quote`` (free; creates nothing).

    Returns ``{"model", "quote_usd"}``. Takes the API's request fields as arguments.
    """

    template_fields: Sequence[str] = (*VIDEO_FIELDS, "venice_conn_id")
    ui_color = "#e8f1ff"

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


class VeniceVideoQueueOperator(VeniceVideoRequestMixin, BaseOperator):
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
    previous = record.load()
    if not previous:
        return None
    if previous.get("queue_id"):
        log.info(
            "Resuming Venice job %s queued by an earlier try (not queueing again).", previous["queue_id"]
        )
        return {key: previous.get(key) for key in ("model", "queue_id", "download_url", "quote_usd")}
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
