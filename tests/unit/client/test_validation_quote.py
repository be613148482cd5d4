"""Quote requests are validated on their own (no prompt), by the same per-field rules as queue requests.

Also: ``audio`` on a model whose audio is always on, for both kinds of request.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from airflow_provider_venice.client import (
    ModelList,
    QueueVideoRequest,
    QuoteVideoRequest,
    VeniceRequestInvalidError,
    VideoModel,
    build_queue_request,
    build_quote_request,
    validate_queue_request,
    validate_quote_request,
)

T2V = "wan-2-7-text-to-video"
I2V = "wan-2-7-image-to-video"
UPSCALE = "topaz-video-upscale"
NO_AUDIO_SWITCH = "grok-imagine-text-to-video-private"
IN_MP4 = "https://example.com/in.mp4"


def entry(model_id: str, **constraints: Any) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "type": "video", "model_spec": {"constraints": constraints}}


CATALOGUE_JSON = {
    "data": [
        entry(
            T2V,
            model_type="text-to-video",
            durations=["5s", "10s"],
            resolutions=["720p", "1080p"],
            aspect_ratios=["16:9", "9:16", "1:1"],
            audio=True,
            audio_configurable=True,
        ),
        entry(I2V, model_type="image-to-video", durations=["5s"], resolutions=["720p"], aspect_ratios=[]),
        entry(UPSCALE, model_type="video", durations=["Auto"], upscale_factors=[1, 2, 4]),
        entry(
            NO_AUDIO_SWITCH,
            model_type="text-to-video",
            durations=["6s"],
            resolutions=["720p"],
            aspect_ratios=["16:9"],
            audio=True,
            audio_configurable=False,
        ),
        {"id": "offline-model", "model_spec": {"offline": True, "constraints": {"durations": ["5s"]}}},
    ],
}


@pytest.fixture(scope="module")
def catalogue() -> dict[str, VideoModel]:
    return ModelList.model_validate(CATALOGUE_JSON).by_id()


def _base(model: str) -> dict[str, Any]:
    if model == UPSCALE:
        return {"model": model, "duration": "Auto", "video_url": IN_MP4}
    return {"model": model, "duration": "6s" if model == NO_AUDIO_SWITCH else "5s"}


def quote(model: str = T2V, **fields: Any) -> QuoteVideoRequest:
    return build_quote_request(**{**_base(model), **fields})


def request(model: str = T2V, **fields: Any) -> QueueVideoRequest:
    base = {**_base(model), "prompt": "a fox in the snow"}
    if model == I2V:
        base["image_url"] = "https://example.com/a.png"
    return build_queue_request(**{**base, **fields})


def refusal(catalogue: dict[str, VideoModel], req: QueueVideoRequest) -> VeniceRequestInvalidError:
    with pytest.raises(VeniceRequestInvalidError) as info:
        validate_queue_request(req, catalogue)
    return info.value


def b64(size: int) -> str:
    return base64.b64encode(b"\0" * size).decode()


# --- audio on a model whose audio is always on ---------------------------------------------------------


def test_audio_true_is_accepted_where_audio_is_always_on(catalogue: dict[str, VideoModel]) -> None:
    validate_queue_request(request(model=NO_AUDIO_SWITCH, audio=True), catalogue)
    validate_quote_request(build_quote_request(model=NO_AUDIO_SWITCH, duration="6s", audio=True), catalogue)


def test_audio_false_is_refused_where_audio_is_always_on(catalogue: dict[str, VideoModel]) -> None:
    error = refusal(catalogue, request(model=NO_AUDIO_SWITCH, audio=False))
    assert error.field == "audio"
    assert "audio is always on" in str(error)


def test_audio_true_is_refused_without_audio(catalogue: dict[str, VideoModel]) -> None:
    error = refusal(catalogue, request(model=I2V, audio=True))
    assert (error.field, "does not generate audio" in str(error)) == ("audio", True)


# --- quote requests, validated on their own (no prompt) ---------------------------------------------


def quote_refusal(catalogue: dict[str, VideoModel], req: QuoteVideoRequest) -> VeniceRequestInvalidError:
    with pytest.raises(VeniceRequestInvalidError) as info:
        validate_quote_request(req, catalogue)
    return info.value


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"resolution": "1080p", "aspect_ratio": "9:16", "audio": False},
        {"model": I2V},
        {"model": UPSCALE, "upscale_factor": 2},
        {"model": UPSCALE, "video_url": "data:video/mp4;base64," + b64(30)},
        {"model": NO_AUDIO_SWITCH, "audio": True},
        {"reference_video_total_duration": 150},
        {"model": UPSCALE, "reference_video_total_duration": 0.5},
    ],
    ids=[
        "minimal",
        "options",
        "image-model-without-image",
        "upscale",
        "data-url",
        "audio-on",
        "ref-150",
        "ref-half",
    ],
)
def test_valid_quote_requests_pass_without_a_prompt(
    catalogue: dict[str, VideoModel], fields: dict[str, Any]
) -> None:
    validate_quote_request(quote(**fields), catalogue)


@pytest.mark.parametrize(
    ("fields", "field", "mentions"),
    [
        ({"model": "no-such-model"}, "model", [T2V, UPSCALE]),
        ({"model": "offline-model"}, "model", ["offline"]),
        ({"duration": "7s"}, "duration", ["'7s'", "5s, 10s"]),
        ({"resolution": "4k"}, "resolution", ["720p, 1080p"]),
        ({"aspect_ratio": "4:3"}, "aspect_ratio", ["16:9, 9:16, 1:1"]),
        ({"aspect_ratio": "7:5"}, "aspect_ratio", ["not a Venice value"]),
        ({"model": I2V, "aspect_ratio": "16:9"}, "aspect_ratio", ["does not support"]),
        ({"upscale_factor": 2}, "upscale_factor", ["only upscale models"]),
        ({"model": UPSCALE, "upscale_factor": 3}, "upscale_factor", ["1, 2, 4"]),
        ({"model": UPSCALE, "resolution": "720p"}, "resolution", ["upscale_factor"]),
        ({"model": I2V, "audio": True}, "audio", ["does not generate audio"]),
        ({"model": NO_AUDIO_SWITCH, "audio": False}, "audio", ["always on"]),
        ({"model": UPSCALE, "video_url": None}, "video_url", ["required"]),
        ({"model": UPSCALE, "video_url": "ftp://example.com/in.mp4"}, "video_url", ["http(s) URL"]),
        ({"model": UPSCALE, "video_url": "data:video/mp4;base64,@@@"}, "video_url", ["base64"]),
        ({"reference_video_total_duration": 0}, "reference_video_total_duration", ["at most 150"]),
        ({"reference_video_total_duration": -3.0}, "reference_video_total_duration", ["above 0"]),
        ({"reference_video_total_duration": 150.5}, "reference_video_total_duration", ["at most 150"]),
    ],
)
def test_invalid_quote_requests_name_the_field(
    catalogue: dict[str, VideoModel], fields: dict[str, Any], field: str, mentions: list[str]
) -> None:
    error = quote_refusal(catalogue, quote(**fields))
    assert error.field == field
    assert str(error).startswith(f"{field}: ")
    for text in mentions:
        assert text in str(error)


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), float("-inf")])
def test_quote_reference_video_duration_must_be_finite(
    catalogue: dict[str, VideoModel], seconds: float
) -> None:
    with pytest.raises(VeniceRequestInvalidError) as built:
        quote(reference_video_total_duration=seconds)
    assert built.value.field == "reference_video_total_duration"
    # A request built around the model's own checks is still refused by the validator.
    unchecked = QuoteVideoRequest.model_construct(
        model=T2V, duration="5s", reference_video_total_duration=seconds
    )
    assert quote_refusal(catalogue, unchecked).field == "reference_video_total_duration"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"duration": 5}, "duration"),
        ({"upscale_factor": "2"}, "upscale_factor"),
        ({"audio": "yes"}, "audio"),
        ({"reference_video_total_duration": "long"}, "reference_video_total_duration"),
        ({"reference_video_total_duration": True}, "reference_video_total_duration"),
        ({"prompt": "a cat"}, "prompt"),
    ],
)
def test_build_quote_refuses_wrong_types_and_unknown_fields_naming_them(
    fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(VeniceRequestInvalidError) as info:
        build_quote_request(**{"model": T2V, "duration": "5s", **fields})
    assert info.value.field == field


def test_build_quote_drops_unset_fields_from_the_body() -> None:
    req = build_quote_request(model=T2V, duration="5s", resolution=None, reference_video_total_duration=12)
    assert req.to_json() == {"model": T2V, "duration": "5s", "reference_video_total_duration": 12.0}


@pytest.mark.parametrize(
    "fields",
    [
        {"duration": "7s"},
        {"resolution": "4k"},
        {"aspect_ratio": "4:3"},
        {"upscale_factor": 2},
        {"model": UPSCALE, "upscale_factor": 3},
        {"model": I2V, "audio": True},
        {"model": NO_AUDIO_SWITCH, "audio": False},
        {"model": UPSCALE, "video_url": None},
        {"model": UPSCALE, "video_url": "s3://bucket/in.mp4"},
    ],
)
def test_quote_and_queue_refuse_shared_fields_alike(
    catalogue: dict[str, VideoModel], fields: dict[str, Any]
) -> None:
    queue_error = refusal(catalogue, request(**fields))
    quote_error = quote_refusal(catalogue, quote(**fields))
    assert (quote_error.field, str(quote_error)) == (queue_error.field, str(queue_error))


def test_to_quote_request_prices_the_same_job(catalogue: dict[str, VideoModel]) -> None:
    queued = request(model=UPSCALE, upscale_factor=2, prompt="sharper")
    priced = queued.to_quote_request(reference_video_total_duration=30.0)
    assert priced.to_json() == {
        "model": UPSCALE,
        "duration": "Auto",
        "upscale_factor": 2,
        "video_url": IN_MP4,
        "reference_video_total_duration": 30.0,
    }
    validate_quote_request(priced, catalogue)
    assert "reference_video_total_duration" not in queued.to_quote_request().to_json()
