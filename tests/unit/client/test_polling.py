"""The polling decision: one pure function shared by the sensor, the trigger and the operators.

The rhythm tests simulate jobs on a virtual clock (no sleeping, no wall-clock timing): a job of true
length ``T`` answers PROCESSING with Venice's estimate (off by up to 30 %) until ``T``, then is done.
"""

from __future__ import annotations

import math
import random

import pytest

from airflow_provider_venice.client import (
    DEFAULT_POLL_POLICY,
    AuthenticationError,
    BadRequestError,
    CapacityError,
    ContentPolicyError,
    JobStatus,
    NotFoundError,
    PollPolicy,
    RateLimitError,
    ServerError,
    VeniceError,
    VeniceTimeoutError,
    VeniceTransportError,
    decide_next_poll,
    progress_text,
)
from airflow_provider_venice.client._polling import processing_delay

FIXED_INTERVAL_S = 5.0  # the reference loop of the skill document


def processing(average_s: float | None, elapsed_s: float) -> JobStatus:
    average_ms = None if average_s is None else round(average_s * 1000)
    return JobStatus("processing", average_ms, round(elapsed_s * 1000))


def simulate(
    true_s: float, estimate_factor: float, policy: PollPolicy = DEFAULT_POLL_POLICY, first_poll_s: float = 0.0
) -> tuple[int, float]:
    """Poll a simulated job; return (number of retrieves, seconds between the true end and detection)."""
    now = first_poll_s
    polls = 0
    while True:
        polls += 1
        status = JobStatus("video_ready") if now >= true_s else processing(true_s * estimate_factor, now)
        decision = decide_next_poll(status, policy=policy)
        if decision.action == "done":
            return polls, now - true_s
        assert decision.action == "wait"
        assert decision.delay_s >= policy.floor_s
        now += decision.delay_s
        assert polls < 10_000, "the polling loop does not converge"


def fixed_loop(true_s: float, first_poll_s: float = 0.0) -> tuple[int, float]:
    """The reference: retrieve every 5 s."""
    polls = math.floor((true_s - first_poll_s) / FIXED_INTERVAL_S) + 1
    last = first_poll_s + (polls - 1) * FIXED_INTERVAL_S
    if last < true_s:
        polls += 1
        last += FIXED_INTERVAL_S
    return polls, last - true_s


TRUE_LENGTHS_S = (20, 30, 45, 60, 90, 120, 180, 300, 450, 600)
ESTIMATE_FACTORS = (0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3)


@pytest.mark.parametrize("estimate_factor", ESTIMATE_FACTORS)
@pytest.mark.parametrize("true_s", TRUE_LENGTHS_S)
def test_detects_completion_within_the_window_interval(true_s: float, estimate_factor: float) -> None:
    _, latency = simulate(true_s, estimate_factor)
    assert 0 <= latency <= DEFAULT_POLL_POLICY.window_interval_s
    assert latency <= FIXED_INTERVAL_S  # never later than the worst case of the fixed loop


@pytest.mark.parametrize("estimate_factor", ESTIMATE_FACTORS)
@pytest.mark.parametrize("true_s", [t for t in TRUE_LENGTHS_S if t >= 60])
def test_long_jobs_need_fewer_polls_than_a_fixed_5s_loop(true_s: float, estimate_factor: float) -> None:
    polls, _ = simulate(true_s, estimate_factor)
    fixed_polls, _ = fixed_loop(true_s)
    assert polls < fixed_polls


@pytest.mark.parametrize("estimate_factor", ESTIMATE_FACTORS)
@pytest.mark.parametrize("true_s", [t for t in TRUE_LENGTHS_S if t < 60])
def test_short_jobs_poll_no_more_than_a_fixed_5s_loop(true_s: float, estimate_factor: float) -> None:
    polls, _ = simulate(true_s, estimate_factor)
    fixed_polls, _ = fixed_loop(true_s)
    assert polls <= fixed_polls


