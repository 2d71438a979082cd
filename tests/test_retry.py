"""The retry policy: backoff with jitter bounded by Retry-After, and what each outcome decides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.retry import Decision, RetryPolicy, decide
from bridge.spp_client import Outcome
from bridge.status import AttemptOutcome

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
MAX_AGE = timedelta(hours=72)
POLICY = RetryPolicy(base_seconds=30.0, max_seconds=3600.0, max_attempts=12, max_age_seconds=72 * 3600.0)
BUSY = Outcome(AttemptOutcome.RETRYING, 40, http_status=503, error="SPP answered 503")


def retry(retry_after: float | None = None, error: str = "SPP answered 429") -> Outcome:
    return Outcome(AttemptOutcome.RETRYING, 25, http_status=429, error=error, retry_after=retry_after)


def test_defaults_match_the_documentation() -> None:
    assert RetryPolicy() == POLICY


# --- delay ---


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(0, 30), (1, 30), (2, 60), (3, 120), (4, 240), (7, 1920), (8, 3600), (12, 3600), (5000, 3600)],
)
def test_delay_doubles_with_jitter_up_to_the_cap(attempt: int, ceiling: float) -> None:
    delays = [POLICY.delay(attempt) for _ in range(200)]

    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert len(set(delays)) > 100  # jitter: workers that failed together do not retry together


def test_delay_spreads_over_both_halves_of_the_range() -> None:
    delays = [POLICY.delay(3) for _ in range(400)]

    assert min(delays) < 90 < max(delays)


@pytest.mark.parametrize("retry_after", [7200.0, 3600.0, 100.0])
def test_delay_is_never_below_retry_after(retry_after: float) -> None:
    delays = [POLICY.delay(1, retry_after) for _ in range(50)]

    assert min(delays) >= retry_after


def test_retry_after_above_the_cap_wins() -> None:
    assert POLICY.delay(12, retry_after=7200.0) == 7200.0


@pytest.mark.parametrize("retry_after", [None, 0.0, 10.0])
def test_short_retry_after_leaves_the_backoff(retry_after: float | None) -> None:
    delays = [POLICY.delay(2, retry_after) for _ in range(50)]

    assert all(30 <= delay <= 60 for delay in delays)


def ceiling_of(policy: RetryPolicy, attempt: int) -> float:
    """min(max, base * 2**(attempt-1)); past 2**64 any base here is over any cap here."""
    if attempt > 64:
        return policy.max_seconds
    return min(policy.max_seconds, policy.base_seconds * 2 ** max(0, attempt - 1))


@given(
    base=st.floats(min_value=0.01, max_value=1000),
    factor=st.floats(min_value=1, max_value=1000),
    attempt=st.integers(min_value=0, max_value=5000),
    retry_after=st.none() | st.floats(min_value=0, max_value=10**7),
)
def test_delay_bounds(base: float, factor: float, attempt: int, retry_after: float | None) -> None:
    policy = RetryPolicy(base_seconds=base, max_seconds=base * factor)
    ceiling = ceiling_of(policy, attempt)

    delay = policy.delay(attempt, retry_after)

    assert delay >= max(ceiling / 2, retry_after or 0)
    assert delay <= max(ceiling, retry_after or 0)
    assert delay <= policy.max_seconds or delay == retry_after


# --- decide ---


def test_delivered_is_delivered() -> None:
    outcome = Outcome(AttemptOutcome.DELIVERED, 30, http_status=201, ticket_id=9, spp_request_id="api-1")

    assert decide(POLICY, outcome, 1, NOW, NOW) == Decision("delivered")


def test_failed_outcome_fails_with_its_error() -> None:
    outcome = Outcome(AttemptOutcome.FAILED, 30, http_status=422, error="SPP rejected the ticket: HTTP 422")

    assert decide(POLICY, outcome, 1, NOW, NOW) == Decision("failed", reason="SPP rejected the ticket: HTTP 422")


def test_retry_schedules_the_next_attempt() -> None:
    decision = decide(POLICY, BUSY, 3, NOW, NOW)

    assert decision.status == "retrying"
    assert decision.reason == "SPP answered 503"
    assert decision.next_attempt_at is not None
    assert NOW + timedelta(seconds=60) <= decision.next_attempt_at <= NOW + timedelta(seconds=120)


def test_retry_waits_as_long_as_retry_after_asks() -> None:
    later = NOW + timedelta(minutes=5)

    decision = decide(POLICY, retry(retry_after=7200), 2, NOW, later)

    assert decision == Decision("retrying", later + timedelta(seconds=7200), "SPP answered 429")


def test_ambiguous_timeout_retries() -> None:
    outcome = Outcome(
        AttemptOutcome.RETRYING, 30000, ambiguous=True, error="SPP did not answer within the read timeout"
    )

    decision = decide(POLICY, outcome, 1, NOW, NOW)

    assert (decision.status, decision.reason) == ("retrying", "SPP did not answer within the read timeout")


@pytest.mark.parametrize(("attempt", "status"), [(1, "retrying"), (11, "retrying"), (12, "failed"), (13, "failed")])
def test_gives_up_after_max_attempts(attempt: int, status: str) -> None:
    assert decide(POLICY, BUSY, attempt, NOW, NOW).status == status


def test_giving_up_on_attempts_names_the_last_error() -> None:
    decision = decide(POLICY, BUSY, 12, NOW, NOW)

    assert decision == Decision("failed", reason="gave up after 12 attempts; last: SPP answered 503")


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_pauses_and_never_fails_the_event(status: int) -> None:
    refused = Outcome(AttemptOutcome.RETRYING, 20, http_status=status, error=f"SPP answered {status}")
    reason = f"SPP refuses the API token (HTTP {status}); delivery is paused until a probe succeeds"

    for attempt, window_start in ((1, NOW), (12, NOW), (13, NOW - MAX_AGE - timedelta(seconds=1))):
        assert decide(POLICY, refused, attempt, window_start, NOW) == Decision("retrying", None, reason, True)


def test_other_refusals_do_not_pause() -> None:
    for status in (408, 429, 503):
        outcome = Outcome(AttemptOutcome.RETRYING, 20, http_status=status, error=f"SPP answered {status}")
        assert decide(POLICY, outcome, 1, NOW, NOW).token_refused is False


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (99.0, Decision("retrying", NOW + timedelta(seconds=99), "SPP answered 429")),
        (100.0, Decision("retrying", NOW + timedelta(seconds=100), "SPP answered 429")),  # exactly at 72 h
        (101.0, Decision("failed", reason="gave up: the next attempt would be past 72 h; last: SPP answered 429")),
    ],
)
def test_gives_up_when_the_next_attempt_would_pass_72_hours(retry_after: float, expected: Decision) -> None:
    received_at = NOW - MAX_AGE + timedelta(seconds=100)
    policy = RetryPolicy(base_seconds=1, max_seconds=1)

    assert decide(policy, retry(retry_after), 2, received_at, NOW) == expected


def test_event_older_than_72_hours_fails() -> None:
    decision = decide(POLICY, BUSY, 2, NOW - MAX_AGE - timedelta(seconds=1), NOW)

    assert decision == Decision("failed", reason="gave up: the next attempt would be past 72 h; last: SPP answered 503")


@pytest.mark.parametrize("retry_after", [1e13, 1e300, float(10**20)])
def test_absurd_retry_after_fails_instead_of_overflowing(retry_after: float) -> None:
    decision = decide(POLICY, retry(retry_after), 1, NOW, NOW)

    assert decision == Decision("failed", reason="gave up: the next attempt would be past 72 h; last: SPP answered 429")


def test_many_attempts_do_not_overflow_the_backoff() -> None:
    policy = RetryPolicy(base_seconds=0.05, max_seconds=0.2, max_attempts=10**6)

    decision = decide(policy, BUSY, 5000, NOW, NOW)

    assert decision.status == "retrying"
    assert decision.next_attempt_at is not None
    assert NOW + timedelta(seconds=0.1) <= decision.next_attempt_at <= NOW + timedelta(seconds=0.2)


@given(
    attempt=st.integers(min_value=1, max_value=10**4),
    age=st.floats(min_value=0, max_value=80 * 3600),
    retry_after=st.none() | st.floats(min_value=0, max_value=1e15),
)
def test_retrying_stays_inside_72_hours_and_after_retry_after(
    attempt: int, age: float, retry_after: float | None
) -> None:
    policy = RetryPolicy(max_attempts=10**5)
    received_at = NOW - timedelta(seconds=age)

    decision = decide(policy, retry(retry_after), attempt, received_at, NOW)

    if decision.status == "failed":
        assert decision.reason == "gave up: the next attempt would be past 72 h; last: SPP answered 429"
        return
    assert decision.status == "retrying"
    assert decision.next_attempt_at is not None
    assert decision.next_attempt_at <= received_at + MAX_AGE
    assert decision.next_attempt_at >= NOW + timedelta(seconds=retry_after or 0) - timedelta(microseconds=1)
