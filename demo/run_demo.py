"""``make demo``: run the text-to-video example DAG end to end through Airflow, then show the result.

Offline (the default) it starts the Venice emulator and an S3-compatible server (moto) on free
loopback ports, points the ``venice_default`` and ``aws_default`` connections at them in a
project-local ``AIRFLOW_HOME`` (``.demo/airflow``), runs ``airflow dags test venice_text_to_video``,
prints where the mp4 landed and what it holds, and stops what it started.

With ``VENICE_API_KEY`` set it uses the real Venice API and your AWS settings instead (the bucket from
``VENICE_VIDEO_BUCKET``, credentials from the usual AWS environment or ``AIRFLOW_CONN_AWS_DEFAULT``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import boto3

from airflow_provider_venice.testing import probe_mp4
from airflow_provider_venice.testing.processes import start_emulator_process, start_s3_server

ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "venice_text_to_video"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
PROBE_BYTES = 4 * 1024 * 1024


def main() -> int:
    """Run the demo; return the process exit status."""
    home = ROOT / ".demo" / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags_examples"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    with ExitStack() as services:
        s3_endpoint = _connect(env, services)
        print("• Preparing the Airflow metadata database in", home, flush=True)
        _run([AIRFLOW, "db", "migrate"], env, quiet=True)
        print(f"• Running the example DAG {DAG_ID} with `airflow dags test` ...", flush=True)
        _run([AIRFLOW, "dags", "test", DAG_ID], env, quiet=False)
        _report(env["VENICE_VIDEO_BUCKET"], s3_endpoint)
    print("• Stopped the services this demo started.")
    return 0


def _connect(env: dict[str, str], services: ExitStack) -> str | None:
    """Set the connections in ``env``; start the offline services unless a real API key is given."""
    if os.environ.get("VENICE_API_KEY"):
        venice = {"conn_type": "venice", "password": env["VENICE_API_KEY"]}
        env["AIRFLOW_CONN_VENICE_DEFAULT"] = json.dumps(venice)
        env.setdefault("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws"}))
        if "VENICE_VIDEO_BUCKET" not in env:
            raise SystemExit("With VENICE_API_KEY set, also set VENICE_VIDEO_BUCKET to an S3 bucket you own.")
        print("• Using the real Venice API and your AWS account (VENICE_API_KEY is set).")
        return None
    # moto accepts any credentials; these only keep boto3 from looking for real ones.
    env.update(AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo", AWS_DEFAULT_REGION="us-east-1")  # noqa: S106
    emulator = services.enter_context(start_emulator_process("--job-seconds", "8", env=env))
    s3 = services.enter_context(start_s3_server(env=env))
    print(f"• Venice emulator (pid {emulator.pid}) at {emulator.url}")
    print(f"• S3-compatible server (moto, pid {s3.pid}) at {s3.url}")
    env["VENICE_VIDEO_BUCKET"] = "venice-videos"
    env["AIRFLOW_CONN_VENICE_DEFAULT"] = json.dumps(
        {"conn_type": "venice", "password": "demo-key", "host": emulator.url}
    )
    env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps({"conn_type": "aws", "extra": {"endpoint_url": s3.url}})
    _s3(s3.url, env).create_bucket(Bucket=env["VENICE_VIDEO_BUCKET"])
    return s3.url


def _s3(endpoint: str | None, env: dict[str, str]) -> Any:
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    return boto3.client("s3", endpoint_url=endpoint)


def _run(command: list[str], env: dict[str, str], *, quiet: bool) -> None:
    result = subprocess.run(command, env=env, capture_output=quiet, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        if quiet:
            print(result.stdout[-4000:], result.stderr[-4000:], sep="\n")
        raise SystemExit(f"`{' '.join(command[1:])}` failed with status {result.returncode}")


def _report(bucket: str, endpoint: str | None) -> None:
    """Print where the newest video of the demo DAG landed, what its manifest says, what the file says."""
    s3 = _s3(endpoint, dict(os.environ))
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"videos/{DAG_ID}/").get("Contents", [])
    videos = [item for item in listing if item["Key"].endswith(".mp4")]
    if not videos:
        raise SystemExit(f"no video found under s3://{bucket}/videos/{DAG_ID}/")
    key = max(videos, key=lambda item: item["LastModified"])["Key"]
    head = s3.head_object(Bucket=bucket, Key=key)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{key}.json")["Body"].read())
    digest = hashlib.sha256()
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1024 * 1024):
        digest.update(chunk)
    matches = (
        "matches the bytes in S3" if digest.hexdigest() == manifest["sha256"] else "DOES NOT MATCH the bytes"
    )
    start = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{PROBE_BYTES - 1}")["Body"].read()
    try:
        info = probe_mp4(start)
        shape = f"{info.duration_s:.1f}s, {info.width}x{info.height} ({info.major_brand})"
    except ValueError:
        shape = "its moov box is past the first 4 MiB; not probed"
    print("\n=== The video ===")
    print(f"  landed at   s3://{bucket}/{key}")
    print(f"  size        {head['ContentLength']:,} bytes ({head.get('ContentType')})")
    print(f"  sha256      {manifest['sha256']} ({matches})")
    print(f"  manifest    s3://{bucket}/{key}.json (written last: the delivery's commit point)")
    print(f"  the file    {shape}")
    probe = manifest.get("probe") or {}
    if probe.get("made"):
        audio = "with audio" if probe["has_audio"] else "no audio"
        print(
            f"  probe       {probe['duration_s']}s, {probe['width']}x{probe['height']} at "
            f"{probe['frame_rate']} fps, {probe['video_codec']}, {audio} (ranged reads of the stored object)"
        )
    else:
        print(f"  probe       not made: {probe.get('error')}")
    poster = manifest.get("poster")
    if poster:
        size = f"{poster['width']}x{poster['height']}, {poster['size_bytes']:,} bytes"
        print(f"  poster      {poster['s3_uri']} ({size})")
    print(f"  Venice job  {manifest['queue_id']} on {manifest['model']}")
    print(f"  paid        ${manifest['quote_usd']} (the quote checked against max_usd)\n")


if __name__ == "__main__":
    sys.exit(main())
