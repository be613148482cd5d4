from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from emulator_helpers import I2V, KLING, R2V, T2V, UPSCALE, VPS, valid_body

if TYPE_CHECKING:
    import httpx


def _models(client: httpx.Client) -> dict[str, dict[str, Any]]:
    response = client.get("/models", params={"type": "video"})
    assert response.status_code == 200
    return {model["id"]: model for model in response.json()["data"]}


def test_models_list_has_the_documented_shape(client: httpx.Client) -> None:
    body = client.get("/models", params={"type": "video"}).json()

    assert (body["object"], body["type"]) == ("list", "video")
    for model in body["data"]:
        assert {"id", "object", "type", "created", "owned_by", "model_spec"} <= model.keys()
        assert (model["object"], model["type"], model["owned_by"]) == ("model", "video", "venice.ai")
        spec = model["model_spec"]
        assert {"name", "description", "privacy", "beta", "offline", "traits", "constraints"} <= spec.keys()
        documented = {
            "model_type",
            "durations",
            "resolutions",
            "aspect_ratios",
            "audio",
            "audio_configurable",
        }
        assert documented | {"prompt_character_limit"} <= spec["constraints"].keys()


def test_other_model_types_list_no_video_models(client: httpx.Client) -> None:
    assert client.get("/models", params={"type": "text"}).json() == {
        "object": "list",
        "type": "text",
        "data": [],
    }


def test_text_to_video_model(client: httpx.Client) -> None:
    constraints = _models(client)[T2V]["model_spec"]["constraints"]
    assert constraints["model_type"] == "text-to-video"
    assert {"5s", "10s"} <= set(constraints["durations"])
    assert {"720p", "1080p"} <= set(constraints["resolutions"])
    assert {"16:9", "9:16", "1:1"} <= set(constraints["aspect_ratios"])
    assert constraints["audio"] is True
    assert constraints["prompt_character_limit"] == 2500


def test_image_to_video_model_requires_an_image(client: httpx.Client) -> None:
    constraints = _models(client)[I2V]["model_spec"]["constraints"]
    assert (constraints["model_type"], constraints["requires_image"]) == ("image-to-video", True)


def test_reference_model_accepts_elements_and_scene_images(client: httpx.Client) -> None:
    constraints = _models(client)[R2V]["model_spec"]["constraints"]
    assert constraints["supports_elements"] is True
    assert constraints["supports_scene_images"] is True
    assert constraints["supports_reference_images"] is True


def test_upscale_model(client: httpx.Client) -> None:
    constraints = _models(client)[UPSCALE]["model_spec"]["constraints"]
    assert constraints["model_type"] == "video"
    assert constraints["durations"] == ["Auto"]
    assert constraints["upscale_factors"] == [1, 2, 4]
    assert (constraints["prompt_required"], constraints["requires_video"]) == (False, True)


def test_private_grok_model_and_kling_limit(client: httpx.Client) -> None:
    models = _models(client)
    assert models[VPS]["model_spec"]["privacy"] == "private"
    assert models[KLING]["model_spec"]["constraints"]["prompt_character_limit"] == 3500


@pytest.mark.parametrize("model", [T2V, I2V, R2V, VPS, UPSCALE, KLING])
def test_every_model_quotes_and_queues(client: httpx.Client, model: str) -> None:
    body = valid_body(model)
    quote = client.post("/video/quote", json={k: v for k, v in body.items() if k != "prompt"})
    queued = client.post("/video/queue", json=body)

    assert quote.status_code == 200
    assert quote.json()["quote"] > 0
    assert queued.status_code == 200
    assert queued.json()["model"] == model
    assert ("download_url" in queued.json()) is (model == VPS)


def test_quote_matches_the_documented_example(client: httpx.Client) -> None:
    body = {"model": T2V, "duration": "5s", "aspect_ratio": "16:9", "resolution": "720p", "audio": True}
    assert client.post("/video/quote", json=body).json() == {"quote": 0.35}


@pytest.mark.parametrize(
    "change",
    [{"duration": "10s"}, {"resolution": "1080p"}, {"audio": False}],
)
def test_quote_depends_on_duration_resolution_and_audio(client: httpx.Client, change: dict[str, Any]) -> None:
    base = {"model": T2V, "duration": "5s", "resolution": "720p", "audio": True}
    first = client.post("/video/quote", json=base).json()["quote"]
    again = client.post("/video/quote", json=base).json()["quote"]
    changed = client.post("/video/quote", json={**base, **change}).json()["quote"]

    assert first == again
    assert changed != first


def test_quote_depends_on_upscale_factor(client: httpx.Client) -> None:
    quotes = [
        client.post("/video/quote", json={"model": UPSCALE, "duration": "Auto", "upscale_factor": f}).json()[
            "quote"
        ]
        for f in (1, 2, 4)
    ]
    assert quotes == sorted(quotes)
    assert len(set(quotes)) == 3


def test_quote_creates_no_job_and_costs_nothing(client: httpx.Client, venice_emulator: Any) -> None:
    client.post("/video/quote", json={"model": T2V, "duration": "5s"})
    assert venice_emulator.jobs() == []
    assert venice_emulator.state.balance_usd == 100.0
