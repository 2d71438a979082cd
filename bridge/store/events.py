"""Events in and back: intake (insert-or-duplicate, one-time tokens, rate counting, SQLite group
commit) and replay.

Uniqueness of (source, dedupe key) is the database's job (``ON CONFLICT DO NOTHING``); a
second request with the same key is answered with the first event, also when both race.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, case, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from bridge.db import attachments, events, seen_tokens
from bridge.message import Attachment, InboundMessage
from bridge.status import Status
from bridge.store.base import NOTIFY_CHANNEL, Part, unavailable
from bridge.store.limits import RateCheck, RateCounters, RateExceeded
from bridge.store.sqlite import GroupCommit, WriteLock


@dataclass
class NewEvent:
    """An inbound request as it is stored: the message, what intake decided, and the request as received."""

    id: str
    source: str
    status: Status
    message: InboundMessage
    ticket_request: dict[str, Any] | None
    last_error: str | None
    received_at: datetime
    request_id: str | None = None
    raw_request: dict[str, Any] | None = None  # method, path, query, headers (credentials removed)
    raw_body: bytes = b""
    plan: dict[str, Any] | None = None  # what delivery does besides the ticket (bridge/conversation.py)
    client_id: int | None = None  # the client, when the sources file names it
    client_how: str | None = None
    files: list[tuple[int, Attachment]] = field(default_factory=list)  # (place in the message, file with bytes)
    email_message_id: str | None = None  # an email's Message-ID, which its replies name


@dataclass(frozen=True)
class OneTimeToken:
    """A value the sender's signature covers that must never come back with another message."""

    value: str
    ttl_seconds: float


@dataclass(frozen=True)
class Added:
    """What :meth:`EventStore.add` did: the event's id and status, and whether it is new."""

    event_id: str
    status: Status
    created: bool


class ReplayedToken(Exception):
    """The token was already used: for a message with another dedupe key, or by another source.

    Sources may share a signing key (two Mailgun routes), and a sender posts one signed request
    to one URL, so the same signature at a second source is a replay even with the same message.
    """

    def __init__(self, token: str, other_source: bool) -> None:
        super().__init__(token)
        self.other_source = other_source


@dataclass
class _Insert:
    new: NewEvent
    token: OneTimeToken | None
    rate: RateCheck | None
    row: dict[str, Any]


def search_text(*parts: object) -> str | None:
    """``parts`` case-folded, printable (PostgreSQL text holds no NUL) and short."""
    folded = " ".join(str(p) for p in parts if p).casefold()
    return "".join(c if c.isprintable() else " " for c in folded)[:512] or None


