"""Probe data and the poster frame over real sockets, for both layouts of the mp4.

``venice-emulator`` (videos padded to a few MB, fast-started or with ``--moov-at-end``) and
``moto_server`` run as child processes on free loopback ports and are stopped by pid at the end of the
module. The transfer and the all-in-one operators deliver, probe the stored object by ranged GETs and
write the poster beside it; the manifest, the XCom result and the poster are checked against what S3
holds.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from typing import Any

import av
import httpx
import pytest

from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator
from airflow_provider_venice.testing.mp4 import frame_size
from airflow_provider_venice.testing.processes import ServiceProcess, start_emulator_process
from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator
from tests.integration import s3_fixtures
from tests.integration.delivery_checks import (
    all_keys,
    assert_delivered,
    delivery_keys,
    poster_key,
    top_level_boxes,
)
from tests.integration.s3_fixtures import (
    MB,
    REQUESTS,
    T2V,
    aws_connection,
    calls_to,
    make_context,
    queue_job,
    server_s3_client,
    uploads_in_progress,
    venice_connection,
    video_downloads,
)

pytestmark = pytest.mark.integration

aws_env = s3_fixtures.aws_env
s3_server = s3_fixtures.s3_server

VIDEO_BYTES = 12 * MB  # two parts; the probe must not read them
KEY = "media/video.mp4"
PROBE_FIELDS = ("duration_s", "width", "height", "frame_rate", "video_codec", "has_audio")


@pytest.fixture(scope="module", params=[False, True], ids=["faststart", "moov-at-end"])
def emulator_process(request: pytest.FixtureRequest) -> Iterator[tuple[bool, ServiceProcess]]:
    """``venice-emulator`` serving padded videos of one layout, jobs finished at once; stopped by pid."""
    options = ["--job-seconds", "0", "--video-bytes", str(VIDEO_BYTES)]
    if request.param:
        options.append("--moov-at-end")
    process = start_emulator_process(*options)
    try:
        yield request.param, process
    finally:
        process.stop()


def emulator_calls(emulator: ServiceProcess) -> list[dict[str, Any]]:
    response = httpx.get(emulator.url.removesuffix("/api/v1") + "/_emulator/calls")
    response.raise_for_status()
    calls: list[dict[str, Any]] = response.json()["calls"]
    return calls


@pytest.fixture
def wired(
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    emulator_process: tuple[bool, ServiceProcess],
    s3_server: ServiceProcess,
) -> tuple[bool, ServiceProcess, Any, str]:
    """Connections to both processes; a fresh bucket; the emulator reset to its process's settings."""
    moov_at_end, emulator = emulator_process
    httpx.post(emulator.url.removesuffix("/api/v1") + "/_emulator/reset", json={}).raise_for_status()
    monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", venice_connection(emulator.url))
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(s3_server.url))
    s3 = server_s3_client(s3_server.url)
    bucket = f"media-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    return moov_at_end, emulator, s3, bucket


