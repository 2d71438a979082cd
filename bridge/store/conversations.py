"""What delivery steps read and remember besides the event (docs/conversations.md).

- :class:`ClientBook`: SPP clients by email, as looked up or created. One row per case-folded
  address; the right to create a client is taken with one conditional upsert, so one address
  never creates two clients, whatever the number of workers.
- :class:`Threads`: the earlier event an email reply answers, and an event's files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, case, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bridge.db import attachments, clients, events
from bridge.status import Status
from bridge.store.base import Part
from bridge.store.sqlite import WriteLock

# a remembered "no such client" is asked again after this long: the client may have been added
NOT_FOUND_SECONDS = 600.0


@dataclass(frozen=True)
class Remembered:
    client_id: int | None  # None: SPP had no client with this address when last asked
    how: str  # found, created, not_found
    checked_at: datetime
    creating_owner: str | None
    creating_until: datetime | None

    def fresh_not_found(self, now: datetime) -> bool:
        return self.client_id is None and now - self.checked_at < timedelta(seconds=NOT_FOUND_SECONDS)

    def being_created(self, owner: str, now: datetime) -> bool:
        """Another worker holds the right to create this client, and may be doing so."""
        return (
            self.client_id is None
            and self.creating_owner not in (None, owner)
            and self.creating_until is not None
            and self.creating_until > now
        )


def _key(email: str) -> str:
    return email.strip().casefold()


class ClientBook(Part):
    def __init__(self, engine: Engine, write_lock: WriteLock | None) -> None:
        super().__init__(engine, write_lock)
        self._insert = (postgresql.insert if self.is_postgres else sqlite.insert)(clients)

    def get(self, email: str) -> Remembered | None:
        query = select(clients).where(clients.c.email == _key(email))
        with self.engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            return None
        return Remembered(row.client_id, row.how, row.checked_at, row.creating_owner, row.creating_until)

    def remember(self, email: str, client_id: int | None, how: str, now: datetime) -> None:
        """Store what SPP answered. A "not found" never replaces a client that is known (another
        worker may have created it since this one asked)."""
        row = {"email": _key(email), "client_id": client_id, "how": how, "checked_at": now}
        update = {"client_id": client_id, "how": how, "checked_at": now, "creating_owner": None, "creating_until": None}
        statement = self._insert.values(row).on_conflict_do_update(
            index_elements=[clients.c.email],
            set_=update,
            where=clients.c.client_id.is_(None) if client_id is None else None,
        )
        with self.writing() as conn:
            conn.execute(statement)

    def start_creating(self, email: str, owner: str, now: datetime, hold_seconds: float) -> bool:
        """Take the right to create the client of ``email``: granted to one worker at a time, and
        never when the client is known. It lapses after ``hold_seconds`` (a crashed worker); a
        retry looks the client up first, so a lapsed creation that did reach SPP is found then."""
        until = now + timedelta(seconds=hold_seconds)
        row = {"email": _key(email), "client_id": None, "how": "not_found", "checked_at": now}
        holder = clients.c.creating_owner
        statement = (
            self._insert.values({**row, "creating_owner": owner, "creating_until": until})
            .on_conflict_do_update(
                index_elements=[clients.c.email],
                set_={"creating_owner": owner, "creating_until": until},
                where=and_(
                    clients.c.client_id.is_(None),
                    or_(holder.is_(None), holder == owner, clients.c.creating_until < now),
                ),
            )
            .returning(clients.c.email)
        )
        with self.writing() as conn:
            return conn.execute(statement).first() is not None

    def stop_creating(self, email: str, owner: str) -> None:
        """Give the right back after a creation that certainly did not happen."""
        statement = (
            update(clients)
            .where(clients.c.email == _key(email), clients.c.creating_owner == owner)
            .values(creating_owner=None, creating_until=None)
        )
        with self.writing() as conn:
            conn.execute(statement)


@dataclass(frozen=True)
class Earlier:
    """The event a reply answers: where its ticket stands."""

    event_id: str
    status: Status
    ticket_id: int | None
    client_id: int | None  # the ticket's client
    next_attempt_at: datetime | None
    client_how: str | None = None
    sender: str | None = None  # the earlier mail's From address


class Threads(Part):
    def earlier_event(self, event_id: str, references: list[str], ticket_ref: int | None) -> Earlier | None:
        """The earliest event of any email source whose Message-ID the reply names (the first
        reference that matches wins: In-Reply-To before References), else the event that made
        ticket ``ticket_ref``; never the reply itself."""
        columns = (
            events.c.id,
            events.c.status,
            events.c.ticket_id,
            events.c.client_id,
            events.c.ticket_request,
            events.c.next_attempt_at,
            events.c.email_message_id,
            events.c.client_how,
            events.c.message["email"].as_string().label("sender"),
        )
        with self.engine.connect() as conn:
            if references:
                order = case({ref: n for n, ref in enumerate(references)}, value=events.c.email_message_id)
                query = (
                    select(*columns)
                    .where(events.c.email_message_id.in_(references), events.c.id != event_id)
                    .order_by(order, events.c.received_at)
                    .limit(1)
                )
                row = conn.execute(query).first()
                if row is not None:
                    return _earlier(row)
            if ticket_ref is not None:
                query = (
                    select(*columns)
                    .where(events.c.ticket_id == ticket_ref, events.c.id != event_id)
                    .order_by(events.c.received_at)
                    .limit(1)
                )
                row = conn.execute(query).first()
                if row is not None:
                    return _earlier(row)
        return None

    def files(self, event_id: str, numbers: list[int]) -> list[tuple[str, str, bytes]]:
        """(name, content type, bytes) of an event's stored files, in the order of ``numbers``."""
        if not numbers:
            return []
        query = select(attachments.c.number, attachments.c.name, attachments.c.content_type, attachments.c.content)
        query = query.where(attachments.c.event_id == event_id, attachments.c.number.in_(numbers))
        with self.engine.connect() as conn:
            rows = {row.number: row for row in conn.execute(query)}
        return [(rows[n].name, rows[n].content_type, bytes(rows[n].content)) for n in numbers if n in rows]


def _earlier(row: Any) -> Earlier:
    client_id = row.client_id
    if client_id is None and isinstance(row.ticket_request, dict):  # an event delivered before clients were recorded
        user_id = row.ticket_request.get("user_id")
        client_id = user_id if isinstance(user_id, int) else None
    return Earlier(
        row.id, Status(row.status), row.ticket_id, client_id, row.next_attempt_at, row.client_how, row.sender
    )
