"""What an :class:`Outcome` means for the event: the retry policy, as data."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.spp_client import Outcome


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    max_attempts: int = 12
    max_age_seconds: float = 72 * 3600.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential backoff with equal jitter, never sooner than ``Retry-After`` asks."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempt - 1))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        return max(delay, retry_after or 0.0)


@dataclass(frozen=True)
class Decision:
    status: str  # delivered | retrying | failed
    next_attempt_at: datetime | None = None
    reason: str | None = None


def decide(policy: RetryPolicy, outcome: Outcome, attempt: int, received_at: datetime, now: datetime) -> Decision:
    if outcome.result == "delivered":
        return Decision("delivered")
    if outcome.result == "failed":
        return Decision("failed", reason=outcome.error)
    if attempt >= policy.max_attempts:
        return Decision("failed", reason=f"gave up after {attempt} attempts; last: {outcome.error}")
    next_at = now + timedelta(seconds=policy.delay(attempt, outcome.retry_after))
    if next_at > received_at + timedelta(seconds=policy.max_age_seconds):
        hours = policy.max_age_seconds / 3600
        return Decision("failed", reason=f"gave up: the next attempt would be past {hours:g} h; last: {outcome.error}")
    return Decision("retrying", next_attempt_at=next_at, reason=outcome.error)
