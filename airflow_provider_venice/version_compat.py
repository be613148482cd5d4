"""Which Airflow this is, decided once: the one place the provider branches on Airflow's version.

Airflow 3.1 to 3.3 are supported. Where 3.3 offers something the older versions lack, the code asks
these flags rather than trying an import and catching the failure, so every difference between the
versions can be found from here.
"""

from __future__ import annotations

from airflow import __version__ as _airflow_version
from packaging.version import Version

AIRFLOW_VERSION = Version(Version(_airflow_version).base_version)

AIRFLOW_V_3_2_PLUS = Version("3.2.0") <= AIRFLOW_VERSION
AIRFLOW_V_3_3_PLUS = Version("3.3.0") <= AIRFLOW_VERSION
"""Airflow 3.3 gives each task instance a task state store (``context["task_state_store"]``)."""

# The task-time exceptions. The Task SDK holds them all from Airflow 3.2 on (``airflow.exceptions`` keeps
# deprecated aliases of the same classes); on 3.1 ``airflow.sdk.exceptions`` has only AirflowException
# and the others are still in ``airflow.exceptions``, which is what 3.1's task runner catches.
if AIRFLOW_V_3_2_PLUS:
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowRescheduleException,
        TaskDeferred,
    )
else:
    from airflow.exceptions import (  # type: ignore[attr-defined,no-redef]
        AirflowException,
        AirflowFailException,
        AirflowRescheduleException,
        TaskDeferred,
    )

__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "AirflowException",
    "AirflowFailException",
    "AirflowRescheduleException",
    "TaskDeferred",
]
