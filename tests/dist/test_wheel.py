"""The built wheel works where users install it: a clean virtual environment, no source tree in sight.

The wheel (``make dist`` passes the one it built in ``VENICE_WHEEL``; otherwise it is built here) is
installed with its ``media`` extra, and nothing of the dev extra, into a new virtual environment (Python
3.11, made by uv) in a temporary directory, pinned to the versions of ``uv.lock`` so that the install is
reproducible and served from uv's cache. Every command then runs from a directory outside the source
tree, with no ``PYTHONPATH`` and none of this repository's directories on ``PATH``: ``airflow providers
list`` lists the provider, every public name imports, ``venice-emulator`` starts on a free loopback port
and stops by pid, and an example DAG runs with ``airflow dags test`` against that emulator and an S3
server. This catches a missing ``py.typed`` or package data, a module left out of the wheel, and a
dependency that only the dev extra brought in.

``VENICE_DIST_REQUIREMENTS`` (requirements separated by spaces, e.g. ``apache-airflow==3.1.0
apache-airflow-providers-amazon==9.6.0``) installs those alongside the wheel instead of the lock's
versions: how the lower bounds of the dependencies are checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest

from airflow_provider_venice.testing.processes import start_emulator_process
from tests.integration.example_stack import (
    assert_example_delivered,
    call_counts,
    example_stack,
    run_dag,
)

pytestmark = [pytest.mark.dist, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DIST_NAME = "airflow-provider-venice"
PACKAGE = "airflow_provider_venice"
PYTHON = "3.11"
INSTALL_TIMEOUT_S = 600
# The public contract (DESIGN.md): module -> names DAG authors import.
CONTRACT = {
    "airflow_provider_venice": ["get_provider_info"],
    "airflow_provider_venice.job": ["VeniceJob"],
    "airflow_provider_venice.hooks.venice": ["VeniceHook"],
    "airflow_provider_venice.operators.video": [
        "VeniceVideoQuoteOperator",
        "VeniceVideoQueueOperator",
        "VeniceVideoCompleteOperator",
        "VeniceGenerateVideoOperator",
    ],
    "airflow_provider_venice.operators.transcription": ["VeniceVideoTranscriptionOperator"],
    "airflow_provider_venice.sensors.video": ["VeniceVideoSensor"],
    "airflow_provider_venice.triggers.video": ["VeniceVideoTrigger"],
    "airflow_provider_venice.transfers.venice_to_s3": ["VeniceVideoToS3Operator"],
    "airflow_provider_venice.testing": ["VeniceEmulator", "run_emulator"],
}
# Public modules that need what only their caller brings: the pytest plugin runs inside pytest.
NEEDS_CALLER = {"airflow_provider_venice.testing.pytest_plugin": "pytest"}

IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys

contract, needs_caller = json.loads(sys.argv[1]), json.loads(sys.argv[2])
package = importlib.import_module("airflow_provider_venice")
modules, names, skipped = [package.__name__], [], []
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    if any(part.startswith("_") for part in info.name.split(".")):
        continue  # private modules, and __main__ (which would run the emulator)
    if info.name in needs_caller:
        skipped.append(info.name)
        continue
    importlib.import_module(info.name)
    modules.append(info.name)
for module_name in modules:
    module = sys.modules[module_name]
    wanted = [*getattr(module, "__all__", ()), *contract.get(module_name, ())]
    for name in wanted:
        getattr(module, name)  # raises AttributeError for a name that is promised but missing
        names.append(f"{module_name}.{name}")
print(json.dumps({"file": package.__file__, "modules": modules, "names": names, "skipped": skipped}))
"""


def _uv() -> list[str]:
    """uv on PATH, else the copy ``make``'s bootstrap installed with pip (``python3 -m uv``)."""
    found = shutil.which("uv")
    if found:
        return [found]
    python3 = shutil.which("python3") or sys.executable
    return [python3, "-m", "uv"]


