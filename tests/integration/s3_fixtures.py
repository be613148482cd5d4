"""Shared pieces of the S3 delivery tests: fakes of the task context, moto S3, the Venice emulator.

Unit tests use moto's in-process ``mock_aws`` and the in-process emulator (``venice`` and ``moto_s3``
fixtures); integration tests use ``moto_server`` and ``venice-emulator`` as child processes on free
loopback ports (``s3_server`` and :func:`start_emulator_process`), stopped by pid even when a test
fails. Test modules import what they use: ``from tests.integration.s3_fixtures import ...``; fixtures
are re-bound in the module (``moto_s3 = s3_fixtures.moto_s3``) so pytest sees them.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import httpx
import pytest
from botocore.awsrequest import AWSResponse

from airflow_provider_venice.client import QueueVideoRequest, VeniceClient, forget_catalogues
from airflow_provider_venice.hooks.venice import register_transports, unregister_transports
from airflow_provider_venice.testing import VeniceEmulator
from airflow_provider_venice.testing.processes import ServiceProcess, start_s3_server

BUCKET = "venice-videos"
API_KEY = "sk-s3-tests-0123456789"
T2V = "wan-2-7-text-to-video"
VPS = "grok-imagine-text-to-video-private"
REQUESTS: dict[str, dict[str, Any]] = {
    T2V: {"model": T2V, "prompt": "a red fox in snow", "duration": "5s", "resolution": "720p"},
    VPS: {"model": VPS, "prompt": "a red fox in snow", "duration": "6s"},
}
RESULT_KEYS = {
    "s3_uri",
    "bucket",
    "key",
    "size_bytes",
    "sha256",
    "content_type",
    "model",
    "queue_id",
    "quote_usd",
}
MB = 1_000_000
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# --- the task context ----------------------------------------------------------------------------


class FakeStore:
    """``context["task_state_store"]``: get/set/delete over a dict (JSON round trip, as a real store)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = json.loads(json.dumps(value))

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


class OutletEventAccessor:
    """One entry of ``context["outlet_events"]``: ``.extra`` for assets, ``.add()`` for aliases."""

    def __init__(self) -> None:
        self.extra: dict[str, Any] = {}
        self.added: list[tuple[Any, dict[str, Any]]] = []

    def add(self, asset: Any, extra: dict[str, Any] | None = None) -> None:
        self.added.append((asset, dict(extra or {})))


def make_context(store: FakeStore | None = None) -> dict[str, Any]:
    """A task context with a task state store and outlet events (no database)."""
    return {
        "task_state_store": store if store is not None else FakeStore(),
        "outlet_events": defaultdict(OutletEventAccessor),
    }


def alias_events(context: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    """Every asset event added through an alias in ``context``."""
    return [added for accessor in context["outlet_events"].values() for added in accessor.added]


# --- the emulator's call log ---------------------------------------------------------------------


def calls_to(calls: list[dict[str, Any]], endpoint: str, method: str | None = None) -> list[dict[str, Any]]:
    """Calls whose path ends with ``endpoint`` (``/video/queue``) or starts with it (``/_media``)."""
    return [
        call
        for call in calls
        if (call["path"].endswith(endpoint) or call["path"].startswith(endpoint))
        and (method is None or call["method"] == method)
    ]


def venice_paths(calls: list[dict[str, Any]]) -> list[str]:
    """``METHOD path`` of each call, media paths shortened to ``/_media``."""
    return [
        f"{call['method']} {'/_media' if call['path'].startswith('/_media') else call['path']}"
        for call in calls
    ]


# --- S3 checks -----------------------------------------------------------------------------------


def object_bytes(s3: Any, bucket: str, key: str) -> bytes:
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def object_sha256(s3: Any, bucket: str, key: str) -> tuple[int, str]:
    """Stream an object and return its size and SHA-256 (without holding it in memory)."""
    digest, size = hashlib.sha256(), 0
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1024 * 1024):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=key)
    return any(item["Key"] == key for item in listing.get("Contents", []))


def uploads_in_progress(s3: Any, bucket: str) -> list[dict[str, Any]]:
    uploads: list[dict[str, Any]] = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return uploads


def assert_nothing_left(s3: Any, bucket: str, key: str) -> None:
    """No object and no multipart upload (aborted or never started) is left behind."""
    assert not object_exists(s3, bucket, key), f"s3://{bucket}/{key} exists after a failed delivery"
    assert uploads_in_progress(s3, bucket) == [], "a multipart upload was left in progress"


