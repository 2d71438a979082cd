"""Retention: the request, message and files of finished events are deleted after a while.

An event's row stays with its ids, status, ticket, client, Message-ID, last error and attempts;
what goes is what grows with the size of a message: the raw body, the normalized message, the
ticket request and plan (both hold the message's text), the request's query and headers (they
may name the sender: a website visitor's address, a user agent), the search text and the files.
Two things stay so that a later email reply still joins the ticket (bridge/steps.py): the
``email_message_id`` column, and of a delivered event the sender's address, as ``{"email": …}``
in ``message`` (SPP and the ``clients`` table hold that address anyway).

Age counts from ``updated_at``, when the event reached its final status (delivered, discarded,
or failed): a failed event replayed late and delivered keeps its data for the full period after
its delivery. Work goes in batches, each its own short transaction, oldest first through the
partial index ``ix_events_purgeable``; on SQLite each batch holds the write lock only for itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Engine, LargeBinary, bindparam, case, cast, delete, func, null, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from bridge.db import PURGEABLE_WHERE, attachments, clients, events
from bridge.status import Status
from bridge.store.base import Part, unavailable
from bridge.store.sqlite import WriteLock

DEFAULT_BATCH = 200
# what one batch may delete at most (one event at least): bodies go up to 10 MiB each
MAX_BATCH_BYTES = 64 * 1024 * 1024
# a failed event waits at least this long for a replay before its data goes
FAILED_MIN_DAYS = 90
# a remembered "no such client" older than this is of no use (asked again after 10 minutes)
STALE_NOT_FOUND = timedelta(days=1)
# what stays of the request: enough to read the attempts by, nothing that names the sender
KEPT_REQUEST_KEYS = ("method", "path", "body_bytes")


@dataclass
class Removed:
    """What a purge deleted, for one kind of event: bytes of raw bodies and of stored messages
    (message, ticket request and plan: on PostgreSQL as stored, compressed or not), and the files."""

    events: int = 0
    body_bytes: int = 0
    message_bytes: int = 0
    attachments: int = 0
    attachment_bytes: int = 0

    def add(self, other: Removed) -> None:
        self.events += other.events
        self.body_bytes += other.body_bytes
        self.message_bytes += other.message_bytes
        self.attachments += other.attachments
        self.attachment_bytes += other.attachment_bytes

    @property
    def total_bytes(self) -> int:
        return self.body_bytes + self.message_bytes + self.attachment_bytes


@dataclass
class Purged:
    """A purge's totals: delivered and discarded events, and failed ones apart."""

    finished: Removed = field(default_factory=Removed)
    failed: Removed = field(default_factory=Removed)
    batches: int = 0
    stale_clients: int = 0

    @property
    def events(self) -> int:
        return self.finished.events + self.failed.events

    def add(self, other: Purged) -> None:
        self.finished.add(other.finished)
        self.failed.add(other.failed)
        self.batches += other.batches
        self.stale_clients += other.stale_clients


def cutoffs(now: datetime, older_than: timedelta) -> tuple[datetime, datetime]:
    """(delivered and discarded, failed): finished before these are purged. Failed events are
    kept at least :data:`FAILED_MIN_DAYS`, longer when ``older_than`` is longer."""
    return now - older_than, now - max(older_than, timedelta(days=FAILED_MIN_DAYS))


