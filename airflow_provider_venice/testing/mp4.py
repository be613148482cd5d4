"""Small, real MP4 files written in pure Python, and a reader for their header boxes.

The video track is H.264 Constrained Baseline at one frame per second. Every frame is an IDR
picture made of I_PCM macroblocks (raw samples: no prediction, no transform, no entropy coding),
so any player can decode it. The picture is a progress bar over a colour that changes each
second. There is no audio track. A file can be padded to any larger size with unreferenced bytes
at the end of its ``mdat`` box, which keeps it valid; the padding is produced in chunks and never
held in memory.

Two layouts: ``ftyp`` + ``moov`` + ``mdat`` ("fast-started", the default) and, with
``moov_at_end``, ``ftyp`` + ``mdat`` + ``moov`` as written by encoders that do not move the index
to the front. Either way the top-level box sizes add up exactly to the file size.
"""

from __future__ import annotations

import functools
import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

FPS = 1
TIMESCALE = 1000
AUTO_SECONDS = 5
_MIN_SHORT_SIDE = 80
_MAX_BOX_SIZE = 0xFFFFFFFF
_PALETTE = ((110, 160), (160, 100), (90, 90), (170, 170), (128, 200), (200, 128))


@dataclass(frozen=True)
class VideoSpec:
    """What a generated video looks like: whole seconds and the displayed frame size."""

    seconds: int
    width: int
    height: int

    @classmethod
    def for_request(cls, duration: str, aspect_ratio: str | None) -> VideoSpec:
        """Spec for an API ``duration`` (``"5s"`` or ``"Auto"``) and ``aspect_ratio`` (``"16:9"``)."""
        width, height = frame_size(aspect_ratio)
        return cls(seconds_for(duration), width, height)


@dataclass(frozen=True)
class Mp4Info:
    """What :func:`probe_mp4` reads from the header boxes."""

    duration_s: float
    width: int
    height: int
    major_brand: str


def seconds_for(duration: str) -> int:
    """Whole seconds for an API duration: ``"5s"`` -> 5, ``"Auto"`` -> 5."""
    if duration.lower() == "auto":
        return AUTO_SECONDS
    match = re.fullmatch(r"(\d+)s", duration)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"not a duration: {duration!r}")
    return int(match.group(1))


