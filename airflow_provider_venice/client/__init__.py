"""Airflow-free client for the Venice video API (importable and testable without Airflow).

The public names below are loaded on first use: a DAG file that imports an operator does not pay for
the pydantic models and the HTTP halves at every parse, only the task that calls Venice does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_venice.client._async import (
        AsyncVeniceClient as AsyncVeniceClient,
    )
    from airflow_provider_venice.client._catalogue import (
        forget_catalogues as forget_catalogues,
        video_catalogue as video_catalogue,
    )
    from airflow_provider_venice.client._core import (
        DEFAULT_TIMEOUT as DEFAULT_TIMEOUT,
        USER_AGENT as USER_AGENT,
    )
    from airflow_provider_venice.client._errors import (
        AuthenticationError as AuthenticationError,
        BadRequestError as BadRequestError,
        CapacityError as CapacityError,
        ConsentRequiredError as ConsentRequiredError,
        ContentPolicyError as ContentPolicyError,
        DownloadUrlError as DownloadUrlError,
        EndpointRetiredError as EndpointRetiredError,
        GatewayTimeoutError as GatewayTimeoutError,
        NotFoundError as NotFoundError,
        PayloadTooLargeError as PayloadTooLargeError,
        PaymentRequiredError as PaymentRequiredError,
        QueueOutcomeUnknownError as QueueOutcomeUnknownError,
        RateLimitError as RateLimitError,
        RegionUnavailableError as RegionUnavailableError,
        ServerError as ServerError,
        UnreadableAnswerError as UnreadableAnswerError,
        VeniceAPIError as VeniceAPIError,
        VeniceError as VeniceError,
        VeniceRequestInvalidError as VeniceRequestInvalidError,
        VeniceTimeoutError as VeniceTimeoutError,
        VeniceTransportError as VeniceTransportError,
        VideoJobFailedError as VideoJobFailedError,
        VideoNotReadyError as VideoNotReadyError,
    )
    from airflow_provider_venice.client._models import (
        CompleteResponse as CompleteResponse,
        CompleteVideoRequest as CompleteVideoRequest,
        ModelConstraints as ModelConstraints,
        ModelList as ModelList,
        ModelSpec as ModelSpec,
        QueueResponse as QueueResponse,
        QueueVideoRequest as QueueVideoRequest,
        QuoteResponse as QuoteResponse,
        QuoteVideoRequest as QuoteVideoRequest,
        RetrieveVideoRequest as RetrieveVideoRequest,
        Transcription as Transcription,
        TranscriptionRequest as TranscriptionRequest,
        VideoElement as VideoElement,
        VideoModel as VideoModel,
    )
    from airflow_provider_venice.client._polling import (
        DEFAULT_POLL_POLICY as DEFAULT_POLL_POLICY,
        PollDecision as PollDecision,
        PollPolicy as PollPolicy,
        decide_next_poll as decide_next_poll,
        progress_text as progress_text,
    )
    from airflow_provider_venice.client._retry import (
        NO_RETRY as NO_RETRY,
        RetryPolicy as RetryPolicy,
    )
    from airflow_provider_venice.client._status import (
        AsyncVideoStream as AsyncVideoStream,
        JobStatus as JobStatus,
        VideoStream as VideoStream,
    )
    from airflow_provider_venice.client._sync import (
        VeniceClient as VeniceClient,
    )
    from airflow_provider_venice.client._urls import (
        DEFAULT_BASE_URL as DEFAULT_BASE_URL,
        check_base_url as check_base_url,
    )
    from airflow_provider_venice.client._validation import (
        build_queue_request as build_queue_request,
        build_quote_request as build_quote_request,
        is_upscale_model as is_upscale_model,
        validate_queue_request as validate_queue_request,
        validate_quote_request as validate_quote_request,
    )

# The private module that defines each public name.
_HOMES: dict[str, tuple[str, ...]] = {
    "_async": ("AsyncVeniceClient",),
    "_catalogue": (
        "forget_catalogues",
        "video_catalogue",
    ),
    "_core": (
        "DEFAULT_TIMEOUT",
        "USER_AGENT",
    ),
    "_errors": (
        "AuthenticationError",
        "BadRequestError",
        "CapacityError",
        "ConsentRequiredError",
        "ContentPolicyError",
        "DownloadUrlError",
        "EndpointRetiredError",
        "GatewayTimeoutError",
        "NotFoundError",
        "PayloadTooLargeError",
        "PaymentRequiredError",
        "QueueOutcomeUnknownError",
        "RateLimitError",
        "RegionUnavailableError",
        "ServerError",
        "VeniceAPIError",
        "VeniceError",
        "VeniceRequestInvalidError",
        "VeniceTimeoutError",
        "VeniceTransportError",
        "UnreadableAnswerError",
        "VideoJobFailedError",
        "VideoNotReadyError",
    ),
    "_models": (
        "CompleteResponse",
        "CompleteVideoRequest",
        "ModelConstraints",
        "ModelList",
        "ModelSpec",
        "QueueResponse",
        "QueueVideoRequest",
        "QuoteResponse",
        "QuoteVideoRequest",
        "RetrieveVideoRequest",
        "Transcription",
        "TranscriptionRequest",
        "VideoElement",
        "VideoModel",
    ),
    "_polling": (
        "DEFAULT_POLL_POLICY",
        "PollDecision",
        "PollPolicy",
        "decide_next_poll",
        "progress_text",
    ),
    "_retry": (
        "NO_RETRY",
        "RetryPolicy",
    ),
    "_status": (
        "AsyncVideoStream",
        "JobStatus",
        "VideoStream",
    ),
    "_sync": ("VeniceClient",),
    "_urls": (
        "DEFAULT_BASE_URL",
        "check_base_url",
    ),
    "_validation": (
        "build_queue_request",
        "build_quote_request",
        "is_upscale_model",
        "validate_queue_request",
        "validate_quote_request",
    ),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_HOME_OF)


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
