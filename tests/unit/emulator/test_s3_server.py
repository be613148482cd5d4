"""The ``venice_s3_server`` fixture: moto's S3 server on a free loopback port, empty for each test."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from urllib.parse import urlsplit

import pytest

from airflow_provider_venice.testing import pytest_plugin
from airflow_provider_venice.testing.s3 import (
    TESTING_EXTRA,
    S3ServerUnavailableError,
    missing_s3_server_packages,
    require_s3_server,
)

pytest_plugins = ["pytester"]

# The plugin's fixtures, as users get them with pytest_plugins in their root conftest.py.
_venice_s3_process = pytest_plugin._venice_s3_process
venice_s3_server = pytest_plugin.venice_s3_server


def test_loading_the_plugin_imports_neither_moto_nor_boto3():
    code = (
        "import sys, airflow_provider_venice.testing.pytest_plugin\n"
        "print(sorted(m for m in ('moto', 'boto3', 'botocore', 'flask') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_serves_s3_on_a_free_loopback_port(venice_s3_server):
    url = urlsplit(venice_s3_server.endpoint_url)
    assert (url.scheme, url.hostname) == ("http", "127.0.0.1")
    assert url.port is not None
    assert url.port > 0
    bucket = venice_s3_server.create_bucket("my-video-bucket")
    s3 = venice_s3_server.client()
    s3.put_object(Bucket=bucket, Key="videos/a.mp4", Body=b"\x00\x00\x00\x18ftypisom")
    body = s3.get_object(Bucket=bucket, Key="videos/a.mp4")["Body"].read()
    assert body == b"\x00\x00\x00\x18ftypisom"


@pytest.mark.parametrize("attempt", [1, 2])
def test_each_test_starts_with_no_buckets(venice_s3_server, attempt):
    s3 = venice_s3_server.client()
    assert s3.list_buckets()["Buckets"] == []  # whatever the test before left behind is gone
    venice_s3_server.create_bucket("left-behind")


def test_moto_is_installed_here():
    assert missing_s3_server_packages() == []


def test_a_missing_server_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "flask_cors", None)  # as if moto[server] were not installed
    with pytest.raises(S3ServerUnavailableError, match=r"flask-cors is not installed") as raised:
        require_s3_server()
    assert f"pip install '{TESTING_EXTRA}'" in str(raised.value)
    assert TESTING_EXTRA == "airflow-provider-venice[testing]"


def test_the_fixture_fails_with_the_extra_named_when_moto_is_missing(pytester, monkeypatch):
    monkeypatch.setitem(sys.modules, "moto", None)
    pytester.makepyfile(
        textwrap.dedent(
            """
            def test_wants_s3(venice_s3_server):
                pass
            """
        )
    )
    result = pytester.runpytest("-p", "airflow_provider_venice.testing.pytest_plugin")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*venice_s3_server: *moto is not installed*airflow-provider-venice?testing?*"]
    )


def test_the_server_process_stops_when_the_session_ends(pytester):
    pytester.makepyfile(
        textwrap.dedent(
            """
            def test_records_the_pid(venice_s3_server):
                venice_s3_server.create_bucket("some-bucket")
                with open("pid", "w") as out:
                    out.write(str(venice_s3_server.pid))
            """
        )
    )
    result = pytester.runpytest("-p", "airflow_provider_venice.testing.pytest_plugin")
    result.assert_outcomes(passed=1)
    pid = int((pytester.path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped
