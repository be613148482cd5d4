"""The installed package registers with Airflow: the CLI lists it and the connection form is declared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_venice.version_compat import AIRFLOW_V_3_2_PLUS

pytestmark = pytest.mark.integration

AIRFLOW = str(Path(sys.executable).with_name("airflow"))

_FORM = """
import json, sys
if sys.argv[1] == "provider-info":
    from airflow.providers_manager import ProvidersManager
    pm = ProvidersManager()
    hooks, widgets, behaviours = pm.hooks, pm.connection_form_widgets, pm.field_behaviours
else:  # Airflow 3.1: the form comes from the hook's methods, which its UI reads standing in for FAB
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
    hooks, widgets, behaviours = HookMetaService._get_hooks_with_mocked_fab()
print(json.dumps({
    "hook": hooks["venice"].hook_class_name,
    "behaviour": behaviours["venice"],
    "widgets": sorted(k for k in widgets if k.startswith("extra__venice__")),
}))
"""
# Airflow 3.2 and later read the connection form from the provider info.
FORM_SOURCE = "provider-info" if AIRFLOW_V_3_2_PLUS else "hook"


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
        [sys.executable, "-c", _FORM, FORM_SOURCE],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    form = json.loads(result.stdout.strip().splitlines()[-1])
    assert form["hook"] == "airflow_provider_venice.hooks.venice.VeniceHook"
    assert form["behaviour"]["relabeling"] == {"password": "API key", "host": "Base URL"}
    assert form["behaviour"]["placeholders"]["host"] == "https://api.venice.ai/api/v1"
    assert form["widgets"] == ["extra__venice__max_retries", "extra__venice__timeout_s"]
