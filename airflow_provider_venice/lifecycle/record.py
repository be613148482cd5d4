"""The job record: what a task instance did with its Venice job, kept where retries find it.

Airflow clears a task's XComs at the start of every try, but not its task state store
(``context["task_state_store"]``, Airflow 3.3+), which is keyed by DAG run, task and map index. The
record lives there under one key (on Airflow 3.1 and 3.2, in an Airflow Variable of its own: see
:mod:`~airflow_provider_venice.lifecycle.stores`). It is read once per ``execute`` and written only
when the job reaches a new :class:`~airflow_provider_venice.job.Stage`, so one happy run costs a
handful of round trips to the API server.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_venice.job import InvalidJobError, Stage, VeniceJob
from airflow_provider_venice.lifecycle.stores import record_store
from airflow_provider_venice.version_compat import AirflowException

if TYPE_CHECKING:
    from collections.abc import Mapping

RECORD_KEY = "venice_job"


class StateStore(Protocol):
    """The part of Airflow's task state store the record uses."""

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value stored under ``key``."""

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``."""

    def delete(self, key: str) -> None:
        """Remove ``key``."""


class RecordWriteError(AirflowException):
    """The task state store refused a write of the job record."""


class JobRecord:
    """The job record of one task instance, loaded once from its task state store.

    :param context: the task's context; its task state store (or its task instance, for a Variable)
        says where the record is kept.
    :param log: where to warn that no store exists (then the record lives only in this try).
    """

    def __init__(self, context: Mapping[str, Any], log: Any) -> None:
        self._store: StateStore | None = record_store(context)
        if self._store is None:
            log.warning(
                "No task state store and no task instance in this context: the Venice job record lives "
                "only in this try, so a retry cannot find a job this try paid for."
            )
            stored: Any = None
        else:
            stored = self._store.get(RECORD_KEY)
        self._data: dict[str, Any] = dict(stored) if isinstance(stored, dict) else {}
        # Something is stored that this version cannot read (another version's stage, a state backend's
        # reference this worker cannot follow): it may hold a paid job, so it must never read as "none".
        self.unreadable = stored not in (None, {}) and not (self._data and _known_stage(self._data))

    @property
    def stage(self) -> Stage | None:
        """The stage the job reached, or None when no try has started one."""
        value = self._data.get("stage")
        try:
            return Stage(value) if value else None
        except ValueError:
            return None

    @property
    def job(self) -> VeniceJob | None:
        """The job Venice created, once queued."""
        value = self._data.get("job")
        if not isinstance(value, dict):
            return None
        try:
            return VeniceJob.from_xcom(value)
        except InvalidJobError:
            return None

    def get(self, field: str) -> Any:
        """Return another field of the record (``destination``, ``upload``, ``delivery``, ...)."""
        return self._data.get(field)

    def describe(self) -> str:
        """Say in a few words which job the record holds, for log lines and errors."""
        job = self.job
        queue_id = job.queue_id if job else self._data.get("queue_id")
        name = f"Venice job {queue_id}" if queue_id else "a /video/queue request"
        return f"{name} at stage {self._data.get('stage', 'unknown')}"

    def advance(self, stage: Stage, **fields: Any) -> None:
        """Record that the job reached ``stage``, with ``fields``; written to the store at once."""
        self.write(stage=stage.value, stage_at=time.time(), **fields)

    def write(self, **fields: Any) -> None:
        """Merge ``fields`` into the record and persist it (fields set to None are removed)."""
        data = {**self._data, **fields}
        data = {key: value for key, value in data.items() if value is not None}
        if self._store is not None:
            try:
                self._store.set(RECORD_KEY, data)
            except Exception as exc:  # the store's transport errors are not ours to list
                raise RecordWriteError(f"the task state store refused the job record: {exc}") from exc
        self._data = data

    def note(self, **fields: Any) -> None:
        """Merge ``fields`` into the record in memory; they are written with the next stage."""
        self._data.update(fields)

    def start_over(self, *, keep: tuple[str, ...] = ()) -> None:
        """Drop what the record holds in memory but the fields in ``keep``; the next write replaces it."""
        self._data = {name: self._data[name] for name in keep if name in self._data}
        self.unreadable = False

    def forget(self) -> None:
        """Remove the record: the request provably created no job."""
        self._data = {}
        self.unreadable = False
        if self._store is not None:
            self._store.delete(RECORD_KEY)


def _known_stage(data: dict[str, Any]) -> bool:
    try:
        Stage(str(data.get("stage")))
    except ValueError:
        return False
    return True
