"""Bad input, property-based: every invalid request fails before anything is paid, naming the field.

Each kind below is a hypothesis strategy for one way to get a request wrong; it yields the operator
arguments and the field the error must name. The operators run in-process against the emulator (its
real catalogue) with a fake task state store; the emulator must see nothing but the free catalogue
lookup: no ``/video/queue`` (and not even a ``/video/quote``), and the task state store stays empty.
"""

from __future__ import annotations

import base64
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from reliability_support import BUCKET, MODELS, FakeStore, Venice, make_context

from airflow_provider_venice.operators.transcription import VeniceVideoTranscriptionOperator
from airflow_provider_venice.operators.video import (
    VeniceGenerateVideoOperator,
    VeniceVideoQueueOperator,
    VeniceVideoQuoteOperator,
)
from airflow_provider_venice.version_compat import AirflowFailException

T2V = "wan-2-7-text-to-video"  # 5s 6s 8s 10s; 480p 720p 1080p; 16:9 9:16 1:1; audio switchable
I2V = "wan-2-7-image-to-video"  # needs image_url
REF = "wan-2-7-reference-to-video"  # reference images, elements, scene images; no end frame
VPS = "grok-imagine-text-to-video-private"  # audio always on (not switchable)
UPSCALE = "topaz-video-upscale"  # Auto only; needs video_url; upscale_factor 1, 2, 4; no aspect ratios
KLING = "kling-2.6-pro-text-to-video"  # 1080p only; prompt limit 3500
IMG = "https://example.com/frame.png"
VIDEO = "https://example.com/clip.mp4"
VALID = {
    T2V: {"prompt": "a red fox in fresh snow", "duration": "5s"},
    I2V: {"prompt": "the fox starts to run", "duration": "5s", "image_url": IMG},
    REF: {"prompt": "@Element1 walks into @Image1", "duration": "5s", "image_url": IMG},
    VPS: {"prompt": "a lighthouse in a storm", "duration": "6s"},
    UPSCALE: {"duration": "Auto", "video_url": VIDEO},
    KLING: {"prompt": "a market square at dawn", "duration": "5s"},
}

Case = tuple[dict[str, Any], str]
KINDS: dict[str, st.SearchStrategy[Case]] = {}


def kind(name: str) -> Any:
    def register(builder: Any) -> Any:
        def drawing(draw: Any) -> Case:
            draw(st.just(None))  # every kind draws, even those with one fixed example
            return builder(draw)

        KINDS[name] = st.composite(drawing)()
        return builder

    return register


def request(model: str, **changes: Any) -> dict[str, Any]:
    return {"model": model, **VALID[model], **changes}


words = st.text(string.ascii_letters + " ", min_size=1, max_size=40).filter(str.strip)
urls = st.builds(lambda p: f"https://img.example.com/{p}.png", st.text(string.ascii_lowercase, min_size=1))
not_str = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2)
)

# --- wrong types ------------------------------------------------------------------------------------


@kind("prompt-not-a-string")
def _(draw: Any) -> Case:
    return request(T2V, prompt=draw(not_str)), "prompt"


@kind("negative-prompt-not-a-string")
def _(draw: Any) -> Case:
    return request(T2V, negative_prompt=draw(not_str)), "negative_prompt"


@kind("duration-not-a-string")
def _(draw: Any) -> Case:
    return request(T2V, duration=draw(st.integers(1, 60))), "duration"


@kind("model-not-a-string")
def _(draw: Any) -> Case:
    return {
        **request(T2V),
        "model": draw(st.one_of(st.integers(), st.lists(st.just(T2V), min_size=1))),
    }, "model"


@kind("resolution-not-a-string")
def _(draw: Any) -> Case:
    return request(T2V, resolution=draw(st.sampled_from([720, 1080, 480.0]))), "resolution"


@kind("aspect-ratio-not-a-string")
def _(draw: Any) -> Case:
    return request(T2V, aspect_ratio=draw(st.sampled_from([16 / 9, 1, (16, 9)]))), "aspect_ratio"


