"""Quote, queue (pay once) and complete operators, over a scripted Venice (``httpx.MockTransport``).

A try is a fresh operator instance with the same task state store, as Airflow runs it: XComs are
cleared between tries, the store is not.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import structlog

from airflow_provider_venice.version_compat import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from conftest import FakeStore, FakeVenice

from airflow_provider_venice.operators.video import (
    VeniceVideoCompleteOperator,
    VeniceVideoQueueOperator,
    VeniceVideoQuoteOperator,
)

BASE_URL = "https://venice.test/api/v1"  # the fake Venice of conftest.py
API_KEY = "sk-test-0123456789abcdef"
T2V = "wan-2-7-text-to-video"
I2V = "wan-2-7-image-to-video"
REF = "wan-2-7-reference-to-video"
VPS = "grok-imagine-text-to-video-private"  # its audio is always on
UPSCALE = "topaz-video-upscale"
DOWNLOAD_URL = "https://media.venice.test/files/q-vps.mp4?sig=abc"
RECORD = "venice_job"
JOB_KEYS = {"model", "queue_id", "download_url", "quote_usd", "request_fingerprint"}

QUEUE = "/api/v1/video/queue"
QUOTE = "/api/v1/video/quote"
MODELS = "/api/v1/models"
COMPLETE = "/api/v1/video/complete"
IMG = "https://example.com/frame.png"


class ProcessKilled(BaseException):
    """The worker died here (SIGKILL): nothing after this point runs."""


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def raw_json(status: int, text: str) -> httpx.Response:
    """An answer whose body is ``text`` as it is (``NaN``, ``Infinity``: not strict JSON)."""
    return httpx.Response(status, content=text.encode(), headers={"content-type": "application/json"})


def queue_op(**fields: Any) -> VeniceVideoQueueOperator:
    fields.setdefault("model", T2V)
    fields.setdefault("duration", "5s")
    if fields["model"] != UPSCALE:
        fields.setdefault("prompt", "a red fox running through fresh snow")
    return VeniceVideoQueueOperator(task_id="queue", **fields)


def quote_op(**fields: Any) -> VeniceVideoQuoteOperator:
    fields.setdefault("model", T2V)
    fields.setdefault("duration", "5s")
    return VeniceVideoQuoteOperator(task_id="quote", **fields)


def assert_no_secret(value: Any) -> None:
    assert API_KEY not in json.dumps(value, default=str)


def events_text(logs: list[dict[str, Any]]) -> str:
    return "\n".join(str(entry.get("event")) for entry in logs)


# --- quote -----------------------------------------------------------------------------------------


def test_quote_returns_model_and_price(venice: FakeVenice, context: dict[str, Any]) -> None:
    op = quote_op(duration="10s", resolution="1080p", audio=False)
    result = op.execute(context)
    assert result == {"model": T2V, "quote_usd": 0.35}
    json.dumps(result)
    assert venice.bodies(QUOTE) == [{"model": T2V, "duration": "10s", "resolution": "1080p", "audio": False}]
    assert venice.calls(QUEUE) == []


def test_quote_needs_only_model_and_duration(venice: FakeVenice, context: dict[str, Any]) -> None:
    """The API's own quote example sends no prompt; neither does the operator (issue 12, #10)."""
    assert quote_op().execute(context) == {"model": T2V, "quote_usd": 0.35}
    assert venice.bodies(QUOTE) == [{"model": T2V, "duration": "5s"}]


def test_quote_ignores_the_fields_pricing_does_not_need(venice: FakeVenice, context: dict[str, Any]) -> None:
    """One dict of request fields serves the quote and the queue; only pricing fields are sent."""
    quote_op(model=I2V, prompt="p", negative_prompt="n", image_url=IMG).execute(context)
    assert venice.bodies(QUOTE) == [{"model": I2V, "duration": "5s"}]


