"""The pieces of the end-to-end deployment: Airflow settings, processes, REST and emulator clients."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from airflow_provider_venice.testing.processes import (
    ServiceProcess,
)

ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = ROOT / "dags_examples"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
BUCKET = "venice-e2e-videos"
JOB_SECONDS = 20
STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 25
LOG_LINE_CHARS = 400
EXAMPLE_DAGS = (
    "venice_text_to_video",
    "venice_vps_step_by_step",
    "venice_new_video_catalogue",
)
# The simple auth manager's users (``name:role``): nobody gets in without logging in as one of them.
ADMIN = "admin"
VIEWER = "viewer"
USERS = {ADMIN: "admin", VIEWER: "viewer"}  # user: role
GENERATED_PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"  # the auth manager's default
PASSWORDS_FILE = "simple_auth_manager_passwords.json"
TOKEN_COOKIE = "_token"


def airflow_settings(home: Path, api_port: int) -> dict[str, str]:
    """The ``AIRFLOW__*`` settings of the test deployment, tuned for a fast and small machine."""
    api_url = f"http://127.0.0.1:{api_port}"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        # Real users with passwords written before the start (``write_passwords``); the all-admins mode
        # would let anonymous requests in (on 3.2+ its middleware logs every request in as an admin).
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
            f"{user}:{role}" for user, role in USERS.items()
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / PASSWORDS_FILE),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "AIRFLOW__CORE__FERNET_KEY": "",
        # Tasks without their own retry settings still get one quick retry (apache/airflow#71580).
        "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "1",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "5",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": api_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(24),
        "AIRFLOW__API__EXPOSE_STACKTRACE": "True",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "20",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
        "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "600",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "5",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        # A killed triggerer's triggers go to a live one once its heartbeat is this old.
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "6",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }


def write_passwords(home: Path) -> dict[str, str]:
    """Write the simple auth manager's passwords file (``{user: password}``) for ``USERS``; return it.

    The auth manager keeps a passwords file that exists at start and only adds missing users, so the
    tests know every password without reading the api-server's log.
    """
    passwords = {name: secrets.token_urlsafe(12) for name in USERS}
    path = home / PASSWORDS_FILE
    path.write_text(json.dumps(passwords) + "\n")
    path.chmod(0o600)
    return passwords


@dataclass
class AirflowProcess:
    """One Airflow component in its own process group, logging to a file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group (the component and the children it spawned)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(_shorten(line) for line in text.splitlines()[-lines:])