@pytest.mark.parametrize("estimate_factor", ESTIMATE_FACTORS)
@pytest.mark.parametrize("true_s", [t for t in TRUE_LENGTHS_S if t >= 120])
def test_jobs_of_two_minutes_or_more_save_at_least_30_percent_of_polls(
    true_s: float, estimate_factor: float
) -> None:
    polls, _ = simulate(true_s, estimate_factor)
    fixed_polls, _ = fixed_loop(true_s)
    assert polls <= 0.7 * fixed_polls


def test_ten_minute_job_with_an_exact_estimate() -> None:
    polls, latency = simulate(600, 1.0)
    fixed_polls, _ = fixed_loop(600)
    assert fixed_polls == 121
    assert polls <= 50
    assert latency <= DEFAULT_POLL_POLICY.window_interval_s


@pytest.mark.parametrize("first_poll_s", [0.0, 3.0, 17.0, 59.0])
def test_rhythm_is_stateless_whatever_the_first_poll_time(first_poll_s: float) -> None:
    """A trigger restarted mid-job (first poll late) still detects the end promptly."""
    polls, latency = simulate(120, 0.8, first_poll_s=first_poll_s)
    assert latency <= DEFAULT_POLL_POLICY.window_interval_s
    assert polls <= fixed_loop(120, first_poll_s)[0]


def test_job_far_past_its_estimate_backs_off_but_boundedly() -> None:
    """Estimate 10x too low: polls slow down, never beyond max_late_interval_s."""
    policy = DEFAULT_POLL_POLICY
    delays = [processing_delay(processing(30, elapsed), policy) for elapsed in range(0, 3000, 10)]
    late = [processing_delay(processing(30, elapsed), policy) for elapsed in (60, 120, 300, 3000)]
    assert late == sorted(late)
    assert late[0] > policy.window_interval_s
    assert max(delays) <= max(policy.max_sleep_s, policy.max_late_interval_s)
    assert late[-1] == policy.max_late_interval_s


def test_long_sleep_before_the_window_is_capped_at_max_sleep() -> None:
    delay = processing_delay(processing(3600, 0))
    assert delay == DEFAULT_POLL_POLICY.max_sleep_s


def test_sleeps_until_the_earliest_plausible_finish() -> None:
    # average 100 s: the job cannot plausibly end before 75 s; sleeps are capped at 60 s
    assert processing_delay(processing(100, 10)) == pytest.approx(60.0)
    assert processing_delay(processing(100, 40)) == pytest.approx(35.0)
    assert processing_delay(processing(100, 72)) == DEFAULT_POLL_POLICY.window_interval_s


def test_polls_at_the_window_interval_around_the_estimate() -> None:
    for elapsed in (75, 90, 100, 140, 150):
        assert processing_delay(processing(100, elapsed)) == DEFAULT_POLL_POLICY.window_interval_s


def test_no_estimate_polls_at_window_interval_then_slower() -> None:
    policy = DEFAULT_POLL_POLICY
    assert processing_delay(processing(None, 0)) == policy.window_interval_s
    assert processing_delay(processing(0, 5)) == policy.window_interval_s
    assert processing_delay(processing(None, 200)) == pytest.approx(20.0)
    assert processing_delay(processing(None, 10_000)) == policy.max_late_interval_s


def test_policy_tunables_are_honoured() -> None:
    policy = PollPolicy(window_interval_s=0.5, floor_s=0.5, max_sleep_s=2.0)
    assert processing_delay(processing(100, 0), policy) == 2.0
    assert processing_delay(processing(100, 90), policy) == 0.5
    fast = PollPolicy(window_interval_s=0.01, floor_s=0.2)
    assert processing_delay(processing(100, 90), fast) == 0.2  # never faster than the floor


def test_never_faster_than_the_floor_nor_slower_than_the_caps() -> None:
    rng = random.Random(7)
    policy = DEFAULT_POLL_POLICY
    for _ in range(2000):
        average = rng.choice([None, 0.0, rng.uniform(0.1, 1200)])
        status = processing(average, rng.uniform(0, 5000))
        delay = decide_next_poll(status, policy=policy).delay_s
        assert policy.floor_s <= delay <= max(policy.max_sleep_s, policy.max_late_interval_s)


