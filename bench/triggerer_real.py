"""Benchmark: Venice sensors held by ONE real ``airflow triggerer`` on PostgreSQL (issue 14).

Starts the scale deployment of ``tests/scale/cluster.py`` (PostgreSQL, Redis, one Celery worker, one
triggerer, the emulator) with a generated DAG folder, then:

1. **Worker CPU per wait.** ``--waits`` runs of a one-sensor DAG deferring from the worker, and as many
   of the same sensor with ``start_from_trigger=True``; each job finishes ~20 s after it was queued.
   The worker's CPU seconds (its process tree, reaped children included) per wait, less its idle rate.
2. **Held triggers.** For each N (1,000 and 5,000) and each kind (Airflow's ``DateTimeSensorAsync``,
   the baseline, and ``VeniceVideoSensor``), N tasks are deferred straight from the scheduler
   (``start_from_trigger``, 10 tasks per DAG run) while no triggerer runs; then a fresh triggerer
   (capacity raised) takes them all, and after it settles we measure over a window: its RSS (the
   supervisor and the runner), the loop lag of a probe trigger sleeping 50 ms on the same loop, the
   polls per second at the emulator, and PostgreSQL's commits and statements per second (once every
   trigger has started and, for Venice, has looked at its job once). Venice jobs
   are 3600 emulated seconds long, started over the last 2500, so some are near their end and polled.

Our share per task = (RSS Venice - RSS baseline) / N; Airflow's = (RSS baseline - RSS idle) / N; the
marginal share is the slope between the two N.

``--tracemalloc`` (not part of ``make bench``: tracing slows every process) says where the difference
comes from: the triggerer's runner traces its allocations, the probe trigger dumps a snapshot at the end
of each window, and the Venice snapshot is compared with the baseline's, file by file: what our
package's code allocated, and what Airflow allocated for the Venice tasks beyond the baseline's (the
deserialised DAG copy the 3.3 triggerer keeps per ``start_from_trigger`` task, for instance).

Usage: ``python bench/triggerer_real.py [--n 1000 5000] [--tracemalloc]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow.triggers.base import BaseTrigger, TriggerEvent

MODEL = "wan-2-7-text-to-video"
JOB_SECONDS = 3600.0
SPREAD_S = 2500.0
TASKS_PER_RUN = 10
PROBE_INTERVAL_S = 0.05
SETTLE_S = 20.0
WINDOW_S = 30.0
KINDS = ("datetime", "venice")
PROBE_ENV = "VENICE_BENCH_PROBE_FILE"


class LagProbeTrigger(BaseTrigger):
    """Sleeps ``interval_s`` in a loop on the triggerer's event loop; appends each lateness to ``path``."""

    def __init__(self, path: str, interval_s: float = PROBE_INTERVAL_S) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.path, self.interval_s = path, float(interval_s)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{__name__}.LagProbeTrigger", {"path": self.path, "interval_s": self.interval_s}

    async def run(self) -> Any:
        samples: list[tuple[float, float]] = []
        while True:
            start = time.monotonic()
            await asyncio.sleep(self.interval_s)
            samples.append((time.time(), time.monotonic() - start - self.interval_s))
            if len(samples) >= 20:
                with open(self.path, "a") as out:  # noqa: ASYNC230 - a few bytes a second
                    out.writelines(f"{at:.3f} {lag:.6f}\n" for at, lag in samples)
                samples.clear()
                dump_snapshot_if_asked(self.path)
        yield TriggerEvent(None)  # type: ignore[no-untyped-call]  # never reached


def dump_snapshot_if_asked(probe_path: str) -> None:
    """In a traced runner, dump a tracemalloc snapshot named in ``<probe>.snapshot`` (blocks the loop)."""
    import gc
    import tracemalloc

    request = Path(f"{probe_path}.snapshot")
    if not request.exists():
        return
    name = request.read_text().strip()
    request.unlink()
    if tracemalloc.is_tracing():
        gc.collect()
        tracemalloc.take_snapshot().dump(f"{probe_path}.{name}.tracemalloc")
    Path(f"{probe_path}.{name}.done").write_text("traced" if tracemalloc.is_tracing() else "not traced")


