"""The event store: events and their delivery attempts.

Uniqueness of (source, dedupe key) is the database's job (``ON CONFLICT DO NOTHING``),
claims are one compare-and-set ``UPDATE ... RETURNING`` (with ``FOR UPDATE SKIP LOCKED``
on PostgreSQL), and every state change of a claimed event is fenced by its lease owner.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bridge.db import attempts, events, seen_tokens
from bridge.errors import StoreUnavailable

NOTIFY_CHANNEL = "bridge_events"
PENDING = ("queued", "retrying")
SUMMARY_COLUMNS = (
    events.c.id,
    events.c.source,
    events.c.status,
    events.c.ticket_id,
    events.c.attempts,
    events.c.last_error,
    events.c.spp_request_id,
    events.c.received_at,
    events.c.delivered_at,
    events.c.next_attempt_at,
)


@dataclass
class NewEvent:
    id: str
    source: str
    dedupe_key: str
    status: str
    request_id: str | None
    raw_request: dict[str, Any]
    raw_body: bytes
    message: dict[str, Any]
    ticket_request: dict[str, Any] | None
    last_error: str | None
    received_at: datetime


@dataclass
class Claim:
    """An event a worker holds the lease on."""

    event_id: str
    owner: str
    attempt: int  # the number of the attempt about to be made
    ticket_request: dict[str, Any]
    request_id: str | None
    source: str
    retry_window_start: datetime  # receipt, or the last replay
    attempts_at_window_start: int

    @property
    def attempt_in_window(self) -> int:
        """The attempt's number since receipt or the last replay: what BRIDGE_MAX_ATTEMPTS counts."""
        return self.attempt - self.attempts_at_window_start


def search_text(*parts: object) -> str | None:
    """``parts`` case-folded, printable (PostgreSQL text holds no NUL) and short."""
    text = " ".join(str(p) for p in parts if p).casefold()
    return "".join(c if c.isprintable() else " " for c in text)[:512] or None


def _claim_fields(row: Any) -> dict[str, Any]:
    names = ("ticket_request", "request_id", "source", "retry_window_start", "attempts_at_window_start")
    return {name: getattr(row, name) for name in names}


