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
import struct
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import httpx
import pytest
from airflow.sdk import AssetAlias
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
# What the probe of a delivered video adds to a delivering task's result and its asset event's extra
# (None each when no probe was made: no PyAV, or a video FFmpeg cannot decode).
PROBE_KEYS = ("duration_s", "width", "height", "frame_rate", "video_codec", "has_audio")
# The result of a delivering task (VeniceVideoToS3Operator, VeniceGenerateVideoOperator).
RESULT_KEYS = {
    "s3_uri",
    "bucket",
    "key",
    "size_bytes",
    "sha256",
    "checksum_crc32",
    "content_type",
    "manifest_uri",
    "poster_uri",
    *PROBE_KEYS,
    "model",
    "queue_id",
    "quote_usd",
}
# The extra of the asset event a delivery adds through the ``venice-videos`` alias.
ASSET_EXTRA_KEYS = {
    "s3_uri",
    "size_bytes",
    "sha256",
    "manifest_uri",
    "poster_uri",
    *PROBE_KEYS,
    "model",
    "queue_id",
    "quote_usd",
}
RECORD_KEY = "venice_job"  # where the job record lives in the task state store
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


class ProcessKilled(BaseException):
    """The worker process died here (SIGKILL, OOM kill): nothing after this point runs, no clean-up.

    A ``BaseException``, so the operators' ``except Exception`` clean-up does not run, as in a real kill.
    """


class FailingStore(FakeStore):
    """A task state store that refuses the first ``times`` writes of the job record reaching ``stage``.

    ``error`` is what the refused write raises (default: a ``ConnectionError``, as when the API server
    is unreachable); :class:`ProcessKilled` stands for the worker dying at that write. ``refused``
    lists the record values that were refused.
    """

    def __init__(self, stage: str, error: BaseException | None = None, times: int = 1) -> None:
        super().__init__()
        self.stage = stage
        self.error = error if error is not None else ConnectionError("task state store unavailable")
        self.times = times
        self.refused: list[Any] = []

    def set(self, key: str, value: Any) -> None:
        if (
            key == RECORD_KEY
            and isinstance(value, dict)
            and value.get("stage") == self.stage
            and len(self.refused) < self.times
        ):
            self.refused.append(value)
            raise self.error
        super().set(key, value)


class FakeTaskInstance:
    """The part of ``context["ti"]`` the operators read: identity, try number, first reschedule."""

    def __init__(self, task_id: str = "generate", map_index: int = -1, try_number: int = 1) -> None:
        self.dag_id = "venice_unit"
        self.run_id = "manual__2025-01-01T00:00:00+00:00"
        self.task_id = task_id
        self.map_index = map_index
        self.try_number = try_number

    def get_first_reschedule_date(self, context: Any) -> None:
        return None  # the sensor's timeout then counts from now


class OutletEventAccessor:
    """One entry of ``context["outlet_events"]``: ``.extra`` for assets, ``.add()`` for aliases."""

    def __init__(self) -> None:
        self.extra: dict[str, Any] = {}
        self.added: list[tuple[Any, dict[str, Any]]] = []

    def add(self, asset: Any, extra: dict[str, Any] | None = None) -> None:
        self.added.append((asset, dict(extra or {})))


def outlet_key(outlet: Any) -> tuple[str, ...]:
    """What names an asset or an alias: Airflow keys outlet events by it (3.1's Asset is not hashable)."""
    if isinstance(outlet, AssetAlias):
        return ("alias", outlet.name)
    return ("asset", outlet.name, outlet.uri)


class OutletEvents(Mapping[Any, OutletEventAccessor]):
    """``context["outlet_events"]``: an accessor per asset or alias, made on first use, as Airflow does."""

    def __init__(self) -> None:
        self._accessors: dict[tuple[str, ...], tuple[Any, OutletEventAccessor]] = {}

    def __getitem__(self, outlet: Any) -> OutletEventAccessor:
        return self._accessors.setdefault(outlet_key(outlet), (outlet, OutletEventAccessor()))[1]

    def __contains__(self, outlet: object) -> bool:
        return outlet_key(outlet) in self._accessors

    def __iter__(self) -> Iterator[Any]:
        return (outlet for outlet, _ in self._accessors.values())

    def __len__(self) -> int:
        return len(self._accessors)


