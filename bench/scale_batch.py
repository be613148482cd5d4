"""Benchmark: a batch of N mapped generate tasks on the scaled-out deployment of ``tests/scale``.

PostgreSQL, Redis, api-server, scheduler, dag-processor, 2 Celery workers (concurrency 4) and 2
triggerers, started by ``tests.scale.cluster.start_cluster``; the emulator gives each job a duration
drawn from 30 s to 3 min, and 5 % of queue and retrieve calls answer 429 or 503 (as scenario 1 of the
scale suite, at N = 500). Reported: the wall time from trigger to the run's end, the tasks per minute,
how long queueing every job took, how long the run went on after the last job finished at Venice (the
drain), and the floor no deployment can beat (the last job's queue time plus its duration). Every
video is checked as the tests do: queued once, one object with its manifest, completed once after it.

Usage: ``python bench/scale_batch.py [--n 500]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._common import save_result, table
from tests.scale.batch import DAG_ID, DurationSpreader, assert_each_video_once, start_batch
from tests.scale.cluster import ClusterOptions, missing_prerequisites, start_cluster

FAULT_RATE = 0.05
FAULTS = [
    {"endpoint": endpoint, "status": status, "probability": FAULT_RATE / 2, **extra}
    for endpoint in ("/video/queue", "/video/retrieve")
    for status, extra in ((429, {"retry_after": 1}), (503, {}))
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="videos in the batch (default 500)")
    parser.add_argument("--low", type=float, default=30.0, help="shortest emulated job, seconds")
    parser.add_argument("--high", type=float, default=180.0, help="longest emulated job, seconds")
    args = parser.parse_args()
    reason = missing_prerequisites()
    if reason is not None:
        print(f"scale_batch skipped: {reason}")
        return 0
    tag = f"bench{args.n}"
    with start_cluster(ClusterOptions(expected_dags=(DAG_ID,))) as cluster:
        deployment = cluster.deployment
        deployment.emulator_admin("faults", {"faults": FAULTS})
        started = time.monotonic()
        with DurationSpreader(cluster, args.low, args.high, seed=500):
            run_id = start_batch(cluster, tag, args.n)

            def all_queued() -> bool:
                jobs = [job for job in deployment.emulator_jobs() if job["prompt"].startswith(f"{tag} #")]
                return len(jobs) >= args.n

            deployment.wait_for("every job to be queued", all_queued, 3600, 2.0, dag_id=DAG_ID)
        queued_s = time.monotonic() - started
        deployment.wait_for_run(DAG_ID, run_id, timeout_s=3600)
        wall_s = time.monotonic() - started
        ended_at = time.time()
        httpx.delete(f"{deployment.emulator_url}/_emulator/faults", timeout=10)
        found = assert_each_video_once(cluster, tag, args.n)

    last_finish = max(job["finishes_at"] for job in found.jobs)
    first_queue = min(job["created_at"] for job in found.jobs)
    floor_s = last_finish - first_queue
    drain_s = ended_at - last_finish
    durations = found.durations()
    faults = found.faults("/video/queue") + found.faults("/video/retrieve")
    result = {
        "videos": args.n,
        "wall_s": round(wall_s, 1),
        "tasks_per_min": round(args.n / (wall_s / 60), 1),
        "all_queued_s": round(queued_s, 1),
        "floor_s": round(floor_s, 1),
        "wall_over_floor": round(wall_s / floor_s, 2),
        "drain_after_last_job_s": round(drain_s, 1),
        "job_seconds": [round(min(durations)), round(max(durations))],
        "faults": {str(status): n for status, n in sorted(faults.items())},
        "deployment": "PostgreSQL 15, Redis, CeleryExecutor: 2 workers x concurrency 4, 2 triggerers",
    }
    save_result("scale_batch", result)
    print(
        table(
            ["videos", "wall time", "tasks/min", "all queued after", "floor", "wall / floor", "drain"],
            [
                [
                    args.n,
                    f"{wall_s:.0f} s",
                    result["tasks_per_min"],
                    f"{queued_s:.0f} s",
                    f"{floor_s:.0f} s",
                    result["wall_over_floor"],
                    f"{drain_s:.0f} s",
                ]
            ],
        )
    )
    print(
        f"\n{result['deployment']}; job durations {result['job_seconds'][0]}..{result['job_seconds'][1]} s; "
        f"injected faults {result['faults']}; every video queued once, stored once, completed once after "
        "its manifest. Floor: from the first job queued to the last job finished at Venice."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
