"""Check a video request before paying for it (or before asking its price).

:func:`validate_queue_request` checks a request against the model's live capabilities
(``GET /models?type=video``) and the limits Venice documents. A request that Venice would refuse with
400 or 413 never reaches ``/video/queue``; the error names the field and what is allowed.
:func:`validate_quote_request` checks a ``/video/quote`` request with the same per-field rules, for the
fields a quote has (no prompt).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar
from urllib.parse import urlsplit

from pydantic import ValidationError

from airflow_provider_venice.client._errors import VeniceRequestInvalidError
from airflow_provider_venice.client._models import QueueVideoRequest, QuoteVideoRequest

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow_provider_venice.client._models import ModelConstraints, VideoModel

DEFAULT_PROMPT_LIMIT = 2500
MAX_REFERENCE_IMAGES = 9
MAX_ELEMENTS = 4
MAX_ELEMENT_REFERENCE_IMAGES = 3
MAX_SCENE_IMAGES = 4
UPSCALE_FACTORS = (1, 2, 4)
MAX_BODY_BYTES = 35 * 1024 * 1024
MAX_AUDIO_BYTES = 15 * 1024 * 1024
MAX_REFERENCE_VIDEO_SECONDS = 150.0
ASPECT_RATIOS = (
    "1:1",
    "2:3",
    "3:2",
    "3:4",
    "4:3",
    "9:16",
    "16:9",
    "21:9",
    "4:5",
    "5:4",
    "9:21",
    "adaptive",
    "auto",
)
_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,"
)
_URL_FIELDS = ("image_url", "end_image_url", "audio_url", "video_url")
_RequestT = TypeVar("_RequestT", QueueVideoRequest, QuoteVideoRequest)
# The two request kinds share the fields that set the price; one helper checks each of them.
_PricedRequest: TypeAlias = QueueVideoRequest | QuoteVideoRequest


def build_queue_request(**fields: Any) -> QueueVideoRequest:
    """Build a :class:`QueueVideoRequest` from keyword fields, naming the field on a type error."""
    return _build(QueueVideoRequest, fields)


def build_quote_request(**fields: Any) -> QuoteVideoRequest:
    """Build a :class:`QuoteVideoRequest` from keyword fields, naming the field on a type error."""
    return _build(QuoteVideoRequest, fields)


def validate_queue_request(request: QueueVideoRequest, catalogue: dict[str, VideoModel]) -> None:
    """Raise :class:`VeniceRequestInvalidError` naming the first field Venice would refuse."""
    model = _online_model(request.model, catalogue)
    constraints = model.constraints
    upscale = is_upscale_model(model)
    needs_prompt = constraints.prompt_required if constraints.prompt_required is not None else not upscale
    _check_prompts(request, constraints, needs_prompt=needs_prompt)
    _check_priced_fields(request, model, upscale)
    _check_inputs(request, constraints)
    _check_lists(request, constraints)
    _check_media(_media_urls(request), len(request.prompt or "") + len(request.negative_prompt or ""))


def validate_quote_request(request: QuoteVideoRequest, catalogue: dict[str, VideoModel]) -> None:
    """Raise :class:`VeniceRequestInvalidError` naming the first field ``/video/quote`` would refuse.

    The same rules as :func:`validate_queue_request` for the fields a quote has (model, duration,
    aspect_ratio, resolution or upscale_factor, audio, video_url), plus ``reference_video_total_duration``
    (0 < seconds <= 150). No prompt is needed.
    """
    model = _online_model(request.model, catalogue)
    _check_priced_fields(request, model, is_upscale_model(model))
    _require_video(request.video_url, model.constraints)
    _check_media([("video_url", request.video_url)] if request.video_url is not None else [], 0)
    _check_reference_video_duration(request.reference_video_total_duration)


def is_upscale_model(model: VideoModel) -> bool:
    """Whether the model takes ``upscale_factor`` (video models that upscale) instead of a resolution."""
    constraints = model.constraints
    return bool(constraints.upscale_factors) or (
        constraints.model_type == "video" and "upscale" in model.id.lower()
    )


def _build(cls: type[_RequestT], fields: dict[str, Any]) -> _RequestT:
    present = {name: value for name, value in fields.items() if value is not None}
    try:
        return cls.model_validate(present)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "request"
        raise VeniceRequestInvalidError(field, f"{first['msg']} (got {first.get('input')!r})") from None


def _online_model(model_id: str, catalogue: dict[str, VideoModel]) -> VideoModel:
    model = catalogue.get(model_id)
    if model is None:
        raise VeniceRequestInvalidError(
            "model", f"unknown video model {model_id!r}; available: {_listing(sorted(catalogue))}"
        )
    if model.model_spec.offline:
        raise VeniceRequestInvalidError("model", f"{model_id!r} is offline at Venice right now")
    return model


def _check_priced_fields(request: _PricedRequest, model: VideoModel, upscale: bool) -> None:
    """Check the fields a queue and a quote request share (they set the price)."""
    constraints = model.constraints
    _check_choice("duration", request.duration, constraints.durations, model.id)
    _check_choice("aspect_ratio", request.aspect_ratio, constraints.aspect_ratios, model.id, ASPECT_RATIOS)
    _check_resolution_and_upscale(request, model, upscale)
    _check_audio(request.audio, constraints)


def _check_prompts(request: QueueVideoRequest, constraints: ModelConstraints, *, needs_prompt: bool) -> None:
    limit = constraints.prompt_character_limit or DEFAULT_PROMPT_LIMIT
    if needs_prompt and not (request.prompt or "").strip():
        raise VeniceRequestInvalidError("prompt", f"required: 1 to {limit} characters")
    for field in ("prompt", "negative_prompt"):
        text = getattr(request, field)
        if text is not None and len(text) > limit:
            raise VeniceRequestInvalidError(
                field, f"{len(text)} characters; {request.model!r} allows at most {limit}"
            )


def _check_choice(
    field: str, value: str | None, allowed: list[str], model: str, known: Iterable[str] = ()
) -> None:
    if value is None:
        return
    known = tuple(known)
    if known and value not in known:
        raise VeniceRequestInvalidError(field, f"{value!r} is not a Venice value; allowed: {_listing(known)}")
    if not allowed:
        raise VeniceRequestInvalidError(field, f"{model!r} does not support {field}; leave it unset")
    if value not in allowed:
        raise VeniceRequestInvalidError(
            field, f"{value!r} is not supported by {model!r}; allowed: {_listing(allowed)}"
        )


def _check_resolution_and_upscale(request: _PricedRequest, model: VideoModel, upscale: bool) -> None:
    if upscale and request.resolution is not None:
        raise VeniceRequestInvalidError("resolution", f"{model.id!r} is an upscale model: use upscale_factor")
    _check_choice("resolution", request.resolution, model.constraints.resolutions, model.id)
    if request.upscale_factor is None:
        return
    if not upscale:
        raise VeniceRequestInvalidError(
            "upscale_factor", f"only upscale models take it; {model.id!r} is {model.constraints.model_type}"
        )
    allowed = model.constraints.upscale_factors or list(UPSCALE_FACTORS)
    if request.upscale_factor not in allowed:
        raise VeniceRequestInvalidError(
            "upscale_factor",
            f"{request.upscale_factor} is not allowed; allowed: {_listing(map(str, allowed))}",
        )


def _check_audio(audio: bool | None, constraints: ModelConstraints) -> None:
    if audio is None:
        return
    if audio and not constraints.audio:
        raise VeniceRequestInvalidError("audio", "this model does not generate audio; leave audio unset")
    if not audio and constraints.audio and not constraints.audio_configurable:
        raise VeniceRequestInvalidError(
            "audio", "this model's audio is always on and cannot be switched off; leave audio unset or true"
        )


def _check_inputs(request: QueueVideoRequest, constraints: ModelConstraints) -> None:
    kind = constraints.model_type
    if (kind == "image-to-video" or constraints.requires_image) and not request.image_url:
        raise VeniceRequestInvalidError("image_url", "required by image-to-video models (URL or data: URL)")
    _require_video(request.video_url, constraints)
    if request.end_image_url and constraints.supports_end_image is False:
        raise VeniceRequestInvalidError("end_image_url", "this model does not take an end frame")


def _require_video(video_url: str | None, constraints: ModelConstraints) -> None:
    if (constraints.model_type == "video" or constraints.requires_video) and not video_url:
        raise VeniceRequestInvalidError("video_url", "required by video-to-video and upscale models")


def _check_reference_video_duration(seconds: float | None) -> None:
    if seconds is None:
        return
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_REFERENCE_VIDEO_SECONDS:
        raise VeniceRequestInvalidError(
            "reference_video_total_duration",
            f"{seconds!r} seconds; must be a finite number above 0 and at most "
            f"{MAX_REFERENCE_VIDEO_SECONDS:g} (the API's limit)",
        )


def _check_lists(request: QueueVideoRequest, constraints: ModelConstraints) -> None:
    _check_count("reference_image_urls", request.reference_image_urls, MAX_REFERENCE_IMAGES)
    _check_count("elements", request.elements, MAX_ELEMENTS)
    _check_count("scene_image_urls", request.scene_image_urls, MAX_SCENE_IMAGES)
    for index, element in enumerate(request.elements or []):
        _check_count(
            f"elements[{index}].reference_image_urls",
            element.reference_image_urls,
            MAX_ELEMENT_REFERENCE_IMAGES,
        )
    supported = {
        "reference_image_urls": constraints.supports_reference_images,
        "elements": constraints.supports_elements,
        "scene_image_urls": constraints.supports_scene_images,
    }
    for field, flag in supported.items():
        if getattr(request, field) and flag is False:
            raise VeniceRequestInvalidError(field, f"{request.model!r} does not support {field}")


def _check_count(field: str, values: list[Any] | None, limit: int) -> None:
    if values is not None and len(values) > limit:
        raise VeniceRequestInvalidError(field, f"{len(values)} given; at most {limit} allowed")


def _check_media(urls: Iterable[tuple[str, str]], text_length: int) -> None:
    """Check every URL field (http(s) or a well-formed data: URL) and the body size."""
    total = text_length
    for field, url in urls:
        size = _media_size(field, url)
        if field == "audio_url" and size > MAX_AUDIO_BYTES:
            raise VeniceRequestInvalidError(
                field, f"{size} bytes inline; background audio is limited to 15 MB"
            )
        total += len(url)
    if total > MAX_BODY_BYTES:
        raise VeniceRequestInvalidError(
            "request",
            f"about {total // (1024 * 1024)} MB of inline media; Venice refuses bodies over 35 MB (413): "
            "host the media and pass http(s) URLs instead of data: URLs",
        )


def _media_urls(request: QueueVideoRequest) -> Iterable[tuple[str, str]]:
    for field in _URL_FIELDS:
        if (url := getattr(request, field)) is not None:
            yield field, url
    for list_field in ("reference_image_urls", "scene_image_urls"):
        for index, url in enumerate(getattr(request, list_field) or []):
            yield f"{list_field}[{index}]", url
    for index, element in enumerate(request.elements or []):
        for field in ("frontal_image_url", "video_url"):
            if (url := getattr(element, field)) is not None:
                yield f"elements[{index}].{field}", url
        for ref, url in enumerate(element.reference_image_urls or []):
            yield f"elements[{index}].reference_image_urls[{ref}]", url


def _media_size(field: str, url: str) -> int:
    """Return the decoded size of a data: URL (0 for http(s) URLs); refuse anything else."""
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        if not match:
            raise VeniceRequestInvalidError(
                field, "malformed data: URL; expected data:<type>;base64,<payload>"
            )
        payload = url[match.end() :]
        if not match.group("b64"):
            return len(payload)
        try:
            return len(base64.b64decode(payload, validate=True))
        except (binascii.Error, ValueError):
            raise VeniceRequestInvalidError(field, "data: URL payload is not valid base64") from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise VeniceRequestInvalidError(field, f"must be an http(s) URL or a data: URL, got {url[:60]!r}")
    return 0


def _listing(values: Iterable[str]) -> str:
    return ", ".join(values) or "none"