DAG_FILE = textwrap.dedent(
    '''
    """Benchmark DAGs of bench/triggerer_real.py (generated)."""
    import os
    from datetime import datetime

    from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
    from airflow.sdk import DAG, BaseOperator
    from airflow.triggers.base import StartTriggerArgs

    from airflow_provider_venice.operators.video import VeniceVideoQueueOperator
    from airflow_provider_venice.sensors.video import VeniceVideoSensor

    MODEL = "{model}"
    COMMON = dict(schedule=None, start_date=datetime(2024, 1, 1), catchup=False, max_active_runs=100000,
                  max_active_tasks=1000000, default_args={{"retries": 0}})


    class LagProbe(BaseOperator):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.start_trigger_args = StartTriggerArgs(
                trigger_cls="bench.triggerer_real.LagProbeTrigger", next_method="execute",
                trigger_kwargs={{"path": os.environ.get("{probe_env}", "/dev/null")}}, next_kwargs=None,
                timeout=None)
            self.start_from_trigger = True

        def execute(self, context, event=None):
            return None


    with DAG("bench_real_probe", **COMMON):
        LagProbe(task_id="probe")
    with DAG("bench_real_datetime", **COMMON):
        for i in range({tasks}):
            DateTimeSensorAsync(task_id=f"wait_{{i}}", target_time="2099-01-01T00:00:00+00:00",
                                start_from_trigger=True)
    with DAG("bench_real_venice", **COMMON):
        for i in range({tasks}):
            VeniceVideoSensor(task_id=f"wait_{{i}}", model=MODEL, timeout=7200, start_from_trigger=True,
                              queue_id="{{{{ dag_run.conf['queue_ids'][%d] }}}}" % i)
    with DAG("bench_wait_worker", **COMMON):
        VeniceVideoSensor(task_id="wait", model=MODEL, queue_id="{{{{ dag_run.conf['queue_id'] }}}}")
    with DAG("bench_wait_trigger", **COMMON):
        VeniceVideoSensor(task_id="wait", model=MODEL, queue_id="{{{{ dag_run.conf['queue_id'] }}}}",
                          start_from_trigger=True)
    with DAG("bench_xcom_trigger", **COMMON):
        queue = VeniceVideoQueueOperator(task_id="queue", model=MODEL, prompt="xcom in the triggerer",
                                         duration="5s")
        VeniceVideoSensor(task_id="wait", job=queue.output, start_from_trigger=True)
        mapped = VeniceVideoQueueOperator.partial(task_id="queue_mapped", model=MODEL, duration="5s").expand(
            prompt=["mapped one", "mapped two"])
        VeniceVideoSensor.partial(task_id="wait_mapped", start_from_trigger=True).expand(job=mapped.output)
    '''
)
DAG_IDS = (
    "bench_real_probe",
    "bench_real_datetime",
    "bench_real_venice",
    "bench_wait_worker",
    "bench_wait_trigger",
    "bench_xcom_trigger",
)


# --- measurements ------------------------------------------------------------------------------------


def tree_rss(pid: int) -> int:
    """RSS of a process and its descendants."""
    import psutil

    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants, children they already reaped included."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def pg_counters(cluster: Any) -> tuple[int, int]:
    """(commits, statements executed) so far in the airflow database."""
    [[commits]] = cluster.postgres.query("select xact_commit from pg_stat_database where datname = 'airflow'")
    [[calls]] = cluster.postgres.query("select coalesce(sum(calls), 0) from pg_stat_statements")
    return int(commits), int(float(calls))


def count(cluster: Any, sql: str) -> int:
    return int(cluster.postgres.query(sql)[0][0])


