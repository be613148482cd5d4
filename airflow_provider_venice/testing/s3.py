"""A local S3-compatible server for testing the operators that deliver videos to S3.

moto's S3 server (the ``testing`` extra: ``pip install 'airflow-provider-venice[testing]'``) runs as
a child process on a free 127.0.0.1 port and is stopped by its process id. Point an ``aws``
connection's ``endpoint_url`` at :attr:`S3Server.endpoint_url`. Nothing here imports moto or boto3
until a server is started or a client is made, so the pytest plugin stays cheap to load.
"""

from __future__ import annotations

import importlib.util
import urllib.request
from typing import TYPE_CHECKING, Any

from airflow_provider_venice.testing.processes import ServiceProcess, start_s3_server

if TYPE_CHECKING:
    from collections.abc import Mapping

TESTING_EXTRA = "airflow-provider-venice[testing]"
# module -> the distribution that provides it; moto's server needs flask and flask-cors
_SERVER_MODULES = {"moto": "moto", "flask": "flask", "flask_cors": "flask-cors", "boto3": "boto3"}


class S3ServerUnavailableError(RuntimeError):
    """moto's S3 server is not installed, or did not start."""


def missing_s3_server_packages() -> list[str]:
    """Return the distributions moto's S3 server needs that are not installed (none: an empty list)."""
    return [dist for module, dist in _SERVER_MODULES.items() if importlib.util.find_spec(module) is None]


def require_s3_server() -> None:
    """Raise :class:`S3ServerUnavailableError`, naming the extra to install, when moto's server is missing."""
    missing = missing_s3_server_packages()
    if missing:
        raise S3ServerUnavailableError(
            f"a local S3 server needs moto's S3 server, and {', '.join(missing)} is not installed: "
            f"pip install '{TESTING_EXTRA}'"
        )


class S3Server:
    """moto's S3-compatible server in a child process: ``endpoint_url``, ``client()``, ``create_bucket()``.

    Any credentials work against it; :attr:`aws_access_key_id`, :attr:`aws_secret_access_key` and
    :attr:`region_name` are what :meth:`client` uses.
    """

    aws_access_key_id = "testing"
    aws_secret_access_key = "testing"  # noqa: S105 - a dummy key for a local server
    region_name = "us-east-1"

    def __init__(self, process: ServiceProcess) -> None:
        self.process = process
        self.endpoint_url = process.url
        self._client: Any = None

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def client(self) -> Any:
        """Return a boto3 S3 client for this server (made once, on first use)."""
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self.aws_access_key_id,
                aws_secret_access_key=self.aws_secret_access_key,
                region_name=self.region_name,
            )
        return self._client

    def create_bucket(self, name: str) -> str:
        """Create the bucket ``name`` and return its name."""
        self.client().create_bucket(Bucket=name)
        return name

    def reset(self) -> None:
        """Forget every bucket and object (moto's ``/moto-api/reset``)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=30):  # noqa: S310 - a loopback URL we built
            pass

    def stop(self) -> None:
        """Stop the server by its process id."""
        self.process.stop()

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_local_s3(env: Mapping[str, str] | None = None) -> S3Server:
    """Start moto's S3 server on a free 127.0.0.1 port (use as a context manager, or call ``stop()``).

    :raises S3ServerUnavailableError: moto's server is not installed or did not start; the message
        names the extra to install.
    """
    require_s3_server()
    try:
        process = start_s3_server(env=dict(env) if env is not None else None)
    except RuntimeError as exc:
        raise S3ServerUnavailableError(
            f"moto's S3 server did not start ({exc}); is '{TESTING_EXTRA}' installed?"
        ) from exc
    return S3Server(process)
