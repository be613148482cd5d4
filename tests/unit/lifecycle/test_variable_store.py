"""The job record on Airflow 3.1 and 3.2: one Airflow Variable per task instance, through the supervisor.

These tests run on any Airflow: they switch the provider to its 3.1/3.2 behaviour (no task state store
in the context) and stand in for the task's supervisor with one that answers the Task SDK's own
messages as the API server would, including its errors. Then they attack the money path: a read that
fails, a record another version wrote, an older try still running, a cleared task after completion.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import structlog
from airflow.sdk.exceptions import AirflowException, AirflowRuntimeError, ErrorType
from airflow.sdk.execution_time.comms import (
    DeleteVariable,
    ErrorResponse,
    GetVariable,
    OKResponse,
    PutVariable,
    VariableResult,
)

from airflow_provider_venice.lifecycle import stores
from airflow_provider_venice.lifecycle.record import JobRecord, RecordWriteError
from airflow_provider_venice.lifecycle.stores import NewerTryError, VariableStore, record_store, variable_key
from airflow_provider_venice.operators.video import (
    VeniceGenerateVideoOperator,
    VeniceVideoQueueOperator,
)
from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator
from tests.integration import s3_fixtures
from tests.integration.s3_fixtures import (
    BUCKET,
    REQUESTS,
    T2V,
    FakeTaskInstance,
    OutletEvents,
    ProcessKilled,
    calls_to,
    kill_at_write,
    read_manifest,
    video_downloads,
)
from tests.unit.lifecycle.lifecycle_helpers import RecordingLog

aws_env = s3_fixtures.aws_env
moto_s3 = s3_fixtures.moto_s3
venice = s3_fixtures.venice

KEY = "generated/on-variables.mp4"
IDENTITY = {"dag_id": "venice_unit", "run_id": "manual__2025-01-01T00:00:00+00:00", "task_id": "generate"}


class FakeSupervisor:
    """The task's supervisor and the API server behind it, for Variables: the Task SDK's own messages.

    ``fail``: message types whose next calls fail as an API server error does (the supervisor answers
    with an error frame, which the Task SDK raises as ``AirflowRuntimeError``).
    """

    def __init__(self) -> None:
        self.variables: dict[str, str] = {}
        self.descriptions: dict[str, str | None] = {}
        self.sent: list[str] = []
        self.fail: set[str] = set()

    def __call__(self, message: Any) -> Any:
        self.sent.append(message.type)
        if message.type in self.fail:
            raise AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status": 503}))
        if isinstance(message, GetVariable):
            if message.key not in self.variables:
                return ErrorResponse(error=ErrorType.VARIABLE_NOT_FOUND, detail={"key": message.key})
            return VariableResult(key=message.key, value=self.variables[message.key])
        if isinstance(message, PutVariable):
            assert message.value is not None
            self.variables[message.key] = message.value
            self.descriptions[message.key] = message.description
            return OKResponse(ok=True)
        if isinstance(message, DeleteVariable):
            if message.key not in self.variables:  # the API server answers 404
                raise AirflowRuntimeError(
                    ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status": 404})
                )
            del self.variables[message.key]
            return OKResponse(ok=True)
        raise AssertionError(f"unexpected message {message!r}")

    def records(self) -> dict[str, Any]:
        return {key: json.loads(value) for key, value in self.variables.items()}


@pytest.fixture
def supervisor(monkeypatch: pytest.MonkeyPatch) -> FakeSupervisor:
    """Airflow 3.1/3.2 behaviour: no task state store; Variables through this supervisor."""
    fake = FakeSupervisor()
    monkeypatch.setattr(stores, "AIRFLOW_V_3_3_PLUS", False)
    monkeypatch.setattr(stores, "_supervisor_send", fake)
    return fake


def context_of(ti: FakeTaskInstance, task: Any = None) -> dict[str, Any]:
    """A task context as Airflow 3.1 gives it: the task instance, outlet events, no task state store."""
    context: dict[str, Any] = {"ti": ti, "outlet_events": OutletEvents()}
    if task is not None:
        context["task"] = task
    return context


def store_of(supervisor: FakeSupervisor, try_number: int = 1, map_index: int = -1) -> VariableStore:
    return VariableStore({**IDENTITY, "map_index": map_index}, try_number, send=supervisor)


def generate(**kwargs: Any) -> VeniceGenerateVideoOperator:
    arguments = {**REQUESTS[T2V], "s3_bucket": BUCKET, "s3_key": KEY, "deferrable": False, **kwargs}
    return VeniceGenerateVideoOperator(task_id="generate", window_interval_s=0.05, **arguments)


def tally(emulator: Any) -> tuple[int, int, int]:
    calls = emulator.calls()
    return (
        len(calls_to(calls, "/video/queue")),
        len(video_downloads(calls)),
        len(calls_to(calls, "/video/complete")),
    )


# --- the store ----------------------------------------------------------------------------------


def test_a_record_round_trips_with_its_try_and_task_and_a_description_naming_them(supervisor):
    store = store_of(supervisor, try_number=2)
    assert store.get("venice_job") is None
    store.set("venice_job", {"stage": "queued", "job": {"queue_id": "q-1"}})

    assert store.get("venice_job") == {"stage": "queued", "job": {"queue_id": "q-1"}}
    [(key, stored)] = supervisor.records().items()
    assert key == store.key
    assert key.startswith("venice_job_record_")
    assert len(key) < 250
    assert stored["try_number"] == 2
    assert stored["task"] == {**IDENTITY, "map_index": -1}
    description = supervisor.descriptions[key] or ""
    for words in ("generate", "venice_unit", "venice-job-records purge"):
        assert words in description


def test_each_task_instance_has_a_key_of_its_own():
    keys = {
        variable_key({**IDENTITY, "map_index": -1}),
        variable_key({**IDENTITY, "map_index": 0}),
        variable_key({**IDENTITY, "map_index": 1}),
        variable_key({**IDENTITY, "task_id": "other", "map_index": -1}),
        variable_key({**IDENTITY, "run_id": "scheduled__2025-01-02", "map_index": -1}),
    }
    assert len(keys) == 5
    assert variable_key({**IDENTITY, "map_index": 0}) == variable_key({**IDENTITY, "map_index": 0})


def test_a_failed_read_raises_and_never_reads_as_no_record(supervisor):
    store_of(supervisor).set("venice_job", {"stage": "queued"})
    supervisor.fail = {"GetVariable"}

    with pytest.raises(AirflowRuntimeError):
        JobRecord(context_of(FakeTaskInstance()), RecordingLog())


def test_an_odd_answer_to_a_read_raises(supervisor):
    store = VariableStore({**IDENTITY, "map_index": -1}, 1, send=lambda message: OKResponse(ok=True))
    with pytest.raises(AirflowException, match="reading the Venice job record"):
        store.get("venice_job")


def test_a_failed_write_raises_a_record_write_error(supervisor):
    record = JobRecord(context_of(FakeTaskInstance()), RecordingLog())
    supervisor.fail = {"PutVariable"}
    with pytest.raises(RecordWriteError):
        record.write(stage="queueing")


@pytest.mark.parametrize("value", ["not json {", json.dumps(["a", "list"]), json.dumps({"stage": "x"})])
def test_a_variable_this_provider_did_not_write_is_unreadable_never_none(supervisor, value):
    supervisor.variables[variable_key({**IDENTITY, "map_index": -1})] = value
    record = JobRecord(context_of(FakeTaskInstance()), RecordingLog())
    assert record.unreadable


def test_an_older_try_still_running_cannot_overwrite_a_newer_tries_record(supervisor):
    store_of(supervisor, try_number=3).set("venice_job", {"stage": "queued", "job": {"queue_id": "q-3"}})

    with pytest.raises(NewerTryError, match="try 3"):
        store_of(supervisor, try_number=2).set("venice_job", {"stage": "queueing"})

    assert supervisor.records()[store_of(supervisor).key]["record"]["job"]["queue_id"] == "q-3"
    store_of(supervisor, try_number=4).set("venice_job", {"stage": "delivered"})  # a newer try may
    store_of(supervisor, try_number=4).set("venice_job", {"stage": "completed"})  # and again


def test_the_record_store_is_airflows_task_state_store_when_there_is_one(supervisor):
    given = object()
    assert record_store({"task_state_store": given, "ti": FakeTaskInstance()}) is given
    assert record_store({}) is None  # no task instance: nowhere to keep it (the record warns)
    store = record_store({"ti": FakeTaskInstance(map_index=None, try_number=2)})  # type: ignore[arg-type]
    assert isinstance(store, VariableStore)
    assert store.identity == {**IDENTITY, "map_index": -1}
    assert store.try_number == 2


def test_on_airflow_3_3_no_variable_is_ever_used(monkeypatch):
    monkeypatch.setattr(stores, "AIRFLOW_V_3_3_PLUS", True)
    assert record_store({"ti": FakeTaskInstance()}) is None


# --- the money path on Variables ------------------------------------------------------------------


def test_generate_keeps_its_record_in_a_variable_through_every_stage_and_after(
    supervisor, venice, moto_s3, monkeypatch
):
    emulator = venice()
    stages: list[str] = []

    def watching(message: Any) -> Any:
        if isinstance(message, PutVariable):
            stages.append(json.loads(message.value or "{}")["record"]["stage"])
        return supervisor(message)

    monkeypatch.setattr(stores, "_supervisor_send", watching)

    result = generate().execute(context_of(FakeTaskInstance()))

    assert stages == ["queueing", "queued", "uploaded", "delivered", "completed"]  # one PUT: no parts
    [stored] = supervisor.records().values()
    assert stored["record"]["stage"] == "completed"  # kept, as a task state store row is
    assert stored["record"]["job"]["queue_id"] == result["queue_id"]
    assert tally(emulator) == (1, 1, 1)
    assert read_manifest(moto_s3, BUCKET, KEY)["queue_id"] == result["queue_id"]


def test_a_retry_after_a_kill_resumes_from_the_variable_without_paying_again(supervisor, venice, moto_s3):
    emulator = venice()
    first = generate()
    kill_at_write(first.s3_hook.get_conn(), "PutObject", KEY + ".json")
    with pytest.raises(ProcessKilled):
        first.execute(context_of(FakeTaskInstance(try_number=1)))
    [stored] = supervisor.records().values()
    assert stored["record"]["stage"] == "uploaded"

    result = generate().execute(context_of(FakeTaskInstance(try_number=2)))

    assert tally(emulator) == (1, 1, 1)  # the sealed upload was adopted, not downloaded again
    assert result["queue_id"] == emulator.jobs()[0]["queue_id"]


@pytest.mark.parametrize("manifest_key", [None, ""], ids=["with-manifest", "no-manifest"])
def test_a_cleared_task_after_completion_resumes_from_its_record_and_pays_nothing(
    supervisor, venice, moto_s3, manifest_key
):
    emulator = venice()
    first = generate(manifest_key=manifest_key).execute(context_of(FakeTaskInstance(try_number=1)))
    supervisor.sent.clear()

    again = generate(manifest_key=manifest_key).execute(context_of(FakeTaskInstance(try_number=2)))

    assert again == first
    assert tally(emulator) == (1, 1, 1)
    assert supervisor.sent == ["GetVariable"]  # read once; nothing written


def test_after_its_record_was_purged_a_cleared_task_finds_its_video_by_the_manifest(
    supervisor, venice, moto_s3
):
    emulator = venice()
    first = generate(replace=True).execute(context_of(FakeTaskInstance(try_number=1)))
    supervisor.variables.clear()  # venice-job-records purge, after the retention period
    supervisor.sent.clear()

    with structlog.testing.capture_logs() as logs:
        again = generate(replace=True).execute(context_of(FakeTaskInstance(try_number=2)))

    assert again == first
    assert tally(emulator) == (1, 1, 1)
    assert supervisor.sent == ["GetVariable"]  # nothing written: the manifest is the record now
    assert any("not queueing again" in entry["event"] for entry in logs)


def test_a_manifest_of_another_task_or_request_is_not_this_tasks_delivery(supervisor, venice, moto_s3):
    emulator = venice()
    generate(replace=True).execute(context_of(FakeTaskInstance(task_id="other", try_number=1)))
    generate(replace=True, prompt="another prompt").execute(context_of(FakeTaskInstance(try_number=1)))
    supervisor.variables.clear()

    mine = generate(replace=True).execute(context_of(FakeTaskInstance(try_number=1)))

    assert tally(emulator)[0] == 3  # each request of each task was paid for once
    assert read_manifest(moto_s3, BUCKET, KEY)["queue_id"] == mine["queue_id"]


def test_a_queue_tasks_record_outlives_the_completion_of_its_job_downstream(supervisor, venice, moto_s3):
    emulator = venice(job_seconds=0)
    queue = VeniceVideoQueueOperator(task_id="queue", **REQUESTS[T2V])
    job = queue.execute(context_of(FakeTaskInstance(task_id="queue")))
    VeniceVideoToS3Operator(task_id="deliver", job=job, s3_bucket=BUCKET, s3_key=KEY).execute(
        context_of(FakeTaskInstance(task_id="deliver"))
    )

    again = VeniceVideoQueueOperator(task_id="queue", **REQUESTS[T2V]).execute(
        context_of(FakeTaskInstance(task_id="queue", try_number=2))
    )

    assert again == job  # the cleared queue task returns the job it paid for
    assert tally(emulator)[0] == 1
