"""The emulator's video model catalogue and its price list.

The ids are real Venice model ids; every constraint value, price and timing below is a plausible
invention (Venice does not publish per-model constraints), chosen so each documented rule can be
exercised. ``constraints`` carries the documented fields (``model_type``, ``durations``,
``resolutions``, ``aspect_ratios``, ``audio``, ``audio_configurable``, ``prompt_character_limit``)
plus these emulator-invented capability fields:

* ``prompt_required`` (bool) - false for upscale models, which need no prompt.
* ``requires_image`` (bool) - ``image_url`` must be sent (image-to-video).
* ``requires_video`` (bool) - ``video_url`` must be sent (upscale / video-to-video).
* ``upscale_factors`` (list of int) - allowed ``upscale_factor`` values; empty: not an upscale model.
* ``supports_reference_images`` (bool) - ``reference_image_urls`` accepted (at most 9).
* ``supports_elements`` (bool) - ``elements`` accepted (at most 4, each with at most 3 reference images).
* ``supports_scene_images`` (bool) - ``scene_image_urls`` accepted (at most 4).
* ``supports_end_image`` (bool) - ``end_image_url`` accepted.

An empty list means the option is not supported by that model, as in the real catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_provider_venice.testing.mp4 import seconds_for

CREATED = 1_760_000_000
_RESOLUTION_PRICE_FACTOR = {"480p": 0.6, "720p": 1.0, "1080p": 1.5}
_UPSCALE_PRICE_FACTOR = {1: 1.0, 2: 1.5, 4: 2.5}
_AUDIO_PRICE_FACTOR = 1.4
_SQUARE_AND_WIDE = ("16:9", "9:16", "1:1")


@dataclass(frozen=True)
class VideoModel:
    """One video model: what the catalogue shows, plus the emulator's pricing and timing."""

    id: str
    name: str
    description: str
    model_type: str
    durations: tuple[str, ...]
    resolutions: tuple[str, ...] = ()
    aspect_ratios: tuple[str, ...] = _SQUARE_AND_WIDE
    audio: bool = False
    audio_configurable: bool = False
    prompt_character_limit: int = 2500
    prompt_required: bool = True
    requires_image: bool = False
    requires_video: bool = False
    upscale_factors: tuple[int, ...] = ()
    supports_reference_images: bool = False
    supports_elements: bool = False
    supports_scene_images: bool = False
    supports_end_image: bool = False
    vps: bool = False
    usd_per_second: float = 0.05
    job_seconds: float = 45.0
    estimate_factor: float = 1.0
    traits: tuple[str, ...] = field(default=())

    @property
    def constraints(self) -> dict[str, Any]:
        """Return the ``model_spec.constraints`` object of the catalogue entry."""
        return {
            "model_type": self.model_type,
            "durations": list(self.durations),
            "resolutions": list(self.resolutions),
            "aspect_ratios": list(self.aspect_ratios),
            "audio": self.audio,
            "audio_configurable": self.audio_configurable,
            "prompt_character_limit": self.prompt_character_limit,
            "prompt_required": self.prompt_required,
            "requires_image": self.requires_image,
            "requires_video": self.requires_video,
            "upscale_factors": list(self.upscale_factors),
            "supports_reference_images": self.supports_reference_images,
            "supports_elements": self.supports_elements,
            "supports_scene_images": self.supports_scene_images,
            "supports_end_image": self.supports_end_image,
        }

    def entry(self) -> dict[str, Any]:
        """Return the model's object in ``GET /models?type=video``."""
        return {
            "id": self.id,
            "object": "model",
            "type": "video",
            "created": CREATED,
            "owned_by": "venice.ai",
            "model_spec": {
                "name": self.name,
                "description": self.description,
                "privacy": "private" if self.vps else "anonymized",
                "beta": False,
                "offline": False,
                "traits": list(self.traits),
                "constraints": self.constraints,
            },
        }

    def quote(self, duration: str, resolution: str | None, audio: bool, upscale_factor: int | None) -> float:
        """Price in USD: a deterministic function of duration, resolution, audio and upscale factor."""
        price = self.usd_per_second * seconds_for(duration)
        price *= _RESOLUTION_PRICE_FACTOR.get(resolution or "", 1.0)
        if self.upscale_factors:
            price *= _UPSCALE_PRICE_FACTOR.get(upscale_factor or 2, 1.0)
        if self.audio and (audio or not self.audio_configurable):
            price *= _AUDIO_PRICE_FACTOR
        return round(price, 3)


MODELS: tuple[VideoModel, ...] = (
    VideoModel(
        id="wan-2-7-text-to-video",
        name="Wan 2.7",
        description="Text to video with audio (emulated).",
        model_type="text-to-video",
        durations=("5s", "6s", "8s", "10s"),
        resolutions=("480p", "720p", "1080p"),
        audio=True,
        audio_configurable=True,
        supports_end_image=True,
        traits=("default",),
        estimate_factor=0.8,
    ),
    VideoModel(
        id="wan-2-7-image-to-video",
        name="Wan 2.7 Image to Video",
        description="Animates a start frame given as image_url (emulated).",
        model_type="image-to-video",
        durations=("5s", "10s"),
        resolutions=("480p", "720p", "1080p"),
        audio=True,
        audio_configurable=True,
        requires_image=True,
        supports_end_image=True,
        job_seconds=40.0,
        estimate_factor=1.2,
    ),
    VideoModel(
        id="wan-2-7-reference-to-video",
        name="Wan 2.7 Reference to Video",
        description="Keeps characters and scenes consistent with reference images (emulated).",
        model_type="image-to-video",
        durations=("5s", "10s"),
        resolutions=("720p", "1080p"),
        supports_reference_images=True,
        supports_elements=True,
        supports_scene_images=True,
        usd_per_second=0.08,
        job_seconds=60.0,
        estimate_factor=1.3,
    ),
    VideoModel(
        id="grok-imagine-text-to-video-private",
        name="Grok Imagine (private)",
        description="Text to video on private infrastructure; download from download_url (emulated).",
        model_type="text-to-video",
        durations=("6s", "10s"),
        resolutions=("480p", "720p"),
        aspect_ratios=(*_SQUARE_AND_WIDE, "3:2", "2:3"),
        audio=True,
        vps=True,
        usd_per_second=0.07,
        job_seconds=30.0,
        estimate_factor=0.75,
    ),
    VideoModel(
        id="topaz-video-upscale",
        name="Topaz Video Upscale",
        description="Upscales or enhances the video given as video_url (emulated).",
        model_type="video",
        durations=("Auto",),
        aspect_ratios=(),
        prompt_required=False,
        requires_video=True,
        upscale_factors=(1, 2, 4),
        usd_per_second=0.04,
        job_seconds=90.0,
        estimate_factor=1.1,
    ),
    VideoModel(
        id="kling-2.6-pro-text-to-video",
        name="Kling 2.6 Pro",
        description="Text to video with a longer prompt limit (emulated).",
        model_type="text-to-video",
        durations=("5s", "10s"),
        resolutions=("1080p",),
        audio=True,
        audio_configurable=True,
        prompt_character_limit=3500,
        usd_per_second=0.1,
        job_seconds=75.0,
        estimate_factor=0.9,
    ),
)

BY_ID: dict[str, VideoModel] = {model.id: model for model in MODELS}


def models_response(model_type: str) -> dict[str, Any]:
    """Answer ``GET /models?type=...``: the video models for ``video`` (or ``all``), else none."""
    data = [model.entry() for model in MODELS] if model_type in {"video", "all"} else []
    return {"object": "list", "type": model_type, "data": data}
