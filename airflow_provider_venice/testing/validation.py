"""Checks of ``/video/quote`` and ``/video/queue`` bodies against a model's constraints.

Every problem found is reported at once as a 400 ``{"error": ..., "details": ...}`` where
``details`` is a Zod-style tree (``{"_errors": [], "duration": {"_errors": ["..."]}}``) and the
message names each field. An unknown model is a 400 on ``model`` as well (an emulator choice:
the request is invalid before any job exists, so it is not a 404).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow_provider_venice.testing.catalogue import BY_ID, VideoModel
from airflow_provider_venice.testing.errors import ApiError

MAX_REFERENCE_IMAGES = 9
MAX_ELEMENTS = 4
MAX_ELEMENT_REFERENCE_IMAGES = 3
MAX_SCENE_IMAGES = 4
MAX_REFERENCE_VIDEO_SECONDS = 150

Path = tuple[str | int, ...]
Body = Mapping[str, Any]


class Problems:
    """Validation problems collected as ``(path, message)`` pairs."""

    def __init__(self) -> None:
        self.items: list[tuple[Path, str]] = []

    def add(self, path: Path, message: str) -> None:
        """Record a problem with the field at ``path``."""
        self.items.append((path, message))

    def raise_if_any(self) -> None:
        """Raise :meth:`error` if any problem was recorded."""
        if self.items:
            raise self.error()

    def error(self) -> ApiError:
        """Build the 400 ``ApiError`` describing every recorded problem."""
        details: dict[str, Any] = {"_errors": []}
        for path, message in self.items:
            node = details
            for part in path:
                node = node.setdefault(str(part), {"_errors": []})
            node["_errors"].append(message)
        summary = "; ".join(f"{'.'.join(map(str, path))}: {message}" for path, message in self.items)
        return ApiError(400, {"error": f"Invalid request: {summary}", "details": details})


Check = Callable[[VideoModel, Body, Problems], None]


def validate_quote(body: Body) -> VideoModel:
    """Return the model of a valid quote request, or raise the 400 ``ApiError``."""
    return _validate(body, _QUOTE_CHECKS)


def validate_queue(body: Body) -> VideoModel:
    """Return the model of a valid queue request, or raise the 400 ``ApiError``."""
    return _validate(body, _QUEUE_CHECKS)


def _validate(body: Body, checks: Sequence[Check]) -> VideoModel:
    problems = Problems()
    model_id = body.get("model")
    model = BY_ID.get(model_id) if isinstance(model_id, str) else None
    if model is None:
        problems.add(("model",), "is required" if model_id is None else f"unknown video model {model_id!r}")
        raise problems.error()
    for check in checks:
        check(model, body, problems)
    problems.raise_if_any()
    return model


def _string(body: Body, key: str, problems: Problems, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            problems.add((key,), "is required")
        return None
    if not isinstance(value, str):
        problems.add((key,), "must be a string")
        return None
    return value


def _choice(body: Body, key: str, allowed: Sequence[str], problems: Problems, required: bool = False) -> None:
    value = _string(body, key, problems, required)
    if value is None or value in allowed:
        return
    if not allowed:
        problems.add((key,), "is not supported by this model")
    else:
        problems.add((key,), f"must be one of {', '.join(allowed)} for this model (got {value!r})")


def _check_duration(model: VideoModel, body: Body, problems: Problems) -> None:
    _choice(body, "duration", model.durations, problems, required=True)


def _check_resolution(model: VideoModel, body: Body, problems: Problems) -> None:
    _choice(body, "resolution", model.resolutions, problems)


def _check_aspect_ratio(model: VideoModel, body: Body, problems: Problems) -> None:
    _choice(body, "aspect_ratio", model.aspect_ratios, problems)


def _check_upscale_factor(model: VideoModel, body: Body, problems: Problems) -> None:
    factor = body.get("upscale_factor")
    if factor is None:
        return
    if not model.upscale_factors:
        problems.add(("upscale_factor",), "is only supported by upscale models")
    elif isinstance(factor, bool) or factor not in model.upscale_factors:
        allowed = ", ".join(map(str, model.upscale_factors))
        problems.add(("upscale_factor",), f"must be one of {allowed} (got {factor!r})")


def _check_audio(model: VideoModel, body: Body, problems: Problems) -> None:
    if body.get("audio") is not None and not isinstance(body["audio"], bool):
        problems.add(("audio",), "must be a boolean")


def _check_reference_video_duration(model: VideoModel, body: Body, problems: Problems) -> None:
    seconds = body.get("reference_video_total_duration")
    if seconds is None:
        return
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 <= seconds <= MAX_REFERENCE_VIDEO_SECONDS
    ):
        problems.add(
            ("reference_video_total_duration",), f"must be a number from 0 to {MAX_REFERENCE_VIDEO_SECONDS}"
        )


def _check_prompts(model: VideoModel, body: Body, problems: Problems) -> None:
    for key, required in (("prompt", model.prompt_required), ("negative_prompt", False)):
        text = _string(body, key, problems, required)
        if text is not None and len(text) > model.prompt_character_limit:
            limit = model.prompt_character_limit
            problems.add((key,), f"must be at most {limit} characters for this model (got {len(text)})")


def _check_media_urls(model: VideoModel, body: Body, problems: Problems) -> None:
    _string(body, "image_url", problems, required=model.requires_image)
    _string(body, "video_url", problems, required=model.requires_video)
    _string(body, "audio_url", problems)
    if _string(body, "end_image_url", problems) is not None and not model.supports_end_image:
        problems.add(("end_image_url",), "is not supported by this model")


def _url_list(value: Any, path: Path, limit: int, problems: Problems) -> None:
    if not isinstance(value, list) or not all(isinstance(url, str) for url in value):
        problems.add(path, "must be a list of URLs")
    elif len(value) > limit:
        problems.add(path, f"must contain at most {limit} items (got {len(value)})")


def _check_reference_images(model: VideoModel, body: Body, problems: Problems) -> None:
    value = body.get("reference_image_urls")
    if value is None:
        return
    if not model.supports_reference_images:
        problems.add(("reference_image_urls",), "is not supported by this model")
    else:
        _url_list(value, ("reference_image_urls",), MAX_REFERENCE_IMAGES, problems)


def _check_scene_images(model: VideoModel, body: Body, problems: Problems) -> None:
    value = body.get("scene_image_urls")
    if value is None:
        return
    if not model.supports_scene_images:
        problems.add(("scene_image_urls",), "is not supported by this model")
    else:
        _url_list(value, ("scene_image_urls",), MAX_SCENE_IMAGES, problems)


def _check_elements(model: VideoModel, body: Body, problems: Problems) -> None:
    elements = body.get("elements")
    if elements is None:
        return
    if not model.supports_elements:
        problems.add(("elements",), "is not supported by this model")
    elif not isinstance(elements, list):
        problems.add(("elements",), "must be a list of objects")
    elif len(elements) > MAX_ELEMENTS:
        problems.add(("elements",), f"must contain at most {MAX_ELEMENTS} items (got {len(elements)})")
    else:
        for index, element in enumerate(elements):
            _check_element(element, ("elements", index), problems)


def _check_element(element: Any, path: Path, problems: Problems) -> None:
    if not isinstance(element, dict):
        problems.add(path, "must be an object")
        return
    for key in ("frontal_image_url", "video_url"):
        if element.get(key) is not None and not isinstance(element[key], str):
            problems.add((*path, key), "must be a string")
    if element.get("reference_image_urls") is not None:
        references = element["reference_image_urls"]
        _url_list(references, (*path, "reference_image_urls"), MAX_ELEMENT_REFERENCE_IMAGES, problems)


_QUOTE_CHECKS: tuple[Check, ...] = (
    _check_duration,
    _check_resolution,
    _check_aspect_ratio,
    _check_upscale_factor,
    _check_audio,
    _check_reference_video_duration,
)
_QUEUE_CHECKS: tuple[Check, ...] = (
    _check_prompts,
    _check_duration,
    _check_resolution,
    _check_aspect_ratio,
    _check_upscale_factor,
    _check_audio,
    _check_media_urls,
    _check_reference_images,
    _check_elements,
    _check_scene_images,
)
