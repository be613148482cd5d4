"""What a delivered video looks like in S3 under the one-pass contract, and tools to break deliveries.

A delivery is committed by its manifest: ``<key>.json`` beside the video, written last, naming the
video's size, the SHA-256 of its bytes, its ETag, the Venice job's queue_id, what the probe of the stored
video found and the poster frame written beside it (``<key>.poster.jpg`` by default) before the
manifest. The object's metadata carries what was known when the upload started (queue_id, model, quote,
request fingerprint, upload token), never the SHA-256. :func:`assert_delivered` checks all of it against
the objects really stored; :func:`delivery_keys` lists the objects one delivery leaves in the bucket.

Also here: :class:`CutProxy`, an HTTP proxy on a free loopback port that hands the video on without a
``Content-Length`` and cut short (the connection simply closes, so the HTTP client cannot tell), and
:class:`FileStore`, a task state store kept in a JSON file that two processes can share.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tests.integration.s3_fixtures import RESULT_KEYS, check_poster_and_probe, check_poster_object

if TYPE_CHECKING:
    from collections.abc import Callable

# What the object's metadata says from the moment the upload starts (quote and fingerprint when known).
START_METADATA = {"venice-queue-id", "venice-model", "venice-upload-token"}
OPTIONAL_METADATA = {"venice-quote-usd", "venice-request-fingerprint"}
MANIFEST_KIND = "airflow-provider-venice/video"
# Not passed on by the proxy: it reads bodies decoded and frames them itself.
_HOP_HEADERS = {"content-length", "content-encoding", "transfer-encoding", "connection", "date", "server"}


# The default poster frame beside a video (``poster_format="jpeg"``); a WebP poster ends ``.poster.webp``.
POSTER_SUFFIX = ".poster.jpg"
_POSTER_SUFFIXES = (POSTER_SUFFIX, ".poster.webp")


def manifest_key(key: str) -> str:
    """The key of the manifest beside the video at ``key``."""
    return key + ".json"


def poster_key(key: str, suffix: str = POSTER_SUFFIX) -> str:
    """The key of the poster frame beside the video at ``key`` (the default JPEG one unless ``suffix``)."""
    return key + suffix


def delivery_keys(*keys: str) -> list[str]:
    """Every object the deliveries of the videos at ``keys`` leave, sorted as S3 lists them: each video,
    its manifest and its poster, nothing else."""
    return sorted(name for key in keys for name in (key, manifest_key(key), poster_key(key)))


def is_companion(key: str) -> bool:
    """Whether ``key`` is an object written beside a video (its manifest or its poster), not a video."""
    return key.endswith(".json") or key.endswith(_POSTER_SUFFIXES)


def read_manifest(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    """The manifest beside the video at ``key`` (raises if there is none)."""
    body = s3.get_object(Bucket=bucket, Key=manifest_key(key))["Body"].read()
    manifest: dict[str, Any] = json.loads(body)
    return manifest


def top_level_boxes(data: bytes) -> list[tuple[str, int, int]]:
    """``(type, offset, size)`` of each top-level box of a whole MP4 file."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        elif size == 0:
            size = len(data) - offset
        boxes.append((kind, offset, size))
        offset += size
    return boxes


def stored_sha256(s3: Any, bucket: str, key: str) -> tuple[int, str]:
    """Stream the stored object and return its size and the SHA-256 of its bytes."""
    digest, size = hashlib.sha256(), 0
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1024 * 1024):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def bare_etag(etag: Any) -> str:
    return str(etag or "").strip('"')


