"""Glue shared by the operators, sensor and transfer: error mapping and the task's durable record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from airflow.sdk.exceptions import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_venice.client import VeniceError

JOB_STATE_KEY = "venice_job"


def as_airflow_failure(error: VeniceError, context_note: str = "") -> AirflowException:
    """Map a Venice error to Airflow: permanent errors fail without retries, transient ones may retry."""
    message = f"{error}{context_note}"
    if error.retryable:
        return AirflowException(message)
    return AirflowFailException(message)


class _Store(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...


class JobRecord:
    """The task instance's durable record of its Venice job, kept in ``context["task_state_store"]``.

    Airflow clears XComs at the start of every try, but not the task state store, which is keyed by
    dag, task, run and map index. So a retry finds the job the earlier try paid for and resumes it.
    """

    def __init__(self, context: Context) -> None:
        self._store: _Store | None = context.get("task_state_store")

    @property
    def durable(self) -> bool:
        """Whether a task state store is available (Airflow 3.3+ at task run time)."""
        return self._store is not None

    def load(self) -> dict[str, Any] | None:
        """Return the record left by an earlier try, if any."""
        if self._store is None:
            return None
        value = self._store.get(JOB_STATE_KEY)
        return dict(value) if isinstance(value, dict) else None

    def save(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the record and persist it at once."""
        record = {**(self.load() or {}), **fields}
        if self._store is not None:
            self._store.set(JOB_STATE_KEY, record)
        return record

    def forget(self) -> None:
        """Remove the record (the request provably never created a job)."""
        if self._store is not None:
            self._store.delete(JOB_STATE_KEY)