@pytest.mark.parametrize(
    "status",
    [
        JobStatus("video_ready", content_type="video/mp4", content_length=123),
        JobStatus("completed", 1000, 2000),
    ],
)
def test_finished_jobs_are_done(status: JobStatus) -> None:
    decision = decide_next_poll(status)
    assert decision.action == "done"
    assert decision.status is status
    assert decision.delay_s == 0


def test_failed_status_is_failed_with_its_message() -> None:
    decision = decide_next_poll(JobStatus("failed", message="FAILED: out of GPUs"))
    assert decision.action == "failed"
    assert "out of GPUs" in decision.message


def test_processing_decision_carries_progress_for_people() -> None:
    decision = decide_next_poll(processing(80, 20))
    assert decision.action == "wait"
    assert decision.message == "processing for 20s of an estimated 80s (25%)"
    assert progress_text(processing(None, 12)) == "processing for 12s (no estimate from Venice)"


@pytest.mark.parametrize(
    "error",
    [
        BadRequestError("/video/retrieve", 400, "Request ID is invalid"),
        AuthenticationError("/video/retrieve", 401, "bad key"),
        NotFoundError("/video/retrieve", 404, "media expired"),
        ContentPolicyError(
            "/video/retrieve",
            422,
            "refused",
            {"error": {"message": "refused", "type": "provider_content_policy", "credits_refunded": True}},
        ),
        VeniceError("no API key"),
    ],
)
def test_permanent_errors_fail(error: VeniceError) -> None:
    decision = decide_next_poll(error)
    assert decision.action == "failed"
    assert str(error) in decision.message


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (CapacityError("/video/retrieve", 503, "at capacity", retry_after=10.0), 10.0),
        (RateLimitError("/video/retrieve", 429, "slow down", retry_after=30.0), 30.0),
        (RateLimitError("/video/retrieve", 429, "slow down", retry_after=0.0), 0.0),
    ],
)
def test_retry_after_is_honoured_with_bounded_jitter(error: VeniceError, hint: float) -> None:
    delays = [decide_next_poll(error).delay_s for _ in range(200)]
    assert all(d >= max(hint, DEFAULT_POLL_POLICY.floor_s) for d in delays)
    assert all(d <= max(hint, DEFAULT_POLL_POLICY.floor_s) + 2.0 for d in delays)
    assert all(decide_next_poll(error).action == "wait" for _ in range(3))


def test_retry_after_is_capped() -> None:
    error = CapacityError("/video/retrieve", 503, "at capacity", retry_after=3600.0)
    assert decide_next_poll(error).delay_s == DEFAULT_POLL_POLICY.max_error_delay_s


def test_jitter_spreads_retries() -> None:
    error = CapacityError("/video/retrieve", 503, "at capacity", retry_after=10.0)
    assert len({decide_next_poll(error).delay_s for _ in range(20)}) > 1


@pytest.mark.parametrize(
    "error",
    [
        CapacityError("/video/retrieve", 503, "at capacity"),
        ServerError("/video/retrieve", 500, "boom"),
        VeniceTransportError("/video/retrieve", "reset"),
        VeniceTimeoutError("/video/retrieve", "read timeout"),
    ],
)
def test_transient_errors_back_off_exponentially_with_jitter(error: VeniceError) -> None:
    policy = DEFAULT_POLL_POLICY
    for errors_in_row in range(12):
        delays = [decide_next_poll(error, errors_in_row=errors_in_row).delay_s for _ in range(50)]
        nominal = policy.error_base_s * 2 ** min(errors_in_row, 8)
        low = min(policy.max_error_delay_s, max(policy.floor_s, 0.75 * nominal))
        high = min(policy.max_error_delay_s, 1.25 * nominal)
        assert all(low - 1e-9 <= d <= high + 1e-9 for d in delays), (errors_in_row, delays)
    assert decide_next_poll(error, errors_in_row=0).delay_s < 3.0
    assert decide_next_poll(error, errors_in_row=20).delay_s == policy.max_error_delay_s
