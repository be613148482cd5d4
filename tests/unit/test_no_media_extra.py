"""Without the ``media`` extra (no PyAV), a delivery works as before and its manifest says no probe was made.

PyAV is installed in the test environment, so each check runs in a child interpreter where ``av`` is made
unimportable before anything imports it (``sys.modules["av"] = None``: ``import av`` then raises
``ImportError``, as when the package is missing). The child delivers a video against the in-process
emulator and moto's in-process S3 (no network, no Airflow database) and prints what it found as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.integration.s3_fixtures import AWS_ENV

ROOT = Path(__file__).resolve().parents[2]
KEY = "no-media/video.mp4"

CHILD = textwrap.dedent(
    """
    import sys

    sys.modules["av"] = None  # PyAV made unimportable before anything imports it

    import json
    import os

    import boto3
    from moto import mock_aws

    from airflow_provider_venice.hooks.venice import register_transports
    from airflow_provider_venice.lifecycle.destination import Destination
    from airflow_provider_venice.lifecycle.probe import PosterSpec, probe_video
    from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator
    from airflow_provider_venice.testing import VeniceEmulator
    from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator
    from tests.integration.s3_fixtures import (
        BUCKET, REQUESTS, T2V, FakeStore, calls_to, make_context, queue_job, read_manifest, venice_connection,
    )

    KEY, OPERATOR, MOOV_AT_END = sys.argv[1], sys.argv[2], sys.argv[3] == "moov-at-end"

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        emulator = VeniceEmulator(job_seconds=0, moov_at_end=MOOV_AT_END)
        register_transports(emulator.base_url, emulator.sync_transport(), emulator.async_transport())
        os.environ["AIRFLOW_CONN_VENICE_DEFAULT"] = venice_connection(emulator.base_url)
        store = FakeStore()
        if OPERATOR == "generate":
            op = VeniceGenerateVideoOperator(
                task_id="generate", **REQUESTS[T2V], s3_bucket=BUCKET, s3_key=KEY, deferrable=False,
                window_interval_s=0.05,
            )
        else:
            job = queue_job(emulator)
            op = VeniceVideoToS3Operator(task_id="to_s3", job=job, s3_bucket=BUCKET, s3_key=KEY)
        result = op.execute(make_context(store))
        head = s3.head_object(Bucket=BUCKET, Key=KEY)
        size, etag = head["ContentLength"], head["ETag"]
        direct = probe_video(s3, Destination(BUCKET, KEY), size, etag, PosterSpec("p.jpg"))
        print(json.dumps({
            "result": result,
            "manifest": read_manifest(s3, BUCKET, KEY),
            "keys": sorted(item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])),
            "completes": len(calls_to(emulator.calls(), "/video/complete")),
            "stage": store.data["venice_job"]["stage"],
            "direct": {"probe": direct.probe, "poster": direct.poster, "error": direct.error},
            "av": repr(sys.modules.get("av", "missing")),
        }))
    """
)


def deliver_without_av(operator: str, layout: str) -> dict[str, Any]:
    env = {
        **{
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("AIRFLOW_CONN_", "AWS_"))
        },
        **AWS_ENV,
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws"}),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, KEY, operator, layout],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize(
    ("operator", "layout"),
    [("generate", "faststart"), ("to_s3", "moov-at-end")],
    ids=["generate-faststart", "to-s3-moov-at-end"],
)
def test_a_delivery_without_pyav_works_and_says_no_probe_was_made(operator: str, layout: str) -> None:
    found = deliver_without_av(operator, layout)

    assert found["av"] == "None", "av was imported after all"
    result, manifest = found["result"], found["manifest"]
    assert result["s3_uri"].endswith(KEY)
    assert result["size_bytes"] == manifest["size_bytes"] > 0
    assert found["keys"] == sorted([KEY, KEY + ".json"])  # no poster
    assert found["completes"] == 1
    assert found["stage"] == "completed"
    probe = manifest["probe"]
    assert probe["made"] is False
    assert "media" in probe["error"], probe
    assert set(probe) == {"made", "error"}
    assert manifest["poster"] is None
    assert result["poster_uri"] is None
    for name in ("duration_s", "width", "height", "frame_rate", "video_codec", "has_audio"):
        assert result[name] is None, name
    assert found["direct"] == {"probe": None, "poster": None, "error": probe["error"]}
