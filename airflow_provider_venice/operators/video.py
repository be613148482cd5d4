"""Operators for Venice video jobs: price, queue (pay once), release, and all of it in one task."""

from __future__ import annotations

import threading
from datetime import timedelta
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseOperator

from airflow_provider_venice.client import DEFAULT_POLL_POLICY, VeniceError
from airflow_provider_venice.hooks.venice import VeniceHook
from airflow_provider_venice.job import InvalidJobError, job_from_arguments
from airflow_provider_venice.lifecycle.assets import AnnouncesThroughAlias
from airflow_provider_venice.lifecycle.poll import DEFAULT_DEFERRABLE
from airflow_provider_venice.lineage import DeliveryLineageMixin, kept_for_lineage
from airflow_provider_venice.links import DELIVERY_LINKS, store_links
from airflow_provider_venice.operators.request import VeniceVideoRequestOperator
from airflow_provider_venice.triggers.video import VeniceVideoTrigger
from airflow_provider_venice.version_compat import AirflowFailException

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk import Context

    from airflow_provider_venice.lifecycle.destination import Destination
    from airflow_provider_venice.lifecycle.flows import Tools
    from airflow_provider_venice.lifecycle.poll import Poller


class VeniceVideoQuoteOperator(VeniceVideoRequestOperator):
    """Price a video job with ``/video/quote`` (free; creates nothing).

    It needs what pricing needs: ``model``, ``duration`` and the optional pricing fields
    (``aspect_ratio``, ``resolution``, ``upscale_factor``, ``audio``, ``video_url``,
    ``reference_video_total_duration``); other request fields are accepted and ignored, so one dict of
    request fields serves the quote and the queue. Returns ``{"model", "quote_usd"}``, each key also
    pushed as its own XCom (``quote.output["quote_usd"]``).
    """

    ui_color = "#e8f1ff"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)

    def execute(self, context: Context) -> dict[str, Any]:
        """Check the pricing fields, then ask Venice for the price."""
        from airflow_provider_venice.lifecycle.failures import as_airflow_failure
        from airflow_provider_venice.lifecycle.queue import check_request

        client = self.hook.get_conn()
        request = self.quote_request()
        check_request(client, request)
        try:
            quote = client.quote(request)
        except VeniceError as exc:
            raise as_airflow_failure(exc) from exc
        self.log.info("Venice quote for %s (%s): $%.4f", request.model, request.duration, quote)
        return {"model": request.model, "quote_usd": quote}


