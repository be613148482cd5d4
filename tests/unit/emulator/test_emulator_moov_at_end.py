"""The ``moov_at_end`` layout (``ftyp`` + ``mdat`` + ``moov``) next to the default one."""

from __future__ import annotations

import io
import struct
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
from emulator_helpers import KEY, T2V, VPS, valid_body

from airflow_provider_venice.testing import VeniceEmulator, probe_mp4, run_emulator
from airflow_provider_venice.testing.mp4 import Mp4File, VideoSpec
from airflow_provider_venice.testing.processes import start_emulator_process

ORDER = {False: ["ftyp", "moov", "mdat"], True: ["ftyp", "mdat", "moov"]}
LAYOUTS = pytest.mark.parametrize("moov_at_end", [False, True], ids=["moov-first", "moov-at-end"])


def _top_level(data: bytes) -> list[tuple[str, int]]:
    """``(type, size)`` of each top-level box, walked from the first byte to the last."""
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
        assert size >= 8, f"box {kind!r} at {offset} has size {size}"
        boxes.append((kind.decode(), size))
        offset += size
    return boxes


@LAYOUTS
@pytest.mark.parametrize("pad_to", [None, 3_000_000], ids=["natural", "3MB"])
def test_top_level_boxes_in_order_and_summing_to_the_size(moov_at_end: bool, pad_to: int | None) -> None:
    file = Mp4File(VideoSpec.for_request("5s", "16:9"), pad_to, moov_at_end=moov_at_end)

    data = b"".join(file.chunks(chunk_size=64 * 1024))

    boxes = _top_level(data)
    assert [kind for kind, _ in boxes] == ORDER[moov_at_end]
    assert sum(size for _, size in boxes) == len(data) == file.size
    if pad_to is not None:
        assert file.size == pad_to
    assert probe_mp4(data).duration_s == 5


@LAYOUTS
@pytest.mark.parametrize(
    ("duration", "aspect_ratio"), [("5s", "16:9"), ("6s", "9:16"), ("Auto", "1:1"), ("10s", "21:9")]
)
def test_a_real_decoder_plays_both_layouts(moov_at_end: bool, duration: str, aspect_ratio: str) -> None:
    av = pytest.importorskip("av")
    spec = VideoSpec.for_request(duration, aspect_ratio)
    pad_to = Mp4File(spec).size + 3_000_000
    data = b"".join(Mp4File(spec, pad_to, moov_at_end=moov_at_end).chunks())

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        seconds = container.duration / av.time_base
        # Read while the container is open: PyAV 19 refuses a closed container's stream attributes.
        codec, time_base = stream.codec_context.name, stream.time_base

    across, down = (int(part) for part in aspect_ratio.replace("Auto", "1:1").split(":"))
    assert codec == "h264"
    assert [kind for kind, _ in _top_level(data)] == ORDER[moov_at_end]
    assert len(frames) == spec.seconds
    assert seconds == spec.seconds
    assert float(frames[-1].pts * time_base) == spec.seconds - 1
    assert (frames[0].width, frames[0].height) == (spec.width, spec.height)
    assert Fraction(frames[0].width, frames[0].height) == Fraction(across, down)


def test_chunk_offset_points_at_the_first_frame_in_both_layouts() -> None:
    spec = VideoSpec.for_request("5s", "16:9")
    for moov_at_end in (False, True):
        file = Mp4File(spec, 1_000_000, moov_at_end=moov_at_end)
        data = b"".join(file.chunks())
        stco = data.index(b"stco")
        (offset,) = struct.unpack(">I", data[stco + 12 : stco + 16])
        assert offset == len(next(file.chunks()))  # the first frame follows the head
        (nal_size,) = struct.unpack(">I", data[offset : offset + 4])
        assert data[offset + 4] == 0x65  # an IDR slice NAL unit
        assert nal_size > 0


def test_over_4_gib_moov_at_end_uses_a_64_bit_mdat_header_and_a_trailing_moov() -> None:
    spec = VideoSpec.for_request("5s", "16:9")
    file = Mp4File(spec, pad_to=5 * 2**30, moov_at_end=True)
    chunks = file.chunks(chunk_size=16 * 1024 * 1024)
    head = next(chunks)
    *_, tail = chunks

    assert head[4:8] == b"ftyp"
    assert head[-12:-8] == b"mdat"
    assert struct.unpack(">I", head[-16:-12])[0] == 1
    ftyp_size = struct.unpack(">I", head[:4])[0]
    mdat_size = struct.unpack(">Q", head[-8:])[0]
    assert tail[4:8] == b"moov"
    assert ftyp_size + mdat_size + struct.unpack(">I", tail[:4])[0] == file.size == 5 * 2**30
    stco = tail.index(b"stco")
    assert struct.unpack(">I", tail[stco + 12 : stco + 16])[0] == len(head)
    assert sys.getsizeof(tail) < 10_000


