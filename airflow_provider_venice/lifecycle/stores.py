"""Where a task instance's job record is kept: Airflow's task state store, or an Airflow Variable.

Airflow 3.3 gives every task instance a task state store (``context["task_state_store"]``) that its
retries share and that goes away with its DAG run. Airflow 3.1 and 3.2 have none, so there the record
lives in one Airflow Variable per task instance, which survives retries and a worker's death just as
well (it is in the metadata database, written through the API server like the store). Like a task state
store row, it stays after the job is completed, so a task cleared later still finds the job it paid for;
``venice-job-records purge`` removes completed records after a retention period, as Airflow 3.3's state
store cleanup does (:mod:`airflow_provider_venice.maintenance`).

Why Variables and not a ledger object in S3: every paying operator can reach them (the queue operator
has no bucket), they need no credentials beyond the task's own, and an operator can see and remove a
record in the UI. The Variable is read and written through the task's supervisor directly rather than
through ``Variable.get``/``Variable.set``: those read a failed lookup as "not found" and log a failed
write instead of raising, and a record must never read as "none" when it could hold a paid job. The
worker's secrets backends are bypassed for the same reason. The API server is not so strict: it answers
``GetVariable`` with ``Variable.get``, which tries its own secrets backends (``AIRFLOW_VAR_*`` included)
before the metadata database and reads any backend's error, the database's too, as "not found". So a
"no record" answer is not trusted on its own: see the fence below.

A try only writes over a record no newer try has written (the try number is kept with it), so a try
that Airflow has given up on but that still runs cannot overwrite what its successor recorded; and it
only writes over the very record it read (or last wrote), so a try that read "no record" wrongly, or
raced another try that read the same, stops before its ``queueing`` write, before paying.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_venice.version_compat import AIRFLOW_V_3_3_PLUS, AirflowException

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

KEY_PREFIX = "venice_job_record_"


class NewerTryError(AirflowException):
    """A newer try of this task instance owns the job record: this try must stop."""


class RecordChangedError(AirflowException):
    """The job record changed since this try read it: another writer (or a lost read) is in play."""


_UNSEEN = object()


class VariableStore:
    """The job record of one task instance in an Airflow Variable (Airflow 3.1 and 3.2).

    :param identity: the task instance: ``dag_id``, ``run_id``, ``task_id``, ``map_index``.
    :param try_number: this try; a record written by a newer try is never overwritten.
    :param send: sends a message to the task's supervisor and returns its answer (the default is the
        running task's channel; tests pass their own).
    """

    def __init__(
        self,
        identity: Mapping[str, Any],
        try_number: int,
        send: Callable[[Any], Any] | None = None,
    ) -> None:
        self.identity = {name: identity[name] for name in ("dag_id", "run_id", "task_id", "map_index")}
        self.try_number = try_number
        self.key = variable_key(self.identity)
        self._send = send or _supervisor_send
        # The Variable's text as this store last read or wrote it (None: no Variable). A write over
        # anything else would overwrite a record this try never saw: a job it may hold could be paid.
        self._seen: Any = _UNSEEN

    def get(self, key: str, default: Any = None) -> Any:
        """Return the record (``key`` is the record's name in the task state store; one record here)."""
        self._seen = self._fetch()
        stored = _parse(self._seen)
        if stored is None:
            return default
        if isinstance(stored, dict) and "record" in stored:
            return stored["record"]
        return stored  # not written by this provider: the record reads as unreadable, never as "none"

    def set(self, key: str, value: Any) -> None:
        """Write the record, unless a newer try of this task instance has written it.

        Nor over a record this store never saw (it read "no record", or another record, and the Variable
        says otherwise now): a concurrent try wrote it, or the read was wrong (the API server answers
        "not found" when its database lookup fails). Either way it may hold a paid job.
        """
        text = self._fetch()
        stored = _parse(text)
        written_by = stored.get("try_number") if isinstance(stored, dict) else None
        if isinstance(written_by, int) and written_by > self.try_number:
            raise NewerTryError(
                f"try {written_by} of this task instance has written its Venice job record since this try "
                f"(try {self.try_number}) started; this try stops here and leaves the job to it"
            )
        if self._seen is not _UNSEEN and text != self._seen:
            raise RecordChangedError(
                f"the Venice job record (Variable {self.key}) is not what this try (try {self.try_number}) "
                "read: it may hold a job another try paid for, so this try stops without writing over it"
            )
        from airflow.sdk.execution_time.comms import PutVariable

        envelope = {
            "try_number": self.try_number,
            "task": self.identity,
            "updated_at": time.time(),
            "record": value,
        }
        description = (
            "Venice job record of task {task_id} (map index {map_index}) in DAG {dag_id}, run {run_id} "
            "(airflow-provider-venice): it keeps a cleared task from paying again. "
            "`venice-job-records purge` removes completed ones after a retention period."
        ).format(**self.identity)
        value = json.dumps(envelope)
        self._send(PutVariable(key=self.key, value=value, description=description))
        self._seen = value

    def delete(self, key: str) -> None:
        """Remove the record."""
        from airflow.sdk.execution_time.comms import DeleteVariable

        self._send(DeleteVariable(key=self.key))
        self._seen = None

    def _fetch(self) -> str | None:
        """Return the Variable's text, or None when there is no such Variable."""
        from airflow.sdk.exceptions import ErrorType
        from airflow.sdk.execution_time.comms import ErrorResponse, GetVariable, VariableResult

        answer = self._send(GetVariable(key=self.key))
        if isinstance(answer, ErrorResponse) and answer.error == ErrorType.VARIABLE_NOT_FOUND:
            return None
        if not isinstance(answer, VariableResult):
            raise AirflowException(f"reading the Venice job record (Variable {self.key}) failed: {answer!r}")
        return answer.value


def _parse(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def variable_key(identity: Mapping[str, Any]) -> str:
    """Name the Variable of a task instance's record: a digest of its DAG, run, task and map index."""
    parts = [identity["dag_id"], identity["run_id"], identity["task_id"], identity["map_index"]]
    return KEY_PREFIX + hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:40]


def record_store(context: Mapping[str, Any]) -> Any:
    """Return where this task instance's job record lives, or None when it can live nowhere.

    The task state store when Airflow offers one (3.3); an Airflow Variable on Airflow 3.1 and 3.2.
    """
    store = context.get("task_state_store")
    if store is not None or AIRFLOW_V_3_3_PLUS:
        return store
    ti = context.get("ti")
    if ti is None:
        return None
    identity = {name: getattr(ti, name) for name in ("dag_id", "run_id", "task_id", "map_index")}
    identity["map_index"] = -1 if identity["map_index"] is None else identity["map_index"]
    return VariableStore(identity, int(getattr(ti, "try_number", 0) or 0))


def _supervisor_send(message: Any) -> Any:
    from airflow.sdk.execution_time import task_runner

    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    if comms is None:
        raise AirflowException(
            "no Airflow task supervisor to keep the Venice job record with (is this running in a task?)"
        )
    return comms.send(message)
