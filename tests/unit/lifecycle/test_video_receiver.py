"""The video receiver: every chunk counted against Content-Length, walked as MP4 and hashed."""

from __future__ import annotations

import hashlib
import itertools
import threading

import pytest
from hypothesis import given, settings, strategies as st

from airflow_provider_venice.lifecycle.failures import VideoDeliveryError
from airflow_provider_venice.lifecycle.receive import VideoReceiver
from tests.unit.lifecycle.lifecycle_helpers import mp4_bytes

VIDEO = mp4_bytes(pad_to=50_000)


def receiver(expected: int | None = len(VIDEO)) -> VideoReceiver:
    return VideoReceiver(expected, threading.Event())


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_a_whole_video_passes() -> None:
    taking = receiver()
    for chunk in pieces(VIDEO, 4096):
        taking.take(chunk)
    taking.finish()
    assert taking.size == len(VIDEO)
    assert taking.sha256 == hashlib.sha256(VIDEO).hexdigest()
    assert [kind for kind, _, _ in taking.mp4.boxes] == ["ftyp", "moov", "mdat"]


def test_without_content_length_any_whole_video_passes() -> None:
    taking = receiver(None)
    for chunk in pieces(VIDEO, 1000):
        taking.take(chunk)
    taking.finish()
    assert taking.size == len(VIDEO)


def test_more_bytes_than_announced_fail_at_once() -> None:
    taking = receiver(len(VIDEO) - 10)
    chunks = pieces(VIDEO, 4096)
    for chunk in chunks[:-1]:
        taking.take(chunk)
    with pytest.raises(VideoDeliveryError, match=f"more than the announced {len(VIDEO) - 10} bytes"):
        taking.take(chunks[-1])


def test_one_byte_more_than_announced_fails_at_that_byte() -> None:
    taking = receiver(len(VIDEO))
    taking.take(VIDEO)
    with pytest.raises(VideoDeliveryError, match="more than the announced"):
        taking.take(b"\x00")


def test_fewer_bytes_than_announced_fail_at_finish() -> None:
    taking = receiver(len(VIDEO) + 100)
    taking.take(VIDEO)  # nothing is wrong yet
    with pytest.raises(VideoDeliveryError) as caught:
        taking.finish()
    assert str(caught.value) == f"body cut short: {len(VIDEO)} of {len(VIDEO) + 100} bytes received"


def test_a_body_cut_short_without_content_length_fails_at_finish() -> None:
    taking = receiver(None)
    taking.take(VIDEO[:-1])
    with pytest.raises(VideoDeliveryError, match="cut short"):
        taking.finish()


def test_the_abort_event_fails_the_next_chunk() -> None:
    abort = threading.Event()
    taking = VideoReceiver(len(VIDEO), abort)
    taking.take(VIDEO[:1000])
    abort.set()
    with pytest.raises(VideoDeliveryError, match="cancelled"):
        taking.take(VIDEO[1000:2000])
    assert taking.size == 1000  # the refused chunk was not counted


def test_what_is_not_an_mp4_fails_at_the_first_chunk_as_a_delivery_error() -> None:
    taking = receiver(None)
    with pytest.raises(VideoDeliveryError, match="ftyp"):
        taking.take(b'{"error": "not ready"}')


def test_an_mp4_error_is_reported_as_a_delivery_error_at_finish() -> None:
    taking = receiver(None)
    taking.take(VIDEO[:40])
    with pytest.raises(VideoDeliveryError) as caught:
        taking.finish()
    assert "cut short" in str(caught.value) or "box header" in str(caught.value)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, len(VIDEO) - 1), max_size=30))
def test_sha256_matches_hashlib_under_any_chunking(cuts: list[int]) -> None:
    points = [0, *sorted(set(cuts)), len(VIDEO)]
    taking = receiver()
    for start, end in itertools.pairwise(points):
        taking.take(VIDEO[start:end])
    taking.finish()
    assert taking.sha256 == hashlib.sha256(VIDEO).hexdigest()
    assert taking.size == len(VIDEO)


def test_sha256_is_of_the_bytes_so_far() -> None:
    taking = receiver(None)
    assert taking.sha256 == hashlib.sha256(b"").hexdigest()
    taking.take(VIDEO[:100])
    assert taking.sha256 == hashlib.sha256(VIDEO[:100]).hexdigest()
