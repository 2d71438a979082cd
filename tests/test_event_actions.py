"""The store's "retry now" and "cancel" (bridge/store/actions.py) on SQLite and PostgreSQL, and
the race of many cancels against a worker delivering the same events (PostgreSQL)."""

from __future__ import annotations

import random
import signal
import subprocess
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from bridge.app import create_app
from bridge.db import attempts, events
from bridge.migrate import upgrade
from bridge.runtime import Runtime, get_runtime
from bridge.sandbox import Sandbox, SandboxServer
from bridge.status import Status
from bridge.store import NOTIFY_CHANNEL
from tests.conftest import DEFAULT_SOURCES, SPP_TOKEN, AppFactory, bridge_env
from tests.helpers import NO_DOTENV, flask_cmd, start_process, wait_for
from tests.test_processes import post

REASON = "cancelled by the operator"


def row(runtime: Runtime, event_id: str) -> Any:
    with runtime.store.engine.connect() as conn:
        return conn.execute(select(events).where(events.c.id == event_id)).one()


def set_columns(runtime: Runtime, event_id: str, **values: Any) -> None:
    with runtime.store.engine.begin() as conn:
        conn.execute(update(events).where(events.c.id == event_id).values(**values))


def test_retry_now_makes_a_retrying_event_due_and_leaves_its_budget(app: Flask, runtime: Runtime) -> None:
    event_id = post(app)
    now = datetime.now(UTC)
    set_columns(runtime, event_id, status=Status.RETRYING, next_attempt_at=now + timedelta(hours=1), attempts=3)
    before = row(runtime, event_id)
    assert runtime.store.actions.retry_now(event_id, now) == Status.RETRYING
    after = row(runtime, event_id)
    assert after.next_attempt_at == now
    assert after.status == Status.RETRYING
    columns = ("attempts", "attempts_at_window_start", "retry_window_start", "last_error")
    assert [getattr(after, c) for c in columns] == [getattr(before, c) for c in columns]


def test_retry_now_keeps_a_due_event_in_its_place(app: Flask, runtime: Runtime) -> None:
    event_id = post(app)
    due = row(runtime, event_id).next_attempt_at
    assert runtime.store.actions.retry_now(event_id, due + timedelta(minutes=5)) == Status.QUEUED
    assert row(runtime, event_id).next_attempt_at == due


@pytest.mark.parametrize("status", [Status.DELIVERING, Status.DELIVERED, Status.FAILED, Status.DISCARDED])
def test_only_waiting_events_are_retried_or_cancelled(app: Flask, runtime: Runtime, status: Status) -> None:
    event_id = post(app)
    set_columns(runtime, event_id, status=status, next_attempt_at=None, last_error="as it was")
    now = datetime.now(UTC)
    assert runtime.store.actions.retry_now(event_id, now) is None
    assert runtime.store.actions.cancel(event_id, now, REASON) is False
    got = row(runtime, event_id)
    assert (got.status, got.next_attempt_at, got.last_error) == (status, None, "as it was")


def test_a_leased_event_is_left_alone(app: Flask, runtime: Runtime) -> None:
    event_id = post(app)
    [claim] = runtime.store.queue.claim("worker-a", 1, 60, datetime.now(UTC))
    now = datetime.now(UTC)
    assert runtime.store.actions.cancel(event_id, now, REASON) is False
    assert runtime.store.actions.retry_now(event_id, now) is None
    # even a waiting status with an owner (no path leaves one, but a lease is a lease)
    set_columns(runtime, event_id, status=Status.RETRYING)
    assert runtime.store.actions.cancel(event_id, now, REASON) is False
    assert row(runtime, event_id).lease_owner == claim.owner


def test_unknown_events_change_nothing(app: Flask, runtime: Runtime) -> None:
    now = datetime.now(UTC)
    assert runtime.store.actions.retry_now("evt_nope", now) is None
    assert runtime.store.actions.cancel("evt_nope", now, REASON) is False


def test_cancel_fails_the_event_for_good(app: Flask, runtime: Runtime) -> None:
    event_id = post(app)
    now = datetime.now(UTC)
    assert runtime.store.actions.cancel(event_id, now, REASON) is True
    got = row(runtime, event_id)
    assert (got.status, got.last_error, got.next_attempt_at, got.updated_at) == (Status.FAILED, REASON, None, now)
    assert runtime.store.actions.cancel(event_id, now, REASON) is False
    assert runtime.store.queue.claim("worker-a", 10, 60, now + timedelta(days=1)) == []
    with pytest.raises(ValueError, match="cancelled"):
        runtime.store.actions.cancel(event_id, now, "stopped by the operator")


ON_POSTGRES = pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)


@ON_POSTGRES
def test_retry_now_notifies_every_process(make_app: AppFactory) -> None:
    import psycopg

    app = make_app()
    runtime: Runtime = app.extensions["bridge"]
    event_id = post(app)
    set_columns(runtime, event_id, status=Status.RETRYING, next_attempt_at=datetime.now(UTC) + timedelta(hours=1))
    url = runtime.store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        assert runtime.store.actions.cancel("evt_nope", datetime.now(UTC), REASON) is False
        assert runtime.store.actions.retry_now(event_id, datetime.now(UTC)) == Status.RETRYING
        heard = list(listener.notifies(timeout=2.0, stop_after=1))
    assert [n.channel for n in heard] == [NOTIFY_CHANNEL]