class EventStore(Part):
    def __init__(self, engine: Engine, write_lock: WriteLock | None) -> None:
        super().__init__(engine, write_lock)
        # built once: a statement built per call costs more than the insert itself
        dialect_insert = postgresql.insert if self.is_postgres else sqlite.insert
        self._insert_event = dialect_insert(events).on_conflict_do_nothing().returning(events.c.id)
        self._insert_token = dialect_insert(seen_tokens).on_conflict_do_nothing()
        self._insert_file = attachments.insert()
        self._find_event = select(events.c.id, events.c.status).where(
            events.c.source == bindparam("source"), events.c.dedupe_key == bindparam("dedupe_key")
        )
        self._find_token = select(seen_tokens.c.source, seen_tokens.c.dedupe_key).where(
            seen_tokens.c.token == bindparam("token")
        )
        self._notify = text("SELECT pg_notify(:c, '')").bindparams(c=NOTIFY_CHANNEL)
        self._record_token: Any = None
        if self.is_postgres:
            # the token recorded and its first use read in one round trip
            values: dict[str, Any] = {
                name: bindparam(f"t_{name}") for name in ("source", "token", "dedupe_key", "seen_at")
            }
            recorded = self._insert_token.values(values).returning(seen_tokens.c.source, seen_tokens.c.dedupe_key)
            new_token = recorded.cte("new_token")
            # the rest of the statement does not see the row it inserts: one row either way
            self._record_token = select(new_token.c.source, new_token.c.dedupe_key).union_all(
                select(seen_tokens.c.source, seen_tokens.c.dedupe_key).where(seen_tokens.c.token == values["token"])
            )
            # the insert and the workers' wake-up in one round trip
            columns: dict[str, Any] = {name: bindparam(name) for name in EVENT_ROW}
            inserted = self._insert_event.values(columns).cte("inserted")
            self._insert_queued: Any = select(inserted.c.id, func.pg_notify(NOTIFY_CHANNEL, "")).select_from(inserted)
        else:
            self._insert_queued = self._insert_event
        self._next_token_sweep = 0.0
        self.rate_counters = RateCounters(self.is_postgres)
        own_errors = (ReplayedToken, RateExceeded)
        self.group = GroupCommit(engine, write_lock, self._write, own_errors=own_errors) if write_lock else None

    # --- intake ----------------------------------------------------------------------

    def add(self, new: NewEvent, token: OneTimeToken | None = None, rate: RateCheck | None = None) -> Added:
        """Insert ``new`` unless its (source, dedupe key) exists; committed when this returns.

        With ``token`` (a signature's one-time value, e.g. Mailgun's), the token is recorded in
        the same transaction, and :class:`ReplayedToken` is raised, with nothing stored, when it
        was seen before with another dedupe key or by another source.

        With ``rate``, a new event is counted under its key in the same transaction (as of
        ``new.received_at``), and :class:`RateExceeded` is raised, with no event stored, when the
        window is full. A repeat of a stored event is not counted, so it is always answered.
        """
        insert = _Insert(new, token, rate, _row(new))
        with unavailable():
            if self.group is not None:
                return self.group.submit(insert)
            try:
                return self._write_postgres(insert)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
            # the database had dropped the pooled connection (bridge/db.py, make_engine): once
            # more on a new one. A commit lost with its connection may have happened; this try
            # then finds the event by its unique (source, dedupe_key) and answers with it.
            return self._write_postgres(insert)

    def _write_postgres(self, insert: _Insert) -> Added:
        """Most webhooks are one INSERT (with the workers' NOTIFY in it): that statement commits
        by itself. A token, a rate count or files make it a transaction of a few."""
        alone = insert.token is None and insert.rate is None and not insert.new.files
        with self.one_statement() if alone else self.engine.begin() as conn:
            return self._write(conn, insert)

    def _write(self, conn: Connection, insert: _Insert) -> Added:
        new = insert.new
        if insert.token is not None:
            self._remember(conn, new, insert.token)
        same_key = {"source": new.source, "dedupe_key": insert.row["dedupe_key"]}
        if insert.rate is not None:
            # A repeat of a stored event is answered as one, never counted or refused. A full
            # window writes nothing more; a one-time token recorded above stays (it was used).
            stored = conn.execute(self._find_event, same_key).one_or_none()
            if stored is not None:
                return Added(stored.id, Status(stored.status), False)
            self.rate_counters.count(conn, insert.rate, new.received_at)
        statement = self._insert_queued if new.status == Status.QUEUED else self._insert_event
        created = conn.execute(statement, insert.row).scalar()
        if created is not None:
            if new.files:
                conn.execute(self._insert_file, [_file_row(new.id, number, a) for number, a in new.files])
            return Added(created, new.status, True)
        first = conn.execute(self._find_event, same_key).one()
        return Added(first.id, Status(first.status), False)

    def _remember(self, conn: Connection, new: NewEvent, token: OneTimeToken) -> None:
        """Record ``token``; ReplayedToken unless it is new, or was seen with this very message at
        this source (a sender's retry)."""
        now = new.received_at
        if time.monotonic() >= self._next_token_sweep:  # forgetting old tokens can wait a minute
            conn.execute(delete(seen_tokens).where(seen_tokens.c.seen_at < now - timedelta(seconds=token.ttl_seconds)))
            self._next_token_sweep = time.monotonic() + 60
        key = new.message.dedupe_key
        row = {"source": new.source, "token": token.value[:255], "dedupe_key": key, "seen_at": now}
        first = None
        if self._record_token is not None:
            first = conn.execute(self._record_token, {f"t_{k}": v for k, v in row.items()}).first()
        else:
            conn.execute(self._insert_token, row)
        if first is None:  # on PostgreSQL: another request recorded it since this statement began
            first = conn.execute(self._find_token, {"token": row["token"]}).one()
        if first.source != new.source or first.dedupe_key != key:
            raise ReplayedToken(token.value, other_source=first.source != new.source)

    # --- replay ----------------------------------------------------------------------

    def requeue(
        self,
        event_id: str,
        from_statuses: Sequence[Status],
        ticket_request: dict[str, Any],
        now: datetime,
        plan: dict[str, Any] | None = None,
        client: tuple[int | None, str | None] = (None, None),
        restart: bool = False,
    ) -> bool:
        """Compare-and-set an event in ``from_statuses`` back to queued with a new ticket request
        and plan; ``client``: (id, how) when the sources file names it.

        The steps already done stay done (a replay resumes at the first one missing), unless
        ``restart`` (a forced replay of a delivered event: a new ticket, client and message).
        Its retry budget starts again (``BRIDGE_MAX_ATTEMPTS`` and the 72 h limit count from now).
        """
        client_id, client_how = client
        values: dict[str, Any] = {
            "status": Status.QUEUED,
            "ticket_request": ticket_request,
            "plan": plan,
            "next_attempt_at": now,
            "last_error": None,
            "updated_at": now,
            "retry_window_start": now,
            "attempts_at_window_start": events.c.attempts,
        }
        if restart:
            values.update(
                client_id=client_id, client_how=client_how, ticket_id=None, spp_message_id=None, thread_of=None
            )
        else:  # once the ticket exists its client is settled; before, the current configuration decides
            no_ticket = events.c.ticket_id.is_(None)
            values.update(
                client_id=case((no_ticket, client_id), else_=events.c.client_id),
                client_how=case((no_ticket, client_how), else_=events.c.client_how),
            )
        with unavailable(), self.writing() as conn:
            changed = self._set(conn, event_id, from_statuses, values)
            if changed and self.is_postgres:
                conn.execute(self._notify)
            return changed

    def files_of(self, event_id: str) -> dict[int, bytes]:
        """The bytes of an event's stored files, by their place in its message's attachment list."""
        query = select(attachments.c.number, attachments.c.content).where(attachments.c.event_id == event_id)
        with unavailable(), self.engine.connect() as conn:
            return {row.number: bytes(row.content) for row in conn.execute(query)}

    def mark_failed(self, event_id: str, from_statuses: Sequence[Status], reason: str, now: datetime) -> bool:
        """Compare-and-set an event in ``from_statuses`` to failed with ``reason``."""
        values = {"status": Status.FAILED, "last_error": reason, "next_attempt_at": None, "updated_at": now}
        with unavailable(), self.writing() as conn:
            return self._set(conn, event_id, from_statuses, values)

    @staticmethod
    def _set(conn: Connection, event_id: str, from_statuses: Sequence[Status], values: dict[str, Any]) -> bool:
        """Compare-and-set; never on a purged event (retention deleted what a replay maps)."""
        statement = update(events).where(
            events.c.id == event_id, events.c.status.in_(from_statuses), events.c.purged_at.is_(None)
        )
        return bool(conn.execute(statement.values(values)).rowcount == 1)

    def message_of(self, event_id: str) -> tuple[str, InboundMessage | None, datetime] | None:
        """(source, stored message, received at) of an event; None when there is no such event."""
        query = select(events.c.source, events.c.message, events.c.received_at).where(events.c.id == event_id)
        with unavailable(), self.engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            return None
        message = InboundMessage.from_dict(row.message) if row.message and row.message.get("dedupe_key") else None
        return row.source, message, row.received_at