@pytest.mark.parametrize("seconds", [12.5, "12.5", 150])
def test_quote_sends_the_reference_video_total_duration(
    venice: FakeVenice, context: dict[str, Any], seconds: Any
) -> None:
    quote_op(model=REF, reference_video_total_duration=seconds).execute(context)
    [body] = venice.bodies(QUOTE)
    assert body["reference_video_total_duration"] == float(seconds)
    assert isinstance(body["reference_video_total_duration"], int | float)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"upscale_factor": "two"}, "upscale_factor"),
        ({"audio": "maybe"}, "audio"),
        ({"reference_video_total_duration": "long"}, "reference_video_total_duration"),
        ({"duration": None}, "duration"),
        ({"resolution": ["720p"]}, "resolution"),
    ],
)
def test_quote_with_a_bad_pricing_field_fails_naming_it_before_any_request(
    venice: FakeVenice, context: dict[str, Any], fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(AirflowFailException, match=f"{field}:"):
        quote_op(**fields).execute(context)
    assert venice.requests == []


@pytest.mark.parametrize(
    ("fields", "field", "mention"),
    [
        ({"duration": "7s"}, "duration", "5s, 10s"),
        ({"model": REF, "reference_video_total_duration": -1}, "reference_video_total_duration", ""),
        ({"model": REF, "reference_video_total_duration": 151}, "reference_video_total_duration", "150"),
        ({"model": UPSCALE, "duration": "Auto", "upscale_factor": 2}, "video_url", "required"),
    ],
)
def test_quote_refuses_an_invalid_request_before_asking(
    venice: FakeVenice, context: dict[str, Any], fields: dict[str, Any], field: str, mention: str
) -> None:
    with pytest.raises(AirflowFailException, match=f"{field}:") as info:
        quote_op(**fields).execute(context)
    assert mention in str(info.value)
    assert venice.calls(QUOTE) == []


@pytest.mark.parametrize("answer", ["NaN", "Infinity", "-Infinity", "-0.5", '"free"', "null"])
def test_quote_operator_refuses_a_quote_that_is_not_a_finite_amount(
    venice: FakeVenice, context: dict[str, Any], answer: str
) -> None:
    venice.on("POST", QUOTE, raw_json(200, f'{{"quote": {answer}}}'))
    with pytest.raises(AirflowException, match="quote"):
        quote_op().execute(context)


def test_quote_maps_transient_and_permanent_errors(venice: FakeVenice, context: dict[str, Any]) -> None:
    venice.on("POST", QUOTE, json_response(503, {"error": "at capacity"}))
    with pytest.raises(AirflowException) as info:
        quote_op().execute(context)
    assert not isinstance(info.value, AirflowFailException)
    venice.on("POST", QUOTE, json_response(401, {"error": "Authentication failed"}))
    with pytest.raises(AirflowFailException, match="Authentication failed"):
        quote_op().execute(context)


# --- queue: happy paths --------------------------------------------------------------------------


def test_queue_result_shape_and_calls(venice: FakeVenice, context: dict[str, Any], store: FakeStore) -> None:
    result = queue_op(resolution="720p", aspect_ratio="9:16", negative_prompt="blur").execute(context)
    assert set(result) == JOB_KEYS
    assert {k: result[k] for k in ("model", "queue_id", "download_url", "quote_usd")} == {
        "model": T2V,
        "queue_id": "q-1",
        "download_url": None,
        "quote_usd": 0.35,
    }
    assert isinstance(result["request_fingerprint"], str)
    assert result["request_fingerprint"]
    assert json.loads(json.dumps(result)) == result
    assert venice.paths() == [f"GET {MODELS}", f"POST {QUOTE}", f"POST {QUEUE}"]
    assert venice.bodies(QUEUE) == [
        {
            "model": T2V,
            "prompt": "a red fox running through fresh snow",
            "duration": "5s",
            "negative_prompt": "blur",
            "aspect_ratio": "9:16",
            "resolution": "720p",
        }
    ]
    record = store.data[RECORD]
    assert record["stage"] == "queued"
    assert record["job"]["queue_id"] == "q-1"
    assert record["job"]["model"] == T2V
    assert venice.authorization(QUEUE) == [f"Bearer {API_KEY}"]
    assert_no_secret(store.data)
    assert_no_secret(result)


def test_queue_vps_model_keeps_the_download_url(
    venice: FakeVenice, context: dict[str, Any], store: FakeStore
) -> None:
    result = queue_op(model=VPS, duration="6s").execute(context)
    assert (result["model"], result["queue_id"], result["download_url"]) == (VPS, "q-1", DOWNLOAD_URL)
    assert store.data[RECORD]["job"]["download_url"] == DOWNLOAD_URL


def test_queue_and_quote_push_each_key_as_its_own_xcom() -> None:
    """``queue.output["queue_id"]`` works without flags: the operators set ``multiple_outputs``."""
    assert queue_op().multiple_outputs is True
    assert quote_op().multiple_outputs is True


def test_templated_text_values_become_api_types(
    venice: FakeVenice, new_store: Callable[[], FakeStore]
) -> None:
    queue_op(
        model=UPSCALE, duration="Auto", video_url="https://example.com/in.mp4", upscale_factor="2"
    ).execute({"task_state_store": new_store()})
    queue_op(audio="false", reference_image_urls=None).execute({"task_state_store": new_store()})
    first, second = venice.bodies(QUEUE)
    assert first["upscale_factor"] == 2
    assert second["audio"] is False


def test_templated_list_values_are_parsed(venice: FakeVenice, context: dict[str, Any]) -> None:
    queue_op(model=REF, image_url=IMG, reference_image_urls=json.dumps([IMG, IMG])).execute(context)
    assert venice.bodies(QUEUE)[0]["reference_image_urls"] == [IMG, IMG]


def test_catalogue_is_fetched_once_per_process(
    venice: FakeVenice, new_store: Callable[[], FakeStore]
) -> None:
    for _ in range(3):
        queue_op().execute({"task_state_store": new_store()})
    assert len(venice.calls(MODELS)) == 1
    assert len(venice.calls(QUEUE)) == 3


@pytest.mark.parametrize("audio", [True, "true"])
def test_audio_true_on_a_model_whose_audio_is_always_on_is_accepted(
    venice: FakeVenice, context: dict[str, Any], audio: Any
) -> None:
    """Issue 12, #11: asking for what the model always does is not an error."""
    result = queue_op(model=VPS, duration="6s", audio=audio).execute(context)
    assert result["queue_id"] == "q-1"
    assert venice.bodies(QUEUE)[0]["audio"] is True


def test_audio_false_on_a_model_whose_audio_is_always_on_is_refused(
    venice: FakeVenice, context: dict[str, Any]
) -> None:
    with pytest.raises(AirflowFailException, match=r"audio:.*always on"):
        queue_op(model=VPS, duration="6s", audio=False).execute(context)
    assert venice.calls(QUEUE) == []


# --- queue: refused before paying ----------------------------------------------------------------

INVALID = [
    ({"model": "sora-42"}, "model", [T2V, VPS]),
    ({"duration": "7s"}, "duration", ["5s, 10s"]),
    ({"duration": None}, "duration", ["required"]),
    ({"resolution": "4k"}, "resolution", ["720p, 1080p"]),
    ({"aspect_ratio": "1:1"}, "aspect_ratio", ["16:9, 9:16"]),
    ({"model": I2V}, "image_url", ["required"]),
    ({"model": REF, "image_url": IMG, "reference_image_urls": [IMG] * 10}, "reference_image_urls", ["9"]),
    (
        {"model": REF, "image_url": IMG, "elements": [{"frontal_image_url": IMG}] * 5},
        "elements",
        ["at most 4"],
    ),
    (
        {"model": REF, "image_url": IMG, "elements": [{"reference_image_urls": [IMG] * 4}]},
        "elements[0].reference_image_urls",
        ["at most 3"],
    ),
    ({"model": REF, "image_url": IMG, "scene_image_urls": [IMG] * 5}, "scene_image_urls", ["at most 4"]),
    ({"upscale_factor": 2}, "upscale_factor", ["only upscale models"]),
    ({"model": UPSCALE, "duration": "Auto", "upscale_factor": 2}, "video_url", ["required"]),
    (
        {"model": UPSCALE, "duration": "Auto", "video_url": "https://e.com/v.mp4", "upscale_factor": 3},
        "upscale_factor",
        ["1, 2, 4"],
    ),
    ({"prompt": "x" * 201}, "prompt", ["201", "at most 200"]),
    ({"model": I2V, "image_url": "data:image/png;base64,!!not-base64!!"}, "image_url", ["base64"]),
    ({"model": I2V, "image_url": "file:///tmp/frame.png"}, "image_url", ["http(s) URL"]),
    ({"end_image_url": "ftp://example.com/end.png"}, "end_image_url", ["http(s) URL"]),
    ({"audio": "maybe"}, "audio", ["bool"]),
]


@pytest.mark.parametrize(("fields", "field", "mentions"), INVALID, ids=[case[1] for case in INVALID])
def test_invalid_request_fails_permanently_and_queues_nothing(
    venice: FakeVenice,
    context: dict[str, Any],
    store: FakeStore,
    fields: dict[str, Any],
    field: str,
    mentions: list[str],
) -> None:
    with pytest.raises(AirflowFailException) as info:
        queue_op(**fields).execute(context)
    message = str(info.value)
    assert f"{field}:" in message
    for text in mentions:
        assert text in message
    assert venice.calls(QUEUE) == []
    assert venice.calls(QUOTE) == []
    assert store.data == {}


# --- queue: money --------------------------------------------------------------------------------


def test_quote_above_max_usd_fails_before_queueing(
    venice: FakeVenice, context: dict[str, Any], store: FakeStore
) -> None:
    venice.on("POST", QUOTE, json_response(200, {"quote": 1.25}))
    with pytest.raises(AirflowFailException, match=r"max_usd.*1\.25.*0\.5000.*nothing was queued"):
        queue_op(max_usd=0.5).execute(context)
    assert venice.calls(QUEUE) == []
    assert store.data == {}


@pytest.mark.parametrize("max_usd", [1.25, 2, "1.5", " 1.5 ", 1_000_000])
def test_quote_within_max_usd_queues(venice: FakeVenice, context: dict[str, Any], max_usd: Any) -> None:
    """``max_usd`` may be rendered from a template (``"{{ var.value.budget }}"`` gives ``"1.5"``)."""
    venice.on("POST", QUOTE, json_response(200, {"quote": 1.25}))
    assert queue_op(max_usd=max_usd).execute(context)["quote_usd"] == 1.25
    assert len(venice.calls(QUEUE)) == 1


@pytest.mark.parametrize(
    "max_usd",
    [
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        "1e999",
        float("nan"),
        float("inf"),
        -1,
        "-1",
        -0.01,
        "abc",
        True,
    ],
    ids=repr,
)
def test_a_max_usd_that_is_not_a_finite_amount_is_refused_before_anything(
    venice: FakeVenice, context: dict[str, Any], store: FakeStore, max_usd: Any
) -> None:
    """Issue 12, #5: ``max_usd="nan"`` compared false with every quote, waving a $999 job through."""
    venice.on("POST", QUOTE, json_response(200, {"quote": 999.0}))
    with pytest.raises(AirflowFailException, match="max_usd") as info:
        queue_op(max_usd=max_usd).execute(context)
    assert "nothing was queued" in str(info.value)
    assert venice.calls(QUEUE) == []
    assert store.data == {}


@pytest.mark.parametrize("answer", ["NaN", "Infinity", "-1", "-0.01", "1e999"])
def test_a_quote_that_is_not_a_finite_amount_is_refused_before_queueing(
    venice: FakeVenice, context: dict[str, Any], store: FakeStore, answer: str
) -> None:
    venice.on("POST", QUOTE, raw_json(200, f'{{"quote": {answer}}}'))
    with pytest.raises(AirflowFailException, match="max_usd"):
        queue_op(max_usd=5).execute(context)
    assert venice.calls(QUEUE) == []
    assert store.data == {}


@pytest.mark.parametrize("answer", ["NaN", "Infinity", "-1"])
def test_without_max_usd_an_impossible_quote_is_not_recorded_as_the_price(
    venice: FakeVenice, context: dict[str, Any], store: FakeStore, answer: str
) -> None:
    """Without a budget an unusable quote is not enforced, but it never becomes the recorded price."""
    venice.on("POST", QUOTE, raw_json(200, f'{{"quote": {answer}}}'))
    try:
        result = queue_op().execute(context)
    except AirflowFailException:  # refusing to queue at all would keep the promise too
        assert venice.calls(QUEUE) == []
        return
    assert result["quote_usd"] is None
    json.loads(json.dumps(result, allow_nan=False))
    json.loads(json.dumps(store.data, allow_nan=False))


def test_the_budget_is_checked_against_a_quote_that_counts_the_reference_video(
    venice: FakeVenice, context: dict[str, Any]
) -> None:
    venice.on("POST", QUOTE, json_response(200, {"quote": 0.8}))
    queue_op(model=REF, image_url=IMG, reference_video_total_duration="30", max_usd=1).execute(context)
    [quoted] = venice.bodies(QUOTE)
    assert quoted["reference_video_total_duration"] == 30.0
    assert "prompt" not in quoted
    [queued] = venice.bodies(QUEUE)
    assert "reference_video_total_duration" not in queued  # a pricing field, not a request field


def test_without_a_quote_max_usd_cannot_be_enforced(venice: FakeVenice, context: dict[str, Any]) -> None:
    venice.on("POST", QUOTE, json_response(503, {"error": "busy"}))
    with pytest.raises(AirflowException, match="max_usd"):
        queue_op(max_usd=1).execute(context)
    assert venice.calls(QUEUE) == []


def test_without_max_usd_a_failed_quote_does_not_block(venice: FakeVenice, context: dict[str, Any]) -> None:
    venice.on("POST", QUOTE, json_response(500, {"error": "quote service down"}))
    result = queue_op().execute(context)
    assert result["quote_usd"] is None
    assert result["queue_id"] == "q-1"


# --- queue: never pay twice ----------------------------------------------------------------------


def test_a_retry_resumes_the_job_instead_of_queueing_again(venice: FakeVenice, store: FakeStore) -> None:
    first = queue_op().execute({"task_state_store": store})
    # a new try: a fresh operator instance (XComs cleared), the same task state store
    second = queue_op().execute({"task_state_store": store})
    assert second == first
    assert len(venice.calls(QUEUE)) == 1
    assert len(venice.calls(QUOTE)) == 1


def test_a_retry_resumes_a_vps_job_with_its_download_url(venice: FakeVenice, store: FakeStore) -> None:
    first = queue_op(model=VPS, duration="6s").execute({"task_state_store": store})
    second = queue_op(model=VPS, duration="6s").execute({"task_state_store": store})
    assert second == first
    assert second["download_url"] == DOWNLOAD_URL
    assert len(venice.calls(QUEUE)) == 1


@pytest.mark.parametrize(
    "change",
    [{"prompt": "something else entirely"}, {"model": VPS, "duration": "6s"}, {"duration": "10s"}],
    ids=["prompt", "model", "duration"],
)
def test_a_cleared_task_whose_request_changed_starts_a_new_job(
    venice: FakeVenice, store: FakeStore, change: dict[str, Any]
) -> None:
    """Issue 12, #4: the record belongs to the request it was made for; the old job is named in the log."""
    first = queue_op().execute({"task_state_store": store})
    with structlog.testing.capture_logs() as logs:
        second = queue_op(**change).execute({"task_state_store": store})
    assert second["queue_id"] != first["queue_id"]
    assert second["request_fingerprint"] != first["request_fingerprint"]
    assert len(venice.calls(QUEUE)) == 2
    assert venice.bodies(QUEUE)[1]["model"] == change.get("model", T2V)
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert any(first["queue_id"] in str(entry["event"]) for entry in warnings), logs
    assert "not completed" in events_text(warnings)
    assert store.data[RECORD]["job"]["queue_id"] == second["queue_id"]
    assert venice.calls(COMPLETE) == []  # the earlier job is left as it is, not released
    # and the next try of the changed request resumes the new job
    assert queue_op(**change).execute({"task_state_store": store}) == second
    assert len(venice.calls(QUEUE)) == 2


def test_a_record_without_a_request_fingerprint_is_never_paid_for_again(
    venice: FakeVenice, store: FakeStore
) -> None:
    """A try of the code before the typed job (flat record, same key) failed; the worker was upgraded.

    The record cannot tell which request it was made for, but it says a job was paid for: the retry
    resumes it (or refuses, naming it), and never queues a second one.
    """
    store.set(RECORD, {"stage": "queued", "model": T2V, "queue_id": "q-old", "quote_usd": 0.35})
    try:
        outcome = queue_op().execute({"task_state_store": store})["queue_id"]
    except AirflowFailException as exc:
        outcome = str(exc)
    assert "q-old" in outcome
    assert venice.calls(QUEUE) == []


def test_an_unanswered_queue_recorded_without_a_request_fingerprint_is_never_sent_again(
    venice: FakeVenice, store: FakeStore
) -> None:
    store.set(RECORD, {"stage": "queueing", "model": T2V})
    with pytest.raises(AirflowFailException):
        queue_op().execute({"task_state_store": store})
    assert venice.calls(QUEUE) == []


def test_separate_task_instances_queue_separately(
    venice: FakeVenice, new_store: Callable[[], FakeStore]
) -> None:
    one = queue_op().execute({"task_state_store": new_store()})
    two = queue_op().execute({"task_state_store": new_store()})
    assert one["queue_id"] != two["queue_id"]
    assert len(venice.calls(QUEUE)) == 2


def test_the_record_says_queueing_before_the_post_and_queued_right_after(
    venice: FakeVenice, store: FakeStore
) -> None:
    seen: list[Any] = []

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(store.get(RECORD))
        return json_response(200, {"model": T2V, "queue_id": "q-spy"})

    venice.on("POST", QUEUE, spy)
    queue_op().execute({"task_state_store": store})
    [before] = seen
    assert before["stage"] == "queueing"
    assert "job" not in before
    assert store.get(RECORD)["stage"] == "queued"
    assert store.get(RECORD)["job"]["queue_id"] == "q-spy"


@pytest.mark.parametrize(
    "error", [ConnectionError("task state store unavailable"), ProcessKilled()], ids=["refused", "killed"]
)
def test_a_failed_write_of_the_queued_record_keeps_the_queue_id_and_never_queues_again(
    venice: FakeVenice, new_store: Callable[..., FakeStore], error: BaseException
) -> None:
    """Issue 12, #1: the queue_id is in the task log before the write; the error names it."""
    store = new_store(fail_stage="queued", error=error)
    logged_at_write: list[str] = []
    with structlog.testing.capture_logs() as logs:

        def at_write(key: str, value: Any) -> None:
            if value.get("stage") == "queued":
                logged_at_write.append(events_text(logs))

        store.on_set = at_write
        with pytest.raises(type(error) if isinstance(error, ProcessKilled) else AirflowFailException) as info:
            queue_op().execute({"task_state_store": store})

    assert store.refused, "the queued record was never written"
    assert "q-1" in logged_at_write[0], "the queue_id was not logged before the record write"
    if not isinstance(error, ProcessKilled):
        message = str(info.value)
        assert "q-1" in message
        assert "VeniceVideoToS3Operator" in message
        assert "will not queue again" in message
        assert_no_secret(message)
    assert store.data[RECORD]["stage"] == "queueing"

    with pytest.raises(AirflowFailException, match="never recorded Venice's answer"):
        queue_op().execute({"task_state_store": store})
    assert len(venice.calls(QUEUE)) == 1


def test_a_2xx_answer_without_model_is_recorded_with_the_requested_model(
    venice: FakeVenice, store: FakeStore
) -> None:
    """Issue 12, #2: the job exists and was charged; the model is known from the request."""
    venice.on("POST", QUEUE, json_response(200, {"queue_id": "q-nomodel"}))
    result = queue_op().execute({"task_state_store": store})
    assert (result["model"], result["queue_id"]) == (T2V, "q-nomodel")
    assert store.data[RECORD]["stage"] == "queued"
    assert store.data[RECORD]["job"]["model"] == T2V
    assert queue_op().execute({"task_state_store": store}) == result
    assert len(venice.calls(QUEUE)) == 1


@pytest.mark.parametrize(
    "answer",
    [
        json_response(200, {"model": T2V}),
        json_response(200, {"model": T2V, "queue_id": ""}),
        json_response(200, {"model": T2V, "queue_id": 42}),
        json_response(200, ["q-1"]),
        httpx.Response(200, text="<html>queued</html>", headers={"content-type": "text/html"}),
        httpx.Response(200, content=b""),
    ],
    ids=["no-queue-id", "empty-queue-id", "numeric-queue-id", "a-list", "html", "empty-body"],
)
def test_a_2xx_answer_without_a_readable_queue_id_is_an_unknown_outcome_never_queued_again(
    venice: FakeVenice, store: FakeStore, answer: httpx.Response
) -> None:
    venice.on("POST", QUEUE, answer)
    with pytest.raises(AirflowFailException, match="outcome is unknown"):
        queue_op().execute({"task_state_store": store})
    assert store.data[RECORD]["stage"] == "queueing"
    # a retry, and a second one, refuse to queue: the first request may have been charged
    for _ in range(2):
        with pytest.raises(AirflowFailException, match="never recorded Venice's answer"):
            queue_op().execute({"task_state_store": store})
    assert len(venice.calls(QUEUE)) == 1


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a complete response."),
        json_response(504, {"error": "Gateway timeout."}),
        json_response(500, {"error": "Inference failed."}),
    ],
    ids=["read-timeout", "reset-after-send", "504", "500"],
)
def test_unknown_queue_outcome_fails_permanently_and_is_not_resent(
    venice: FakeVenice, store: FakeStore, failure: Any
) -> None:
    venice.on("POST", QUEUE, failure)
    with pytest.raises(AirflowFailException, match="not resent"):
        queue_op().execute({"task_state_store": store})
    assert len(venice.calls(QUEUE)) == 1
    # the next try must not pay again either
    with pytest.raises(AirflowFailException, match="never recorded Venice's answer"):
        queue_op().execute({"task_state_store": store})
    assert len(venice.calls(QUEUE)) == 1


