"""Quote, queue (pay once) and complete operators, over a scripted Venice (``httpx.MockTransport``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from conftest import FakeStore, FakeVenice

from airflow_provider_venice._airflow import JOB_STATE_KEY
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
VPS = "grok-imagine-text-to-video-private"
UPSCALE = "topaz-video-upscale"
DOWNLOAD_URL = "https://media.venice.test/files/q-vps.mp4?sig=abc"

QUEUE = "/api/v1/video/queue"
QUOTE = "/api/v1/video/quote"
MODELS = "/api/v1/models"
COMPLETE = "/api/v1/video/complete"
IMG = "https://example.com/frame.png"


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def queue_op(**fields: Any) -> VeniceVideoQueueOperator:
    fields.setdefault("model", T2V)
    fields.setdefault("duration", "5s")
    if fields["model"] != UPSCALE:
        fields.setdefault("prompt", "a red fox running through fresh snow")
    return VeniceVideoQueueOperator(task_id="queue", **fields)


def assert_no_secret(value: Any) -> None:
    assert API_KEY not in json.dumps(value, default=str)


# --- quote -----------------------------------------------------------------------------------------


def test_quote_returns_model_and_price(venice: FakeVenice, context: dict[str, Any]) -> None:
    op = VeniceVideoQuoteOperator(
        task_id="quote", model=T2V, prompt="p", duration="10s", resolution="1080p", audio=False
    )
    result = op.execute(context)
    assert result == {"model": T2V, "quote_usd": 0.35}
    json.dumps(result)
    assert venice.bodies(QUOTE) == [{"model": T2V, "duration": "10s", "resolution": "1080p", "audio": False}]
    assert venice.calls(QUEUE) == []


def test_quote_refuses_an_invalid_request_before_asking(venice: FakeVenice, context: dict[str, Any]) -> None:
    op = VeniceVideoQuoteOperator(task_id="quote", model=T2V, prompt="p", duration="7s")
    with pytest.raises(AirflowFailException, match=r"duration.*5s, 10s"):
        op.execute(context)
    assert venice.calls(QUOTE) == []


def test_quote_maps_transient_and_permanent_errors(venice: FakeVenice, context: dict[str, Any]) -> None:
    op = VeniceVideoQuoteOperator(task_id="quote", model=T2V, prompt="p", duration="5s")
    venice.on("POST", QUOTE, json_response(503, {"error": "at capacity"}))
    with pytest.raises(AirflowException) as info:
        op.execute(context)
    assert not isinstance(info.value, AirflowFailException)
    venice.on("POST", QUOTE, json_response(401, {"error": "Authentication failed"}))
    with pytest.raises(AirflowFailException, match="Authentication failed"):
        op.execute(context)


# --- queue: happy paths --------------------------------------------------------------------------


def test_queue_result_shape_and_calls(venice: FakeVenice, context: dict[str, Any], store: FakeStore) -> None:
    result = queue_op(resolution="720p", aspect_ratio="9:16", negative_prompt="blur").execute(context)
    assert result == {"model": T2V, "queue_id": "q-1", "download_url": None, "quote_usd": 0.35}
    json.dumps(result)
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
    assert store.data[JOB_STATE_KEY]["stage"] == "queued"
    assert store.data[JOB_STATE_KEY]["queue_id"] == "q-1"
    assert venice.calls(QUEUE)[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_queue_vps_model_keeps_the_download_url(
    venice: FakeVenice, context: dict[str, Any], store: FakeStore
) -> None:
    result = queue_op(model=VPS, duration="6s").execute(context)
    assert result == {"model": VPS, "queue_id": "q-1", "download_url": DOWNLOAD_URL, "quote_usd": 0.35}
    assert store.data[JOB_STATE_KEY]["download_url"] == DOWNLOAD_URL


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


def test_quote_above_max_usd_fails_before_queueing(
    venice: FakeVenice, context: dict[str, Any], store: FakeStore
) -> None:
    venice.on("POST", QUOTE, json_response(200, {"quote": 1.25}))
    with pytest.raises(AirflowFailException, match=r"max_usd.*1\.25.*0\.5000.*nothing was queued"):
        queue_op(max_usd=0.5).execute(context)
    assert venice.calls(QUEUE) == []
    assert store.data == {}


@pytest.mark.parametrize("max_usd", [1.25, 2, "1.5"])
def test_quote_within_max_usd_queues(venice: FakeVenice, context: dict[str, Any], max_usd: Any) -> None:
    venice.on("POST", QUOTE, json_response(200, {"quote": 1.25}))
    assert queue_op(max_usd=max_usd).execute(context)["quote_usd"] == 1.25
    assert len(venice.calls(QUEUE)) == 1


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


def test_the_resumed_job_is_returned_even_if_the_fields_changed(venice: FakeVenice, store: FakeStore) -> None:
    queue_op().execute({"task_state_store": store})
    again = queue_op(prompt="something else entirely").execute({"task_state_store": store})
    assert again["queue_id"] == "q-1"
    assert len(venice.calls(QUEUE)) == 1


def test_separate_task_instances_queue_separately(
    venice: FakeVenice, new_store: Callable[[], FakeStore]
) -> None:
    one = queue_op().execute({"task_state_store": new_store()})
    two = queue_op().execute({"task_state_store": new_store()})
    assert one["queue_id"] != two["queue_id"]
    assert len(venice.calls(QUEUE)) == 2


def test_an_unrecorded_earlier_queue_fails_without_queueing(venice: FakeVenice, store: FakeStore) -> None:
    store.set(JOB_STATE_KEY, {"stage": "queueing", "model": T2V})
    with pytest.raises(AirflowFailException, match="may already exist"):
        queue_op().execute({"task_state_store": store})
    assert venice.calls(QUEUE) == []
    assert venice.requests == []


def test_queue_id_is_persisted_before_returning(venice: FakeVenice, store: FakeStore) -> None:
    """The record is saved as 'queueing' before the POST and 'queued' with the id right after."""
    seen: list[Any] = []

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(store.get(JOB_STATE_KEY))
        return json_response(200, {"model": T2V, "queue_id": "q-spy"})

    venice.on("POST", QUEUE, spy)
    queue_op().execute({"task_state_store": store})
    assert seen == [{"stage": "queueing", "model": T2V}]
    assert store.get(JOB_STATE_KEY)["queue_id"] == "q-spy"


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a complete response."),
        json_response(504, {"error": "Gateway timeout."}),
    ],
    ids=["read-timeout", "reset-after-send", "504"],
)
def test_unknown_queue_outcome_fails_permanently_and_is_not_resent(
    venice: FakeVenice, store: FakeStore, failure: Any
) -> None:
    venice.on("POST", QUEUE, failure)
    with pytest.raises(AirflowFailException, match="not resent"):
        queue_op().execute({"task_state_store": store})
    assert len(venice.calls(QUEUE)) == 1
    # the next try must not pay again either
    with pytest.raises(AirflowFailException, match="may already exist"):
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
    VeniceVideoQuoteOperator(task_id="q", model=T2V, prompt="p", duration="5s")
    VeniceVideoCompleteOperator(task_id="c", model=T2V, queue_id="q-1")
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
        "venice_conn_id",
        "max_usd",
    ):
        assert name in fields


# --- complete ------------------------------------------------------------------------------------


def test_complete_finalises_a_job(venice: FakeVenice, context: dict[str, Any]) -> None:
    result = VeniceVideoCompleteOperator(task_id="c", model=T2V, queue_id="q-9").execute(context)
    assert result == {"model": T2V, "queue_id": "q-9", "completed": True}
    assert venice.bodies(COMPLETE) == [{"model": T2V, "queue_id": "q-9"}]
    assert venice.calls(method="DELETE") == []


def test_complete_vps_deletes_the_file_without_the_key_and_takes_invalid_id_as_done(
    venice: FakeVenice, context: dict[str, Any]
) -> None:
    venice.on("POST", COMPLETE, json_response(400, {"error": "Request ID is invalid"}))
    op = VeniceVideoCompleteOperator(task_id="c", model=VPS, queue_id="q-vps", download_url=DOWNLOAD_URL)
    assert op.execute(context) == {"model": VPS, "queue_id": "q-vps", "completed": True}
    deletes = venice.calls(method="DELETE")
    assert [str(r.url) for r in deletes] == [DOWNLOAD_URL]
    assert "authorization" not in deletes[0].headers
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


@pytest.mark.parametrize("rendered", ["None", "", "  "])
def test_complete_treats_a_rendered_null_download_url_as_none(
    venice: FakeVenice, context: dict[str, Any], rendered: str
) -> None:
    """``{{ ti.xcom_pull(...)['download_url'] }}`` renders a non-VPS job's null as the text 'None'."""
    op = VeniceVideoCompleteOperator(task_id="c", model=T2V, queue_id="q-1", download_url=rendered)
    assert op.execute(context)["completed"] is True
    assert venice.calls(method="DELETE") == []
    assert venice.bodies(COMPLETE) == [{"model": T2V, "queue_id": "q-1"}]