def fail_upload_parts(s3_client: Any, from_part: int, code: str = "InternalError") -> list[int]:
    """Make the S3 service answer 500 to ``UploadPart`` from part ``from_part`` on, on this client.

    A botocore ``before-call`` hook answers in the server's place (the request is not sent), as S3 does
    when a part fails on its side; the parts before it are really uploaded, so a multipart upload
    exists on the server and must be aborted. Returns the list of part numbers that were refused.
    """
    refused: list[int] = []

    def answer(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        part = int(params["query_string"]["partNumber"])
        if part < from_part:
            return None
        refused.append(part)
        error = {"Code": code, "Message": "We encountered an internal error. Please try again."}
        return AWSResponse("https://s3.test", 500, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 500},
        }

    s3_client.meta.events.register("before-call.s3.UploadPart", answer)
    return refused


# --- Venice emulator in-process ------------------------------------------------------------------


def venice_connection(base_url: str) -> str:
    """The ``venice_default`` connection (no client retries, so faults surface at once)."""
    return json.dumps(
        {
            "conn_type": "venice",
            "host": base_url,
            "password": API_KEY,
            "extra": {"max_retries": 0, "timeout_s": 30},
        }
    )


def queue_job(emulator: VeniceEmulator | str, model: str = T2V) -> dict[str, Any]:
    """Queue a job at the emulator (in-process, or the base URL of a served one) directly.

    Returns the job as the operators describe jobs.
    """
    if isinstance(emulator, str):
        client = VeniceClient(API_KEY, base_url=emulator)
    else:
        client = VeniceClient(API_KEY, base_url=emulator.base_url, transport=emulator.sync_transport())
    with client:
        quote = client.quote(QueueVideoRequest(**REQUESTS[model]).to_quote_request())
        response = client.queue(QueueVideoRequest(**REQUESTS[model]))
    return {
        "model": response.model or model,
        "queue_id": response.queue_id,
        "download_url": response.download_url,
        "quote_usd": quote,
    }


def job_state(emulator: VeniceEmulator, queue_id: str) -> dict[str, Any]:
    return next(job for job in emulator.jobs() if job["queue_id"] == queue_id)


_SHARED_LOADER: list[botocore.loaders.Loader] = []


def _shared_loader(*args: Any, **kwargs: Any) -> botocore.loaders.Loader:
    if not _SHARED_LOADER:
        _SHARED_LOADER.append(botocore.loaders.create_loader(*args, **kwargs))
    return _SHARED_LOADER[0]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy AWS credentials and an ``aws_default`` connection without an endpoint (for moto).

    Every boto3 session (each S3Hook makes one) shares one botocore data loader, so the service
    models are parsed once per process rather than once per client (a few tenths of a second each).
    """
    monkeypatch.setattr(botocore.session, "create_loader", _shared_loader)
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws"}))


@pytest.fixture
def moto_s3(aws_env: None) -> Iterator[Any]:
    """moto's in-process S3 with the bucket ``BUCKET``; yields a boto3 S3 client."""
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3


@pytest.fixture
def venice(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., VeniceEmulator]]:
    """Make the in-process emulator behind ``venice_default``: ``venice(job_seconds=0, ...)``.

    ``transport`` wraps the emulator's sync transport (to alter its answers) when given.
    """
    registered: list[str] = []

    def make(
        transport: Callable[[httpx.BaseTransport], httpx.BaseTransport] | None = None, **config: Any
    ) -> VeniceEmulator:
        config.setdefault("job_seconds", 0)
        emulator = VeniceEmulator(**config)
        sync = emulator.sync_transport()
        register_transports(
            emulator.base_url, transport(sync) if transport else sync, emulator.async_transport()
        )
        registered.append(emulator.base_url)
        monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", venice_connection(emulator.base_url))
        return emulator

    forget_catalogues()
    yield make
    for base_url in registered:
        unregister_transports(base_url)
    forget_catalogues()


class AlteredVideo(httpx.BaseTransport):
    """Passes requests to the emulator and rewrites the mp4 answers: body and/or Content-Length."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        body: Callable[[bytes], bytes] = lambda body: body,
        content_length: Callable[[int], int] = lambda length: length,
    ) -> None:
        self._inner = inner
        self._body = body
        self._length = content_length

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if response.headers.get("content-type") != "video/mp4":
            return response
        body = self._body(response.read())
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        headers["content-length"] = str(self._length(len(body)))
        return httpx.Response(response.status_code, headers=headers, content=body, request=request)


# --- processes -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_server() -> Iterator[ServiceProcess]:
    """moto's S3-compatible server as a child process on a free loopback port; stopped by pid."""
    server = start_s3_server(env=None)
    try:
        yield server
    finally:
        server.stop()


def server_s3_client(endpoint_url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS_ENV["AWS_DEFAULT_REGION"],
    )


def aws_connection(endpoint_url: str) -> str:
    return json.dumps({"conn_type": "aws", "extra": {"endpoint_url": endpoint_url}})