def test_unknown_queue_outcome_is_not_resent_even_with_client_retries(
    venice: FakeVenice, store: FakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_VENICE_DEFAULT", venice.connection(max_retries=4))
    venice.on("POST", QUEUE, httpx.ReadTimeout("timed out"))
    with pytest.raises(AirflowFailException):
        queue_op().execute({"task_state_store": store})
    assert len(venice.calls(QUEUE)) == 1


def test_a_queue_that_never_connected_can_be_retried(venice: FakeVenice, store: FakeStore) -> None:
    venice.on("POST", QUEUE, httpx.ConnectError("connection refused"))
    with pytest.raises(AirflowException) as info:
        queue_op().execute({"task_state_store": store})
    assert not isinstance(info.value, AirflowFailException)
    assert store.data == {}  # provably nothing was created: the next try queues
    venice.scripts.clear()
    assert queue_op().execute({"task_state_store": store})["queue_id"] == "q-1"


@pytest.mark.parametrize(
    "answer",
    [
        json_response(503, {"error": "The model is at capacity."}, {"retry-after": "0"}),
        json_response(429, {"error": "Rate limit exceeded."}, {"retry-after": "0"}),
    ],
    ids=["503", "429"],
)
def test_transient_queue_errors_are_retryable(venice: FakeVenice, store: FakeStore, answer: Any) -> None:
    venice.on("POST", QUEUE, answer)
    with pytest.raises(AirflowException) as info:
        queue_op().execute({"task_state_store": store})
    assert not isinstance(info.value, AirflowFailException)
    assert store.data == {}


@pytest.mark.parametrize(
    ("status", "body", "mention"),
    [
        (400, {"error": "Invalid request", "details": {"duration": {"_errors": ["bad"]}}}, "duration: bad"),
        (401, {"error": "Authentication failed"}, "Authentication failed"),
        (402, {"error": "Insufficient USD or Diem balance"}, "Insufficient"),
        (403, {"error": "Model unavailable in your region"}, "region"),
        (409, {"error": {"code": "needs_consent"}}, "needs_consent"),
        (413, {"code": "PAYLOAD_TOO_LARGE", "error": "too big"}, "PAYLOAD_TOO_LARGE"),
        (422, {"error": "policy", "suggested_prompt": "a fox"}, "suggested prompt: 'a fox'"),
    ],
)
def test_permanent_queue_errors_fail_without_retries(
    venice: FakeVenice, store: FakeStore, status: int, body: Any, mention: str
) -> None:
    venice.on("POST", QUEUE, json_response(status, body))
    with pytest.raises(AirflowFailException) as info:
        queue_op().execute({"task_state_store": store})
    assert mention in str(info.value)
    assert str(status) in str(info.value)
    assert len(venice.calls(QUEUE)) == 1
    assert store.data == {}
    assert_no_secret(str(info.value))


def test_catalogue_errors_fail_before_queueing(venice: FakeVenice, context: dict[str, Any]) -> None:
    venice.on("GET", MODELS, json_response(503, {"error": "busy"}))
    with pytest.raises(AirflowException, match="model catalogue") as info:
        queue_op().execute(context)
    assert not isinstance(info.value, AirflowFailException)
    venice.on("GET", MODELS, json_response(401, {"error": "Authentication failed"}))
    with pytest.raises(AirflowFailException, match="model catalogue"):
        queue_op().execute(context)
    assert venice.calls(QUEUE) == []


def test_queue_without_a_task_state_store_still_works(venice: FakeVenice) -> None:
    assert queue_op().execute({})["queue_id"] == "q-1"


def test_operators_do_no_io_at_construction(venice: FakeVenice) -> None:
    queue_op()
    quote_op()
    VeniceVideoCompleteOperator(task_id="c", model=T2V, queue_id="q-1")
    VeniceVideoCompleteOperator(task_id="c2", job={"model": T2V, "queue_id": "q-1"})
    assert venice.requests == []


def test_every_api_field_is_templated() -> None:
    fields = set(VeniceVideoQueueOperator.template_fields)
    for name in (
        "model",
        "prompt",
        "negative_prompt",
        "duration",
        "aspect_ratio",
        "resolution",
        "upscale_factor",
        "audio",
        "image_url",
        "end_image_url",
        "audio_url",
        "video_url",
        "reference_image_urls",
        "elements",
        "scene_image_urls",
        "reference_video_total_duration",
        "venice_conn_id",
        "max_usd",
    ):
        assert name in fields
    assert "job" in VeniceVideoCompleteOperator.template_fields


# --- complete ------------------------------------------------------------------------------------


def test_complete_finalises_a_job(venice: FakeVenice, context: dict[str, Any]) -> None:
    result = VeniceVideoCompleteOperator(task_id="c", model=T2V, queue_id="q-9").execute(context)
    assert result == {"model": T2V, "queue_id": "q-9", "completed": True}
    assert venice.bodies(COMPLETE) == [{"model": T2V, "queue_id": "q-9"}]
    assert venice.calls(method="DELETE") == []


@pytest.mark.parametrize("model", [T2V, VPS])
def test_complete_takes_the_queue_operators_output_as_the_job(
    venice: FakeVenice, new_store: Callable[[], FakeStore], model: str
) -> None:
    """``job=queue.output``: the whole job, as a native value, with keys it does not use."""
    job = queue_op(model=model, duration="6s" if model == VPS else "5s").execute(
        {"task_state_store": new_store()}
    )
    if model == VPS:  # Venice does not know VPS jobs for complete: taken as released
        venice.on("POST", COMPLETE, json_response(400, {"error": "Request ID is invalid"}))
    result = VeniceVideoCompleteOperator(task_id="c", job={**job, "status": "COMPLETED"}).execute(
        {"task_state_store": new_store()}
    )
    assert result == {"model": model, "queue_id": job["queue_id"], "completed": True}
    assert venice.bodies(COMPLETE) == [{"model": model, "queue_id": job["queue_id"]}]
    deletes = [str(r.url) for r in venice.calls(method="DELETE")]
    assert deletes == ([DOWNLOAD_URL] if model == VPS else [])


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"job": "{'model': 'wan-2-7-text-to-video', 'queue_id': 'q-1'}"}, "job"),
        ({"job": json.dumps({"model": T2V, "queue_id": "q-1"})}, "job"),
        ({"job": ["wan-2-7-text-to-video", "q-1"]}, "job"),
        ({"job": {"model": T2V}}, "queue_id"),
        ({"job": {"model": T2V, "queue_id": ""}}, "queue_id"),
        ({"job": {"model": T2V, "queue_id": "q-1", "download_url": "None"}}, "download_url"),
        ({"model": T2V, "queue_id": "q-1", "download_url": "None"}, "download_url"),
        ({"model": T2V, "queue_id": "q-1", "download_url": ""}, "download_url"),
        ({"model": T2V, "queue_id": None}, "queue_id"),
        ({}, "job"),
    ],
    ids=[
        "rendered-dict",
        "json-text",
        "a-list",
        "no-queue-id",
        "empty-queue-id",
        "job-download-url-None-text",
        "download-url-None-text",
        "download-url-empty",
        "queue-id-none",
        "nothing",
    ],
)
def test_complete_refuses_what_is_not_a_job_naming_the_field_before_any_request(
    venice: FakeVenice, context: dict[str, Any], arguments: dict[str, Any], field: str
) -> None:
    """A rendered template string is not a job: pass ``job=queue.output``, never parse text back."""
    with pytest.raises(AirflowFailException, match=field):
        VeniceVideoCompleteOperator(task_id="c", **arguments).execute(context)
    assert venice.requests == []


