"""The delivery queue: the only storage a worker sees.

Claims are one compare-and-set ``UPDATE ... RETURNING`` (with ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL); every state change of a claimed event is fenced by its lease owner, and every
attempt is a row of its own. While delivery is paused (``bridge/store/pause.py``) claims find
nothing, and only a probe is leased.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import (
    ColumnDefault,
    Connection,
    Engine,
    and_,
    bindparam,
    func,
    insert,
    literal,
    null,
    select,
    text,
    true,
    update,
)

from bridge.db import DUE_WHERE, LEASED_WHERE, attempts, events
from bridge.status import AttemptOutcome, PauseReason, Status, Step
from bridge.store.base import NOTIFY_CHANNEL, Part
from bridge.store.conversations import ClientBook, Threads
from bridge.store.pause import (
    NOT_PAUSED,
    Pause,
    begin_pause,
    end_pause,
    read_pause,
    resumed_window_start,
    take_probe_turn,
)
from bridge.store.sqlite import GroupCommit, WriteLock

__all__ = ["NOTIFY_CHANNEL", "Claim", "DeliveryQueue", "Pause", "resumed_window_start"]

DEFAULT_PROBE_SECONDS = 30.0

Written = TypeVar("Written")

if TYPE_CHECKING:  # types only: the queue records what the SPP client and the retry policy produced
    from bridge.retry import Decision
    from bridge.spp_client import Outcome


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
    due_at: datetime  # its place in the queue: next_attempt_at when claimed
    paused_since: datetime | None = None  # a probe: when the pause it tests began
    # the conversation (bridge/conversation.py) and the steps done so far (bridge/steps.py)
    plan: dict[str, Any] | None = None
    ticket_id: int | None = None
    client_id: int | None = None
    client_how: str | None = None
    spp_message_id: int | None = None
    thread_of: str | None = None
    # event columns a step settled without a request of its own (a remembered client): written
    # with the next record of this claim
    changes: dict[str, Any] = field(default_factory=dict)

    @property
    def attempt_in_window(self) -> int:
        """The attempt's number since receipt or the last replay: what BRIDGE_MAX_ATTEMPTS counts."""
        return self.attempt - self.attempts_at_window_start

    @property
    def is_probe(self) -> bool:
        return self.paused_since is not None


def _as_claim(row: Any, owner: str, paused_since: datetime | None = None) -> Claim:
    """A row returned by the claim statement (see :func:`_claim_statement`), as a Claim."""
    names = ("ticket_request", "request_id", "source", "retry_window_start", "attempts_at_window_start", *STEP_COLUMNS)
    return Claim(
        owner=owner,
        attempt=row.attempts,
        event_id=row.id,
        due_at=row.next_attempt_at,
        paused_since=paused_since,
        **{name: getattr(row, name) for name in names},
    )


# what a claim carries of the conversation and its steps
STEP_COLUMNS = ("plan", "ticket_id", "client_id", "client_how", "spp_message_id", "thread_of")


def _claim_params(owner: str, limit: int, lease_seconds: float, now: datetime) -> dict[str, Any]:
    return {"owner": owner, "now": now, "limit": limit, "lease_until": now + timedelta(seconds=lease_seconds)}


