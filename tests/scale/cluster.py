"""A scaled-out Airflow deployment started by the tests themselves: PostgreSQL, Redis, CeleryExecutor.

``start_cluster(options)`` is a context manager that starts, on free 127.0.0.1 ports:

- PostgreSQL 15 (``initdb`` + ``postgres`` into a fresh directory under /tmp, as the ``postgres`` user
  when this process is root, since PostgreSQL refuses to run as root) as the metadata database;
- ``redis-server`` as the Celery broker;
- the Venice emulator and moto's S3-compatible server (the bucket :data:`BUCKET` is created);
- ``airflow db migrate``, then ``api-server``, ``scheduler``, ``dag-processor``, ``options.workers``
  ``celery worker`` processes and ``options.triggerers`` ``triggerer`` processes;

waits until the api-server answers, every worker is ready, every triggerer has a live job row, and the
DAGs of ``options.dags`` are parsed; and yields a :class:`Cluster`. On exit, also after a failure, it
stops every Airflow process by its process group id (SIGTERM, then SIGKILL), then Redis, the emulator
and S3 by pid, and PostgreSQL last (its postmaster by pid: it stops its own backends).

Reuse, e.g. from a benchmark::

    from tests.scale.cluster import ClusterOptions, start_cluster

    options = ClusterOptions(triggerers=1, workers=1, extra_env={"AIRFLOW__TRIGGERER__CAPACITY": "6000"})
    with start_cluster(options) as cluster:
        run_id = cluster.deployment.trigger("my_dag")
        cluster.deployment.wait_for_run("my_dag", run_id, timeout_s=900)
        cluster.postgres.query("select xact_commit from pg_stat_database where datname = 'airflow'")

What a :class:`Cluster` gives:

- ``cluster.deployment``: a :class:`tests.e2e.deployment.Deployment` (REST API, emulator admin and call
  log, ``s3()``, ``wait_for``, ``wait_for_run``, ``trigger``, ``diagnostics``); its ``processes`` are
  keyed ``api-server``, ``scheduler``, ``dag-processor``, ``worker-1``.., ``triggerer-1``..;
- ``cluster.workers`` / ``cluster.triggerers``: those :class:`AirflowProcess` handles in order
  (``kill(signal)`` signals the whole process group);
- ``cluster.restart_worker(name)`` / ``cluster.restart_triggerer(name)``: replace a killed one;
  ``cluster.revive_exited()``: start again whatever exited (what systemd or Kubernetes would do);
- ``cluster.triggerer_job_ids()``: component name -> live ``TriggererJob`` id (every component reports
  its own name as Airflow's hostname, through :mod:`tests.scale.hostname`, so ``task_instance.hostname``
  names the worker that ran a try and ``job.hostname`` the triggerer);
- ``cluster.postgres``: ``query(sql)``, ``restart()`` (``pg_ctl restart``), ``port``, ``url``.

Environment: ``options.extra_env`` is applied last to every Airflow process (e.g. triggerer capacity),
``options.emulator_args`` go to ``venice-emulator``. ``AIRFLOW_HOME`` (with every log) is a fresh
temporary directory, removed at the end unless ``options.keep_home``. Skips (``pytest.skip``) name what
is missing: PostgreSQL's server binaries, ``redis-server``, or a usable ``postgres`` user as root.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_venice.testing.processes import (
    ServiceProcess,
    free_port,
    start_emulator_process,
    start_s3_server,
)
from tests.e2e.deployment import (
    AIRFLOW,
    ROOT,
    AirflowProcess,
    Deployment,
    airflow_settings,
    clean_environment,
)

SCALE_DAGS = Path(__file__).resolve().parent / "dags"
BUCKET = "venice-scale-videos"
PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")
STARTUP_TIMEOUT_S = 240.0
COMPONENT_ENV = "VENICE_SCALE_COMPONENT"


def missing_prerequisites() -> str | None:
    """Why the cluster cannot start on this machine, or None when it can."""
    if pg_bin_dir() is None:
        return "the PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server; `make system-packages`)"
    if shutil.which("psql") is None:
        return "psql (postgresql-client) is not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return (
                "running as root, and there is no 'postgres' user to run PostgreSQL as (initdb refuses root)"
            )
    return None


def pg_bin_dir() -> Path | None:
    """The directory of ``initdb``/``pg_ctl``/``postgres``, or None."""
    for directory in PG_BIN_DIRS:
        if all((Path(directory) / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(directory)
    initdb = shutil.which("initdb")
    if initdb is not None:
        resolved = Path(initdb).resolve().parent
        if (resolved / "pg_ctl").exists() and (resolved / "postgres").exists():
            return resolved
    return None


@dataclass
class Postgres:
    """A throwaway PostgreSQL server on 127.0.0.1, owned by the ``postgres`` user when we are root."""

    directory: Path
    port: int
    bin_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the ``airflow`` database (psycopg2: a bare postgresql:// means psycopg 3)."""
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/airflow"

    def _as_owner(self) -> dict[str, Any]:
        return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}

    def start(self) -> None:
        """``initdb`` and start the server in the foreground of its own session; create the database."""
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        subprocess.run(
            [
                *(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "airflow", "-A", "trust"),
                *("-E", "UTF8", "--locale=C.UTF-8", "--no-sync"),
            ],
            check=True,
            capture_output=True,
            timeout=120,
            **self._as_owner(),
        )
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.directory),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
            "shared_preload_libraries": "pg_stat_statements",
        }
        with (self.data / "postgresql.auto.conf").open("a") as conf:
            conf.writelines(f"{name} = '{value}'\n" for name, value in settings.items())
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._as_owner(),
            )
        if os.geteuid() == 0:
            shutil.chown(self.log, "postgres", "postgres")
        self.wait_ready()
        self.query("create database airflow", database="postgres")

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not come up in {timeout_s:.0f}s:\n{self.tail()}")

    def query(self, sql: str, database: str = "airflow") -> list[list[str]]:
        """Run ``sql`` with psql; return its rows as lists of strings."""
        result = subprocess.run(
            [
                "psql",
                f"host=127.0.0.1 port={self.port} user=airflow dbname={database}",
                "-AtqF",
                "\t",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return [line.split("\t") for line in result.stdout.splitlines() if line]

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is dropped; the new postmaster daemonizes."""
        subprocess.run(
            [
                *(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log)),
                *("-w", "-t", "60", "-m", "fast", "restart"),
            ],
            check=True,
            capture_output=True,
            timeout=120,
            **self._as_owner(),
        )
        self.wait_ready()

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Fast shutdown of whichever postmaster runs now (the first one, or the one a restart left)."""
        pid = self.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGQUIT)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(30)

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


@dataclass
class ClusterOptions:
    """What to start. ``extra_env`` goes to every Airflow process, after the defaults."""

    workers: int = 2
    triggerers: int = 2
    worker_concurrency: int = 4
    dags: Path = SCALE_DAGS
    expected_dags: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    emulator_args: tuple[str, ...] = ("--balance", "1000000")
    triggerer_args: tuple[str, ...] = ()
    keep_home: bool = False  # keep AIRFLOW_HOME (logs) after the cluster stopped


@dataclass
class Cluster:
    """A running scaled-out deployment; see the module docstring."""

    deployment: Deployment
    postgres: Postgres
    redis: ServiceProcess
    options: ClusterOptions
    workers: list[AirflowProcess] = field(default_factory=list)
    triggerers: list[AirflowProcess] = field(default_factory=list)
    _started: int = 0
    _commands: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return self.deployment.env

    def start_component(self, name: str, *args: str) -> AirflowProcess:
        """Start ``airflow <args>`` as component ``name`` (its Airflow hostname), in a new session."""
        self._started += 1
        log = self.deployment.home / "process-logs" / f"{name}-{self._started}.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [AIRFLOW, *args],
                env={**self.deployment.env, COMPONENT_ENV: name},
                cwd=self.deployment.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = AirflowProcess(name, process, log)
        self._commands[name] = args
        if name in self.deployment.processes:
            self.deployment.retire(name)
        self.deployment.processes[name] = started
        return started

    def start_worker(self, name: str) -> AirflowProcess:
        # A fresh Celery node name per start: a killed worker's name may linger in the broker for a while.
        node = f"{name}-{self._started + 1}@%h"
        worker = self.start_component(
            name,
            "celery",
            "worker",
            "--concurrency",
            str(self.options.worker_concurrency),
            "--celery-hostname",
            node,
            "--skip-serve-logs",
            "--without-mingle",
            "--without-gossip",
        )
        self.workers = [w for w in self.workers if w.name != name] + [worker]
        return worker

    def start_triggerer(self, name: str) -> AirflowProcess:
        triggerer = self.start_component(name, "triggerer", "--skip-serve-logs", *self.options.triggerer_args)
        self.triggerers = [t for t in self.triggerers if t.name != name] + [triggerer]
        return triggerer

    def restart_worker(self, name: str) -> AirflowProcess:
        """Replace worker ``name`` (killed or not: it is stopped first) and wait until it is ready."""
        self._stop_one(name)
        worker = self.start_worker(name)
        self.wait_worker_ready(worker)
        return worker

    def restart_triggerer(self, name: str) -> AirflowProcess:
        """Replace triggerer ``name`` and wait until its job row is alive."""
        self._stop_one(name)
        triggerer = self.start_triggerer(name)
        self.deployment.wait_for(
            f"{name} to heartbeat", lambda: name in self.triggerer_job_ids(), STARTUP_TIMEOUT_S, 1.0
        )
        return triggerer

    def revive_exited(self) -> list[str]:
        """Start again, as a process supervisor would, every component that exited; return their names."""
        revived = []
        for name, process in list(self.deployment.processes.items()):
            if process.alive():
                continue
            self.deployment.retire(name)
            if name.startswith("worker-"):
                self.start_worker(name)
            elif name.startswith("triggerer-"):
                self.start_triggerer(name)
            else:
                self.start_component(name, *self._commands[name])
            revived.append(name)
        return revived

    def _stop_one(self, name: str) -> None:
        process = self.deployment.processes.get(name)
        if process is None:
            return
        process.kill(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.process.wait(30)
        self.deployment.retire(name)

    def wait_worker_ready(self, worker: AirflowProcess) -> None:
        self.deployment.wait_for(
            f"{worker.name} to be ready",
            lambda: b" ready." in worker.log.read_bytes(),
            STARTUP_TIMEOUT_S,
            0.5,
        )

    def triggerer_job_ids(self) -> dict[str, int]:
        """Component name -> id of its live ``TriggererJob`` (running, heartbeat within the threshold)."""
        threshold = self.env.get("AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD", "30")
        rows = self.postgres.query(
            "select hostname, max(id) from job where job_type = 'TriggererJob' and state = 'running' "
            f"and latest_heartbeat > now() - interval '{float(threshold)} seconds' group by hostname"
        )
        return {hostname: int(job_id) for hostname, job_id in rows}

    def triggerer_names(self) -> dict[int, str]:
        """Every ``TriggererJob`` id ever started -> the component that ran it."""
        rows = self.postgres.query("select id, hostname from job where job_type = 'TriggererJob'")
        return {int(job_id): hostname for job_id, hostname in rows}


def cluster_environment(home: Path, api_port: int, postgres: Postgres, redis_url: str) -> dict[str, str]:
    """The ``AIRFLOW__*`` settings of the scaled-out deployment (on top of the e2e ones)."""
    return {
        **airflow_settings(home, api_port),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "AIRFLOW__CORE__DAGS_FOLDER": str(SCALE_DAGS),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": "64",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "256",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.scale.hostname.component_name",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_PRE_PING": "True",
        "AIRFLOW__CELERY__BROKER_URL": redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{postgres.url}",
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
        # A worker killed mid-task: its task instance stops heartbeating, and the scheduler fails the try
        # (so the next try runs) after this many seconds instead of five minutes.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
        # A task whose Celery message died with its worker before it started is queued again after this.
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "8",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    }


@contextlib.contextmanager
def start_cluster(options: ClusterOptions | None = None) -> Iterator[Cluster]:
    """Start the whole deployment; stop every process (by pid or group id) at the end, whatever happens."""
    options = options or ClusterOptions()
    reason = missing_prerequisites()
    if reason is not None:
        pytest.skip(f"the scale deployment cannot start here: {reason}")
    bin_dir = pg_bin_dir()
    assert bin_dir is not None
    home = Path(tempfile.mkdtemp(prefix="venice-scale-home-"))
    pg_dir = Path(tempfile.mkdtemp(prefix="venice-scale-pg-", dir="/tmp"))
    postgres = Postgres(pg_dir, free_port(), bin_dir)
    services: list[ServiceProcess] = []
    deployment: Deployment | None = None
    try:
        postgres.start()
        redis = _start_redis(home)
        services.append(redis)
        api_port = free_port()
        env = {
            **clean_environment(),
            **cluster_environment(home, api_port, postgres, redis.url),
            "AWS_ACCESS_KEY_ID": "e2e",
            "AWS_SECRET_ACCESS_KEY": "e2e",
            "AWS_DEFAULT_REGION": "us-east-1",
            "VENICE_VIDEO_BUCKET": BUCKET,
        }
        env.update(options.extra_env)
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(options.dags)
        emulator = start_emulator_process(*options.emulator_args, env=env)
        services.append(emulator)
        s3_server = start_s3_server(env=env)
        services.append(s3_server)
        env["AIRFLOW_CONN_VENICE_DEFAULT"] = json.dumps(
            {"conn_type": "venice", "password": "scale-api-key", "host": emulator.url}
        )
        env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
            {"conn_type": "aws", "extra": {"endpoint_url": s3_server.url}}
        )
        deployment = Deployment(home, env, f"http://127.0.0.1:{api_port}", emulator, s3_server)
        deployment.s3().create_bucket(Bucket=BUCKET)
        cluster = Cluster(deployment, postgres, redis, options)

        migrate = subprocess.run(
            [AIRFLOW, "db", "migrate"],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        cluster.start_component(
            "api-server", "api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1"
        )
        cluster.start_component("scheduler", "scheduler", "--skip-serve-logs")
        cluster.start_component("dag-processor", "dag-processor")
        for number in range(1, options.workers + 1):
            cluster.start_worker(f"worker-{number}")
        for number in range(1, options.triggerers + 1):
            cluster.start_triggerer(f"triggerer-{number}")

        deployment.wait_for(
            "the api-server to answer",
            lambda: deployment.api("GET", "/monitor/health").is_success,
            STARTUP_TIMEOUT_S,
        )
        for worker in cluster.workers:
            cluster.wait_worker_ready(worker)
        names = {triggerer.name for triggerer in cluster.triggerers}
        deployment.wait_for(
            "every triggerer to heartbeat",
            lambda: names <= set(cluster.triggerer_job_ids()),
            STARTUP_TIMEOUT_S,
        )
        for dag_id in options.expected_dags:
            deployment.wait_for(
                f"DAG {dag_id} to be parsed",
                lambda dag_id=dag_id: deployment.api("GET", f"/dags/{dag_id}").is_success,
                STARTUP_TIMEOUT_S,
            )
        yield cluster
    finally:
        if deployment is not None:
            killed = deployment.stop_all()
            if killed:
                print(f"SIGKILLed after SIGTERM: {', '.join(killed)}")
        for service in reversed(services):
            service.stop()
        postgres.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)
        if not options.keep_home:
            shutil.rmtree(home, ignore_errors=True)


def _start_redis(home: Path) -> ServiceProcess:
    port = free_port()
    log = home / "redis.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--daemonize", "no", "--dir", str(home), "--protected-mode", "yes"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    redis = ServiceProcess("redis", process, f"redis://127.0.0.1:{port}/0")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ping = subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False
        )
        if ping.stdout.strip() == "PONG":
            return redis
        if process.poll() is not None:
            break
        time.sleep(0.05)
    redis.stop()
    raise RuntimeError(f"redis-server did not start: {log.read_text(errors='replace')[-2000:]}")
