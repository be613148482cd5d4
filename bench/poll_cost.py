"""Benchmark: event-loop CPU per status poll of the shared async client, by connection-pool size.

A triggerer's Venice triggers share one ``AsyncVeniceClient``; every poll costs the triggerer's event
loop some CPU, and that cost bounds how many polls a second one triggerer serves without lag. httpcore
looks at every pooled connection on each request, so the pool size matters. For each size (ours,
``POOL_SIZE``, against the 20 we used before as the baseline, and a few others) a fresh client makes
``--polls`` ``retrieve_status`` calls, 200 at a time, against ``venice-emulator`` in its own process;
this process's CPU seconds (user + system) per poll are reported, with the ratio to the baseline.
Rounds alternate the sizes so that a noisy neighbour hits them alike; the median round is kept.

Usage: ``python bench/poll_cost.py [--polls 3000] [--rounds 3] [--sizes 4 8 12 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._common import API_KEY, median, save_result, table

MODEL = "wan-2-7-text-to-video"
BASELINE_POOL = 20
JOBS = 200
IN_FLIGHT = 200


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def queue_jobs(base_url: str) -> list[str]:
    with httpx.Client(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as client:
        body = {"model": MODEL, "duration": "5s", "resolution": "720p"}
        url = f"{base_url}/video/queue"
        answers = [client.post(url, json={**body, "prompt": f"poll {i}"}) for i in range(JOBS)]
        return [answer.json()["queue_id"] for answer in answers]


async def cpu_per_poll(base_url: str, queue_ids: list[str], pool: int, polls: int) -> tuple[float, float]:
    """Return (CPU ms per poll, polls per second) for a client whose pool and concurrency are ``pool``."""
    from airflow_provider_venice.client import _async, _core

    _core.POOL_SIZE = _async.POOL_SIZE = pool  # both read it when a client is made
    client = _async.AsyncVeniceClient(api_key=API_KEY, base_url=base_url)
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def poll(i: int) -> None:
        async with limit:
            await client.retrieve_status(MODEL, queue_ids[i % len(queue_ids)])

    try:
        await asyncio.gather(*(poll(i) for i in range(2 * pool)))  # open the pool's connections
        cpu, start = process_cpu(), time.monotonic()
        await asyncio.gather(*(poll(i) for i in range(polls)))
        used, elapsed = process_cpu() - cpu, time.monotonic() - start
    finally:
        await client.aclose()
    return used / polls * 1000, polls / elapsed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 12, 20])
    args = parser.parse_args(argv)

    from airflow_provider_venice.client._core import POOL_SIZE
    from airflow_provider_venice.testing.processes import start_emulator_process

    sizes = sorted({*args.sizes, POOL_SIZE, BASELINE_POOL})
    samples: dict[int, list[tuple[float, float]]] = {size: [] for size in sizes}
    with start_emulator_process("--job-seconds", "36000", "--balance", "1000000") as emulator:
        queue_ids = queue_jobs(emulator.url)
        for _ in range(args.rounds):
            for size in sizes:
                samples[size].append(asyncio.run(cpu_per_poll(emulator.url, queue_ids, size, args.polls)))
    rows = []
    for size in sizes:
        ms = median([cpu for cpu, _ in samples[size]])
        rate = median([rate for _, rate in samples[size]])
        rows.append({"pool": size, "cpu_ms_per_poll": ms, "polls_per_s": rate})
    baseline = next(row for row in rows if row["pool"] == BASELINE_POOL)["cpu_ms_per_poll"]
    for row in rows:
        row["cpu_vs_baseline"] = row["cpu_ms_per_poll"] / baseline
    print(
        table(
            ["pool (connections, in flight)", "CPU ms per poll", "polls/s", f"CPU vs pool {BASELINE_POOL}"],
            [
                [
                    f"{row['pool']}{' (ours)' if row['pool'] == POOL_SIZE else ''}",
                    row["cpu_ms_per_poll"],
                    row["polls_per_s"],
                    row["cpu_vs_baseline"],
                ]
                for row in rows
            ],
        )
    )
    ours = next(row for row in rows if row["pool"] == POOL_SIZE)
    print(
        f"\nours (pool {POOL_SIZE}): {ours['cpu_ms_per_poll']:.2f} ms of CPU per poll, "
        f"x{ours['cpu_vs_baseline']:.2f} the pool of {BASELINE_POOL}'s; "
        f"{args.polls} polls x {args.rounds} rounds per size, {IN_FLIGHT} asked for at once"
    )
    result = {"rows": rows, "pool_size": POOL_SIZE, "baseline_pool": BASELINE_POOL, "polls": args.polls}
    path = save_result("poll_cost", result)
    print(f"saved {path}")
    return result


if __name__ == "__main__":
    main()