def test_complete_vps_deletes_the_file_without_the_key_and_takes_invalid_id_as_done(
    venice: FakeVenice, context: dict[str, Any]
) -> None:
    venice.on("POST", COMPLETE, json_response(400, {"error": "Request ID is invalid"}))
    op = VeniceVideoCompleteOperator(task_id="c", model=VPS, queue_id="q-vps", download_url=DOWNLOAD_URL)
    assert op.execute(context) == {"model": VPS, "queue_id": "q-vps", "completed": True}
    deletes = venice.calls(method="DELETE")
    assert [str(r.url) for r in deletes] == [DOWNLOAD_URL]
    [delete_auth] = [
        auth for r, auth in zip(venice.requests, venice.authorizations, strict=True) if r.method == "DELETE"
    ]
    assert delete_auth is None
    assert venice.paths()[-1] == f"POST {COMPLETE}"  # the file first, then complete


def test_complete_vps_with_the_file_already_gone(venice: FakeVenice, context: dict[str, Any]) -> None:
    venice.on("DELETE", "/files/q-vps.mp4", httpx.Response(404))
    op = VeniceVideoCompleteOperator(task_id="c", model=VPS, queue_id="q-vps", download_url=DOWNLOAD_URL)
    assert op.execute(context)["completed"] is True
    assert len(venice.calls(COMPLETE)) == 1