def test_probe_needs_the_bytes_through_a_trailing_moov() -> None:
    spec = VideoSpec.for_request("5s", "16:9")
    file = Mp4File(spec, 100_000, moov_at_end=True)
    data = b"".join(file.chunks())
    mdat_end = len(data) - _top_level(data)[-1][1]

    with pytest.raises(ValueError, match=f"no moov box in the 4096 bytes given.*offset {mdat_end}"):
        probe_mp4(data[:4096])
    with pytest.raises(ValueError, match="moov box ends at offset"):
        probe_mp4(data[: mdat_end + 20])
    assert (probe_mp4(data).width, probe_mp4(data).height) == (160, 90)


def _retrieve(http: httpx.Client, job: dict[str, Any]) -> httpx.Response:
    return http.post("/video/retrieve", json={"model": job["model"], "queue_id": job["queue_id"]})


def test_emulator_serves_moov_at_end_from_retrieve_and_download_url() -> None:
    emulator = VeniceEmulator(moov_at_end=True, video_bytes=3_000_000)
    with emulator.client(api_key=KEY) as http:
        job = http.post("/video/queue", json=valid_body(aspect_ratio="9:16")).json()
        vps = http.post("/video/queue", json=valid_body(VPS)).json()
        emulator.advance(3600)
        videos = [_retrieve(http, job).content, http.get(vps["download_url"]).content]

        emulator.configure(moov_at_end=False)
        fast_started = _retrieve(http, job).content

    for data in videos:
        assert [kind for kind, _ in _top_level(data)] == ORDER[True]
        assert sum(size for _, size in _top_level(data)) == len(data) == 3_000_000
    assert (probe_mp4(videos[0]).width, probe_mp4(videos[0]).height) == (90, 160)
    assert [kind for kind, _ in _top_level(fast_started)] == ORDER[False]


def test_switch_via_admin_config_and_reset() -> None:
    emulator = VeniceEmulator()
    with emulator.client(api_key=KEY) as http:
        assert http.post(f"{emulator.admin_url}/config", json={"moov_at_end": True}).json()["config"][
            "moov_at_end"
        ]
        job = http.post("/video/queue", json=valid_body()).json()
        emulator.advance(3600)
        assert [kind for kind, _ in _top_level(_retrieve(http, job).content)] == ORDER[True]
        http.post(f"{emulator.admin_url}/reset", json={})
        assert emulator.state.config.moov_at_end is False
        emulator.reset(moov_at_end=True)
        assert emulator.state.config.moov_at_end is True


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.integration
def test_large_moov_at_end_video_streams_in_bounded_memory_over_a_socket() -> None:
    size = 200 * 1024 * 1024
    peak = baseline = _rss_bytes()
    head, window, received = b"", b"", 0
    with (
        run_emulator(moov_at_end=True, video_bytes=size, job_seconds=0) as server,
        httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        job = http.post("/video/queue", json=valid_body()).json()
        body = {"model": T2V, "queue_id": job["queue_id"]}
        with http.stream("POST", "/video/retrieve", json=body) as response:
            for index, chunk in enumerate(response.iter_raw(1024 * 1024)):
                head = head or chunk
                if index % 8 == 0:
                    peak = max(peak, _rss_bytes())
                window = (window + chunk)[-64 * 1024 :]
                received += len(chunk)
    assert received == size
    assert peak - baseline < 100 * 1024 * 1024
    ftyp_size = struct.unpack(">I", head[:4])[0]
    mdat_size = struct.unpack(">I", head[ftyp_size : ftyp_size + 4])[0]
    moov = window[-(size - ftyp_size - mdat_size) :]
    assert moov[4:8] == b"moov"
    assert struct.unpack(">I", moov[:4])[0] == len(moov)


@pytest.mark.integration
def test_cli_flags_reach_the_config() -> None:
    flags = ("--retrieve-json-on-accept", "--moov-at-end", "--job-seconds", "0")
    with start_emulator_process(*flags) as service:
        admin_url = service.url.removesuffix("/api/v1") + "/_emulator"
        config = httpx.get(f"{admin_url}/config").json()["config"]
        with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
            job = http.post("/video/queue", json=valid_body()).json()
            body = {"model": T2V, "queue_id": job["queue_id"]}
            answer = http.post("/video/retrieve", json=body, headers={"Accept": "application/json"})
            video = http.post("/video/retrieve", json=body, headers={"Accept": "video/mp4"})
    assert config["retrieve_json_on_accept"] is True
    assert config["moov_at_end"] is True
    assert answer.json()["status"] == "COMPLETED"
    assert [kind for kind, _ in _top_level(video.content)] == ORDER[True]
