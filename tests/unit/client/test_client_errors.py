"""Every error status maps to its class, with Venice's own message, from every body shape Venice sends."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given, strategies as st

from airflow_provider_venice.client import (
    NO_RETRY,
    AuthenticationError,
    BadRequestError,
    CapacityError,
    ConsentRequiredError,
    ContentPolicyError,
    EndpointRetiredError,
    GatewayTimeoutError,
    NotFoundError,
    PayloadTooLargeError,
    PaymentRequiredError,
    QueueVideoRequest,
    QuoteVideoRequest,
    RateLimitError,
    RegionUnavailableError,
    ServerError,
    VeniceAPIError,
    VeniceError,
)
from airflow_provider_venice.client._errors import api_error

MODEL = "wan-2-7-text-to-video"

# endpoint name -> (client method, args, API path)
CALLS: dict[str, tuple[str, tuple[Any, ...], str]] = {
    "models": ("list_video_models", (), "/models"),
    "quote": ("quote", (QuoteVideoRequest(model=MODEL, duration="5s"),), "/video/quote"),
    "queue": ("queue", (QueueVideoRequest(model=MODEL, prompt="a cat", duration="5s"),), "/video/queue"),
    "retrieve": ("retrieve_status", (MODEL, "q-1"), "/video/retrieve"),
    "complete": ("complete", (MODEL, "q-1"), "/video/complete"),
    "transcriptions": ("transcribe", ("https://youtu.be/abc",), "/video/transcriptions"),
}

HTML_504 = (
    b"<html><head><title>504 Gateway Time-out</title></head><body><h1>504 Gateway Time-out</h1></body></html>"
)

# (id, endpoint, status, body, headers, class, fragments that must appear in str(error))
CASES: list[tuple[str, str, int, Any, dict[str, str], type[VeniceAPIError], list[str]]] = [
    (
        "400-details-tree",
        "queue",
        400,
        {
            "error": "Invalid request parameters",
            "details": {
                "_errors": [],
                "duration": {"_errors": ["Invalid enum value. Expected '5s' | '10s', received '7s'"]},
                "elements": {"0": {"frontal_image_url": {"_errors": ["Invalid url"]}}},
            },
        },
        {},
        BadRequestError,
        [
            "Invalid request parameters",
            "duration: Invalid enum value. Expected '5s' | '10s', received '7s'",
            "elements.0.frontal_image_url: Invalid url",
        ],
    ),
    (
        "400-details-string",
        "quote",
        400,
        {"error": "Invalid request", "details": "resolution 4k is not supported by this model"},
        {},
        BadRequestError,
        ["Invalid request", "resolution 4k is not supported by this model"],
    ),
    (
        "400-invalid-request-id",
        "retrieve",
        400,
        {"error": "Request ID is invalid"},
        {},
        BadRequestError,
        ["Request ID is invalid"],
    ),
    (
        "401",
        "models",
        401,
        {"error": "Authentication failed"},
        {},
        AuthenticationError,
        ["Authentication failed"],
    ),
    (
        "402",
        "queue",
        402,
        {"error": "Insufficient USD or Diem balance to complete request"},
        {"PAYMENT-REQUIRED": "eyJ4NDAyVmVyc2lvbiI6MX0="},
        PaymentRequiredError,
        ["Insufficient USD or Diem balance"],
    ),
    (
        "403",
        "queue",
        403,
        {"error": "This model is not available in your region"},
        {},
        RegionUnavailableError,
        ["not available in your region"],
    ),
    ("404-retrieve", "retrieve", 404, {"error": "Media not found"}, {}, NotFoundError, ["Media not found"]),
    (
        "404-complete",
        "complete",
        404,
        {"error": "Video not found or already deleted"},
        {},
        NotFoundError,
        ["already deleted"],
    ),
    (
        "409-needs-consent",
        "queue",
        409,
        {
            "error": {"code": "needs_consent", "message": "This model requires accepting its terms first"},
            "consent_url": "https://venice.ai/consent",
        },
        {},
        ConsentRequiredError,
        ["requires accepting its terms", "needs_consent"],
    ),
    (
        "410",
        "transcriptions",
        410,
        {"error": "This endpoint has been retired"},
        {},
        EndpointRetiredError,
        ["retired"],
    ),
    (
        "413",
        "queue",
        413,
        {"code": "PAYLOAD_TOO_LARGE", "error": "Request body exceeds the 35 MB limit"},
        {},
        PayloadTooLargeError,
        ["exceeds the 35 MB limit", "PAYLOAD_TOO_LARGE"],
    ),
    (
        "422-queue-suggested-prompt",
        "queue",
        422,
        {"error": "Your prompt violates the content policy", "suggested_prompt": "a friendly cat"},
        {},
        ContentPolicyError,
        ["violates the content policy", "a friendly cat"],
    ),
    (
        "422-retrieve-provider-policy",
        "retrieve",
        422,
        {
            "error": {
                "message": "The provider refused to generate this video",
                "type": "provider_content_policy",
                "credits_refunded": True,
                "recommended_model": "wan-2-7-text-to-video",
            }
        },
        {},
        ContentPolicyError,
        ["provider refused", "provider_content_policy"],
    ),
    (
        "429",
        "retrieve",
        429,
        {"error": "Rate limit exceeded"},
        {"Retry-After": "12"},
        RateLimitError,
        ["Rate limit exceeded"],
    ),
    ("500", "quote", 500, {"error": "Inference failed"}, {}, ServerError, ["Inference failed"]),
    (
        "503",
        "retrieve",
        503,
        {"error": "Model at capacity, try again later"},
        {},
        CapacityError,
        ["Model at capacity"],
    ),
    ("504-html", "complete", 504, HTML_504, {"Content-Type": "text/html"}, GatewayTimeoutError, ["504"]),
    ("502-plain-text", "models", 502, b"Bad Gateway", {"Content-Type": "text/plain"}, ServerError, []),
    ("empty-body", "quote", 500, b"", {}, ServerError, ["HTTP 500"]),
]


def respond(status: int, body: Any, headers: dict[str, str]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(status, content=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


@pytest.mark.parametrize(
    ("endpoint", "status", "body", "headers", "cls", "fragments"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_status_maps_to_class_with_venice_message(
    venice: Any,
    endpoint: str,
    status: int,
    body: Any,
    headers: dict[str, str],
    cls: type[VeniceAPIError],
    fragments: list[str],
) -> None:
    method, args, path = CALLS[endpoint]
    h = venice(respond(status, body, headers), retry=NO_RETRY)
    with pytest.raises(VeniceAPIError) as info:
        h.call(method, *args)
    error = info.value
    assert type(error) is cls
    assert isinstance(error, VeniceError)
    assert error.status == status
    assert error.endpoint == path
    text = str(error)
    assert f"Venice {path} answered {status}" in text
    for fragment in fragments:
        assert fragment in text
    assert len(h.requests) == 1


def test_html_error_body_becomes_the_message(venice: Any) -> None:
    h = venice(respond(504, HTML_504, {"Content-Type": "text/html"}), retry=NO_RETRY)
    with pytest.raises(GatewayTimeoutError) as info:
        h.call("complete", MODEL, "q-1")
    assert "504 Gateway Time-out" in info.value.venice_message
    assert info.value.body == HTML_504.decode()


def test_suggested_prompt_is_an_attribute(venice: Any) -> None:
    body = {"error": "Content policy", "suggested_prompt": "a friendly cat"}
    h = venice(respond(422, body, {}))
    method, args, _ = CALLS["queue"]
    with pytest.raises(ContentPolicyError) as info:
        h.call(method, *args)
    assert info.value.suggested_prompt == "a friendly cat"
    assert info.value.credits_refunded is None
    assert not info.value.retryable


@pytest.mark.parametrize("refunded", [True, False])
def test_retrieve_content_policy_reports_credits_refunded(venice: Any, refunded: bool) -> None:
    body = {
        "error": {
            "message": "refused",
            "type": "provider_content_policy",
            "credits_refunded": refunded,
            "recommended_model": "kling-2.6-pro-text-to-video",
        }
    }
    h = venice(respond(422, body, {}))
    with pytest.raises(ContentPolicyError) as info:
        h.call("retrieve_status", MODEL, "q-1")
    assert info.value.credits_refunded is refunded
    assert info.value.recommended_model == "kling-2.6-pro-text-to-video"
    assert info.value.suggested_prompt is None
    assert len(h.requests) == 1


def test_invalid_request_id_is_recognisable(venice: Any) -> None:
    h = venice(respond(400, {"error": "Request ID is invalid"}, {}))
    with pytest.raises(BadRequestError) as info:
        h.call("complete", MODEL, "q-gone")
    assert info.value.is_invalid_request_id


def test_rate_limit_error_carries_retry_after(venice: Any) -> None:
    h = venice(respond(429, {"error": "slow down"}, {"Retry-After": "12"}), retry=NO_RETRY)
    with pytest.raises(RateLimitError) as info:
        h.call("list_video_models")
    assert info.value.retry_after == 12.0
    assert info.value.retryable


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 409, 410, 413, 422])
@pytest.mark.parametrize("endpoint", sorted(CALLS))
def test_4xx_is_never_retried(venice: Any, endpoint: str, status: int) -> None:
    method, args, _ = CALLS[endpoint]
    h = venice(respond(status, {"error": "nope"}, {"Retry-After": "1"}))  # default retry policy
    with pytest.raises(VeniceAPIError) as info:
        h.call(method, *args)
    assert info.value.status == status
    assert not info.value.retryable
    assert len(h.requests) == 1
    assert h.sleeps == []


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (404, False),
        (422, False),
        (429, True),
        (500, True),
        (503, True),
        (504, True),
    ],
)
def test_retryable_flag(status: int, retryable: bool) -> None:
    assert api_error("/video/quote", status, b"{}", None).retryable is retryable


def test_unlisted_statuses_still_map_sensibly() -> None:
    assert type(api_error("/models", 418, b'{"error": "teapot"}', None)) is VeniceAPIError
    assert type(api_error("/models", 502, b"", None)) is ServerError
    assert "teapot" in str(api_error("/models", 418, b'{"error": "teapot"}', None))


@given(
    message=st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp", "Zs")), min_size=1, max_size=200
    ),
    status=st.sampled_from([400, 401, 402, 403, 404, 409, 410, 413, 422, 429, 500, 503, 504]),
)
def test_any_plain_error_message_is_surfaced(message: str, status: int) -> None:
    error = api_error("/video/queue", status, json.dumps({"error": message}).encode(), None)
    assert message in str(error)
    assert error.venice_message == message
    assert str(status) in str(error)