def assert_delivered(
    s3: Any,
    bucket: str,
    key: str,
    queue_id: str,
    result: dict[str, Any] | None = None,
    *,
    poster_suffix: str = POSTER_SUFFIX,
) -> dict[str, Any]:
    """The video at ``key`` is delivered as the video of ``queue_id``: its manifest exists and matches it.

    Matching means: the manifest's size is the object's, its ``sha256`` is the SHA-256 of the stored
    bytes, its ETag is the object's, and its queue_id is the job's; the object is an mp4 whose metadata
    names the job and holds no ``sha256``. The manifest says the video was probed, and its poster
    (``key + poster_suffix``) is in S3 as the manifest describes it. With ``result`` (a delivering
    task's XCom), the result agrees with all of it (probe fields and ``poster_uri`` included). Returns
    the manifest.
    """
    head = s3.head_object(Bucket=bucket, Key=key)
    size, sha256 = stored_sha256(s3, bucket, key)
    manifest = read_manifest(s3, bucket, key)
    assert manifest["kind"] == MANIFEST_KIND, manifest
    assert manifest["queue_id"] == queue_id, manifest
    assert manifest["s3_uri"] == f"s3://{bucket}/{key}", manifest
    assert manifest["size_bytes"] == size == head["ContentLength"], (manifest, head)
    assert manifest["sha256"] == sha256, manifest
    assert bare_etag(manifest["etag"]) == bare_etag(head["ETag"]), (manifest, head)
    checked = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert checked.get("ChecksumCRC32") == manifest["checksum_crc32"], checked  # S3 checked it too
    assert head["ContentType"] == "video/mp4"
    metadata = head["Metadata"]
    assert START_METADATA <= set(metadata) <= START_METADATA | OPTIONAL_METADATA, metadata
    assert metadata["venice-queue-id"] == queue_id
    assert "sha256" not in metadata  # one pass: the checksum is S3's, the digest is in the manifest
    first = s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-7")["Body"].read()
    assert first[4:8] == b"ftyp", first
    assert manifest["probe"]["made"] is True, manifest["probe"]  # PyAV is installed: every video is probed
    assert manifest["poster"] is not None, manifest
    assert manifest["poster"]["key"] == poster_key(key, poster_suffix), manifest["poster"]
    check_poster_object(s3, manifest["poster"], bucket=bucket)
    if result is not None:
        assert set(result) == RESULT_KEYS, sorted(result)
        assert result["s3_uri"] == f"s3://{bucket}/{key}"
        assert result["manifest_uri"] == f"s3://{bucket}/{manifest_key(key)}"
        assert result["queue_id"] == queue_id
        assert (result["size_bytes"], result["sha256"]) == (size, sha256)
        assert result["checksum_crc32"] == manifest["checksum_crc32"]
        check_poster_and_probe(s3, result, bucket=bucket)
    return manifest


def video_keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    """Keys of the videos under ``prefix`` (the manifests and posters beside them left out)."""
    return [key for key in all_keys(s3, bucket, prefix) if not is_companion(key)]


def all_keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"] for item in listing)


# --- a proxy that cuts the video short without Content-Length ----------------------------------------------


class CutProxy:
    """A proxy to ``upstream`` on 127.0.0.1 (free port) that cuts video answers short, undetectably.

    Every request goes on to ``upstream`` unchanged. An answer with ``Content-Type: video/mp4`` is
    passed back as HTTP/1.0 without ``Content-Length`` and without chunked encoding, its body ending
    where the connection closes: after ``cut(body)`` bytes of the ``body`` the server sent. To the HTTP
    client that is a complete body; only the MP4 structure shows it is not. Other answers are passed back
    whole. ``url`` is ``upstream`` with this proxy's host and port; ``cuts`` lists ``(sent, size)``.
    """

    def __init__(self, upstream_root: str, cut: Callable[[bytes], int]) -> None:
        self.upstream_root = upstream_root.rstrip("/")
        self.cut = cut
        self.cuts: list[tuple[int, int]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in ("content-length", "connection")  # Host kept: download_urls
                }
                request = httpx.Request(
                    self.command, proxy.upstream_root + self.path, headers=headers, content=body
                )
                with httpx.Client(timeout=60) as client:
                    response = client.send(request, stream=True)
                    try:
                        self._answer(response)
                    finally:
                        response.close()

            def _answer(self, response: httpx.Response) -> None:
                is_video = response.headers.get("content-type", "").startswith("video/mp4")
                self.send_response(response.status_code)
                for name, value in response.headers.items():
                    if name.lower() in _HOP_HEADERS:
                        continue
                    self.send_header(name, value)
                if not is_video:
                    content = response.read()
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                    return
                self.end_headers()
                body = response.read()  # a test proxy: a video of a few MB is held whole
                sent = proxy.cut(body)
                self.wfile.write(body[:sent])
                proxy.cuts.append((sent, len(body)))
                self.wfile.flush()
                self.close_connection = True

            do_GET = do_POST = do_DELETE = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.root_url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CutProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


# --- a task state store two processes share ------------------------------------------------------------


class FileStore:
    """``context["task_state_store"]`` kept in a JSON file, written whole and atomically at each ``set``.

    Two processes (two tries of one task instance, the first one killed) share it through the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return data

    def _save(self, data: dict[str, Any]) -> None:
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(data))
        partial.replace(self.path)

    def get(self, key: str, default: Any = None) -> Any:
        return self._load().get(key, default)

    def set(self, key: str, value: Any) -> None:
        self._save({**self._load(), key: json.loads(json.dumps(value))})

    def delete(self, key: str) -> None:
        data = self._load()
        data.pop(key, None)
        self._save(data)


def wait_until(what: str, probe: Callable[[], Any], timeout_s: float = 60.0, every_s: float = 0.02) -> Any:
    """Poll ``probe`` until it returns something truthy; return it (raise after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
