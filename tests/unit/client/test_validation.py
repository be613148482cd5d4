"""Request validation before paying: each refusal names the field and what is allowed."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from airflow_provider_venice.client import (
    ModelList,
    QueueVideoRequest,
    VeniceRequestInvalidError,
    VideoModel,
    build_queue_request,
    is_upscale_model,
    validate_queue_request,
)

T2V = "wan-2-7-text-to-video"
I2V = "wan-2-7-image-to-video"
REF = "wan-2-7-reference-to-video"
UPSCALE = "topaz-video-upscale"
NO_AUDIO_SWITCH = "grok-imagine-text-to-video-private"
IMG = "https://example.com/a.png"


def entry(model_id: str, **constraints: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "type": "video",
        "model_spec": {"name": model_id, "constraints": constraints, "unknown_extra": 1},
        "unknown_top_level": True,
    }


CATALOGUE_JSON = {
    "object": "list",
    "data": [
        entry(
            T2V,
            model_type="text-to-video",
            durations=["5s", "10s"],
            resolutions=["720p", "1080p"],
            aspect_ratios=["16:9", "9:16", "1:1"],
            audio=True,
            audio_configurable=True,
            prompt_character_limit=100,
        ),
        entry(
            I2V,
            model_type="image-to-video",
            durations=["5s"],
            resolutions=["720p"],
            aspect_ratios=[],
        ),
        entry(
            REF,
            model_type="image-to-video",
            durations=["5s"],
            resolutions=["720p"],
            aspect_ratios=["16:9"],
            supports_reference_images=True,
            supports_elements=True,
            supports_scene_images=True,
        ),
        entry(UPSCALE, model_type="video", durations=["Auto"], upscale_factors=[1, 2, 4]),
        entry(
            NO_AUDIO_SWITCH,
            model_type="text-to-video",
            durations=["6s"],
            resolutions=["720p"],
            aspect_ratios=["16:9"],
            audio=True,
            audio_configurable=False,
            supports_end_image=False,
            supports_reference_images=False,
        ),
        {"id": "offline-model", "model_spec": {"offline": True, "constraints": {"durations": ["5s"]}}},
    ],
}


@pytest.fixture(scope="module")
def catalogue() -> dict[str, VideoModel]:
    return ModelList.model_validate(CATALOGUE_JSON).by_id()


def request(model: str = T2V, **fields: Any) -> QueueVideoRequest:
    base: dict[str, Any] = {"model": model, "prompt": "a fox in the snow", "duration": "5s"}
    if model in (I2V, REF):
        base["image_url"] = IMG
    if model == UPSCALE:
        base = {"model": model, "duration": "Auto", "video_url": "https://example.com/in.mp4"}
    if model == NO_AUDIO_SWITCH:
        base["duration"] = "6s"
    base.update(fields)
    return build_queue_request(**base)


def refusal(catalogue: dict[str, VideoModel], req: QueueVideoRequest) -> VeniceRequestInvalidError:
    with pytest.raises(VeniceRequestInvalidError) as info:
        validate_queue_request(req, catalogue)
    return info.value


def b64(size: int) -> str:
    return base64.b64encode(b"\0" * size).decode()


@pytest.mark.parametrize(
    "req",
    [
        {},
        {"resolution": "1080p", "aspect_ratio": "9:16", "audio": False, "negative_prompt": "blur"},
        {"prompt": "x" * 100, "end_image_url": IMG},
        {"model": I2V, "image_url": "data:image/png;base64," + b64(10)},
        {"model": UPSCALE, "upscale_factor": 4},
        {"model": UPSCALE, "upscale_factor": 1, "prompt": "sharper"},
        {
            "model": REF,
            "reference_image_urls": [IMG] * 9,
            "scene_image_urls": [IMG] * 4,
            "elements": [{"frontal_image_url": IMG, "reference_image_urls": [IMG] * 3}] * 4,
        },
        {"model": NO_AUDIO_SWITCH},
        {"model": NO_AUDIO_SWITCH, "audio": True},
    ],
    ids=[
        "minimal",
        "all-options",
        "prompt-at-limit",
        "data-url",
        "upscale",
        "enhance",
        "max-lists",
        "vps",
        "audio-always-on-true",
    ],
)
def test_valid_requests_pass(catalogue: dict[str, VideoModel], req: dict[str, Any]) -> None:
    validate_queue_request(request(**req), catalogue)


@pytest.mark.parametrize(
    ("fields", "field", "mentions"),
    [
        ({"model": "no-such-model"}, "model", [T2V, UPSCALE]),
        ({"model": "offline-model"}, "model", ["offline"]),
        ({"duration": "7s"}, "duration", ["'7s'", "5s, 10s"]),
        ({"duration": "Auto"}, "duration", ["5s, 10s"]),
        ({"resolution": "4k"}, "resolution", ["720p, 1080p"]),
        ({"resolution": "huge"}, "resolution", ["720p, 1080p"]),
        ({"aspect_ratio": "4:3"}, "aspect_ratio", ["16:9, 9:16, 1:1"]),
        ({"aspect_ratio": "7:5"}, "aspect_ratio", ["not a Venice value", "21:9"]),
        ({"model": I2V, "aspect_ratio": "16:9"}, "aspect_ratio", ["does not support"]),
        ({"prompt": ""}, "prompt", ["required", "100"]),
        ({"prompt": "   "}, "prompt", ["required"]),
        ({"prompt": "x" * 101}, "prompt", ["101", "at most 100"]),
        ({"negative_prompt": "x" * 101}, "negative_prompt", ["at most 100"]),
        ({"model": I2V, "image_url": None}, "image_url", ["required", "image-to-video"]),
        ({"model": UPSCALE, "video_url": None}, "video_url", ["required"]),
        ({"upscale_factor": 2}, "upscale_factor", ["only upscale models", "text-to-video"]),
        ({"model": UPSCALE, "upscale_factor": 3}, "upscale_factor", ["1, 2, 4"]),
        ({"model": UPSCALE, "resolution": "720p"}, "resolution", ["upscale_factor"]),
        ({"model": NO_AUDIO_SWITCH, "audio": False}, "audio", ["always on"]),
        ({"model": I2V, "audio": True}, "audio", ["does not generate audio"]),
        ({"model": NO_AUDIO_SWITCH, "end_image_url": IMG}, "end_image_url", ["end frame"]),
        ({"model": REF, "reference_image_urls": [IMG] * 10}, "reference_image_urls", ["10", "at most 9"]),
        ({"model": REF, "scene_image_urls": [IMG] * 5}, "scene_image_urls", ["at most 4"]),
        ({"model": REF, "elements": [{"frontal_image_url": IMG}] * 5}, "elements", ["at most 4"]),
        (
            {"model": REF, "elements": [{"frontal_image_url": IMG, "reference_image_urls": [IMG] * 4}]},
            "elements[0].reference_image_urls",
            ["at most 3"],
        ),
        ({"model": NO_AUDIO_SWITCH, "reference_image_urls": [IMG]}, "reference_image_urls", ["support"]),
        ({"model": I2V, "image_url": "ftp://example.com/a.png"}, "image_url", ["http(s) URL"]),
        ({"model": I2V, "image_url": "/tmp/a.png"}, "image_url", ["http(s) URL"]),
        ({"model": I2V, "image_url": "data:image/png;base64,@@@"}, "image_url", ["base64"]),
        ({"model": I2V, "image_url": "data:nonsense"}, "image_url", ["malformed data: URL"]),
        (
            {"model": REF, "scene_image_urls": [IMG, "file:///etc/passwd"]},
            "scene_image_urls[1]",
            ["http(s)"],
        ),
        (
            {"model": REF, "elements": [{"frontal_image_url": "s3://bucket/key.png"}]},
            "elements[0].frontal_image_url",
            ["http(s)"],
        ),
        (
            {"audio_url": "data:audio/mpeg;base64," + b64(15 * 1024 * 1024 + 3)},
            "audio_url",
            ["15 MB"],
        ),
        (
            {"end_image_url": "data:image/png;base64," + b64(36 * 1024 * 1024)},
            "request",
            ["35 MB", "413"],
        ),
    ],
)
def test_invalid_requests_name_the_field_and_what_is_allowed(
    catalogue: dict[str, VideoModel], fields: dict[str, Any], field: str, mentions: list[str]
) -> None:
    error = refusal(catalogue, request(**fields))
    assert error.field == field
    assert str(error).startswith(f"{field}: ")
    for text in mentions:
        assert text in str(error)


def test_unknown_model_lists_every_available_model(catalogue: dict[str, VideoModel]) -> None:
    error = refusal(catalogue, request(model="sora-9"))
    for model_id in catalogue:
        assert model_id in str(error)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"duration": 5}, "duration"),
        ({"upscale_factor": "2"}, "upscale_factor"),
        ({"audio": "yes"}, "audio"),
        ({"reference_image_urls": "https://example.com/a.png"}, "reference_image_urls"),
        ({"elements": [{"frontal_image_url": IMG, "colour": "red"}]}, "elements.0.colour"),
        ({"seed": 3}, "seed"),
    ],
)
def test_build_refuses_wrong_types_and_unknown_fields_naming_them(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(VeniceRequestInvalidError) as info:
        build_queue_request(**{"model": T2V, "prompt": "p", "duration": "5s", **fields})
    assert info.value.field == field


def test_build_drops_unset_fields_from_the_body() -> None:
    req = build_queue_request(model=T2V, prompt="p", duration="5s", resolution=None, audio=False)
    assert req.to_json() == {"model": T2V, "prompt": "p", "duration": "5s", "audio": False}


def test_upscale_detection(catalogue: dict[str, VideoModel]) -> None:
    assert is_upscale_model(catalogue[UPSCALE])
    assert not is_upscale_model(catalogue[T2V])
    implicit = ModelList.model_validate(
        {"data": [entry("acme-video-upscale", model_type="video", durations=["Auto"])]}
    ).by_id()
    assert is_upscale_model(implicit["acme-video-upscale"])


def test_prompt_limit_defaults_to_2500_when_the_catalogue_is_silent() -> None:
    catalogue = ModelList.model_validate({"data": [entry("m", durations=["5s"])]}).by_id()
    validate_queue_request(request(model="m", prompt="x" * 2500), catalogue)
    error = refusal(catalogue, request(model="m", prompt="x" * 2501))
    assert "2500" in str(error)
