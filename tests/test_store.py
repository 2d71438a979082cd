"""Store queries: search by sender or subject, newest event per source, claims, the SQLite write lock
and SQLite's group commit."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy
from flask import Flask
from sqlalchemy.exc import StatementError

from bridge.db import make_engine
from bridge.message import InboundMessage
from bridge.migrate import upgrade
from bridge.retry import Decision
from bridge.runtime import Runtime
from bridge.spp_client import Outcome
from bridge.status import AttemptOutcome, Status, Step
from bridge.store import Added, NewEvent, OneTimeToken, ReplayedToken, Store
from bridge.store.events import _Insert, _row
from bridge.store.sqlite import GroupCommit, WriteLock
from tests.conftest import ROOT, api_headers


def post(app: Flask, source: str, **body: str) -> str:
    headers = api_headers() if source == "api" else {}
    response = app.test_client().post(f"/hooks/{source}", json=body, headers=headers)
    assert response.status_code == 200
    time.sleep(0.002)  # event ids are ordered by millisecond
    return str(response.get_json()["event_id"])


def test_search_matches_sender_name_address_or_subject(app: Flask, runtime: Runtime) -> None:
    a = post(app, "api", email="zoe@bigcustomer.com", name="Zoë Quant", subject="Invoice 100%")
    b = post(app, "api", email="max@example.org", subject="Printer_jam")
    c = post(app, "open", email="\x00evil@example.org", subject="Nothing")

    def found(term: str) -> list[str]:
        return [e["id"] for e in runtime.store.queries.list_events(None, None, 10, None, search=term)[0]]

    assert found("ZOË") == [a]
    assert found("bigcustomer") == [a]
    assert found("100%") == [a] and found("0%") == [a]
    assert found("r_j") == [b] and found("_") == [b]
    assert found("evil") == [c]
    assert found("example.org") == [c, b]
    assert found("nobody") == []


def test_latest_event_per_source(app: Flask, runtime: Runtime) -> None:
    post(app, "api", email="a@example.com", subject="one")
    second = post(app, "api", email="a@example.com", subject="two")
    other = post(app, "open", email="b@example.com", subject="three")
    latest = runtime.store.queries.latest_by_source()
    assert {s: e["id"] for s, e in latest.items()} == {"api": second, "open": other}
    assert latest["api"]["status"] == "queued"


def test_claims_take_exactly_the_limit_oldest_first(app: Flask, runtime: Runtime) -> None:
    """Repeated many times so PostgreSQL switches to a prepared, generic plan: with the LIMIT
    subquery inside ``WHERE id IN (...)`` such a plan leased every due event at once."""
    ids = [post(app, "api", email=f"c{n}@example.com", subject=f"claim {n}") for n in range(16)]
    now = datetime.now(UTC)
    taken = []
    for limit in (1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 3):
        claims = runtime.store.queue.claim("test-worker", limit, 60, now)
        assert len(claims) == limit
        taken += [c.event_id for c in claims]
    assert taken == ids[:14]
    assert runtime.store.queries.count_by_status() == {"delivering": 14, "queued": 2}


def test_finish_and_claim_records_one_event_and_leases_the_next(app: Flask, runtime: Runtime) -> None:
    first, second = post(app, "api", subject="one"), post(app, "api", subject="two")
    now = datetime.now(UTC)
    [claim] = runtime.store.queue.claim("test-worker", 1, 60, now)
    outcome = Outcome(AttemptOutcome.DELIVERED, 5, http_status=201, ticket_id=7)
    finished, taken = runtime.store.queue.record(claim, outcome, Decision(Status.DELIVERED), now, 60)
    assert (claim.event_id, finished) == (first, True)
    assert taken is not None and taken.event_id == second and taken.attempt == 1
    assert runtime.store.queries.get_event(first)["ticket_id"] == 7  # type: ignore[index]
    assert runtime.store.queries.get_event(second)["ticket_id"] is None  # type: ignore[index]
    assert runtime.store.queries.count_by_status() == {"delivered": 1, "delivering": 1}
    assert [a["number"] for a in runtime.store.queries.list_attempts(first)] == [1]


def test_write_lock_lets_one_thread_in_at_a_time(tmp_path) -> None:
    lock = WriteLock(str(tmp_path / "bridge.db"))
    inside, most, rounds = 0, 0, 200
    guard = threading.Lock()

    def hold() -> None:
        nonlocal inside, most
        for _ in range(rounds):
            with lock.hold():
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1
    assert (tmp_path / "bridge.db.lock").exists()


_COUNT_UNDER_LOCK = """
import sys, time
from pathlib import Path
from bridge.store.sqlite import WriteLock
lock, counter = WriteLock(sys.argv[1]), Path(sys.argv[2])
for _ in range(300):
    with lock.hold():
        value = int(counter.read_text())
        time.sleep(0.0002)  # a read-modify-write that others would interleave with
        counter.write_text(str(value + 1))
