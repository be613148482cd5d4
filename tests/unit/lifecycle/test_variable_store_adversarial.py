"""Adversarial cases for the job record kept in an Airflow Variable (Airflow 3.1 and 3.2).

Each test is one attack on the pay-once promise with the record in a Variable: a "not found" that is
not true, two tries racing, a task cleared after its record was removed. They reuse the fake
supervisor and helpers of ``test_variable_store``.
"""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, ErrorType
from airflow.sdk.execution_time.comms import ErrorResponse, GetVariable

from airflow_provider_venice.lifecycle import stores
from airflow_provider_venice.lifecycle.stores import RecordChangedError
from tests.integration import s3_fixtures
from tests.integration.s3_fixtures import (
    BUCKET,
    FakeTaskInstance,
    ProcessKilled,
    kill_at_write,
)
from tests.unit.lifecycle.test_variable_store import (
    KEY,
    FakeSupervisor,
    context_of,
    generate,
    store_of,
    supervisor,
    tally,
)

aws_env = s3_fixtures.aws_env
moto_s3 = s3_fixtures.moto_s3
venice = s3_fixtures.venice
__all__ = ["supervisor"]  # the fixture, imported for pytest


def test_a_not_found_answer_over_a_paid_record_never_leads_to_a_second_payment(
    supervisor: FakeSupervisor, venice: Any, moto_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow 3.1/3.2's API server reads a Variable through ``Variable.get_variable_from_secrets``,
    which logs and swallows any backend's exception, the metastore's included: a database error while
    reading the record comes back as 404, ``VARIABLE_NOT_FOUND``. The retry must not pay again.
    """
    emulator = venice()
    first = generate()
    kill_at_write(first.s3_hook.get_conn(), "PutObject", KEY)  # paid, then killed at the video's upload
    with pytest.raises(ProcessKilled):
        first.execute(context_of(FakeTaskInstance(try_number=1)))
    [stored] = supervisor.records().values()
    assert stored["record"]["stage"] in ("queued", "uploaded")  # paid for, not delivered

    lost_reads = [1]

    def database_error_read_as_not_found(message: Any) -> Any:
        if isinstance(message, GetVariable) and lost_reads:
            lost_reads.pop()
            supervisor.sent.append(message.type)
            return ErrorResponse(error=ErrorType.VARIABLE_NOT_FOUND, detail={"key": message.key})
        return supervisor(message)

    monkeypatch.setattr(stores, "_supervisor_send", database_error_read_as_not_found)

    with pytest.raises(AirflowException):
        generate().execute(context_of(FakeTaskInstance(try_number=2)))

    assert tally(emulator)[0] == 1  # the job of try 1 was paid once; try 2 stopped before /video/queue
    [stored] = supervisor.records().values()
    assert stored["record"]["job"]["queue_id"] == emulator.jobs()[0]["queue_id"]


def test_two_tries_that_both_read_no_record_cannot_both_write_queueing(supervisor: FakeSupervisor) -> None:
    """A zombie try and its successor both read "no record"; the first to write goes on to pay. The
    other must not write over that record (the try number fence only stops the older one)."""
    older, newer = store_of(supervisor, try_number=1), store_of(supervisor, try_number=2)
    assert older.get("venice_job") is None
    assert newer.get("venice_job") is None

    older.set("venice_job", {"stage": "queueing", "request_fingerprint": "f"})

    with pytest.raises(RecordChangedError):
        newer.set("venice_job", {"stage": "queueing", "request_fingerprint": "f"})
    assert supervisor.records()[older.key]["try_number"] == 1


def test_a_store_writes_over_what_it_read_and_what_it_wrote(supervisor: FakeSupervisor) -> None:
    """The fence does not stop the ordinary life of a record: read, write, write again, remove, write."""
    store_of(supervisor, try_number=1).set("venice_job", {"stage": "queued"})
    store = store_of(supervisor, try_number=2)
    assert store.get("venice_job") == {"stage": "queued"}
    store.set("venice_job", {"stage": "delivered"})
    store.set("venice_job", {"stage": "completed"})
    store.delete("venice_job")
    store.set("venice_job", {"stage": "queueing"})
    assert supervisor.records()[store.key]["record"] == {"stage": "queueing"}


# --- records removed on completion: a cleared task must still not pay twice (NOT fixed) -------------


def test_a_cleared_generate_task_pays_nothing_after_its_video_was_moved_away(
    supervisor: FakeSupervisor, venice: Any, moto_s3: Any
) -> None:
    """A downstream task moved the video and its manifest away (copy, then delete: a common pattern), then
    the task is cleared: its completed record, kept as a task state store row is, still says "paid"."""
    emulator = venice()
    first = generate().execute(context_of(FakeTaskInstance(try_number=1)))
    moto_s3.delete_object(Bucket=BUCKET, Key=KEY)  # moved elsewhere by a downstream task
    moto_s3.delete_object(Bucket=BUCKET, Key=KEY + ".json")

    again = generate().execute(context_of(FakeTaskInstance(try_number=2)))

    assert tally(emulator)[0] == 1
    assert again["queue_id"] == first["queue_id"]
