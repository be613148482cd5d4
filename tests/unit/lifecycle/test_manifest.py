"""The manifest: built from the delivery, written beside the video, read back and matched."""

from __future__ import annotations

import json
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from airflow_provider_venice.job import VeniceJob
from airflow_provider_venice.lifecycle.destination import Destination
from airflow_provider_venice.lifecycle.manifest import (
    KIND,
    SCHEMA_VERSION,
    build_manifest,
    matches,
    read_manifest,
    summarise_request,
    task_identity,
    write_manifest,
)
from airflow_provider_venice.lifecycle.s3object import same_etag
from tests.integration.s3_fixtures import BUCKET

JOB = VeniceJob("wan-2-7-image-to-video", "q-11", None, 0.5, "ab" * 16)
DESTINATION = Destination(BUCKET, "videos/fox.mp4")
VIDEO = {
    "size_bytes": 1234,
    "sha256": "0" * 64,
    "checksum_crc32": "AAAAAA==",
    "content_type": "video/mp4",
    "etag": '"abc123"',
    "version_id": None,
}
IMAGE = "data:image/png;base64," + "A" * 50_000
PROBE = {
    "made": True,
    "duration_s": 5.0,
    "width": 1280,
    "height": 720,
    "frame_rate": 24.0,
    "video_codec": "h264",
    "has_audio": False,
    "audio_codec": None,
}
POSTER = {
    "s3_uri": "s3://venice-videos/videos/fox.mp4.poster.jpg",
    "key": "videos/fox.mp4.poster.jpg",
    "width": 640,
    "height": 360,
    "content_type": "image/jpeg",
    "size_bytes": 2048,
}


def manifest(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "destination": DESTINATION,
        "job": JOB,
        "video": VIDEO,
        "request": {"model": JOB.model, "prompt": "a fox", "image_url": IMAGE},
        "timings": {"queued_at": 1_700_000_000.0, "delivered_at": 1_700_000_100.5, "finished_at": None},
        "task": {"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1, "try_number": 1},
        "probe": PROBE,
        "poster": POSTER,
        **overrides,
    }
    return build_manifest(**arguments)


def test_build_manifest_holds_the_video_its_job_and_its_request() -> None:
    built = manifest()
    assert built["schema_version"] == SCHEMA_VERSION
    assert built["kind"] == KIND
    assert built["s3_uri"] == "s3://venice-videos/videos/fox.mp4"
    assert (built["bucket"], built["key"]) == (BUCKET, "videos/fox.mp4")
    assert {key: built[key] for key in VIDEO} == VIDEO
    assert (built["model"], built["queue_id"], built["quote_usd"]) == (JOB.model, "q-11", 0.5)
    assert built["request_fingerprint"] == "ab" * 16
    assert built["task"]["task_id"] == "t"
    assert built["timings"]["queued_at"] == datetime.fromisoformat(built["timings"]["queued_at"]).isoformat()
    assert datetime.fromisoformat(built["timings"]["delivered_at"]).timestamp() == 1_700_000_100.5
    assert built["timings"]["finished_at"] is None
    assert built["timings"]["queued_at"].endswith("+00:00")
    assert built["probe"] == PROBE
    assert built["poster"] == POSTER
    json.dumps(built)  # plain JSON


def test_a_manifest_without_a_probe_says_so_and_has_no_poster() -> None:
    failed = {"made": False, "error": "not probed: PyAV is not installed (airflow-provider-venice[media])"}
    built = manifest(probe=failed, poster=None)
    assert built["probe"] == failed
    assert built["poster"] is None


def test_inline_media_is_shortened_in_the_request_summary() -> None:
    built = manifest(
        request={
            "model": JOB.model,
            "image_url": IMAGE,
            "reference_image_urls": [IMAGE, "https://example.com/a.png"],
            "elements": [{"reference_image_urls": [IMAGE]}],
        }
    )
    text = json.dumps(built)
    assert "A" * 100 not in text
    request = built["request"]
    assert request["image_url"] == "data:image/png;base64,<50000 characters inline>"
    assert request["reference_image_urls"][1] == "https://example.com/a.png"
    assert request["elements"][0]["reference_image_urls"][0].startswith("data:image/png;base64,<")
    assert len(text) < 3000


def test_summarise_request_keeps_ordinary_fields() -> None:
    request = {"model": "m", "prompt": "data is fine", "duration": "5s", "audio": True, "upscale_factor": 2}
    assert summarise_request(request) == request


def test_a_long_data_url_head_is_cut() -> None:
    value = "data:" + "x" * 500 + "," + "y" * 10
    assert summarise_request({"u": value})["u"] == "data:" + "x" * 59 + ",<10 characters inline>"


def test_no_request_gives_none() -> None:
    assert manifest(request=None)["request"] is None


def test_task_identity() -> None:
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="t", map_index=3, try_number=2)
    assert task_identity({"ti": ti}) == {
        "dag_id": "d",
        "run_id": "r",
        "task_id": "t",
        "map_index": 3,
        "try_number": 2,
    }
    assert task_identity({}) is None


