"""What one task instance produced: its video's S3 URI and its job's queue_id, found at click time.

In order: the task's ``return_value`` XCom (the indexed ``(dag_id, task_id, run_id, map_index)``
lookup; gone while a new try runs), its asset event through the ``venice-videos`` alias, and its job
record (which knows the queue_id before the video exists, and the stage it reached).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from airflow_provider_venice.plugins.events import video_of_task
from airflow_provider_venice.plugins.records import JobEntry, record_of_task

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class TaskOutcome:
    """The video and job of one task instance, as far as they exist."""

    s3_uri: str | None
    queue_id: str | None
    record: JobEntry | None


def _return_value(session: Session, dag_id: str, run_id: str, task_id: str, map_index: int) -> dict[str, Any]:
    from airflow.models.xcom import XComModel

    query = sa.select(XComModel.value).where(
        XComModel.dag_id == dag_id,
        XComModel.task_id == task_id,
        XComModel.run_id == run_id,
        XComModel.map_index == map_index,
        XComModel.key == "return_value",
    )
    row = session.execute(query).first()
    value = XComModel.deserialize_value(row) if row is not None else None
    return value if isinstance(value, dict) else {}


def task_outcome(session: Session, dag_id: str, run_id: str, task_id: str, map_index: int) -> TaskOutcome:
    """Find the video and job of a task instance (the caller has checked the user may read the DAG)."""
    returned = _return_value(session, dag_id, run_id, task_id, map_index)
    s3_uri, queue_id = returned.get("s3_uri"), returned.get("queue_id")
    if not s3_uri:
        video = video_of_task(session, dag_id, run_id, task_id, map_index)
        if video is not None:
            s3_uri, queue_id = video.s3_uri, queue_id or video.queue_id
    record = None if s3_uri and queue_id else record_of_task(session, dag_id, run_id, task_id, map_index)
    if record is not None:
        queue_id = queue_id or record.queue_id
    return TaskOutcome(
        s3_uri if isinstance(s3_uri, str) else None, queue_id if isinstance(queue_id, str) else None, record
    )
