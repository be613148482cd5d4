"""Probe a delivered video and make its poster frame, reading the S3 object by ranges (PyAV, optional).

Why ranged reads of the stored object rather than a spool of the stream: the probe needs the ``moov``
box (wherever it is: files that were not "fast-started" keep it after ``mdat``, at the very end) and
the bytes of the first keyframe, which the ``moov`` box locates. Reading them back by range touches a
few hundred kilobytes in a handful of requests, holds a few blocks in memory, and leaves the upload
path untouched: no buffer grows while a multi-GiB video streams, and a probe that fails cannot harm
the delivery. It runs after the video is verified and before the manifest, which records the result.

PyAV comes with the ``media`` extra (``pip install airflow-provider-venice[media]``); without it, the
manifest says that no probe was made.
"""

from __future__ import annotations

import io
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_venice.lifecycle.destination import Destination

log = logging.getLogger(__name__)
BLOCK_SIZE = 256 * 1024
BLOCKS_KEPT = 8
MAX_FRAMES_TO_KEYFRAME = 300
POSTER_FORMATS = {"jpeg": ("mjpeg", "yuvj420p", "image/jpeg"), "webp": ("libwebp", "yuv420p", "image/webp")}
POSTER_SUFFIXES = {"jpeg": "jpg", "webp": "webp"}
PROBE_FIELDS = ("duration_s", "width", "height", "frame_rate", "video_codec", "has_audio")


@dataclass(frozen=True)
class PosterSpec:
    """Where the poster goes and what it is: ``max_side`` px on its long side, JPEG or WebP."""

    key: str
    max_side: int = 640
    image_format: str = "jpeg"

    def __post_init__(self) -> None:
        if self.image_format not in POSTER_FORMATS:
            raise ValueError(f"poster_format: {self.image_format!r}; allowed: {', '.join(POSTER_FORMATS)}")
        if not isinstance(self.max_side, int) or not 16 <= self.max_side <= 4096:
            raise ValueError(f"poster_max_side: {self.max_side!r}; allowed: 16 to 4096 pixels")


@dataclass
class ProbeOutcome:
    """What the probe found: ``probe`` fields, the ``poster`` written, or the ``error`` that stopped it."""

    probe: dict[str, Any] | None = None
    poster: dict[str, Any] | None = None
    error: str | None = None
    requests: int = 0
    bytes_read: int = 0


class S3RangeReader(io.RawIOBase):
    """A seekable, read-only file over one S3 object version, fetched in blocks by ``Range`` requests."""

    def __init__(self, s3: Any, bucket: str, key: str, size: int, etag: str | None = None) -> None:
        super().__init__()
        self._s3, self._bucket, self._key, self._size, self._etag = s3, bucket, key, size, etag
        self._position = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self.requests = 0
        self.bytes_read = 0

    def readable(self) -> bool:
        """Return True."""
        return True

    def seekable(self) -> bool:
        """Return True."""
        return True

    def tell(self) -> int:
        """Return the current position."""
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` from the start, the current position or the end."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the current position; 0 at the end of the object."""
        view = memoryview(buffer).cast("B")
        if self._position >= self._size or not len(view):
            return 0
        index, skip = divmod(self._position, BLOCK_SIZE)
        block = self._block(index)
        count = min(len(view), len(block) - skip)
        view[:count] = block[skip : skip + count]
        self._position += count
        return count

    def _block(self, index: int) -> bytes:
        if index in self._blocks:
            self._blocks.move_to_end(index)
            return self._blocks[index]
        start = index * BLOCK_SIZE
        end = min(self._size, start + BLOCK_SIZE) - 1
        conditions = {"IfMatch": self._etag} if self._etag else {}
        answer = self._s3.get_object(
            Bucket=self._bucket, Key=self._key, Range=f"bytes={start}-{end}", **conditions
        )
        block: bytes = answer["Body"].read()
        self.requests += 1
        self.bytes_read += len(block)
        self._blocks[index] = block
        if len(self._blocks) > BLOCKS_KEPT:
            self._blocks.popitem(last=False)
        return block


def probe_video(
    s3: Any, destination: Destination, size: int, etag: str, poster: PosterSpec | None
) -> ProbeOutcome:
    """Read the stored video's header and first keyframe; write the poster when asked.

    Never raises: whatever goes wrong (no PyAV, a file FFmpeg cannot decode, S3 refusing a read) is
    returned as ``error``, and the delivery goes on without probe data.
    """
    try:
        import av
    except ImportError:
        return ProbeOutcome(error="not probed: PyAV is not installed (airflow-provider-venice[media])")
    reader = S3RangeReader(s3, destination.bucket, destination.key, size, etag)
    outcome = ProbeOutcome()
    try:
        with av.open(reader, mode="r") as container:
            facts = _facts(container)
            frame = _first_keyframe(container)  # a video whose frames cannot be decoded is not probed
            if poster is not None:
                outcome.poster = _write_poster(av, s3, destination.bucket, frame, poster)
            outcome.probe = facts
    except Exception as exc:  # FFmpeg and S3 errors of every kind: the video is never lost over a thumbnail
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.requests, outcome.bytes_read = reader.requests, reader.bytes_read
    return outcome


def _facts(container: Any) -> dict[str, Any]:
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio
    rate = (video.average_rate or video.guessed_rate) if video is not None else None
    duration = container.duration / 1_000_000 if container.duration else None
    if duration is None and video is not None and video.duration and video.time_base:
        duration = float(video.duration * video.time_base)
    return {
        "duration_s": round(duration, 3) if duration is not None else None,
        "width": video.codec_context.width if video is not None else None,
        "height": video.codec_context.height if video is not None else None,
        "frame_rate": round(float(rate), 3) if rate else None,
        "video_codec": video.codec_context.name if video is not None else None,
        "has_audio": bool(audio),
        "audio_codec": audio[0].codec_context.name if audio else None,
    }


def _first_keyframe(container: Any) -> Any:
    if not container.streams.video:
        raise ValueError("no video stream")
    frame = None
    for count, decoded in enumerate(container.decode(video=0)):
        frame = decoded
        if decoded.key_frame or count >= MAX_FRAMES_TO_KEYFRAME:
            break
    if frame is None:
        raise ValueError("no frame could be decoded")
    return frame


def _write_poster(av: Any, s3: Any, bucket: str, frame: Any, spec: PosterSpec) -> dict[str, Any]:
    scale = min(1.0, spec.max_side / max(frame.width, frame.height))
    width, height = max(2, round(frame.width * scale) // 2 * 2), max(2, round(frame.height * scale) // 2 * 2)
    codec, pixel_format, content_type = POSTER_FORMATS[spec.image_format]
    out = io.BytesIO()
    with av.open(out, mode="w", format="image2pipe") as image:
        stream = image.add_stream(codec)
        stream.width, stream.height, stream.pix_fmt = width, height, pixel_format
        picture = frame.reformat(width=width, height=height, format=pixel_format)
        for packet in [*stream.encode(picture), *stream.encode(None)]:
            image.mux(packet)
    body = out.getvalue()
    answer = s3.put_object(Bucket=bucket, Key=spec.key, Body=body, ContentType=content_type)
    return {
        "s3_uri": f"s3://{bucket}/{spec.key}",
        "key": spec.key,
        "width": width,
        "height": height,
        "content_type": content_type,
        "size_bytes": len(body),
        "etag": answer.get("ETag"),
    }
