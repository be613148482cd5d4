"""The request fields of Venice's video endpoints as operator arguments, checked before anything is paid."""

from __future__ import annotations

import json
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_venice.hooks.venice import VeniceHook
from airflow_provider_venice.version_compat import AirflowFailException

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_provider_venice.client import QueueVideoRequest, QuoteVideoRequest
    from airflow_provider_venice.lifecycle.flows import Order

PRICING_FIELDS = ("model", "duration", "aspect_ratio", "resolution", "upscale_factor", "audio", "video_url")
VIDEO_FIELDS = (
    *PRICING_FIELDS,
    "prompt",
    "negative_prompt",
    "image_url",
    "end_image_url",
    "audio_url",
    "reference_image_urls",
    "elements",
    "scene_image_urls",
)


class VeniceVideoRequestOperator(BaseOperator):
    """Base of the video operators: Venice's request fields as arguments, named as the API names them.

    Values rendered from templates as text (``"2"``, ``"true"``, a JSON list) are converted to the
    API's types; anything else of the wrong type fails naming the field, before any charge.

    :param reference_video_total_duration: seconds of reference video, when known; sent to
        ``/video/quote`` so the price accounts for it.
    """

    template_fields: Sequence[str] = (*VIDEO_FIELDS, "reference_video_total_duration", "venice_conn_id")

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
        reference_video_total_duration: float | str | None = None,
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
        self.reference_video_total_duration = reference_video_total_duration
        self.venice_conn_id = venice_conn_id

    @cached_property
    def hook(self) -> VeniceHook:
        """The Venice hook (created on first use, never at DAG parse time)."""
        return VeniceHook(self.venice_conn_id)

    def video_request(self) -> QueueVideoRequest:
        """Build the ``/video/queue`` request from the rendered fields; nothing is sent."""
        from airflow_provider_venice.client import build_queue_request
        from airflow_provider_venice.lifecycle.queue import refusing_invalid

        return refusing_invalid(lambda: build_queue_request(**self._fields(VIDEO_FIELDS)))

    def quote_request(self) -> QuoteVideoRequest:
        """Build the ``/video/quote`` request: only what pricing needs, plus the reference video length."""
        from airflow_provider_venice.client import build_quote_request
        from airflow_provider_venice.lifecycle.queue import refusing_invalid

        fields = self._fields(PRICING_FIELDS)
        fields["reference_video_total_duration"] = _native(self.reference_video_total_duration, float)
        return refusing_invalid(lambda: build_quote_request(**fields))

    def order(self, max_usd: Any = None) -> Order:
        """Return the rendered request, its quote request and the budget, for the lifecycle's flows."""
        from airflow_provider_venice.lifecycle.flows import Order

        return Order(self.video_request(), self.quote_request(), max_usd)

    def _fields(self, names: tuple[str, ...]) -> dict[str, Any]:
        fields = {name: _native(getattr(self, name), _KINDS.get(name, str)) for name in names}
        if fields["duration"] is None:
            raise AirflowFailException("duration: required (e.g. '5s', or 'Auto' where the model allows it)")
        return fields


_KINDS: dict[str, type] = {
    "upscale_factor": int,
    "audio": bool,
    "reference_image_urls": list,
    "elements": list,
    "scene_image_urls": list,
}


def _native(value: Any, kind: type) -> Any:
    """Convert template-rendered text to the API's type where the API wants a number, boolean or list."""
    if not isinstance(value, str) or kind is str:
        return value
    text = value.strip()
    if kind is bool and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if kind is int and text.isdigit():
        return int(text)
    if kind is float:
        try:
            return float(text)
        except ValueError:
            return value
    if kind is list and text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            return value
    return value