def make_context(store: FakeStore | None = None, ti: FakeTaskInstance | None = None) -> dict[str, Any]:
    """A task context with a task state store and outlet events (no database); ``ti`` when given."""
    context: dict[str, Any] = {
        "task_state_store": store if store is not None else FakeStore(),
        "outlet_events": OutletEvents(),
    }
    if ti is not None:
        context["ti"] = ti
    return context


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


def video_downloads(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls that fetched a video to deliver it: a GET on a ``download_url``, or a ``/video/retrieve``
    whose ``Accept`` header does not name JSON (a status poll names it; a download asks for the mp4).
    """
    from airflow_provider_venice.testing.api import names_json

    return [
        call
        for call in calls
        if (call["method"] == "GET" and call["path"].startswith("/_media"))
        or (call["path"].endswith("/video/retrieve") and not names_json(call.get("accept") or ""))
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


def read_manifest(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    """The JSON manifest written beside the video at ``key`` (``<key>.json``)."""
    manifest: dict[str, Any] = json.loads(object_bytes(s3, bucket, key + ".json"))
    return manifest


POSTER_MAGIC = {"image/jpeg": b"\xff\xd8\xff", "image/webp": b"RIFF"}


def check_poster_and_probe(
    s3: Any,
    result: dict[str, Any],
    *,
    bucket: str = BUCKET,
    probed: bool = True,
    poster: bool = True,
    max_side: int = 640,
) -> dict[str, Any]:
    """The delivery's probe fields and poster agree with its manifest; the poster is an image in S3.

    With ``probed=False`` the manifest says that no probe was made (and why), and the result's probe
    fields and ``poster_uri`` are None. With ``poster=False`` the probe was made but no poster was
    written (turned off, or no frame could be decoded). Returns the manifest's ``probe``.
    """
    manifest: dict[str, Any] = json.loads(object_bytes(s3, bucket, result["key"] + ".json"))
    probe: dict[str, Any] = manifest["probe"]
    if not probed:
        assert probe["made"] is False, probe
        assert isinstance(probe["error"], str), probe
        assert probe["error"], probe
        assert {name: result[name] for name in PROBE_KEYS} == dict.fromkeys(PROBE_KEYS)
        assert result["poster_uri"] is None
        assert manifest["poster"] is None
        return probe
    assert probe["made"] is True, probe
    assert {name: result[name] for name in PROBE_KEYS} == {name: probe[name] for name in PROBE_KEYS}
    assert result["width"] > 0
    assert result["height"] > 0
    assert result["duration_s"] > 0
    assert result["frame_rate"] > 0
    assert isinstance(result["video_codec"], str)
    assert result["video_codec"]
    assert isinstance(result["has_audio"], bool)
    facts = manifest["poster"]
    if not poster:
        assert facts is None
        assert result["poster_uri"] is None
        return probe
    assert facts is not None
    assert result["poster_uri"] == facts["s3_uri"]
    check_poster_object(s3, facts, bucket=bucket, max_side=max_side)
    return probe


def check_poster_object(
    s3: Any, facts: dict[str, Any], *, bucket: str = BUCKET, max_side: int = 640
) -> bytes:
    """The poster a manifest's ``poster`` section describes is in S3 as described: returns its bytes.

    Its URI names its key; its size, content type and dimensions are the manifest's; it is an image.
    """
    assert facts["s3_uri"] == f"s3://{bucket}/{facts['key']}", facts
    image = object_bytes(s3, bucket, facts["key"])
    assert len(image) == facts["size_bytes"] > 0
    assert s3.head_object(Bucket=bucket, Key=facts["key"])["ContentType"] == facts["content_type"]
    assert image.startswith(POSTER_MAGIC[facts["content_type"]])
    assert 0 < max(facts["width"], facts["height"]) <= max_side
    return image


def another_writer_races(
    s3_client: Any, other: Any, bucket: str, key: str, *, after: bool = False, body: bytes = b"theirs"
) -> list[str]:
    """Let another writer put ``body`` at ``key`` while this client writes its video there, once.

    ``other`` is a second S3 client (another task, another DAG run). With ``after=False`` the other
    object is written just before this client's ``PutObject``/``CompleteMultipartUpload`` of ``key`` is
    sent (the other writer creates the key while the upload runs); with ``after=True`` just after it
    committed (the other writer overwrites it before it is verified). Returns the operations raced.
    """
    raced: list[str] = []

    def mark(params: dict[str, Any], context: dict[str, Any], model: Any, **_: Any) -> None:
        if params.get("Bucket") == bucket and params.get("Key") == key and not raced:
            context["race"] = True
            if not after:
                raced.append(model.name)
                other.put_object(Bucket=bucket, Key=key, Body=body)

    def overwrite(context: dict[str, Any], model: Any, **_: Any) -> None:
        if context.get("race") and not raced:
            raced.append(model.name)
            other.put_object(Bucket=bucket, Key=key, Body=body)

    for operation in ("PutObject", "CompleteMultipartUpload"):
        s3_client.meta.events.register(f"before-parameter-build.s3.{operation}", mark)
        if after:
            s3_client.meta.events.register(f"after-call.s3.{operation}", overwrite)
    return raced


def kill_during_upload(s3_client: Any, at_part: int = 2) -> list[str]:
    """Kill the try (raise :class:`ProcessKilled`) when this client sends part ``at_part`` of an upload.

    The parts before it are uploaded, so the multipart upload exists on the server; a killed process
    aborts nothing, so its ``AbortMultipartUpload`` is refused too and the upload is left behind, as a
    SIGKILL leaves it. Returns the ids of the uploads left behind.
    """
    left: list[str] = []

    def part(params: dict[str, Any], **_: Any) -> None:
        if int(params["PartNumber"]) >= at_part:
            if params["UploadId"] not in left:
                left.append(params["UploadId"])
            raise ProcessKilled(f"killed while sending part {params['PartNumber']}")

    def abort(params: dict[str, Any], **_: Any) -> None:
        raise ProcessKilled("a killed process sends nothing")

    s3_client.meta.events.register("before-parameter-build.s3.UploadPart", part)
    s3_client.meta.events.register("before-parameter-build.s3.AbortMultipartUpload", abort)
    return left


def kill_at_write(s3_client: Any, operation: str, key: str) -> list[str]:
    """Kill the try (raise :class:`ProcessKilled`) when this client sends ``operation`` for ``key``."""
    killed: list[str] = []

    def kill(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == key:
            killed.append(key)
            raise ProcessKilled(f"killed at {operation} of {key}")

    s3_client.meta.events.register(f"before-parameter-build.s3.{operation}", kill)
    return killed


# --- MP4 bodies ----------------------------------------------------------------------------------


def top_level_boxes(body: bytes) -> list[tuple[str, int, int]]:
    """``(type, offset, size)`` of each top-level box of a whole MP4 file (32-bit sizes only)."""
    boxes, offset = [], 0
    while offset + 8 <= len(body):
        size, kind = struct.unpack(">I4s", body[offset : offset + 8])
        boxes.append((kind.decode("latin-1"), offset, size))
        if size < 8:
            break
        offset += size
    return boxes


def rename_box(kind: str, new_kind: str) -> Callable[[bytes], bytes]:
    """A body alteration for :class:`AlteredVideo`: the top-level ``kind`` box becomes ``new_kind``."""

    def alter(body: bytes) -> bytes:
        [offset] = [offset for name, offset, _ in top_level_boxes(body) if name == kind]
        return body[: offset + 4] + new_kind.encode() + body[offset + 8 :]

    return alter


def resize_box(kind: str, delta: int) -> Callable[[bytes], bytes]:
    """A body alteration for :class:`AlteredVideo`: the ``kind`` box declares ``delta`` more bytes."""

    def alter(body: bytes) -> bytes:
        [(offset, size)] = [(offset, size) for name, offset, size in top_level_boxes(body) if name == kind]
        return body[:offset] + struct.pack(">I", size + delta) + body[offset + 4 :]

    return alter


def largesize_box(kind: str) -> Callable[[bytes], bytes]:
    """A body alteration for :class:`AlteredVideo`: the ``kind`` box gives its size in 64 bits.

    Still a valid MP4 (size field 1, then the 64-bit size, which counts the 8 extra header bytes).
    """

    def alter(body: bytes) -> bytes:
        [(offset, size)] = [(offset, size) for name, offset, size in top_level_boxes(body) if name == kind]
        header = struct.pack(">I4sQ", 1, kind.encode(), size + 8)
        return body[:offset] + header + body[offset + 8 :]

    return alter


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


def _emulators(
    monkeypatch: pytest.MonkeyPatch, defaults: dict[str, Any]
) -> Iterator[Callable[..., VeniceEmulator]]:
    registered: list[str] = []

    def make(
        transport: Callable[[httpx.BaseTransport], httpx.BaseTransport] | None = None, **config: Any
    ) -> VeniceEmulator:
        config = {"job_seconds": 0, **defaults, **config}
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


@pytest.fixture
def venice(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., VeniceEmulator]]:
    """Make the in-process emulator behind ``venice_default``: ``venice(job_seconds=0, ...)``.

    ``transport`` wraps the emulator's sync transport (to alter its answers) when given.
    """
    yield from _emulators(monkeypatch, {})


ACCEPT_MODES = {"mp4-on-accept": False, "json-on-accept": True}


@pytest.fixture(params=list(ACCEPT_MODES.values()), ids=list(ACCEPT_MODES))
def venice_each_accept_mode(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., VeniceEmulator]]:
    """Like ``venice``, once per ``retrieve_json_on_accept`` setting of the emulator.

    Independent clients disagree on whether Venice answers JSON ``COMPLETED`` to a ``/video/retrieve``
    of a finished job whose ``Accept`` header names ``application/json``; delivery must work both ways.
    Bind it under the name the tests use: ``venice = s3_fixtures.venice_each_accept_mode``.
    """
    yield from _emulators(monkeypatch, {"retrieve_json_on_accept": request.param})


class AlteredVideo(httpx.BaseTransport):
    """Passes requests to the emulator and rewrites the mp4 answers: body and/or Content-Length.

    With ``chunked=True`` the answer carries no ``Content-Length`` at all: the body is sent in 64 KiB
    chunks (``Transfer-Encoding: chunked``), so only the body itself can tell that it was cut short.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport,
        body: Callable[[bytes], bytes] = lambda body: body,
        content_length: Callable[[int], int] = lambda length: length,
        chunked: bool = False,
    ) -> None:
        self._inner = inner
        self._body = body
        self._length = content_length
        self._chunked = chunked

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if response.headers.get("content-type") != "video/mp4":
            return response
        body = self._body(response.read())
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        if self._chunked:
            pieces = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
            return httpx.Response(response.status_code, headers=headers, content=pieces, request=request)
        headers["content-length"] = str(self._length(len(body)))
        return httpx.Response(response.status_code, headers=headers, content=body, request=request)


class RewriteJson(httpx.BaseTransport):
    """Passes requests to the emulator and rewrites the JSON answers of one endpoint.

    ``rewrite`` takes the decoded body and returns the new one (bytes are sent as they are), e.g.
    ``RewriteJson(inner, "/video/queue", lambda body: {"queue_id": body["queue_id"]})``.
    """

    def __init__(self, inner: httpx.BaseTransport, endpoint: str, rewrite: Callable[[Any], Any]) -> None:
        self._inner = inner
        self._endpoint = endpoint
        self._rewrite = rewrite

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if not request.url.path.endswith(self._endpoint) or not response.is_success:
            return response
        if not response.headers.get("content-type", "").startswith("application/json"):
            return response
        answer = self._rewrite(json.loads(response.read()))
        content = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return httpx.Response(response.status_code, headers=headers, content=content, request=request)


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
