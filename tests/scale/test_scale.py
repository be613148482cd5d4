"""The promises on a scaled-out Airflow: CeleryExecutor, PostgreSQL, Redis, two workers and two triggerers.

Every scenario checks the emulator's call log and the bucket (``batch.assert_each_video_once``): one
``/video/queue`` and one ``/video/complete`` per video, one object (with its manifest) per video, no
complete before the manifest was written, no delete or cancel, no multipart upload left open.

1. A mapped batch of 100 generate tasks with job durations spread over 30 s to 3 min and 5 % of queue and
   retrieve calls answering 429 or 503, run by both workers and both triggerers.
2. One triggerer's process group is SIGKILLed while jobs are deferred: the other takes its triggers
   within the (shortened) health-check threshold and every job finishes.
3. A triggerer is SIGSTOPped past the threshold, then SIGCONTed: for a while both run the same triggers.
4. A Celery worker is SIGKILLed in the middle of an upload: the next try aborts the orphaned multipart
   upload, delivers once and never queues again.
5. PostgreSQL is restarted (``pg_ctl restart``) while jobs are deferred and others upload.

Job durations are real (emulated wall time, the emulator's clock is never advanced): a trigger sleeps
according to the last ``/video/retrieve`` answer, so moving the emulator's clock would only cut a few
of its sleeps, and would hide whether its rhythm holds over three minutes. Scenario 1 is CPU-bound on a
2-core machine (two worker runs per video), so its 3-minute tail mostly overlaps with that work. The
other scenarios use short jobs: long enough for the fault to hit jobs that are still deferred.
"""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.scale import batch
from tests.scale.batch import DurationSpreader, assert_each_video_once, start_batch
from tests.scale.cluster import BUCKET, Cluster

pytestmark = [pytest.mark.scale, pytest.mark.slow]

BATCH_SIZE = 100
FAULT_RATE = 0.05  # of /video/queue and of /video/retrieve calls, half 429 and half 503
FAULTS = [
    {"endpoint": endpoint, "status": status, "probability": FAULT_RATE / 2, **extra}
    for endpoint in ("/video/queue", "/video/retrieve")
    for status, extra in ((429, {"retry_after": 1}), (503, {}))
]


def _threshold(cluster: Cluster) -> float:
    return float(cluster.env["AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD"])


def _clear_faults(cluster: Cluster) -> None:
    httpx.delete(f"{cluster.deployment.emulator_url}/_emulator/faults", timeout=10).raise_for_status()


def _configure(cluster: Cluster, **config: object) -> None:
    cluster.deployment.emulator_admin("config", dict(config))


def _wait_until_deferred(cluster: Cluster, run_id: str, tag: str, count: int, timeout_s: float) -> None:
    """Wait until every job of the batch is queued at Venice and at least half the tasks are deferred."""
    deployment = cluster.deployment

    def waiting() -> bool:
        queued = [job for job in deployment.emulator_jobs() if job["prompt"].startswith(f"{tag} #")]
        return len(queued) >= count and batch.states(cluster, run_id)["deferred"] >= count // 2

    deployment.wait_for(
        f"{tag}: every job queued, most tasks deferred", waiting, timeout_s, 0.5, dag_id=batch.DAG_ID
    )


def _busiest_triggerer(cluster: Cluster, run_id: str) -> tuple[str, int]:
    held = batch.triggers_by_triggerer(cluster, run_id)
    assert held, "no trigger of the run is assigned to a triggerer"
    name = max(held, key=held.__getitem__)
    return name, held[name]


