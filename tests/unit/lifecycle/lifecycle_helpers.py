"""Shared pieces of the lifecycle tests: a recording logger, a counting task state store, mp4 bytes.

Test modules import them as ``from tests.unit.lifecycle.lifecycle_helpers import ...`` (the tests run
with ``python -m pytest`` from the repository root, as the integration tests that import
``tests.integration.s3_fixtures`` do).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable
from typing import Any

from airflow_provider_venice.lifecycle.record import RECORD_KEY, JobRecord
from airflow_provider_venice.testing import Mp4File, VideoSpec
from tests.integration.s3_fixtures import FakeStore


class RecordingLog:
    """A logger that keeps every call (level and %-formatted message), like a task's ``self.log``."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def _record(self, level: str, message: Any, *args: Any, **_: Any) -> None:
        self.lines.append((level, str(message) % args if args else str(message)))

    def debug(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._record("debug", message, *args, **kwargs)

    def info(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._record("info", message, *args, **kwargs)

    def warning(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._record("warning", message, *args, **kwargs)

    def error(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._record("error", message, *args, **kwargs)

    def exception(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._record("exception", message, *args, **kwargs)

    def messages(self, level: str | None = None) -> list[str]:
        return [text for kind, text in self.lines if level is None or kind == level]

    def text(self, level: str | None = None) -> str:
        return "\n".join(self.messages(level))


class StoreUnavailableError(ConnectionError):
    """What a task state store whose API server is unreachable raises."""


class CountingStore(FakeStore):
    """A task state store that counts its calls, and can refuse chosen writes.

    ``fail_on_set``: the numbers (from 1) of the ``set`` calls that raise; ``before_set`` is called
    with each value before it is stored (to look at the world at that moment).
    """

    def __init__(
        self,
        fail_on_set: Iterable[int] = (),
        before_set: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__()
        self.gets = 0
        self.set_calls = 0
        self.deletes = 0
        self.written: list[dict[str, Any]] = []
        self.fail_on_set = set(fail_on_set)
        self.before_set = before_set

    def get(self, key: str, default: Any = None) -> Any:
        self.gets += 1
        return super().get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.set_calls += 1
        if self.before_set is not None:
            self.before_set(json.loads(json.dumps(value)))
        if self.set_calls in self.fail_on_set:
            raise StoreUnavailableError("the API server did not answer")
        super().set(key, value)
        self.written.append(self.data[key])

    def delete(self, key: str) -> None:
        self.deletes += 1
        super().delete(key)

    @property
    def record(self) -> dict[str, Any] | None:
        value = self.data.get(RECORD_KEY)
        return value if isinstance(value, dict) else None


def new_record(store: FakeStore | None = None, log: RecordingLog | None = None) -> JobRecord:
    """The job record of one try, over ``store`` (None: a context without a task state store)."""
    context: dict[str, Any] = {} if store is None else {"task_state_store": store}
    return JobRecord(context, log if log is not None else RecordingLog())


def mp4_bytes(pad_to: int | None = None, *, moov_at_end: bool = False, seconds: str = "5s") -> bytes:
    """A real mp4 made by the emulator (16:9), whole in memory: only for small files."""
    video = Mp4File(VideoSpec.for_request(seconds, "16:9"), pad_to, moov_at_end=moov_at_end)
    return b"".join(video.chunks())


def box(kind: bytes, payload: bytes = b"") -> bytes:
    """One MP4 box with a 32-bit size."""
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def large_box(kind: bytes, payload: bytes = b"") -> bytes:
    """One MP4 box with a 64-bit ``largesize`` (size field 1)."""
    return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload


FTYP = box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41")
MOOV = box(b"moov", box(b"mvhd", bytes(100)))
MDAT = box(b"mdat", bytes(range(256)) * 2)
SMALL_MP4 = FTYP + MOOV + MDAT
