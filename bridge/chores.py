"""Periodic work a worker does beside delivery (alerts, retention), on a thread of its own.

Each chore runs at most every ``every_seconds`` in each worker process; a chore that must
happen once for all processes (one notification, not one per worker) coordinates through the
database itself. A chore that raises is logged and tried again at its next turn: it never
stops delivery.
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
    run: Callable[[datetime], object]


class Chores:
    def __init__(self, chores: Iterable[Chore] = ()) -> None:
        self.chores = list(chores)
        self._next_at = dict.fromkeys((chore.name for chore in self.chores), 0.0)

    def run_due(self) -> None:
        """Run every chore whose turn has come."""
        for chore in self.chores:
            if time.monotonic() < self._next_at[chore.name]:
                continue
            try:
                chore.run(datetime.now(UTC))
            except Exception:
                log.exception("chore %s failed; tried again in %g s", chore.name, chore.every_seconds)
            self._next_at[chore.name] = time.monotonic() + chore.every_seconds

    def start(self, stopping: threading.Event, tick_seconds: float = 1.0) -> threading.Thread | None:
        """Run the chores until ``stopping`` is set (no thread when there are none)."""
        if not self.chores:
            return None

        def loop() -> None:
            while not stopping.wait(tick_seconds):
                self.run_due()

        thread = threading.Thread(target=loop, name="chores", daemon=True)
        thread.start()
        return thread
