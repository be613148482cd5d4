"""Running a batch of the ``venice_scale_batch`` DAG on the cluster and checking what it did, once per video.

Shared by the scale scenarios and ``bench/scale_batch.py``. A batch is a DAG run with a ``tag``; its
prompts start with ``"<tag> #<index>:"`` and its videos land at ``videos/<tag>/<index>.mp4``, so the
emulator's jobs and calls, and the bucket's objects, can be told apart per batch.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.scale.cluster import BUCKET, Cluster

DAG_ID = "venice_scale_batch"
API = "/api/v1"
MANIFEST_SUFFIX = ".json"
POSTER_SUFFIX = ".poster.jpg"


def start_batch(cluster: Cluster, tag: str, count: int) -> str:
    """Trigger one run of the batch DAG; return its run id."""
    deployment = cluster.deployment
    deployment.api_json("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    run = deployment.api_json(
        "POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": {"tag": tag, "count": count}}
    )
    run_id: str = run["dag_run_id"]
    return run_id


def task_instances(cluster: Cluster, run_id: str) -> list[dict[str, Any]]:
    """The mapped ``generate`` task instances of the run (every map index)."""
    body = cluster.deployment.api_json(
        "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"task_id": "generate", "limit": 1000}
    )
    return [ti for ti in body["task_instances"] if ti["task_id"] == "generate"]


def states(cluster: Cluster, run_id: str) -> Counter[str]:
    return Counter(str(ti["state"]) for ti in task_instances(cluster, run_id))


def triggers_by_triggerer(cluster: Cluster, run_id: str) -> dict[str, int]:
    """Component name -> how many of the run's triggers it is assigned right now."""
    rows = cluster.postgres.query(
        "select j.hostname, count(*) from trigger t join task_instance ti on ti.trigger_id = t.id "
        f"join job j on j.id = t.triggerer_id where ti.run_id = '{run_id}' and ti.state = 'deferred' "
        "group by j.hostname"
    )
    return {hostname: int(count) for hostname, count in rows}


def triggerers_that_ran(cluster: Cluster, run_id: str) -> set[str]:
    """Which triggerer components ran a trigger of the run (from the per-triggerer trigger log files)."""
    folder = cluster.deployment.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=generate"
    names = cluster.triggerer_names()
    job_ids = {
        int(path.name.rsplit(".", 2)[-2]) for path in folder.glob("map_index=*/attempt=*.log.trigger.*.log")
    }
    return {names[job_id] for job_id in job_ids if job_id in names}


def workers_that_ran(cluster: Cluster, run_id: str) -> set[str]:
    """Which worker components ran a try of the run's tasks (Airflow's hostname is the component name)."""
    rows = cluster.postgres.query(
        "select distinct hostname from task_instance_history where run_id = "
        f"'{run_id}' union select distinct hostname from task_instance where run_id = '{run_id}'"
    )
    return {row[0] for row in rows if row and row[0].startswith("worker-")}


class DurationSpreader:
    """While running, sets the emulator's job duration to a fresh draw every ``interval_s`` seconds.

    The emulator gives every job queued the duration configured at that moment, so a batch queued over
    a minute or more gets jobs whose durations spread over [low, high] (checked afterwards from the
    emulator's job list, by :func:`durations`).
    """

    def __init__(self, cluster: Cluster, low: float, high: float, seed: int, interval_s: float = 0.5) -> None:
        self.cluster, self.low, self.high, self.interval_s = cluster, low, high, interval_s
        self.random = random.Random(seed)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            seconds = round(self.random.uniform(self.low, self.high), 1)
            self.cluster.deployment.emulator_admin("config", {"job_seconds": seconds})
            self.stop.wait(self.interval_s)

    def __enter__(self) -> DurationSpreader:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(10)


@dataclass
class BatchOutcome:
    """What the emulator and the bucket saw of one batch."""

    jobs: list[dict[str, Any]]
    calls: list[dict[str, Any]]
    videos: dict[str, dict[str, Any]]
    faulted: list[dict[str, Any]]

    def durations(self) -> list[float]:
        return [job["finishes_at"] - job["created_at"] for job in self.jobs]

    def faults(self, path: str) -> Counter[int]:
        """Statuses of the injected faults on ``path``. A scripted answer never reads the request body, so
        these calls cannot be told apart per batch: every faulted call since the emulator started."""
        return Counter(call["status"] for call in self.faulted if call["path"] == API + path)