@kind("audio-not-a-boolean")
def _(draw: Any) -> Case:
    return request(T2V, audio=draw(st.sampled_from(["yes", "maybe", "1", 2, [True]]))), "audio"


@kind("upscale-factor-not-an-integer")
def _(draw: Any) -> Case:
    return request(UPSCALE, upscale_factor=draw(st.sampled_from(["two", "2x", 2.5, "x"]))), "upscale_factor"


@kind("image-url-not-a-string")
def _(draw: Any) -> Case:
    return request(
        I2V, image_url=draw(st.one_of(st.integers(), st.lists(urls, min_size=1, max_size=2)))
    ), "image_url"


@kind("reference-images-not-a-list")
def _(draw: Any) -> Case:
    return request(REF, reference_image_urls=draw(st.one_of(urls, st.integers()))), "reference_image_urls"


@kind("scene-images-not-strings")
def _(draw: Any) -> Case:
    return request(
        REF, scene_image_urls=draw(st.lists(st.integers(), min_size=1, max_size=3))
    ), "scene_image_urls"


@kind("elements-not-objects")
def _(draw: Any) -> Case:
    return request(
        REF, elements=draw(st.lists(st.one_of(st.integers(), urls), min_size=1, max_size=3))
    ), "elements"


@kind("element-with-unknown-field")
def _(draw: Any) -> Case:
    name = draw(st.sampled_from(["image", "frontal_image", "refs", "url"]))
    return request(REF, elements=[{name: IMG}]), "elements"


# --- models and prompts --------------------------------------------------------------------------------


@kind("unknown-model")
def _(draw: Any) -> Case:
    model = draw(st.text(string.ascii_lowercase + string.digits + "-.", min_size=1, max_size=40))
    return {**request(T2V), "model": model if model not in VALID else model + "-x"}, "model"


@kind("empty-prompt")
def _(draw: Any) -> Case:
    return request(
        draw(st.sampled_from([T2V, I2V, KLING])), prompt=draw(st.sampled_from(["", " ", "\n\t "]))
    ), "prompt"


@kind("missing-prompt")
def _(draw: Any) -> Case:
    return request(draw(st.sampled_from([T2V, VPS, REF])), prompt=None), "prompt"


@kind("prompt-over-the-limit")
def _(draw: Any) -> Case:
    return request(T2V, prompt="x" * draw(st.integers(2501, 6000))), "prompt"


@kind("prompt-over-a-longer-limit")
def _(draw: Any) -> Case:
    return request(KLING, prompt="y" * draw(st.integers(3501, 8000))), "prompt"


@kind("negative-prompt-over-the-limit")
def _(draw: Any) -> Case:
    return request(T2V, negative_prompt="n" * draw(st.integers(2501, 6000))), "negative_prompt"


# --- durations, resolutions, aspect ratios -----------------------------------------------------------------


@kind("unsupported-duration")
def _(draw: Any) -> Case:
    value = draw(st.one_of(st.integers(1, 120).map(lambda n: f"{n}s"), words, st.just("Auto")))
    return request(T2V, duration=value if value not in ("5s", "6s", "8s", "10s") else "7s"), "duration"


@kind("missing-duration")
def _(draw: Any) -> Case:
    return request(draw(st.sampled_from([T2V, UPSCALE])), duration=None), "duration"


@kind("timed-duration-on-upscale")
def _(draw: Any) -> Case:
    return request(UPSCALE, duration=draw(st.sampled_from(["5s", "10s", "auto"]))), "duration"


@kind("resolution-not-offered-by-the-model")
def _(draw: Any) -> Case:
    return request(
        T2V, resolution=draw(st.sampled_from(["256p", "360p", "540p", "1440p", "2160p", "4k"]))
    ), "resolution"


