"""The worker's periodic chores: each at its own pace on its own thread, a failing one never stops the others."""

from __future__ import annotations

import threading
from datetime import datetime

from bridge.chores import Chore, Chores
from tests.helpers import wait_for


def test_each_chore_runs_at_its_own_pace_and_a_failing_one_does_not_stop_the_rest() -> None:
    ran: list[str] = []

    def broken(now: datetime, stopping: threading.Event) -> None:
        ran.append("broken")
        raise RuntimeError("boom")

    chores = Chores([Chore("broken", 0, broken), Chore("slow", 3600, lambda now, stopping: ran.append("slow"))])
    chores.run_due()
    chores.run_due()
    assert ran == ["broken", "slow", "broken"]


def test_a_long_chore_does_not_hold_back_another_and_stops_with_the_worker() -> None:
    """A first purge of a large database may take many minutes: the alerts go on meanwhile, and
    the purge returns once the worker stops."""
    ticks: list[datetime] = []
    long_one_done = threading.Event()

    def long_one(now: datetime, stopping: threading.Event) -> None:
        while not stopping.wait(0.01):
            pass
        long_one_done.set()

    stopping = threading.Event()
    chores = Chores([Chore("long", 3600, long_one), Chore("tick", 0, lambda now, stopping: ticks.append(now))])
    threads = chores.start(stopping, tick_seconds=0.01)
    assert [t.name for t in threads] == ["chore-long", "chore-tick"]
    wait_for(lambda: len(ticks) >= 3, timeout=5)
    assert not long_one_done.is_set()
    stopping.set()
    chores.join(5)
    assert long_one_done.is_set()
    assert not any(t.is_alive() for t in threads)
    assert Chores().start(stopping) == []
