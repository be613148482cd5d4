"""``make matrix``: the test suites on every supported Airflow and Python, each in its own virtualenv.

Cells (a virtualenv under ``.venvs/`` and a test suite; run one after the other):

* Airflow 3.1, 3.2 and 3.3 on Python 3.11: ``unit`` (``tests/unit``) and ``dags``, the tests that run
  operators and DAGs through Airflow: ``tests/integration`` (``airflow dags test`` of the integration
  DAGs, among them the retry that resumes the same job, and of every example DAG; deliveries over real
  sockets, a worker killed mid-upload and the next try) and the fault matrix of ``tests/reliability``
  (``test_fault_matrix*.py``: every fault with its retries and resumes: worker or triggerer killed,
  S3 failing then retried, cleared tasks, record writes failing) and the secrets check of real Airflow
  runs (``test_secrets_airflow.py``: the key in no log, XCom, rendered field or job record, wherever this
  Airflow keeps it). Left out: the 200-task load test (``test_load.py``, about 2.5 minutes a cell, the
  same code paths as the mapped example DAG and the fault matrix) and the in-process suites that do not
  depend on Airflow's version (bad input, secrets in-process); ``make test`` runs them on Airflow 3.3.
* Python 3.12 and 3.13 with Airflow 3.3: ``unit``. Python 3.11's unit run is the Airflow 3.3 cell's.

The newest Airflow's virtualenvs are installed from ``uv.lock`` (``uv sync --locked``), exactly the
development environment; the older Airflows' are resolved by uv from pyproject.toml with
``apache-airflow`` pinned (which also proves that pyproject's lower bound admits them) and only the few
other pins that Airflow needs, each with its reason (Airflow's own constraints files are not reachable).
A virtualenv is re-installed only when what it was installed from changed (its ``.installed`` stamp
holds a digest of pyproject.toml, uv.lock and the pins). Each cell has its own AIRFLOW_HOME in its
virtualenv and its output in ``.venvs/logs/<cell>.log``.

    python3 scripts/matrix.py                # every cell
    python3 scripts/matrix.py --only airflow-3.1 --only "python-3.13 unit"   # some cells
    python3 scripts/matrix.py --skip airflow-3.3   # all but some cells (`.ci/run`: make test just ran 3.3)
    python3 scripts/matrix.py --list

Exits non-zero when any cell (or an install) fails. Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENVS = ROOT / ".venvs"
LOGS = VENVS / "logs"
PYENV = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
PYTHONS = {"3.11": "3.11.7", "3.12": "3.12.1", "3.13": "3.13.0"}
LOCKED_AIRFLOW = "3.3.2"  # the Airflow in uv.lock; its virtualenvs are installed from the lock
CELL_TIMEOUT_S = 30 * 60

UNIT = ("tests/unit",)
DAGS = (
    "tests/integration",
    "tests/reliability/test_fault_matrix.py",
    "tests/reliability/test_fault_matrix_lifecycle.py",
    "tests/reliability/test_fault_matrix_socket.py",
    "tests/reliability/test_secrets_airflow.py",
)


@dataclass(frozen=True)
class Venv:
    """A virtualenv under ``.venvs/``: one Python, one Airflow."""

    name: str
    python: str  # major.minor, from pyenv
    airflow: str  # exact version
    pins: tuple[str, ...] = ()  # other constraints this Airflow needs (resolved venvs only), each with why

    @property
    def path(self) -> Path:
        """Where the virtualenv is."""
        return VENVS / self.name

    @property
    def interpreter(self) -> Path:
        """Its Python."""
        return self.path / "bin" / "python"

    @property
    def locked(self) -> bool:
        """Whether it is installed from uv.lock (the lock's Airflow) rather than resolved."""
        return self.airflow == LOCKED_AIRFLOW


@dataclass(frozen=True)
class Cell:
    """One test suite in one virtualenv."""

    name: str
    venv: Venv
    suite: str
    paths: tuple[str, ...]


AF31 = Venv("airflow-3.1", "3.11", "3.1.8")
AF32 = Venv(
    "airflow-3.2",
    "3.11",
    "3.2.2",
    pins=(
        # Airflow 3.2.2's execution API (used by `airflow dags test`) fails to build with FastAPI 0.137
        # and later ("needs a discriminator field"); Airflow 3.3 itself requires fastapi<0.137.
        "fastapi<0.137",
        # svcs 26.2 breaks 3.2.2's in-process execution API: "'State' object has no attribute
        # 'svcs_registry'" on the first task (3.3 works with it).
        "svcs<26.2",
    ),
)
AF33 = Venv("airflow-3.3", "3.11", LOCKED_AIRFLOW)
PY312 = Venv("python-3.12", "3.12", LOCKED_AIRFLOW)
PY313 = Venv("python-3.13", "3.13", LOCKED_AIRFLOW)

CELLS = [
    *(
        Cell(f"{venv.name} {suite}", venv, suite, paths)
        for venv in (AF31, AF32, AF33)
        for suite, paths in (("unit", UNIT), ("dags", DAGS))
    ),
    Cell("python-3.12 unit", PY312, "unit", UNIT),
    Cell("python-3.13 unit", PY313, "unit", UNIT),
]


def uv() -> list[str]:
    """Return the uv command: $UV (the Makefile passes its own), uv on PATH, else ``python -m uv``."""
    found = os.environ.get("UV") or shutil.which("uv")
    return shlex.split(found) if found else [sys.executable, "-m", "uv"]


def pyenv_python(version: str) -> Path:
    """Return the pyenv interpreter of ``version`` (major.minor); nothing is downloaded."""
    path = PYENV / PYTHONS[version] / "bin" / "python"
    if not path.exists():
        raise SystemExit(f"matrix: Python {PYTHONS[version]} not found at {path} (pyenv install it)")
    return path


def stamp_for(venv: Venv) -> str:
    """Digest of what ``venv`` is installed from: when it changes, the virtualenv is re-installed."""
    digest = hashlib.sha256()
    sources = ["pyproject.toml", "uv.lock"] if venv.locked else ["pyproject.toml"]
    for name in sources:
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes() + b"\0")
    digest.update(f"{PYTHONS[venv.python]} apache-airflow=={venv.airflow} {venv.pins} {venv.locked}".encode())
    return digest.hexdigest()


