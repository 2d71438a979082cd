"""Wrong admin tokens, counted per client address in the database, so every process sees them.

After MAX_FAILURES wrong tokens (sign-in form, or bearer on the admin API and /metrics) from one
address within a WINDOW_SECONDS window, every admin credential from that address is answered 429
until the window ends, the right one too: otherwise an answer would still tell a right guess from
a wrong one. A right token clears the address's count; it is never delayed. The address is
``request.remote_addr``: behind the platform's router, the client's as the router saw it
(ProxyFix trusts that one X-Forwarded-For hop).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from flask import request

from bridge.errors import TooManyAttempts
from bridge.runtime import get_runtime

MAX_FAILURES = 5
WINDOW_SECONDS = 300


def check_allowed() -> int:
    """The address's failures in this window (0 mostly); TooManyAttempts once there were too many."""
    start, ends_in = _window()
    failures = get_runtime().store.access.failures(_client(), start)
    if failures >= MAX_FAILURES:
        raise TooManyAttempts(ends_in)
    return failures


def failed() -> None:
    start, _ = _window()
    get_runtime().store.access.count_failure(_client(), start)


def succeeded(failures: int) -> None:
    """A right token: the address starts again from no failures (nothing written if it had none)."""
    if failures:
        get_runtime().store.access.clear_failures(_client())


def _client() -> str:
    return (request.remote_addr or "unknown")[:100]


def _window() -> tuple[datetime, int]:
    """When the current window began, and in how many whole seconds it ends."""
    now = int(time.time())
    start = now - now % WINDOW_SECONDS
    return datetime.fromtimestamp(start, UTC), start + WINDOW_SECONDS - now
