"""Benchmark 3: a 1 GiB video from the emulator into an S3-compatible server, memory and throughput.

Three ways, each in its own fresh process so that its RSS is its own, all over loopback:

- ``venice``: ``VeniceVideoToS3Operator`` on a VPS job (streams the ``download_url`` into a multipart
  upload, then verifies the object and stamps its sha256 with a server-side copy, timed apart);
- ``http_to_s3``: Amazon's ``HttpToS3Operator`` on the same ``download_url`` (reads the whole body);
- ``boto3``: ``boto3`` ``upload_fileobj`` of the same bytes from a local file (boto3's defaults).

The emulator (``venice-emulator --video-bytes N``) and the S3 server (moto's server) are separate
processes on free 127.0.0.1 ports, stopped by pid. Peak RSS growth is VmHWM minus the RSS just before
the transfer (after imports and client set-up), read from /proc/self/status.

Usage: ``python bench/transfer.py [--bytes 1073741824]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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
CASES = ("venice", "http_to_s3", "boto3")


# --- children ---------------------------------------------------------------------------------


class _OutletEvents:
    """Stands in for the task context's ``outlet_events`` (an accessor per outlet, each with ``add``)."""

    def __getitem__(self, key: object) -> _OutletEvents:
        return self

    def add(self, *args: object, **kwargs: object) -> None:
        pass


def _child_venice(job: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_venice.transfers import venice_to_s3

    operator = venice_to_s3.VeniceVideoToS3Operator(
        task_id="deliver",
        model=job["model"],
        queue_id=job["queue_id"],
        download_url=job["download_url"],
        manifest_key="",
        s3_bucket=BUCKET,
        s3_key="venice.mp4",
        complete=False,
        replace=True,
    )
    operator.s3_hook.get_conn()  # set-up outside the measurement, as for the other two
    operator.hook.get_conn()
    base = _start()
    started = time.perf_counter()
    result = operator.execute({"outlet_events": _OutletEvents()})  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    return {**_end(base), "seconds": seconds, "bytes": result["size_bytes"]}


def _child_http_to_s3(job: dict[str, Any]) -> dict[str, Any]:
    from airflow.providers.amazon.aws.transfers.http_to_s3 import HttpToS3Operator

    url = httpx.URL(job["download_url"])
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


def _child_boto3(job: dict[str, Any]) -> dict[str, Any]:
    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["BENCH_S3_URL"])
    client.list_buckets()
    base = _start()
    started = time.perf_counter()
    with open(job["local_file"], "rb") as file:
        client.upload_fileobj(file, BUCKET, "boto3.mp4")
    seconds = time.perf_counter() - started
    return {**_end(base), "seconds": seconds, "bytes": os.path.getsize(job["local_file"])}


def _start() -> int:
    import gc

    gc.collect()
    reset_hwm()
    return rss_bytes()


def _end(base: int) -> dict[str, Any]:
    return {"rss_before": base, "peak_growth": hwm_bytes() - base}


def child(case: str, job_json: str) -> None:
    job = json.loads(job_json)
    runner = {
        "venice": _child_venice,
        "http_to_s3": _child_http_to_s3,
        "boto3": _child_boto3,
    }[case]
    print("RESULT " + json.dumps(runner(job)), flush=True)


# --- parent -----------------------------------------------------------------------------------


