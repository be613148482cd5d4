from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from emulator_helpers import I2V, KLING, R2V, T2V, UPSCALE, valid_body

if TYPE_CHECKING:
    import httpx

    from airflow_provider_venice.testing import VeniceEmulator

URLS = [f"https://example.com/{n}.jpg" for n in range(12)]

QUEUE_ROWS = [
    pytest.param(T2V, {"prompt": None}, ("prompt",), id="missing-prompt"),
    pytest.param(T2V, {"prompt": ""}, ("prompt",), id="empty-prompt"),
    pytest.param(T2V, {"prompt": "x" * 2501}, ("prompt",), id="prompt-over-2500"),
    pytest.param(KLING, {"prompt": "x" * 3501}, ("prompt",), id="prompt-over-3500"),
    pytest.param(T2V, {"negative_prompt": "x" * 2501}, ("negative_prompt",), id="negative-prompt-too-long"),
    pytest.param(T2V, {"duration": None}, ("duration",), id="missing-duration"),
    pytest.param(T2V, {"duration": "7s"}, ("duration",), id="unsupported-duration"),
    pytest.param(UPSCALE, {"duration": "5s"}, ("duration",), id="upscale-needs-auto"),
    pytest.param(T2V, {"resolution": "4k"}, ("resolution",), id="unsupported-resolution"),
    pytest.param(UPSCALE, {"resolution": "720p"}, ("resolution",), id="resolution-on-upscale"),
    pytest.param(T2V, {"aspect_ratio": "21:9"}, ("aspect_ratio",), id="unsupported-aspect-ratio"),
    pytest.param(I2V, {"image_url": None}, ("image_url",), id="missing-image-url"),
    pytest.param(UPSCALE, {"video_url": None}, ("video_url",), id="missing-video-url"),
    pytest.param(
        R2V, {"reference_image_urls": URLS[:10]}, ("reference_image_urls",), id="ten-reference-images"
    ),
    pytest.param(
        T2V, {"reference_image_urls": URLS[:1]}, ("reference_image_urls",), id="references-unsupported"
    ),
    pytest.param(R2V, {"elements": [{}] * 5}, ("elements",), id="five-elements"),
    pytest.param(
        R2V,
        {"elements": [{"frontal_image_url": URLS[0]}, {"reference_image_urls": URLS[:4]}]},
        ("elements", "1", "reference_image_urls"),
        id="element-with-four-references",
    ),
    pytest.param(T2V, {"elements": [{}]}, ("elements",), id="elements-unsupported"),
    pytest.param(R2V, {"scene_image_urls": URLS[:5]}, ("scene_image_urls",), id="five-scene-images"),
    pytest.param(T2V, {"scene_image_urls": URLS[:1]}, ("scene_image_urls",), id="scene-images-unsupported"),
    pytest.param(T2V, {"upscale_factor": 2}, ("upscale_factor",), id="upscale-factor-on-t2v"),
    pytest.param(UPSCALE, {"upscale_factor": 3}, ("upscale_factor",), id="upscale-factor-3"),
    pytest.param(T2V, {"audio": "yes"}, ("audio",), id="audio-not-bool"),
    pytest.param(I2V, {"end_image_url": 5}, ("end_image_url",), id="end-image-not-string"),
    pytest.param(UPSCALE, {"model": "no-such-model"}, ("model",), id="unknown-model"),
    pytest.param(T2V, {"model": None}, ("model",), id="missing-model"),
]


def _details_at(details: dict[str, Any], path: tuple[str, ...]) -> list[str]:
    node = details
    for part in path:
        node = node[part]
    return list(node["_errors"])


@pytest.mark.parametrize(("model", "changes", "path"), QUEUE_ROWS)
def test_invalid_queue_is_a_400_naming_the_field(
    client: httpx.Client,
    venice_emulator: VeniceEmulator,
    model: str,
    changes: dict[str, Any],
    path: tuple[str, ...],
) -> None:
    response = client.post("/video/queue", json=valid_body(model, **changes))

    assert response.status_code == 400
    body = response.json()
    assert path[-1] in body["error"]
    assert _details_at(body["details"], path)
    assert venice_emulator.jobs() == []
    assert venice_emulator.state.balance_usd == 100.0


def test_limits_themselves_are_accepted(client: httpx.Client) -> None:
    body = valid_body(
        R2V,
        prompt="x" * 2500,
        reference_image_urls=URLS[:9],
        elements=[{"frontal_image_url": URLS[0], "reference_image_urls": URLS[:3]}] * 4,
        scene_image_urls=URLS[:4],
    )
    assert client.post("/video/queue", json=body).status_code == 200


def test_upscale_model_needs_no_prompt(client: httpx.Client) -> None:
    assert client.post("/video/queue", json=valid_body(UPSCALE, prompt=None)).status_code == 200


def test_every_problem_is_reported_at_once(client: httpx.Client) -> None:
    body = client.post("/video/queue", json={"model": T2V}).json()
    assert {"prompt", "duration"} <= body["details"].keys()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"duration": None}, "duration"),
        ({"resolution": "4k"}, "resolution"),
        ({"reference_video_total_duration": 151}, "reference_video_total_duration"),
        ({"model": "nope"}, "model"),
    ],
)
def test_invalid_quote_is_a_400(client: httpx.Client, changes: dict[str, Any], field: str) -> None:
    body = {
        key: value for key, value in {"model": T2V, "duration": "5s", **changes}.items() if value is not None
    }
    response = client.post("/video/quote", json=body)
    assert response.status_code == 400
    assert field in response.json()["details"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]"])
def test_body_that_is_not_a_json_object_is_a_400(client: httpx.Client, raw: bytes) -> None:
    response = client.post("/video/queue", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "error" in response.json()


def test_oversized_data_url_is_a_413(client: httpx.Client, venice_emulator: VeniceEmulator) -> None:
    venice_emulator.configure(max_body_bytes=100_000)
    image = "data:image/png;base64," + "A" * 100_000

    response = client.post("/video/queue", json=valid_body(I2V, image_url=image))

    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert "data: URL" in response.json()["error"]
    assert venice_emulator.jobs() == []


def test_body_just_under_the_limit_is_accepted(client: httpx.Client, venice_emulator: VeniceEmulator) -> None:
    venice_emulator.configure(max_body_bytes=100_000)
    image = "data:image/png;base64," + "A" * 90_000
    assert client.post("/video/queue", json=valid_body(I2V, image_url=image)).status_code == 200


def test_default_body_limit_is_about_35_mb(venice_emulator: VeniceEmulator) -> None:
    assert 34_000_000 < venice_emulator.state.config.max_body_bytes < 37_000_000