def frame_size(aspect_ratio: str | None) -> tuple[int, int]:
    """Even width and height in exactly the ratio ``"W:H"``, short side near 80 px (16:9 -> 160x90)."""
    match = re.fullmatch(r"(\d+):(\d+)", aspect_ratio or "")
    across, down = (int(match.group(1)), int(match.group(2))) if match else (16, 9)
    if across < 1 or down < 1:
        across, down = 16, 9
    scale = -(-_MIN_SHORT_SIDE // min(across, down))
    while (across * scale) % 2 or (down * scale) % 2:
        scale += 1
    return across * scale, down * scale


class Mp4File:
    """One MP4 file: the encoded video plus optional padding, streamed with :meth:`chunks`.

    ``pad_to`` pads the file to that many bytes (inside ``mdat``; ignored below the natural size).
    ``moov_at_end`` writes ``ftyp`` + ``mdat`` + ``moov`` instead of ``ftyp`` + ``moov`` + ``mdat``.
    """

    def __init__(self, spec: VideoSpec, pad_to: int | None = None, *, moov_at_end: bool = False) -> None:
        self.spec = spec
        self.moov_at_end = moov_at_end
        self._frames = _encode_frames(spec.width, spec.height, spec.seconds)
        self._head, self._tail, self.size = _layout(spec, self._frames, pad_to, moov_at_end)

    def chunks(self, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        """Yield the whole file: boxes before the frames, frames, zero padding, boxes after.

        Padding comes in zero pieces of at most ``chunk_size`` bytes; nothing large is held in memory.
        """
        yield self._head
        yield from self._frames
        remaining = self.size - len(self._head) - sum(len(frame) for frame in self._frames) - len(self._tail)
        zeros = bytes(chunk_size)
        while remaining > 0:
            yield zeros if remaining >= chunk_size else zeros[:remaining]
            remaining -= chunk_size
        if self._tail:
            yield self._tail


def probe_mp4(data: bytes) -> Mp4Info:
    """Read duration and frame size from the ``ftyp``, ``mvhd`` and ``tkhd`` boxes of MP4 bytes.

    ``data`` is the file from its first byte through at least the end of the ``moov`` box. For a
    fast-started file (``moov`` before ``mdat``) the first few kilobytes are enough; when ``moov``
    comes after ``mdat`` that means the whole file (or at least through ``moov``). Raises
    ``ValueError`` when the bytes are not an MP4 file or end before the ``moov`` box does; the
    message then says from which offset the boxes continue.
    """
    boxes: dict[str, tuple[int, int]] = {}
    for kind, (payload_start, box_end) in _boxes(data, 0, len(data), clamp=False):
        boxes.setdefault(kind, (payload_start, box_end))
        if kind == "moov" and box_end > len(data):
            raise ValueError(f"the moov box ends at offset {box_end}, past the {len(data)} bytes given")
    if "ftyp" not in boxes:
        raise ValueError("not an MP4 file with ftyp and moov boxes")
    if "moov" not in boxes:
        last_end = max(box_end for _, box_end in boxes.values())
        raise ValueError(
            f"no moov box in the {len(data)} bytes given: the top-level boxes continue at offset "
            f"{last_end} (a file that is not fast-started keeps moov at the end; pass bytes through it)"
        )
    ftyp_start, _ = boxes["ftyp"]
    major_brand = data[ftyp_start : ftyp_start + 4].decode("latin-1")
    moov = dict(_boxes(data, *boxes["moov"]))
    mvhd_start, _ = moov["mvhd"]
    timescale, duration = _times(data, mvhd_start)
    trak = dict(_boxes(data, *moov["trak"]))
    _, tkhd_end = trak["tkhd"]
    width, height = struct.unpack(">II", data[tkhd_end - 8 : tkhd_end])
    return Mp4Info(duration / timescale, width >> 16, height >> 16, major_brand)


def _boxes(data: bytes, start: int, end: int, *, clamp: bool = True) -> Iterator[tuple[str, tuple[int, int]]]:
    """Yield ``(type, (payload_start, payload_end))`` for the boxes in ``data[start:end]``.

    With ``clamp`` (the default) a box running past ``end`` ends at ``end``; without, the second
    value is where the box really ends, possibly past the bytes given.
    """
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        header = 8
        if size == 1:
            if start + 16 > end:
                return
            (size,) = struct.unpack(">Q", data[start + 8 : start + 16])
            header = 16
        elif size == 0:
            size = end - start
        if size < header:
            raise ValueError("corrupt MP4 box size")
        yield kind.decode("latin-1"), (start + header, min(start + size, end) if clamp else start + size)
        start += size


def _times(data: bytes, mvhd_start: int) -> tuple[int, int]:
    version = data[mvhd_start]
    if version == 1:
        timescale, duration = struct.unpack(">IQ", data[mvhd_start + 20 : mvhd_start + 32])
    else:
        timescale, duration = struct.unpack(">II", data[mvhd_start + 12 : mvhd_start + 20])
    return int(timescale), int(duration)


# --- H.264 bitstream -------------------------------------------------------------------------


class _Bits:
    """An MSB-first bit writer for the few header fields of H.264 parameter sets and slices."""

    def __init__(self) -> None:
        self._bits: list[str] = []

    def u(self, width: int, value: int) -> None:
        self._bits.append(format(value, f"0{width}b") if width else "")

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(code.bit_length() - 1, 0)
        self.u(code.bit_length(), code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align(self, stop_bit: bool = False) -> bytes:
        if stop_bit:
            self.u(1, 1)
        bits = "".join(self._bits)
        bits += "0" * (-len(bits) % 8)
        return int(bits, 2).to_bytes(len(bits) // 8, "big")


def _nal(header: int, rbsp: bytes) -> bytes:
    """Wrap ``rbsp`` in a NAL unit, inserting emulation prevention bytes."""
    return bytes([header]) + re.sub(rb"\x00\x00(?=[\x00-\x03])", b"\x00\x00\x03", rbsp)


def _sps(width: int, height: int) -> bytes:
    mb_width, mb_height = -(-width // 16), -(-height // 16)
    bits = _Bits()
    for value in (66, 0xC0, 30):  # profile Baseline, constraint_set0+1 (Constrained Baseline), level 3.0
        bits.u(8, value)
    for value in (0, 0, 2, 1):  # sps id, log2_max_frame_num - 4, pic_order_cnt_type, max_num_ref_frames
        bits.ue(value)
    bits.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    bits.ue(mb_width - 1)
    bits.ue(mb_height - 1)
    bits.u(1, 1)  # frame_mbs_only_flag
    bits.u(1, 1)  # direct_8x8_inference_flag
    crop_right, crop_bottom = (mb_width * 16 - width) // 2, (mb_height * 16 - height) // 2
    bits.u(1, int(bool(crop_right or crop_bottom)))
    if crop_right or crop_bottom:
        for value in (0, crop_right, 0, crop_bottom):
            bits.ue(value)
    bits.u(1, 0)  # vui_parameters_present_flag
    return _nal(0x67, bits.align(stop_bit=True))


def _pps() -> bytes:
    bits = _Bits()
    bits.ue(0)  # pps id
    bits.ue(0)  # sps id
    bits.u(2, 0)  # CAVLC, no bottom_field_pic_order_in_frame
    for value in (0, 0, 0):  # slice groups - 1, num_ref_idx_l0/l1 default - 1
        bits.ue(value)
    bits.u(3, 0)  # no weighted prediction
    for value in (0, 0, 0):  # pic_init_qp - 26, pic_init_qs - 26, chroma_qp_index_offset
        bits.se(value)
    bits.u(3, 0b100)  # deblocking control present, no constrained intra, no redundant_pic_cnt
    return _nal(0x68, bits.align(stop_bit=True))


def _idr_slice(index: int, macroblocks: list[bytes]) -> bytes:
    bits = _Bits()
    for value in (0, 7, 0):  # first_mb_in_slice, slice_type I (all slices), pps id
        bits.ue(value)
    bits.u(4, 0)  # frame_num
    bits.ue(index & 0xFFFF)  # idr_pic_id differs between consecutive IDR pictures
    bits.u(2, 0)  # no_output_of_prior_pics_flag, long_term_reference_flag
    bits.se(0)  # slice_qp_delta
    bits.ue(1)  # disable_deblocking_filter_idc
    bits.ue(25)  # mb_type I_PCM for the first macroblock, then pcm alignment
    later_mb_type = b"\x0d\x00"  # ue(25) = 000011010 plus alignment, at a byte boundary
    body = later_mb_type.join(macroblocks)
    return _nal(0x65, bits.align() + body + b"\x80")


def _macroblocks(width: int, height: int, index: int, count: int) -> list[bytes]:
    mb_width, mb_height = -(-width // 16), -(-height // 16)
    progress = width * (index + 1) // count
    cb, cr = _PALETTE[index % len(_PALETTE)]
    chroma = bytes([cb]) * 64 + bytes([cr]) * 64
    columns = [
        bytes(200 if x < progress else 64 for x in range(mb_x * 16, mb_x * 16 + 16)) * 16 + chroma
        for mb_x in range(mb_width)
    ]
    return columns * mb_height


@functools.lru_cache(maxsize=64)
def _encode_frames(width: int, height: int, seconds: int) -> tuple[bytes, ...]:
    count = seconds * FPS
    frames = []
    for index in range(count):
        nal = _idr_slice(index, _macroblocks(width, height, index, count))
        frames.append(struct.pack(">I", len(nal)) + nal)
    return tuple(frames)


# --- MP4 boxes -------------------------------------------------------------------------------

_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full_box(kind: bytes, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", flags), *parts)


def _layout(
    spec: VideoSpec, frames: tuple[bytes, ...], pad_to: int | None, moov_at_end: bool
) -> tuple[bytes, bytes, int]:
    """Return the bytes before the frames, the bytes after the padding, and the file size.

    ``mdat`` holds the frames and the padding, sized so the whole file is ``pad_to`` bytes (or
    its natural size); its header grows to 16 bytes when it is over 4 GiB.
    """
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")
    payload = sum(len(frame) for frame in frames)
    moov_size = len(_moov(spec, frames, 0))  # stco holds one 32-bit offset: the size is fixed
    size = max(len(ftyp) + moov_size + 8 + payload, pad_to or 0)
    mdat_size = size - len(ftyp) - moov_size
    if mdat_size > _MAX_BOX_SIZE:
        mdat_header = struct.pack(">I4sQ", 1, b"mdat", mdat_size)
    else:
        mdat_header = struct.pack(">I4s", mdat_size, b"mdat")
    if moov_at_end:
        moov = _moov(spec, frames, len(ftyp) + len(mdat_header))
        return ftyp + mdat_header, moov, size
    moov = _moov(spec, frames, len(ftyp) + moov_size + len(mdat_header))
    return ftyp + moov + mdat_header, b"", size


def _moov(spec: VideoSpec, frames: tuple[bytes, ...], first_offset: int) -> bytes:
    duration = spec.seconds * TIMESCALE
    mvhd = _full_box(
        b"mvhd", 0, struct.pack(">4I", 0, 0, TIMESCALE, duration), struct.pack(">IH", 0x10000, 0x100),
        bytes(10), _MATRIX, bytes(24), struct.pack(">I", 2),
    )  # fmt: skip
    tkhd = _full_box(
        b"tkhd", 3, struct.pack(">5I", 0, 0, 1, 0, duration), bytes(16), _MATRIX,
        struct.pack(">II", spec.width << 16, spec.height << 16),
    )  # fmt: skip
    mdhd = _full_box(b"mdhd", 0, struct.pack(">4IHH", 0, 0, TIMESCALE, duration, 0x55C4, 0))
    hdlr = _full_box(b"hdlr", 0, bytes(4), b"vide", bytes(12), b"VideoHandler\x00")
    dinf = _box(b"dinf", _full_box(b"dref", 0, struct.pack(">I", 1), _full_box(b"url ", 1)))
    minf = _box(b"minf", _full_box(b"vmhd", 1, bytes(8)), dinf, _stbl(spec, frames, first_offset))
    return _box(b"moov", mvhd, _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf)))


def _stbl(spec: VideoSpec, frames: tuple[bytes, ...], first_offset: int) -> bytes:
    sps, pps = _sps(spec.width, spec.height), _pps()
    avcc = _box(
        b"avcC", bytes([1, 66, 0xC0, 30, 0xFF, 0xE1]), struct.pack(">H", len(sps)), sps,
        b"\x01", struct.pack(">H", len(pps)), pps,
    )  # fmt: skip
    name = b"venice-emulator"
    avc1 = _box(
        b"avc1", bytes(6), struct.pack(">H", 1), bytes(16), struct.pack(">HH", spec.width, spec.height),
        struct.pack(">III", 0x480000, 0x480000, 0), struct.pack(">H", 1),
        bytes([len(name)]) + name.ljust(31, b"\x00"), struct.pack(">Hh", 0x18, -1), avcc,
    )  # fmt: skip
    count = len(frames)
    return _box(
        b"stbl",
        _full_box(b"stsd", 0, struct.pack(">I", 1), avc1),
        _full_box(b"stts", 0, struct.pack(">3I", 1, count, TIMESCALE // FPS)),
        _full_box(b"stsc", 0, struct.pack(">4I", 1, 1, count, 1)),
        _full_box(b"stsz", 0, struct.pack(">II", 0, count), *(struct.pack(">I", len(f)) for f in frames)),
        _full_box(b"stco", 0, struct.pack(">II", 1, first_offset)),
    )