def _outside_env() -> dict[str, str]:
    """This process's environment without anything that points into the source tree or its virtualenv."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
        and not key.startswith(("AIRFLOW", "PYTEST_"))
    }
    path = [entry for entry in env.get("PATH", "").split(os.pathsep) if entry and not _inside_source(entry)]
    env["PATH"] = os.pathsep.join(path)
    return env


def _inside_source(path: str) -> bool:
    return Path(path).resolve().is_relative_to(ROOT)


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{command} failed:\n{output[-5000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``make dist`` built (``VENICE_WHEEL``), else one built now from this tree."""
    given = os.environ.get("VENICE_WHEEL")
    if given:
        return Path(given).resolve()
    out = tmp_path_factory.mktemp("dist")
    _run([*_uv(), "build", "--wheel", "--quiet", "--out-dir", str(out), str(ROOT)], out, _outside_env())
    [built] = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A clean virtual environment outside the source tree with the wheel installed; its env and paths."""
    work = tmp_path_factory.mktemp("clean")
    assert not _inside_source(str(work))
    env = _outside_env()
    venv = work / "venv"
    _run([*_uv(), "venv", "--quiet", "--python", PYTHON, str(venv)], work, env)
    python = venv / "bin" / "python"
    requirements = os.environ.get("VENICE_DIST_REQUIREMENTS", "").split()
    pins: list[str] = []
    if not requirements:  # the lock's versions of the runtime dependencies and the media extra
        constraints = work / "constraints.txt"
        export = [*_uv(), "export", "--frozen", "--no-emit-project", "--no-hashes", "--extra", "media"]
        _run([*export, "--project", str(ROOT), "--output-file", str(constraints), "--quiet"], work, env)
        pins = ["--constraint", str(constraints)]
    install = [*_uv(), "pip", "install", "--quiet", "--python", str(python), f"{wheel}[media]", *requirements]
    _run([*install, *pins], work, env, timeout=INSTALL_TIMEOUT_S)
    bin_dir = venv / "bin"
    env["PATH"] = os.pathsep.join([str(bin_dir), env["PATH"]])
    env["VIRTUAL_ENV"] = str(venv)
    run_in = work / "cwd"  # every command runs here: no source tree on sys.path through the cwd
    run_in.mkdir()
    return {"env": env, "python": str(python), "bin": bin_dir, "cwd": run_in, "work": work}


def test_wheel_and_sdist_carry_the_package_data(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [metadata] = [name for name in names if name.endswith(".dist-info/METADATA")]
        meta = archive.read(metadata).decode()
        [entry_points] = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        entries = archive.read(entry_points).decode()
    assert f"{PACKAGE}/py.typed" in names
    assert all(name.startswith((f"{PACKAGE}/", f"{PACKAGE}-")) for name in names), sorted(names)
    assert not any(name.startswith(("tests/", "dags_examples/", "bench/", "demo/")) for name in names)
    sources = {path.relative_to(ROOT).as_posix() for path in (ROOT / PACKAGE).rglob("*.py")}
    assert sources <= names, sorted(sources - names)  # no module left out
    assert "[apache_airflow_provider]" in entries, entries
    assert "venice-emulator = " in entries, entries
    assert "Requires-Dist: apache-airflow>=3.1" in meta, meta
    for python in ("3.11", "3.12", "3.13"):
        assert f"Classifier: Programming Language :: Python :: {python}" in meta
    sdists = list(wheel.parent.glob("*.tar.gz"))
    if sdists:  # make dist built both
        with tarfile.open(sdists[0]) as archive:
            members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        assert {f"{PACKAGE}/py.typed", "pyproject.toml", "README.md", "CHANGELOG.md"} <= members


def test_airflow_lists_the_provider(installed):
    home = installed["work"] / "providers_home"
    env = {**installed["env"], "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = _run([str(installed["bin"] / "airflow"), "providers", "list", "-o", "json"], installed["cwd"], env)
    listed = json.loads(out[out.index("[{") :])  # after any warnings printed before the JSON
    providers = {row["package_name"]: row for row in listed}
    assert DIST_NAME in providers, sorted(providers)
    version = _run(
        [installed["python"], "-c", f"import {PACKAGE}; print({PACKAGE}.__version__)"],
        installed["cwd"],
        installed["env"],
    )
    assert providers[DIST_NAME]["version"] == version.strip()


def test_every_public_name_imports_from_the_installed_wheel(installed):
    command = [installed["python"], "-c", IMPORT_EVERYTHING, json.dumps(CONTRACT), json.dumps(NEEDS_CALLER)]
    report = json.loads(_run(command, installed["cwd"], installed["env"]).strip().splitlines()[-1])
    package_file = Path(report["file"])
    assert "site-packages" in package_file.parts, package_file
    assert not _inside_source(str(package_file)), package_file
    assert (package_file.parent / "py.typed").is_file()
    assert sorted(report["skipped"]) == sorted(NEEDS_CALLER)
    for module, names in CONTRACT.items():
        assert module in report["modules"]
        assert {f"{module}.{name}" for name in names} <= set(report["names"])
    assert "airflow_provider_venice.client.VeniceClient" in report["names"]  # an __all__ was walked


def test_venice_emulator_console_script_starts_and_stops_by_pid(installed):
    script = str(installed["bin"] / "venice-emulator")
    with start_emulator_process(command=[script], env=installed["env"]) as emulator:
        models = httpx.get(
            f"{emulator.url}/models",
            params={"type": "video"},
            headers={"Authorization": "Bearer dist-test-key"},
            timeout=10,
        )
        assert models.status_code == 200, models.text
        assert models.json()["data"], models.json()
    assert emulator.process.returncode is not None  # stopped


def test_an_example_dag_runs_against_the_installed_emulator(installed):
    dags = installed["work"] / "dags"
    shutil.copytree(ROOT / "dags_examples", dags, ignore=shutil.ignore_patterns("__pycache__"))
    with example_stack(
        installed["work"] / "airflow_home",
        airflow=str(installed["bin"] / "airflow"),
        dags_folder=dags,
        base_env=installed["env"],
        cwd=installed["cwd"],
        emulator_command=[str(installed["bin"] / "venice-emulator")],
    ) as stack:
        calls = run_dag(stack, "venice_text_to_video")
        counts = call_counts(calls)
        assert counts[("POST", "/api/v1/video/queue", 200)] == 1
        assert counts[("POST", "/api/v1/video/complete", 200)] == 1
        assert_example_delivered(stack, "venice_text_to_video", calls, 1, before=set())