def deferred(cluster: Any, dag_id: str) -> int:
    return count(
        cluster, f"select count(*) from task_instance where dag_id = '{dag_id}' and state = 'deferred'"
    )


def probe_lags(path: Path, start: float, end: float) -> list[float]:
    if not path.exists():
        return []
    lags = []
    for line in path.read_text().splitlines():
        at, lag = line.split()
        if start <= float(at) <= end:
            lags.append(float(lag) * 1000)
    return lags


# --- the deployment ------------------------------------------------------------------------------------


def trigger_runs(cluster: Any, dag_id: str, confs: list[dict[str, Any]]) -> None:
    deployment = cluster.deployment
    deployment.api_json("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    for conf in confs:
        deployment.api_json("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})


def finish_dag(cluster: Any, dag_id: str) -> None:
    """Drop a phase's deferred tasks and their triggers, so the next triggerer holds only the next kind."""
    cluster.postgres.query(
        f"update task_instance set state = 'failed', trigger_id = null where dag_id = '{dag_id}' "
        "and state in ('deferred', 'scheduled', 'queued')"
    )
    cluster.postgres.query(
        f"update dag_run set state = 'failed' where dag_id = '{dag_id}' and state <> 'success'"
    )
    cluster.postgres.query(
        "delete from trigger where id not in "
        "(select trigger_id from task_instance where trigger_id is not null)"
    )
    cluster.deployment.api_json("PATCH", f"/dags/{dag_id}", json={"is_paused": True})


def queue_jobs(base_url: str, n: int, spread_s: float) -> list[str]:
    """Queue n jobs at the emulator, their starts spread over the last ``spread_s`` emulated seconds."""
    import httpx

    from bench._common import admin_url

    ids: list[str] = []
    step_every = max(1, n // 100)
    with httpx.Client(headers={"Authorization": "Bearer scale-api-key"}, timeout=30) as client:
        for i in range(n):
            body = {"model": MODEL, "prompt": f"held {i}", "duration": "5s", "resolution": "720p"}
            response = client.post(f"{base_url}/video/queue", json=body)
            response.raise_for_status()
            ids.append(response.json()["queue_id"])
            if spread_s and (i + 1) % step_every == 0:
                advance = spread_s * step_every / n
                client.post(admin_url(base_url) + "/clock", json={"advance_s": advance}).raise_for_status()
    return ids


def advance_clock(base_url: str, seconds: float) -> None:
    import httpx

    from bench._common import admin_url

    httpx.post(admin_url(base_url) + "/clock", json={"advance_s": seconds}, timeout=30).raise_for_status()


def stop_triggerer(cluster: Any, name: str = "triggerer-1") -> None:
    """SIGKILL the triggerer's process group and forget it; its triggers wait for the next triggerer."""
    process = cluster.deployment.processes.get(name)
    if process is not None:
        process.kill()
        process.process.wait(30)
        cluster.deployment.retire(name)


def start_triggerer(cluster: Any, name: str = "triggerer-1") -> tuple[Any, int]:
    """Start a fresh triggerer; return it and its job id, once it heartbeats (a new job row)."""
    newest = "select coalesce(max(id), 0) from job where job_type = 'TriggererJob'"
    before = count(cluster, newest)
    triggerer = cluster.start_triggerer(name)
    wait(cluster, f"{name} to heartbeat", lambda: count(cluster, newest) > before, 300, 1.0)
    return triggerer, count(cluster, newest)


def wait(cluster: Any, what: str, check: Any, timeout_s: float, interval_s: float = 2.0) -> Any:
    return cluster.deployment.wait_for(what, check, timeout_s, interval_s)


def run_states(cluster: Any, dag_id: str) -> dict[str, int]:
    rows = cluster.postgres.query(
        f"select state, count(*) from dag_run where dag_id = '{dag_id}' group by state"
    )
    return {state: int(n) for state, n in rows}


# --- phases ------------------------------------------------------------------------------------------------


def worker_cpu_per_wait(cluster: Any, waits: int) -> dict[str, Any]:
    """The same sensor deferring from the worker, then started from the triggerer: worker CPU per wait."""
    worker = cluster.workers[0]
    base_url = cluster.deployment.emulator.url
    idle_start, idle_cpu = time.monotonic(), tree_cpu(worker.pid)
    time.sleep(15)
    idle_rate = (tree_cpu(worker.pid) - idle_cpu) / (time.monotonic() - idle_start)
    result: dict[str, Any] = {"idle_cpu_per_s": idle_rate}
    for mode, dag_id in (("worker", "bench_wait_worker"), ("trigger", "bench_wait_trigger")):
        ids = queue_jobs(base_url, waits, 0)
        advance_clock(base_url, JOB_SECONDS - 25)  # each finishes ~25 s from now: a real wait
        start, cpu = time.monotonic(), tree_cpu(worker.pid)
        trigger_runs(cluster, dag_id, [{"queue_id": queue_id} for queue_id in ids])
        wait(
            cluster,
            f"{dag_id} runs to finish",
            lambda d=dag_id: (
                sum(run_states(cluster, d).values()) == waits
                and run_states(cluster, d).get("success", 0) + run_states(cluster, d).get("failed", 0)
                == waits
            ),
            600,
        )
        elapsed, used = time.monotonic() - start, tree_cpu(worker.pid) - cpu
        states = run_states(cluster, dag_id)
        result[mode] = {
            "runs": states,
            "wall_s": elapsed,
            "worker_cpu_s": used,
            "worker_cpu_s_per_wait": max(0.0, used - idle_rate * elapsed) / waits,
        }
        print(f"  {mode}: {states} in {elapsed:.0f}s, worker CPU {used:.1f}s", flush=True)
    saved = result["worker"]["worker_cpu_s_per_wait"] - result["trigger"]["worker_cpu_s_per_wait"]
    result["saved_cpu_s_per_wait"] = saved
    result["ratio_worker_vs_trigger"] = _ratio(
        result["worker"]["worker_cpu_s_per_wait"], result["trigger"]["worker_cpu_s_per_wait"]
    )
    return result


def xcom_in_triggerer(cluster: Any) -> dict[str, Any]:
    """``job=queue.output`` with start_from_trigger, unmapped and mapped: does every wait succeed?"""
    base_url = cluster.deployment.emulator.url
    where = "from task_instance where dag_id = 'bench_xcom_trigger'"
    trigger_runs(cluster, "bench_xcom_trigger", [{}])

    def finished() -> Any:
        advance_clock(base_url, JOB_SECONDS)  # every job queued so far is done from now on
        return run_states(cluster, "bench_xcom_trigger").keys() & {"success", "failed"}

    wait(cluster, "bench_xcom_trigger to finish", finished, 300)
    rows = cluster.postgres.query(f"select task_id, map_index, state, try_number {where} order by task_id")
    logs = cluster.deployment.home / "logs" / "dag_id=bench_xcom_trigger"
    notes = [
        path.name
        for path in logs.glob("**/task_id=wait_mapped/**/*.log")
        if "start_from_trigger does not apply" in path.read_text(errors="replace")
    ]
    return {
        "mapped_fallback_logged": len(notes),
        "states": {f"{task}[{index}]": f"{state} (try {tries})" for task, index, state, tries in rows},
        "run": run_states(cluster, "bench_xcom_trigger"),
    }


def take_snapshot(cluster: Any, probe: Path, name: str) -> None:
    """Ask the probe trigger for a tracemalloc snapshot of the runner; wait until it is written."""
    Path(f"{probe}.snapshot").write_text(name)
    done = Path(f"{probe}.{name}.done")
    wait(cluster, f"the {name} snapshot", done.exists, 600, 1.0)
    if done.read_text() != "traced":
        raise RuntimeError("the triggerer's runner is not tracing allocations (PYTHONTRACEMALLOC)")


def attribution(probe: Path, n: int, top: int = 8) -> dict[str, Any]:
    """Venice minus baseline allocations per task, split into our package's code and everything else."""
    import tracemalloc

    base = tracemalloc.Snapshot.load(f"{probe}.datetime-{n}.tracemalloc")
    ours = tracemalloc.Snapshot.load(f"{probe}.venice-{n}.tracemalloc")
    package = str(Path(__file__).resolve().parent.parent / "airflow_provider_venice")
    by_file = ours.compare_to(base, "filename")
    in_package = sum(stat.size_diff for stat in by_file if stat.traceback[0].filename.startswith(package))
    total = sum(stat.size_diff for stat in by_file)
    lines = [
        {"where": str(s.traceback[0]), "bytes_per_task": s.size_diff / n, "objects": s.count_diff / n}
        for s in ours.compare_to(base, "lineno")[:top]
    ]
    return {
        "n": n,
        "total_kib_per_task": total / n / 1024,
        "our_code_kib_per_task": in_package / n / 1024,
        "elsewhere_kib_per_task": (total - in_package) / n / 1024,
        "top_lines": lines,
    }


def held_phase(
    cluster: Any, kind: str, n: int, queue_ids: list[str], probe: Path, idle_rss: int, traced: bool = False
) -> dict[str, Any]:
    dag_id = f"bench_real_{kind}"
    runs = n // TASKS_PER_RUN
    confs: list[dict[str, Any]] = [{} for _ in range(runs)]
    if kind == "venice":
        confs = [{"queue_ids": queue_ids[r * TASKS_PER_RUN : (r + 1) * TASKS_PER_RUN]} for r in range(runs)]
    phase_start = time.monotonic()
    trigger_runs(cluster, dag_id, confs)
    wait(cluster, f"{n} {kind} tasks deferred", lambda: deferred(cluster, dag_id) >= n, 900)
    scheduled_s = time.monotonic() - phase_start
    triggerer, job_id = start_triggerer(cluster)
    held_sql = f"select count(*) from trigger where triggerer_id = {job_id}"
    wait(cluster, f"the triggerer to hold {n} triggers", lambda: count(cluster, held_sql) >= n + 1, 900)
    picked_s = time.monotonic() - phase_start - scheduled_s
    # settle: every trigger has started (each writes its own log file) and, for Venice, has had its first
    # look at its job (paced: 5,000 first looks take 100 s at 50 a second), then SETTLE_S more
    from bench._common import emulator_calls

    base_url = cluster.deployment.emulator.url
    calls_at_pickup = len(emulator_calls(base_url))
    logs = cluster.deployment.home / "logs" / f"dag_id={dag_id}"
    pattern = f"*/*/*.trigger.{job_id}.log"
    wait(cluster, f"{n} triggers started", lambda: len(list(logs.glob(pattern))) >= n, 900, 5)
    if kind == "venice":
        wait(cluster, f"{n} first looks", lambda: looked_at(base_url, calls_at_pickup) >= n, 900, 5)
    started_s = time.monotonic() - phase_start - scheduled_s - picked_s
    time.sleep(SETTLE_S)

    calls_before = len(emulator_calls(base_url))
    commits, statements = pg_counters(cluster)
    window_start = time.time()
    time.sleep(WINDOW_S)
    window_end = time.time()
    rss = tree_rss(triggerer.pid)
    if traced:
        take_snapshot(cluster, probe, f"{kind}-{n}")
    commits_after, statements_after = pg_counters(cluster)
    calls = emulator_calls(base_url)[calls_before:]
    polls = [c for c in calls if c["path"].endswith("/video/retrieve")]
    lags = probe_lags(probe, window_start, window_end)
    from bench._common import percentile

    row = {
        "kind": kind,
        "n": n,
        "held": count(cluster, held_sql) - 1,
        "scheduled_s": scheduled_s,
        "picked_up_s": picked_s,
        "all_started_s": started_s,
        "rss_mib": rss / 2**20,
        "rss_per_task_kib": (rss - idle_rss) / n / 1024,
        "lag_p50_ms": percentile(lags, 50),
        "lag_p99_ms": percentile(lags, 99),
        "lag_max_ms": max(lags) if lags else float("nan"),
        "lag_samples": len(lags),
        "polls_per_s": len(polls) / WINDOW_S,
        "poll_statuses": dict(Counter(str(c.get("status")) for c in polls)),
        "db_commits_per_s": (commits_after - commits) / WINDOW_S,
        "db_statements_per_s": (statements_after - statements) / WINDOW_S,
    }
    print(
        "  " + json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True
    )
    stop_triggerer(cluster)
    finish_dag(cluster, dag_id)
    return row


def looked_at(base_url: str, since: int) -> int:
    """How many different jobs the emulator was asked about since its ``since``-th call."""
    from bench._common import emulator_calls

    retrieves = [c for c in emulator_calls(base_url)[since:] if c["path"].endswith("/video/retrieve")]
    return len({c["body"]["queue_id"] for c in retrieves if isinstance(c.get("body"), dict)})


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--waits", type=int, default=8)
    parser.add_argument("--skip-cpu", action="store_true", help="skip the worker CPU measurement")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="attribute the per-task memory (slower; not in make bench)"
    )
    args = parser.parse_args(argv)

    from bench._common import save_result, table
    from tests.scale.cluster import ClusterOptions, start_cluster

    dags = Path(tempfile.mkdtemp(prefix="venice-bench-real-dags-"))
    (dags / "bench_real.py").write_text(
        DAG_FILE.format(model=MODEL, tasks=TASKS_PER_RUN, probe_env=PROBE_ENV)
    )
    probe = dags.parent / f"{dags.name}-probe.txt"
    capacity = str(max(args.n) + 100)
    options = ClusterOptions(
        workers=1,
        triggerers=1,
        worker_concurrency=4,
        dags=dags,
        expected_dags=DAG_IDS,
        emulator_args=("--balance", "1000000000", "--job-seconds", str(int(JOB_SECONDS))),
        extra_env={
            PROBE_ENV: str(probe),
            "AIRFLOW__TRIGGERER__CAPACITY": capacity,
            "AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": capacity,
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "1000000",
            "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "100000",
            "AIRFLOW__SCHEDULER__MAX_DAGRUNS_PER_LOOP_TO_SCHEDULE": "100",
            **({"PYTHONTRACEMALLOC": "1"} if args.tracemalloc else {}),
        },
    )
    started = time.monotonic()
    with start_cluster(options) as cluster:
        print(f"deployment up in {time.monotonic() - started:.0f}s", flush=True)
        cluster.postgres.query("create extension if not exists pg_stat_statements")
        print("worker CPU per wait:", flush=True)
        cpu = worker_cpu_per_wait(cluster, args.waits) if not args.skip_cpu else {}
        xcom = xcom_in_triggerer(cluster)
        print(f"job=queue.output with start_from_trigger: {xcom}", flush=True)
        stop_triggerer(cluster)  # the held phases start their own triggerer
        trigger_runs(cluster, "bench_real_probe", [{}])
        wait(cluster, "the probe to defer", lambda: deferred(cluster, "bench_real_probe") == 1, 300)
        queue_ids = queue_jobs(cluster.deployment.emulator.url, max(args.n), SPREAD_S)
        random.Random(14).shuffle(queue_ids)  # every N gets the same mix of job ages
        idle, _ = start_triggerer(cluster)
        time.sleep(SETTLE_S)
        idle_rss = tree_rss(idle.pid)  # holding only the probe
        stop_triggerer(cluster)
        rows = [
            held_phase(cluster, kind, n, queue_ids, probe, idle_rss, args.tracemalloc)
            for n in sorted(args.n)
            for kind in KINDS
        ]
    traced = [attribution(probe, n) for n in sorted(args.n)] if args.tracemalloc else []
    by = {(row["kind"], row["n"]): row for row in rows}
    summary = []
    for n in sorted(args.n):
        base, ours = by[("datetime", n)], by[("venice", n)]
        summary.append(
            {
                "n": n,
                "airflow_kib_per_task": base["rss_per_task_kib"],
                "ours_kib_per_task": ours["rss_per_task_kib"] - base["rss_per_task_kib"],
                "rss_ratio_venice_vs_datetime": _ratio(ours["rss_mib"], base["rss_mib"]),
                "lag_p99_ms": ours["lag_p99_ms"],
                "lag_p99_ratio_vs_datetime": _ratio(ours["lag_p99_ms"], base["lag_p99_ms"]),
            }
        )
    if len(args.n) >= 2:
        lo, hi = min(args.n), max(args.n)
        slope = {k: (by[(k, hi)]["rss_mib"] - by[(k, lo)]["rss_mib"]) * 1024 / (hi - lo) for k in KINDS}
        marginal = {
            "datetime_kib_per_task": slope["datetime"],
            "venice_kib_per_task": slope["venice"],
            "ours_kib_per_task": slope["venice"] - slope["datetime"],
        }
    else:
        marginal = {}
    print(
        "\n"
        + table(
            [
                "kind",
                "N",
                "held",
                "RSS MiB",
                "KiB/task (over idle)",
                "lag p50 ms",
                "lag p99 ms",
                "polls/s",
                "DB commits/s",
                "DB statements/s",
            ],
            [
                [
                    r["kind"],
                    r["n"],
                    r["held"],
                    r["rss_mib"],
                    r["rss_per_task_kib"],
                    r["lag_p50_ms"],
                    r["lag_p99_ms"],
                    r["polls_per_s"],
                    r["db_commits_per_s"],
                    r["db_statements_per_s"],
                ]
                for r in rows
            ],
        )
    )
    print(f"\nidle triggerer RSS {idle_rss / 2**20:.0f} MiB; marginal KiB per task: {marginal}")
    for s in summary:
        print(
            f"N={s['n']}: Airflow {s['airflow_kib_per_task']:.1f} KiB/task, "
            f"ours {s['ours_kib_per_task']:.1f} "
            f"KiB/task (target <= 10); p99 lag {s['lag_p99_ms']:.1f} ms (target < 100), "
            f"x{s['lag_p99_ratio_vs_datetime']:.2f} the baseline's"
        )
    if cpu:
        w, t = cpu["worker"]["worker_cpu_s_per_wait"], cpu["trigger"]["worker_cpu_s_per_wait"]
        print(
            f"worker CPU per wait: deferring from the worker {w:.2f}s, start_from_trigger {t:.2f}s, "
            f"saved {cpu['saved_cpu_s_per_wait']:.2f}s (x{cpu['ratio_worker_vs_trigger']:.1f})"
        )
    for found in traced:
        print(
            f"\ntraced N={found['n']}: Venice - baseline {found['total_kib_per_task']:.1f} KiB/task: "
            f"{found['our_code_kib_per_task']:.1f} allocated by our package's code, "
            f"{found['elsewhere_kib_per_task']:.1f} elsewhere; largest lines (bytes/task):"
        )
        for line in found["top_lines"]:
            print(f"  {line['bytes_per_task']:8.0f}  {line['objects']:6.1f} objects  {line['where']}")
    result = {
        "idle_rss_mib": idle_rss / 2**20,
        "rows": rows,
        "summary": summary,
        "marginal": marginal,
        "worker_cpu": cpu,
        "xcom_in_triggerer": xcom,
        "tasks_per_run": TASKS_PER_RUN,
        "tracemalloc": traced,
    }
    path = save_result("triggerer_real_traced" if args.tracemalloc else "triggerer_real", result)
    print(f"saved {path}")
    return result


if __name__ == "__main__":
    main()
