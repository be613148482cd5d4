"""Apache Airflow provider for the Venice AI video API."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

DEFAULT_BASE_URL = "https://api.venice.ai/api/v1"


def get_provider_info() -> dict[str, Any]:
    """Describe this provider to Airflow's providers manager (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-provider-venice",
        "name": "Venice AI",
        "description": "Generate videos with the Venice AI video API, deliver them to S3, "
        "and transcribe YouTube videos.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Venice AI",
                "external-doc-url": "https://docs.venice.ai/",
                "tags": ["service"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "venice",
                "hook-class-name": "airflow_provider_venice.hooks.venice.VeniceHook",
                "hook-name": "Venice AI",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema", "port"],
                    "relabeling": {"password": "API key", "host": "Base URL"},
                    "placeholders": {
                        "host": DEFAULT_BASE_URL,
                        "password": "your Venice API key",
                        "extra": '{"timeout_s": 30, "max_retries": 4}',
                    },
                },
                "conn-fields": {
                    "timeout_s": {
                        "label": "Request timeout (s)",
                        "description": "Read timeout for API calls; video downloads stream without one.",
                        "schema": {"type": ["number", "null"], "minimum": 1},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries of 429/5xx and connection failures (never of a 4xx).",
                        "schema": {"type": ["integer", "null"], "minimum": 0},
                    },
                },
            }
        ],
        "hooks": [
            {
                "integration-name": "Venice AI",
                "python-modules": ["airflow_provider_venice.hooks.venice"],
            }
        ],
        "operators": [
            {
                "integration-name": "Venice AI",
                "python-modules": [
                    "airflow_provider_venice.operators.video",
                    "airflow_provider_venice.operators.transcription",
                ],
            }
        ],
        "sensors": [
            {"integration-name": "Venice AI", "python-modules": ["airflow_provider_venice.sensors.video"]}
        ],
        "triggers": [
            {"integration-name": "Venice AI", "python-modules": ["airflow_provider_venice.triggers.video"]}
        ],
        "transfers": [
            {
                "source-integration-name": "Venice AI",
                "target-integration-name": "Amazon Simple Storage Service (S3)",
                "python-module": "airflow_provider_venice.transfers.venice_to_s3",
            }
        ],
        "extra-links": [
            "airflow_provider_venice.links.VeniceVideoLink",
            "airflow_provider_venice.links.VeniceJobLink",
        ],
    }
