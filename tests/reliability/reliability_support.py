"""Helpers and fixtures of the reliability suite: the in-process emulator behind ``venice_default``,
moto S3 with a fault-injecting boto session, a task state store that survives tries, and call-log invariants.

Seams only: the Venice side is reached through ``register_transports`` (the emulator's httpx
transports, sometimes wrapped by a test transport), the S3 side through moto and boto3 event hooks
registered on the session that Airflow's ``[aws] session_factory`` builds. Our own code is never
patched.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
import pytest

from airflow_provider_venice.client import forget_catalogues
from airflow_provider_venice.hooks.venice import register_transports, unregister_transports
from airflow_provider_venice.testing import VeniceEmulator

SECRET = "sk-RELIABILITY-SECRET-7f3a"
BUCKET = "reliability-videos"
T2V = "wan-2-7-text-to-video"
VPS = "grok-imagine-text-to-video-private"
API = "/api/v1"
QUEUE = f"{API}/video/queue"
QUOTE = f"{API}/video/quote"
RETRIEVE = f"{API}/video/retrieve"
COMPLETE = f"{API}/video/complete"
MODELS = f"{API}/models"
TRANSCRIPTIONS = f"{API}/video/transcriptions"
MIB = 1024 * 1024


# --- Airflow context -----------------------------------------------------------------------------


class FakeStore:
    """``context["task_state_store"]``: JSON values that survive every try of one task instance."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.data[key])) if key in self.data else default

    def set(self, key: str, value: Any) -> None:
        self.data[key] = json.loads(json.dumps(value))

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


class _OutletEvents:
    """``context["outlet_events"]``: records what operators announce."""

    def __init__(self) -> None:
        self.added: list[tuple[Any, Any, dict[str, Any]]] = []
        self._accessors: dict[Any, Any] = {}

    def __getitem__(self, outlet: Any) -> Any:
        events = self

        class _Accessor:
            extra: dict[str, Any] = {}

            def add(self, asset: Any, extra: dict[str, Any] | None = None) -> None:
                events.added.append((outlet, asset, dict(extra or {})))

        # Keyed as Airflow keys them, by name (Airflow 3.1's Asset and AssetAlias are not hashable).
        return self._accessors.setdefault((type(outlet).__name__, outlet.name), _Accessor())


def make_context(store: FakeStore | None = None) -> dict[str, Any]:
    """A task context with what the operators use: the task state store and outlet events."""
    return {"task_state_store": store if store is not None else FakeStore(), "outlet_events": _OutletEvents()}


# --- Venice ----------------------------------------------------------------------------------------


def connection(base_url: str, *, max_retries: int = 4, timeout_s: float = 10.0, **extra: Any) -> str:
    return json.dumps(
        {
            "conn_type": "venice",
            "host": base_url,
            "password": SECRET,
            "extra": {"max_retries": max_retries, "timeout_s": timeout_s, **extra},
        }
    )


@dataclass(frozen=True)
class Sent:
    """A request as it went out: its URL and a copy of its headers at that moment (the client redacts
    the Authorization header of its request objects afterwards, so that no error can carry the key)."""

    method: str
    url: httpx.URL
    headers: dict[str, str]


class WrappedTransport(httpx.BaseTransport):
    """The emulator's transport with a hook: ``hook(request, send)`` may alter, replace or refuse.

    ``requests`` lists every request as it was sent.
    """

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.hooks: list[Callable[[httpx.Request, Callable[[httpx.Request], httpx.Response]], Any]] = []
        self.requests: list[Sent] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.requests.append(Sent(request.method, request.url, headers))
        for hook in list(self.hooks):
            answer = hook(request, self.inner.handle_request)
            if answer is not None:
                return answer
        return self.inner.handle_request(request)


