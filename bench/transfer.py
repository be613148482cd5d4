"""Benchmark 3: a big video from the emulator into an S3-compatible server: throughput, memory, profile.

Each case runs in a fresh process, so its RSS is its own; all traffic is over loopback; the emulator
(``venice-emulator --video-bytes N``) and the S3 server (moto's server) are separate processes on free
127.0.0.1 ports, stopped by pid. Peak RSS growth is VmHWM minus the RSS just before the measured work
(after imports and client set-up), read from /proc/self/status.

Cases:

- ``venice``: ``VeniceVideoToS3Operator`` on a VPS job: one pass from its ``download_url`` into a
  multipart upload (checked on the way: byte count, MP4 boxes, SHA-256; S3 checks the CRC32s), then the
  probe and poster (PyAV, ranged reads) and the manifest;
- ``venice_composite``: the same with ``s3_checksum="COMPOSITE"`` (per-part CRC32s only): moto's server
  handles a full-object checksum by copying the whole object once more in memory and checksumming it
  in Python at completion, a cost of the emulated store, which this case shows apart;
- ``boto3``: ``boto3`` ``upload_fileobj`` of the same bytes from a local file (boto3's defaults: a
  CRC32 per part, a composite checksum): the baseline;
- ``boto3_full_object``: the same ``upload_fileobj`` given the file's CRC32 up front (computed before the
  clock starts), which makes it a ``FULL_OBJECT`` upload: the like-for-like baseline for ``venice``, as
  the store then does the same completion work for both;
- ``http_to_s3``: Amazon's ``HttpToS3Operator`` on the same ``download_url`` (it reads the whole body);
- the profile, where the time of ``venice`` goes: ``download`` (the same stream read and dropped),
  ``download_check`` (read and checked: byte count, MP4 boxes, SHA-256), and ``probe`` (the probe and
  poster alone, on the stored object, for a fast-started file and for one with ``moov`` after ``mdat``).

Usage: ``python bench/transfer.py [--size 1GiB] [--rounds 3]``; the long mode
``python bench/transfer.py --size 10GiB`` runs ``venice`` once, for its memory bound, into s3rver (an
S3-compatible server from the npm registry that keeps objects on disk, installed under ``bench/.cache``
with npm on first use): moto's server assembles a completed multipart object in memory twice over,
which for 10 GiB is more than this machine has. ``--store`` picks the server for any size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._common import (
    API_KEY,
    PY,
    admin_url,
    child_env,
    cpu_seconds,
    hwm_bytes,
    median,
    mib,
    reset_hwm,
    rss_bytes,
    save_result,
    table,
    venice_connection_env,
)

MODEL = "grok-imagine-text-to-video-private"  # a VPS model: its video is served at a plain download_url
BUCKET = "bench-videos"
S3_KEY = "S3RVER"  # the key pair s3rver knows (moto takes any)
CASES = (
    "venice",
    "venice_composite",
    "boto3",
    "boto3_full_object",
    "http_to_s3",
    "download",
    "download_check",
    "probe",
)
UNITS = {"": 1, "B": 1, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


def parse_size(text: str) -> int:
    """Read ``1073741824``, ``64MiB``, ``1GiB`` or ``10GiB``."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]iB|B)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1GiB, 64MiB, 1073741824)")
    return int(match.group(1)) * UNITS[(match.group(2) or "").upper()]


# --- children ---------------------------------------------------------------------------------


class _OutletEvents:
    """Stands in for the task context's ``outlet_events`` (an accessor per outlet, each with ``add``)."""

    def __getitem__(self, key: object) -> _OutletEvents:
        return self

    def add(self, *args: object, **kwargs: object) -> None:
        pass


def _child_venice(job: dict[str, Any], checksum: str = "FULL_OBJECT") -> dict[str, Any]:
    from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator

    operator = VeniceVideoToS3Operator(
        task_id="deliver",
        job=job["job"],
        s3_bucket=BUCKET,
        s3_key="venice.mp4" if checksum == "FULL_OBJECT" else "venice_composite.mp4",
        complete=False,
        replace=True,
        s3_checksum=checksum,
    )
    operator.s3_hook.get_conn()  # set-up outside the measurement, as for the other cases
    operator.hook.get_conn()
    base = _start()
    started = time.perf_counter()
    result = operator.execute({"outlet_events": _OutletEvents()})  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    return {**_end(base), "seconds": seconds, "bytes": result["size_bytes"], "probe": result["duration_s"]}