def install_commands(venv: Venv) -> list[tuple[list[str], dict[str, str]]]:
    """Return the uv commands (with their environments) that install ``venv``."""
    python = str(pyenv_python(venv.python))
    env = dict(os.environ)
    if venv.locked:
        # uv.lock, exactly as `make install` does for .venv (packages the lock does not list are removed).
        env["UV_PROJECT_ENVIRONMENT"] = str(venv.path)
        return [([*uv(), "sync", "--quiet", "--locked", "--extra", "dev", "--python", python], env)]
    constraints = VENVS / f"{venv.name}.constraints.txt"
    constraints.write_text("".join(f"{pin}\n" for pin in (f"apache-airflow=={venv.airflow}", *venv.pins)))
    return [
        ([*uv(), "venv", "--quiet", "--allow-existing", "--python", python, str(venv.path)], env),
        (
            [
                *uv(),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(venv.interpreter),
                "-e",
                ".[dev]",
                "--constraint",
                str(constraints),
            ],
            env,
        ),
    ]


def _run(command: list[str], log: Any, **kwargs: Any) -> int:
    """Run ``command`` from the repository's root, its output appended to ``log``: its exit status."""
    log.write("$ " + shlex.join(command) + "\n")
    log.flush()
    try:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False, **kwargs)  # noqa: S603
    except subprocess.TimeoutExpired:
        return -1
    return done.returncode


def install(venv: Venv) -> tuple[bool, float, str]:
    """Install ``venv`` unless its stamp says it is up to date: (ok, seconds, what happened)."""
    stamp = venv.path / ".installed"
    wanted = stamp_for(venv)
    if venv.interpreter.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return True, 0.0, "up to date"
    started = time.monotonic()
    log = LOGS / f"install-{venv.name}.log"
    with log.open("w") as out:
        for command, env in install_commands(venv):
            if _run(command, out, env=env) != 0:
                return False, time.monotonic() - started, f"install failed, see {log.relative_to(ROOT)}"
    check = "import airflow, sys; print(airflow.__version__, '%d.%d' % sys.version_info[:2])"
    found = subprocess.run(  # noqa: S603
        [str(venv.interpreter), "-c", check], capture_output=True, text=True, check=False
    ).stdout.split()[-2:]
    if found != [venv.airflow, venv.python]:
        wanted_text = f"wanted Airflow {venv.airflow} on Python {venv.python}"
        return False, time.monotonic() - started, f"installed {found}, {wanted_text}"
    stamp.write_text(wanted + "\n")
    return True, time.monotonic() - started, "installed"