def _prepare(emulator_url: str, s3_url: str, size: int, local_file: Path) -> dict[str, Any]:
    import boto3

    boto3.client("s3", endpoint_url=s3_url).create_bucket(Bucket=BUCKET)
    with httpx.Client(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as client:
        queued = client.post(
            f"{emulator_url}/video/queue", json={"model": MODEL, "prompt": "bench", "duration": "6s"}
        )
        queued.raise_for_status()
        job = queued.json()
        client.post(admin_url(emulator_url) + "/clock", json={"advance_s": 3600}).raise_for_status()
    with httpx.stream("GET", job["download_url"], timeout=60) as response, local_file.open("wb") as out:
        response.raise_for_status()
        for chunk in response.iter_bytes(8 * 1024 * 1024):
            out.write(chunk)
    if local_file.stat().st_size != size:
        raise RuntimeError(f"the emulator served {local_file.stat().st_size} bytes, not {size}")
    return {**job, "bytes": size, "local_file": str(local_file)}


def run_case(case: str, job: dict[str, Any], emulator_url: str, s3_url: str) -> dict[str, Any]:
    root = emulator_url.removesuffix("/api/v1")
    env = child_env(
        AIRFLOW_CONN_VENICE_DEFAULT=venice_connection_env(emulator_url),
        AIRFLOW_CONN_AWS_DEFAULT=json.dumps({"conn_type": "aws", "extra": {"endpoint_url": s3_url}}),
        AIRFLOW_CONN_BENCH_HTTP=json.dumps({"conn_type": "http", "host": root}),
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
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
    upload_s = result["seconds"] - result.get("copy_seconds", 0.0)
    result.update(
        peak_growth_mib=mib(result["peak_growth"]),
        mib_per_s=mib(result["bytes"]) / result["seconds"],
        upload_mib_per_s=mib(result["bytes"]) / upload_s,
        copy_share=result.get("copy_seconds", 0.0) / result["seconds"],
    )
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from airflow_provider_venice.testing.processes import start_emulator_process, start_s3_server

    parser = argparse.ArgumentParser()
    parser.add_argument("--bytes", type=int, default=1024**3)
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each case once a round, order rotated")
    args = parser.parse_args(argv)
    env = child_env(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    os.environ.update(
        {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    )
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        emulator = start_emulator_process("--video-bytes", str(args.bytes), "--balance", "1000", env=env)
        s3 = start_s3_server(env=env)
        try:
            job = _prepare(emulator.url, s3.url, args.bytes, Path(tmp) / "video.mp4")
            for round_number in range(args.rounds):
                shift = round_number % len(args.cases)
                for case in args.cases[shift:] + args.cases[:shift]:  # no case always first
                    result = run_case(case, job, emulator.url, s3.url)
                    result["s3_server_rss_mib"] = mib(rss_bytes(s3.pid))
                    _remove_object(s3.url, f"{case}.mp4")  # each case finds the server as empty
                    results.append(result)
                    print(
                        f"  round {round_number + 1} {case}: {result['seconds']:.1f} s, "
                        f"{result['mib_per_s']:.1f} MiB/s, "
                        f"peak RSS growth {result['peak_growth_mib']:.1f} MiB",
                        flush=True,
                    )
        finally:
            s3.stop()
            emulator.stop()
    return _report([_median_of(case, results) for case in args.cases], args.bytes, args.rounds)


def _remove_object(s3_url: str, key: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=s3_url).delete_object(Bucket=BUCKET, Key=key)


def _median_of(case: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """One case over its rounds: median times, the largest peak memory growth."""
    runs = [r for r in results if r["case"] == case]
    merged = {
        "case": case,
        "bytes": runs[0]["bytes"],
        "seconds": median([r["seconds"] for r in runs]),
        "copy_seconds": median([r.get("copy_seconds", 0.0) for r in runs]),
        "peak_growth": max(r["peak_growth"] for r in runs),
        "s3_server_rss_mib": max(r["s3_server_rss_mib"] for r in runs),
        "rounds_seconds": [r["seconds"] for r in runs],
    }
    return _derive(merged)


def _report(results: list[dict[str, Any]], size: int, rounds: int) -> dict[str, Any]:
    by = {r["case"]: r for r in results}
    boto = by.get("boto3")
    rows = []
    for r in results:
        vs_boto = r["mib_per_s"] / boto["mib_per_s"] if boto else float("nan")
        upload_vs_boto = r["upload_mib_per_s"] / boto["mib_per_s"] if boto else float("nan")
        r.update(throughput_vs_boto3=vs_boto, upload_throughput_vs_boto3=upload_vs_boto)
        rows.append(
            [r["case"], r["seconds"], r.get("copy_seconds", 0.0), r["mib_per_s"], r["upload_mib_per_s"],
             vs_boto, upload_vs_boto, r["peak_growth_mib"]]
        )  # fmt: skip
    print(
        f"{mib(size):.0f} MiB over loopback into moto_server; median of {rounds} rounds, largest peak memory"
    )
    cols = ["way", "total s", "of which copy s", "MiB/s", "upload-only MiB/s", "vs boto3", "upload vs boto3",
            "peak RSS growth MiB"]  # fmt: skip
    print(table(cols, rows))
    ours = by.get("venice")
    targets = {}
    if ours:
        targets = {
            "peak_growth_lt_64mib": ours["peak_growth_mib"] < 64,
            "throughput_ge_0_8x_boto3_total": ours.get("throughput_vs_boto3", 0) >= 0.8,
            "throughput_ge_0_8x_boto3_upload_only": ours.get("upload_throughput_vs_boto3", 0) >= 0.8,
        }
    print("targets:", targets)
    result = {"bytes": size, "rounds": rounds, "results": results, "targets": targets}
    save_result("transfer", result)
    return result


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
