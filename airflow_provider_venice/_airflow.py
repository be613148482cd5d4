"""Glue shared by the operators, sensor and transfer: error mapping and the task's durable record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_venice.client import BadRequestError, NotFoundError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_venice.client import VeniceClient, VeniceError

JOB_STATE_KEY = "venice_job"
JOB_KEYS = ("model", "queue_id", "download_url", "quote_usd")


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

    def job(self) -> dict[str, Any] | None:
        """Return the queued job (``model``, ``queue_id``, ``download_url``, ``quote_usd``), if any."""
        record = self.load() or {}
        if not record.get("queue_id"):
            return None
        return {key: record.get(key) for key in JOB_KEYS}

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


def optional_url(value: str | None) -> str | None:
    """Read a templated URL field: ``""`` and ``"None"`` (how Jinja renders a null XCom value) mean none."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text in ("", "None") else text


def release_job(client: VeniceClient, model: str, queue_id: str, download_url: str | None, log: Any) -> None:
    """Delete a VPS job's file, then ``/video/complete``; already-released jobs count as done."""
    download_url = optional_url(download_url)
    if download_url:
        gone = not client.delete_download_url(download_url)
        log.info("Deleted the download_url file of %s%s.", queue_id, " (it was already gone)" if gone else "")
    try:
        client.complete(model, queue_id)
    except BadRequestError as exc:
        if not (download_url and exc.is_invalid_request_id):
            raise
        log.info("Venice does not track VPS job %s for /video/complete; released via download_url.", queue_id)
    except NotFoundError:
        log.warning("Venice job %s was already completed (404); nothing left to release.", queue_id)
    else:
        log.info("Venice job %s completed; Venice's copy of the video is deleted.", queue_id)