@kind("resolution-not-a-venice-value")
def _(draw: Any) -> Case:
    value = draw(st.text(string.digits + "pkx", min_size=1, max_size=6))
    return request(T2V, resolution=value if value not in ("480p", "720p", "1080p") else "999p"), "resolution"


@kind("resolution-below-the-models-only-one")
def _(draw: Any) -> Case:
    return request(KLING, resolution=draw(st.sampled_from(["480p", "720p"]))), "resolution"


@kind("resolution-on-an-upscale-model")
def _(draw: Any) -> Case:
    return request(UPSCALE, resolution=draw(st.sampled_from(["720p", "1080p", "4k"]))), "resolution"


@kind("aspect-ratio-not-a-venice-value")
def _(draw: Any) -> Case:
    a, b = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    value = f"{a}:{b}"
    known = {"1:1", "2:3", "3:2", "3:4", "4:3", "9:16", "16:9", "21:9", "4:5", "5:4", "9:21"}
    return request(T2V, aspect_ratio=value if value not in known else "7:5"), "aspect_ratio"


@kind("aspect-ratio-not-offered-by-the-model")
def _(draw: Any) -> Case:
    return request(
        T2V, aspect_ratio=draw(st.sampled_from(["21:9", "4:3", "3:4", "2:3", "9:21"]))
    ), "aspect_ratio"


@kind("aspect-ratio-on-an-upscale-model")
def _(draw: Any) -> Case:
    return request(UPSCALE, aspect_ratio=draw(st.sampled_from(["16:9", "1:1"]))), "aspect_ratio"


# --- upscale and audio ----------------------------------------------------------------------------


@kind("upscale-factor-on-a-non-upscale-model")
def _(draw: Any) -> Case:
    return request(
        draw(st.sampled_from([T2V, I2V, VPS, KLING])), upscale_factor=draw(st.sampled_from([1, 2, 4]))
    ), "upscale_factor"


@kind("upscale-factor-not-allowed")
def _(draw: Any) -> Case:
    value = draw(st.integers(-5, 16).filter(lambda n: n not in (1, 2, 4)))
    return request(UPSCALE, upscale_factor=value), "upscale_factor"


@kind("audio-switched-off-on-an-always-on-model")
def _(draw: Any) -> Case:
    return request(VPS, audio=draw(st.just(False))), "audio"  # audio=True asks for what it does: fine


@kind("audio-on-a-silent-model")
def _(draw: Any) -> Case:
    return request(draw(st.sampled_from([UPSCALE, REF])), audio=True), "audio"


# --- inputs and lists -----------------------------------------------------------------------------


@kind("image-to-video-without-image")
def _(draw: Any) -> Case:
    return request(I2V, image_url=None), "image_url"


@kind("upscale-without-video")
def _(draw: Any) -> Case:
    return request(UPSCALE, video_url=None, upscale_factor=draw(st.sampled_from([None, 2]))), "video_url"


@kind("end-frame-on-a-model-without-one")
def _(draw: Any) -> Case:
    return request(REF, end_image_url=draw(urls)), "end_image_url"


@kind("too-many-reference-images")
def _(draw: Any) -> Case:
    return request(
        REF, reference_image_urls=draw(st.lists(urls, min_size=10, max_size=14))
    ), "reference_image_urls"


@kind("too-many-elements")
def _(draw: Any) -> Case:
    count = draw(st.integers(5, 8))
    return request(REF, elements=[{"frontal_image_url": IMG}] * count), "elements"


@kind("too-many-reference-images-in-an-element")
def _(draw: Any) -> Case:
    refs = draw(st.lists(urls, min_size=4, max_size=7))
    index = draw(st.integers(0, 3))
    elements = [{"frontal_image_url": IMG} for _ in range(index)] + [
        {"frontal_image_url": IMG, "reference_image_urls": refs}
    ]
    return request(REF, elements=elements), f"elements[{index}].reference_image_urls"


@kind("too-many-scene-images")
def _(draw: Any) -> Case:
    return request(REF, scene_image_urls=draw(st.lists(urls, min_size=5, max_size=8))), "scene_image_urls"


