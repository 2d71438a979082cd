"""The sandbox's state: tickets, requests seen and the script, behind one lock."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bridge.sandbox.faults import FAULT, Step, parse_step

if TYPE_CHECKING:
    from flask import Flask


def clock_ticket_id() -> int:
    """The current time in milliseconds: a first ticket id that a restarted sandbox does not repeat.

    The bridge keeps the ticket ids it was given across sandbox restarts, so ids starting at 1
    every time would point two events at "the same" ticket. Ids only catch up with the clock
    if a run creates more than one ticket per millisecond on average.
    """
    return time.time_ns() // 1_000_000


class Sandbox:
    """In-memory SPP simulator state, thread-safe (one threading.Lock)."""

    def __init__(
        self,
        token: str = "sandbox-token",
        api_version: str = "2024-03-05",
        latency_ms: int = 0,
        fail_rate: float = 0.0,
        seed: int | None = None,
        first_id: int | Callable[[], int] = 1,
    ) -> None:
        """``first_id``: the id of the first ticket, and of the first after each reset; a function
        (such as :func:`clock_ticket_id`) is asked again at every reset."""
        if latency_ms < 0 or not 0.0 <= fail_rate <= 1.0:
            raise ValueError("latency_ms must be >= 0 and fail_rate between 0 and 1")
        self.token, self.api_version = token, api_version
        self.latency_ms, self.fail_rate = latency_ms, fail_rate
        self.tickets: list[dict[str, Any]] = []
        self.requests_seen = 0
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._steps: deque[Step] = deque()
        self._app: Flask | None = None
        self._first_id = first_id
        self._next_id = self._start_id()

    def _start_id(self) -> int:
        return self._first_id() if callable(self._first_id) else self._first_id

    def script(self, *steps: int | str) -> None:
        """Queue answers, one per ``POST /api/tickets``; all are checked before any is queued."""
        parsed = [parse_step(step) for step in steps]
        with self._lock:
            self._steps.extend(parsed)

    def reset(self) -> None:
        """Forget tickets, counters and script; token, latency and fail_rate stay."""
        with self._lock:
            self.tickets.clear()
            self.requests_seen = 0
            self._steps.clear()
            self._next_id = self._start_id()

    def app(self) -> Flask:
        """The WSGI app serving this sandbox (created once)."""
        with self._lock:
            if self._app is None:
                from bridge.sandbox.app import create_sandbox_app

                self._app = create_sandbox_app(self)
            return self._app

    def snapshot(self) -> dict[str, Any]:
        """A copy of the state, as ``GET /_sandbox/tickets`` shows it."""
        with self._lock:
            tickets = [dict(ticket) for ticket in self.tickets]
            return {"tickets": tickets, "requests_seen": self.requests_seen}

    def take_turn(self) -> Step | None:
        """Count a request; return its scripted step, FAULT (by fail_rate) or None."""
        with self._lock:
            self.requests_seen += 1
            if self._steps:
                return self._steps.popleft()  # scripted requests are never faulted at random
            return FAULT if self._random.random() < self.fail_rate else None

    def store(self, body: dict[str, Any], headers: dict[str, str | None]) -> dict[str, Any]:
        """Keep the request as received under the next id (first_id, first_id + 1, ...)."""
        with self._lock:
            now = datetime.now(UTC).replace(microsecond=0).isoformat()
            ticket_id, self._next_id = self._next_id, self._next_id + 1
            record = {
                "id": ticket_id,
                "api_identifier": str(uuid.uuid4()),
                "created_at": now,
                "request": body,
                "headers": headers,
            }
            self.tickets.append(record)
            return record
