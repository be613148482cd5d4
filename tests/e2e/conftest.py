"""A real Airflow deployment for the end-to-end tests, shared by every test of this package.

The modules run in name order on the one deployment: ``test_deployment`` runs the example DAGs,
then ``test_venice_page`` looks at what they left, as a person would (the page, the links, a browser).
Nobody gets in anonymously: the simple auth manager has an admin and a viewer whose passwords are
written before the start; ``Deployment.api`` logs in as the admin and sends a bearer token.

A temporary ``AIRFLOW_HOME`` (SQLite, LocalExecutor) is migrated with ``airflow db migrate``; then
``api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` run as separate processes bound to
127.0.0.1, parsing the example DAGs of this repository. The Venice emulator and an S3-compatible
server (moto) run beside them on free loopback ports, wired in through ``AIRFLOW_CONN_*``.

Every Airflow process starts in its own session (process group) and is stopped by its process
group id at teardown, SIGTERM then SIGKILL, also when a test fails. Their logs go to files in the
temporary directory; their tails are attached to every failed wait.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from airflow_provider_venice.testing.processes import (
    ServiceProcess,
    free_port,
    start_emulator_process,
    start_s3_server,
)
from tests.e2e.deployment import (
    AIRFLOW,
    BUCKET,
    EXAMPLE_DAGS,
    JOB_SECONDS,
    STARTUP_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Deployment,
    airflow_settings,
    clean_environment,
    write_passwords,
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Attach the tails of the Airflow components' logs to every failed test that used the deployment."""
    report: pytest.TestReport = yield
    deployment = getattr(item, "funcargs", {}).get("deployment")
    if report.failed and isinstance(deployment, Deployment):
        report.sections.append(("airflow deployment logs", deployment.diagnostics()))
    return report


@pytest.fixture(scope="package")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Start the whole deployment once; stop every process by pid at the end, whatever happened."""
    home = tmp_path_factory.mktemp("airflow_e2e")
    api_port = free_port()
    env = {
        **clean_environment(),
        **airflow_settings(home, api_port),
        "AWS_ACCESS_KEY_ID": "e2e",
        "AWS_SECRET_ACCESS_KEY": "e2e",
        "AWS_DEFAULT_REGION": "us-east-1",
        "VENICE_VIDEO_BUCKET": BUCKET,
    }
    services: list[ServiceProcess] = []
    deployment: Deployment | None = None
    try:
        emulator = start_emulator_process("--job-seconds", str(JOB_SECONDS), env=env)
        services.append(emulator)
        s3_server = start_s3_server(env=env)
        services.append(s3_server)
        env["AIRFLOW_CONN_VENICE_DEFAULT"] = json.dumps(
            {"conn_type": "venice", "password": "e2e-api-key", "host": emulator.url}
        )
        env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
            {"conn_type": "aws", "extra": {"endpoint_url": s3_server.url}}
        )
        passwords = write_passwords(home)
        deployment = Deployment(
            home, env, f"http://127.0.0.1:{api_port}", emulator, s3_server, passwords=passwords
        )
        deployment.s3().create_bucket(Bucket=BUCKET)

        migrate = subprocess.run(
            [AIRFLOW, "db", "migrate"],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]

        deployment.start("api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1")
        deployment.start("scheduler", "--skip-serve-logs")
        deployment.start("dag-processor")
        deployment.start("triggerer", "--skip-serve-logs")

        deployment.wait_for(
            "the api-server to answer",
            lambda: deployment.api("GET", "/monitor/health").is_success,
            STARTUP_TIMEOUT_S,
            STOP_TIMEOUT_S,
        )
        for dag_id in EXAMPLE_DAGS:
            deployment.wait_for(
                f"DAG {dag_id} to be parsed",
                lambda dag_id=dag_id: deployment.api("GET", f"/dags/{dag_id}").is_success,
                STARTUP_TIMEOUT_S,
                STOP_TIMEOUT_S,
            )
        yield deployment
    finally:
        if deployment is not None:
            killed = deployment.stop_all()
            if killed:
                print(f"SIGKILLed after {STOP_TIMEOUT_S:.0f}s of SIGTERM: {', '.join(killed)}")
        for service in reversed(services):
            service.stop()
