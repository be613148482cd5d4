"""The fault matrix at the lifecycle's edges: where the job record, Venice's answers or S3 could lose money
or a paid video (issue 12's defects), in-process against the emulator and moto S3.

Same end states as ``test_fault_matrix.py`` (Delivered, Kept, Unknown), same seams: the emulator's
transport (wrapped to alter answers), the task state store (a fake whose writes can fail) and moto S3.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from reliability_support import (
    BUCKET,
    COMPLETE,
    QUEUE,
    QUOTE,
    RETRIEVE,
    T2V,
    FakeStore,
    Stack,
    make_context,
    manifest_key,
    poster_key,
)

from airflow_provider_venice.operators.video import VeniceGenerateVideoOperator
from airflow_provider_venice.transfers.venice_to_s3 import VeniceVideoToS3Operator
from airflow_provider_venice.version_compat import AirflowException, AirflowFailException

KEY = "videos/lifecycle.mp4"


def generate(key: str = KEY, **fields: Any) -> VeniceGenerateVideoOperator:
    fields.setdefault("prompt", "a red fox running through fresh snow")
    fields.setdefault("duration", "5s")
    fields.setdefault("window_interval_s", 0.2)
    fields.setdefault("deferrable", False)
    return VeniceGenerateVideoOperator(task_id="generate", model=T2V, s3_bucket=BUCKET, s3_key=key, **fields)


def to_s3(job: dict[str, Any], **fields: Any) -> VeniceVideoToS3Operator:
    return VeniceVideoToS3Operator(task_id="to_s3", job=job, s3_bucket=BUCKET, s3_key=KEY, **fields)


def fails(op: Any, store: FakeStore, kind: type[BaseException] = AirflowException) -> BaseException:
    with pytest.raises(kind) as info:
        op.execute(make_context(store))
    return info.value


def task_log(capsys: Any) -> str:
    """What the operators logged (Airflow's task logger writes to stdout outside a task runner)."""
    captured = capsys.readouterr()
    return captured.out + captured.err


def rewrite(stack: Stack, path: str, change: Any) -> None:
    """Let ``change(response) -> response`` alter Venice's answers to ``path`` (the request is processed)."""

    def hook(request: httpx.Request, send: Any) -> httpx.Response | None:
        if request.url.path != path:
            return None
        return change(send(request))

    stack.venice.transport.hooks.append(hook)


def with_json(response: httpx.Response, edit: Any) -> httpx.Response:
    body = edit(json.loads(response.read()))
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(response.status_code, headers={"content-type": "application/json"}, content=content)


# --- the job record -------------------------------------------------------------------------------------


class RefusingStore(FakeStore):
    """A task state store whose write of the ``queued`` stage fails (the API server is unreachable)."""

    def set(self, key: str, value: Any) -> None:
        if isinstance(value, dict) and value.get("stage") == "queued":
            raise ConnectionError("the API server did not answer")
        super().set(key, value)


def test_a_failed_record_write_after_paying_names_the_queue_id_and_never_pays_again(
    stack: Stack, capsys: Any
) -> None:
    """Defect 1: the paid queue_id is logged first and named by the error, so the job is never lost."""
    store = RefusingStore()
    error = fails(generate(), store, AirflowFailException)
    [job] = stack.venice.jobs()
    queue_id = job["queue_id"]
    assert f"Venice job {queue_id}" in str(error)
    assert "was queued and paid for" in str(error)
    assert f"queue_id={queue_id}" in task_log(capsys)  # logged before the record was written
    assert store.data["venice_job"]["stage"] == "queueing"
    again = fails(generate(), store, AirflowFailException)  # a retry cannot know: it refuses to pay again
    assert "Not queueing again" in str(again)
    assert len(stack.venice.queue_calls()) == 1
    stack.assert_not_released()
    # The paid video is not lost: delivered from what the error named.
    result = to_s3({"model": T2V, "queue_id": queue_id}).execute(make_context())
    stack.assert_delivered_once(result, KEY)


# --- Venice's answer to /video/queue ----------------------------------------------------------------------


def test_a_queue_answer_without_the_model_is_read_leniently_and_delivered(stack: Stack) -> None:
    """Defect 2: a 2xx answer means a charged job; the model is known from the request."""
    rewrite(
        stack, QUEUE, lambda r: with_json(r, lambda body: {k: v for k, v in body.items() if k != "model"})
    )
    result = generate().execute(make_context(FakeStore()))
    assert result["model"] == T2V
    stack.assert_delivered_once(result, KEY)


def test_an_unreadable_queue_answer_is_an_unknown_outcome_and_never_resent(stack: Stack) -> None:
    """Defect 2: a 2xx answer that names no queue_id: the job exists and was charged; keep the guard."""
    rewrite(stack, QUEUE, lambda r: with_json(r, lambda body: b"<html>queued</html>"))
    store = FakeStore()
    error = fails(generate(), store, AirflowFailException)
    assert "outcome is unknown" in str(error)
    assert len(stack.venice.jobs()) == 1  # Venice did create (and charge) it
    assert "Not queueing again" in str(fails(generate(), store, AirflowFailException))
    assert len(stack.venice.queue_calls()) == 1
    stack.assert_not_released()
    assert stack.s3.objects() == []


# --- a cleared task whose request changed -------------------------------------------------------------------


def test_a_cleared_task_whose_request_changed_starts_a_new_job_and_names_the_old_one(
    stack: Stack, capsys: Any
) -> None:
    """Defect 4: the old job is left undelivered and not completed; the new request's video is delivered."""
    stack.venice.emu.add_faults({"endpoint": "/video/retrieve", "status": 403})  # the first try fails
    store = FakeStore()
    fails(generate(prompt="a red fox"), store, AirflowFailException)
    [old] = stack.venice.jobs()
    result = generate(prompt="a grey wolf").execute(make_context(store))  # cleared with a new prompt
    new = stack.venice.job(result["queue_id"])
    assert new["queue_id"] != old["queue_id"]
    assert [call["body"]["prompt"] for call in stack.venice.queue_calls()] == ["a red fox", "a grey wolf"]
    log = task_log(capsys)
    assert old["queue_id"] in log
    assert "not completed at Venice" in log
    assert stack.venice.job(old["queue_id"])["media_deleted"] is False  # never delivered, never released
    assert new["media_deleted"] is True
    assert [call["body"]["queue_id"] for call in stack.venice.calls(COMPLETE)] == [new["queue_id"]]
    assert stack.s3.manifest(KEY)["queue_id"] == new["queue_id"]
    stack.assert_released_after_delivery(new["queue_id"], KEY)


# --- money ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_usd", [float("nan"), float("inf"), -1.0, "nan", "-0.5", "1e999"])
def test_a_budget_that_is_not_a_finite_amount_charges_nothing(stack: Stack, max_usd: Any) -> None:
    """Defect 5: ``max_usd`` of NaN, infinity or below zero is refused before any call to Venice."""
    store = FakeStore()
    error = fails(generate(max_usd=max_usd), store, AirflowFailException)
    assert "max_usd" in str(error)
    assert "nothing was queued or charged" in str(error)
    assert stack.venice.calls(QUOTE) == []
    assert stack.venice.queue_calls() == []
    assert store.data == {}


@pytest.mark.parametrize("quote", [-5.0, 1e400, "NaN"], ids=["negative", "infinite", "nan"])
def test_a_quote_that_is_not_a_finite_amount_is_refused_before_paying(stack: Stack, quote: Any) -> None:
    """Defect 5: with a budget, a quote Venice cannot mean is no price: nothing is queued."""
    raw = {"quote": quote} if not isinstance(quote, str) else None

    def answer(body: dict[str, Any]) -> Any:
        return json.dumps(raw).encode() if raw is not None else b'{"quote": NaN}'

    rewrite(stack, QUOTE, lambda r: with_json(r, answer))
    error = fails(generate(max_usd=5.0), FakeStore(), AirflowException)
    assert "nothing was queued" in str(error)
    assert stack.venice.queue_calls() == []


# --- what counts as delivered ------------------------------------------------------------------------------


def _queued(stack: Stack) -> dict[str, Any]:
    from airflow_provider_venice.client import QueueVideoRequest, VeniceClient

    request = QueueVideoRequest(model=T2V, prompt="a heron at dawn", duration="5s")
    with VeniceClient("k", base_url=stack.venice.emu.base_url, transport=stack.venice.transport) as client:
        response = client.queue(request)
    return {"model": T2V, "queue_id": response.queue_id}


def test_an_object_with_the_jobs_metadata_but_no_manifest_is_not_taken_as_delivered(stack: Stack) -> None:
    """Defect 6: only a manifest marks a delivery; an object merely naming the job is not one."""
    job = _queued(stack)
    stack.s3.client.put_object(
        Bucket=BUCKET, Key=KEY, Body=b"\x00\x00\x00\x08ftyp", Metadata={"venice-queue-id": job["queue_id"]}
    )
    error = fails(to_s3(job), FakeStore(), AirflowFailException)
    assert "replace=False" in str(error)
    assert job["queue_id"] in str(error)
    assert stack.venice.calls(RETRIEVE) == []  # nothing downloaded
    stack.assert_not_released()
    assert stack.s3.objects() == [KEY]  # someone else's object, left as it is


def test_a_manifest_that_no_longer_matches_its_object_is_not_trusted(stack: Stack) -> None:
    """Defect 6: the object was replaced after its manifest was written; the manifest proves nothing."""
    job = _queued(stack)
    to_s3(job, complete=False).execute(make_context())  # delivered, not released
    stack.s3.client.put_object(Bucket=BUCKET, Key=KEY, Body=b"replaced by another writer")
    error = fails(to_s3(job), FakeStore(), AirflowFailException)  # another task instance, same job
    assert "replace=False" in str(error)
    stack.assert_not_released()
    assert stack.s3.body(KEY) == b"replaced by another writer"


def test_a_matching_manifest_is_trusted_without_a_second_download(stack: Stack) -> None:
    """A video another task instance delivered (manifest written, job not released): adopted, released."""
    job = _queued(stack)
    first = to_s3(job, complete=False).execute(make_context())
    downloads = len(stack.venice.calls(RETRIEVE))
    stack.s3.faults.clear()
    result = to_s3(job).execute(make_context(FakeStore()))
    assert len(stack.venice.calls(RETRIEVE)) == downloads  # not downloaded again
    assert stack.s3.writes(KEY) == 0
    assert stack.s3.writes(manifest_key(KEY)) == 0
    assert stack.s3.writes(poster_key(KEY)) == 0  # nor probed again: its poster is the first one's
    assert result == first  # the same delivery, read back from its manifest: probe and poster included
    assert result["sha256"] == first["sha256"]
    assert stack.venice.job(job["queue_id"])["media_deleted"] is True
    stack.assert_released_after_delivery(job["queue_id"], KEY)