def _claim_statement(probe: bool = False) -> Any:
    """Lease up to :limit due events, none while delivery is paused (but a ``probe``). The ids
    are picked in a CTE, which PostgreSQL runs once: as ``WHERE id IN (subquery)`` its generic
    plan could run the LIMIT subquery again for every row and lease far more than asked."""
    due = and_(DUE_WHERE, events.c.next_attempt_at <= bindparam("now"))
    picked = (
        select(events.c.id)
        .where(due if probe else and_(due, NOT_PAUSED))
        .order_by(events.c.next_attempt_at)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    return (
        update(events)
        .where(events.c.id == picked.c.id, due)
        .values(
            status=Status.DELIVERING,
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
            events.c.next_attempt_at,
            *(events.c[name] for name in STEP_COLUMNS),
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


def _attempt_cte() -> Any:
    """The INSERT of an attempt as a CTE, its values bound as ``a_<column>`` (:func:`attempt_params`)."""
    values: dict[str, Any] = {name: bindparam(f"a_{name}") for name in ATTEMPT_DEFAULTS}
    return insert(attempts).values(values).returning(attempts.c.id).cte("recorded")


def attempt_params(attempt: dict[str, Any], event_id: str, number: int) -> dict[str, Any]:
    params = {f"a_{name}": attempt.get(name, default) for name, default in ATTEMPT_DEFAULTS.items()}
    params.update(a_event_id=event_id, a_number=number)
    return params


@functools.cache
def _step_done_statement(changes: frozenset[str]) -> Any:
    """PostgreSQL: record a step's attempt and update its event, the lease kept (fenced as
    :func:`_finish_statement`), in one statement. The event's values are bound as ``c_<column>``;
    its row: ``held`` (1, or 0 when the lease was lost)."""
    fence = and_(events.c.id == bindparam("b_id"), events.c.lease_owner == bindparam("b_owner"), LEASED_WHERE)
    values: dict[str, Any] = {name: bindparam(f"c_{name}") for name in changes}
    held = update(events).where(fence).values(**values).returning(events.c.id).cte("held")
    recorded = _attempt_cte()
    return select(
        select(func.count()).select_from(held).scalar_subquery().label("held"),
        select(func.count()).select_from(recorded).scalar_subquery().label("recorded"),
    )


@functools.cache
def _finish_and_claim_statement(changes: frozenset[str]) -> Any:
    """PostgreSQL: record an attempt, update its event (as :func:`_finish_statement`) and lease
    the next due event (as :func:`_claim_statement`) in one statement, one round trip. The
    attempt's values are bound as ``a_<column>``, the event's new values as ``c_<column>``. Its
    row: ``finished`` (1, or 0 when the lease was lost) and the leased event's columns (NULL when
    none is due). The claim cannot pick the finished event: every part sees the table as it was
    before the statement, when that event was still ``delivering``."""
    recorded = _attempt_cte()
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


def attempt_row(outcome: Outcome, now: datetime, step: Step = Step.TICKET) -> dict[str, Any]:
    """The attempts row of one request to SPP, for ``step``, that ended at ``now``."""
    return {
        "step": step,
        "client_id": outcome.client_id,
        "message_id": outcome.message_id,
        "started_at": datetime.fromtimestamp(now.timestamp() - outcome.duration_ms / 1000, UTC),
        "duration_ms": outcome.duration_ms,
        "outcome": outcome.result,
        "http_status": outcome.http_status,
        "error": outcome.error,
        "ambiguous": outcome.ambiguous,
        "ticket_id": outcome.ticket_id,
        "spp_request_id": outcome.spp_request_id,
        "response_excerpt": outcome.response_excerpt,
    }


def event_changes(outcome: Outcome, decision: Decision, now: datetime) -> dict[str, Any]:
    """The event's new columns after an attempt, as the retry policy decided."""
    changes: dict[str, Any] = {"status": decision.status, "last_error": decision.reason}
    if decision.status == Status.DELIVERED:
        changes.update(delivered_at=now, next_attempt_at=None)
        if outcome.ticket_id is not None:  # the ticket was the last step: its request's identifier is the event's
            changes.update(ticket_id=outcome.ticket_id, spp_request_id=outcome.spp_request_id)
        if outcome.message_id is not None:
            changes["spp_message_id"] = outcome.message_id
    elif decision.status == Status.RETRYING:
        changes["next_attempt_at"] = decision.next_attempt_at
    else:
        changes["next_attempt_at"] = None
    return changes


def step_in_flight(ticket_id: int | None, client_id: int | None, plan: dict[str, Any] | None) -> Step:
    """The step a claim that was lost mid-delivery was at, from what the event shows done."""
    if ticket_id is not None:
        return Step.MESSAGE
    if client_id is None and (plan or {}).get("client"):
        return Step.CLIENT
    return Step.TICKET


class _NothingToProbe(Exception):
    """Rolls back a probe turn taken with no event due, so the next event may probe at once."""


class DeliveryQueue(Part):
    def __init__(self, engine: Engine, write_lock: WriteLock | None) -> None:
        super().__init__(engine, write_lock)
        self._claim_due = _claim_statement()
        self._claim_probe = _claim_statement(probe=True)
        self._insert_attempt = insert(attempts)
        self._notify = text("SELECT pg_notify(:c, '')").bindparams(c=NOTIFY_CHANNEL)
        # what the delivery steps read and remember besides the event
        self.clients = ClientBook(engine, write_lock)
        self.threads = Threads(engine, write_lock)
        self._group: GroupCommit[Callable[[Connection], Any], Any] | None = None
        if write_lock is not None:
            self._group = GroupCommit(engine, write_lock, lambda conn, work: work(conn))

    def claim(self, owner: str, limit: int, lease_seconds: float, now: datetime) -> list[Claim]:
        """Lease up to ``limit`` due events, oldest due first."""
        return self._delivery_write(
            lambda conn: self._claim(conn, owner, limit, lease_seconds, now), one_statement=True
        )

    def pause(self) -> Pause | None:
        """The delivery pause in force, or None (one read of one row).

        Like every method the worker calls, a database that does not answer raises SQLAlchemy's
        error, which the worker's loop waits out; ``StoreUnavailable`` is for HTTP answers.
        """
        with self.engine.connect() as conn:
            return read_pause(conn)

    def claim_probe(
        self, owner: str, lease_seconds: float, now: datetime, probe_seconds: float = DEFAULT_PROBE_SECONDS
    ) -> Claim | None:
        """While paused and a probe is due, lease the oldest due event as the probe (one worker
        of all gets it; the next probe is due ``probe_seconds`` later); else None."""
        pause = self.pause()
        if pause is None or (pause.next_probe_at is not None and pause.next_probe_at > now):
            return None
        try:
            with self.writing() as conn:
                paused_since = take_probe_turn(conn, now, probe_seconds)
                if paused_since is None:
                    return None
                rows = conn.execute(self._claim_probe, _claim_params(owner, 1, lease_seconds, now)).all()
                if not rows:
                    raise _NothingToProbe
        except _NothingToProbe:
            return None
        return _as_claim(rows[0], owner, paused_since)

    def record(
        self,
        claim: Claim,
        outcome: Outcome,
        decision: Decision,
        now: datetime,
        next_lease_seconds: float | None = None,
        probe_seconds: float = DEFAULT_PROBE_SECONDS,
        step: Step = Step.TICKET,
    ) -> tuple[bool, Claim | None]:
        """Record one attempt (at ``step``) and the event's new state, which ends the claim, in
        one transaction, with the columns earlier steps of the claim left in ``claim.changes``.

        Answers whether the lease was still held (False: the attempt is recorded, the event left
        as it is) and, with ``next_lease_seconds``, the next due event leased in the same
        transaction (one commit a delivery), or None.

        A refused token (``decision.token_refused``) puts the event back in its place without
        using up an attempt and pauses delivery (the first probe after ``probe_seconds``);
        nothing is leased then. Any other outcome of a probe ends the pause before the next lease.
        """
        attempt = attempt_row(outcome, now, step)
        changes = {**claim.changes, **event_changes(outcome, decision, now), "attempts": claim.attempt}
        if decision.token_refused:
            changes.update(next_attempt_at=claim.due_at, attempts_at_window_start=claim.attempts_at_window_start + 1)
            with self.writing() as conn:
                finished = self._finish(conn, claim, attempt, changes, now)
                begin_pause(conn, PauseReason.TOKEN_REFUSED, outcome.http_status, now, probe_seconds)
            return finished, None
        if claim.is_probe:
            with self.writing() as conn:
                finished = self._finish(conn, claim, attempt, changes, now)
                if end_pause(conn, now) is not None and self.is_postgres:
                    conn.execute(self._notify)  # every process's worker: deliver again
                if next_lease_seconds is None:
                    return finished, None
                taken = self._claim(conn, claim.owner, 1, next_lease_seconds, now)
            return finished, (taken[0] if taken else None)
        if next_lease_seconds is not None and self.is_postgres:
            return self._record_and_claim_in_one(claim, attempt, changes, now, next_lease_seconds)

        def write(conn: Connection) -> tuple[bool, Claim | None]:
            finished = self._finish(conn, claim, attempt, changes, now)
            if next_lease_seconds is None:
                return finished, None
            taken = self._claim(conn, claim.owner, 1, next_lease_seconds, now)
            return finished, (taken[0] if taken else None)

        return self._delivery_write(write)

    def step_done(
        self, claim: Claim, outcome: Outcome, step: Step, changes: dict[str, Any], now: datetime, lease_seconds: float
    ) -> bool:
        """Record a step that succeeded with more to do: its attempt and ``changes`` (with
        ``claim.changes``), the lease renewed, BRIDGE_MAX_ATTEMPTS counting afresh for the next
        step. A probe's success ends the pause. False when the lease was lost (nothing changed
        but the attempt row); on True the claim is ready for its next request."""
        values = {
            **claim.changes,
            **changes,
            "attempts": claim.attempt + 1,  # the next request's number, reserved as a claim does
            "attempts_at_window_start": claim.attempt,
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
            "updated_at": now,
        }
        attempt = attempt_row(outcome, now, step)
        if self.is_postgres and not claim.is_probe:
            params = attempt_params(attempt, claim.event_id, claim.attempt)
            params.update(
                {f"c_{name}": value for name, value in values.items()}, b_id=claim.event_id, b_owner=claim.owner
            )
            with self.one_statement() as conn:
                held = conn.execute(_step_done_statement(frozenset(values)), params).one().held == 1
        else:
            fence = and_(events.c.id == claim.event_id, events.c.lease_owner == claim.owner, LEASED_WHERE)

            def write(conn: Connection) -> bool:
                conn.execute(self._insert_attempt, {**attempt, "event_id": claim.event_id, "number": claim.attempt})
                held = conn.execute(update(events).where(fence).values(values)).rowcount == 1
                if held and claim.is_probe and end_pause(conn, now) is not None and self.is_postgres:
                    conn.execute(self._notify)
                return held

            held = self._delivery_write(write)
        if held:
            claim.changes = {}
            claim.attempts_at_window_start = claim.attempt
            claim.attempt += 1
            claim.paused_since = None
        return bool(held)

    def settle(
        self,
        claim: Claim,
        status: Status,
        now: datetime,
        reason: str,
        next_attempt_at: datetime | None = None,
    ) -> bool:
        """End a claim at a step that made no request: ``retrying`` until ``next_attempt_at`` (a
        follow-up waiting for its ticket, a client another worker is creating), ``failed`` (no
        client) or ``delivered`` (nothing was left to do). The attempt number the claim reserved
        for that step is given back."""
        values = {
            **claim.changes,
            "status": status,
            "last_error": reason,
            "next_attempt_at": next_attempt_at if status == Status.RETRYING else None,
            "attempts": claim.attempt - 1,
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": now,
        }
        if status == Status.DELIVERED:  # every step was done by earlier claims
            values.update(delivered_at=now, last_error=None)
        fence = and_(events.c.id == claim.event_id, events.c.lease_owner == claim.owner, LEASED_WHERE)
        with self.writing() as conn:
            return bool(conn.execute(update(events).where(fence).values(values)).rowcount == 1)

    def _delivery_write(self, work: Callable[[Connection], Written], one_statement: bool = False) -> Written:
        """A write of a delivery thread. On SQLite it joins whatever the process's other delivery
        threads write at the time: one transaction and one fsync for all, taken between the web
        processes' group commits (bridge/store/sqlite.py). Elsewhere a transaction of its own, or,
        for ``work`` that is ``one_statement``, that statement alone (:meth:`Part.one_statement`)."""
        if self._group is not None:
            return cast(Written, self._group.submit(work))
        with self.one_statement() if one_statement else self.writing() as conn:
            return work(conn)

    def release(self, claim: Claim, now: datetime) -> None:
        """Give back a claim that was never sent (shutdown before the request left)."""
        with self.writing() as conn:
            conn.execute(
                update(events)
                .where(events.c.id == claim.event_id, events.c.lease_owner == claim.owner)
                .values(
                    status=Status.RETRYING,
                    next_attempt_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                    attempts=events.c.attempts - 1,
                    updated_at=now,
                )
            )

    def expire_leases(self, now: datetime) -> list[str]:
        """Hand the events of crashed workers back to the queue, recording the lost attempt."""
        stmt = (
            update(events)
            .where(LEASED_WHERE, events.c.lease_expires_at < now)
            .values(
                status=Status.RETRYING, next_attempt_at=now, lease_owner=None, lease_expires_at=None, updated_at=now
            )
            .returning(events.c.id, events.c.attempts, events.c.ticket_id, events.c.client_id, events.c.plan)
        )
        with self.writing() as conn:
            expired = conn.execute(stmt).all()
            for row in expired:
                conn.execute(
                    self._insert_attempt.values(
                        event_id=row.id,
                        number=row.attempts,
                        step=step_in_flight(row.ticket_id, row.client_id, row.plan),
                        started_at=now,
                        duration_ms=0,
                        outcome=AttemptOutcome.RETRYING,
                        ambiguous=True,
                        error="worker lease expired mid-delivery: the request may have reached SPP",
                    )
                )
        return [row.id for row in expired]

    def _claim(self, conn: Connection, owner: str, limit: int, lease_seconds: float, now: datetime) -> list[Claim]:
        # an expired lease comes back only through expire_leases(), which records the lost attempt
        rows = conn.execute(self._claim_due, _claim_params(owner, limit, lease_seconds, now)).all()
        return [_as_claim(row, owner) for row in rows]

    def _finish(
        self, conn: Connection, claim: Claim, attempt: dict[str, Any], changes: dict[str, Any], now: datetime
    ) -> bool:
        conn.execute(self._insert_attempt, {**attempt, "event_id": claim.event_id, "number": claim.attempt})
        params = {**changes, "b_id": claim.event_id, "b_owner": claim.owner, "updated_at": now}
        return bool(conn.execute(_finish_statement(frozenset(changes)), params).rowcount == 1)

    def _record_and_claim_in_one(
        self, claim: Claim, attempt: dict[str, Any], changes: dict[str, Any], now: datetime, lease_seconds: float
    ) -> tuple[bool, Claim | None]:
        params = attempt_params(attempt, claim.event_id, claim.attempt)
        params.update({f"c_{name}": value for name, value in changes.items()}, c_updated_at=now)
        params.update(b_id=claim.event_id, b_owner=claim.owner)
        params.update(_claim_params(claim.owner, 1, lease_seconds, now))
        with self.one_statement() as conn:
            row = conn.execute(_finish_and_claim_statement(frozenset(changes)), params).one()
        return row.finished == 1, (_as_claim(row, claim.owner) if row.id is not None else None)
