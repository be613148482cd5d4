"""The example project in ``docs/examples/testing-your-dags/`` passes, run as a user's own project would be.

It is copied outside this repository (so neither this repository's pytest configuration nor its
conftest files apply) and its tests run with ``pytest tests`` in a subprocess, on this virtualenv's
Python, with the provider installed as a user installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "testing-your-dags"
RUN_TIMEOUT_S = 300


def test_the_example_project_passes_as_a_separate_project(tmp_path):
    project = tmp_path / "my-airflow-project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    # The example's conftest.py isolates Airflow from the caller's environment itself; only pytest's
    # own options are dropped so that they cannot change what runs.
    env = {key: value for key, value in os.environ.items() if key not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}

    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests"],  # what the README says, on this virtualenv
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    elapsed = time.monotonic() - started

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summary = output.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed, summary
    assert int(passed.group(1)) >= 2, summary  # the DAG-loading test and the DAG run
    assert not re.search(r"\d+ (failed|errors?|skipped)", summary), summary
    rootdir = re.search(r"^rootdir: (.+)$", output, re.MULTILINE)
    assert rootdir, output[:2000]
    assert Path(rootdir.group(1)).resolve() == project.resolve()  # its own project, not this repository
    print(f"example project: {summary} ({elapsed:.1f} s)")