@dataclass
class Venice:
    """The emulator behind ``venice_default`` and the sync transport the hooks use."""

    emu: VeniceEmulator
    transport: WrappedTransport
    monkeypatch: pytest.MonkeyPatch

    def connect(self, **options: Any) -> None:
        """Point ``venice_default`` at the emulator with these connection extras."""
        self.monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", connection(self.emu.base_url, **options))

    # call-log views
    def calls(self, path: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.emu.calls() if path is None or c["path"] == path]

    def queue_calls(self) -> list[dict[str, Any]]:
        return self.calls(QUEUE)

    def processed_queue_calls(self) -> list[dict[str, Any]]:
        """Queue calls that reached the API and created a job (200), not ones faulted before processing."""
        return [c for c in self.queue_calls() if c["status"] == 200 and c.get("fault") != "drop_after"]

    def jobs(self) -> list[dict[str, Any]]:
        return self.emu.jobs()

    def job(self, queue_id: str) -> dict[str, Any]:
        return next(job for job in self.emu.jobs() if job["queue_id"] == queue_id)

    def assert_invariants(self) -> None:
        """Never two charges for a task; never /video/complete before the object was verified.

        Each test runs one task instance unless it says otherwise, so at most one job exists; every
        retrieve keeps the media; nothing asked Venice to delete media on completion.
        """
        assert len(self.jobs()) <= 1, self.jobs()
        for call in self.calls(RETRIEVE):
            if isinstance(call["body"], dict):
                assert call["body"].get("delete_media_on_completion") is False


@pytest.fixture
def venice(monkeypatch: pytest.MonkeyPatch) -> Iterator[Venice]:
    """An in-process emulator (jobs finish at once) behind ``venice_default``, client retries on."""
    emu = VeniceEmulator(job_seconds=0, video_bytes=64 * 1024)
    transport = WrappedTransport(emu.sync_transport())
    forget_catalogues()
    register_transports(emu.base_url, transport, emu.async_transport())
    env = Venice(emu, transport, monkeypatch)
    env.connect()
    yield env
    unregister_transports(emu.base_url)
    forget_catalogues()


# --- S3 --------------------------------------------------------------------------------------------


