"""The delivery pause shared by every process: the one row of ``delivery_state``.

While SPP refuses the API token (docs/behaviour.md section 5) no worker claims events; one
worker at a time sends a probe (the oldest due event's real delivery) when ``next_probe_at``
has passed, and the first probe SPP does not refuse ends the pause. The row is created when
delivery first pauses; no row means delivery runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, exists, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bridge.db import DUE_WHERE, LEASED_WHERE, STATE_ROW, delivery_state, events
from bridge.status import PauseReason

# a claim respects the pause through this condition, in its own statement
NOT_PAUSED = ~exists(
    select(delivery_state.c.id).where(delivery_state.c.id == STATE_ROW, delivery_state.c.paused_since.is_not(None))
)
_THE_ROW = delivery_state.c.id == STATE_ROW


@dataclass(frozen=True)
class Pause:
    since: datetime
    reason: PauseReason
    http_status: int | None
    next_probe_at: datetime | None


def read_pause(conn: Connection) -> Pause | None:
    """The pause in force, or None while delivery runs."""
    row = conn.execute(select(delivery_state).where(_THE_ROW)).one_or_none()
    if row is None or row.paused_since is None:
        return None
    return Pause(row.paused_since, PauseReason(row.reason), row.http_status, row.next_probe_at)


def begin_pause(
    conn: Connection, reason: PauseReason, http_status: int | None, now: datetime, probe_seconds: float
) -> bool:
    """Pause delivery from ``now`` (first probe after ``probe_seconds``); True when this call
    began the pause, False when it was already paused (then only the HTTP status is updated)."""
    dialect_insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(dialect_insert(delivery_state).values(id=STATE_ROW).on_conflict_do_nothing())
    began = conn.execute(
        update(delivery_state)
        .where(_THE_ROW, delivery_state.c.paused_since.is_(None))
        .values(
            paused_since=now,
            reason=reason,
            http_status=http_status,
            next_probe_at=now + timedelta(seconds=probe_seconds),
        )
    ).rowcount
    if not began:
        conn.execute(update(delivery_state).where(_THE_ROW).values(reason=reason, http_status=http_status))
    return bool(began)


def take_probe_turn(conn: Connection, now: datetime, probe_seconds: float) -> datetime | None:
    """While paused and a probe is due, move the next probe ``probe_seconds`` on and answer when
    the pause began: the caller sends the probe. None for everyone else (compare-and-set)."""
    due = or_(delivery_state.c.next_probe_at.is_(None), delivery_state.c.next_probe_at <= now)
    row = conn.execute(
        update(delivery_state)
        .where(_THE_ROW, delivery_state.c.paused_since.is_not(None), due)
        .values(next_probe_at=now + timedelta(seconds=probe_seconds))
        .returning(delivery_state.c.paused_since)
    ).one_or_none()
    return None if row is None else row.paused_since


def end_pause(conn: Connection, now: datetime) -> datetime | None:
    """Lift the pause and move every waiting event's retry window on by the time it spent
    paused; answer when the pause began, or None when delivery was not paused."""
    since = conn.execute(select(delivery_state.c.paused_since).where(_THE_ROW).with_for_update()).scalar()
    if since is None:
        return None
    conn.execute(
        update(delivery_state)
        .where(_THE_ROW)
        .values(paused_since=None, reason=None, http_status=None, next_probe_at=None)
    )
    waiting = select(events.c.id, events.c.retry_window_start).where(or_(DUE_WHERE, LEASED_WHERE))
    moved = [
        {"b_id": row.id, "b_start": resumed_window_start(row.retry_window_start, since, now)}
        for row in conn.execute(waiting)
    ]
    if moved:
        conn.execute(
            update(events).where(events.c.id == bindparam("b_id")).values(retry_window_start=bindparam("b_start")),
            moved,
        )
    return since


def resumed_window_start(window_start: datetime, paused_since: datetime, now: datetime) -> datetime:
    """Where an event's 72 h limit counts from once a pause that began at ``paused_since`` ends
    at ``now``: the time spent paused is not used up (an event received during the pause starts
    its window at ``now``)."""
    return window_start + max(now - max(window_start, paused_since), timedelta(0))