@kind("reference-images-on-a-model-without-them")
def _(draw: Any) -> Case:
    return request(
        T2V, reference_image_urls=draw(st.lists(urls, min_size=1, max_size=3))
    ), "reference_image_urls"


@kind("elements-on-a-model-without-them")
def _(draw: Any) -> Case:
    return request(T2V, elements=[{"frontal_image_url": draw(urls)}]), "elements"


@kind("scene-images-on-a-model-without-them")
def _(draw: Any) -> Case:
    return request(KLING, scene_image_urls=draw(st.lists(urls, min_size=1, max_size=2))), "scene_image_urls"


# --- URLs and data: URLs --------------------------------------------------------------------------


@kind("malformed-data-url")
def _(draw: Any) -> Case:
    value = draw(
        st.sampled_from(
            [
                "data:image/png;base64",  # no comma
                "data:image png;base64,AAAA",
                "data:;;;,AAAA",
                "data:image/png;charset=utf-8;base64;extra,AAAA",
            ]
        )
    )
    return request(I2V, image_url=value), "image_url"


@kind("data-url-with-broken-base64")
def _(draw: Any) -> Case:
    payload = draw(st.sampled_from(["A", "AAA", "@@@@", "AAAA=AAA", "Zm9v!"]))
    field = draw(st.sampled_from(["image_url", "end_image_url"]))
    return request(I2V, **{field: f"data:image/png;base64,{payload}"}), field


@kind("oversized-inline-audio")
def _(draw: Any) -> Case:
    size = 15 * 1024 * 1024 + draw(st.integers(1, 1024))
    return request(
        T2V, audio_url="data:audio/mpeg;base64," + base64.b64encode(bytes(size)).decode()
    ), "audio_url"


@kind("oversized-request-body")
def _(draw: Any) -> Case:
    size = 35 * 1024 * 1024 + draw(st.integers(1, 1024))
    return request(UPSCALE, video_url="data:video/mp4," + "v" * size), "data: URLs"


@kind("url-with-a-wrong-scheme")
def _(draw: Any) -> Case:
    scheme = draw(st.sampled_from(["ftp", "file", "javascript", "s3", "gs"]))
    return request(I2V, image_url=f"{scheme}://bucket/frame.png"), "image_url"


@kind("list-url-without-a-host")
def _(draw: Any) -> Case:
    bad = draw(st.sampled_from(["https://", "http:///x.png", "frame.png", "//cdn/x.png", ""]))
    return request(REF, scene_image_urls=[IMG, bad]), "scene_image_urls[1]"


@kind("element-video-url-not-a-url")
def _(draw: Any) -> Case:
    return request(
        REF, elements=[{"frontal_image_url": IMG, "video_url": draw(words)}]
    ), "elements[0].video_url"


VIDEO_KINDS = sorted(KINDS)


# --- transcription and S3 names -------------------------------------------------------------------

OTHER_KINDS: dict[str, st.SearchStrategy[Case]] = {
    "transcription-url-not-youtube": st.one_of(
        st.sampled_from(
            [
                "https://vimeo.com/12345",
                "https://www.youtube.com/",
                "https://www.youtube.com/watch",
                "https://youtube.com.evil.example/watch?v=abc",
                "ftp://www.youtube.com/watch?v=abc",
                "https://youtu.be/",
                "not a url",
            ]
        ),
        urls,
    ).map(lambda url: ({"url": url}, "url")),
    "transcription-format-unknown": st.sampled_from(["xml", "srt", "JSON", ""]).map(
        lambda fmt: ({"url": "https://youtu.be/dQw4w9WgXcQ", "response_format": fmt}, "response_format")
    ),
    "s3-bucket-name-invalid": st.one_of(
        st.sampled_from(["ab", "Upper-Case", "under_score", "-leading", "trailing-", "dots..dots", "a" * 64]),
        st.text(string.ascii_uppercase + "_!/ ", min_size=1, max_size=10),
    ).map(lambda bucket: ({"s3_bucket": bucket}, "s3_bucket")),
    "s3-key-invalid": st.one_of(
        st.sampled_from(["", "/absolute/key.mp4"]),
        st.integers(1025, 1500).map(lambda n: "k" * n),
        st.integers(512, 700).map(lambda n: "é" * n + "/x"),  # over 1024 bytes in UTF-8
    ).map(lambda key: ({"s3_key": key}, "s3_key")),
}

