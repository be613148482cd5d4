"""The installed package registers with Airflow: the CLI lists it and the connection form is declared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

AIRFLOW = str(Path(sys.executable).with_name("airflow"))

_FORM = """
import json
from airflow.providers_manager import ProvidersManager
pm = ProvidersManager()
hook = pm.hooks["venice"]
print(json.dumps({
    "hook": hook.hook_class_name,
    "behaviour": pm.field_behaviours["venice"],
    "widgets": sorted(k for k in pm.connection_form_widgets if k.startswith("extra__venice__")),
}))
"""


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}


def test_airflow_providers_list_shows_the_provider(tmp_path):
    result = subprocess.run(
        [AIRFLOW, "providers", "list", "-o", "json"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    providers = {row["package_name"]: row for row in json.loads(result.stdout[result.stdout.index("[") :])}
    assert providers["airflow-provider-venice"]["version"] == "0.1.0"


def test_connection_form_has_api_key_and_base_url(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _FORM], env=_env(tmp_path), capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-2000:]
    form = json.loads(result.stdout.strip().splitlines()[-1])
    assert form["hook"] == "airflow_provider_venice.hooks.venice.VeniceHook"
    assert form["behaviour"]["relabeling"] == {"password": "API key", "host": "Base URL"}
    assert form["behaviour"]["placeholders"]["host"] == "https://api.venice.ai/api/v1"
    assert form["widgets"] == ["extra__venice__max_retries", "extra__venice__timeout_s"]
