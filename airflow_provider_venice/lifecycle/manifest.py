"""The manifest: a small JSON object beside each video, written last, that says "delivered".

A video counts as delivered when its manifest exists and matches the object (same queue_id, ETag and
size). A resumed try and ``replace=False`` read it: a matching manifest means the video is already
safely there. Its fields are documented in ``docs/manifest.md``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_venice.lifecycle.s3object import same_etag
from airflow_provider_venice.lifecycle.s3upload import error_status

if TYPE_CHECKING:
    from airflow_provider_venice.job import VeniceJob
    from airflow_provider_venice.lifecycle.destination import Destination

SCHEMA_VERSION = 1
KIND = "airflow-provider-venice/video"
_INLINE_MEDIA_SHOWN = 64


def build_manifest(
    *,
    destination: Destination,
    job: VeniceJob,
    video: dict[str, Any],
    request: dict[str, Any] | None,
    timings: dict[str, float | None],
    task: dict[str, Any] | None,
    probe: dict[str, Any],
    poster: dict[str, Any] | None,
) -> dict[str, Any]:
    """Assemble a manifest from the video's facts (size, digests, ETag, probe), its job and its request."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "s3_uri": destination.uri,
        "bucket": destination.bucket,
        "key": destination.key,
        **video,
        "model": job.model,
        "queue_id": job.queue_id,
        "quote_usd": job.quote_usd,
        "request_fingerprint": job.request_fingerprint,
        "request": summarise_request(request) if request is not None else None,
        "timings": {name: _iso(value) for name, value in timings.items()},
        "task": task,
        "probe": probe,
        "poster": poster,
    }


def task_identity(context: Any) -> dict[str, Any] | None:
    """Return the task instance that delivered the video (DAG, run, task, map index, try)."""
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is None:
        return None
    names = ("dag_id", "run_id", "task_id", "map_index", "try_number")
    return {name: getattr(ti, name, None) for name in names}


def summarise_request(request: dict[str, Any]) -> dict[str, Any]:
    """Return the request fields as sent, with inline ``data:`` media shortened to their type and size."""
    return {name: _shorten(value) for name, value in request.items()}


def write_manifest(s3: Any, destination: Destination, manifest: dict[str, Any]) -> None:
    """Write the manifest beside the video (an ordinary overwrite: the video's write decided who won)."""
    s3.put_object(
        Bucket=destination.bucket,
        Key=destination.manifest_key,
        Body=json.dumps(manifest, indent=2, sort_keys=True).encode(),
        ContentType="application/json",
    )


def read_manifest(s3: Any, destination: Destination) -> dict[str, Any] | None:
    """Return the manifest beside the video, or None when there is none (or it is not ours to read)."""
    if not destination.manifest_key:
        return None
    try:
        body = s3.get_object(Bucket=destination.bucket, Key=destination.manifest_key)["Body"].read(1 << 20)
    except Exception as exc:  # botocore's NoSuchKey and friends
        if error_status(exc) == 404:
            return None
        raise
    try:
        manifest = json.loads(body)
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("kind") == KIND else None


def matches(manifest: dict[str, Any], head: dict[str, Any], queue_id: str) -> bool:
    """Whether ``manifest`` describes the object ``head`` describes, as the video of job ``queue_id``."""
    return (
        manifest.get("queue_id") == queue_id
        and same_etag(manifest.get("etag"), head.get("ETag"))
        and manifest.get("size_bytes") == head.get("ContentLength")
    )


def _shorten(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("data:"):
        head, _, payload = value.partition(",")
        return f"{head[:_INLINE_MEDIA_SHOWN]},<{len(payload)} characters inline>"
    if isinstance(value, list):
        return [_shorten(item) for item in value]
    if isinstance(value, dict):
        return {name: _shorten(item) for name, item in value.items()}
    return value


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat() if epoch is not None else None