def _child_download(job: dict[str, Any], check: bool) -> dict[str, Any]:
    from airflow_provider_venice.hooks.venice import VeniceHook
    from airflow_provider_venice.lifecycle.receive import VideoReceiver

    client = VeniceHook().get_conn()
    base = _start()
    started = time.perf_counter()
    with client.open_download_url(job["job"]["download_url"]) as video:
        receiver = VideoReceiver(video.content_length, threading.Event())
        size = 0
        for chunk in video.chunks:
            if check:
                receiver.take(chunk)
            size += len(chunk)
        if check:
            receiver.finish()
    seconds = time.perf_counter() - started
    return {**_end(base), "seconds": seconds, "bytes": size}


def _child_probe(job: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_venice.lifecycle.destination import Destination, s3_hook
    from airflow_provider_venice.lifecycle.probe import probe_video

    s3 = s3_hook("aws_default").get_conn()
    runs = {}
    for key in ("faststart.mp4", "moov-at-end.mp4"):
        head = s3.head_object(Bucket=BUCKET, Key=key)
        destination = Destination(BUCKET, key, replace=True)
        base = _start()
        started = time.perf_counter()
        outcome = probe_video(s3, destination, head["ContentLength"], head["ETag"], destination.poster)
        seconds = time.perf_counter() - started
        if outcome.error:
            raise RuntimeError(f"the probe of {key} failed: {outcome.error}")
        runs[key] = {
            **_end(base),
            "seconds": seconds,
            "requests": outcome.requests,
            "read": outcome.bytes_read,
        }
    worst = max(runs.values(), key=lambda run: run["seconds"])
    return {**worst, "peak_growth": max(run["peak_growth"] for run in runs.values()), "layouts": runs,
            "bytes": job["bytes"]}  # fmt: skip


def _child_http_to_s3(job: dict[str, Any]) -> dict[str, Any]:
    from airflow.providers.amazon.aws.transfers.http_to_s3 import HttpToS3Operator

    url = httpx.URL(job["job"]["download_url"])
    operator = HttpToS3Operator(
        task_id="http_to_s3",
        http_conn_id="bench_http",
        endpoint=url.raw_path.decode(),
        s3_bucket=BUCKET,
        s3_key="http_to_s3.mp4",
        replace=True,
    )
    operator.s3_hook.get_conn()
    operator.http_hook.get_conn()
    base = _start()
    started = time.perf_counter()
    operator.execute({})  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    return {**_end(base), "seconds": seconds, "bytes": job["bytes"]}


def _child_boto3(job: dict[str, Any], full_object: bool = False) -> dict[str, Any]:
    import base64
    import zlib

    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["BENCH_S3_URL"])
    client.list_buckets()
    extra: dict[str, str] = {}
    if full_object:  # s3transfer makes a FULL_OBJECT multipart upload when given the whole-file checksum
        crc = 0
        with open(job["local_file"], "rb") as file:
            while chunk := file.read(8 * 1024 * 1024):
                crc = zlib.crc32(chunk, crc)
        extra["ChecksumCRC32"] = base64.b64encode(crc.to_bytes(4, "big")).decode()
    base = _start()
    started = time.perf_counter()
    with open(job["local_file"], "rb") as file:
        client.upload_fileobj(file, BUCKET, "boto3_full_object.mp4" if full_object else "boto3.mp4", extra)
    seconds = time.perf_counter() - started
    return {**_end(base), "seconds": seconds, "bytes": os.path.getsize(job["local_file"])}


def _start() -> tuple[int, float]:
    import gc

    gc.collect()
    reset_hwm()
    return rss_bytes(), cpu_seconds()


def _end(base: tuple[int, float]) -> dict[str, Any]:
    return {"rss_before": base[0], "peak_growth": hwm_bytes() - base[0], "cpu_s": cpu_seconds() - base[1]}


def child(case: str, job_json: str) -> None:
    job = json.loads(job_json)
    runners = {
        "venice": _child_venice,
        "venice_composite": lambda job: _child_venice(job, "COMPOSITE"),
        "boto3": _child_boto3,
        "boto3_full_object": lambda job: _child_boto3(job, full_object=True),
        "http_to_s3": _child_http_to_s3,
        "download": lambda job: _child_download(job, check=False),
        "download_check": lambda job: _child_download(job, check=True),
        "probe": _child_probe,
    }
    print("RESULT " + json.dumps(runners[case](job)), flush=True)


# --- parent -----------------------------------------------------------------------------------