# --- the race ---------------------------------------------------------------------------------


@ON_POSTGRES
def test_cancels_racing_a_worker_never_lose_a_delivery_or_a_cancel(
    make_app: AppFactory, sandbox: SandboxServer
) -> None:
    """Four threads cancel (and "retry now") the same 60 events, again and again, while a worker
    with four delivery threads delivers them through a slow sandbox. Each event ends either
    delivered, every cancel refused, or failed "cancelled" by exactly one accepted cancel, with
    no request ever sent for it: never a ticket and a cancel both."""
    app = make_app(BRIDGE_DELIVERY_CONCURRENCY="4")
    runtime: Runtime = app.extensions["bridge"]
    ids = [post(app, n) for n in range(60)]
    accepted: dict[str, int] = dict.fromkeys(ids, 0)
    lock = threading.Lock()
    sandbox.sandbox.latency_ms = 15
    worker = runtime.worker(poll_seconds=0.01)
    delivering = threading.Thread(target=worker.run, daemon=True)

    def operator(seed: int) -> None:
        rng = random.Random(seed)
        order = ids[:]
        for _ in range(3):
            rng.shuffle(order)
            for event_id in order:
                now = datetime.now(UTC)
                if rng.random() < 0.2:
                    runtime.store.actions.retry_now(event_id, now)
                elif runtime.store.actions.cancel(event_id, now, REASON):
                    with lock:
                        accepted[event_id] += 1
                time.sleep(rng.uniform(0, 0.01))

    operators = [threading.Thread(target=operator, args=(seed,)) for seed in range(4)]
    try:
        delivering.start()
        time.sleep(0.05)
        for thread in operators:
            thread.start()
        for thread in operators:
            thread.join(60)
        wait_for(lambda: _settled(runtime, ids), timeout=30)
    finally:
        worker.stop()
        delivering.join(15)
        sandbox.sandbox.latency_ms = 0

    tickets_of: dict[str, int] = {}
    for ticket in sandbox.sandbox.tickets:
        event_id = ticket["request"]["metadata"]["bridge_event_id"]
        tickets_of[event_id] = tickets_of.get(event_id, 0) + 1
    with runtime.store.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(events).where(events.c.id.in_(ids)))}
        tried = set(conn.execute(select(attempts.c.event_id).where(attempts.c.event_id.in_(ids))).scalars())
    cancelled = [i for i in ids if rows[i].status == Status.FAILED]
    delivered = [i for i in ids if rows[i].status == Status.DELIVERED]
    assert sorted(cancelled + delivered) == sorted(ids)
    for event_id in cancelled:
        got = rows[event_id]
        assert accepted[event_id] == 1, event_id
        assert got.last_error == REASON and got.ticket_id is None
        assert event_id not in tickets_of and event_id not in tried  # nothing was ever sent
    for event_id in delivered:
        assert accepted[event_id] == 0, event_id
        assert tickets_of.get(event_id) == 1 and rows[event_id].ticket_id is not None
        assert rows[event_id].last_error is None
    assert cancelled and delivered, "the race was not run: widen the timing"


def _settled(runtime: Runtime, ids: list[str]) -> bool:
    with runtime.store.engine.connect() as conn:
        statuses = set(conn.execute(select(events.c.status).where(events.c.id.in_(ids))).scalars())
    return statuses <= {Status.DELIVERED, Status.FAILED}


@pytest.mark.slow
@pytest.mark.postgres
def test_retry_from_the_cli_wakes_a_worker_process_waiting_an_hour(pg_url: str, tmp_path: Path) -> None:
    """A ``worker`` process polling once a minute, an event SPP told to wait an hour: the CLI's
    "retry" in a process of its own gets it delivered within seconds, through NOTIFY alone."""
    server = SandboxServer(Sandbox(token=SPP_TOKEN)).start()
    sources = tmp_path / "sources.yml"
    sources.write_text(textwrap.dedent(DEFAULT_SOURCES))
    env = bridge_env(pg_url, server.url, sources, BRIDGE_POLL_SECONDS="60")
    app = create_app(env=env)
    runtime = get_runtime(app)
    upgrade(runtime.store.engine)
    log = tmp_path / "worker.log"
    server.sandbox.script("429:3600")
    worker = start_process(flask_cmd("worker"), env, log)
    try:
        wait_for(lambda: log.exists() and "started:" in log.read_text(), timeout=30)
        time.sleep(0.5)  # let the listener connect
        event_id = post(app)
        wait_for(lambda: row(runtime, event_id).status == Status.RETRYING, timeout=10)
        assert row(runtime, event_id).next_attempt_at > datetime.now(UTC) + timedelta(minutes=59)
        retried = subprocess.run(
            flask_cmd("retry", event_id), env=_process_env(env), capture_output=True, text=True, timeout=60
        )
        assert retried.returncode == 0, retried.stderr
        wait_for(lambda: row(runtime, event_id).status == Status.DELIVERED, timeout=10)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
        runtime.store.engine.dispose()
        server.stop()
    assert len(server.sandbox.tickets) == 1


def _process_env(env: dict[str, str]) -> dict[str, str]:
    import os

    return {"PATH": os.environ.get("PATH", ""), **NO_DOTENV, **env}
