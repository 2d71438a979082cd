"""The operator's actions on a waiting event: make it due now, or cancel it.

Each is one conditional ``UPDATE`` on an event that is ``queued`` or ``retrying`` and leased by
no one. A claim (``bridge/store/queue.py``) is the same kind of compare-and-set from those two
statuses to ``delivering``, so whichever commits first wins and the other changes nothing: on
PostgreSQL the second waits for the first's row lock and re-reads the row (or a claim's ``SKIP
LOCKED`` passes it by); on SQLite every write transaction holds the file's write lock. A
worker's record of its attempt is fenced by its lease and ``status = 'delivering'``, which
neither action ever matches, so a cancel can neither overwrite a delivery's result nor be
overwritten by it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, text, update

from bridge.db import DUE_WHERE, events
from bridge.status import Status
from bridge.store.base import NOTIFY_CHANNEL, Part, unavailable

CANCELLED = "cancelled"  # every cancelled event's last_error starts with this word


class EventActions(Part):
    def retry_now(self, event_id: str, now: datetime) -> Status | None:
        """Make a waiting event due at ``now`` (an event already due keeps its place in the
        queue) and answer its status; None when it is not ``queued`` or ``retrying``, or is
        leased. The retry budget is untouched: the attempt it leads to counts like any other.
        On PostgreSQL the workers are woken on commit."""
        sooner = case((events.c.next_attempt_at <= now, events.c.next_attempt_at), else_=now)
        statement = update(events).where(_waiting(event_id)).values(next_attempt_at=sooner, updated_at=now)
        with unavailable(), self.writing() as conn:
            status = conn.execute(statement.returning(events.c.status)).scalar_one_or_none()
            if status is not None and self.is_postgres:
                conn.execute(text("SELECT pg_notify(:c, '')").bindparams(c=NOTIFY_CHANNEL))
        return Status(status) if status is not None else None

    def cancel(self, event_id: str, now: datetime, reason: str) -> bool:
        """Fail a waiting event for good with ``reason`` (which must start with ``cancelled``);
        False when it is not ``queued`` or ``retrying``, or is leased. No attempt row is written:
        no request was sent. A replay takes the event back like any failed one."""
        if not reason.startswith(CANCELLED):
            raise ValueError(f"a cancel's reason starts with {CANCELLED!r}")
        values = {"status": Status.FAILED, "last_error": reason, "next_attempt_at": None, "updated_at": now}
        statement = update(events).where(_waiting(event_id)).values(values)
        with unavailable(), self.writing() as conn:
            return bool(conn.execute(statement).rowcount == 1)


def _waiting(event_id: str) -> Any:
    """The event, if it is queued or retrying and no worker holds it."""
    return and_(events.c.id == event_id, DUE_WHERE, events.c.lease_owner.is_(None))
