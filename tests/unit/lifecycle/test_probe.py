"""Probe data and the poster frame, read back from S3 by ranges (PyAV), for every layout of the mp4.

Over the in-process emulator and moto's in-process S3. The emulator writes real H.264 videos at the
requested duration and aspect ratio (one frame a second), fast-started (``moov`` before ``mdat``) or with
``moov`` at the end (``moov_at_end``). Checked for each: the probe's fields in the XCom result, the
manifest and the asset event's extra; the poster object (a JPEG or WebP decoded with PyAV to read its
size); how much of the stored video the probe read (a handful of ranged GETs, never the whole object);
the poster options, refused before anything is paid when they are wrong; and a valid MP4 that FFmpeg
cannot decode, which is delivered all the same with the probe's error in its manifest.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
from collections.abc import Callable
from typing import Any

import av
import pytest
import structlog
from botocore.exceptions import ClientError

from airflow_provider_venice.lifecycle.destination import Destination
from airflow_provider_venice.lifecycle.probe import BLOCK_SIZE, PosterSpec, S3RangeReader, probe_video
from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator
from airflow_provider_venice.testing import Mp4File, VideoSpec
from airflow_provider_venice.testing.mp4 import FPS, frame_size
from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator
from airflow_provider_venice.version_compat import AirflowFailException
from tests.integration.s3_fixtures import (
    BUCKET,
    RECORD_KEY,
    REQUESTS,
    T2V,
    AlteredVideo,
    FakeStore,
    alias_events,
    calls_to,
    make_context,
    object_bytes,
    object_exists,
    queue_job,
    read_manifest,
    top_level_boxes,
)

MIB = 1024 * 1024
KEY = "probed/video.mp4"
POSTER_KEY = KEY + ".poster.jpg"
PROBE_FIELDS = ("duration_s", "width", "height", "frame_rate", "video_codec", "has_audio")
LAYOUTS = [pytest.param(False, id="faststart"), pytest.param(True, id="moov-at-end")]


def generate(aspect_ratio: str = "16:9", duration: str = "5s", **kwargs: Any) -> VeniceGenerateVideoOperator:
    request = {**REQUESTS[T2V], "aspect_ratio": aspect_ratio, "duration": duration}
    return VeniceGenerateVideoOperator(
        task_id="generate",
        **request,
        s3_bucket=BUCKET,
        s3_key=KEY,
        deferrable=False,
        window_interval_s=0.05,
        **kwargs,
    )


def keys(s3: Any) -> set[str]:
    return {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def decoded_size(image: bytes) -> tuple[int, int]:
    """Decode an image with PyAV and return its width and height."""
    with av.open(io.BytesIO(image)) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


def is_jpeg(image: bytes) -> bool:
    return image[:2] == b"\xff\xd8" and image[-2:] == b"\xff\xd9"


def is_webp(image: bytes) -> bool:
    return (
        image[:4] == b"RIFF"
        and image[8:12] == b"WEBP"
        and struct.unpack("<I", image[4:8])[0] == len(image) - 8
    )


class VideoGets:
    """The GET requests a client made of the video's key: their ``Range`` headers and bytes."""

    def __init__(self, client: Any, key: str = KEY) -> None:
        self.ranges: list[str | None] = []
        self.bytes_read = 0
        self._key = key
        client.meta.events.register("before-parameter-build.s3.GetObject", self._asked)
        client.meta.events.register("after-call.s3.GetObject", self._answered)

    def _asked(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == self._key:
            context["venice_video_get"] = True
            self.ranges.append(params.get("Range"))

    def _answered(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if context.get("venice_video_get"):
            self.bytes_read += int(parsed.get("ContentLength") or 0)


# --- probe and poster of each layout --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aspect_ratio", "duration"),
    [("16:9", "5s"), ("9:16", "10s"), ("1:1", "8s")],
    ids=["16x9", "9x16", "1x1"],
)
@pytest.mark.parametrize("moov_at_end", LAYOUTS)
def test_probe_and_poster_of_a_delivered_video(
    venice: Any, moto_s3: Any, moov_at_end: bool, aspect_ratio: str, duration: str
) -> None:
    venice(moov_at_end=moov_at_end)
    context = make_context()

    result = generate(aspect_ratio, duration).execute(context)

    video = object_bytes(moto_s3, BUCKET, KEY)
    boxes = [kind for kind, _, _ in top_level_boxes(video)]
    assert boxes == (["ftyp", "mdat", "moov"] if moov_at_end else ["ftyp", "moov", "mdat"])
    width, height = frame_size(aspect_ratio)
    seconds = float(duration.removesuffix("s"))
    expected = {
        "duration_s": seconds,
        "width": width,
        "height": height,
        "frame_rate": float(FPS),
        "video_codec": "h264",
        "has_audio": False,
    }
    assert {name: result[name] for name in PROBE_FIELDS} == expected
    manifest = read_manifest(moto_s3, BUCKET, KEY)
    assert manifest["probe"] == {"made": True, **expected, "audio_codec": None}
    [(asset, extra)] = alias_events(context)
    assert asset.uri == f"s3://{BUCKET}/{KEY}"
    assert {name: extra[name] for name in PROBE_FIELDS} == expected
    assert extra["poster_uri"] == result["poster_uri"] == f"s3://{BUCKET}/{POSTER_KEY}"

    poster = object_bytes(moto_s3, BUCKET, POSTER_KEY)
    assert is_jpeg(poster)
    assert moto_s3.head_object(Bucket=BUCKET, Key=POSTER_KEY)["ContentType"] == "image/jpeg"
    poster_width, poster_height = decoded_size(poster)
    assert max(poster_width, poster_height) <= 640
    assert (poster_width, poster_height) == (width, height)  # small frames are never scaled up
    assert manifest["poster"] == {
        "s3_uri": f"s3://{BUCKET}/{POSTER_KEY}",
        "key": POSTER_KEY,
        "width": poster_width,
        "height": poster_height,
        "content_type": "image/jpeg",
        "size_bytes": len(poster),
    }


@pytest.mark.parametrize("moov_at_end", LAYOUTS)
def test_a_poster_is_scaled_to_its_long_side(venice: Any, moto_s3: Any, moov_at_end: bool) -> None:
    venice(moov_at_end=moov_at_end)

    generate("9:16", poster_max_side=64).execute(make_context())

    poster = object_bytes(moto_s3, BUCKET, POSTER_KEY)
    width, height = decoded_size(poster)
    assert height == 64
    assert abs(width - 64 * 9 / 16) <= 2  # the aspect ratio is kept (even sizes)
    manifest = read_manifest(moto_s3, BUCKET, KEY)
    assert (manifest["poster"]["width"], manifest["poster"]["height"]) == (width, height)


def test_a_webp_poster(venice: Any, moto_s3: Any) -> None:
    venice(moov_at_end=True)

    result = generate("16:9", poster_format="webp").execute(make_context())

    webp_key = KEY + ".poster.webp"
    assert keys(moto_s3) == {KEY, KEY + ".json", webp_key}
    poster = object_bytes(moto_s3, BUCKET, webp_key)
    assert is_webp(poster)
    assert moto_s3.head_object(Bucket=BUCKET, Key=webp_key)["ContentType"] == "image/webp"
    assert decoded_size(poster) == frame_size("16:9")
    manifest = read_manifest(moto_s3, BUCKET, KEY)
    assert manifest["poster"]["content_type"] == "image/webp"
    assert manifest["poster"]["key"] == webp_key
    assert result["poster_uri"] == f"s3://{BUCKET}/{webp_key}"


def test_a_poster_at_a_key_of_ones_own(venice: Any, moto_s3: Any) -> None:
    venice()

    result = generate(poster_key="posters/fox.jpg").execute(make_context())

    assert keys(moto_s3) == {KEY, KEY + ".json", "posters/fox.jpg"}
    assert is_jpeg(object_bytes(moto_s3, BUCKET, "posters/fox.jpg"))
    assert result["poster_uri"] == f"s3://{BUCKET}/posters/fox.jpg"


def test_no_poster_when_it_is_off_but_the_probe_is_made(venice: Any, moto_s3: Any) -> None:
    venice(moov_at_end=True)
    context = make_context()

    result = generate(poster_key="").execute(context)

    assert keys(moto_s3) == {KEY, KEY + ".json"}
    manifest = read_manifest(moto_s3, BUCKET, KEY)
    assert manifest["poster"] is None
    assert manifest["probe"]["made"] is True
    assert result["poster_uri"] is None
    assert result["duration_s"] == 5.0
    [(_, extra)] = alias_events(context)
    assert extra["poster_uri"] is None


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("poster_format", "gif"),
        ("poster_format", "png"),
        ("poster_max_side", 0),
        ("poster_max_side", 100_000),
        ("poster_max_side", "640"),
    ],
)
def test_a_bad_poster_option_fails_before_anything_is_paid(
    venice: Any, moto_s3: Any, option: str, value: Any
) -> None:
    emulator = venice()

    with pytest.raises(AirflowFailException, match=option):
        generate(**{option: value}).execute(make_context())

    assert calls_to(emulator.calls(), "/video/queue") == []
    assert calls_to(emulator.calls(), "/video/quote") == []
    assert keys(moto_s3) == set()