@dataclass
class Deployment:
    """A running Airflow deployment with the emulator and S3 server it talks to."""

    home: Path
    env: dict[str, str]
    api_url: str
    emulator: ServiceProcess
    s3_server: ServiceProcess
    processes: dict[str, AirflowProcess] = field(default_factory=dict)
    retired: list[AirflowProcess] = field(default_factory=list)
    # user -> password; when empty, read from the auth manager's passwords file (``password``)
    passwords: dict[str, str] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    # --- clients ----------------------------------------------------------------------------

    @property
    def emulator_url(self) -> str:
        return self.emulator.url.removesuffix("/api/v1")

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.s3_server.url,
            aws_access_key_id="e2e",
            aws_secret_access_key="e2e",
            region_name="us-east-1",
        )

    def password(self, user: str = ADMIN) -> str:
        """The password of ``user``: the one written before the start, else the auth manager's file's."""
        if user not in self.passwords:
            configured = self.env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
            path = Path(configured) if configured else self.home / GENERATED_PASSWORDS_FILE
            self.passwords.update(json.loads(path.read_text()))
        return self.passwords[user]

    def token(self, user: str = ADMIN, *, fresh: bool = False) -> str:
        """A JWT for ``user`` from ``POST /auth/token`` (what the login form does), cached per user."""
        if fresh or user not in self._tokens:
            response = httpx.post(
                f"{self.api_url}/auth/token",
                json={"username": user, "password": self.password(user)},
                timeout=30,
            )
            assert response.is_success, f"login as {user}: {response.status_code} {response.text}"
            self._tokens[user] = response.json()["access_token"]
        return self._tokens[user]

    def request(self, method: str, path: str, *, user: str | None = ADMIN, **kwargs: Any) -> httpx.Response:
        """Call any path of the api-server (``path`` relative to its root) as ``user`` (None: anonymous)."""
        url = f"{self.api_url}/{path.lstrip('/')}"
        all_admins = self.env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "").lower() == "true"
        if user is None or all_admins:
            return httpx.request(method, url, timeout=30, **kwargs)
        headers = dict(kwargs.pop("headers", None) or {})
        headers["Authorization"] = f"Bearer {self.token(user)}"
        response = httpx.request(method, url, headers=headers, timeout=30, **kwargs)
        if response.status_code == 401:  # the cached token expired: log in again, once
            headers["Authorization"] = f"Bearer {self.token(user, fresh=True)}"
            response = httpx.request(method, url, headers=headers, timeout=30, **kwargs)
        return response

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the Airflow REST API (``/api/v2``) as the admin user, with a bearer token."""
        return self.request(method, f"/api/v2{path}", **kwargs)

    def api_json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.api(method, path, **kwargs)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def emulator_calls(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.emulator_url}/_emulator/calls", timeout=10)
        response.raise_for_status()
        calls: list[dict[str, Any]] = response.json()["calls"]
        return calls

    def emulator_jobs(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.emulator_url}/_emulator/jobs", timeout=10)
        response.raise_for_status()
        jobs: list[dict[str, Any]] = response.json()["jobs"]
        return jobs

    def emulator_admin(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{self.emulator_url}/_emulator/{path}", json=body, timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    # --- processes --------------------------------------------------------------------------

    def start(self, component: str, *args: str) -> AirflowProcess:
        """Start ``airflow <component>`` in a new session; a second start keeps the old log."""
        log = self.home / "process-logs" / f"{component}-{len(self.retired) + len(self.processes)}.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [AIRFLOW, component, *args],
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = AirflowProcess(component, process, log)
        self.processes[component] = started
        return started

    def retire(self, component: str) -> AirflowProcess:
        """Forget a (killed) component; it is still stopped, by its group id, at teardown."""
        gone = self.processes.pop(component)
        self.retired.append(gone)
        return gone

    def stop_all(self) -> list[str]:
        """Stop every component by its group id; return the ones that needed SIGKILL.

        The scheduler, dag-processor and triggerers go first, while the api-server still answers the
        tasks they are finishing (the LocalExecutor waits for running tasks on SIGTERM); then the
        api-server. Each wave gets SIGTERM, one shared grace period, then SIGKILL for what is left.
        """
        everything = [*self.processes.values(), *self.retired]
        api = [process for process in everything if process.name == "api-server"]
        rest = [process for process in everything if process.name != "api-server"]
        return _stop_wave(rest) + _stop_wave(api)

    # --- waiting ----------------------------------------------------------------------------

    def diagnostics(self, dag_id: str | None = None) -> str:
        """Tails of every component's log, and of the task logs of ``dag_id``."""
        parts = []
        for process in [*self.processes.values(), *self.retired]:
            state = "running" if process.alive() else f"exited {process.process.returncode}"
            parts.append(f"----- {process.name} (pid {process.pid}, {state}) -----\n{process.tail()}")
        if dag_id is not None:
            task_logs = sorted((self.home / "logs").glob(f"dag_id={dag_id}/**/*.log"), key=_mtime)
            for task_log in task_logs[-3:]:
                lines = task_log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                text = "\n".join(_shorten(_task_log_line(line)) for line in lines)
                parts.append(f"----- task log {task_log.relative_to(self.home)} -----\n{text}")
        return "\n".join(parts)

    def wait_for(
        self,
        what: str,
        check: Callable[[], Any],
        timeout_s: float,
        interval_s: float = 1.0,
        dag_id: str | None = None,
    ) -> Any:
        """Poll ``check`` until it returns something truthy; fail with diagnostics after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            for process in self.processes.values():
                if not process.alive():
                    pytest.fail(
                        f"airflow {process.name} exited while waiting for {what}\n{self.diagnostics(dag_id)}"
                    )
            try:
                result = check()
            except (httpx.HTTPError, AssertionError, KeyError) as error:
                last_error, result = error, None
            if result:
                return result
            time.sleep(interval_s)
        pytest.fail(
            f"timed out after {timeout_s:.0f}s waiting for {what} (last error: {last_error!r})\n"
            f"{self.diagnostics(dag_id)}"
        )

    # --- DAG runs ---------------------------------------------------------------------------

    def trigger(self, dag_id: str) -> str:
        """Unpause ``dag_id`` and trigger a run through the REST API; return its run id."""
        self.api_json("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        run = self.api_json("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
        run_id: str = run["dag_run_id"]
        return run_id

    def run_state(self, dag_id: str, run_id: str) -> str:
        state: str = self.api_json("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
        return state

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        body = self.api_json("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        instances: list[dict[str, Any]] = body["task_instances"]
        return instances

    def wait_for_run(self, dag_id: str, run_id: str, timeout_s: float = 240.0) -> str:
        """Wait until the run is finished; fail with diagnostics unless it succeeded."""

        def finished() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in {"success", "failed"} else None

        state = self.wait_for(f"{dag_id} run {run_id} to finish", finished, timeout_s, dag_id=dag_id)
        if state != "success":
            instances = [
                (ti["task_id"], ti["state"], ti["try_number"]) for ti in self.task_instances(dag_id, run_id)
            ]
            pytest.fail(f"{dag_id} run {run_id} ended {state}: {instances}\n{self.diagnostics(dag_id)}")
        return state


def _stop_wave(processes: list[AirflowProcess]) -> list[str]:
    for process in processes:
        process.kill(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    killed = []
    for process in processes:
        try:
            process.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed.append(f"{process.name} (pid {process.pid})")
    for process in processes:
        process.kill(signal.SIGKILL)  # the leader if it is still there, and any child that outlived it
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.process.wait(STOP_TIMEOUT_S)
    return killed


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def _shorten(line: str) -> str:
    return line if len(line) <= LOG_LINE_CHARS else line[:LOG_LINE_CHARS] + " ..."


def _task_log_line(line: str) -> str:
    """A task log line (JSON) as ``level event [exception]``, for failure messages."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    if not isinstance(entry, dict):
        return line
    errors = [
        f"{error.get('exc_type')}: {error.get('exc_value')}" for error in entry.get("error_detail") or []
    ]
    return " ".join(
        str(part) for part in (entry.get("timestamp"), entry.get("level"), entry.get("event"), *errors)
    )


def clean_environment() -> dict[str, str]:
    """This process's environment without any Airflow or AWS settings of the caller."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "AWS_"))
        and key not in {"AIRFLOW_HOME", "AIRFLOW_CONFIG"}
    }
