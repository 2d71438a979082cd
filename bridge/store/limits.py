"""Fixed-window counters in the database, so that every process counts against one limit.

A window of ``period_seconds`` starts at a multiple of the period (Unix time). The first request
of a key in a window inserts its row with count 1; later ones add 1 with ``INSERT … ON CONFLICT
DO UPDATE … WHERE count < limit RETURNING count``, one atomic statement on SQLite and PostgreSQL.
When the window is full the statement changes nothing and returns no row: the request is over
the limit and nothing of it is written. What the limit is and what being over it means for a
caller is decided in ``bridge/intake.py``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, delete
from sqlalchemy.dialects import postgresql, sqlite

from bridge.db import rate_counters

# the longest window a source may set (``<n>/hour``): rows whose window started earlier than
# this before now have ended, whatever their period
LONGEST_WINDOW_SECONDS = 3600
SWEEP_EVERY_SECONDS = 60


@dataclass(frozen=True)
class RateCheck:
    """Count one request under ``key``: at most ``limit`` per window of ``period_seconds``."""

    key: str  # at most 255 characters
    limit: int
    period_seconds: int


class RateExceeded(Exception):
    """The window of the key is full; ``retry_after`` is the number of seconds until it ends."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"window full for another {retry_after} s")
        self.retry_after = retry_after


class RateCounters:
    """Counting is done in the caller's transaction, so it commits (or not) with what it guards."""

    def __init__(self, is_postgres: bool) -> None:
        dialect_insert = postgresql.insert if is_postgres else sqlite.insert
        insert = dialect_insert(rate_counters).values(
            key=bindparam("key"), window_start=bindparam("window_start"), count=1
        )
        self._count = insert.on_conflict_do_update(
            index_elements=[rate_counters.c.key, rate_counters.c.window_start],
            set_={"count": rate_counters.c.count + 1},
            where=rate_counters.c.count < bindparam("limit"),
        ).returning(rate_counters.c.count)
        self._next_sweep = 0.0

    def count(self, conn: Connection, check: RateCheck, now: datetime) -> int:
        """Count one request at ``now``; its number in the window. Raises :class:`RateExceeded`,
        having written nothing, when the window already holds ``check.limit``."""
        epoch = now.timestamp()
        window_start = int(epoch // check.period_seconds) * check.period_seconds
        values = {"key": check.key, "window_start": window_start, "limit": check.limit}
        counted = conn.execute(self._count, values).scalar()
        if counted is None:
            raise RateExceeded(max(1, math.ceil(window_start + check.period_seconds - epoch)))
        self._sweep(conn, epoch)
        return int(counted)

    def _sweep(self, conn: Connection, epoch: float) -> None:
        """Delete windows that have ended, at most once a minute per process."""
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + SWEEP_EVERY_SECONDS
        conn.execute(delete(rate_counters).where(rate_counters.c.window_start < int(epoch) - LONGEST_WINDOW_SECONDS))
