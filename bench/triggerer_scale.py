"""Benchmark 1: N VeniceVideoTriggers on one event loop, against the emulator over a socket.

For each N and each implementation (ours, and the naive baseline of ``naive_trigger.py``), a fresh
emulator process is started (``venice-emulator --job-seconds 600``), N jobs are queued in it with their
start times spread over the last 500 emulated seconds (so some are inside the window where they may
finish and are polled every few seconds, most are still far from it), and a fresh child process runs
the N triggers on one asyncio loop the way the triggerer does (one task per trigger iterating
``trigger.run()``). The child measures RSS before and after, and the lag of a probe task that sleeps
50 ms; this process samples the child's TCP connections to the emulator every second, and the
emulator's call log gives the polls per second. No job finishes during the measurement.

Usage: ``python bench/triggerer_scale.py [--n 100 500 1000 2000] [--window 15] [--burst-n 500 2000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psutil

from bench._common import (
    PY,
    admin_url,
    child_env,
    emulator_calls,
    emulator_clock_offset,
    hwm_bytes,
    percentile,
    reset_hwm,
    rss_bytes,
    save_result,
    table,
    venice_connection_env,
)

MODEL = "wan-2-7-text-to-video"
JOB_SECONDS = 600.0
SPREAD_S = 500.0
RAMP_S = 10.0
RAMP_STEPS = 50


ROW_COLUMNS = {
    "impl": "trigger",
    "mode": "start",
    "n": "N",
    "rss_per_job_kib": "RSS KiB/job",
    "peak_delta_per_job_kib": "peak KiB/job",
    "start_s": "start s",
    "start_lag_p99_ms": "start lag p99 ms",
    "start_lag_max_ms": "start lag max ms",
    "lag_p50_ms": "lag p50 ms",
    "lag_p99_ms": "lag p99 ms",
    "conn_established_max": "open conns max",
    "conn_opened_per_s": "conns opened/s",
    "time_wait_max": "TIME_WAIT max",
    "polls_per_s": "polls/s",
}
RATIO_KEYS = [
    "rss_per_job_kib",
    "start_lag_max_ms",
    "lag_p99_ms",
    "polls_per_s",
    "conn_opened_per_s",
]
RATIO_COLUMNS = {
    "n": "N",
    "mode": "start",
    "rss_per_job_kib": "KiB/job ours/naive",
    "start_lag_max_ms": "start lag max ours/naive",
    "lag_p99_ms": "lag p99 ours/naive",
    "polls_per_s": "polls/s ours/naive",
    "conn_opened_per_s": "conns opened/s ours/naive",
}


# --- the child: N triggers on one loop ------------------------------------------------------


def _make_trigger(impl: str, model: str, queue_id: str) -> Any:
    if impl == "venice":
        from airflow_provider_venice.triggers.video import VeniceVideoTrigger

        return VeniceVideoTrigger(model=model, queue_id=queue_id, deadline=time.time() + 3600)
    from bench.naive_trigger import NaiveVideoTrigger

    return NaiveVideoTrigger(model=model, queue_id=queue_id)


async def _warm_up(impl: str, base_url: str) -> None:
    """Import and initialise what every trigger needs once, so the per-job figure is per job."""
    from airflow.sdk import BaseHook

    from airflow_provider_venice.client import AsyncVeniceClient, VeniceError

    await BaseHook.aget_connection("venice_default")
    async with AsyncVeniceClient("sk-bench", base_url=base_url) as client:
        with contextlib.suppress(VeniceError):
            await client.retrieve_status(MODEL, "00000000-0000-0000-0000-000000000000")
    _make_trigger(impl, MODEL, "warm-up")


async def _child_main(  # noqa: C901 - one measurement, read top to bottom
    impl: str, mode: str, jobs: list[str], base_url: str, opts: dict[str, float], out_file: Path
) -> dict[str, Any]:
    await _warm_up(impl, base_url)
    gc.collect()
    rss_before = rss_bytes()
    reset_hwm()
    loop = asyncio.get_running_loop()
    phase = "start"
    lags: dict[str, list[float]] = {"start": [], "window": []}
    events: list[Any] = []
    opened = {"start": 0, "window": 0}
    answered = [0]
    last_tick = [time.monotonic()]
    create_connection = loop.create_connection
    send = httpx.AsyncClient.send

    async def counting_create_connection(*args: Any, **kwargs: Any) -> Any:
        if phase in opened:
            opened[phase] += 1
        return await create_connection(*args, **kwargs)

    async def counting_send(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> Any:
        response = await send(self, *args, **kwargs)
        answered[0] += 1
        return response

    loop.create_connection = counting_create_connection  # type: ignore[method-assign]
    httpx.AsyncClient.send = counting_send  # type: ignore[method-assign]

    async def probe() -> None:
        while True:
            started = loop.time()
            await asyncio.sleep(0.05)
            last_tick[0] = time.monotonic()
            if phase in lags:
                lags[phase].append(loop.time() - started - 0.05)

    async def run_trigger(trigger: Any) -> None:
        async for event in trigger.run():
            events.append(event)
            break

    probe_task = asyncio.create_task(probe())
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    if mode == "burst":
        _watchdog(started, opts["start_cap_s"], lambda: phase == "start", lags, answered, last_tick, out_file)
    tasks: list[asyncio.Task[None]] = []
    if mode == "burst":
        # Every trigger at once, as after a triggerer restart: created back to back the way Airflow's
        # TriggerRunner.create_triggers does it (one ``await asyncio.sleep(0)`` between two triggers).
        for q in jobs:
            tasks.append(asyncio.create_task(run_trigger(_make_trigger(impl, MODEL, q))))
            await asyncio.sleep(0)
    else:
        # Triggers arriving over RAMP_S, as tasks defer one after another in normal operation.
        batch = max(1, len(jobs) // RAMP_STEPS)
        for i in range(0, len(jobs), batch):
            tasks += [
                asyncio.create_task(run_trigger(_make_trigger(impl, MODEL, q))) for q in jobs[i : i + batch]
            ]
            await asyncio.sleep(RAMP_S / RAMP_STEPS)
    if mode == "burst":  # the start ends when N answers came back (or the watchdog ends it)
        while answered[0] < len(jobs):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    start_s = time.perf_counter() - started
    phase = "settle"
    await asyncio.sleep(opts["settle_s"])
    phase = "window"
    window_start = time.time()
    await asyncio.sleep(opts["window_s"])
    window_end = time.time()
    phase = "done"
    gc.collect()
    rss_after = rss_bytes()
    peak = hwm_bytes()
    for task in [*tasks, probe_task]:
        task.cancel()
    await asyncio.gather(*tasks, probe_task, return_exceptions=True)
    return {
        "complete": True,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "peak_rss": peak,
        "lags": lags["window"],
        "start_lags": lags["start"],
        "start_s": start_s,
        "answered_at_window_end": answered[0],
        "window_start": window_start,
        "window_end": window_end,
        "events": len(events),
        "event_statuses": sorted({str(e.payload.get("status")) for e in events}),
        "connections_opened": opened["window"],
        "connections_opened_start": opened["start"],
    }


def _watchdog(
    started: float,
    cap_s: float,
    starting: Any,
    lags: dict[str, list[float]],
    answered: list[int],
    last_tick: list[float],
    out_file: Path,
) -> None:
    """End the child when its start has not finished within ``cap_s``, reporting what it saw."""

    def watch() -> None:
        while time.perf_counter() - started < cap_s:
            time.sleep(0.5)
        if starting():
            stalled = time.monotonic() - last_tick[0]
            partial = {
                "complete": False,
                "cap_s": cap_s,
                "answered": answered[0],
                "start_lags": [*lags["start"], stalled],
            }
            out_file.write_text(json.dumps(partial))
            os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def child(argv: list[str]) -> None:
    impl, mode, jobs_file, out_file, base_url, settle_s, window_s, start_cap_s = argv
    jobs = json.loads(Path(jobs_file).read_text())
    opts = {"settle_s": float(settle_s), "window_s": float(window_s), "start_cap_s": float(start_cap_s)}
    result = asyncio.run(_child_main(impl, mode, jobs, base_url, opts, Path(out_file)))
    Path(out_file).write_text(json.dumps(result))


# --- the parent: emulator, jobs, sampling -------------------------------------------------


def _queue_jobs(base_url: str, n: int) -> list[str]:
    """Queue n jobs whose start times are spread over the last SPREAD_S emulated seconds."""
    ids: list[str] = []
    step_every = max(1, n // 50)
    with httpx.Client(headers={"Authorization": "Bearer sk-bench"}, timeout=30) as client:
        for i in range(n):
            response = client.post(
                f"{base_url}/video/queue",
                json={"model": MODEL, "prompt": f"bench {i}", "duration": "5s", "resolution": "720p"},
            )
            response.raise_for_status()
            ids.append(response.json()["queue_id"])
            if (i + 1) % step_every == 0:
                advance = SPREAD_S * step_every / n
                client.post(admin_url(base_url) + "/clock", json={"advance_s": advance}).raise_for_status()
    return ids


def _sample_connections(pid: int, port: int) -> tuple[int, int]:
    """(established connections of pid to port, TIME_WAIT sockets to port)."""
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0, 0
    mine = [c for c in conns if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED]
    time_wait = sum(
        1
        for c in psutil.net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_TIME_WAIT
    )
    return len(mine), time_wait


def run_case(impl: str, mode: str, n: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from airflow_provider_venice.testing.processes import start_emulator_process

    emulator = start_emulator_process(
        "--job-seconds", str(JOB_SECONDS), "--balance", "1000000000", env=child_env()
    )
    try:
        port = int(emulator.url.split(":")[2].split("/")[0])
        jobs = _queue_jobs(emulator.url, n)
        offset = emulator_clock_offset(emulator.url)
        name = f"{impl}-{mode}-{n}"
        jobs_file, out_file = workdir / f"jobs-{name}.json", workdir / f"out-{name}.json"
        jobs_file.write_text(json.dumps(jobs))
        # pacing off: this measures what the trigger and client cost per poll, against the naive loop
        # (the pacer's effect on a real triggerer is in triggerer_real.py)
        env = child_env(
            AIRFLOW_CONN_VENICE_DEFAULT=venice_connection_env(emulator.url),
            AIRFLOW__VENICE__TRIGGER_POLLS_PER_SECOND="0",
        )
        cap = args.start_cap
        command = [PY, __file__, "--child", impl, mode, str(jobs_file), str(out_file), emulator.url]
        command += [str(args.settle), str(args.window), str(cap)]
        # The triggers' log lines are written, as in a triggerer, but not kept.
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        samples: list[tuple[float, int, int]] = []
        while proc.poll() is None:
            time.sleep(1.0)
            samples.append((time.time(), *_sample_connections(proc.pid, port)))
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        if proc.returncode not in (0, 3) or not out_file.exists():
            raise RuntimeError(f"trigger child failed ({name}):\n{stderr[-3000:]}")
        out = json.loads(out_file.read_text())
        calls = emulator_calls(emulator.url) if out["complete"] else []
    finally:
        emulator.stop()
    return _summarise(impl, mode, n, out, calls, offset, samples)


def _summarise(
    impl: str, mode: str, n: int, out: dict[str, Any], calls: list[Any], offset: float, samples: list[Any]
) -> dict[str, Any]:
    start_ms = [lag * 1000 for lag in out["start_lags"]]
    row: dict[str, Any] = {
        "impl": impl,
        "mode": mode,
        "n": n,
        "complete": out["complete"],
        "start_s": out.get("start_s", float("nan")) if out["complete"] else f"> {out['cap_s']:.0f}",
        "start_lag_p99_ms": percentile(start_ms, 99),
        "start_lag_max_ms": max(start_ms, default=float("nan")),
        "answered_at_cap": None if out["complete"] else out["answered"],
    }
    nan = float("nan")
    if not out["complete"]:
        steady = [
            "rss_per_job_kib",
            "peak_delta_per_job_kib",
            "lag_p50_ms",
            "lag_p99_ms",
            "conn_opened_per_s",
        ]
        row.update(dict.fromkeys(steady, nan))
        return {**row, "conn_established_max": None, "time_wait_max": None, "polls_per_s": nan}
    start, end = out["window_start"], out["window_end"]
    polls = sum(
        1 for c in calls if c["path"].endswith("/video/retrieve") and start <= c["time"] - offset <= end
    )
    in_window = [s for s in samples if start <= s[0] <= end]
    lags_ms = [lag * 1000 for lag in out["lags"]]
    delta = out["rss_after"] - out["rss_before"]
    return {
        **row,
        "rss_before_mib": out["rss_before"] / 2**20,
        "rss_delta_mib": delta / 2**20,
        "rss_per_job_kib": delta / n / 1024,
        "peak_delta_per_job_kib": (out["peak_rss"] - out["rss_before"]) / n / 1024,
        "lag_p50_ms": percentile(lags_ms, 50),
        "lag_p99_ms": percentile(lags_ms, 99),
        "lag_max_ms": max(lags_ms, default=nan),
        "conn_established_max": max((s[1] for s in in_window), default=0),
        "time_wait_max": max((s[2] for s in in_window), default=0),
        "conn_opened_per_s": out["connections_opened"] / (end - start),
        "conn_opened_start": out["connections_opened_start"],
        "polls_per_s": polls / (end - start),
        "events": out["events"],
        "event_statuses": out["event_statuses"],
    }


def _ratio(a: Any, b: Any) -> float:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return float("nan")
    return a / b


def _report(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    by = {(r["impl"], r["mode"], r["n"]): r for r in rows}
    ratios = []
    for (impl, mode, n), naive in by.items():
        ours = by.get(("venice", mode, n))
        if impl != "naive" or ours is None:
            continue
        ratios.append(
            {
                "n": n,
                "mode": mode,
                **{key: _ratio(ours[key], naive[key]) for key in RATIO_KEYS},
            }
        )
    targets: dict[str, bool] = {}
    ramp, burst = by.get(("venice", "ramp", 2000)), by.get(("venice", "burst", 2000))
    if ramp:
        targets["ramp_rss_per_job_le_50kib"] = ramp["rss_per_job_kib"] <= 50
        targets["ramp_lag_p99_lt_100ms"] = ramp["lag_p99_ms"] < 100
        targets["ramp_connections_bounded"] = (ramp["conn_established_max"] or 0) <= 100
    if burst:
        targets["burst_completes"] = bool(burst["complete"])
        targets["burst_lag_p99_lt_100ms"] = burst["start_lag_p99_ms"] < 100
    print(table(list(ROW_COLUMNS.values()), [[r[key] for key in ROW_COLUMNS] for r in rows]))
    print()
    print(table(list(RATIO_COLUMNS.values()), [[r[key] for key in RATIO_COLUMNS] for r in ratios]))
    print("targets (N=2000, our trigger):", targets)
    return ratios, targets


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, nargs="+", default=[100, 500, 1000, 2000], help="ramp runs of ours")
    parser.add_argument(
        "--naive-n", type=int, nargs="*", default=[100, 2000], help="ramp runs of the baseline"
    )
    parser.add_argument(
        "--burst-n", type=int, nargs="*", default=[500, 2000], help="all-at-once runs of ours"
    )
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after the start before measuring")
    parser.add_argument("--window", type=float, default=15.0, help="seconds of steady-state measurement")
    parser.add_argument("--start-cap", type=float, default=45.0, help="longest start waited for")
    args = parser.parse_args(argv)
    cases = [("venice", "ramp", n) for n in args.n] + [("naive", "ramp", n) for n in args.naive_n]
    cases += [("venice", "burst", n) for n in args.burst_n]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-trig-") as tmp:
        for impl, mode, n in cases:
            row = run_case(impl, mode, n, args, Path(tmp))
            rows.append(row)
            print(
                f"  {impl} {mode} N={n}: " + ", ".join(f"{v}={row[k]}" for k, v in ROW_COLUMNS.items()),
                flush=True,
            )
    ratios, targets = _report(rows)
    result = {"rows": rows, "ratios": ratios, "targets": targets, "args": vars(args)}
    save_result("triggerer_scale", result)
    return result


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