def outcome(cluster: Cluster, tag: str) -> BatchOutcome:
    """Collect the batch's emulator jobs and calls, and its objects in the bucket."""
    deployment = cluster.deployment
    prefix = f"{tag} #"
    jobs = [job for job in deployment.emulator_jobs() if job["prompt"].startswith(prefix)]
    ids = {job["queue_id"] for job in jobs}
    every_call = deployment.emulator_calls()
    calls = [
        call
        for call in every_call
        if isinstance(call.get("body"), dict)
        and (str(call["body"].get("prompt", "")).startswith(prefix) or call["body"].get("queue_id") in ids)
    ]
    s3 = deployment.s3()
    listing: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"videos/{tag}/"):
        listing.extend(page.get("Contents", []))
    keys = {item["Key"] for item in listing}
    videos = {}
    for key in sorted(k for k in keys if not k.endswith((MANIFEST_SUFFIX, POSTER_SUFFIX))):
        head = s3.head_object(Bucket=BUCKET, Key=key)
        manifest = None
        if key + MANIFEST_SUFFIX in keys:
            manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=key + MANIFEST_SUFFIX)["Body"].read())
        videos[key] = {
            "head": head,
            "manifest": manifest,
            "companions": keys & {key + MANIFEST_SUFFIX, key + POSTER_SUFFIX},
        }
    stray = (
        keys - set(videos) - {key + suffix for key in videos for suffix in (MANIFEST_SUFFIX, POSTER_SUFFIX)}
    )
    assert not stray, f"objects that are no video, manifest or poster: {sorted(stray)}"
    return BatchOutcome(jobs, calls, videos, [call for call in every_call if call.get("fault")])


def assert_each_video_once(cluster: Cluster, tag: str, count: int) -> BatchOutcome:
    """The promises, per video: queued (paid) once, one object with its manifest, completed once and only
    after the manifest was written, never deleted or cancelled otherwise; nothing lost, nothing left over."""
    found = outcome(cluster, tag)
    prompts = Counter(job["prompt"] for job in found.jobs)
    assert len(prompts) == count, f"{len(prompts)} distinct prompts queued, expected {count}"
    paid_twice = {prompt: n for prompt, n in prompts.items() if n > 1}
    assert not paid_twice, f"videos paid for more than once: {paid_twice}"

    queued = Counter(
        call["body"]["prompt"]
        for call in found.calls
        if call["path"] == f"{API}/video/queue" and call["status"] == 200
    )
    assert set(queued.values()) == {1}, f"successful /video/queue calls per prompt: {queued.most_common(5)}"

    by_id = {job["queue_id"]: job for job in found.jobs}
    completes = [call for call in found.calls if call["path"] == f"{API}/video/complete"]
    completed = Counter(call["body"]["queue_id"] for call in completes)
    assert set(completed) == set(by_id), f"{len(set(by_id) - set(completed))} jobs never completed"
    assert set(completed.values()) == {1}, f"jobs completed more than once: {completed.most_common(5)}"
    assert all(call["status"] == 200 for call in completes), [c for c in completes if c["status"] != 200][:3]
    destructive = [
        call
        for call in found.calls
        if call["method"] == "DELETE"
        or (isinstance(call.get("body"), dict) and call["body"].get("delete_media_on_completion") is True)
    ]
    assert not destructive, f"calls that delete or cancel a job outside /video/complete: {destructive[:3]}"
    assert all(job["status"] == "DELETED" for job in found.jobs), Counter(job["status"] for job in found.jobs)

    expected_keys = {f"videos/{tag}/{index}.mp4" for index in range(count)}
    missing, unexpected = sorted(expected_keys - set(found.videos)), sorted(set(found.videos) - expected_keys)
    assert not missing, f"videos lost: {missing[:5]}"
    assert not unexpected, f"unexpected objects: {unexpected[:5]}"
    stored_ids = Counter(video["head"]["Metadata"]["venice-queue-id"] for video in found.videos.values())
    assert stored_ids == Counter(set(by_id)), "objects and jobs do not pair one to one"
    complete_time = {call["body"]["queue_id"]: call["time"] for call in completes}
    for key, video in found.videos.items():
        manifest = video["manifest"]
        assert manifest is not None, f"{key} has no manifest: never committed as delivered"
        assert manifest["size_bytes"] == video["head"]["ContentLength"], key
        assert manifest["etag"].strip('"') == video["head"]["ETag"].strip('"'), key
        delivered_at = datetime.fromisoformat(manifest["timings"]["delivered_at"]).timestamp()
        queue_id = manifest["queue_id"]
        assert complete_time[queue_id] >= delivered_at, (
            f"{queue_id} completed before its delivery was verified"
        )

    uploads = cluster.deployment.s3().list_multipart_uploads(Bucket=BUCKET, Prefix=f"videos/{tag}/")
    assert not uploads.get("Uploads"), f"multipart uploads left open: {uploads.get('Uploads')}"
    return found
