"""The worker's periodic chores: each at its own pace, a failing one never stops the others."""

from __future__ import annotations

import threading
from datetime import datetime

from bridge.chores import Chore, Chores
from tests.helpers import wait_for


def test_each_chore_runs_at_its_own_pace_and_a_failing_one_does_not_stop_the_rest() -> None:
    ran: list[str] = []

    def broken(now: datetime) -> None:
        ran.append("broken")
        raise RuntimeError("boom")

    chores = Chores([Chore("broken", 0, broken), Chore("slow", 3600, lambda now: ran.append("slow"))])
    chores.run_due()
    chores.run_due()
    assert ran == ["broken", "slow", "broken"]


def test_the_chores_thread_runs_until_stopped() -> None:
    ticks: list[datetime] = []
    stopping = threading.Event()
    thread = Chores([Chore("tick", 0, ticks.append)]).start(stopping, tick_seconds=0.01)
    assert thread is not None
    wait_for(lambda: len(ticks) >= 3, timeout=5)
    stopping.set()
    thread.join(2)
    assert not thread.is_alive()
    assert Chores().start(stopping) is None
