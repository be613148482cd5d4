from __future__ import annotations

import io
import struct

import pytest

from airflow_provider_venice.testing.mp4 import Mp4File, VideoSpec, frame_size, probe_mp4, seconds_for


@pytest.mark.parametrize(
    ("aspect_ratio", "size"),
    [
        ("16:9", (160, 90)),
        ("9:16", (90, 160)),
        ("1:1", (80, 80)),
        ("4:3", (112, 84)),
        ("21:9", (210, 90)),
        (None, (160, 90)),
        ("auto", (160, 90)),
    ],
)
def test_frame_size_follows_aspect_ratio(aspect_ratio: str | None, size: tuple[int, int]) -> None:
    assert frame_size(aspect_ratio) == size


@pytest.mark.parametrize(("duration", "seconds"), [("5s", 5), ("10s", 10), ("Auto", 5)])
def test_seconds_for_duration(duration: str, seconds: int) -> None:
    assert seconds_for(duration) == seconds


@pytest.mark.parametrize("duration", ["0s", "five", "5"])
def test_seconds_for_rejects_bad_durations(duration: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        seconds_for(duration)


@pytest.mark.parametrize(("duration", "aspect_ratio"), [("5s", "16:9"), ("10s", "9:16"), ("Auto", "1:1")])
def test_probe_reads_back_what_was_written(duration: str, aspect_ratio: str) -> None:
    spec = VideoSpec.for_request(duration, aspect_ratio)
    data = b"".join(Mp4File(spec).chunks())

    info = probe_mp4(data)

    assert data[4:8] == b"ftyp"
    assert (info.duration_s, info.width, info.height) == (spec.seconds, spec.width, spec.height)
    assert info.major_brand == "isom"


def test_padding_reaches_the_exact_size_and_keeps_the_header() -> None:
    spec = VideoSpec.for_request("5s", "16:9")
    natural = Mp4File(spec)
    padded = Mp4File(spec, pad_to=natural.size + 12345)

    data = b"".join(padded.chunks(chunk_size=4096))

    assert len(data) == padded.size == natural.size + 12345
    assert probe_mp4(data).duration_s == 5
    assert max(len(chunk) for chunk in list(padded.chunks(4096))[-3:]) <= 4096


def test_padding_below_the_natural_size_is_ignored() -> None:
    spec = VideoSpec.for_request("5s", "16:9")
    assert Mp4File(spec, pad_to=10).size == Mp4File(spec).size


def test_files_over_4_gib_use_a_64_bit_mdat_header() -> None:
    spec = VideoSpec.for_request("5s", "16:9")
    head = next(Mp4File(spec, pad_to=5 * 2**30).chunks())

    mdat = head.rindex(b"mdat")
    assert struct.unpack(">I", head[mdat - 4 : mdat])[0] == 1
    assert len(head) + struct.unpack(">Q", head[mdat + 4 : mdat + 12])[0] - 16 == 5 * 2**30
    assert probe_mp4(head).width == 160


def test_probe_rejects_non_mp4_bytes() -> None:
    with pytest.raises(ValueError, match="not an MP4"):
        probe_mp4(b'{"status": "PROCESSING"}')


@pytest.mark.parametrize(("duration", "aspect_ratio"), [("5s", "16:9"), ("6s", "9:16"), ("Auto", "1:1")])
def test_a_real_decoder_plays_every_frame(duration: str, aspect_ratio: str) -> None:
    av = pytest.importorskip("av")
    spec = VideoSpec.for_request(duration, aspect_ratio)
    data = b"".join(Mp4File(spec, pad_to=Mp4File(spec).size + 100_000).chunks())

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        # Read while the container is open: PyAV 19 refuses a closed container's stream attributes.
        codec, time_base = stream.codec_context.name, stream.time_base

    assert codec == "h264"
    assert (frames[0].width, frames[0].height) == (spec.width, spec.height)
    assert len(frames) == spec.seconds
    assert float(frames[-1].pts * time_base) == spec.seconds - 1