def _row(new: NewEvent) -> dict[str, Any]:
    """The INSERT's values (EVENT_ROW): the message serialised once, the rest derived from ``new``."""
    message = new.message
    return {
        "id": new.id,
        "source": new.source,
        "dedupe_key": message.dedupe_key,
        "status": new.status,
        "request_id": new.request_id,
        "raw_request": new.raw_request or {},
        "raw_body": new.raw_body,
        "message": message.to_stored(),
        "ticket_request": new.ticket_request,
        "last_error": new.last_error,
        "received_at": new.received_at,
        "search_text": search_text(message.name, message.email, message.subject),
        "attempts": 0,
        "attempts_at_window_start": 0,
        "retry_window_start": new.received_at,
        "updated_at": new.received_at,
        "next_attempt_at": new.received_at if new.status == Status.QUEUED else None,
        "plan": new.plan,
        "client_id": new.client_id,
        "client_how": new.client_how,
        "email_message_id": _storable(new.email_message_id),
    }


def _storable(text: str | None) -> str | None:
    """A Message-ID as the indexed column can hold it: text PostgreSQL takes (no NUL, no lone
    surrogate) within 255 characters; anything else is no Message-ID a reply could name."""
    if not text or len(text) > 255 or "\x00" in text:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text


def _file_row(event_id: str, number: int, attachment: Attachment) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "number": number,
        "name": attachment.name,
        "content_type": attachment.content_type,
        "content": attachment.content,
    }


# the columns an inbound event's INSERT sets
EVENT_ROW = tuple(_row(NewEvent("", "", Status.QUEUED, InboundMessage(dedupe_key=""), None, None, datetime.min)).keys())