ALL_KINDS = len(KINDS) + len(OTHER_KINDS)


def test_there_are_at_least_forty_kinds_of_invalid_request() -> None:
    assert ALL_KINDS >= 40, ALL_KINDS


OPERATORS = {
    "queue": lambda f: VeniceVideoQueueOperator(task_id="queue", **f),
    "quote": lambda f: VeniceVideoQuoteOperator(task_id="quote", **f),
    "generate": lambda f: VeniceGenerateVideoOperator(
        task_id="generate", s3_bucket=BUCKET, s3_key="videos/x.mp4", replace=True, **f
    ),
}


PRICING_FIELDS = {"model", "duration", "aspect_ratio", "resolution", "upscale_factor", "audio", "video_url"}


def priced(field: str) -> bool:
    """Whether ``/video/quote`` reads ``field`` (so the quote operator must refuse a wrong value of it)."""
    return field in PRICING_FIELDS or field == "data: URLs"


def check_refused(venice: Venice, make: Any, fields: dict[str, Any], field: str) -> None:
    store = FakeStore()
    with pytest.raises(AirflowFailException) as info:
        make(fields).execute(make_context(store))
    message = str(info.value)
    assert field in message, message
    assert len(message) < 2000  # it names the problem, it does not echo a 35 MB payload
    assert {c["path"] for c in venice.calls()} <= {MODELS}, [c["path"] for c in venice.calls()]
    assert store.data == {}


SETTINGS = settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.large_base_example,
    ],
)


@pytest.mark.parametrize("name", VIDEO_KINDS)
@SETTINGS
@given(data=st.data())
def test_invalid_video_request_fails_before_any_charge(
    venice: Venice, name: str, data: st.DataObject
) -> None:
    fields, field = data.draw(KINDS[name])
    operator = data.draw(st.sampled_from(sorted(OPERATORS)))
    if operator == "quote" and not priced(field):
        operator = "queue"  # the quote reads only the pricing fields; the paid call reads them all
    check_refused(venice, OPERATORS[operator], {k: v for k, v in fields.items() if v is not None}, field)


@pytest.mark.parametrize("name", sorted(OTHER_KINDS))
@SETTINGS
@given(data=st.data())
def test_invalid_transcription_or_s3_location_fails_before_any_call(
    venice: Venice, name: str, data: st.DataObject
) -> None:
    fields, field = data.draw(OTHER_KINDS[name])
    if name.startswith("transcription"):
        make = lambda f: VeniceVideoTranscriptionOperator(task_id="transcribe", **f)  # noqa: E731
    else:
        location = {"s3_bucket": BUCKET, "s3_key": "videos/x.mp4", **fields}
        make = lambda f: VeniceGenerateVideoOperator(  # noqa: E731
            task_id="generate", **request(T2V), **location
        )
    check_refused(venice, make, fields, field)
    assert venice.calls() == []  # these are refused before even the catalogue is read


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.large_base_example,
    ],
)
@given(case=st.one_of([KINDS[name] for name in VIDEO_KINDS if not name.startswith("oversized")]))
def test_any_invalid_request_is_refused_by_the_paid_operator(venice: Venice, case: Case) -> None:
    """The property over all kinds at once: no invalid request ever reaches /video/queue."""
    fields, field = case
    check_refused(venice, OPERATORS["queue"], {k: v for k, v in fields.items() if v is not None}, field)