def test_a_bad_poster_option_fails_before_the_video_is_downloaded(venice: Any, moto_s3: Any) -> None:
    emulator = venice()
    job = queue_job(emulator)
    before = len(emulator.calls())
    op = VeniceVideoToS3Operator(task_id="to_s3", job=job, s3_bucket=BUCKET, s3_key=KEY, poster_format="bmp")

    with pytest.raises(AirflowFailException, match="poster_format"):
        op.execute(make_context())

    assert emulator.calls()[before:] == []
    assert keys(moto_s3) == set()


# --- what the probe reads --------------------------------------------------------------------------------


@pytest.mark.parametrize("moov_at_end", LAYOUTS)
def test_the_probe_reads_a_few_ranges_never_the_whole_video(
    venice: Any, moto_s3: Any, moov_at_end: bool
) -> None:
    size = 24 * MIB
    venice(moov_at_end=moov_at_end, video_bytes=size)
    op = generate()
    gets = VideoGets(op.s3_hook.get_conn())

    result = op.execute(make_context())

    assert result["size_bytes"] == size
    assert result["duration_s"] == 5.0
    assert object_exists(moto_s3, BUCKET, POSTER_KEY)
    assert gets.ranges, "the probe read nothing from S3"
    assert all(isinstance(asked, str) and re.fullmatch(r"bytes=\d+-\d+", asked) for asked in gets.ranges), (
        gets.ranges
    )
    assert len(gets.ranges) <= 6, gets.ranges
    assert gets.bytes_read <= 4 * BLOCK_SIZE <= size // 16, gets.bytes_read
    if moov_at_end:  # the moov box is in the last block: the probe found it without reading what is between
        assert any(asked.endswith(f"-{size - 1}") for asked in gets.ranges if asked), gets.ranges