@dataclass
class S3Faults:
    """boto3 event hooks on every session Airflow's S3 hook creates: a log of S3 operations, and faults.

    ``fail("UploadPart", times=1)`` makes the next UploadPart raise a ``ClientError``; ``on("UploadPart",
    fn)`` runs ``fn`` before the next matching call. ``key=`` limits either to calls on that key (the
    video, or its manifest). ``calls`` logs ``(operation, key)``; ``operations`` the operations alone.
    """

    calls: list[tuple[str, str | None]] = field(default_factory=list)
    pending: dict[tuple[str, str | None], list[Callable[[], None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    _keys: threading.local = field(default_factory=threading.local)

    @property
    def operations(self) -> list[str]:
        return [operation for operation, _ in self.calls]

    def fail(
        self, operation: str, times: int = 1, code: str = "InternalError", key: str | None = None
    ) -> None:
        from botocore.exceptions import ClientError

        def boom() -> None:
            raise ClientError({"Error": {"Code": code, "Message": f"injected {code}"}}, operation)

        self.pending[(operation, key)].extend([boom] * times)

    def on(self, operation: str, action: Callable[[], None], key: str | None = None) -> None:
        self.pending[(operation, key)].append(action)

    def clear(self) -> None:
        self.calls.clear()

    def before_parameter_build(self, params: dict[str, Any], **_: Any) -> None:
        self._keys.key = params.get("Key")  # the same thread sends the call right after

    def before_call(self, model: Any, **_: Any) -> None:
        key = getattr(self._keys, "key", None)
        self._keys.key = None
        self.calls.append((model.name, key))
        for wanted in ((model.name, key), (model.name, None)):
            actions = self.pending.get(wanted)
            if actions:
                actions.pop(0)()
                return

    def attach(self, session: boto3.session.Session) -> None:
        session.events.register("before-parameter-build.s3.*", self.before_parameter_build)
        session.events.register("before-call.s3.*", self.before_call)


ACTIVE_S3_FAULTS: list[S3Faults] = []


def _session_factory() -> type:
    from airflow.providers.amazon.aws.hooks.base_aws import BaseSessionFactory

    class FaultInjectingSessionFactory(BaseSessionFactory):
        """Airflow's ``[aws] session_factory`` extension point: the session gets our event hooks."""

        def create_session(self, deferrable: bool = False) -> Any:
            session = super().create_session(deferrable=deferrable)
            for faults in ACTIVE_S3_FAULTS:
                faults.attach(session)
            return session

    return FaultInjectingSessionFactory


@dataclass
class S3:
    client: Any
    faults: S3Faults

    def objects(self) -> list[str]:
        return [o["Key"] for o in self.client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]

    def uploads_in_progress(self) -> list[dict[str, Any]]:
        return list(self.client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))

    def body(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def head(self, key: str) -> dict[str, Any]:
        return dict(self.client.head_object(Bucket=BUCKET, Key=key))

    def manifest(self, key: str) -> dict[str, Any] | None:
        """The manifest beside the video at ``key``, or None when there is none."""
        if manifest_key(key) not in self.objects():
            return None
        manifest: dict[str, Any] = json.loads(self.body(manifest_key(key)))
        return manifest

    def writes(self, key: str) -> int:
        """Writes of the object at ``key``: PutObject calls plus completed multipart uploads."""
        return sum(
            1
            for operation, written in self.faults.calls
            if written == key and operation in ("PutObject", "CompleteMultipartUpload")
        )

    def delivered(self) -> dict[str, dict[str, Any]]:
        """Each video that is delivered right now: its key, with its head, its manifest (which matches) and
        whether the poster its manifest names (if any) is in the bucket."""
        found = {}
        objects = self.objects()
        for key in objects:
            if is_companion(key):
                continue
            head, manifest = self.head(key), self.manifest(key)
            if manifest is not None and manifest_matches(manifest, head):
                poster = manifest.get("poster")
                stored = poster is None or poster.get("key") in objects  # none named: nothing to miss
                found[key] = {"head": head, "manifest": manifest, "poster_stored": stored}
        return found


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    """moto's in-process S3 with one bucket; ``aws_default`` points at it; S3 calls are logged."""
    import airflow.providers.amazon.aws.hooks.base_aws as base_aws
    from moto import mock_aws

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "extra": {"region_name": "us-east-1"}}),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(base_aws, "SessionFactory", _session_factory())  # Airflow's, not ours
    faults = S3Faults()
    ACTIVE_S3_FAULTS.append(faults)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield S3(client, faults)
    ACTIVE_S3_FAULTS.remove(faults)


# --- checks ----------------------------------------------------------------------------------------

MANIFEST_SUFFIX = ".json"
POSTER_SUFFIX = ".poster.jpg"  # the default poster frame beside a video (a JPEG)
PROBE_KEYS = ("duration_s", "width", "height", "frame_rate", "video_codec", "has_audio")


def manifest_key(key: str) -> str:
    """The key of the manifest beside the video at ``key``."""
    return key + MANIFEST_SUFFIX


def poster_key(key: str) -> str:
    """The key of the (default) poster frame beside the video at ``key``."""
    return key + POSTER_SUFFIX


def delivery_keys(*keys: str) -> list[str]:
    """Every object the deliveries of the videos at ``keys`` leave, sorted as S3 lists them: each video,
    its manifest and its poster, nothing else."""
    return sorted(name for key in keys for name in (key, manifest_key(key), poster_key(key)))


def is_companion(key: str) -> bool:
    """Whether ``key`` is written beside a video (its manifest or its poster) rather than a video."""
    return key.endswith((MANIFEST_SUFFIX, POSTER_SUFFIX))


def manifest_matches(manifest: dict[str, Any], head: dict[str, Any]) -> bool:
    """Whether ``manifest`` describes the stored object ``head`` describes (size and ETag)."""
    return manifest.get("size_bytes") == head.get("ContentLength") and str(manifest.get("etag")).strip(
        '"'
    ) == str(head.get("ETag")).strip('"')


def error_chain(exc: BaseException) -> list[BaseException]:
    """The exception and every ``__cause__`` / ``__context__`` behind it."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo.extend([current.__cause__, current.__context__])
    return seen


# --- the whole stack ---------------------------------------------------------------------------------


@dataclass
class Stack:
    """Venice and S3 together; every release call (``/video/complete``, ``DELETE download_url``) is
    checked against S3 at the moment it is sent: which videos were delivered (manifest written and
    matching the object) then."""

    venice: Venice
    s3: S3
    releases: list[tuple[str, str, dict[str, dict[str, Any]]]] = field(default_factory=list)

    def watch_releases(self) -> None:
        def probe(request: httpx.Request, send: Any) -> None:
            path = request.url.path
            if path == COMPLETE or (request.method == "DELETE" and "/_media/" in path):
                self.releases.append((request.method, path, self.s3.delivered()))

        self.venice.transport.hooks.append(probe)

    def assert_released_after_delivery(self, queue_id: str, key: str) -> None:
        """Every release of ``queue_id`` happened when ``key`` held its video with the manifest written."""
        assert self.releases, "the job was never released"
        for _method, _path, delivered in self.releases:
            assert key in delivered, f"released while {key} had no matching manifest: {delivered}"
            assert delivered[key]["manifest"]["queue_id"] == queue_id, delivered
            assert delivered[key]["head"]["Metadata"]["venice-queue-id"] == queue_id, delivered
            assert delivered[key]["poster_stored"], f"released while the poster of {key} was missing"

    def assert_not_released(self) -> None:
        assert self.releases == []
        assert self.venice.calls(COMPLETE) == []

    def assert_delivered_once(self, result: dict[str, Any], key: str, *, probed: bool = True) -> None:
        """End state Delivered: the video in S3 once, its bytes hash to the result's sha256 and the
        manifest's, its probe and its poster recorded in the manifest and the result, one charge, and the
        job released only once the manifest (and the poster it names) existed.

        ``probed=False``: the probe failed, so the manifest says why, and there is no poster at all.
        """
        import hashlib

        venice, s3 = self.venice, self.s3
        assert s3.objects() == (delivery_keys(key) if probed else [key, manifest_key(key)])
        assert s3.writes(key) == 1, s3.faults.calls
        assert s3.uploads_in_progress() == []
        body = s3.body(key)
        assert body[4:8] == b"ftyp"
        manifest = s3.manifest(key)
        assert manifest is not None
        assert hashlib.sha256(body).hexdigest() == result["sha256"] == manifest["sha256"]
        assert len(body) == result["size_bytes"] == manifest["size_bytes"]
        assert manifest_matches(manifest, s3.head(key)), (manifest, s3.head(key))
        assert "sha256" not in s3.head(key)["Metadata"]
        self.assert_probe_and_poster(result, manifest, key, probed=probed)
        jobs = venice.jobs()
        assert len(jobs) == 1, jobs
        assert len(venice.processed_queue_calls()) == 1
        assert jobs[0]["queue_id"] == result["queue_id"] == manifest["queue_id"]
        assert jobs[0]["media_deleted"] is True
        self.assert_released_after_delivery(result["queue_id"], key)
        venice.assert_invariants()

    def assert_probe_and_poster(
        self, result: dict[str, Any], manifest: dict[str, Any], key: str, *, probed: bool = True
    ) -> None:
        """The manifest says the stored video was probed; the result repeats what the probe found; the
        poster the manifest and the result name is a JPEG in S3, as large as the manifest says.

        ``probed=False``: the manifest says why no probe was made; no probe data and no poster anywhere.
        """
        probe = manifest["probe"]
        if not probed:
            assert probe["made"] is False, probe
            assert isinstance(probe["error"], str), probe
            assert probe["error"], probe
            assert {name: result[name] for name in PROBE_KEYS} == dict.fromkeys(PROBE_KEYS)
            assert result["poster_uri"] is None
            assert manifest["poster"] is None
            assert poster_key(key) not in self.s3.objects()
            return
        assert probe["made"] is True, probe
        assert {name: result[name] for name in PROBE_KEYS} == {name: probe[name] for name in PROBE_KEYS}
        assert result["width"] > 0
        assert result["height"] > 0
        poster = manifest["poster"]
        assert poster is not None, manifest
        assert poster["key"] == poster_key(key), poster
        assert result["poster_uri"] == poster["s3_uri"] == f"s3://{BUCKET}/{poster_key(key)}"
        image = self.s3.body(poster["key"])
        assert len(image) == poster["size_bytes"] > 0
        assert image.startswith(b"\xff\xd8\xff")
        assert self.s3.head(poster["key"])["ContentType"] == poster["content_type"] == "image/jpeg"

    def assert_kept_for_later(self, error: BaseException, queue_id: str) -> None:
        """End state Kept: a clear error naming the queue_id; the job still retrievable, nothing released,
        nothing in S3 (no video, no manifest, no poster, no open multipart upload)."""
        assert queue_id in str(error), str(error)
        self.assert_not_released()
        assert self.s3.uploads_in_progress() == []
        assert self.s3.objects() == [], self.s3.objects()
        job = self.venice.job(queue_id)
        assert job["media_deleted"] is False
        assert job["status"] in ("COMPLETED", "PROCESSING"), job
        self.venice.assert_invariants()


@pytest.fixture
def stack(venice: Venice, s3: S3) -> Stack:
    """Venice and S3 with release calls watched."""
    result = Stack(venice, s3)
    result.watch_releases()
    return result
