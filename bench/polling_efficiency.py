"""Benchmark 2: polls per job and detection latency of our polling policy vs a fixed 5 s loop.

A pure simulation on a simulated clock: each job really takes T seconds (20 s to 10 min) and Venice's
``average_execution_time`` for it is T x (1 + e) with e drawn from [-30 %, +30 %]. Our side polls at
t = 0 (the trigger's first check), and after every ``PROCESSING`` answer (``execution_duration`` = t)
waits what ``decide_next_poll`` says; the baseline polls every 5 s. A poll at t >= T sees the video.
Detection latency is the time from T to that poll. Network time is left out (it is the same for both).

Usage: ``python bench/polling_efficiency.py [--jobs 20000] [--seed 7]``.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow_provider_venice.client import DEFAULT_POLL_POLICY, JobStatus, PollPolicy, decide_next_poll
from bench._common import percentile, save_result, table

BASELINE_INTERVAL_S = 5.0
MIN_S, MAX_S = 20.0, 600.0
ERROR = 0.30
SWEEP_WINDOWS = [3.0, 4.0, 4.5, 5.0]
BUCKETS = [(20, 60), (60, 180), (180, 400), (400, 600)]


def simulate_policy(true_s: float, average_s: float, policy: PollPolicy) -> tuple[int, float]:
    """(polls, detection latency) for one job under our policy."""
    t, polls = 0.0, 0
    while True:
        polls += 1
        if t >= true_s:
            return polls, t - true_s
        status = JobStatus(
            "processing",
            average_execution_time_ms=round(average_s * 1000),
            execution_duration_ms=round(t * 1000),
        )
        decision = decide_next_poll(status, policy=policy)
        assert decision.action == "wait"
        t += decision.delay_s


def simulate_fixed(true_s: float, interval_s: float = BASELINE_INTERVAL_S) -> tuple[int, float]:
    """(polls, detection latency) for one job polled every ``interval_s`` from t = 0."""
    polls = int(true_s // interval_s) + 1
    if (polls - 1) * interval_s < true_s:
        polls += 1
    return polls, (polls - 1) * interval_s - true_s


def draw_jobs(count: int, seed: int) -> list[tuple[float, float]]:
    """(true run time, Venice's estimate): run time uniform over 20 s-10 min, estimate off by <= 30 %."""
    rng = random.Random(seed)
    jobs = []
    for _ in range(count):
        true_s = rng.uniform(MIN_S, MAX_S)
        jobs.append((true_s, true_s * (1.0 + rng.uniform(-ERROR, ERROR))))
    return jobs


def summarise(name: str, results: list[tuple[int, float]]) -> dict[str, Any]:
    polls = [p for p, _ in results]
    latency = [lat for _, lat in results]
    return {
        "policy": name,
        "polls_per_job": sum(polls) / len(polls),
        "latency_p50_s": percentile(latency, 50),
        "latency_p95_s": percentile(latency, 95),
        "latency_max_s": max(latency),
    }


def evaluate(jobs: list[tuple[float, float]], policy: PollPolicy) -> dict[str, Any]:
    ours = [simulate_policy(true_s, average_s, policy) for true_s, average_s in jobs]
    base = [simulate_fixed(true_s) for true_s, _ in jobs]
    o, b = summarise("ours", ours), summarise("fixed 5 s", base)
    buckets = []
    for low, high in BUCKETS:
        idx = [
            i
            for i, (true_s, _) in enumerate(jobs)
            if low <= true_s < high or (high == MAX_S and true_s == high)
        ]
        bo = summarise("ours", [ours[i] for i in idx])
        bb = summarise("fixed 5 s", [base[i] for i in idx])
        buckets.append(
            {
                "bucket": f"{low}-{high} s",
                "jobs": len(idx),
                "ours_polls": bo["polls_per_job"],
                "base_polls": bb["polls_per_job"],
                "polls_ratio": bo["polls_per_job"] / bb["polls_per_job"],
                "ours_p95_s": bo["latency_p95_s"],
                "base_p95_s": bb["latency_p95_s"],
            }
        )
    return {
        "ours": o,
        "baseline": b,
        "polls_ratio": o["polls_per_job"] / b["polls_per_job"],
        "p95_ratio": o["latency_p95_s"] / b["latency_p95_s"],
        "buckets": buckets,
        "targets": {
            "polls_le_40pct_of_baseline": o["polls_per_job"] <= 0.40 * b["polls_per_job"],
            "p95_latency_not_worse": o["latency_p95_s"] <= b["latency_p95_s"],
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    jobs = draw_jobs(args.jobs, args.seed)
    result = evaluate(jobs, DEFAULT_POLL_POLICY)
    rows = [
        [s["policy"], s["polls_per_job"], s["latency_p50_s"], s["latency_p95_s"], s["latency_max_s"]]
        for s in (result["ours"], result["baseline"])
    ]
    print(f"{args.jobs} simulated jobs, {MIN_S:.0f}-{MAX_S:.0f} s, estimate off by up to +-{ERROR:.0%}")
    print(table(["policy", "polls/job", "latency p50 s", "latency p95 s", "latency max s"], rows))
    print()
    print(
        table(
            ["job length", "jobs", "ours polls", "5 s polls", "ratio", "ours p95 s", "5 s p95 s"],
            [[b[k] for k in b] for b in result["buckets"]],
        )
    )
    print(
        f"polls ours/baseline = {result['polls_ratio']:.3f}; "
        f"p95 latency ours/baseline = {result['p95_ratio']:.3f}"
    )
    print("targets:", result["targets"])
    sweep = []
    for window in SWEEP_WINDOWS:
        tuned = evaluate(jobs, replace(DEFAULT_POLL_POLICY, window_interval_s=window))
        sweep.append(
            [window, tuned["polls_ratio"], tuned["ours"]["latency_p95_s"], tuned["baseline"]["latency_p95_s"]]
        )
    print()
    print("window_interval_s sweep (the other PollPolicy fields at their defaults):")
    print(table(["window_interval_s", "polls ours/5 s", "ours p95 s", "5 s p95 s"], sweep))
    result["sweep"] = [
        dict(zip(["window_interval_s", "polls_ratio", "p95_s", "base_p95_s"], r, strict=True)) for r in sweep
    ]
    result["policy"] = DEFAULT_POLL_POLICY.__dict__
    result["jobs"] = args.jobs
    save_result("polling_efficiency", result)
    return result


if __name__ == "__main__":
    main()
