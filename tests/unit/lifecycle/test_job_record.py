"""The job record: read once per try, written only when asked, kept in the task state store."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st

from airflow_provider_venice.job import Stage, VeniceJob
from airflow_provider_venice.lifecycle.record import RECORD_KEY, JobRecord, RecordWriteError
from airflow_provider_venice.version_compat import AirflowException
from tests.unit.lifecycle.lifecycle_helpers import CountingStore, RecordingLog, new_record

JOB = VeniceJob("wan-2-7-text-to-video", "q-1", None, 0.35, "f" * 32)


def test_a_new_record_is_empty() -> None:
    record = new_record(CountingStore())
    assert record.stage is None
    assert record.job is None
    assert record.get("destination") is None
    assert "a /video/queue request" in record.describe()


def test_the_store_is_read_exactly_once_per_record() -> None:
    store = CountingStore()
    store.data[RECORD_KEY] = {"stage": "queued", "job": JOB.to_xcom(), "destination": "s3://b/k"}
    record = new_record(store)
    for _ in range(3):
        assert record.stage is Stage.QUEUED
        assert record.job == JOB
        assert record.get("destination") == "s3://b/k"
        assert "q-1" in record.describe()
    record.advance(Stage.UPLOADING, upload={"token": "t"})
    record.write(extra=1)
    record.note(more=2)
    assert record.stage is Stage.UPLOADING
    assert store.gets == 1


def test_each_record_reads_the_store_once() -> None:
    store = CountingStore()
    new_record(store)
    new_record(store)
    assert store.gets == 2


def test_reading_writes_nothing() -> None:
    store = CountingStore()
    store.data[RECORD_KEY] = {"stage": "queued", "job": JOB.to_xcom()}
    record = new_record(store)
    _ = (record.stage, record.job, record.get("job"), record.describe())
    assert store.set_calls == 0
    assert store.deletes == 0


def test_advance_writes_the_stage_and_fields_at_once() -> None:
    store = CountingStore()
    record = new_record(store)
    record.advance(Stage.QUEUED, job=JOB.to_xcom(), destination="s3://b/k")
    assert store.set_calls == 1
    stored = store.record
    assert stored is not None
    assert stored["stage"] == "queued"
    assert isinstance(stored["stage_at"], float)
    assert stored["job"] == JOB.to_xcom()
    assert stored["destination"] == "s3://b/k"
    assert record.stage is Stage.QUEUED
    assert record.job == JOB


def test_write_merges_fields_and_persists() -> None:
    store = CountingStore()
    record = new_record(store)
    record.advance(Stage.QUEUED, job=JOB.to_xcom())
    record.write(queued_at=12.5)
    assert store.set_calls == 2
    assert store.record is not None
    assert store.record["queued_at"] == 12.5
    assert store.record["job"] == JOB.to_xcom()
    assert store.record["stage"] == "queued"


def test_note_writes_nothing_until_the_next_write() -> None:
    store = CountingStore()
    record = new_record(store)
    record.advance(Stage.QUEUED, job=JOB.to_xcom())
    before = dict(store.record or {})
    record.note(poller={"deadline": 1.0})
    assert store.set_calls == 1
    assert store.record == before
    assert record.get("poller") == {"deadline": 1.0}
    record.advance(Stage.UPLOADING)
    assert store.set_calls == 2
    assert store.record is not None
    assert store.record["poller"] == {"deadline": 1.0}
    assert store.record["stage"] == "uploading"


def test_fields_set_to_none_are_removed() -> None:
    store = CountingStore()
    record = new_record(store)
    record.advance(Stage.UPLOADING, job=JOB.to_xcom(), upload={"token": "t", "upload_id": None})
    record.advance(Stage.DELIVERED, upload=None, delivery={"etag": "e"})
    assert store.record is not None
    assert "upload" not in store.record
    assert store.record["delivery"] == {"etag": "e"}
    assert record.get("upload") is None
    record.advance(Stage.QUEUEING, job=None)
    assert "job" not in store.record
    assert record.job is None


def test_a_refused_write_raises_and_leaves_the_record_unchanged() -> None:
    store = CountingStore(fail_on_set=[2])
    record = new_record(store)
    record.advance(Stage.QUEUEING, request_fingerprint="f1")
    with pytest.raises(RecordWriteError) as caught:
        record.advance(Stage.QUEUED, job=JOB.to_xcom(), request_fingerprint=None)
    assert isinstance(caught.value, AirflowException)
    assert "the API server did not answer" in str(caught.value)
    assert "task state store" in str(caught.value)
    assert record.stage is Stage.QUEUEING
    assert record.job is None
    assert record.get("request_fingerprint") == "f1"
    assert store.record is not None
    assert store.record["stage"] == "queueing"
    # a later write still holds only what was written successfully plus its own fields
    record.write(note="x")
    assert store.record is not None
    assert store.record["stage"] == "queueing"
    assert "job" not in store.record


def test_a_refused_write_of_plain_fields_leaves_the_record_unchanged() -> None:
    store = CountingStore(fail_on_set=[1])
    record = new_record(store)
    with pytest.raises(RecordWriteError):
        record.write(upload={"token": "t"})
    assert record.get("upload") is None
    assert store.record is None


def test_without_a_store_the_record_lives_in_memory_with_a_warning() -> None:
    log = RecordingLog()
    record = JobRecord({}, log)
    assert len(log.messages("warning")) == 1
    assert "task state store" in log.text("warning")
    assert "retry" in log.text("warning")
    assert record.stage is None
    record.advance(Stage.QUEUED, job=JOB.to_xcom())
    assert record.stage is Stage.QUEUED
    assert record.job == JOB
    record.note(x=1)
    record.write(y=2)
    assert (record.get("x"), record.get("y")) == (1, 2)
    record.forget()
    assert record.stage is None


def test_a_store_warns_nothing() -> None:
    log = RecordingLog()
    new_record(CountingStore(), log)
    assert log.lines == []


def test_forget_removes_the_record_from_the_store() -> None:
    store = CountingStore()
    record = new_record(store)
    record.advance(Stage.QUEUEING, request_fingerprint="f1")
    record.forget()
    assert store.deletes == 1
    assert RECORD_KEY not in store.data
    assert record.stage is None
    assert record.get("request_fingerprint") is None
    assert new_record(store).stage is None


def test_start_over_drops_the_record_in_memory_only_until_the_next_advance() -> None:
    store = CountingStore()
    record = new_record(store)
    record.advance(Stage.DELIVERED, job=JOB.to_xcom(), delivery={"etag": "e"}, destination="s3://b/old")
    record.start_over()
    assert record.stage is None
    assert record.job is None
    assert store.record is not None
    assert store.record["stage"] == "delivered"  # nothing written yet
    record.advance(Stage.QUEUEING, request_fingerprint="f2", destination="s3://b/new")
    assert store.record is not None
    assert set(store.record) == {"stage", "stage_at", "request_fingerprint", "destination"}
    assert store.record["destination"] == "s3://b/new"


def test_a_later_try_reads_what_an_earlier_one_wrote() -> None:
    store = CountingStore()
    first = new_record(store)
    first.advance(Stage.QUEUED, job=JOB.to_xcom(), destination="s3://b/k", queued_at=3.0)
    second = new_record(store)
    assert second.stage is Stage.QUEUED
    assert second.job == JOB
    assert second.get("queued_at") == 3.0
    assert "q-1" in second.describe()
    assert "queued" in second.describe()


@pytest.mark.parametrize("stage", ["bogus", "QUEUED", 3, "", None, ["queued"]])
def test_an_unknown_stage_reads_as_none(stage: Any) -> None:
    store = CountingStore()
    store.data[RECORD_KEY] = {"stage": stage, "job": JOB.to_xcom()}
    record = new_record(store)
    assert record.stage is None
    assert record.job == JOB


@pytest.mark.parametrize(
    "job",
    [
        "q-1",
        ["wan", "q-1"],
        {"model": "wan-2-7-text-to-video"},
        {"model": "", "queue_id": "q-1"},
        {"model": "m", "queue_id": "q-1", "download_url": "None"},
        {"model": "m", "queue_id": "q-1", "quote_usd": "0.35"},
        {"model": "m", "queue_id": "q-1", "quote_usd": float("nan")},
        pytest.param(
            {"model": "m", "queue_id": "q-1", "download_url": "http://[::1/video.mp4"}, id="unparsable-url"
        ),
    ],
)
def test_a_malformed_job_reads_as_none(job: Any) -> None:
    store = CountingStore()
    store.data[RECORD_KEY] = {"stage": "queued", "job": job}
    record = new_record(store)
    assert record.job is None
    assert record.stage is Stage.QUEUED
    assert "a /video/queue request" in record.describe()


@pytest.mark.parametrize("stored", ["queued", ["stage", "queued"], 42, None])
def test_a_record_that_is_not_a_dict_reads_as_empty(stored: Any) -> None:
    store = CountingStore()
    store.data[RECORD_KEY] = stored
    record = new_record(store)
    assert record.stage is None
    assert record.job is None


def test_the_record_does_not_share_the_stores_dict() -> None:
    store = CountingStore()
    store.data[RECORD_KEY] = {"stage": "queued"}
    record = new_record(store)
    record.note(extra=1)
    assert store.data[RECORD_KEY] == {"stage": "queued"}


field_values = (
    st.none() | st.integers() | st.text(max_size=5) | st.dictionaries(st.text(max_size=3), st.integers())
)


@given(st.lists(st.dictionaries(st.sampled_from("abcdef"), field_values, max_size=4), max_size=8))
def test_the_stored_record_is_the_merge_of_every_write_without_nones(writes: list[dict[str, Any]]) -> None:
    store = CountingStore()
    record = new_record(store)
    expected: dict[str, Any] = {}
    for fields in writes:
        record.write(**fields)
        expected = {key: value for key, value in {**expected, **fields}.items() if value is not None}
    assert store.set_calls == len(writes)
    assert (store.record or {}) == expected
    assert all(record.get(key) == value for key, value in expected.items())
    reread = new_record(store)
    assert all(reread.get(key) == value for key, value in expected.items())
