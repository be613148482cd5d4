"""``venice-emulator``: serve the emulator until SIGTERM or SIGINT.

The first line on stdout is the API base URL, e.g. ``http://127.0.0.1:8123/api/v1``.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import TYPE_CHECKING, Any

from airflow_provider_venice.testing.server import run_emulator

if TYPE_CHECKING:
    from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="venice-emulator", description="Offline Venice video API emulator.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one (default)")
    parser.add_argument(
        "--job-seconds", type=float, help="emulated seconds every job takes (default: per model)"
    )
    parser.add_argument("--video-bytes", type=int, help="pad every video to this many bytes")
    parser.add_argument("--balance", type=float, help="starting balance in USD (default 100)")
    parser.add_argument("--invalid-key", help="the API key answered with 401 (default bad-key)")
    parser.add_argument(
        "--retrieve-json-on-accept",
        action="store_true",
        help="answer a finished retrieve with JSON COMPLETED when Accept names application/json "
        "(default: Accept is ignored, the mp4 is sent)",
    )
    parser.add_argument(
        "--moov-at-end",
        action="store_true",
        help="write videos as ftyp + mdat + moov (not fast-started) instead of ftyp + moov + mdat",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator server in the foreground; return 0 after a clean stop."""
    args = _parser().parse_args(argv)
    options = {
        "job_seconds": args.job_seconds,
        "video_bytes": args.video_bytes,
        "balance_usd": args.balance,
        "invalid_key": args.invalid_key,
        "retrieve_json_on_accept": args.retrieve_json_on_accept or None,
        "moov_at_end": args.moov_at_end or None,
    }
    config: dict[str, Any] = {name: value for name, value in options.items() if value is not None}
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with run_emulator(args.host, args.port, **config) as server:
        print(server.base_url, flush=True)
        while not stop.wait(1.0):
            pass
    return 0
