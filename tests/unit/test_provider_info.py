"""get_provider_info() is valid for Airflow and describes the venice connection form."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
from pathlib import Path
from typing import Any

import airflow
import jsonschema
import pytest

from airflow_provider_venice import __version__, get_provider_info
from airflow_provider_venice.client import DEFAULT_BASE_URL
from airflow_provider_venice.hooks.venice import VeniceHook
from airflow_provider_venice.version_compat import AIRFLOW_V_3_2_PLUS

AIRFLOW_DIR = Path(airflow.__file__).parent


def schema(name: str) -> dict[str, Any]:
    return dict(json.loads((AIRFLOW_DIR / name).read_text()))


@pytest.fixture(scope="module")
def info() -> dict[str, Any]:
    return get_provider_info()


@pytest.fixture(scope="module")
def venice_conn(info: dict[str, Any]) -> dict[str, Any]:
    (conn,) = [c for c in info["connection-types"] if c["connection-type"] == "venice"]
    return dict(conn)


def test_valid_against_airflow_provider_info_schema(info: dict[str, Any]) -> None:
    jsonschema.validate(info, schema("provider_info.schema.json"))


def test_connection_types_valid_against_provider_yaml_schema(info: dict[str, Any]) -> None:
    # provider.yaml's schema is the strict one for conn-fields / ui-field-behaviour.
    connection_types = schema("provider.yaml.schema.json")["properties"]["connection-types"]
    jsonschema.validate(info["connection-types"], connection_types)


def test_identity(info: dict[str, Any]) -> None:
    assert info["package-name"] == "airflow-provider-venice"
    assert info["name"] == "Venice AI"
    assert info["description"]
    assert __version__ in info["versions"]


def test_entry_point_resolves_to_get_provider_info() -> None:
    points = [
        ep
        for ep in importlib.metadata.entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_venice")
    ]
    assert len(points) == 1
    assert points[0].load() is get_provider_info
    assert points[0].dist is not None
    assert points[0].dist.name == "airflow-provider-venice"
    assert importlib.metadata.version("airflow-provider-venice") == __version__


def test_venice_connection_type_and_hook(venice_conn: dict[str, Any]) -> None:
    module_name, _, class_name = venice_conn["hook-class-name"].rpartition(".")
    hook_class = getattr(importlib.import_module(module_name), class_name)
    assert hook_class is VeniceHook
    assert hook_class.conn_type == venice_conn["connection-type"] == "venice"
    assert hook_class.default_conn_name == "venice_default"
    assert hook_class.conn_name_attr == "venice_conn_id"
    assert venice_conn["hook-name"] == hook_class.hook_name


def test_form_relabels_password_and_host(venice_conn: dict[str, Any]) -> None:
    behaviour = venice_conn["ui-field-behaviour"]
    assert behaviour["relabeling"]["password"] == "API key"
    assert behaviour["relabeling"]["host"] == "Base URL"
    assert behaviour["placeholders"]["host"] == DEFAULT_BASE_URL == "https://api.venice.ai/api/v1"
    assert "password" not in behaviour["hidden-fields"]
    assert "host" not in behaviour["hidden-fields"]
    # The form's fields as Airflow's providers manager checks them.
    jsonschema.validate(
        {
            "hidden_fields": behaviour["hidden-fields"],
            "relabeling": behaviour["relabeling"],
            "placeholders": behaviour["placeholders"],
        },
        schema("customized_form_field_behaviours.schema.json"),
    )


def test_conn_fields_are_the_extras_the_hook_reads(venice_conn: dict[str, Any]) -> None:
    fields = venice_conn["conn-fields"]
    assert set(fields) == {"timeout_s", "max_retries"}
    for field in fields.values():
        assert field["label"]
        assert "password" not in str(field["schema"].get("format", ""))
    jsonschema.validate(4, fields["max_retries"]["schema"])
    jsonschema.validate(None, fields["max_retries"]["schema"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(-1, fields["max_retries"]["schema"])
    jsonschema.validate(30.5, fields["timeout_s"]["schema"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("soon", fields["timeout_s"]["schema"])


def test_placeholder_extra_is_json_the_hook_accepts(venice_conn: dict[str, Any]) -> None:
    extra = json.loads(venice_conn["ui-field-behaviour"]["placeholders"]["extra"])
    assert set(extra) <= set(venice_conn["conn-fields"])


def test_listed_modules_import(info: dict[str, Any]) -> None:
    modules = [
        m
        for section in ("hooks", "operators", "sensors", "triggers")
        for e in info[section]
        for m in e["python-modules"]
    ]
    modules += [t["python-module"] for t in info["transfers"]]
    for module in modules:
        importlib.import_module(module)


@pytest.mark.skipif(
    not AIRFLOW_V_3_2_PLUS,
    reason="Airflow 3.2 reads the form from the provider info; 3.1's providers manager reads the hook's "
    "methods only with FAB installed, its UI through HookMetaService: test_the_ui_gets_the_connection_form",
)
def test_providers_manager_sees_the_connection_form() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert manager.providers["airflow-provider-venice"].version == __version__
    behaviour = manager.field_behaviours["venice"]
    assert behaviour["relabeling"] == {"password": "API key", "host": "Base URL"}
    assert behaviour["placeholders"]["host"] == DEFAULT_BASE_URL
    widgets = manager.connection_form_widgets
    assert widgets["extra__venice__timeout_s"].field["schema"]["title"] == "Request timeout (s)"
    assert "extra__venice__max_retries" in widgets


def test_the_ui_gets_the_connection_form() -> None:
    """The UI's connection form: from the provider info on Airflow 3.2+, from the hook's methods on 3.1."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    [venice] = [meta for meta in HookMetaService.hook_meta_data() if meta.connection_type == "venice"]
    fields = venice.standard_fields
    assert fields is not None
    assert (fields.password.title, fields.password.hidden) == ("API key", False)
    assert (fields.host.title, fields.host.placeholder) == ("Base URL", DEFAULT_BASE_URL)
    assert [fields.login.hidden, fields.port.hidden, fields.url_schema.hidden] == [True, True, True]
    extra = venice.extra_fields
    assert extra["timeout_s"]["schema"]["title"] == "Request timeout (s)"
    assert extra["max_retries"]["schema"]["title"] == "Max retries"
    assert "integer" in extra["max_retries"]["schema"]["type"]
