"""Constants and request bodies shared by the emulator tests."""

from __future__ import annotations

from typing import Any

T2V = "wan-2-7-text-to-video"
I2V = "wan-2-7-image-to-video"
R2V = "wan-2-7-reference-to-video"
VPS = "grok-imagine-text-to-video-private"
UPSCALE = "topaz-video-upscale"
KLING = "kling-2.6-pro-text-to-video"
KEY = "sk-secret-test-key"


def valid_body(model: str = T2V, /, **changes: Any) -> dict[str, Any]:
    """A queue body the model accepts, with ``changes`` applied (None removes a field)."""
    bodies: dict[str, dict[str, Any]] = {
        T2V: {"prompt": "Gondolas at dawn", "duration": "5s", "resolution": "720p", "aspect_ratio": "16:9"},
        I2V: {"prompt": "Zoom out", "duration": "5s", "image_url": "https://example.com/a.jpg"},
        R2V: {"prompt": "@Element1 walks", "duration": "5s"},
        VPS: {"prompt": "A cat surfing", "duration": "6s", "aspect_ratio": "9:16"},
        UPSCALE: {"video_url": "https://example.com/in.mp4", "duration": "Auto", "upscale_factor": 2},
        KLING: {"prompt": "A lighthouse", "duration": "10s", "resolution": "1080p"},
    }
    body = {"model": model, **bodies[model], **changes}
    return {key: value for key, value in body.items() if value is not None}
