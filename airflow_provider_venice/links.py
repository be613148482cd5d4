"""Extra links of the delivering operators: "Video" and "Venice job", both through the Venice page.

Airflow 3 computes a link on the worker when a try ends or defers and keeps the string as an XCom, so
a link must not hold anything that expires (a presigned URL would) nor anything only one process knows
(a deferred task resumes in another). Each link is therefore the task instance's address in the Venice
page (``venice/links/video?dag_id=...&run_id=...&task_id=...&map_index=...``), relative, so it works
behind Airflow's ``base_url``; the page finds the job and the S3 object when the link is clicked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

LINKS_PATH = "venice/links/"
"""Where the Venice page serves the link targets, relative to Airflow's base URL."""


def task_instance_query(ti_key: Any) -> str:
    """Return the URL query naming a task instance: ``dag_id``, ``run_id``, ``task_id``, ``map_index``."""
    map_index = getattr(ti_key, "map_index", None)
    return urlencode(
        {
            "dag_id": ti_key.dag_id,
            "run_id": ti_key.run_id,
            "task_id": ti_key.task_id,
            "map_index": -1 if map_index is None else map_index,
        }
    )


class VeniceVideoLink(BaseOperatorLink):
    """Opens the delivered video through a short-lived presigned URL made when the link is clicked."""

    name = "Video"
    xcom_key = "_link_venice_video"  # fixed, so renaming the class cannot orphan stored links

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Return the Venice page's address of this task instance's video."""
        return f"{LINKS_PATH}video?{task_instance_query(ti_key)}"


class VeniceJobLink(BaseOperatorLink):
    """Opens the Venice page's entry for the task instance's Venice job (queue_id, stage, cost)."""

    name = "Venice job"
    xcom_key = "_link_venice_job"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Return the Venice page's address of this task instance's Venice job."""
        return f"{LINKS_PATH}job?{task_instance_query(ti_key)}"


DELIVERY_LINKS = (VeniceVideoLink(), VeniceJobLink())
"""The extra links of the operators that deliver a video (``operator_extra_links``)."""


def store_links(operator: BaseOperator, context: Mapping[str, Any]) -> None:
    """Store the operator's links as XComs now, so they show while it waits deferred; never raises.

    Airflow writes the same values when the process ends; this only makes them visible before the
    trigger starts. A failure is logged and ignored: a link is never worth failing a paid task.
    """
    ti = context.get("ti")
    if ti is None:
        return
    for link in operator.operator_extra_links:
        try:
            ti.xcom_push(key=link.xcom_key, value=link.get_link(operator, ti_key=ti))
        except Exception:  # the API server's errors are not ours to list; the link is a convenience
            operator.log.warning("Could not store the %r link before deferring.", link.name, exc_info=True)