"""


def test_write_lock_queues_processes(tmp_path) -> None:
    """Three processes increment one counter file under the lock: no increment is lost."""
    counter = tmp_path / "counter"
    counter.write_text("0")
    args = [sys.executable, "-c", _COUNT_UNDER_LOCK, str(tmp_path / "bridge.db"), str(counter)]
    procs = [subprocess.Popen(args, cwd=ROOT) for _ in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert counter.read_text() == "900"


def _new_event(n: int, dedupe_key: str | None = None, fields: dict[str, Any] | None = None) -> NewEvent:
    now = datetime.now(UTC)
    message = InboundMessage(dedupe_key=dedupe_key or f"key-{n}", subject=f"message {n}", fields=fields or {})
    return NewEvent(
        id=f"evt_group_{n:04d}",
        source="api",
        status=Status.QUEUED,
        message=message,
        ticket_request={"subject": f"message {n}"},
        last_error=None,
        received_at=now,
        raw_request={"method": "POST", "path": "/hooks/api", "query": {}, "headers": {}},
        raw_body=b"{}",
    )


def _add_as_one_group(store: Store, events: list[tuple[NewEvent, OneTimeToken | None]]) -> list[Any]:
    """Each event from a thread of its own, all queued behind the write lock, then let go at once:
    the first thread in commits them all in one transaction."""
    assert store.events.group is not None
    return _as_one_group(store.events.group, [lambda e=e: store.events.add(*e) for e in events])


def _as_one_group(group: GroupCommit[Any, Any], calls: list[Callable[[], Any]]) -> list[Any]:
    """Each call from a thread of its own, all queued behind the write lock, then let go at
    once: what each returned or raised."""
    outcomes: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            outcomes[i] = calls[i]()
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    with group.lock.threads_turn():
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while group.waiting() < len(calls) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert group.waiting() == len(calls)
    for t in threads:
        t.join(timeout=10)
    return outcomes


def test_sqlite_group_commit_answers_each_request_its_own_outcome(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url, 4)
    upgrade(engine)
    store = Store(engine)
    token = OneTimeToken("one-time", 300)
    events = [
        (_new_event(1), None),
        (_new_event(2, dedupe_key="key-1"), None),  # same message as the first: a duplicate
        (_new_event(3, fields={"x": object()}), None),  # cannot be stored: fails alone
        (_new_event(4), token),
        (_new_event(5), token),  # the same one-time token with another message: a replay
        (_new_event(6), None),
    ]
    outcomes = _add_as_one_group(store, events)

    assert outcomes[0] == Added("evt_group_0001", Status.QUEUED, True)
    assert outcomes[1] == Added("evt_group_0001", Status.QUEUED, False)
    assert isinstance(outcomes[2], StatementError)
    assert outcomes[3] == Added("evt_group_0004", Status.QUEUED, True)
    assert isinstance(outcomes[4], ReplayedToken)
    assert outcomes[5] == Added("evt_group_0006", Status.QUEUED, True)
    assert store.queries.event_ids(Status.QUEUED) == ["evt_group_0001", "evt_group_0004", "evt_group_0006"]


@pytest.mark.postgres
def test_postgres_intake_and_each_delivery_write_is_one_autocommit_statement(pg_url: str) -> None:
    """No BEGIN, no COMMIT: each of these writes is a single statement, one round trip."""
    engine = make_engine(pg_url, 2)
    upgrade(engine)
    store = Store(engine)
    seen: list[tuple[str, bool]] = []

    @sqlalchemy.event.listens_for(engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append((statement.split()[0], conn.connection.dbapi_connection.autocommit))

    def writes(action: Any) -> Any:
        seen.clear()
        result = action()
        assert len(seen) == 1 and seen[0][1], seen
        return result

    first, second = _new_event(1), _new_event(2)
    assert writes(lambda: store.events.add(first)).created
    assert writes(lambda: store.events.add(second)).created
    now = datetime.now(UTC)
    [claim] = writes(lambda: store.queue.claim("test-worker", 1, 60, now))
    ticket = Outcome(AttemptOutcome.DELIVERED, 5, http_status=201, ticket_id=7)
    assert writes(lambda: store.queue.step_done(claim, ticket, Step.TICKET, {"ticket_id": 7}, now, 60))
    message = Outcome(AttemptOutcome.DELIVERED, 5, http_status=201, message_id=9)
    finished, taken = writes(
        lambda: store.queue.record(claim, message, Decision(Status.DELIVERED), now, 60, step=Step.MESSAGE)
    )
    assert finished and taken is not None and taken.event_id == second.id

    delivered = store.queries.get_event(first.id)
    assert delivered is not None
    assert (delivered["status"], delivered["ticket_id"], delivered["spp_message_id"]) == ("delivered", 7, 9)
    assert [(a["number"], a["step"]) for a in store.queries.list_attempts(first.id)] == [(1, "ticket"), (2, "message")]
    # a lost lease: the attempt is recorded, the event left alone
    taken.owner = "someone-else"
    assert not writes(lambda: store.queue.step_done(taken, ticket, Step.TICKET, {"ticket_id": 8}, now, 60))
    assert store.queries.get_event(second.id)["ticket_id"] is None  # type: ignore[index]
    engine.dispose()


@pytest.mark.postgres
def test_postgres_token_recorded_by_a_request_still_in_flight_is_seen_as_a_replay(pg_url: str) -> None:
    """The second use of a token waits for the first request's transaction; once that commits,
    the second's statement (whose snapshot predates it) reads nothing, and the token is read
    again: the second message is a replay, not stored."""
    engine = make_engine(pg_url, 4)
    upgrade(engine)
    store = Store(engine)
    token = OneTimeToken("in-flight", 300)
    first, second = _new_event(1), _new_event(2)
    outcome: list[Any] = []

    def add_second() -> None:
        try:
            outcome.append(store.events.add(second, token))
        except ReplayedToken as exc:
            outcome.append(exc)

    with engine.connect() as holder:
        holder.begin()
        added = store.events._write(holder, _Insert(first, token, None, _row(first)))
        pid = holder.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        thread = threading.Thread(target=add_second)
        thread.start()
        waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> %(pid)s"
        deadline = time.monotonic() + 10
        with engine.connect() as watch:
            while not watch.exec_driver_sql(waiting, {"pid": pid}).scalar() and time.monotonic() < deadline:
                time.sleep(0.01)
        assert thread.is_alive()  # the second insert waits on the first transaction's token
        holder.commit()
    thread.join(10)
    assert added.created
    assert len(outcome) == 1 and isinstance(outcome[0], ReplayedToken)
    assert store.queries.event_ids(Status.QUEUED) == [first.id]
    engine.dispose()


def test_sqlite_delivery_writes_of_several_threads_commit_together(sqlite_url: str) -> None:
    """Four delivery threads end their claims while the write lock is taken: one transaction
    (one commit) records all four, each answered its own way, a lost lease included."""
    engine = make_engine(sqlite_url, 4)
    upgrade(engine)
    store = Store(engine)
    for n in range(1, 6):
        store.events.add(_new_event(n))
    now = datetime.now(UTC)
    claims = store.queue.claim("test-worker", 4, 60, now)
    claims[3].owner = "someone-else"  # its lease is not this worker's: only the attempt is recorded
    commits: list[int] = []
    sqlalchemy.event.listen(engine, "commit", lambda conn: commits.append(1))

    def finish(i: int) -> Any:
        delivered = Outcome(AttemptOutcome.DELIVERED, 5, http_status=201, ticket_id=100 + i)
        return store.queue.record(claims[i], delivered, Decision(Status.DELIVERED), now, 60)

    assert store.queue._group is not None
    outcomes = _as_one_group(store.queue._group, [lambda i=i: finish(i) for i in range(4)])

    assert len(commits) == 1
    assert [finished for finished, _ in outcomes] == [True, True, True, False]
    taken = [t.event_id for _, t in outcomes if t is not None]
    assert sorted(taken) == ["evt_group_0005"]  # the one event left was leased once, not twice
    assert [store.queries.get_event(c.event_id)["ticket_id"] for c in claims] == [100, 101, 102, None]  # type: ignore[index]
    assert store.queries.count_by_status() == {"delivered": 3, "delivering": 2}
    engine.dispose()