@pytest.mark.timeout(1200)
def test_mapped_batch_under_rate_limits_uses_both_workers_and_both_triggerers(cluster: Cluster) -> None:
    started = time.monotonic()
    deployment = cluster.deployment
    deployment.emulator_admin("faults", {"faults": FAULTS})
    try:
        with DurationSpreader(cluster, 30.0, 180.0, seed=14):
            run_id = start_batch(cluster, "s1", BATCH_SIZE)
            deployment.wait_for(
                "every job to be queued",
                lambda: (
                    len([j for j in deployment.emulator_jobs() if j["prompt"].startswith("s1 #")])
                    >= BATCH_SIZE
                ),
                900,
                2.0,
                dag_id=batch.DAG_ID,
            )
        deployment.wait_for_run(batch.DAG_ID, run_id, timeout_s=900)
    finally:
        _clear_faults(cluster)
        _configure(cluster, job_seconds=None)
    found = assert_each_video_once(cluster, "s1", BATCH_SIZE)

    durations = found.durations()
    assert min(durations) < 60, f"the shortest job ran {min(durations):.0f}s"
    assert max(durations) > 150, f"the longest job ran {max(durations):.0f}s"
    faulted = found.faults("/video/queue") + found.faults("/video/retrieve")
    assert set(faulted) <= {429, 503}, faulted
    assert sum(faulted.values()) > 0, faulted
    assert batch.workers_that_ran(cluster, run_id) >= {"worker-1", "worker-2"}
    assert batch.triggerers_that_ran(cluster, run_id) >= {"triggerer-1", "triggerer-2"}
    print(
        f"\nscenario 1: {BATCH_SIZE} videos in {time.monotonic() - started:.0f}s; job durations "
        f"{min(durations):.0f}..{max(durations):.0f}s; faults queue {dict(found.faults('/video/queue'))} "
        f"retrieve {dict(found.faults('/video/retrieve'))}"
    )


def _takeover_seconds(cluster: Cluster, run_id: str, gone: str, since: float, timeout_s: float) -> float:
    """Wait until no deferred task of the run is assigned to ``gone``; return the seconds since ``since``."""

    def moved() -> bool:
        return batch.triggers_by_triggerer(cluster, run_id).get(gone, 0) == 0

    cluster.deployment.wait_for(
        f"the triggers of {gone} to move", moved, timeout_s, 0.25, dag_id=batch.DAG_ID
    )
    return time.monotonic() - since


@pytest.mark.timeout(600)
def test_sigkill_of_a_triggerer_hands_its_triggers_to_the_other(cluster: Cluster) -> None:
    started = time.monotonic()
    count = 12
    _configure(cluster, job_seconds=60)
    try:
        run_id = start_batch(cluster, "s2", count)
        _wait_until_deferred(cluster, run_id, "s2", count, 240)
    finally:
        _configure(cluster, job_seconds=None)
    victim, held = _busiest_triggerer(cluster, run_id)
    cluster.deployment.processes[victim].kill(signal.SIGKILL)
    killed_at = time.monotonic()
    cluster.deployment.retire(victim)
    takeover = _takeover_seconds(cluster, run_id, victim, killed_at, 120)
    # Reassignment waits for the dead triggerer's heartbeat to age past the threshold, then one loop.
    assert takeover <= _threshold(cluster) + 10, f"took {takeover:.1f}s to take over {held} triggers"
    cluster.deployment.wait_for_run(batch.DAG_ID, run_id, timeout_s=300)
    assert_each_video_once(cluster, "s2", count)
    cluster.restart_triggerer(victim)
    elapsed = time.monotonic() - started
    print(f"\nscenario 2: {held} triggers of {victim} taken over in {takeover:.1f}s; {elapsed:.0f}s")