class Retention(Part):
    def __init__(self, engine: Engine, write_lock: WriteLock | None) -> None:
        super().__init__(engine, write_lock)
        self._stored_bytes = _stored_size if self.is_postgres else _stored_size_sqlite
        message = bindparam("b_message", type_=JSON(none_as_null=True))
        request = bindparam("b_request", type_=JSON())
        self._scrub = (
            update(events)
            .where(events.c.id == bindparam("b_id"), events.c.purged_at.is_(None))
            .values(
                raw_body=b"",
                message=message,
                raw_request=request,
                ticket_request=null(),
                plan=null(),
                search_text=None,
                client_id=bindparam("b_client_id"),
                purged_at=bindparam("b_now"),
            )
        )

    def purge(
        self,
        now: datetime,
        older_than: timedelta,
        batch: int = DEFAULT_BATCH,
        pause_seconds: float = 0.0,
        stopping: Callable[[], bool] = lambda: False,
        max_batch_bytes: int = MAX_BATCH_BYTES,
    ) -> Purged:
        """Purge batch after batch until none is left (or ``stopping()``), ``pause_seconds``
        apart so that intake and delivery get the database between batches; then forget stale
        "no such client" answers. Events that finish meanwhile wait for the next purge."""
        total = Purged()
        while not stopping():
            purged = self.purge_batch(now, older_than, batch, max_batch_bytes)
            if not purged.events:
                break
            total.add(purged)
            time.sleep(pause_seconds)
        total.stale_clients = self.forget_stale_clients(now)
        return total

    def purge_batch(
        self, now: datetime, older_than: timedelta, limit: int = DEFAULT_BATCH, max_bytes: int = MAX_BATCH_BYTES
    ) -> Purged:
        """Purge the oldest events due for it, in one transaction: up to ``limit`` of them, and
        no more than ``max_bytes`` of stored data (one event at least), so that a run of large
        mails does not make one long transaction."""
        finished_before, failed_before = cutoffs(now, older_than)
        picked = (
            select(
                events.c.id,
                events.c.status,
                func.coalesce(func.length(events.c.raw_body), 0).label("body_bytes"),
                (
                    self._stored_bytes(events.c.message)
                    + self._stored_bytes(events.c.ticket_request)
                    + self._stored_bytes(events.c.plan)
                ).label("message_bytes"),
            )
            .where(
                PURGEABLE_WHERE,
                events.c.updated_at < finished_before,
                or_(events.c.status != Status.FAILED, events.c.updated_at < failed_before),
            )
            .order_by(events.c.updated_at)
            .limit(limit)
        )
        if self.is_postgres:  # a replay or another worker's purge holding a row: skip it, not wait
            picked = picked.with_for_update(of=events, skip_locked=True)
        file_bytes = func.coalesce(func.sum(func.length(attachments.c.content)), 0)
        with unavailable(), self.writing() as conn:
            candidates = conn.execute(picked).all()
            if not candidates:
                return Purged()
            files_query = (
                select(attachments.c.event_id, func.count(), file_bytes)
                .where(attachments.c.event_id.in_([row.id for row in candidates]))
                .group_by(attachments.c.event_id)
            )
            files = {event_id: (int(n), int(size)) for event_id, n, size in conn.execute(files_query)}
            purged, ids = _within(candidates, files, max_bytes)
            rows = conn.execute(
                select(
                    events.c.id,
                    events.c.ticket_id,
                    events.c.client_id,
                    events.c.raw_request,
                    # the sender is kept of delivered events only: the message of others is not read
                    case((events.c.ticket_id.is_not(None), events.c.message["email"].as_string()), else_=null()).label(
                        "sender"
                    ),
                    case(
                        (events.c.client_id.is_(None), events.c.ticket_request["user_id"].as_string()), else_=null()
                    ).label("user_id"),
                ).where(events.c.id.in_(ids))
            ).all()
            conn.execute(delete(attachments).where(attachments.c.event_id.in_(ids)))
            conn.execute(self._scrub, [_scrubbed(row, now) for row in rows])
        return purged

    def forget_stale_clients(self, now: datetime) -> int:
        """Delete remembered "no such client" answers nobody uses any more; found and created
        clients stay (one row per address, the bridge's own record of whom it created)."""
        cutoff = now - STALE_NOT_FOUND
        statement = delete(clients).where(
            clients.c.client_id.is_(None),
            clients.c.checked_at < cutoff,
            or_(clients.c.creating_until.is_(None), clients.c.creating_until < cutoff),
        )
        with unavailable(), self.writing() as conn:
            return int(conn.execute(statement).rowcount or 0)

    def stored_bytes(self) -> int:
        """Bytes of raw bodies, messages, ticket requests, plans and files held now (sizing, tests)."""
        events_query = select(
            func.coalesce(
                func.sum(
                    func.coalesce(func.length(events.c.raw_body), 0)
                    + self._stored_bytes(events.c.message)
                    + self._stored_bytes(events.c.ticket_request)
                    + self._stored_bytes(events.c.plan)
                ),
                0,
            )
        )
        files_query = select(func.coalesce(func.sum(func.length(attachments.c.content)), 0))
        with unavailable(), self.engine.connect() as conn:
            return int(conn.execute(events_query).scalar_one()) + int(conn.execute(files_query).scalar_one())


def _within(candidates: Sequence[Any], files: dict[str, tuple[int, int]], max_bytes: int) -> tuple[Purged, list[str]]:
    """The oldest candidates whose stored bytes add up to ``max_bytes`` at most (one at least),
    and what purging them removes."""
    purged, ids, size = Purged(batches=1), list[str](), 0
    for row in candidates:
        n, file_bytes = files.get(row.id, (0, 0))
        removed = Removed(1, int(row.body_bytes or 0), int(row.message_bytes or 0), n, file_bytes)
        if ids and size + removed.total_bytes > max_bytes:
            break
        size += removed.total_bytes
        ids.append(row.id)
        (purged.failed if row.status == Status.FAILED else purged.finished).add(removed)
    return purged, ids


def _stored_size(column: Any) -> ColumnElement[int]:
    """Bytes a JSON value takes as stored (compressed, maybe), read without fetching the value."""
    return func.coalesce(func.pg_column_size(column), 0)


def _stored_size_sqlite(column: Any) -> ColumnElement[int]:
    return func.coalesce(func.length(cast(column, LargeBinary)), 0)


def _scrubbed(row: Any, now: datetime) -> dict[str, Any]:
    """The new values of one purged event: see the module's docstring for what stays."""
    sender = row.sender if isinstance(row.sender, str) and row.sender and row.ticket_id is not None else None
    request = row.raw_request if isinstance(row.raw_request, dict) else {}
    client_id = row.client_id
    if client_id is None:  # an event delivered before clients were recorded names it in its ticket request
        client_id = _whole_number(row.user_id)
    return {
        "b_id": row.id,
        "b_message": {"email": sender} if sender else None,
        "b_request": {**{k: request[k] for k in KEPT_REQUEST_KEYS if k in request}, "body_stored": False},
        "b_client_id": client_id,
        "b_now": now,
    }


def _whole_number(value: object) -> int | None:
    try:
        return int(str(value)) if value is not None else None
    except ValueError:
        return None
