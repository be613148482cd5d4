"""The MP4 walker: top-level boxes followed while the bytes stream past, under any chunking."""

from __future__ import annotations

import copy
import itertools
import struct
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from airflow_provider_venice.lifecycle.mp4 import Mp4StructureError, Mp4Walker
from tests.unit.lifecycle.lifecycle_helpers import FTYP, MDAT, MOOV, SMALL_MP4, box, large_box, mp4_bytes

FAST_START = mp4_bytes()
PADDED = mp4_bytes(pad_to=300_000)
MOOV_AT_END = mp4_bytes(moov_at_end=True)
PADDED_MOOV_AT_END = mp4_bytes(pad_to=300_000, moov_at_end=True)
EMULATOR_FILES = {
    "fast-start": FAST_START,
    "padded": PADDED,
    "moov-at-end": MOOV_AT_END,
    "padded-moov-at-end": PADDED_MOOV_AT_END,
}
LARGE_MDAT = FTYP + MOOV + large_box(b"mdat", bytes(range(200)))
TO_THE_END = FTYP + MOOV + struct.pack(">I4s", 0, b"mdat") + bytes(range(256)) * 3


def walk(chunks: Iterable[bytes]) -> Mp4Walker:
    walker = Mp4Walker()
    for chunk in chunks:
        walker.feed(chunk)
    walker.finish()
    return walker


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(points)]


def top_level(data: bytes) -> list[tuple[str, int, int]]:
    """The top-level boxes of a well-formed file, read independently of the walker."""
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
        boxes.append((kind.decode(), offset, size))
        if size == 0:
            break
        offset += size
    return boxes


def refused(chunks: Iterable[bytes]) -> str:
    with pytest.raises(Mp4StructureError) as caught:
        walk(chunks)
    return str(caught.value)


# --- accepted ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EMULATOR_FILES))
def test_emulator_files_are_accepted_whole(name: str) -> None:
    data = EMULATOR_FILES[name]
    walker = walk([data])
    assert walker.received == len(data)
    assert walker.boxes == top_level(data)
    kinds = [kind for kind, _, _ in walker.boxes]
    assert kinds == (["ftyp", "mdat", "moov"] if "moov-at-end" in name else ["ftyp", "moov", "mdat"])
    assert sum(size for _, _, size in walker.boxes) == len(data)


@pytest.mark.parametrize("name", list(EMULATOR_FILES))
def test_emulator_files_are_accepted_as_the_emulator_streams_them(name: str) -> None:
    moov_at_end = "moov-at-end" in name
    from airflow_provider_venice.testing import Mp4File, VideoSpec

    video = Mp4File(
        VideoSpec.for_request("5s", "16:9"), 300_000 if "padded" in name else None, moov_at_end=moov_at_end
    )
    assert walk(video.chunks(4096)).received == video.size


@pytest.mark.parametrize("name", ["fast-start", "moov-at-end"])
def test_emulator_files_are_accepted_one_byte_at_a_time(name: str) -> None:
    data = EMULATOR_FILES[name]
    walker = walk(data[i : i + 1] for i in range(len(data)))
    assert walker.boxes == top_level(data)


@pytest.mark.parametrize("name", list(EMULATOR_FILES))
def test_one_byte_chunks_around_every_box_header(name: str) -> None:
    data = EMULATOR_FILES[name]
    for _, offset, _ in top_level(data):
        cuts = [c for c in range(offset - 3, offset + 20) if 0 < c < len(data)]
        assert walk(split(data, cuts)).boxes == top_level(data), f"box at {offset}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(list(EMULATOR_FILES)), st.data())
def test_emulator_files_are_accepted_under_any_chunking(name: str, data: st.DataObject) -> None:
    body = EMULATOR_FILES[name]
    headers = [offset for _, offset, _ in top_level(body)]
    near_headers = st.sampled_from(headers).flatmap(
        lambda offset: st.integers(max(1, offset - 17), min(len(body) - 1, offset + 17))
    )
    anywhere = st.integers(1, len(body) - 1)
    cuts = data.draw(st.lists(near_headers | anywhere, max_size=40))
    assert walk(split(body, cuts)).boxes == top_level(body)


def test_a_64_bit_largesize_mdat_is_accepted_in_one_chunk() -> None:
    walker = walk([LARGE_MDAT])
    assert walker.boxes == [
        ("ftyp", 0, len(FTYP)),
        ("moov", len(FTYP), len(MOOV)),
        ("mdat", len(FTYP) + len(MOOV), 16 + 200),
    ]


