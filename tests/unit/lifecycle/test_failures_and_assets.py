"""How Venice errors become Airflow failures, and how deliveries are announced as asset events."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk import Asset, AssetAlias

from airflow_provider_venice.client import (
    AuthenticationError,
    BadRequestError,
    CapacityError,
    ContentPolicyError,
    NotFoundError,
    PaymentRequiredError,
    QueueOutcomeUnknownError,
    RateLimitError,
    ServerError,
    VeniceTimeoutError,
    VeniceTransportError,
)
from airflow_provider_venice.lifecycle.assets import (
    DEFAULT_ASSET_ALIAS,
    EXTRA_KEYS,
    announce,
    default_outlets,
)
from airflow_provider_venice.lifecycle.failures import (
    DestinationTakenError,
    VideoDeliveryError,
    as_airflow_failure,
)
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException
from tests.integration.s3_fixtures import make_context

PERMANENT = [
    BadRequestError("/video/queue", 400, "bad duration"),
    AuthenticationError("/video/queue", 401, "bad key"),
    PaymentRequiredError("/video/queue", 402, "no balance"),
    NotFoundError("/video/retrieve", 404, "gone"),
    ContentPolicyError("/video/queue", 422, "policy"),
    QueueOutcomeUnknownError("read timeout"),
]
TRANSIENT = [
    RateLimitError("/video/queue", 429, "slow down"),
    ServerError("/video/retrieve", 500, "boom"),
    CapacityError("/video/retrieve", 503, "busy"),
    VeniceTransportError("/video/retrieve", "reset"),
    VeniceTimeoutError("/video/retrieve", "timed out"),
]


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: type(e).__name__)
def test_permanent_errors_fail_without_retries(error: Exception) -> None:
    failure = as_airflow_failure(error, " (queue_id q-1)")  # type: ignore[arg-type]
    assert type(failure) is AirflowFailException
    assert str(failure) == f"{error} (queue_id q-1)"


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
def test_transient_errors_may_retry(error: Exception) -> None:
    failure = as_airflow_failure(error)  # type: ignore[arg-type]
    assert type(failure) is AirflowException
    assert str(failure) == str(error)


def test_delivery_failures_are_retryable_and_a_taken_destination_is_not() -> None:
    assert issubclass(VideoDeliveryError, AirflowException)
    assert not issubclass(VideoDeliveryError, AirflowFailException)
    assert issubclass(DestinationTakenError, AirflowFailException)


RESULT = {
    "s3_uri": "s3://venice-videos/videos/fox.mp4",
    "bucket": "venice-videos",
    "key": "videos/fox.mp4",
    "size_bytes": 1234,
    "sha256": "0" * 64,
    "manifest_uri": "s3://venice-videos/videos/fox.mp4.json",
    "poster_uri": "s3://venice-videos/videos/fox.mp4.poster.jpg",
    "duration_s": 5.0,
    "width": 1280,
    "height": 720,
    "frame_rate": 24.0,
    "video_codec": "h264",
    "has_audio": False,
    "model": "wan-2-7-text-to-video",
    "queue_id": "q-1",
    "quote_usd": 0.35,
    "content_type": "video/mp4",
}


# What the asset event's extra carries: where the video is, what it is, its poster, its job and cost.
EXTRA = {
    "s3_uri",
    "size_bytes",
    "sha256",
    "manifest_uri",
    "poster_uri",
    "duration_s",
    "width",
    "height",
    "frame_rate",
    "video_codec",
    "has_audio",
    "model",
    "queue_id",
    "quote_usd",
}


def test_the_extra_keys() -> None:
    assert set(EXTRA_KEYS) == EXTRA


def test_an_extra_without_probe_data_holds_none_for_it() -> None:
    context = make_context()
    alias = AssetAlias("venice-videos")
    bare = {key: value for key, value in RESULT.items() if key not in ("poster_uri", "duration_s", "width")}
    announce(context, [alias], bare)
    [(_, extra)] = context["outlet_events"][alias].added
    assert set(extra) == EXTRA
    assert (extra["poster_uri"], extra["duration_s"], extra["width"]) == (None, None, None)


def test_the_default_outlet_is_the_venice_videos_alias() -> None:
    assert default_outlets() == [AssetAlias(DEFAULT_ASSET_ALIAS)]
    assert DEFAULT_ASSET_ALIAS == "venice-videos"


def test_announce_adds_the_object_through_each_alias() -> None:
    context = make_context()
    alias = AssetAlias("venice-videos")
    announce(context, [alias], RESULT)
    added = context["outlet_events"][alias].added
    assert len(added) == 1
    asset, extra = added[0]
    assert asset == Asset("s3://venice-videos/videos/fox.mp4")
    assert extra == {key: RESULT[key] for key in EXTRA}
    assert "content_type" not in extra


def test_announce_describes_a_declared_asset() -> None:
    context = make_context()
    asset = Asset("s3://venice-videos/videos/fox.mp4")
    announce(context, [asset], RESULT)
    assert context["outlet_events"][asset].extra == {key: RESULT[key] for key in EXTRA}
    assert context["outlet_events"][asset].added == []


def test_announce_ignores_other_outlets() -> None:
    context = make_context()
    outlets: list[Any] = ["not an asset"]
    announce(context, outlets, RESULT)
    assert dict(context["outlet_events"]) == {}