@pytest.mark.timeout(600)
def test_a_stalled_triggerer_coming_back_causes_no_second_delivery_complete_or_cancel(
    cluster: Cluster,
) -> None:
    started = time.monotonic()
    count = 12
    # Jobs of 30 to 75 s: when the stalled triggerer wakes, some of its jobs are done and released, some
    # are just done (both copies may report them), some still run (both copies poll them).
    with DurationSpreader(cluster, 30.0, 75.0, seed=3):
        run_id = start_batch(cluster, "s3", count)
        _wait_until_deferred(cluster, run_id, "s3", count, 240)
    victim, held = _busiest_triggerer(cluster, run_id)
    process = cluster.deployment.processes[victim]
    process.kill(signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        takeover = _takeover_seconds(cluster, run_id, victim, stopped_at, 120)
        time.sleep(max(0.0, 3 * _threshold(cluster) - (time.monotonic() - stopped_at)))
    finally:
        process.kill(signal.SIGCONT)
    stalled_for = time.monotonic() - stopped_at
    cluster.deployment.wait_for_run(batch.DAG_ID, run_id, timeout_s=300)
    assert process.alive()
    assert_each_video_once(cluster, "s3", count)
    instances = batch.task_instances(cluster, run_id)
    assert all(ti["state"] == "success" for ti in instances), [
        (ti["map_index"], ti["state"]) for ti in instances
    ]
    print(
        f"\nscenario 3: {victim} stopped {stalled_for:.0f}s holding {held} triggers, taken over in "
        f"{takeover:.1f}s; {time.monotonic() - started:.0f}s"
    )


@pytest.mark.timeout(600)
def test_sigkill_of_a_worker_mid_upload_aborts_the_orphan_and_delivers_once(cluster: Cluster) -> None:
    started = time.monotonic()
    count = 6
    s3 = cluster.deployment.s3()
    _configure(cluster, job_seconds=20, video_bytes=96 * 1024 * 1024)
    try:
        run_id = start_batch(cluster, "s4", count)

        def uploading() -> dict[str, object] | None:
            uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix="videos/s4/").get("Uploads") or []
            return uploads[0] if uploads else None

        upload = cluster.deployment.wait_for("an upload in flight", uploading, 300, 0.2, dag_id=batch.DAG_ID)
        map_index = int(upload["Key"].rsplit("/", 1)[-1].removesuffix(".mp4"))
        [instance] = [ti for ti in batch.task_instances(cluster, run_id) if ti["map_index"] == map_index]
        victim = instance["hostname"]
        assert victim in cluster.deployment.processes, instance
        cluster.deployment.processes[victim].kill(signal.SIGKILL)
        cluster.deployment.retire(victim)
        # The orphan is still there: nothing ran on the killed worker after SIGKILL.
        orphans = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=upload["Key"]).get("Uploads") or []
        assert upload["UploadId"] in {item["UploadId"] for item in orphans}
        cluster.restart_worker(victim)
        cluster.deployment.wait_for_run(batch.DAG_ID, run_id, timeout_s=400)
    finally:
        _configure(cluster, job_seconds=None, video_bytes=None)
    found = assert_each_video_once(cluster, "s4", count)
    [instance] = [ti for ti in batch.task_instances(cluster, run_id) if ti["map_index"] == map_index]
    assert instance["try_number"] >= 2, instance  # the killed try failed; a later one delivered
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
    assert len(found.jobs) == count
    print(
        f"\nscenario 4: killed {victim} while uploading map index {map_index}; delivered on try "
        f"{instance['try_number']}; {time.monotonic() - started:.0f}s"
    )


def _supervise_until_finished(cluster: Cluster, run_id: str, timeout_s: float) -> list[str]:
    """Wait for the run to succeed, starting again any component that exits meanwhile (Airflow's
    triggerer, for one, exits when the database refuses a connection; a real deployment runs each
    component under systemd or Kubernetes, which do the same). Return what was started again."""
    revived: list[str] = []
    deadline = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < deadline:
        revived += cluster.revive_exited()
        try:
            state = cluster.deployment.run_state(batch.DAG_ID, run_id)
        except (httpx.HTTPError, AssertionError):
            state = None  # the api-server may answer 500 while its connections come back
        if state in {"success", "failed"}:
            break
        time.sleep(1)
    assert state == "success", f"run {run_id} ended {state}\n{cluster.deployment.diagnostics(batch.DAG_ID)}"
    return revived


@pytest.mark.timeout(600)
def test_postgres_restart_while_jobs_wait_and_upload(cluster: Cluster) -> None:
    started = time.monotonic()
    count = 10
    s3 = cluster.deployment.s3()
    _configure(cluster, video_bytes=48 * 1024 * 1024)
    try:
        with DurationSpreader(cluster, 15.0, 60.0, seed=5):
            run_id = start_batch(cluster, "s5", count)

            def waiting_and_uploading() -> bool:
                uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix="videos/s5/").get("Uploads")
                return bool(uploads) and batch.states(cluster, run_id)["deferred"] > 0

            cluster.deployment.wait_for(
                "a deferred task and an upload at once", waiting_and_uploading, 300, 0.2, dag_id=batch.DAG_ID
            )
        deferred = batch.states(cluster, run_id)["deferred"]
        cluster.postgres.restart()
        restarted_at = time.monotonic() - started
        revived = _supervise_until_finished(cluster, run_id, 400)
    finally:
        _configure(cluster, job_seconds=None, video_bytes=None)
    assert_each_video_once(cluster, "s5", count)
    print(
        f"\nscenario 5: PostgreSQL restarted at {restarted_at:.0f}s with {deferred} tasks deferred and an "
        f"upload in flight; components that exited and were started again: {revived or 'none'}; "
        f"{time.monotonic() - started:.0f}s"
    )
