"""Every retry is logged by name, with the endpoint, the delay and what it follows.

The message has one shape, ``retrying /video/retrieve in 2.0 s after 503`` (a status code, or the
exception class of a transport failure), so a long Retry-After is visible in the task log.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import pytest

from airflow_provider_venice.client import (
    NO_RETRY,
    CapacityError,
    QueueVideoRequest,
    RetryPolicy,
)

MODEL = "wan-2-7-text-to-video"
PROCESSING = {"status": "PROCESSING", "average_execution_time": 60000, "execution_duration": 1000}
QUEUED = {"model": MODEL, "queue_id": "q-1"}
QUEUE_REQUEST = QueueVideoRequest(model=MODEL, prompt="a cat", duration="5s")
DOWNLOAD_URL = "https://media.venice-cdn.test/files/q-1.mp4?sig=abc"

LOGGER = "airflow_provider_venice.client"


def retry_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and record.levelno >= logging.INFO
    ]


def test_retry_after_a_status_is_logged(venice: Any, fake: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = venice(
        fake.answer(503, json={"error": "Model at capacity"}, headers={"Retry-After": "2"}),
        fake.answer(200, json=PROCESSING),
    )
    h.call("retrieve_status", MODEL, "q-1")
    (delay,) = h.sleeps
    assert retry_messages(caplog) == [f"retrying /video/retrieve in {delay:.1f} s after 503"]
    assert re.fullmatch(r"retrying /video/retrieve in 2\.\d s after 503", retry_messages(caplog)[0])


def test_retry_after_a_transport_failure_names_the_exception(
    venice: Any, fake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = venice(
        fake.fail(httpx.ConnectError), fake.fail(httpx.ReadTimeout), fake.answer(200, json={"data": []})
    )
    h.call("list_video_models")
    first, second = h.sleeps
    assert retry_messages(caplog) == [
        f"retrying /models in {first:.1f} s after ConnectError",
        f"retrying /models in {second:.1f} s after ReadTimeout",
    ]


def test_a_long_retry_after_is_visible_in_the_log(
    venice: Any, fake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = venice(
        fake.answer(429, json={"error": "Model overloaded"}, headers={"Retry-After": "95"}),
        fake.answer(200, json=QUEUED),
        retry=RetryPolicy(max_total_s=300),
    )
    assert h.call("queue", QUEUE_REQUEST).queue_id == "q-1"
    (message,) = retry_messages(caplog)
    assert re.fullmatch(r"retrying /video/queue in 9[56]\.\d s after 429", message)


def test_download_url_retry_is_logged_without_the_link(
    venice: Any, fake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = venice(fake.answer(503, text="busy"), fake.answer(204))
    assert h.call("delete_download_url", DOWNLOAD_URL) is True
    (delay,) = h.sleeps
    assert retry_messages(caplog) == [f"retrying download_url in {delay:.1f} s after 503"]
    assert "sig=abc" not in caplog.text


def test_no_retry_no_retry_log(venice: Any, fake: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    h = venice(fake.answer(503, json={"error": "busy"}), retry=NO_RETRY)
    with pytest.raises(CapacityError):
        h.call("retrieve_status", MODEL, "q-1")
    assert not any(m.startswith("retrying") for m in retry_messages(caplog))
