"""Where a video goes: bucket and key checked like S3 checks them, and the manifest and poster beside it."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_venice.lifecycle.destination import MANIFEST_SUFFIX, Destination
from airflow_provider_venice.lifecycle.probe import PosterSpec
from airflow_provider_venice.version_compat import AirflowFailException


@pytest.mark.parametrize("bucket", ["abc", "venice-videos", "my.bucket.2024", "a" * 63, "0bucket9"])
def test_valid_bucket_names(bucket: str) -> None:
    assert Destination(bucket, "k.mp4").bucket == bucket


@pytest.mark.parametrize(
    "bucket",
    [
        "",
        "ab",
        "a" * 64,
        "Venice-Videos",
        "under_score",
        "-leading",
        "trailing-",
        ".leading",
        "trailing.",
        "two..dots",
        "s3://venice-videos",
        "venice-videos/videos",
        "venice videos",
        None,
        42,
    ],
)
def test_invalid_bucket_names_name_s3_bucket(bucket: Any) -> None:
    with pytest.raises(AirflowFailException) as caught:
        Destination(bucket, "k.mp4")
    message = str(caught.value)
    assert message.startswith("s3_bucket: ")
    assert repr(bucket) in message


@pytest.mark.parametrize("bucket", ["venice-videos\n", "venice-videos\r\n"])
def test_a_bucket_name_with_a_trailing_newline_is_refused(bucket: str) -> None:
    # a template rendered from a file often ends with a newline; S3 would refuse the name later
    with pytest.raises(AirflowFailException, match=r"^s3_bucket: "):
        Destination(bucket, "k.mp4")


@pytest.mark.parametrize("key", ["k", "videos/2024/fox.mp4", "a" * 1024, "é" * 512, "videos/ space.mp4"])
def test_valid_keys(key: str) -> None:
    assert Destination("venice-videos", key, manifest_key="", poster_key="").key == key


@pytest.mark.parametrize("name", ["manifest_key", "poster_key"])
def test_a_default_companion_key_past_s3s_limit_is_refused_before_anything_is_paid(name: str) -> None:
    """A 1024-byte s3_key is valid, but ``<key>.json`` and ``<key>.poster.jpg`` would not be."""
    chosen = {"manifest_key": "m.json", "poster_key": "p.jpg"}
    chosen.pop(name)
    with pytest.raises(AirflowFailException, match=rf"^{name}: "):
        Destination("venice-videos", "a" * 1020, **chosen)


@pytest.mark.parametrize("key", ["", "/videos/fox.mp4", "a" * 1025, "é" * 513, None, 7])
def test_invalid_keys_name_s3_key(key: Any) -> None:
    with pytest.raises(AirflowFailException) as caught:
        Destination("venice-videos", key)
    assert str(caught.value).startswith("s3_key: ")


def test_a_long_key_is_shortened_in_the_message() -> None:
    with pytest.raises(AirflowFailException) as caught:
        Destination("venice-videos", "/" + "x" * 5000)
    assert len(str(caught.value)) < 300


def test_the_manifest_key_defaults_to_the_video_key_plus_json() -> None:
    destination = Destination("venice-videos", "videos/fox.mp4")
    assert MANIFEST_SUFFIX == ".json"
    assert destination.manifest_key == "videos/fox.mp4.json"
    assert destination.manifest_uri == "s3://venice-videos/videos/fox.mp4.json"
    assert destination.uri == "s3://venice-videos/videos/fox.mp4"
    assert destination.replace is False
    assert destination.checksum == "FULL_OBJECT"


def test_an_empty_manifest_key_means_no_manifest() -> None:
    destination = Destination("venice-videos", "videos/fox.mp4", manifest_key="")
    assert destination.manifest_key == ""
    assert destination.manifest_uri is None


def test_a_manifest_key_of_its_own() -> None:
    destination = Destination("venice-videos", "videos/fox.mp4", manifest_key="manifests/fox.json")
    assert destination.manifest_uri == "s3://venice-videos/manifests/fox.json"


@pytest.mark.parametrize("manifest_key", ["videos/fox.mp4", "/manifests/fox.json", "m" * 1025])
def test_a_manifest_key_equal_to_the_video_key_or_invalid_is_refused(manifest_key: str) -> None:
    with pytest.raises(AirflowFailException) as caught:
        Destination("venice-videos", "videos/fox.mp4", manifest_key=manifest_key)
    assert str(caught.value).startswith("manifest_key: ")


def test_the_poster_defaults_to_a_640_pixel_jpeg_beside_the_video() -> None:
    destination = Destination("venice-videos", "videos/fox.mp4")
    assert destination.poster_key == "videos/fox.mp4.poster.jpg"
    assert destination.poster == PosterSpec("videos/fox.mp4.poster.jpg", 640, "jpeg")


def test_a_webp_poster_gets_its_suffix() -> None:
    destination = Destination("venice-videos", "videos/fox.mp4", poster_format="webp", poster_max_side=320)
    assert destination.poster == PosterSpec("videos/fox.mp4.poster.webp", 320, "webp")


def test_a_poster_key_of_its_own_and_no_poster() -> None:
    own = Destination("venice-videos", "videos/fox.mp4", poster_key="posters/fox.jpg")
    assert own.poster is not None
    assert own.poster.key == "posters/fox.jpg"
    assert Destination("venice-videos", "videos/fox.mp4", poster_key="").poster is None


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        ({"poster_key": "videos/fox.mp4"}, "poster_key"),
        ({"poster_key": "videos/fox.mp4.json"}, "poster_key"),
        ({"poster_key": "m.json", "manifest_key": "m.json"}, "poster_key"),
        ({"poster_key": "/posters/fox.jpg"}, "poster_key"),
        ({"poster_format": "gif"}, "poster_format"),
        ({"poster_max_side": 8}, "poster_max_side"),
        ({"poster_max_side": 5000}, "poster_max_side"),
        ({"checksum": "SHA256"}, "s3_checksum"),
        ({"checksum": "full_object"}, "s3_checksum"),
    ],
)
def test_a_bad_poster_or_checksum_setting_is_refused_naming_it(arguments: dict[str, Any], name: str) -> None:
    with pytest.raises(AirflowFailException) as caught:
        Destination("venice-videos", "videos/fox.mp4", **arguments)
    assert str(caught.value).startswith(f"{name}: ")


@pytest.mark.parametrize("checksum", ["FULL_OBJECT", "COMPOSITE", "NONE"])
def test_the_checksum_modes(checksum: str) -> None:
    assert Destination("venice-videos", "k.mp4", checksum=checksum).checksum == checksum


def test_a_destination_is_frozen_and_comparable() -> None:
    one = Destination("venice-videos", "k.mp4", replace=True)
    assert one == Destination(
        "venice-videos", "k.mp4", replace=True, manifest_key="k.mp4.json", poster_key="k.mp4.poster.jpg"
    )
    with pytest.raises(AttributeError):
        one.key = "other"  # type: ignore[misc]
