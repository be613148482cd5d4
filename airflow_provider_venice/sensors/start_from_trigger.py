"""Starting the sensor's wait in the triggerer, straight from the scheduler (Airflow 3.3).

With ``start_from_trigger=True`` the scheduler creates the trigger itself: no worker starts, no slot is
held, and a worker runs only ``execute_complete`` once the job has finished. The trigger's keyword
arguments are fixed when the DAG is parsed; the triggerer renders the templated ones (the sensor's
``job``, ``model``, ``queue_id``, ``download_url``, ``venice_conn_id``, under the same names) before the
trigger runs. A task output (``job=queue.output``, ``queue_id=queue.output["queue_id"]``) is resolved on
workers, never in the triggerer, so it is handed to the trigger as the equivalent ``xcom_pull``
template, which the trigger renders to the native value. Write your own pulls the same way, with
``map_indexes=-1``: the Airflow 3.3.2 triggerer answers single-value XCom requests only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import XComArg
from airflow.triggers.base import StartTriggerArgs

from airflow_provider_venice.lifecycle.poll import DEFERRAL_GRACE_S
from airflow_provider_venice.triggers.video import VeniceVideoTrigger
from airflow_provider_venice.version_compat import AIRFLOW_V_3_3_PLUS

if TYPE_CHECKING:
    from airflow.sdk import Context

# The sensor's fields that the triggerer renders: each is also a trigger keyword and attribute.
TRIGGER_TEMPLATE_FIELDS = ("job", "model", "queue_id", "download_url", "venice_conn_id")


def as_trigger_value(field: str, value: Any) -> Any:
    """Return ``value`` as the triggerer can use it: a task output becomes its ``xcom_pull`` template."""
    if not isinstance(value, XComArg):
        return value
    operator, key = getattr(value, "operator", None), getattr(value, "key", None)
    task_id = getattr(operator, "task_id", None)
    if not isinstance(task_id, str) or not isinstance(key, str):
        raise ValueError(
            f"start_from_trigger=True: {field} must be a task's output (queue.output or "
            f"queue.output['queue_id']), a template or a value, not {type(value).__name__}; "
            "or leave start_from_trigger off"
        )
    # map_indexes=-1 pulls one value (GetXCom); without it the pull asks for a sequence slice, which the
    # Airflow 3.3.2 triggerer does not answer, so the trigger would wait for the answer forever.
    return f"{{{{ ti.xcom_pull(task_ids={task_id!r}, key={key!r}, map_indexes=-1) }}}}"


def start_trigger_args(fields: dict[str, Any], timeout: Any, window_interval_s: float) -> StartTriggerArgs:
    """Return the ``StartTriggerArgs`` for a sensor with these ``fields`` and ``timeout`` (seconds)."""
    seconds = timeout.total_seconds() if hasattr(timeout, "total_seconds") else timeout
    # Fields not given are left out (the trigger's defaults are None): every waiting task's trigger
    # keeps its own decoded copy of these arguments in the triggerer.
    kwargs = {
        name: as_trigger_value(name, fields[name])
        for name in TRIGGER_TEMPLATE_FIELDS
        if fields.get(name) is not None
    }
    # No deadline: the trigger takes Airflow's absolute timeout for the deferral, less the same grace.
    return StartTriggerArgs(
        trigger_cls=VeniceVideoTrigger.classpath(),
        next_method="execute_complete",
        trigger_kwargs={**kwargs, "window_interval_s": float(window_interval_s)},
        next_kwargs=None,
        timeout=timedelta(seconds=float(seconds) + DEFERRAL_GRACE_S) if seconds is not None else None,
    )


def fallback_reason(context: Context) -> str:
    """Say why a ``start_from_trigger`` sensor is running on a worker anyway."""
    if not AIRFLOW_V_3_3_PLUS:
        return "this Airflow (before 3.3) always starts tasks on a worker"
    map_index = context["ti"].map_index
    if map_index is not None and map_index >= 0:
        return "a mapped task (.partial().expand()) cannot start from the triggerer in Airflow 3.3"
    return "the scheduler sent it to a worker"
