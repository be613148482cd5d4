"""VeniceVideoToS3Operator: deliver a finished Venice video to S3, verified, then release the job."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_venice.hooks.venice import VeniceHook
from airflow_provider_venice.job import InvalidJobError, job_from_arguments
from airflow_provider_venice.lifecycle.assets import AnnouncesThroughAlias
from airflow_provider_venice.lineage import DeliveryLineageMixin, kept_for_lineage
from airflow_provider_venice.links import DELIVERY_LINKS
from airflow_provider_venice.version_compat import AirflowFailException

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk import Context


class VeniceVideoToS3Operator(AnnouncesThroughAlias, DeliveryLineageMixin, BaseOperator):
    """Stream a finished Venice video into S3, verify it, write its manifest, then release the job.

    Pass the job natively: ``job=wait.output`` (or ``job=queue.output``), or ``model`` and ``queue_id``
    (plus ``download_url`` for VPS jobs). The video streams in bounded memory whatever its size and is
    checked on the way (byte count, MP4 structure, SHA-256), S3 checks its full-object CRC32, and a JSON
    manifest is written beside it last. Only then is the VPS file deleted and ``/video/complete``
    called. On any failure nothing is completed, no partial object is left, and the error names the
    queue_id; a retry resumes where the last try stopped.

    Returns ``{"s3_uri", "bucket", "key", "size_bytes", "sha256", "checksum_crc32", "content_type",
    "manifest_uri", "poster_uri", "duration_s", "width", "height", "frame_rate", "video_codec", "has_audio",
    "model", "queue_id", "quote_usd"}``, each key also pushed as its own XCom, and
    announces the object through its outlets (by default ``AssetAlias("venice-videos")``). Its extra links
    "Video" and "Venice job" open the video and the job in the Venice page; with the OpenLineage
    provider, its runs report the video as output and the Venice job as the ``venice_job`` run facet.

    :param replace: overwrite an existing object; when False (the default) an existing key fails before
        any download (unless its manifest says it already holds this job's video), and the write itself
        is conditional, so a concurrent writer is never overwritten.
    :param manifest_key: key of the JSON manifest (default ``<s3_key>.json``; ``""`` for none).
    :param poster_key: key of the poster frame written beside the video (default
        ``<s3_key>.poster.jpg``; ``""`` for none); needs the ``media`` extra (PyAV).
    :param poster_format: ``jpeg`` (default) or ``webp``; ``poster_max_side``: its long side, 640 px.
    :param s3_checksum: what S3 is asked to check: ``FULL_OBJECT`` (default: each part's CRC32 and the
        whole object's), ``COMPOSITE`` (each part's only) or ``NONE``, for S3-compatible stores that
        refuse the others (see docs/operators.md).
    :param complete: release the job at Venice after a verified delivery.
    """

    template_fields: Sequence[str] = (
        "job",
        "model",
        "queue_id",
        "download_url",
        "quote_usd",
        "s3_bucket",
        "s3_key",
        "manifest_key",
        "poster_key",
        "venice_conn_id",
        "aws_conn_id",
    )
    ui_color = "#ffe8cc"
    operator_extra_links = DELIVERY_LINKS

    def __init__(
        self,
        *,
        s3_bucket: str,
        s3_key: str,
        job: Any = None,
        model: str | None = None,
        queue_id: str | None = None,
        download_url: str | None = None,
        quote_usd: float | None = None,
        aws_conn_id: str | None = "aws_default",
        venice_conn_id: str = VeniceHook.default_conn_name,
        replace: bool = False,
        manifest_key: str | None = None,
        poster_key: str | None = None,
        poster_format: str = "jpeg",
        poster_max_side: int = 640,
        s3_checksum: str = "FULL_OBJECT",
        complete: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        self.job = job
        self.model = model
        self.queue_id = queue_id
        self.download_url = download_url
        self.quote_usd = quote_usd
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.aws_conn_id = aws_conn_id
        self.venice_conn_id = venice_conn_id
        self.replace = replace
        self.manifest_key = manifest_key
        self.poster_key = poster_key
        self.poster_format = poster_format
        self.poster_max_side = poster_max_side
        self.s3_checksum = s3_checksum
        self.complete = complete
        self._abort = threading.Event()

    @cached_property
    def hook(self) -> VeniceHook:
        """The Venice hook."""
        return VeniceHook(self.venice_conn_id)

    @cached_property
    def s3_hook(self) -> S3Hook:
        """The S3 hook (created on first use)."""
        from airflow_provider_venice.lifecycle.destination import s3_hook

        return s3_hook(self.aws_conn_id, self.s3_checksum)

    @kept_for_lineage
    def execute(self, context: Context) -> dict[str, Any]:
        """Deliver once, verify, release once."""
        from airflow_provider_venice.lifecycle.destination import Destination
        from airflow_provider_venice.lifecycle.flows import Tools, deliver_job

        try:
            job = job_from_arguments(self.job, self.model, self.queue_id, self.download_url, self.quote_usd)
        except InvalidJobError as exc:
            raise AirflowFailException(str(exc)) from None
        self._lineage_job = job
        destination = Destination.of_task(self)
        tools = Tools(self.hook.get_conn, self.s3_hook.get_conn, self.log, self._abort)
        return deliver_job(context, job, destination, tools, complete=self.complete, outlets=self.outlets)

    def _lineage_stage_when_done(self) -> str:
        return "completed" if self.complete else "delivered"

    def on_kill(self) -> None:
        """Stop an upload in flight (its multipart upload is aborted)."""
        self._abort.set()
