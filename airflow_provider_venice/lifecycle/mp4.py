"""Check the MP4 structure of a video while it streams past, without keeping it.

An MP4 file is a sequence of top-level boxes, each starting with its size and a four-letter type. The
walker reads only those headers, jumping over each box's payload (the ``mdat`` of the frames is most of
the file). It refuses a body that does not start with ``ftyp``, lacks ``moov`` or ``mdat``, or whose box
sizes do not add up exactly to the bytes received: a body cut short shows up as a last box that
promises more bytes than arrived, even when no ``Content-Length`` was sent.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

REQUIRED_BOXES = ("ftyp", "moov", "mdat")


class Mp4StructureError(ValueError):
    """The bytes received are not a whole MP4 file."""


@dataclass
class Mp4Walker:
    """Follows the top-level boxes of an MP4 file fed to it chunk by chunk.

    ``boxes`` lists ``(type, offset, size)`` of each top-level box seen (size 0: it runs to the end).
    """

    received: int = 0
    boxes: list[tuple[str, int, int]] = field(default_factory=list)
    _next_box: int = 0
    _header: bytes = b""
    _to_end: bool = False

    def feed(self, chunk: bytes) -> None:
        """Take the next ``chunk`` of the file."""
        start, end = self.received, self.received + len(chunk)
        while not self._to_end and self._next_box + len(self._header) < end:
            needed = self._header_size() - len(self._header)
            taken_from = self._next_box + len(self._header) - start
            self._header += chunk[taken_from : taken_from + needed]
            if len(self._header) == 8 and self._header_size() == 16:
                continue  # a 64-bit size follows the type
            if len(self._header) < self._header_size():
                break
            self._close_header()
        self.received = end

    def finish(self) -> None:
        """Check that the file ended exactly where its last box ends and holds the required boxes."""
        if self._header:
            raise Mp4StructureError(f"the body ends inside a box header, after {self.received} bytes")
        if not self._to_end and self._next_box != self.received:
            kind, offset, size = self.boxes[-1] if self.boxes else ("?", 0, 0)
            raise Mp4StructureError(
                f"body cut short: the {kind!r} box at byte {offset} declares {size} bytes, but the body "
                f"ends after {self.received} bytes"
            )
        kinds = {kind for kind, _, _ in self.boxes}
        missing = [kind for kind in REQUIRED_BOXES if kind not in kinds]
        if missing:
            raise Mp4StructureError(f"not a whole MP4 file: no {', '.join(missing)} box")

    def _header_size(self) -> int:
        if len(self._header) >= 4 and struct.unpack(">I", self._header[:4])[0] == 1:
            return 16
        return 8

    def _close_header(self) -> None:
        size, raw_kind = struct.unpack(">I4s", self._header[:8])
        kind = raw_kind.decode("latin-1")
        offset = self._next_box
        if not self.boxes and kind != "ftyp":
            raise Mp4StructureError(f"not an MP4 file: it starts with {self._header[:8]!r}, not an ftyp box")
        if not all(32 <= byte < 127 for byte in raw_kind):
            raise Mp4StructureError(f"not an MP4 file: unreadable box type {raw_kind!r} at byte {offset}")
        if size == 1:
            (size,) = struct.unpack(">Q", self._header[8:16])
        if size == 0:
            self._to_end = True
        elif size < len(self._header):
            raise Mp4StructureError(f"the {kind!r} box at byte {offset} declares an impossible size {size}")
        self.boxes.append((kind, offset, size))
        self._next_box += size
        self._header = b""
