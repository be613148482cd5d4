"""Benchmark 5: how fast the Venice page renders spend aggregates over 10,000 recorded videos.

A SQLite file (the metadata DB of a default local deployment; tables from Airflow's models) gets
``--videos`` asset events through the ``venice-videos`` alias, the way deliveries record them (20
DAGs, 5 models, 30 days), and ``--records`` job records in Airflow Variables, a tenth of them paid and
not delivered. The spend page (default range, 30 days) is then requested through FastAPI's test client
with the app's real routes, queries and templates; only the signed-in user and the auth manager's
DAG list are stubbed. Baselines measured in the same run: the aggregate SQL alone on the same DB, and
the same page over 100 videos. The videos list and the money-at-risk page are timed too.

Usage: ``python bench/plugin_page.py [--videos 10000] [--records 1000] [--rounds 30]``.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import median, percentile, save_result, table

TARGET_MS = 300.0
DAGS = [f"videos_{n:02d}" for n in range(20)]
MODELS = ["wan-2-7-text-to-video", "kling-2-6", "veo-3-1", "grok-imagine", "ltx-2"]
BATCH = 1000


def seed(path: Path, videos: int, records: int) -> Any:
    """Create the DB at ``path`` and record ``videos`` deliveries and ``records`` job records."""
    from tests.unit.plugins.metadata import Seeder, job_record, make_engine

    engine = make_engine(f"sqlite:///{path}")
    seeder = Seeder(engine)
    pick = random.Random(15)
    now = datetime.now(UTC)
    rows = []
    for n in range(videos):
        rows.append(
            {
                "dag_id": DAGS[n % len(DAGS)],
                "run_id": f"scheduled__{n // len(DAGS)}",
                "task_id": "generate",
                "map_index": n % 4,
                "at": now - timedelta(seconds=(videos - n) * 30 * 86400 / videos),
                "s3_uri": f"s3://videos/{n}.mp4",
                "poster_uri": f"s3://videos/{n}.jpg",
                "model": MODELS[n % len(MODELS)],
                "queue_id": f"q{n:06d}",
                "quote_usd": round(pick.uniform(0.1, 3.0), 2),
                "duration_s": 5.0,
                "width": 1280,
                "height": 720,
            }
        )
    for start in range(0, len(rows), BATCH):
        seeder.videos(rows[start : start + BATCH])
    for n in range(records):
        stage = "queued" if n % 10 == 0 else "completed"
        task = {"dag_id": DAGS[n % len(DAGS)], "run_id": f"scheduled__{n}", "task_id": "generate"}
        at = now.timestamp() - pick.uniform(0, 29 * 86400)
        seeder.record(
            task, job_record(stage, f"r{n:06d}", quote_usd=1.0, model=MODELS[n % len(MODELS)], at=at)
        )
    return seeder


def timed(call: Callable[[], Any], rounds: int) -> list[float]:
    """Call ``call`` once to warm up, then ``rounds`` times; return the times in ms."""
    call()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure(seeder: Any, rounds: int) -> dict[str, list[float]]:
    """Time the aggregate SQL alone and the three pages on one DB."""
    from fastapi.testclient import TestClient

    from airflow_provider_venice.plugins.events import VideoFilter, delivered_spend
    from tests.unit.plugins.metadata import page_app

    today = datetime.now(UTC).date()
    where = VideoFilter(set(DAGS), since=today - timedelta(days=29), until=today)

    def sql() -> None:
        with seeder.sessions() as session:
            delivered_spend(session, where)

    client = TestClient(page_app(seeder.sessions, set(DAGS)))

    def get(path: str) -> Callable[[], None]:
        def call() -> None:
            response = client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")

        return call

    return {
        "aggregate_sql": timed(sql, rounds),
        "spend_page": timed(get("/spend"), rounds),
        "videos_page": timed(get("/"), rounds),
        "at_risk_page": timed(get("/at-risk"), rounds),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    for name in ("httpx", "httpx2"):  # the test client logs every request it makes
        logging.getLogger(name).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="venice-page-bench-") as tmp:
        started = time.perf_counter()
        big = seed(Path(tmp) / "big.db", args.videos, args.records)
        small = seed(Path(tmp) / "small.db", 100, 10)
        seeded_s = time.perf_counter() - started
        results = {"big": measure(big, args.rounds), "small": measure(small, args.rounds)}
    med = {size: {name: median(times) for name, times in found.items()} for size, found in results.items()}
    p95 = {
        size: {name: percentile(times, 95) for name, times in found.items()}
        for size, found in results.items()
    }
    spend = med["big"]["spend_page"]
    rows = [
        [f"{name} ({size})", med[size][name], p95[size][name]]
        for size in ("small", "big")
        for name in ("aggregate_sql", "spend_page", "videos_page", "at_risk_page")
    ]
    print(
        f"SQLite file DB, tables from Airflow's models; big: {args.videos} videos + {args.records} job "
        f"records, small: 100 videos + 10 records (seeded in {seeded_s:.1f} s); {args.rounds} rounds each\n"
    )
    print(table(["what (DB)", "median ms", "p95 ms"], rows))
    ratios = {
        "spend_page_vs_aggregate_sql": spend / med["big"]["aggregate_sql"],
        "spend_page_10k_vs_100": spend / med["small"]["spend_page"],
    }
    print()
    print(table(["ratio", "value"], [[name, value] for name, value in ratios.items()]))
    verdict = "met" if spend < TARGET_MS else "MISSED"
    print(
        f"\nspend page over {args.videos} videos: {spend:.0f} ms median "
        f"(target < {TARGET_MS:.0f} ms: {verdict})"
    )
    save_result(
        "plugin_page",
        {
            "videos": args.videos,
            "records": args.records,
            "rounds": args.rounds,
            "median_ms": med,
            "p95_ms": p95,
            "ratios": ratios,
            "target_ms": TARGET_MS,
            "target_met": spend < TARGET_MS,
        },
    )
    return 0 if spend < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