def put_video(s3: Any, key: str, *, moov_at_end: bool, pad_to: int | None = None) -> tuple[bytes, str]:
    body = b"".join(Mp4File(VideoSpec.for_request("5s", "16:9"), pad_to, moov_at_end=moov_at_end).chunks())
    etag = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"]
    return body, etag


@pytest.mark.parametrize("moov_at_end", LAYOUTS)
def test_probe_video_reports_its_requests_and_writes_the_poster(moto_s3: Any, moov_at_end: bool) -> None:
    body, etag = put_video(moto_s3, KEY, moov_at_end=moov_at_end, pad_to=6 * MIB)
    destination = Destination(BUCKET, KEY)

    outcome = probe_video(moto_s3, destination, len(body), etag, PosterSpec(POSTER_KEY))

    assert outcome.error is None
    assert outcome.probe is not None
    assert outcome.probe["duration_s"] == 5.0
    assert outcome.poster is not None
    assert outcome.poster["key"] == POSTER_KEY
    assert is_jpeg(object_bytes(moto_s3, BUCKET, POSTER_KEY))
    assert 1 <= outcome.requests <= 6
    assert outcome.bytes_read <= outcome.requests * BLOCK_SIZE < len(body) // 4


def test_probe_video_never_raises_and_reads_only_the_version_it_was_given(moto_s3: Any) -> None:
    body, etag = put_video(moto_s3, KEY, moov_at_end=True)
    put_video(moto_s3, KEY, moov_at_end=False)  # another version replaced it since

    outcome = probe_video(moto_s3, Destination(BUCKET, KEY), len(body), etag, PosterSpec(POSTER_KEY))

    assert outcome.probe is None
    assert outcome.error
    assert not object_exists(moto_s3, BUCKET, POSTER_KEY)


# --- the range reader ------------------------------------------------------------------------------------