class VeniceVideoQueueOperator(VeniceVideoRequestOperator):
    """Start a paid video job with ``/video/queue``, at most once per task instance and map index.

    The request is checked against the model's capabilities first. With ``max_usd``, the job is priced
    and refused when the quote is higher. The job is kept in the task's job record, so a retry of the
    same task instance returns the job it already paid for instead of paying again.

    Returns the job ``{"model", "queue_id", "download_url", "quote_usd", "request_fingerprint"}``, each key
    also pushed as its own XCom: pass ``job=queue.output`` or ``queue.output["queue_id"]`` downstream.

    :param max_usd: refuse to queue when the quote is above this many US dollars.
    """

    template_fields: Sequence[str] = (*VeniceVideoRequestOperator.template_fields, "max_usd")
    ui_color = "#cfe3ff"

    def __init__(self, *, max_usd: float | str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        self.max_usd = max_usd

    def execute(self, context: Context) -> dict[str, Any]:
        """Queue the job, or return the one an earlier try of this task instance queued."""
        from airflow_provider_venice.lifecycle.flows import queue_job

        return queue_job(context, self.order(self.max_usd), self.tools()).to_xcom()

    def tools(self) -> Tools:
        """Return what the lifecycle works with: the Venice client (this operator writes no S3 object)."""
        from airflow_provider_venice.lifecycle.flows import Tools

        return Tools(self.hook.get_conn, _no_s3, self.log, threading.Event())


def _no_s3() -> Any:
    raise AssertionError("this operator does not write to S3")


class VeniceVideoCompleteOperator(BaseOperator):
    """Release a Venice job with ``/video/complete``, which deletes Venice's copy of the video.

    Pass the job as ``job=queue.output`` (or ``model`` and ``queue_id``, plus ``download_url`` for VPS
    jobs, whose file is deleted first). Call it only after the video is safely stored. Returns
    ``{"model", "queue_id", "completed": True}``.
    """

    template_fields: Sequence[str] = ("job", "model", "queue_id", "download_url", "venice_conn_id")

    def __init__(
        self,
        *,
        job: Any = None,
        model: str | None = None,
        queue_id: str | None = None,
        download_url: str | None = None,
        venice_conn_id: str = VeniceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job = job
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
        from airflow_provider_venice.lifecycle.failures import as_airflow_failure
        from airflow_provider_venice.lifecycle.release import release

        try:
            job = job_from_arguments(self.job, self.model, self.queue_id, self.download_url)
        except InvalidJobError as exc:
            raise AirflowFailException(str(exc)) from None
        try:
            release(self.hook.get_conn(), job, self.log)
        except VeniceError as exc:
            raise as_airflow_failure(exc, f" (queue_id {job.queue_id})") from exc
        return {"model": job.model, "queue_id": job.queue_id, "completed": True}


class VeniceGenerateVideoOperator(AnnouncesThroughAlias, DeliveryLineageMixin, VeniceVideoQueueOperator):
    """Generate a video and deliver it to S3 in one task: check, price, queue, wait, deliver, release.

    Made for DAG authors and dynamic task mapping (``.partial(...).expand(prompt=[...])``). Each stage
    the job reaches is kept in the task's job record, so a retry continues where the last try stopped:
    it never queues twice, never uploads twice, and releases the job only after the video in S3 was
    verified. A cleared task whose request or destination changed starts a new job.

    Returns the delivery (``s3_uri``, ``bucket``, ``key``, ``size_bytes``, ``sha256``, ``checksum_crc32``,
    ``content_type``, ``manifest_uri``, ``poster_uri``, the probe's ``duration_s``, ``width``, ``height``,
    ``frame_rate``, ``video_codec``, ``has_audio``, and ``model``, ``queue_id``, ``quote_usd``), each key
    also pushed as its own XCom, and announces the object through its outlets
    (``AssetAlias("venice-videos")``). Its extra links "Video" and "Venice job" open the video and the
    job in the Venice page, also while the task waits; with the OpenLineage provider, its runs report the
    video as output and the Venice job as the ``venice_job`` run facet.

    :param s3_bucket: destination bucket.
    :param s3_key: destination key (templated, e.g. ``videos/{{ ds }}/{{ ti.map_index }}.mp4``).
    :param replace: overwrite an existing object; when False (the default) an existing key fails before
        anything is paid, and the write itself is conditional, so a concurrent writer is never overwritten.
    :param manifest_key: key of the JSON manifest written beside the video (default ``<s3_key>.json``;
        ``""`` for none).
    :param poster_key: key of the poster frame written beside the video (default
        ``<s3_key>.poster.jpg``; ``""`` for none); needs the ``media`` extra (PyAV).
    :param poster_format: ``jpeg`` (default) or ``webp``; ``poster_max_side``: its long side, 640 px.
    :param s3_checksum: what S3 is asked to check: ``FULL_OBJECT`` (default: each part's CRC32 and the
        whole object's), ``COMPOSITE`` (each part's only) or ``NONE``, for S3-compatible stores that
        refuse the others (see docs/operators.md).
    :param deferrable: wait in the triggerer (default True). Without a running triggerer, pass False: the
        task then waits on its worker.
    :param wait_timeout: how long to wait for Venice to finish, in seconds or a timedelta.
    """

    template_fields: Sequence[str] = (
        *VeniceVideoQueueOperator.template_fields,
        "s3_bucket",
        "s3_key",
        "manifest_key",
        "poster_key",
        "aws_conn_id",
    )
    ui_color = "#b9e0c4"
    operator_extra_links = DELIVERY_LINKS

    def __init__(
        self,
        *,
        s3_bucket: str,
        s3_key: str,
        aws_conn_id: str | None = "aws_default",
        replace: bool = False,
        manifest_key: str | None = None,
        poster_key: str | None = None,
        poster_format: str = "jpeg",
        poster_max_side: int = 640,
        s3_checksum: str = "FULL_OBJECT",
        deferrable: bool = DEFAULT_DEFERRABLE,
        wait_timeout: timedelta | float = timedelta(hours=6),
        window_interval_s: float = DEFAULT_POLL_POLICY.window_interval_s,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.aws_conn_id = aws_conn_id
        self.replace = replace
        self.manifest_key = manifest_key
        self.poster_key = poster_key
        self.poster_format = poster_format
        self.poster_max_side = poster_max_side
        self.s3_checksum = s3_checksum
        self.deferrable = deferrable
        self.wait_timeout = wait_timeout
        self.window_interval_s = window_interval_s
        self._abort = threading.Event()

    @cached_property
    def s3_hook(self) -> S3Hook:
        """The S3 hook (created on first use)."""
        from airflow_provider_venice.lifecycle.destination import s3_hook

        return s3_hook(self.aws_conn_id, self.s3_checksum)

    def tools(self) -> Tools:
        """Return what the lifecycle works with: the Venice and S3 clients, the log, the kill switch."""
        from airflow_provider_venice.lifecycle.flows import Tools

        return Tools(self.hook.get_conn, self.s3_hook.get_conn, self.log, self._abort)

    @kept_for_lineage
    def execute(self, context: Context) -> dict[str, Any]:
        """Queue (or resume) this task instance's job, wait for it, deliver it, release it."""
        from airflow_provider_venice.lifecycle.flows import generate_video

        return generate_video(
            context,
            self.order(self.max_usd),
            self._destination(),
            self.tools(),
            wait_timeout=self.wait_timeout,
            window_interval_s=self.window_interval_s,
            defer=partial(self._defer, context) if self.deferrable else None,
            outlets=self.outlets,
        )

    @kept_for_lineage
    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Back from the triggerer: deliver the finished video."""
        from airflow_provider_venice.lifecycle.flows import generate_after_wait

        return generate_after_wait(
            context, event, self.order(self.max_usd), self._destination(), self.tools(), outlets=self.outlets
        )

    def on_kill(self) -> None:
        """Stop an upload in flight (its multipart upload is aborted)."""
        self._abort.set()

    def _defer(self, context: Context, poller: Poller, delay_s: float) -> NoReturn:
        store_links(self, context)  # so the links show while the task waits
        self.defer(
            trigger=VeniceVideoTrigger.watching(poller, delay_s, self.venice_conn_id),
            method_name="execute_complete",
            timeout=poller.deferral_timeout(),
        )

    def _destination(self) -> Destination:
        from airflow_provider_venice.lifecycle.destination import Destination

        return Destination.of_task(self)
