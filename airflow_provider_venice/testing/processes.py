"""Run the emulator and an S3-compatible server as separate processes on free loopback ports.

For the demo, integration and end-to-end tests, and DAG authors' own tests: each service is a child
process bound to 127.0.0.1 and stopped by its process id (``stop()`` or the context manager).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

STARTUP_TIMEOUT_S = 30.0


@dataclass
class ServiceProcess:
    """A started service: its process and the URL it serves."""

    name: str
    process: subprocess.Popen[bytes]
    url: str

    @property
    def pid(self) -> int:
        """The service's process id."""
        return self.process.pid

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the service by its pid: SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout_s)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_emulator_process(
    *options: str, env: dict[str, str] | None = None, command: Sequence[str] | None = None
) -> ServiceProcess:
    """Start ``venice-emulator`` on a free port; ``url`` is its API base URL (``.../api/v1``).

    ``command`` is the emulator to run, for example another environment's ``venice-emulator`` script;
    by default this interpreter's ``python -m airflow_provider_venice.testing``.
    """
    program = list(command or [sys.executable, "-m", "airflow_provider_venice.testing"])
    process = subprocess.Popen(  # noqa: S603 - our own emulator
        [*program, "--host", "127.0.0.1", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert process.stdout is not None
    url = _first_line(process, process.stdout).strip()
    if not url.startswith("http://127.0.0.1:"):
        process.kill()
        raise RuntimeError(f"venice-emulator did not print its URL (got {url!r})")
    return ServiceProcess("venice-emulator", process, url)


def start_s3_server(env: dict[str, str] | None = None) -> ServiceProcess:
    """Start moto's S3-compatible server on a free port; ``url`` is its endpoint URL."""
    port = free_port()
    command: Sequence[str] = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    wait_until_up(process, url)
    return ServiceProcess("s3-server", process, url)


def _first_line(process: subprocess.Popen[bytes], stream: IO[bytes]) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        line = stream.readline()
        if line:
            return line.decode()
        if process.poll() is not None:
            break
    raise RuntimeError("the emulator exited or timed out before printing its URL")


def wait_until_up(process: subprocess.Popen[bytes], url: str) -> None:
    """Wait until an HTTP server started as ``process`` answers at ``url``; raise if it exits first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the S3 server exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - a loopback URL we built
                return
        except urllib.error.HTTPError:
            return  # it answers, so it is up
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the S3 server at {url} did not come up in {STARTUP_TIMEOUT_S:.0f}s")
