"""The job records the provider keeps for every paying task: what was paid and how far it got.

On Airflow 3.3 they are rows of the task state store (key ``venice_job``); on 3.1 and 3.2, and on a
3.3 deployment upgraded from those, Airflow Variables named ``venice_job_record_<digest>`` holding an
envelope ``{try_number, task, updated_at, record}``. Both are read here, each scan capped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from airflow_provider_venice.job import Stage
from airflow_provider_venice.lifecycle.record import RECORD_KEY
from airflow_provider_venice.lifecycle.stores import KEY_PREFIX, variable_key
from airflow_provider_venice.version_compat import AIRFLOW_V_3_3_PLUS

if TYPE_CHECKING:
    from collections.abc import Collection

    from sqlalchemy.orm import Session

SCAN_LIMIT = 5000
"""The most records one page reads from each store (the newest first)."""

NOT_DELIVERED = ("queueing", "queued", "uploading", "uploaded")
STAGE_ORDER = tuple(stage.value for stage in Stage)


def stage_rank(stage: str) -> int:
    """How far ``stage`` is along the job's way (-1 for a stage this version does not know)."""
    return STAGE_ORDER.index(stage) if stage in STAGE_ORDER else -1


@dataclass(frozen=True)
class JobEntry:
    """One task instance's job record: its task, stage, job and when it got there."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    stage: str
    stage_at: float | None
    queued_at: float | None
    queue_id: str | None
    model: str | None
    quote_usd: float | None
    destination: str | None

    @property
    def paid(self) -> bool:
        """Venice answered with a job (a queue_id): it is charged."""
        return self.queue_id is not None


def entry(task: dict[str, Any], record: Any) -> JobEntry | None:
    """Read a record (and the task instance it belongs to); None when it is not one of ours."""
    if not isinstance(record, dict) or not isinstance(record.get("stage"), str):
        return None
    job: dict[str, Any] = record["job"] if isinstance(record.get("job"), dict) else {}
    quote = job.get("quote_usd")
    return JobEntry(
        dag_id=str(task["dag_id"]),
        run_id=str(task["run_id"]),
        task_id=str(task["task_id"]),
        map_index=int(task.get("map_index", -1)),
        stage=record["stage"],
        stage_at=_number(record.get("stage_at")),
        queued_at=_number(record.get("queued_at")),
        queue_id=job.get("queue_id"),
        model=job.get("model"),
        quote_usd=float(quote) if isinstance(quote, (int, float)) else None,
        destination=record.get("destination"),
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _loads(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None


def _state_store_rows(session: Session, where: Any, limit: int) -> list[JobEntry]:
    from airflow.models.task_state_store import TaskStateStoreModel as Row

    query = sa.select(Row.dag_id, Row.run_id, Row.task_id, Row.map_index, Row.value).where(
        Row.key == RECORD_KEY, *where(Row)
    )
    found = []
    rows = session.execute(query.order_by(Row.updated_at.desc()).limit(limit)).all()
    for dag_id, run_id, task_id, map_index, value in rows:
        task = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index}
        if (item := entry(task, _loads(value))) is not None:
            found.append(item)
    return found


def _variable_entry(text: str | None, encrypted: bool | None) -> JobEntry | None:
    envelope = _loads(_decrypted(text) if encrypted else text)
    if not isinstance(envelope, dict) or not isinstance(envelope.get("task"), dict):
        return None
    return entry(envelope["task"], envelope.get("record"))


def _decrypted(text: str | None) -> str | None:
    """Decrypt a Variable's value the way ``Variable.val`` does (None when it cannot be read)."""
    from airflow.models.crypto import get_fernet
    from cryptography.fernet import InvalidToken

    if text is None:
        return None
    try:
        return str(get_fernet().decrypt(text.encode()).decode())
    except (InvalidToken, ValueError):
        return None


def _variable_rows(session: Session, limit: int) -> tuple[list[JobEntry], bool]:
    from airflow.models.variable import Variable

    # Columns, not Variable objects: loading a Variable registers its value with the secrets masker,
    # which costs a regex rebuild per record and hides nothing here. A key range the index can walk
    # (the prefix without its trailing "_", up to the next string), and the exact prefix checked after
    # it: punctuation sorts differently under some collations.
    stem = KEY_PREFIX.rstrip("_")
    query = (
        sa.select(Variable._val, Variable.is_encrypted)
        .where(Variable.key >= stem, Variable.key < stem[:-1] + chr(ord(stem[-1]) + 1))
        .where(Variable.key.like(KEY_PREFIX.replace("_", "\\_") + "%", escape="\\"))
        .limit(limit)
    )
    rows = session.execute(query).all()
    found = [item for text, encrypted in rows if (item := _variable_entry(text, encrypted))]
    return found, len(rows) >= limit


@dataclass(frozen=True)
class Scan:
    """The job records of the readable DAGs, and whether a store held more than were read."""

    items: list[JobEntry]
    capped: bool


def all_records(session: Session, dag_ids: Collection[str], limit: int = SCAN_LIMIT) -> Scan:
    """Return the job records of the readable DAGs (at most ``limit`` read from each store).

    The Variables' DAG is inside their (maybe encrypted) value, so they are read first and filtered
    here: ``capped`` says whether either store had more rows than were read, whoever's they were.
    """
    readable = sorted(dag_ids)
    found, capped = _variable_rows(session, limit)
    if AIRFLOW_V_3_3_PLUS:
        stored = _state_store_rows(session, lambda row: [row.dag_id.in_(readable)], limit)
        found, capped = found + stored, capped or len(stored) >= limit
    allowed = set(readable)
    return Scan([item for item in found if item.dag_id in allowed], capped)


def record_of_task(
    session: Session, dag_id: str, run_id: str, task_id: str, map_index: int
) -> JobEntry | None:
    """Return one task instance's job record (by the store's own index or the Variable's exact key)."""
    from airflow.models.variable import Variable

    if AIRFLOW_V_3_3_PLUS:
        rows = _state_store_rows(
            session,
            lambda row: [
                row.dag_id == dag_id,
                row.run_id == run_id,
                row.task_id == task_id,
                row.map_index == map_index,
            ],
            1,
        )
        if rows:
            return rows[0]
    identity = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index}
    query = sa.select(Variable._val, Variable.is_encrypted).where(Variable.key == variable_key(identity))
    row = session.execute(query).first()
    return _variable_entry(*row) if row is not None else None


def age_s(item: JobEntry, now: float | None = None) -> float | None:
    """Seconds since the job reached its stage (or was queued)."""
    since = item.stage_at or item.queued_at
    return None if since is None else max(0.0, (now or time.time()) - since)
