"""The event store: events and their delivery attempts.

Uniqueness of (source, dedupe key) is the database's job (``ON CONFLICT DO NOTHING``),
claims are one compare-and-set ``UPDATE ... RETURNING`` (with ``FOR UPDATE SKIP LOCKED``
on PostgreSQL), and every state change of a claimed event is fenced by its lease owner.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnDefault,
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    null,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bridge.db import DUE_WHERE, LEASED_WHERE, WriteLock, attempts, events, seen_tokens
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


# the columns an inbound event's INSERT sets: NewEvent's, and those add_event() derives from them
EVENT_ROW = (
    *NewEvent.__dataclass_fields__,
    "search_text",
    "attempts",
    "attempts_at_window_start",
    "retry_window_start",
    "updated_at",
    "next_attempt_at",
)


@dataclass(frozen=True)
class OneTimeToken:
    """A value the sender's signature covers that must never come back with another message."""

    value: str
    ttl_seconds: float


class ReplayedToken(Exception):
    """The token was already used for a message with another dedupe key."""


@dataclass
class _Arrival:
    """An insert waiting for its turn at SQLite's write lock (see :meth:`Store._add_in_group`)."""

    new: NewEvent
    token: OneTimeToken | None
    row: dict[str, Any]
    done: bool = False
    outcome: tuple[str, str, bool] | None = None
    error: BaseException | None = None


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


def _as_claim(row: Any, owner: str) -> Claim:
    """A row returned by the claim statement (see :func:`_claim_statement`), as a Claim."""
    names = ("ticket_request", "request_id", "source", "retry_window_start", "attempts_at_window_start")
    return Claim(owner=owner, attempt=row.attempts, event_id=row.id, **{name: getattr(row, name) for name in names})


def _claim_params(owner: str, limit: int, lease_seconds: float, now: datetime) -> dict[str, Any]:
    return {"owner": owner, "now": now, "limit": limit, "lease_until": now + timedelta(seconds=lease_seconds)}


def _claim_statement() -> Any:
    """Lease up to :limit due events. The ids are picked in a CTE, which PostgreSQL runs once:
    as ``WHERE id IN (subquery)`` its generic plan could run the LIMIT subquery again for
    every row and lease far more than asked."""
    due = and_(DUE_WHERE, events.c.next_attempt_at <= bindparam("now"))
    picked = (
        select(events.c.id)
        .where(due)
        .order_by(events.c.next_attempt_at)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    return (
        update(events)
        .where(events.c.id == picked.c.id, due)
        .values(
            status="delivering",
            lease_owner=bindparam("owner"),
            updated_at=bindparam("now"),
            lease_expires_at=bindparam("lease_until"),
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


@functools.cache  # one statement per set of changed columns, built once
def _finish_statement(changes: frozenset[str], prefix: str = "") -> Any:
    """UPDATE of a claimed event, fenced by its lease owner; values bound by column name (after ``prefix``)."""
    fence = and_(events.c.id == bindparam("b_id"), events.c.lease_owner == bindparam("b_owner"), LEASED_WHERE)
    values: dict[str, Any] = {name: bindparam(f"{prefix}{name}") for name in (*changes, "updated_at")}
    return update(events).where(fence).values(**values, lease_owner=null(), lease_expires_at=null())


# every column of an attempt but its id, bound as a_<column>, and what a column left out gets
ATTEMPT_DEFAULTS = {
    c.name: (c.default.arg if isinstance(c.default, ColumnDefault) else None) for c in attempts.c if c.name != "id"
}


@functools.cache
def _finish_and_claim_statement(changes: frozenset[str]) -> Any:
    """PostgreSQL: record an attempt, update its event (as :func:`_finish_statement`) and lease
    the next due event (as :func:`_claim_statement`) in one statement, one round trip. The
    attempt's values are bound as ``a_<column>``, the event's new values as ``c_<column>``. Its
    row: ``finished`` (1, or 0 when the lease was lost) and the leased event's columns (NULL when
    none is due). The claim cannot pick the finished event: every part sees the table as it was
    before the statement, when that event was still ``delivering``."""
    values: dict[str, Any] = {name: bindparam(f"a_{name}") for name in ATTEMPT_DEFAULTS}
    recorded = insert(attempts).values(values).returning(attempts.c.id).cte("recorded")
    # no parameter may be named after a column: SQLAlchemy would add it to every UPDATE's SET
    finished = _finish_statement(changes, prefix="c_").returning(events.c.id).cte("finished")
    claimed = _claim_statement().cte("claimed")
    one = select(literal(1).label("one")).subquery("one")
    return (
        select(
            select(func.count()).select_from(finished).scalar_subquery().label("finished"),
            # unused, but a CTE the statement does not mention is not run at all
            select(func.count()).select_from(recorded).scalar_subquery().label("recorded"),
            *claimed.c,
        )
        .select_from(one)
        .outerjoin(claimed, true())
    )


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
        self._write_lock = None if self.is_postgres else WriteLock(engine.url.database)
        # built once: a statement built per call costs more than the insert itself
        dialect_insert = postgresql.insert if self.is_postgres else sqlite.insert
        self._insert_event = dialect_insert(events).on_conflict_do_nothing().returning(events.c.id)
        self._insert_token = dialect_insert(seen_tokens).on_conflict_do_nothing()
        self._find_event = select(events.c.id, events.c.status).where(
            events.c.source == bindparam("source"), events.c.dedupe_key == bindparam("dedupe_key")
        )
        self._find_token = select(seen_tokens.c.dedupe_key).where(
            seen_tokens.c.source == bindparam("source"), seen_tokens.c.token == bindparam("token")
        )
        self._notify = text("SELECT pg_notify(:c, '')").bindparams(c=NOTIFY_CHANNEL)
        if self.is_postgres:  # the insert and the workers' wake-up in one round trip
            columns: dict[str, Any] = {name: bindparam(name) for name in EVENT_ROW}
            inserted = self._insert_event.values(columns).cte("inserted")
            self._insert_queued: Any = select(inserted.c.id, func.pg_notify(NOTIFY_CHANNEL, "")).select_from(inserted)
        else:
            self._insert_queued = self._insert_event
        self._next_token_sweep = 0.0
        self._claim_due = _claim_statement()
        self._insert_attempt = insert(attempts)
        self._arrivals: list[_Arrival] = []
        self._arrivals_lock = threading.Lock()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction (on SQLite, after this process's turn for the file's write lock)."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock.hold(), self.engine.begin() as conn:
            yield conn

    def ping(self) -> None:
        with unavailable_as_503(), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # --- inbound -------------------------------------------------------------------

    def add_event(self, new: NewEvent, token: OneTimeToken | None = None) -> tuple[str, str, bool]:
        """Insert ``new`` unless its (source, dedupe key) exists; answer (id, status, created).

        With ``token`` (a signature's one-time value, e.g. Mailgun's), the token is recorded in
        the same transaction, and :class:`ReplayedToken` is raised, with nothing stored, when it
        was seen before with another dedupe key.
        """
        row = {  # EVENT_ROW's columns
            **new.__dict__,
            "search_text": search_text(new.message.get("name"), new.message.get("email"), new.message.get("subject")),
            "attempts": 0,
            "attempts_at_window_start": 0,
            "retry_window_start": new.received_at,
            "updated_at": new.received_at,
            "next_attempt_at": new.received_at if new.status == "queued" else None,
        }
        with unavailable_as_503():
            if self._write_lock is None:
                with self.engine.begin() as conn:
                    return self._add(conn, new, token, row)
            return self._add_in_group(self._write_lock, _Arrival(new, token, row))

    def _add(
        self, conn: Connection, new: NewEvent, token: OneTimeToken | None, row: dict[str, Any]
    ) -> tuple[str, str, bool]:
        if token is not None and not self._remember(conn, new, token):
            raise ReplayedToken(token.value)
        insert_event = self._insert_queued if new.status == "queued" else self._insert_event
        created = conn.execute(insert_event, row).scalar()
        if created is not None:
            return created, new.status, True
        first = conn.execute(self._find_event, {"source": new.source, "dedupe_key": new.dedupe_key}).one()
        return first.id, first.status, False

    def _add_in_group(self, lock: WriteLock, arrival: _Arrival) -> tuple[str, str, bool]:
        """SQLite group commit: the inserts that arrived while another thread of this process
        held the write lock are committed together by whichever of their threads gets the lock
        next, in one transaction. A burst then costs one commit (one fsync) per group, not per
        request; every thread still answers only after its own insert is committed."""
        with self._arrivals_lock:
            self._arrivals.append(arrival)
        with lock.threads_turn():
            if not arrival.done:
                self._commit_group(lock)
        if arrival.error is not None:
            raise arrival.error
        assert arrival.outcome is not None
        return arrival.outcome

    def _commit_group(self, lock: WriteLock) -> None:
        with self.engine.connect() as conn, lock.process_turn():
            with self._arrivals_lock:  # as late as possible: whoever came while we waited joins in
                group, self._arrivals = self._arrivals, []
            self._commit(conn, group)

    def _commit(self, conn: Connection, group: list[_Arrival]) -> None:
        """One transaction for the group. A one-time token seen before fails only its own
        request (nothing of it was written); any other error rolls the group back, and then
        each request is tried in a transaction of its own, so one bad request fails alone."""
        try:
            with conn.begin():
                for each in group:
                    try:
                        each.outcome = self._add(conn, each.new, each.token, each.row)
                    except ReplayedToken as exc:
                        each.error = exc
        except BaseException as exc:
            if len(group) == 1 or not isinstance(exc, Exception):
                for each in group:
                    each.outcome, each.error = None, exc
            else:
                for each in group:
                    each.outcome, each.error = None, None
                    try:
                        with conn.begin():
                            each.outcome = self._add(conn, each.new, each.token, each.row)
                    except Exception as own:
                        each.error = own
        finally:
            for each in group:
                each.done = True

    def _remember(self, conn: Connection, new: NewEvent, token: OneTimeToken) -> bool:
        """Record ``token``; False when it was seen with another dedupe key."""
        now = new.received_at
        if time.monotonic() >= self._next_token_sweep:  # forgetting old tokens can wait a minute
            conn.execute(delete(seen_tokens).where(seen_tokens.c.seen_at < now - timedelta(seconds=token.ttl_seconds)))
            self._next_token_sweep = time.monotonic() + 60
        row = {"source": new.source, "token": token.value[:255], "dedupe_key": new.dedupe_key, "seen_at": now}
        conn.execute(self._insert_token, row)
        first = conn.execute(self._find_token, {"source": new.source, "token": row["token"]}).scalar_one()
        return bool(first == new.dedupe_key)

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
            .where(LEASED_WHERE, events.c.lease_expires_at < now)
            .values(status="retrying", next_attempt_at=now, lease_owner=None, lease_expires_at=None, updated_at=now)
            .returning(events.c.id, events.c.attempts)
        )
        with self._writing() as conn:
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
        """Lease up to ``limit`` due events, oldest due first."""
        with self._writing() as conn:
            return self._claim(conn, owner, limit, lease_seconds, now)

    def finish(self, claim: Claim, attempt: dict[str, Any], changes: dict[str, Any], now: datetime) -> bool:
        """Record one attempt and the event's new state; False if the lease was lost meanwhile."""
        with self._writing() as conn:
            return self._finish(conn, claim, attempt, changes, now)

    def finish_and_claim(
        self, claim: Claim, attempt: dict[str, Any], changes: dict[str, Any], now: datetime, lease_seconds: float
    ) -> tuple[bool, Claim | None]:
        """:meth:`finish`, and lease the next due event in the same transaction (one commit a delivery)."""
        if self.is_postgres:
            return self._finish_and_claim_in_one(claim, attempt, changes, now, lease_seconds)
        with self._writing() as conn:
            finished = self._finish(conn, claim, attempt, changes, now)
            taken = self._claim(conn, claim.owner, 1, lease_seconds, now)
        return finished, (taken[0] if taken else None)

    def _finish_and_claim_in_one(
        self, claim: Claim, attempt: dict[str, Any], changes: dict[str, Any], now: datetime, lease_seconds: float
    ) -> tuple[bool, Claim | None]:
        params = {f"a_{name}": attempt.get(name, default) for name, default in ATTEMPT_DEFAULTS.items()}
        params.update({f"c_{name}": value for name, value in changes.items()}, c_updated_at=now)
        params.update(a_event_id=claim.event_id, a_number=claim.attempt, b_id=claim.event_id, b_owner=claim.owner)
        params.update(_claim_params(claim.owner, 1, lease_seconds, now))
        with self._writing() as conn:
            row = conn.execute(_finish_and_claim_statement(frozenset(changes)), params).one()
        return row.finished == 1, (_as_claim(row, claim.owner) if row.id is not None else None)

    def _claim(self, conn: Connection, owner: str, limit: int, lease_seconds: float, now: datetime) -> list[Claim]:
        # an expired lease comes back only through expire_leases(), which records the lost attempt
        rows = conn.execute(self._claim_due, _claim_params(owner, limit, lease_seconds, now)).all()
        return [_as_claim(row, owner) for row in rows]

    def _finish(
        self, conn: Connection, claim: Claim, attempt: dict[str, Any], changes: dict[str, Any], now: datetime
    ) -> bool:
        conn.execute(self._insert_attempt, {**attempt, "event_id": claim.event_id, "number": claim.attempt})
        params = {**changes, "b_id": claim.event_id, "b_owner": claim.owner, "updated_at": now}
        return conn.execute(_finish_statement(frozenset(changes)), params).rowcount == 1

    def release(self, claim: Claim, now: datetime) -> None:
        """Give back a claim that was never sent (shutdown before the request left)."""
        with self._writing() as conn:
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
        with unavailable_as_503(), self._writing() as conn:
            changed = conn.execute(stmt).rowcount == 1
            if changed and self.is_postgres and values["status"] == "queued":
                conn.execute(self._notify)
            return changed

    def message_of(self, event_id: str) -> tuple[str, dict[str, Any], datetime] | None:
        query = select(events.c.source, events.c.message, events.c.received_at).where(events.c.id == event_id)
        with unavailable_as_503(), self.engine.connect() as conn:
            row = conn.execute(query).one_or_none()
            return (row.source, row.message, row.received_at) if row else None