def test_a_64_bit_largesize_mdat_is_accepted_split_at_every_position() -> None:
    failures = []
    for cut in range(1, len(LARGE_MDAT)):
        try:
            walk([LARGE_MDAT[:cut], LARGE_MDAT[cut:]])
        except Mp4StructureError as exc:
            failures.append((cut, str(exc)))
    assert failures == []


def test_a_64_bit_largesize_mdat_is_accepted_one_byte_at_a_time() -> None:
    walker = walk(LARGE_MDAT[i : i + 1] for i in range(len(LARGE_MDAT)))
    assert walker.boxes[-1] == ("mdat", len(FTYP) + len(MOOV), 216)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, len(LARGE_MDAT) - 1), max_size=12))
def test_a_64_bit_largesize_mdat_is_accepted_under_any_chunking(cuts: list[int]) -> None:
    assert walk(split(LARGE_MDAT, cuts)).boxes[-1] == ("mdat", len(FTYP) + len(MOOV), 216)


def test_a_64_bit_largesize_box_whose_header_is_split_after_its_size_field() -> None:
    start = len(FTYP) + len(MOOV)
    for cut in (start + 4, start + 8, start + 12, start + 16):
        assert walk(split(LARGE_MDAT, [cut])).boxes[-1][0] == "mdat", cut


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, len(TO_THE_END) - 1), max_size=12))
def test_a_last_box_of_size_zero_runs_to_the_end(cuts: list[int]) -> None:
    walker = walk(split(TO_THE_END, cuts))
    assert walker.boxes[-1] == ("mdat", len(FTYP) + len(MOOV), 0)
    assert walker.received == len(TO_THE_END)


def test_a_last_box_of_size_zero_takes_any_bytes_after_it() -> None:
    walker = walk([TO_THE_END, b"\x00" * 1000, b"anything at all"])
    assert walker.received == len(TO_THE_END) + 1015


def test_the_order_of_moov_and_mdat_does_not_matter() -> None:
    assert [kind for kind, _, _ in walk([FTYP + MDAT + MOOV]).boxes] == ["ftyp", "mdat", "moov"]


def test_other_boxes_between_are_fine() -> None:
    data = FTYP + box(b"free", bytes(10)) + MOOV + box(b"uuid", bytes(16)) + MDAT
    assert [kind for kind, _, _ in walk([data]).boxes] == ["ftyp", "free", "moov", "uuid", "mdat"]


def test_a_box_of_exactly_its_header_is_fine() -> None:
    assert walk([FTYP + box(b"free") + MOOV + MDAT]).boxes[1] == ("free", len(FTYP), 8)


# --- refused -------------------------------------------------------------------------------------


def test_a_file_not_starting_with_ftyp_is_refused() -> None:
    message = refused([MOOV + FTYP + MDAT])
    assert "not an MP4 file" in message
    assert "ftyp" in message


def test_an_html_page_is_refused_at_once() -> None:
    walker = Mp4Walker()
    with pytest.raises(Mp4StructureError, match="not an ftyp box"):
        walker.feed(b"<html><body>Access denied</body></html>")


@pytest.mark.parametrize(
    ("data", "missing"),
    [(FTYP + MDAT, "moov"), (FTYP + MOOV, "mdat"), (FTYP, "moov, mdat"), (FTYP + box(b"free"), "moov, mdat")],
)
def test_a_file_without_moov_or_mdat_is_refused(data: bytes, missing: str) -> None:
    assert refused([data]) == f"not a whole MP4 file: no {missing} box"


def test_nothing_at_all_is_refused() -> None:
    assert "no ftyp, moov, mdat box" in refused([])
    assert "no ftyp, moov, mdat box" in refused([b""])


def test_every_prefix_of_a_small_file_fails_but_the_whole_file() -> None:
    walk([SMALL_MP4])
    for end in range(len(SMALL_MP4)):
        for chunks in ([SMALL_MP4[:end]], [SMALL_MP4[i : i + 1] for i in range(end)]):
            with pytest.raises(Mp4StructureError):
                walk(chunks)


