"""What an :class:`Outcome` means for the event: the retry policy, as data."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.spp_client import Outcome
from bridge.status import AttemptOutcome, Status


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    max_attempts: int = 12
    max_age_seconds: float = 72 * 3600.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential backoff with equal jitter, never sooner than ``Retry-After`` asks."""
        exponent = min(max(0, attempt - 1), 1023)  # an int power past 2**1023 cannot become a float
        ceiling = min(self.max_seconds, self.base_seconds * 2.0**exponent)
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        return max(delay, retry_after or 0.0)


@dataclass(frozen=True)
class Decision:
    status: Status  # delivered, retrying or failed
    next_attempt_at: datetime | None = None
    reason: str | None = None
    # SPP refused the API token: delivery pauses for every worker, and the event goes back to
    # its place in the queue without using up an attempt (next_attempt_at stays as it was)
    token_refused: bool = False


def token_refused_reason(http_status: int | None) -> str:
    return f"SPP refuses the API token (HTTP {http_status}); delivery is paused until a probe succeeds"


def decide(policy: RetryPolicy, outcome: Outcome, attempt: int, window_start: datetime, now: datetime) -> Decision:
    """``attempt`` and ``window_start`` count from receipt, or from the last replay."""
    if outcome.result == AttemptOutcome.DELIVERED:
        return Decision(Status.DELIVERED)
    if outcome.token_refused:  # before the limits: a refused token never fails an event
        return Decision(Status.RETRYING, reason=token_refused_reason(outcome.http_status), token_refused=True)
    if outcome.result == AttemptOutcome.FAILED:
        return Decision(Status.FAILED, reason=outcome.error)
    if attempt >= policy.max_attempts:
        return Decision(Status.FAILED, reason=f"gave up after {attempt} attempts; last: {outcome.error}")
    delay = policy.delay(attempt, outcome.retry_after)
    # compare in seconds: a huge Retry-After must fail the event, not overflow a datetime
    if delay > (window_start + timedelta(seconds=policy.max_age_seconds) - now).total_seconds():
        hours = policy.max_age_seconds / 3600
        return Decision(
            Status.FAILED, reason=f"gave up: the next attempt would be past {hours:g} h; last: {outcome.error}"
        )
    return Decision(Status.RETRYING, next_attempt_at=now + timedelta(seconds=delay), reason=outcome.error)
