"""Money at risk: jobs that were paid (or may have been) and are not delivered, or not released."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from airflow_provider_venice.plugins.records import NOT_DELIVERED

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import Session

    from airflow_provider_venice.plugins.records import JobEntry

RUNS_PER_QUERY = 500  # DAG runs per query: SQLite allows 32,766 parameters in one statement

NEXT_STEP = {
    "queueing": (
        "The queue request was sent but Venice's answer was never recorded: it may have been charged. "
        "Check your Venice account for the job before clearing this task's state, which queues anew."
    ),
    "queued": (
        "Paid, not delivered. Clear the task (or let it retry): its next try resumes this job and delivers "
        "it without paying again. Do it soon: a private model's download URL expires 24 hours after the "
        "job finishes."
    ),
    "uploading": (
        "The upload to S3 was interrupted. Clear the task: its next try settles the upload and delivers "
        "the same job."
    ),
    "uploaded": (
        "Every byte passed the checks but S3 had not confirmed the object. Clear the task: its next try "
        "adopts the object or delivers again from Venice."
    ),
    "delivered": (
        "The video is in S3 but Venice's copy was not released (/video/complete). Clear the task to "
        "release it."
    ),
}


@dataclass(frozen=True)
class AtRisk:
    """A job to look at, and what to do about it."""

    job: JobEntry
    next_step: str


def _unfinished_tasks(session: Session, delivered: list[JobEntry]) -> set[tuple[str, str, str, int]]:
    """Return which of these task instances did not succeed (their job was delivered, not released)."""
    if not delivered:
        return set()
    from airflow.models.taskinstance import TaskInstance as TI

    keys = [(item.dag_id, item.run_id, item.task_id, item.map_index) for item in delivered]
    query = sa.select(TI.dag_id, TI.run_id, TI.task_id, TI.map_index, TI.state).where(
        sa.tuple_(TI.dag_id, TI.run_id, TI.task_id, TI.map_index).in_(keys)
    )
    succeeded = {(d, r, t, m) for d, r, t, m, state in session.execute(query) if state == "success"}
    return set(keys) - succeeded


def _handed_on(session: Session, records: list[JobEntry]) -> set[JobEntry]:
    """Return the ``queued`` records of tasks that handed their job on, and whose job was settled.

    A queue task's record stays at ``queued``: the job goes on to a sensor and a to-S3 or complete
    task. It is settled when another task's record of the same job got further (a to-S3 task's), or
    when a ``VeniceVideoCompleteOperator`` of the same run released that very job (its result names
    the queue_id). A run that merely succeeded proves nothing: a leaf with ``trigger_rule="all_done"``
    succeeds after the delivery failed.
    """
    further = {item.queue_id for item in records if item.queue_id and item.stage not in NOT_DELIVERED}
    queued = [item for item in records if item.stage == "queued" and item.queue_id]
    settled = {item for item in queued if item.queue_id in further}
    waiting = [item for item in queued if item not in settled]
    released = _released(session, {(item.dag_id, item.run_id) for item in waiting})
    return settled | {item for item in waiting if (item.dag_id, item.run_id, item.queue_id) in released}


def _released(session: Session, runs: set[tuple[str, str]]) -> set[tuple[str, str, str]]:
    """Return ``(dag_id, run_id, queue_id)`` of the jobs the complete tasks of these runs released."""
    if not runs:
        return set()
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.xcom import XComModel

    found: set[tuple[str, str, str]] = set()
    ordered = sorted(runs)
    for start in range(0, len(ordered), RUNS_PER_QUERY):
        query = (
            sa.select(XComModel.dag_id, XComModel.run_id, XComModel.value)
            .join(
                TI,
                sa.and_(
                    TI.dag_id == XComModel.dag_id,
                    TI.run_id == XComModel.run_id,
                    TI.task_id == XComModel.task_id,
                    TI.map_index == XComModel.map_index,
                ),
            )
            .where(sa.tuple_(TI.dag_id, TI.run_id).in_(ordered[start : start + RUNS_PER_QUERY]))
            .where(TI.operator == "VeniceVideoCompleteOperator", TI.state == "success")
            .where(XComModel.key == "return_value")
        )
        for dag_id, run_id, value in session.execute(query):
            result = XComModel.deserialize_value(_Row(value))
            if isinstance(result, dict) and result.get("completed") is True and result.get("queue_id"):
                found.add((dag_id, run_id, str(result["queue_id"])))
    return found


@dataclass(frozen=True)
class _Row:
    """What ``XComModel.deserialize_value`` reads from a row: its ``value``."""

    value: Any


def at_risk(session: Session, records: Iterable[JobEntry]) -> list[AtRisk]:
    """Return the records whose money is at risk, oldest first.

    Not delivered (``queueing`` to ``uploaded``, unless a queue task handed the job on and it was
    settled downstream), or delivered by a task instance that did not succeed (it stopped before
    releasing the job; a task that succeeded at ``delivered`` was told not to release it).
    """
    records = list(records)
    delivered = [item for item in records if item.stage == "delivered"]
    unfinished = _unfinished_tasks(session, delivered)
    handed_on = _handed_on(session, records)
    found = [
        AtRisk(item, NEXT_STEP[item.stage])
        for item in records
        if (item.stage in NOT_DELIVERED and item not in handed_on)
        or (
            item.stage == "delivered"
            and (item.dag_id, item.run_id, item.task_id, item.map_index) in unfinished
        )
    ]
    return sorted(found, key=_oldest_first)


def _oldest_first(item: AtRisk) -> Any:
    return item.job.stage_at or item.job.queued_at or 0.0