@pytest.mark.parametrize("name", list(EMULATOR_FILES))
def test_emulator_files_cut_near_any_box_boundary_fail(name: str) -> None:
    data = EMULATOR_FILES[name]
    boundaries = {offset for _, offset, _ in top_level(data)} | {len(data)}
    ends = sorted({end for b in boundaries for end in range(b - 20, b + 20) if 0 <= end < len(data)})
    walker, fed = Mp4Walker(), 0
    for end in ends:  # one walker fed up to each end in turn; a copy of it is finished there
        walker.feed(data[fed:end])
        fed = end
        with pytest.raises(Mp4StructureError):
            copy.deepcopy(walker).finish()
    walker.feed(data[fed:])
    walker.finish()


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(list(EMULATOR_FILES)), st.data())
def test_emulator_files_cut_short_anywhere_fail(name: str, data: st.DataObject) -> None:
    body = EMULATOR_FILES[name]
    end = data.draw(st.integers(0, len(body) - 1))
    cuts = data.draw(st.lists(st.integers(1, max(1, end)), max_size=5)) if end > 1 else []
    with pytest.raises(Mp4StructureError) as caught:
        walk(split(body[:end], [c for c in cuts if c < end]))
    assert any(
        words in str(caught.value) for words in ("cut short", "ends inside a box header", "not a whole MP4")
    )


def test_a_cut_inside_a_box_says_which_box_and_where() -> None:
    cut = len(FTYP) + len(MOOV) + 100
    message = refused([SMALL_MP4[:cut]])
    assert message == (
        f"body cut short: the 'mdat' box at byte {len(FTYP) + len(MOOV)} declares {len(MDAT)} bytes, "
        f"but the body ends after {cut} bytes"
    )


def test_a_cut_inside_a_box_header_says_so() -> None:
    cut = len(FTYP) + 5
    assert refused([SMALL_MP4[:cut]]) == f"the body ends inside a box header, after {cut} bytes"


@pytest.mark.parametrize("extra", [b"x", b"\x00" * 7, b"\x00\x00\x00\x10free", b"\x00" * 8, b"\xff" * 64])
def test_extra_trailing_bytes_are_refused(extra: bytes) -> None:
    with pytest.raises(Mp4StructureError):
        walk([SMALL_MP4 + extra])
    with pytest.raises(Mp4StructureError):
        walk([SMALL_MP4, extra])


@pytest.mark.parametrize("name", list(EMULATOR_FILES))
def test_emulator_files_with_trailing_bytes_are_refused(name: str) -> None:
    for extra in (b"\x00", b"\x00" * 8, b"junk after the end of the file"):
        with pytest.raises(Mp4StructureError):
            walk([EMULATOR_FILES[name], extra])


@given(st.binary(min_size=1, max_size=7))
def test_any_short_tail_after_the_last_box_is_refused(extra: bytes) -> None:
    with pytest.raises(Mp4StructureError, match="ends inside a box header"):
        walk([SMALL_MP4 + extra])


@pytest.mark.parametrize("size", [2, 3, 4, 7])
def test_a_box_smaller_than_its_header_is_refused(size: int) -> None:
    bad = struct.pack(">I4s", size, b"free")
    message = refused([FTYP + bad + MOOV + MDAT])
    assert "'free'" in message
    assert f"impossible size {size}" in message
    assert f"at byte {len(FTYP)}" in message


def test_a_first_box_smaller_than_its_header_is_refused() -> None:
    assert "impossible size 4" in refused([struct.pack(">I4s", 4, b"ftyp") + MOOV + MDAT])


@pytest.mark.parametrize("largesize", [0 + 1, 8, 15])
def test_a_largesize_smaller_than_its_header_is_refused(largesize: int) -> None:
    bad = struct.pack(">I4sQ", 1, b"mdat", largesize)
    assert f"impossible size {largesize}" in refused([FTYP + MOOV, bad[:8], bad[8:]])


@pytest.mark.parametrize("kind", [b"\x00\x00\x00\x00", b"mo\x00v", b"\xff\xfe\xfd\xfc", b"md\nt"])
def test_an_unreadable_box_type_is_refused(kind: bytes) -> None:
    bad = struct.pack(">I", 16) + kind + bytes(8)
    message = refused([FTYP + bad + MOOV + MDAT])
    assert "unreadable box type" in message
    assert repr(kind) in message
    assert f"at byte {len(FTYP)}" in message


def test_a_file_of_zeros_is_refused() -> None:
    assert "not an ftyp box" in refused([bytes(4096)])