def test_write_then_read_round_trip(moto_s3: Any) -> None:
    built = manifest()
    write_manifest(moto_s3, DESTINATION, built)
    head = moto_s3.head_object(Bucket=BUCKET, Key="videos/fox.mp4.json")
    assert head["ContentType"] == "application/json"
    assert read_manifest(moto_s3, DESTINATION) == built


def test_read_manifest_is_none_when_there_is_none(moto_s3: Any) -> None:
    assert read_manifest(moto_s3, DESTINATION) is None
    assert read_manifest(moto_s3, Destination(BUCKET, "videos/fox.mp4", manifest_key="")) is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"",
        b"[1, 2, 3]",
        b'"a string"',
        json.dumps({"kind": "someone-else/manifest", "queue_id": "q-11"}).encode(),
        json.dumps({"queue_id": "q-11", "etag": '"abc123"', "size_bytes": 1234}).encode(),
        b"\xff\xfe\x00garbage",
    ],
)
def test_a_manifest_of_another_kind_or_not_json_reads_as_none(moto_s3: Any, body: bytes) -> None:
    moto_s3.put_object(Bucket=BUCKET, Key="videos/fox.mp4.json", Body=body)
    assert read_manifest(moto_s3, DESTINATION) is None


def test_read_manifest_raises_other_s3_errors(moto_s3: Any) -> None:
    def denied(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Code": "AccessDenied", "Message": "Access Denied"}
        return AWSResponse("https://s3.test", 403, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }

    moto_s3.meta.events.register("before-call.s3.GetObject", denied)
    with pytest.raises(ClientError, match="AccessDenied"):
        read_manifest(moto_s3, DESTINATION)


@pytest.mark.parametrize("etag", ['"abc123"', "abc123"])
def test_matches_the_object_it_describes(etag: str) -> None:
    built = manifest(video={**VIDEO, "etag": etag})
    assert matches(built, {"ETag": '"abc123"', "ContentLength": 1234}, "q-11")
    assert matches(built, {"ETag": "abc123", "ContentLength": 1234}, "q-11")


@pytest.mark.parametrize(
    ("head", "queue_id"),
    [
        ({"ETag": '"abc123"', "ContentLength": 1234}, "q-other"),
        ({"ETag": '"abc124"', "ContentLength": 1234}, "q-11"),
        ({"ETag": '"abc123"', "ContentLength": 1235}, "q-11"),
        ({"ContentLength": 1234}, "q-11"),
    ],
)
def test_does_not_match_another_job_version_or_size(head: dict[str, Any], queue_id: str) -> None:
    assert not matches(manifest(), head, queue_id)


def test_a_manifest_without_etag_matches_nothing() -> None:
    assert not matches(manifest(video={**VIDEO, "etag": None}), {"ETag": "", "ContentLength": 1234}, "q-11")


def test_same_etag() -> None:
    assert same_etag('"a"', "a")
    assert same_etag("a", '"a"')
    assert not same_etag("a", "b")
    assert not same_etag(None, None)
    assert not same_etag("", "")
    assert not same_etag("a", None)


def test_no_secret_in_a_manifest(moto_s3: Any) -> None:
    request = {"model": JOB.model, "prompt": "a fox", "image_url": "https://example.com/fox.png"}
    write_manifest(moto_s3, DESTINATION, manifest(request=request))
    text = moto_s3.get_object(Bucket=BUCKET, Key="videos/fox.mp4.json")["Body"].read().decode()
    for secret_word in ("Authorization", "Bearer", "api_key", "password"):
        assert secret_word.lower() not in text.lower()
