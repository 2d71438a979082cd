"""The alerts' storage: what there is to tell, and whose turn it is to tell it.

Every process runs the alerts chore, so every process may find the same thing to tell. A
notification of one kind to one target goes out only from the process that wins the (kind,
target) row of ``alert_state`` with a compare-and-set (``take_turn``): not within the window
after the last notification, not while another process holds the turn. The winner records the
notification with ``sent`` (the window starts, the failures it named are marked in
``alerted_failures``) or gives the turn back with ``not_sent`` (nothing marked: the next turn
tells it all again). A process that dies holding the turn holds it until ``sending_until``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, bindparam, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bridge.db import DUE_WHERE, FAILED_WHERE, alert_state, alerted_failures, events
from bridge.store.actions import CANCELLED
from bridge.store.base import Part, unavailable
from bridge.store.pause import Pause, read_pause
from bridge.store.sqlite import WriteLock


@dataclass(frozen=True)
class Failure:
    """One failure of an event: a later failure of the same event (after a replay) is another."""

    event_id: str
    source: str
    reason: str
    failed_at: datetime


@dataclass(frozen=True)
class Backlog:
    """The events due for delivery: how many, and since when the oldest has been due."""

    due: int
    oldest_due_at: datetime | None


def _row(kind: str, target: str) -> Any:
    return and_(alert_state.c.kind == kind, alert_state.c.target == target)


class AlertStore(Part):
    def __init__(self, engine: Engine, write_lock: WriteLock | None) -> None:
        super().__init__(engine, write_lock)
        self._insert = postgresql.insert if self.is_postgres else sqlite.insert

    def failures(self, target: str, since: datetime) -> list[Failure]:
        """The events that failed at or after ``since`` and ``target`` was not told about, oldest
        failure first. An operator's cancel is no news to tell: cancelled events are left out."""
        told = exists(
            select(alerted_failures.c.event_id).where(
                alerted_failures.c.event_id == events.c.id,
                alerted_failures.c.target == target,
                alerted_failures.c.failed_at == events.c.updated_at,
            )
        )
        query = (
            select(events.c.id, events.c.source, events.c.last_error, events.c.updated_at)
            .where(
                FAILED_WHERE,
                events.c.updated_at >= since,
                ~func.coalesce(events.c.last_error, "").startswith(CANCELLED),
                ~told,
            )
            .order_by(events.c.updated_at, events.c.id)
        )
        with unavailable(), self.engine.connect() as conn:
            return [Failure(r.id, r.source, r.last_error or "", r.updated_at) for r in conn.execute(query)]

    def backlog(self, now: datetime) -> Backlog:
        query = select(func.count(), func.min(events.c.next_attempt_at)).where(
            DUE_WHERE, events.c.next_attempt_at <= now
        )
        with unavailable(), self.engine.connect() as conn:
            due, oldest = conn.execute(query).one()
        return Backlog(int(due), oldest)

    def pause(self) -> Pause | None:
        with unavailable(), self.engine.connect() as conn:
            return read_pause(conn)

    def throttled(self, kind: str, target: str, now: datetime) -> bool:
        """Whether a notification of ``kind`` to ``target`` must wait (a read: ``take_turn`` decides)."""
        query = select(alert_state.c.next_at, alert_state.c.sending_until).where(_row(kind, target))
        with unavailable(), self.engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            return False
        return any(at is not None and at > now for at in (row.next_at, row.sending_until))

    def take_turn(self, kind: str, target: str, owner: str, now: datetime, lease_seconds: float) -> bool:
        """True for the one caller of all processes that may send ``kind`` to ``target`` now."""
        free = and_(
            or_(alert_state.c.next_at.is_(None), alert_state.c.next_at <= now),
            or_(alert_state.c.sending_until.is_(None), alert_state.c.sending_until <= now),
        )
        with unavailable(), self.writing() as conn:
            conn.execute(self._insert(alert_state).values(kind=kind, target=target).on_conflict_do_nothing())
            taken = conn.execute(
                update(alert_state)
                .where(_row(kind, target), free)
                .values(sending_owner=owner, sending_until=now + timedelta(seconds=lease_seconds))
            ).rowcount
        return bool(taken)

    def sent(
        self,
        kind: str,
        target: str,
        owner: str,
        now: datetime,
        window_seconds: float,
        failures: Sequence[Failure] = (),
        forget_before: datetime | None = None,
    ) -> None:
        """The target took the notification: the window starts, and ``failures`` are marked as
        told; marks older than ``forget_before`` (no longer looked at) are deleted."""
        with unavailable(), self.writing() as conn:
            conn.execute(
                update(alert_state)
                .where(_row(kind, target), alert_state.c.sending_owner == owner)
                .values(
                    sent_at=now,
                    next_at=now + timedelta(seconds=window_seconds),
                    sending_owner=None,
                    sending_until=None,
                )
            )
            if not failures:
                return
            # the marks of events no longer failed (replayed, delivered since) are no use
            still_failed = exists(select(events.c.id).where(events.c.id == alerted_failures.c.event_id, FAILED_WHERE))
            stale = ~still_failed
            if forget_before is not None:
                stale = or_(stale, alerted_failures.c.failed_at < forget_before)
            conn.execute(delete(alerted_failures).where(alerted_failures.c.target == target, stale))
            insert = self._insert(alerted_failures).values(
                event_id=bindparam("b_event_id"), target=target, failed_at=bindparam("b_failed_at")
            )
            upsert = insert.on_conflict_do_update(
                index_elements=[alerted_failures.c.event_id, alerted_failures.c.target],
                set_={"failed_at": insert.excluded.failed_at},
            )
            conn.execute(upsert, [{"b_event_id": f.event_id, "b_failed_at": f.failed_at} for f in failures])

    def not_sent(self, kind: str, target: str, owner: str) -> None:
        """Give the turn back with nothing marked: the next turn, of any process, sends again."""
        with unavailable(), self.writing() as conn:
            conn.execute(
                update(alert_state)
                .where(_row(kind, target), alert_state.c.sending_owner == owner)
                .values(sending_owner=None, sending_until=None)
            )