def cell_env(venv: Venv) -> dict[str, str]:
    """Return the cell's environment: this one without Airflow settings, plus its own AIRFLOW_HOME."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW_", "AIRFLOW__", "VIRTUAL_ENV", "PYTHON"))
    }
    home = venv.path / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        VIRTUAL_ENV=str(venv.path),
        PATH=f"{venv.path / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


# pytest's last line: "3 failed, 97 passed, 2 skipped in 80.12s (0:01:20)" (between "=" without -q).
SUMMARY = re.compile(
    r"^=* ?(\d+ (?:passed|failed|errors?|skipped|deselected|xfailed|xpassed)\b.* in [\d.]+s\b.*?) ?=*$"
)


def run_cell(cell: Cell) -> tuple[bool, float, str, list[str]]:
    """Run the cell's pytest: (ok, seconds, pytest's summary line, its FAILED/ERROR lines)."""
    log = LOGS / f"{cell.name.replace(' ', '-')}.log"
    command = [str(cell.venv.interpreter), "-m", "pytest", *cell.paths, "-q", "-p", "no:cacheprovider"]
    started = time.monotonic()
    with log.open("w") as out:
        code = _run(command, out, env=cell_env(cell.venv), timeout=CELL_TIMEOUT_S)
    seconds = time.monotonic() - started
    lines = log.read_text(errors="replace").splitlines()
    summary = next((m.group(1) for line in reversed(lines) if (m := SUMMARY.match(line))), "")
    if code == -1:
        summary = f"timed out after {CELL_TIMEOUT_S} s; {summary}"
    problems = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return code == 0, seconds, summary or f"pytest exited {code}", problems


def minutes(seconds: float) -> str:
    """``m:ss.s``."""
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def _table(rows: list[tuple[str, ...]]) -> None:
    header = ("cell", "Python", "Airflow", "result", "time", "pytest")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, tuple("-" * width for width in widths), *rows]:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


def _say(kind: str, name: str, ok: bool, seconds: float, what: str) -> None:
    verdict = ("ok" if kind == "install" else "pass") if ok else "FAIL"
    print(f"{kind:7} {name:18} {verdict:4} {minutes(seconds):>7}  {what}", flush=True)


def run(cells: list[Cell]) -> bool:
    """Install what is needed and run ``cells``, one line each, then the table: whether all passed."""
    VENVS.mkdir(exist_ok=True)
    LOGS.mkdir(exist_ok=True)
    began = time.monotonic()
    rows: list[tuple[str, ...]] = []
    installed: dict[str, bool] = {}
    print(f"matrix: {len(cells)} cells; their output in {LOGS.relative_to(ROOT)}/", flush=True)
    for cell in cells:
        venv = cell.venv
        if venv.name not in installed:
            ok, seconds, what = install(venv)
            installed[venv.name] = ok
            _say("install", venv.name, ok, seconds, what)
        if not installed[venv.name]:
            rows.append((cell.name, venv.python, venv.airflow, "FAIL", "-", "not installed"))
            continue
        ok, seconds, summary, problems = run_cell(cell)
        _say("cell", cell.name, ok, seconds, summary)
        for line in problems[:40]:
            print(f"          {line}", flush=True)
        if len(problems) > 40:
            print(f"          ... and {len(problems) - 40} more in the log", flush=True)
        rows.append(
            (cell.name, venv.python, venv.airflow, "pass" if ok else "FAIL", minutes(seconds), summary)
        )
    passed = all(row[3] == "pass" for row in rows) and all(installed.values())
    _table(rows)
    print(f"\nmatrix: {'passed' if passed else 'FAILED'} in {minutes(time.monotonic() - began)}", flush=True)
    return passed


def main() -> int:
    """Parse the arguments, run the cells chosen: 0 when all passed."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--only", action="append", default=[], help="run this cell, or this virtualenv's cells (repeatable)"
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        help="leave out this cell, or this virtualenv's cells (repeatable)",
    )
    parser.add_argument("--list", action="store_true", help="list the cells and exit")
    args = parser.parse_args()
    cells = [
        cell
        for cell in CELLS
        if (not args.only or {cell.name, cell.venv.name} & set(args.only))
        and not {cell.name, cell.venv.name} & set(args.skip)
    ]
    if not cells:
        raise SystemExit(f"matrix: no cell matches {args.only}")
    if args.list:
        for cell in cells:
            venv = cell.venv
            print(f"{cell.name:18} Python {venv.python}  Airflow {venv.airflow}  {' '.join(cell.paths)}")
        return 0
    return 0 if run(cells) else 1


if __name__ == "__main__":
    sys.exit(main())
