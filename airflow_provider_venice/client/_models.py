"""Typed request and response bodies of the Venice video API, named after the API's own fields.

Requests forbid unknown fields (a typo fails before anything is sent); responses ignore fields they do
not know, because Venice adds fields without notice.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> dict[str, object]:
        """Return the JSON body, leaving out fields that were not set."""
        return self.model_dump(mode="json", exclude_none=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class VideoElement(_Request):
    """One ``elements[]`` entry: a character or object referenced in the prompt as ``@ElementN``."""

    frontal_image_url: StrictStr | None = None
    reference_image_urls: list[StrictStr] | None = None
    video_url: StrictStr | None = None


class QuoteVideoRequest(_Request):
    """Body of ``POST /video/quote``: only what pricing needs (no prompt).

    ``reference_video_total_duration`` (seconds, at most 150) prices reference-video jobs.
    """

    model: StrictStr
    duration: StrictStr
    aspect_ratio: StrictStr | None = None
    resolution: StrictStr | None = None
    upscale_factor: StrictInt | None = None
    audio: StrictBool | None = None
    video_url: StrictStr | None = None
    reference_video_total_duration: StrictFloat | None = Field(default=None, allow_inf_nan=False)


class QueueVideoRequest(_Request):
    """Body of ``POST /video/queue`` (QueueVideoRequest in Venice's specification)."""

    model: StrictStr
    prompt: StrictStr | None = None
    duration: StrictStr
    negative_prompt: StrictStr | None = None
    aspect_ratio: StrictStr | None = None
    resolution: StrictStr | None = None
    upscale_factor: StrictInt | None = None
    audio: StrictBool | None = None
    image_url: StrictStr | None = None
    end_image_url: StrictStr | None = None
    audio_url: StrictStr | None = None
    video_url: StrictStr | None = None
    reference_image_urls: list[StrictStr] | None = None
    elements: list[VideoElement] | None = None
    scene_image_urls: list[StrictStr] | None = None

    def to_quote_request(self, reference_video_total_duration: float | None = None) -> QuoteVideoRequest:
        """Return the quote request that prices exactly this job.

        ``reference_video_total_duration`` is not part of a queue request; pass it to price a job whose
        reference videos last that many seconds in total.
        """
        return QuoteVideoRequest(
            model=self.model,
            duration=self.duration,
            aspect_ratio=self.aspect_ratio,
            resolution=self.resolution,
            upscale_factor=self.upscale_factor,
            audio=self.audio,
            video_url=self.video_url,
            reference_video_total_duration=reference_video_total_duration,
        )


class RetrieveVideoRequest(_Request):
    """Body of ``POST /video/retrieve``; ``delete_media_on_completion`` is always sent as false."""

    model: StrictStr
    queue_id: StrictStr
    delete_media_on_completion: Literal[False] = False


class CompleteVideoRequest(_Request):
    """Body of ``POST /video/complete``."""

    model: StrictStr
    queue_id: StrictStr


class TranscriptionRequest(_Request):
    """Body of ``POST /video/transcriptions``."""

    url: StrictStr
    response_format: Literal["json", "text"] = "json"


class QuoteResponse(_Response):
    """Answer of ``/video/quote``: the price in USD, a finite number >= 0 (NaN or Infinity are refused)."""

    quote: StrictFloat = Field(ge=0, allow_inf_nan=False)


class QueueResponse(_Response):
    """Answer of ``/video/queue``; ``download_url`` only for VPS-backed models.

    ``model`` may be missing from Venice's answer; the clients fill it in from the request.
    """

    model: str | None = None
    queue_id: str
    download_url: str | None = None


class CompleteResponse(_Response):
    """Answer of ``/video/complete``."""

    success: bool


class Transcription(_Response):
    """A transcript; ``lang`` is set for the json response format only."""

    transcript: str
    lang: str | None = None


class ModelConstraints(_Response):
    """What a video model accepts. An empty list means the option is not supported."""

    model_type: str = "text-to-video"
    durations: list[str] = Field(default_factory=list)
    resolutions: list[str] = Field(default_factory=list)
    aspect_ratios: list[str] = Field(default_factory=list)
    audio: bool = False
    audio_configurable: bool = False
    prompt_character_limit: int | None = None
    upscale_factors: list[int] = Field(default_factory=list)
    prompt_required: bool | None = None
    requires_image: bool | None = None
    requires_video: bool | None = None
    supports_elements: bool | None = None
    supports_scene_images: bool | None = None
    supports_reference_images: bool | None = None
    supports_end_image: bool | None = None


class ModelSpec(_Response):
    """The ``model_spec`` block of a catalogue entry."""

    name: str | None = None
    description: str | None = None
    privacy: str | None = None
    beta: bool = False
    offline: bool = False
    traits: list[str] = Field(default_factory=list)
    constraints: ModelConstraints = Field(default_factory=ModelConstraints)


class VideoModel(_Response):
    """One entry of ``GET /models?type=video``."""

    id: str
    type: str = "video"
    owned_by: str | None = None
    model_spec: ModelSpec = Field(default_factory=ModelSpec)

    @property
    def constraints(self) -> ModelConstraints:
        """Shortcut to ``model_spec.constraints``."""
        return self.model_spec.constraints


class ModelList(_Response):
    """Answer of ``GET /models?type=video``."""

    data: list[VideoModel] = Field(default_factory=list)

    def by_id(self) -> dict[str, VideoModel]:
        """Index the catalogue by model id."""
        return {model.id: model for model in self.data}
