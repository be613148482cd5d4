"""The typed Venice job: validation, its one XCom form, fingerprints and the stages."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given, strategies as st

from airflow_provider_venice.job import (
    XCOM_KEYS,
    InvalidJobError,
    Stage,
    VeniceJob,
    fingerprint,
    job_from_arguments,
    money,
)

MODEL = "wan-2-7-text-to-video"
QUEUE_ID = "q-123"
DOWNLOAD_URL = "https://media.venice.test/files/q-123.mp4?sig=abc"

texts = st.text(min_size=1, max_size=30).filter(lambda value: bool(value.strip()))
amounts = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
urls = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}",
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z][a-z0-9]{0,10}(\.[a-z]{2,5})?", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_./-]{0,20}", fullmatch=True),
)
jobs = st.builds(
    VeniceJob,
    model=texts,
    queue_id=texts,
    download_url=st.none() | urls,
    quote_usd=st.none() | amounts | st.integers(min_value=0, max_value=10_000),
    request_fingerprint=st.none() | st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
)


# --- VeniceJob validation ------------------------------------------------------------------------


def test_a_job_holds_its_fields() -> None:
    job = VeniceJob(MODEL, QUEUE_ID, DOWNLOAD_URL, 0.35, "f" * 32)
    assert (job.model, job.queue_id, job.download_url, job.quote_usd, job.request_fingerprint) == (
        MODEL,
        QUEUE_ID,
        DOWNLOAD_URL,
        0.35,
        "f" * 32,
    )


def test_a_job_is_frozen() -> None:
    job = VeniceJob(MODEL, QUEUE_ID)
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.queue_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize("field", ["model", "queue_id"])
@pytest.mark.parametrize("value", ["", "   ", None, 5, ["q"]])
def test_model_and_queue_id_must_be_non_empty_strings(field: str, value: Any) -> None:
    arguments = {"model": MODEL, "queue_id": QUEUE_ID, field: value}
    with pytest.raises(InvalidJobError, match=rf"^{field}: expected a non-empty string"):
        VeniceJob(**arguments)


def test_an_empty_request_fingerprint_is_refused() -> None:
    with pytest.raises(InvalidJobError, match=r"^request_fingerprint:"):
        VeniceJob(MODEL, QUEUE_ID, request_fingerprint="")


@pytest.mark.parametrize(
    "url",
    [
        "http://media.venice.test/a.mp4",
        "https://media.venice.test/a.mp4?sig=1&exp=2",
        "https://127.0.0.1:8080/_media/token/q.mp4",
    ],
)
def test_download_url_accepts_http_and_https(url: str) -> None:
    assert VeniceJob(MODEL, QUEUE_ID, url).download_url == url


def test_download_url_may_be_none() -> None:
    assert VeniceJob(MODEL, QUEUE_ID, None).download_url is None


@pytest.mark.parametrize(
    "url",
    ["ftp://media.venice.test/a.mp4", "file:///tmp/a.mp4", "media.venice.test/a.mp4", "https://", "", 42],
)
def test_download_url_must_be_an_http_url(url: Any) -> None:
    with pytest.raises(InvalidJobError, match=r"^download_url: expected an http\(s\) URL or None"):
        VeniceJob(MODEL, QUEUE_ID, url)


@pytest.mark.parametrize("url", ["http://[::1/video.mp4", "https://[not-an-address]/video.mp4"])
def test_an_unparsable_download_url_is_refused_naming_the_field(url: str) -> None:
    # urlsplit raises its own ValueError for these; the job must still say which field is wrong
    with pytest.raises(InvalidJobError, match=r"^download_url: "):
        VeniceJob(MODEL, QUEUE_ID, url)
    with pytest.raises(InvalidJobError, match=r"^job\.download_url: "):
        VeniceJob.from_xcom({"model": MODEL, "queue_id": QUEUE_ID, "download_url": url})


def test_the_text_none_of_a_rendered_template_is_refused_with_a_hint() -> None:
    with pytest.raises(InvalidJobError) as caught:
        VeniceJob(MODEL, QUEUE_ID, "None")
    message = str(caught.value)
    assert message.startswith("download_url:")
    assert "'None'" in message
    assert "job=queue.output" in message  # the native forms are suggested
    assert "queue.output['download_url']" in message


@pytest.mark.parametrize("value", [0, 0.0, 0.35, 2, 1e6])
def test_quote_usd_accepts_finite_non_negative_numbers(value: float) -> None:
    job = VeniceJob(MODEL, QUEUE_ID, quote_usd=value)
    assert job.quote_usd == value
    assert type(job.quote_usd) is float


@pytest.mark.parametrize(
    "value", ["0.35", "", True, False, math.nan, math.inf, -math.inf, -0.01, -1, [0.35], {"usd": 1}]
)
def test_quote_usd_refuses_anything_but_a_finite_non_negative_number(value: Any) -> None:
    with pytest.raises(InvalidJobError, match=r"^quote_usd:"):
        VeniceJob(MODEL, QUEUE_ID, quote_usd=value)


# --- money ---------------------------------------------------------------------------------------


@given(amounts | st.integers(min_value=0, max_value=10**9))
def test_money_returns_the_amount_as_float(value: float) -> None:
    amount = money("max_usd", value)
    assert amount == value
    assert type(amount) is float


@given(
    st.booleans()
    | st.text()
    | st.floats(max_value=-1e-9)
    | st.sampled_from([math.nan, math.inf, -math.inf])
    | st.integers(max_value=-1)
    | st.none()
)
def test_money_refuses_what_is_not_an_amount_naming_the_field(value: Any) -> None:
    with pytest.raises(InvalidJobError, match=r"^budget_field: "):
        money("budget_field", value)


# --- the XCom form -------------------------------------------------------------------------------


def test_to_xcom_is_a_plain_dict_with_the_xcom_keys() -> None:
    job = VeniceJob(MODEL, QUEUE_ID, DOWNLOAD_URL, 0.35, "ab" * 16)
    value = job.to_xcom()
    assert type(value) is dict
    assert tuple(value) == XCOM_KEYS
    assert value == {
        "model": MODEL,
        "queue_id": QUEUE_ID,
        "download_url": DOWNLOAD_URL,
        "quote_usd": 0.35,
        "request_fingerprint": "ab" * 16,
    }


@given(jobs)
def test_xcom_round_trip_through_json(job: VeniceJob) -> None:
    assert VeniceJob.from_xcom(json.loads(json.dumps(job.to_xcom()))) == job


def test_from_xcom_returns_a_job_as_it_is() -> None:
    job = VeniceJob(MODEL, QUEUE_ID)
    assert VeniceJob.from_xcom(job) is job


def test_from_xcom_ignores_keys_beyond_the_jobs_own() -> None:
    sensor_result = {
        "status": "COMPLETED",
        "model": MODEL,
        "queue_id": QUEUE_ID,
        "download_url": None,
        "execution_duration_ms": 41_000,
    }
    assert VeniceJob.from_xcom(sensor_result) == VeniceJob(MODEL, QUEUE_ID)


def test_from_xcom_reads_any_mapping() -> None:
    value = OrderedDict(queue_id=QUEUE_ID, model=MODEL, quote_usd=1)
    assert VeniceJob.from_xcom(value) == VeniceJob(MODEL, QUEUE_ID, quote_usd=1.0)


@pytest.mark.parametrize("value", ["None", None, "{'model': 'm', 'queue_id': 'q'}", ["m", "q"], 7])
def test_from_xcom_refuses_what_is_not_a_dict_naming_the_field(value: Any) -> None:
    with pytest.raises(InvalidJobError) as caught:
        VeniceJob.from_xcom(value, field="upstream_job")
    message = str(caught.value)
    assert message.startswith("upstream_job: expected a Venice job")
    assert type(value).__name__ in message
    assert "job=queue.output" in message


@pytest.mark.parametrize(
    ("value", "prefix"),
    [
        ({"queue_id": QUEUE_ID}, "job.model:"),
        ({"model": MODEL, "queue_id": ""}, "job.queue_id:"),
        ({"model": MODEL, "queue_id": QUEUE_ID, "download_url": "None"}, "job.download_url:"),
        ({"model": MODEL, "queue_id": QUEUE_ID, "quote_usd": "0.35"}, "job.quote_usd:"),
        ({"model": MODEL, "queue_id": QUEUE_ID, "request_fingerprint": " "}, "job.request_fingerprint:"),
    ],
)
def test_from_xcom_errors_are_prefixed_with_the_field(value: dict[str, Any], prefix: str) -> None:
    with pytest.raises(InvalidJobError) as caught:
        VeniceJob.from_xcom(value)
    assert str(caught.value).startswith(prefix)


def test_from_xcom_prefixes_errors_with_the_given_field() -> None:
    with pytest.raises(InvalidJobError, match=r"^wait_for\.download_url: "):
        VeniceJob.from_xcom({"model": MODEL, "queue_id": QUEUE_ID, "download_url": "None"}, field="wait_for")


def test_invalid_job_error_is_a_value_error() -> None:
    assert issubclass(InvalidJobError, ValueError)


# --- fingerprint ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6), json_values)
def test_fingerprint_is_stable_and_ignores_key_order(body: dict[str, Any], other: Any) -> None:
    reordered = dict(reversed(list(body.items())))
    assert fingerprint(body, other) == fingerprint(reordered, other)
    assert fingerprint(body, other) == fingerprint(json.loads(json.dumps(body)), other)


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=6), st.text(max_size=8))
def test_fingerprint_differs_for_different_requests(body: dict[str, str], key: str) -> None:
    changed = {**body, key: body.get(key, "") + "!"}
    assert fingerprint(body) != fingerprint(changed)


def test_fingerprint_shape() -> None:
    value = fingerprint({"model": MODEL, "prompt": "a fox"}, "s3://bucket/key.mp4")
    assert len(value) == 32
    assert int(value, 16) >= 0
    assert value == fingerprint({"prompt": "a fox", "model": MODEL}, "s3://bucket/key.mp4")


def test_fingerprint_depends_on_every_part_and_its_position() -> None:
    request = {"model": MODEL, "prompt": "a fox"}
    assert fingerprint(request, "s3://b/one.mp4") != fingerprint(request, "s3://b/two.mp4")
    assert fingerprint(request, None) != fingerprint(request)
    assert fingerprint("a", "b") != fingerprint("b", "a")
    assert fingerprint({"n": 1}) != fingerprint({"n": "1"})


# --- job_from_arguments --------------------------------------------------------------------------


def test_job_from_arguments_whole_job_wins() -> None:
    whole = {"model": MODEL, "queue_id": QUEUE_ID, "download_url": DOWNLOAD_URL, "quote_usd": 0.5}
    job = job_from_arguments(whole, model="other-model", queue_id="other-id", quote_usd=9.0)
    assert job == VeniceJob(MODEL, QUEUE_ID, DOWNLOAD_URL, 0.5)


def test_job_from_arguments_takes_a_job_instance() -> None:
    job = VeniceJob(MODEL, QUEUE_ID)
    assert job_from_arguments(job) is job


def test_job_from_arguments_from_model_and_queue_id() -> None:
    job = job_from_arguments(None, model=MODEL, queue_id=QUEUE_ID, download_url=DOWNLOAD_URL, quote_usd=1)
    assert job == VeniceJob(MODEL, QUEUE_ID, DOWNLOAD_URL, 1.0)


def test_job_from_arguments_without_job_or_ids_says_what_to_pass() -> None:
    with pytest.raises(InvalidJobError) as caught:
        job_from_arguments(None)
    message = str(caught.value)
    assert message.startswith("job:")
    assert "job=queue.output" in message
    assert "model and queue_id" in message


def test_job_from_arguments_names_the_missing_half() -> None:
    with pytest.raises(InvalidJobError, match=r"^queue_id: "):
        job_from_arguments(None, model=MODEL)
    with pytest.raises(InvalidJobError, match=r"^model: "):
        job_from_arguments(None, queue_id=QUEUE_ID)


def test_job_from_arguments_refuses_a_rendered_job() -> None:
    with pytest.raises(InvalidJobError, match=r"^job: expected a Venice job"):
        job_from_arguments("{'model': 'm', 'queue_id': 'q'}")
    with pytest.raises(InvalidJobError, match=r"^download_url: "):
        job_from_arguments(None, model=MODEL, queue_id=QUEUE_ID, download_url="None")


# --- stages --------------------------------------------------------------------------------------


def test_stage_values() -> None:
    assert [stage.value for stage in Stage] == [
        "queueing",
        "queued",
        "uploading",
        "uploaded",
        "delivered",
        "completed",
    ]


def test_stages_are_strings_read_back_from_their_values() -> None:
    for stage in Stage:
        assert isinstance(stage, str)
        assert Stage(stage.value) is stage
        assert json.loads(json.dumps(stage)) == stage.value
    with pytest.raises(ValueError, match="bogus"):
        Stage("bogus")