class VideoGets:
    """The ranged GETs of the video's key one S3 client made, and the bytes they returned."""

    def __init__(self, client: Any) -> None:
        self.ranges: list[str | None] = []
        self.bytes_read = 0
        client.meta.events.register("before-parameter-build.s3.GetObject", self._asked)
        client.meta.events.register("after-call.s3.GetObject", self._answered)

    def _asked(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == KEY:
            context["venice_video_get"] = True
            self.ranges.append(params.get("Range"))

    def _answered(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if context.get("venice_video_get"):
            self.bytes_read += int(parsed.get("ContentLength") or 0)


def decoded_size(image: bytes) -> tuple[int, int]:
    with av.open(io.BytesIO(image)) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


def check_layout(s3: Any, bucket: str, moov_at_end: bool) -> None:
    body = s3.get_object(Bucket=bucket, Key=KEY)["Body"].read()
    kinds = [kind for kind, _, _ in top_level_boxes(body)]
    assert kinds == (["ftyp", "mdat", "moov"] if moov_at_end else ["ftyp", "moov", "mdat"])


def check_probe_reads(gets: VideoGets, moov_at_end: bool) -> None:
    assert gets.ranges, "the probe read nothing"
    assert all(asked and re.fullmatch(r"bytes=\d+-\d+", asked) for asked in gets.ranges), gets.ranges
    assert len(gets.ranges) <= 6, gets.ranges
    assert gets.bytes_read <= VIDEO_BYTES // 10, gets.bytes_read
    if moov_at_end:
        assert any(asked and asked.endswith(f"-{VIDEO_BYTES - 1}") for asked in gets.ranges), gets.ranges


def test_the_transfer_delivers_probes_and_writes_the_poster(wired: Any) -> None:
    moov_at_end, emulator, s3, bucket = wired
    job = queue_job(emulator.url, T2V)
    op = VeniceVideoToS3Operator(task_id="to_s3", job=job, s3_bucket=bucket, s3_key=KEY)
    gets = VideoGets(op.s3_hook.get_conn())

    result = op.execute(make_context())

    manifest = assert_delivered(s3, bucket, KEY, job["queue_id"], result)
    check_layout(s3, bucket, moov_at_end)
    assert result["size_bytes"] == VIDEO_BYTES
    assert all_keys(s3, bucket) == delivery_keys(KEY)
    width, height = frame_size("16:9")  # the model's first aspect ratio
    expected = {
        "duration_s": 5.0,
        "width": width,
        "height": height,
        "frame_rate": 1.0,
        "video_codec": "h264",
        "has_audio": False,
    }
    assert {name: result[name] for name in PROBE_FIELDS} == expected
    assert manifest["probe"] == {"made": True, **expected, "audio_codec": None}
    poster = s3.get_object(Bucket=bucket, Key=poster_key(KEY))
    image = poster["Body"].read()
    assert poster["ContentType"] == "image/jpeg"
    assert image[:2] == b"\xff\xd8"
    assert decoded_size(image) == (width, height)
    assert manifest["poster"]["s3_uri"] == result["poster_uri"] == f"s3://{bucket}/{poster_key(KEY)}"
    assert manifest["poster"]["size_bytes"] == len(image)
    check_probe_reads(gets, moov_at_end)
    calls = emulator_calls(emulator)
    assert len(video_downloads(calls)) == 1
    assert len(calls_to(calls, "/video/complete")) == 1
    assert uploads_in_progress(s3, bucket) == []


def test_generate_delivers_a_portrait_video_with_a_webp_poster(wired: Any) -> None:
    moov_at_end, emulator, s3, bucket = wired
    op = VeniceGenerateVideoOperator(
        task_id="generate",
        **{**REQUESTS[T2V], "aspect_ratio": "9:16", "duration": "8s"},
        s3_bucket=bucket,
        s3_key=KEY,
        poster_format="webp",
        poster_max_side=80,
        deferrable=False,
        window_interval_s=0.05,
    )
    gets = VideoGets(op.s3_hook.get_conn())

    result = op.execute(make_context())

    manifest = assert_delivered(s3, bucket, KEY, result["queue_id"], result, poster_suffix=".poster.webp")
    check_layout(s3, bucket, moov_at_end)
    assert all_keys(s3, bucket) == sorted([KEY, KEY + ".json", poster_key(KEY, ".poster.webp")])
    width, height = frame_size("9:16")
    assert {name: result[name] for name in PROBE_FIELDS} == {
        "duration_s": 8.0,
        "width": width,
        "height": height,
        "frame_rate": 1.0,
        "video_codec": "h264",
        "has_audio": False,
    }
    image = s3.get_object(Bucket=bucket, Key=poster_key(KEY, ".poster.webp"))["Body"].read()
    assert image[:4] == b"RIFF"
    assert image[8:12] == b"WEBP"
    poster_width, poster_height = decoded_size(image)
    assert poster_height == 80
    assert abs(poster_width - 80 * width / height) <= 2
    assert (manifest["poster"]["width"], manifest["poster"]["height"]) == (poster_width, poster_height)
    assert manifest["request"]["aspect_ratio"] == "9:16"
    check_probe_reads(gets, moov_at_end)
    calls = emulator_calls(emulator)
    assert len(calls_to(calls, "/video/queue")) == 1
    assert len(video_downloads(calls)) == 1
    assert len(calls_to(calls, "/video/complete")) == 1
