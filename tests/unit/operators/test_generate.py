"""VeniceGenerateVideoOperator: queue, wait, deliver to S3, complete, resumably across tries.

Runs against the in-process emulator and moto's in-process S3; a try is a fresh operator instance
with the same task state store, as Airflow does it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator
from airflow_provider_venice.triggers.video import VeniceVideoTrigger
from tests.integration import s3_fixtures
from tests.integration.s3_fixtures import (
    BUCKET,
    REQUESTS,
    RESULT_KEYS,
    T2V,
    VPS,
    FakeStore,
    alias_events,
    assert_nothing_left,
    calls_to,
    job_state,
    make_context,
    object_bytes,
    object_sha256,
    venice_paths,
)

aws_env = s3_fixtures.aws_env
moto_s3 = s3_fixtures.moto_s3
venice = s3_fixtures.venice

KEY = "generated/0.mp4"


def generate(model: str = T2V, **kwargs: Any) -> VeniceGenerateVideoOperator:
    arguments: dict[str, Any] = {
        **REQUESTS[model],
        "s3_bucket": BUCKET,
        "s3_key": KEY,
        "deferrable": False,
        "window_interval_s": 0.05,
        **kwargs,
    }
    return VeniceGenerateVideoOperator(task_id="generate", **arguments)


def counts(calls: list[dict[str, Any]]) -> dict[str, int]:
    return {
        endpoint: len(calls_to(calls, endpoint))
        for endpoint in ("/video/quote", "/video/queue", "/video/retrieve", "/_media", "/video/complete")
    }


def check_result(s3: Any, result: dict[str, Any], model: str) -> None:
    assert set(result) == RESULT_KEYS
    head = s3.head_object(Bucket=BUCKET, Key=KEY)
    size, digest = object_sha256(s3, BUCKET, KEY)
    assert result["sha256"] == digest == head["Metadata"]["sha256"]
    assert result["size_bytes"] == size > 0
    assert object_bytes(s3, BUCKET, KEY)[4:8] == b"ftyp"
    assert result["model"] == model
    assert result["quote_usd"] is not None
    assert result["quote_usd"] > 0


@pytest.mark.parametrize("model", [T2V, VPS])
def test_generate_end_to_end_without_deferring(venice, moto_s3, model):
    emulator = venice()
    context = make_context()

    result = generate(model).execute(context)

    check_result(moto_s3, result, model)
    calls = emulator.calls()
    assert calls_to(calls, "/video/queue")[0]["body"]["prompt"] == REQUESTS[model]["prompt"]
    tally = counts(calls)
    assert tally["/video/quote"] == tally["/video/queue"] == tally["/video/complete"] == 1
    if model == VPS:
        assert venice_paths(calls)[-3:] == ["GET /_media", "DELETE /_media", "POST /api/v1/video/complete"]
        assert all("authorization" not in call for call in calls_to(calls, "/_media"))
    else:
        assert venice_paths(calls)[-2:] == ["POST /api/v1/video/retrieve", "POST /api/v1/video/complete"]
    assert job_state(emulator, result["queue_id"])["media_deleted"] is True
    assert context["task_state_store"].get("venice_job")["stage"] == "completed"
    # the asset event carries the job, the model and the cost
    [(asset, extra)] = alias_events(context)
    assert asset == Asset(result["s3_uri"])
    assert extra["queue_id"] == result["queue_id"]
    assert extra["model"] == model
    assert extra["quote_usd"] == result["quote_usd"]


def run_trigger(trigger: VeniceVideoTrigger) -> dict[str, Any]:
    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            payload: dict[str, Any] = event.payload
            return payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first_event(), 30))


def test_deferrable_generate_defers_then_delivers_in_execute_complete(venice, moto_s3):
    emulator = venice(job_seconds=600)
    context = make_context()

    with pytest.raises(TaskDeferred) as deferred:
        generate(deferrable=True).execute(context)

    assert deferred.value.method_name == "execute_complete"
    assert not s3_fixtures.object_exists(moto_s3, BUCKET, KEY)
    # the triggerer side: rebuilt from its serialised form, after the job has finished
    classpath, kwargs = deferred.value.trigger.serialize()
    assert classpath.endswith("VeniceVideoTrigger")
    emulator.advance(1200)
    event = run_trigger(VeniceVideoTrigger(**{**kwargs, "next_poll_at": 0.0}))
    assert event["status"] == "success"

    result = generate(deferrable=True).execute_complete(context, event)

    check_result(moto_s3, result, T2V)
    tally = counts(emulator.calls())
    assert (tally["/video/queue"], tally["/video/complete"]) == (1, 1)
    assert alias_events(context)[0][1]["queue_id"] == result["queue_id"]


@pytest.mark.parametrize(
    "event",
    [None, {}, {"status": "maybe"}, {"status": "error", "message": "Venice job q ended with status FAILED"}],
)
def test_execute_complete_refuses_bad_or_error_events_without_delivering(venice, moto_s3, event):
    emulator = venice(job_seconds=600)
    context = make_context()
    with pytest.raises(TaskDeferred):
        generate(deferrable=True).execute(context)
    before = len(emulator.calls())

    with pytest.raises(AirflowException):
        generate(deferrable=True).execute_complete(context, event)

    assert emulator.calls()[before:] == []
    assert_nothing_left(moto_s3, BUCKET, KEY)


def break_delivery(how: str, emulator: Any, s3: Any) -> None:
    if how == "truncated-body":  # the VPS download (status checks go to /video/retrieve, untouched)
        emulator.add_faults({"endpoint": "/_media", "method": "GET", "action": "truncate"})
    else:
        s3.delete_bucket(Bucket=BUCKET)


def repair_delivery(how: str, emulator: Any, s3: Any) -> None:
    if how == "truncated-body":
        emulator.state.faults.clear()
    else:
        s3.create_bucket(Bucket=BUCKET)


@pytest.mark.parametrize(("how", "model"), [("truncated-body", VPS), ("missing-bucket", T2V)])
def test_retry_after_a_failed_upload_resumes_without_queueing_again(venice, moto_s3, how, model):
    emulator = venice()
    store = FakeStore()
    break_delivery(how, emulator, moto_s3)

    with pytest.raises(AirflowException) as first_try:
        generate(model).execute(make_context(store))

    record = store.get("venice_job")
    assert record["stage"] == "queued"
    assert record["queue_id"] in str(first_try.value)
    assert counts(emulator.calls())["/video/complete"] == 0
    assert job_state(emulator, record["queue_id"])["media_deleted"] is False
    repair_delivery(how, emulator, moto_s3)
    assert_nothing_left(moto_s3, BUCKET, KEY)

    result = generate(model).execute(make_context(store))

    check_result(moto_s3, result, model)
    assert result["queue_id"] == record["queue_id"]
    tally = counts(emulator.calls())
    assert (tally["/video/quote"], tally["/video/queue"], tally["/video/complete"]) == (1, 1, 1)
    assert store.get("venice_job")["stage"] == "completed"


@pytest.mark.parametrize("model", [T2V, VPS])
def test_retry_after_delivery_only_completes(venice, moto_s3, model):
    emulator = venice()
    store = FakeStore()
    emulator.add_faults({"endpoint": "/video/complete", "status": 503})

    with pytest.raises(AirflowException, match="safely in"):
        generate(model).execute(make_context(store))

    assert store.get("venice_job")["stage"] == "delivered"
    stored = object_sha256(moto_s3, BUCKET, KEY)
    before = len(emulator.calls())
    context = make_context(store)

    result = generate(model).execute(context)

    calls = emulator.calls()[before:]
    assert calls_to(calls, "/video/complete")[-1]["status"] == (400 if model == VPS else 200)
    expected = (
        ["POST /api/v1/video/complete"] if model == T2V else ["DELETE /_media", "POST /api/v1/video/complete"]
    )
    assert venice_paths(calls) == expected
    assert (result["size_bytes"], result["sha256"]) == stored
    assert store.get("venice_job")["stage"] == "completed"
    assert alias_events(context)[0][1]["queue_id"] == result["queue_id"]

    # a further try after completion calls Venice no more, and still reports the video
    before = len(emulator.calls())
    assert generate(model).execute(make_context(store)) == result
    assert emulator.calls()[before:] == []


def test_existing_key_with_replace_false_fails_before_queueing(venice, moto_s3):
    emulator = venice()
    moto_s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"keep me")

    with pytest.raises(AirflowFailException, match="nothing was queued"):
        generate().execute(make_context())

    assert counts(emulator.calls())["/video/queue"] == 0
    assert counts(emulator.calls())["/video/quote"] == 0
    assert object_bytes(moto_s3, BUCKET, KEY) == b"keep me"


def test_replace_true_overwrites_an_existing_key(venice, moto_s3):
    venice()
    moto_s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"old")

    result = generate(replace=True).execute(make_context())

    check_result(moto_s3, result, T2V)


@pytest.mark.parametrize(("bucket", "key"), [("Bad_Bucket", KEY), (BUCKET, "/leading-slash.mp4")])
def test_bad_s3_location_fails_before_anything_is_paid(venice, bucket, key):
    emulator = venice()

    with pytest.raises(AirflowFailException, match="s3_bucket" if bucket != BUCKET else "s3_key"):
        generate(s3_bucket=bucket, s3_key=key).execute(make_context())

    assert emulator.calls() == []


def test_max_usd_below_the_quote_fails_before_queueing(venice, moto_s3):
    emulator = venice()

    with pytest.raises(AirflowFailException, match="max_usd"):
        generate(max_usd=0.01).execute(make_context())

    tally = counts(emulator.calls())
    assert (tally["/video/quote"], tally["/video/queue"]) == (1, 0)
    assert_nothing_left(moto_s3, BUCKET, KEY)
