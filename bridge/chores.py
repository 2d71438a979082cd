"""Periodic work a worker does beside delivery (alerts, retention), each chore on a thread of its own.

Each chore runs at most every ``every_seconds`` in each worker process; a chore that must
happen once for all processes (one notification, not one per worker) coordinates through the
database itself. Each has its own thread so that a long one (a first purge of a large
database) never holds back another (an alert due within a minute). A chore that raises is
logged and tried again at its next turn: it never stops delivery. ``run(now, stopping)``: a
long chore returns early once ``stopping`` is set, so the worker's shutdown is not held up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger("bridge.chores")


@dataclass
class Chore:
    name: str
    every_seconds: float
    run: Callable[[datetime, threading.Event], object]


class Chores:
    def __init__(self, chores: Iterable[Chore] = ()) -> None:
        self.chores = list(chores)
        self._next_at = dict.fromkeys((chore.name for chore in self.chores), 0.0)
        self._threads: list[threading.Thread] = []

    def run_due(self, stopping: threading.Event | None = None) -> None:
        """Run every chore whose turn has come, one after the other (tests, one-off runs)."""
        for chore in self.chores:
            self._run_if_due(chore, stopping or threading.Event())

    def _run_if_due(self, chore: Chore, stopping: threading.Event) -> None:
        if time.monotonic() < self._next_at[chore.name]:
            return
        try:
            chore.run(datetime.now(UTC), stopping)
        except Exception:
            log.exception("chore %s failed; tried again in %g s", chore.name, chore.every_seconds)
        self._next_at[chore.name] = time.monotonic() + chore.every_seconds

    def start(self, stopping: threading.Event, tick_seconds: float = 1.0) -> list[threading.Thread]:
        """Run each chore on a thread of its own until ``stopping`` is set."""

        def loop(chore: Chore) -> None:
            while not stopping.wait(tick_seconds):
                self._run_if_due(chore, stopping)

        for chore in self.chores:
            thread = threading.Thread(target=loop, args=(chore,), name=f"chore-{chore.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return list(self._threads)

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds in all for the chores' threads (after ``stopping`` was set)."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