@pytest.fixture
def stored(moto_s3: Any) -> tuple[bytes, str]:
    data = hashlib.sha256(b"seed").digest() * ((2 * BLOCK_SIZE + 1000) // 32 + 1)
    data = data[: 2 * BLOCK_SIZE + 1000]
    etag = moto_s3.put_object(Bucket=BUCKET, Key="ranged.bin", Body=data)["ETag"]
    return data, etag


def test_the_range_reader_reads_what_is_stored(moto_s3: Any, stored: tuple[bytes, str]) -> None:
    data, etag = stored
    reader = S3RangeReader(moto_s3, BUCKET, "ranged.bin", len(data), etag)
    assert reader.readable()
    assert reader.seekable()
    assert reader.read(10) == data[:10]
    assert reader.tell() == 10
    assert reader.seek(-5, io.SEEK_END) == len(data) - 5
    assert reader.read(100) == data[-5:]
    assert reader.read(1) == b""
    reader.seek(BLOCK_SIZE - 3)
    assert reader.read(6) in (data[BLOCK_SIZE - 3 : BLOCK_SIZE], data[BLOCK_SIZE - 3 : BLOCK_SIZE + 3])
    reader.seek(0)
    assert io.BufferedReader(reader).read() == data  # type: ignore[arg-type]
    assert reader.requests == 3  # one per block: the blocks read before are kept
    assert reader.bytes_read == len(data)


def test_the_range_reader_keeps_the_blocks_it_read(moto_s3: Any, stored: tuple[bytes, str]) -> None:
    data, etag = stored
    reader = S3RangeReader(moto_s3, BUCKET, "ranged.bin", len(data), etag)
    for _ in range(3):
        reader.seek(0)
        assert reader.read(100) == data[:100]
        reader.seek(-100, io.SEEK_END)
        assert reader.read(100) == data[-100:]
    assert reader.requests == 2
    assert reader.bytes_read == BLOCK_SIZE + 1000


def test_the_range_reader_refuses_another_version_of_the_object(
    moto_s3: Any, stored: tuple[bytes, str]
) -> None:
    data, etag = stored
    reader = S3RangeReader(moto_s3, BUCKET, "ranged.bin", len(data), etag)
    assert reader.read(10) == data[:10]
    moto_s3.put_object(Bucket=BUCKET, Key="ranged.bin", Body=b"x" * len(data))
    reader.seek(-10, io.SEEK_END)
    with pytest.raises(ClientError):
        reader.read(10)


# --- a valid MP4 that cannot be decoded ------------------------------------------------------------------


def _box(body: bytes, kind: str) -> tuple[int, int]:
    [(offset, size)] = [(offset, size) for name, offset, size in top_level_boxes(body) if name == kind]
    return offset, size


def garbage_moov(body: bytes) -> bytes:
    """The moov box keeps its size and place; everything inside it is garbage."""
    offset, size = _box(body, "moov")
    return body[: offset + 8] + bytes((37 * i + 11) & 0xFF for i in range(size - 8)) + body[offset + size :]


def garbage_avcc(body: bytes) -> bytes:
    """The decoder configuration (SPS and PPS in avcC) is garbage; the rest of moov is intact."""
    at = body.index(b"avcC") + 4
    return body[:at] + b"\xff" * 24 + body[at + 24 :]


def garbage_frames(body: bytes) -> bytes:
    """Every byte of every frame in mdat is garbage; the index in moov still points at them."""
    offset, size = _box(body, "mdat")
    return body[: offset + 8] + b"\xff" * (size - 8) + body[offset + size :]


@pytest.mark.parametrize(
    "garble", [garbage_moov, garbage_avcc, garbage_frames], ids=["moov", "avcC", "frames"]
)
@pytest.mark.parametrize("moov_at_end", LAYOUTS)
def test_a_valid_mp4_that_cannot_be_decoded_is_delivered_with_the_probe_error(
    venice: Any, moto_s3: Any, moov_at_end: bool, garble: Callable[[bytes], bytes]
) -> None:
    sent: list[bytes] = []

    def alter(body: bytes) -> bytes:
        sent.append(garble(body))
        return sent[-1]

    emulator = venice(moov_at_end=moov_at_end, transport=lambda inner: AlteredVideo(inner, body=alter))
    job = queue_job(emulator)
    store = FakeStore()
    op = VeniceVideoToS3Operator(task_id="to_s3", job=job, s3_bucket=BUCKET, s3_key=KEY)

    with structlog.testing.capture_logs() as logs:
        result = op.execute(make_context(store))

    [garbled] = sent
    boxes = top_level_boxes(garbled)
    assert sum(size for _, _, size in boxes) == len(garbled)  # a valid MP4 box structure
    assert {kind for kind, _, _ in boxes} == {"ftyp", "moov", "mdat"}
    stored = object_bytes(moto_s3, BUCKET, KEY)
    assert stored == garbled
    manifest = read_manifest(moto_s3, BUCKET, KEY)
    assert manifest["sha256"] == hashlib.sha256(stored).hexdigest()
    probe = manifest["probe"]
    assert probe["made"] is False, f"the probe of an undecodable video says it was made: {probe}"
    assert isinstance(probe.get("error"), str), probe
    assert probe["error"], probe
    assert manifest["poster"] is None
    assert not object_exists(moto_s3, BUCKET, POSTER_KEY)
    assert result["poster_uri"] is None
    assert all(result[name] is None for name in PROBE_FIELDS), result
    warnings = [str(entry["event"]) for entry in logs if entry["log_level"] == "warning"]
    assert any(f"s3://{BUCKET}/{KEY}" in line and "probe" in line.lower() for line in warnings), warnings
    assert len(calls_to(emulator.calls(), "/video/complete")) == 1
    assert store.data[RECORD_KEY]["stage"] == "completed"