def _prepare(emulator_url: str, s3_url: str, size: int, folder: Path, with_local: bool) -> dict[str, Any]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_url)
    s3.create_bucket(Bucket=BUCKET)
    with httpx.Client(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as client:
        queued = client.post(
            f"{emulator_url}/video/queue", json={"model": MODEL, "prompt": "bench", "duration": "6s"}
        )
        queued.raise_for_status()
        answer = queued.json()
        client.post(admin_url(emulator_url) + "/clock", json={"advance_s": 3600}).raise_for_status()
    job = {"model": answer["model"], "queue_id": answer["queue_id"], "download_url": answer["download_url"]}
    prepared: dict[str, Any] = {"job": job, "bytes": size}
    if not with_local:
        return prepared
    local = folder / "video.mp4"
    with httpx.stream("GET", job["download_url"], timeout=60) as response, local.open("wb") as out:
        response.raise_for_status()
        for chunk in response.iter_bytes(8 * 1024 * 1024):
            out.write(chunk)
    if local.stat().st_size != size:
        raise RuntimeError(f"the emulator served {local.stat().st_size} bytes, not {size}")
    s3.upload_file(str(local), BUCKET, "faststart.mp4")
    s3.upload_file(str(_moov_at_end_file(folder, size)), BUCKET, "moov-at-end.mp4")
    return {**prepared, "local_file": str(local)}


def _moov_at_end_file(folder: Path, size: int) -> Path:
    from airflow_provider_venice.testing.mp4 import Mp4File, VideoSpec

    path = folder / "moov-at-end.mp4"
    with path.open("wb") as out:
        for chunk in Mp4File(VideoSpec.for_request("6s", "16:9"), pad_to=size, moov_at_end=True).chunks():
            out.write(chunk)
    return path


def run_case(case: str, job: dict[str, Any], emulator_url: str, s3_url: str) -> dict[str, Any]:
    root = emulator_url.removesuffix("/api/v1")
    env = child_env(
        AIRFLOW_CONN_VENICE_DEFAULT=venice_connection_env(emulator_url),
        AIRFLOW_CONN_AWS_DEFAULT=json.dumps({"conn_type": "aws", "extra": {"endpoint_url": s3_url}}),
        AIRFLOW_CONN_BENCH_HTTP=json.dumps({"conn_type": "http", "host": root}),
        AWS_ACCESS_KEY_ID=S3_KEY,
        AWS_SECRET_ACCESS_KEY=S3_KEY,
        AWS_DEFAULT_REGION="us-east-1",
        BENCH_S3_URL=s3_url,
    )
    out = subprocess.run(
        [PY, __file__, "--child", case, json.dumps(job)], env=env, capture_output=True, text=True, check=False
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"transfer child {case} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    result["case"] = case
    return _derive(result)


def _derive(result: dict[str, Any]) -> dict[str, Any]:
    result.update(
        peak_growth_mib=mib(result["peak_growth"]),
        mib_per_s=mib(result["bytes"]) / result["seconds"],
    )
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from airflow_provider_venice.testing.processes import start_emulator_process, start_s3_server

    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=parse_size, default=1024**3, help="video size, e.g. 1GiB or 10GiB")
    parser.add_argument("--cases", nargs="+", default=None, choices=CASES)
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each case once a round, order rotated")
    parser.add_argument("--store", choices=("moto", "s3rver"), default=None, help="the S3-compatible server")
    args = parser.parse_args(argv)
    long_mode = args.size > 4 * 1024**3
    store = args.store or ("s3rver" if long_mode else "moto")
    cases = args.cases or (["venice"] if long_mode else list(CASES))
    rounds = 1 if long_mode else args.rounds
    env = child_env(AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_KEY, AWS_DEFAULT_REGION="us-east-1")
    os.environ.update(
        {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    )
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        emulator = start_emulator_process("--video-bytes", str(args.size), "--balance", "1000", env=env)
        s3 = start_s3_server(env=env) if store == "moto" else _start_s3rver(Path(tmp) / "s3rver")
        try:
            needs_local = bool({"boto3", "boto3_full_object", "probe"} & set(cases))
            job = _prepare(emulator.url, s3.url, args.size, Path(tmp), needs_local)
            for round_number in range(rounds):
                shift = round_number % len(cases)
                for case in cases[shift:] + cases[:shift]:  # no case always first
                    servers_before = cpu_seconds(emulator.pid), cpu_seconds(s3.pid)
                    result = run_case(case, job, emulator.url, s3.url)
                    result["emulator_cpu_s"] = cpu_seconds(emulator.pid) - servers_before[0]
                    result["s3_server_cpu_s"] = cpu_seconds(s3.pid) - servers_before[1]
                    result["s3_server_rss_mib"] = mib(rss_bytes(s3.pid))
                    _remove_object(s3.url, f"{case}.mp4")  # each case finds the server as it was
                    results.append(result)
                    print(
                        f"  round {round_number + 1} {case}: {result['seconds']:.2f} s, "
                        f"{result['mib_per_s']:.1f} MiB/s, "
                        f"peak RSS growth {result['peak_growth_mib']:.1f} MiB",
                        flush=True,
                    )
        finally:
            s3.stop()
            emulator.stop()
    return _report([_median_of(case, results) for case in cases], args.size, rounds, store)


S3RVER = "s3rver@3.7.1"
S3RVER_HOME = Path(__file__).resolve().parent / ".cache" / "s3rver"


def _start_s3rver(data: Path) -> Any:
    """Start s3rver (objects on disk) on a free loopback port, installing it with npm when missing."""
    from airflow_provider_venice.testing.processes import ServiceProcess, free_port, wait_until_up

    binary = S3RVER_HOME / "node_modules" / ".bin" / "s3rver"
    if not binary.exists():
        subprocess.run(["npm", "install", "--silent", "--prefix", str(S3RVER_HOME), S3RVER], check=True)
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [str(binary), "-d", str(data), "-a", "127.0.0.1", "-p", str(port), "--silent"]
    process = subprocess.Popen([*command, "--allow-mismatched-signatures"])
    url = f"http://127.0.0.1:{port}"
    wait_until_up(process, url)
    return ServiceProcess("s3rver", process, url)


def _remove_object(s3_url: str, key: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_url)
    for name in (key, f"{key}.json", f"{key}.poster.jpg"):
        s3.delete_object(Bucket=BUCKET, Key=name)


def _median_of(case: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """One case over its rounds: median times, the largest peak memory growth."""
    runs = [r for r in results if r["case"] == case]
    merged = {
        "case": case,
        "bytes": runs[0]["bytes"],
        "seconds": median([r["seconds"] for r in runs]),
        "peak_growth": max(r["peak_growth"] for r in runs),
        "s3_server_rss_mib": max(r["s3_server_rss_mib"] for r in runs),
        "rounds_seconds": [r["seconds"] for r in runs],
        **{name: median([r[name] for r in runs]) for name in ("cpu_s", "emulator_cpu_s", "s3_server_cpu_s")},
    }
    if case == "probe":
        merged["layouts"] = runs[-1]["layouts"]
    return _derive(merged)


def _report(results: list[dict[str, Any]], size: int, rounds: int, store: str) -> dict[str, Any]:
    by = {r["case"]: r for r in results}
    boto = by.get("boto3")
    boto_full = by.get("boto3_full_object")
    rows = []
    for r in results:
        if r["case"] == "probe":
            continue
        r["throughput_vs_boto3"] = r["mib_per_s"] / boto["mib_per_s"] if boto else float("nan")
        r["throughput_vs_boto3_full_object"] = (
            r["mib_per_s"] / boto_full["mib_per_s"] if boto_full else float("nan")
        )
        rows.append([
            r["case"], r["seconds"], r["mib_per_s"], r["throughput_vs_boto3"],
            r["throughput_vs_boto3_full_object"], r["peak_growth_mib"],
            r["cpu_s"], r["emulator_cpu_s"], r["s3_server_cpu_s"],
        ])  # fmt: skip
    print(f"{mib(size):.0f} MiB over loopback into {store}; median of {rounds} rounds, largest peak memory")
    print("CPU s: the transferring process, the emulator, the S3 server, during the case (2 cores in all)")
    print(table(
        ["way", "s", "MiB/s", "vs boto3", "vs boto3 full-object", "peak RSS growth MiB",
         "CPU s", "emulator CPU s", "S3 server CPU s"],
        rows,
    ))  # fmt: skip
    targets: dict[str, bool] = {}
    ours = by.get("venice")
    if ours:
        targets["peak_growth_lt_64mib"] = ours["peak_growth_mib"] < 64
        if boto:
            targets["throughput_ge_0_8x_boto3"] = ours["throughput_vs_boto3"] >= 0.8
        if boto_full:
            targets["full_object_ge_0_8x_boto3_full_object"] = ours["throughput_vs_boto3_full_object"] >= 0.8
    if (composite := by.get("venice_composite")) and boto:
        targets["composite_ge_0_8x_boto3"] = composite["throughput_vs_boto3"] >= 0.8
    if probe := by.get("probe"):
        layouts = probe["layouts"]
        print(table(
            ["probe + poster", "s", "peak RSS growth MiB", "range GETs", "KiB read"],
            [[key, run["seconds"], mib(run["peak_growth"]), run["requests"], run["read"] / 1024]
             for key, run in layouts.items()],
        ))  # fmt: skip
        targets["probe_le_2s"] = probe["seconds"] <= 2.0
        targets["probe_le_32mib"] = probe["peak_growth_mib"] <= 32
    print("targets:", targets)
    result = {"bytes": size, "rounds": rounds, "store": store, "results": results, "targets": targets}
    save_result("transfer" if size <= 4 * 1024**3 else "transfer_long", result)
    return result


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