@contextmanager
def unavailable_as_503() -> Iterator[None]:
    try:
        yield
    except (OperationalError, InterfaceError, PoolTimeout) as exc:
        raise StoreUnavailable("the database is not answering; retry later") from exc


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"

    def ping(self) -> None:
        with unavailable_as_503(), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # --- inbound -------------------------------------------------------------------

    def add_event(self, new: NewEvent) -> tuple[str, str, bool]:
        """Insert ``new`` unless its (source, dedupe key) exists; answer (id, status, created)."""
        dialect_insert = postgresql.insert if self.is_postgres else sqlite.insert
        row = {
            **new.__dict__,
            "search_text": search_text(new.message.get("name"), new.message.get("email"), new.message.get("subject")),
            "attempts": 0,
            "attempts_at_window_start": 0,
            "retry_window_start": new.received_at,
            "updated_at": new.received_at,
            "next_attempt_at": new.received_at if new.status == "queued" else None,
        }
        stmt = dialect_insert(events).values(row).on_conflict_do_nothing().returning(events.c.id)
        with unavailable_as_503(), self.engine.begin() as conn:
            created = conn.execute(stmt).scalar_one_or_none()
            if created is not None:
                if self.is_postgres and new.status == "queued":
                    conn.execute(text("SELECT pg_notify(:c, '')"), {"c": NOTIFY_CHANNEL})
                return created, new.status, True
            first = conn.execute(
                select(events.c.id, events.c.status).where(
                    events.c.source == new.source, events.c.dedupe_key == new.dedupe_key
                )
            ).one()
            return first.id, first.status, False

    def remember_token(self, source: str, token: str, dedupe_key: str, now: datetime, ttl_seconds: float) -> bool:
        """Record a one-time signature token; False when it was seen with another dedupe key."""
        dialect_insert = postgresql.insert if self.is_postgres else sqlite.insert
        row = {"source": source, "token": token[:255], "dedupe_key": dedupe_key, "seen_at": now}
        with unavailable_as_503(), self.engine.begin() as conn:
            conn.execute(delete(seen_tokens).where(seen_tokens.c.seen_at < now - timedelta(seconds=ttl_seconds)))
            conn.execute(dialect_insert(seen_tokens).values(row).on_conflict_do_nothing())
            first = conn.execute(
                select(seen_tokens.c.dedupe_key).where(
                    seen_tokens.c.source == source, seen_tokens.c.token == row["token"]
                )
            ).scalar_one()
        return bool(first == dedupe_key)

    # --- reading ---------------------------------------------------------------------

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        query = select(*SUMMARY_COLUMNS, events.c.ticket_request, events.c.message, events.c.request_id)
        with unavailable_as_503(), self.engine.connect() as conn:
            row = conn.execute(query.where(events.c.id == event_id)).mappings().one_or_none()
            return dict(row) if row else None

    def list_events(
        self, status: str | None, source: str | None, limit: int, cursor: str | None, search: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; ``search`` matches the sender (name or address) or the subject, any case."""
        query = select(*SUMMARY_COLUMNS).order_by(events.c.id.desc())
        query = query.limit(limit + 1)
        if search:
            term = search.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(events.c.search_text.like(f"%{term}%", escape="\\"))
        if status:
            query = query.where(events.c.status == status)
        if source:
            query = query.where(events.c.source == source)
        if cursor:
            query = query.where(events.c.id < cursor)
        with unavailable_as_503(), self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1]["id"] if more else None)

    def list_attempts(self, event_id: str) -> list[dict[str, Any]]:
        query = select(attempts).where(attempts.c.event_id == event_id).order_by(attempts.c.id)
        with unavailable_as_503(), self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def latest_by_source(self) -> dict[str, dict[str, Any]]:
        """Each source's newest event (id, status, received_at)."""
        newest = select(func.max(events.c.id)).group_by(events.c.source).scalar_subquery()
        query = select(events.c.source, events.c.id, events.c.status, events.c.received_at).where(
            events.c.id.in_(newest)
        )
        with unavailable_as_503(), self.engine.connect() as conn:
            return {r.source: dict(r._mapping) for r in conn.execute(query)}

    def count_by_status(self) -> dict[str, int]:
        query = select(events.c.status, func.count()).group_by(events.c.status)
        with unavailable_as_503(), self.engine.connect() as conn:
            return {status: n for status, n in conn.execute(query).all()}

    def oldest_pending(self) -> datetime | None:
        """When the oldest event still waiting for delivery was received."""
        query = select(func.min(events.c.received_at)).where(events.c.status.in_((*PENDING, "delivering")))
        with unavailable_as_503(), self.engine.connect() as conn:
            value = conn.execute(query).scalar_one_or_none()
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    def event_ids(self, status: str, source: str | None = None, since: datetime | None = None) -> list[str]:
        query = select(events.c.id).where(events.c.status == status).order_by(events.c.id)
        if source:
            query = query.where(events.c.source == source)
        if since:
            query = query.where(events.c.received_at >= since)
        with unavailable_as_503(), self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    # --- delivery ------------------------------------------------------------------

    def expire_leases(self, now: datetime) -> list[str]:
        """Hand the events of crashed workers back to the queue, recording the lost attempt."""
        stmt = (
            update(events)
            .where(events.c.status == "delivering", events.c.lease_expires_at < now)
            .values(status="retrying", next_attempt_at=now, lease_owner=None, lease_expires_at=None, updated_at=now)
            .returning(events.c.id, events.c.attempts)
        )
        with self.engine.begin() as conn:
            expired = conn.execute(stmt).all()
            for row in expired:
                conn.execute(
                    insert(attempts).values(
                        event_id=row.id,
                        number=row.attempts,
                        started_at=now,
                        duration_ms=0,
                        outcome="retry",
                        ambiguous=True,
                        error="worker lease expired mid-delivery: the request may have reached SPP",
                    )
                )
        return [row.id for row in expired]

    def claim(self, owner: str, limit: int, lease_seconds: float, now: datetime) -> list[Claim]:
        # an expired lease comes back only through expire_leases(), which records the lost attempt
        due = and_(events.c.status.in_(PENDING), events.c.next_attempt_at <= now)
        ids = (
            select(events.c.id)
            .where(due)
            .order_by(events.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(events)
            .where(events.c.id.in_(ids.scalar_subquery()), due)
            .values(
                status="delivering",
                lease_owner=owner,
                updated_at=now,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                attempts=events.c.attempts + 1,
            )
            .returning(
                events.c.id,
                events.c.attempts,
                events.c.ticket_request,
                events.c.request_id,
                events.c.source,
                events.c.retry_window_start,
                events.c.attempts_at_window_start,
            )
        )
        with self.engine.begin() as conn:
            rows = conn.execute(stmt).all()
        return [Claim(owner=owner, attempt=r.attempts, event_id=r.id, **_claim_fields(r)) for r in rows]

    def finish(self, claim: Claim, attempt: dict[str, Any], changes: dict[str, Any], now: datetime) -> bool:
        """Record one attempt and the event's new state; False if the lease was lost meanwhile."""
        with self.engine.begin() as conn:
            conn.execute(insert(attempts).values(event_id=claim.event_id, number=claim.attempt, **attempt))
            result = conn.execute(
                update(events)
                .where(
                    events.c.id == claim.event_id, events.c.lease_owner == claim.owner, events.c.status == "delivering"
                )
                .values(**changes, lease_owner=None, lease_expires_at=None, updated_at=now)
            )
            return result.rowcount == 1

    def release(self, claim: Claim, now: datetime) -> None:
        """Give back a claim that was never sent (shutdown before the request left)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(events)
                .where(events.c.id == claim.event_id, events.c.lease_owner == claim.owner)
                .values(
                    status="retrying",
                    next_attempt_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                    attempts=events.c.attempts - 1,
                    updated_at=now,
                )
            )

    # --- replay ----------------------------------------------------------------------

    def requeue(self, event_id: str, from_statuses: Sequence[str], changes: dict[str, Any], now: datetime) -> bool:
        """Compare-and-set an event back to ``queued`` (or to ``changes['status']``)."""
        values = {
            "status": "queued",
            "next_attempt_at": now,
            "last_error": None,
            "updated_at": now,
            "retry_window_start": now,
            "attempts_at_window_start": events.c.attempts,
            **changes,
        }
        stmt = update(events).where(events.c.id == event_id, events.c.status.in_(from_statuses)).values(values)
        with unavailable_as_503(), self.engine.begin() as conn:
            changed = conn.execute(stmt).rowcount == 1
            if changed and self.is_postgres and values["status"] == "queued":
                conn.execute(text("SELECT pg_notify(:c, '')"), {"c": NOTIFY_CHANNEL})
            return changed

    def message_of(self, event_id: str) -> tuple[str, dict[str, Any], datetime] | None:
        query = select(events.c.source, events.c.message, events.c.received_at).where(events.c.id == event_id)
        with unavailable_as_503(), self.engine.connect() as conn:
            row = conn.execute(query).one_or_none()
            return (row.source, row.message, row.received_at) if row else None