def test_complete_of_an_already_completed_job_is_done(venice: FakeVenice, context: dict[str, Any]) -> None:
    venice.on("POST", COMPLETE, json_response(404, {"error": "Media not found"}))
    assert VeniceVideoCompleteOperator(task_id="c", model=T2V, queue_id="q").execute(context)["completed"]


@pytest.mark.parametrize(
    ("download_url", "answer"),
    [
        (None, json_response(400, {"error": "Request ID is invalid"})),
        (DOWNLOAD_URL, json_response(400, {"error": "queue_id: is required"})),
        (None, json_response(401, {"error": "Authentication failed"})),
    ],
    ids=["non-vps-invalid-id", "vps-other-400", "401"],
)
def test_complete_permanent_errors_fail_with_the_queue_id(
    venice: FakeVenice, context: dict[str, Any], download_url: str | None, answer: httpx.Response
) -> None:
    venice.on("POST", COMPLETE, answer)
    op = VeniceVideoCompleteOperator(task_id="c", model=T2V, queue_id="q-77", download_url=download_url)
    with pytest.raises(AirflowFailException, match="q-77"):
        op.execute(context)


def test_complete_transient_errors_are_retryable(venice: FakeVenice, context: dict[str, Any]) -> None:
    venice.on("POST", COMPLETE, json_response(500, {"error": "boom"}))
    with pytest.raises(AirflowException, match="q-5") as info:
        VeniceVideoCompleteOperator(task_id="c", model=T2V, queue_id="q-5").execute(context)
    assert not isinstance(info.value, AirflowFailException)


def test_complete_vps_file_delete_failure_is_retryable_and_complete_not_called(
    venice: FakeVenice, context: dict[str, Any]
) -> None:
    venice.on("DELETE", "/files/q-vps.mp4", httpx.Response(503))
    op = VeniceVideoCompleteOperator(task_id="c", model=VPS, queue_id="q-vps", download_url=DOWNLOAD_URL)
    with pytest.raises(AirflowException) as info:
        op.execute(context)
    assert not isinstance(info.value, AirflowFailException)
    assert venice.calls(COMPLETE) == []
