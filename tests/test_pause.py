"""SPP refuses the API token: delivery pauses for every worker, one probe at a time, no event lost.

docs/behaviour.md section 5. Each test runs on SQLite and on PostgreSQL; "another process" is a
second app on the same database (its own engine and, on SQLite, its own write-lock file handle).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import text, update
from sqlalchemy.exc import SQLAlchemyError

from bridge.db import delivery_state, events
from bridge.retry import Decision
from bridge.runtime import Runtime, get_runtime
from bridge.spp_client import Outcome
from bridge.status import AttemptOutcome, PauseReason, Status
from tests.conftest import deliver_all, make_due
from tests.helpers import wait_for
from tests.http.test_admin_page import page, signed_in
from tests.http.test_metrics import scrape, value
from tests.test_worker import event, post

BODY = {"email": "alice@example.com", "subject": "Printer on fire", "message": "Please help"}
WAITING = {Status.QUEUED, Status.RETRYING}


def post_n(app: Flask, n: int) -> list[str]:
    return [post(app, {**BODY, "message": f"request {i}"}) for i in range(n)]


def probe_due_now(runtime: Runtime) -> None:
    """Bring the next probe forward instead of waiting for BRIDGE_PROBE_SECONDS."""
    with runtime.store.engine.begin() as conn:
        conn.execute(update(delivery_state).values(next_probe_at=datetime.now(UTC)))


def statuses(runtime: Runtime, ids: list[str]) -> list[str]:
    return [event(runtime, i)["status"] for i in ids]


def tickets_by_event(sandbox) -> list[str]:
    return sorted(t["request"]["metadata"]["bridge_event_id"] for t in sandbox.sandbox.tickets)


@pytest.mark.parametrize("refusal", [401, 403])
def test_a_refused_token_pauses_every_worker_until_a_probe_succeeds(make_app, sandbox, refusal: int) -> None:
    settings = {"BRIDGE_DELIVERY_CONCURRENCY": "1", "BRIDGE_MAX_ATTEMPTS": "2", "BRIDGE_PROBE_SECONDS": "60"}
    runtime = get_runtime(app := make_app(**settings))
    other = get_runtime(make_app(**settings))  # another process on the same database
    sandbox.sandbox.script(refusal, refusal, refusal)
    ids = post_n(app, 3)
    first_due = event(runtime, ids[0])["next_attempt_at"]

    deliver_all(runtime)  # the first refusal pauses delivery
    assert sandbox.sandbox.requests_seen == 1
    pause = runtime.store.queue.pause()
    assert pause is not None and (pause.reason, pause.http_status) == (PauseReason.TOKEN_REFUSED, refusal)
    deliver_all(other)
    deliver_all(runtime)
    assert sandbox.sandbox.requests_seen == 1  # neither worker sends: the next probe is 60 s away

    for probes in (1, 2):  # two probes, both refused: each is the oldest event's real attempt
        probe_due_now(runtime)
        deliver_all(other)
        assert sandbox.sandbox.requests_seen == 1 + probes
        deliver_all(runtime)
        assert sandbox.sandbox.requests_seen == 1 + probes  # one probe per turn, whichever worker takes it

    assert set(statuses(runtime, ids)) <= WAITING  # BRIDGE_MAX_ATTEMPTS is 2: no refusal used one up
    oldest = event(runtime, ids[0])
    assert oldest["attempts"] == 3 and oldest["next_attempt_at"] == first_due  # its place in the queue kept
    assert [(a["outcome"], a["http_status"]) for a in oldest["attempt_log"]] == [("retrying", refusal)] * 3
    assert "SPP refuses the API token" in oldest["last_error"]
    assert [event(runtime, i)["attempts"] for i in ids[1:]] == [0, 0]

    probe_due_now(runtime)
    deliver_all(other)  # SPP takes the token again: the probe delivers, the pause ends, the rest follow
    assert runtime.store.queue.pause() is None
    assert statuses(runtime, ids) == ["delivered"] * 3
    assert tickets_by_event(sandbox) == sorted(ids)  # each exactly once
    assert sandbox.sandbox.requests_seen == 6
    assert [a["http_status"] for a in event(runtime, ids[0])["attempt_log"]] == [refusal] * 3 + [201, 201]


def test_running_workers_send_only_one_probe_per_interval(make_app, sandbox) -> None:
    settings = {"BRIDGE_DELIVERY_CONCURRENCY": "1", "BRIDGE_MAX_ATTEMPTS": "2", "BRIDGE_PROBE_SECONDS": "1.5"}
    runtime = get_runtime(app := make_app(**settings))
    other = get_runtime(make_app(**settings))
    sandbox.sandbox.script(401, 401, 401)
    ids = post_n(app, 4)
    workers = [runtime.worker(poll_seconds=0.02), other.worker(poll_seconds=0.02)]
    threads = [threading.Thread(target=worker.run, daemon=True) for worker in workers]
    threads[0].start()
    try:
        wait_for(lambda: sandbox.sandbox.requests_seen >= 1)
        wait_for(lambda: event(runtime, ids[0])["status"] != Status.DELIVERING)  # the refusal is recorded
        threads[1].start()  # the second worker starts during the pause
        for seen in (1, 2, 3):  # the refusal, then two refused probes 1.5 s apart
            wait_for(lambda seen=seen: sandbox.sandbox.requests_seen >= seen, timeout=10)
            time.sleep(0.75)  # half an interval: two polling workers, and not one request more
            assert sandbox.sandbox.requests_seen == seen
            assert set(statuses(runtime, ids)) <= WAITING | {Status.DELIVERING}
        wait_for(lambda: statuses(runtime, ids) == ["delivered"] * 4, timeout=15)
    finally:
        for worker in workers:
            worker.stop()
        for thread in threads:
            if thread.is_alive():
                thread.join(15)
    assert tickets_by_event(sandbox) == sorted(ids)
    assert sandbox.sandbox.requests_seen == 3 + 4
    assert runtime.store.queue.pause() is None


def test_the_pause_shows_in_metrics_and_on_the_admin_page_while_intake_and_readiness_go_on(make_app, sandbox) -> None:
    runtime = get_runtime(app := make_app(BRIDGE_PROBE_SECONDS="45"))
    client, admin = app.test_client(), signed_in(app)
    running = scrape(app)
    assert value(running, "bridge_delivery_paused") == 0
    assert "Delivery paused" not in page(admin, "/admin/events")
    sandbox.sandbox.script(401)
    post(app)
    deliver_all(runtime)

    samples = scrape(app)
    assert value(samples, "bridge_delivery_paused") == 1
    assert value(samples, "bridge_delivery_pause_info", reason="token_refused", http_status="401") == 1
    assert value(samples, "bridge_delivery_paused_seconds") >= 0
    html = page(admin, "/admin/events")
    assert "Delivery paused since" in html
    assert "SPP refuses the API token (HTTP 401)" in html
    assert "Fix <code>SPP_API_TOKEN</code>; delivery resumes by itself within 45 s." in html
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").status_code == 200
    during = post(app, {**BODY, "message": "sent during the pause"})  # the hook still answers 200
    assert event(runtime, during)["status"] == Status.QUEUED

    probe_due_now(runtime)
    deliver_all(runtime)
    resumed = scrape(app)
    assert value(resumed, "bridge_delivery_paused") == 0
    assert not [key for key in resumed if key[0] == "bridge_delivery_pause_info"]
    assert "Delivery paused" not in page(admin, "/admin/events")
    assert value(resumed, "bridge_events", status="delivered") == 2


def test_the_time_paused_does_not_use_up_the_72_hours(app: Flask, runtime: Runtime, sandbox) -> None:
    sandbox.sandbox.script(401, "503:600")
    event_id = post(app)
    five_minutes_left = datetime.now(UTC) - timedelta(hours=71, minutes=55)
    with runtime.store.engine.begin() as conn:
        conn.execute(update(events).where(events.c.id == event_id).values(retry_window_start=five_minutes_left))
    deliver_all(runtime)  # refused: paused
    with runtime.store.engine.begin() as conn:  # as if SPP had refused the token for two hours
        now = datetime.now(UTC)
        conn.execute(update(delivery_state).values(paused_since=now - timedelta(hours=2), next_probe_at=now))
    make_due(runtime, event_id)
    deliver_all(runtime)  # the probe meets a 503 asking for 600 s: not a refusal, so the pause ends
    got = event(runtime, event_id)
    assert got["status"] == Status.RETRYING, got["last_error"]  # 2 h 5 min left, not 5 min
    assert runtime.store.queue.pause() is None
    with runtime.store.engine.connect() as conn:
        start = conn.execute(events.select().where(events.c.id == event_id)).one().retry_window_start
    assert start >= five_minutes_left + timedelta(hours=2) - timedelta(minutes=1)


def test_a_delivery_that_ends_during_the_pause_leases_nothing_more(app: Flask, runtime: Runtime, sandbox) -> None:
    """A worker whose request left before the pause began records it, and takes no next event."""
    ids = post_n(app, 3)
    queue = runtime.store.queue
    [in_flight] = queue.claim("other-worker", 1, 60, datetime.now(UTC))
    sandbox.sandbox.script(401)
    deliver_all(runtime, concurrency=1)  # the next event meets the refusal: paused
    for event_id in ids:
        if event_id != in_flight.event_id:
            make_due(runtime, event_id)
    delivered = Outcome(AttemptOutcome.DELIVERED, 5, http_status=201, ticket_id=99)
    finished, taken = queue.record(in_flight, delivered, Decision(Status.DELIVERED), datetime.now(UTC), 60)
    assert finished and taken is None
    assert queue.claim("other-worker", 3, 60, datetime.now(UTC)) == []
    assert sandbox.sandbox.requests_seen == 1


def test_a_database_error_reading_the_pause_reaches_the_worker_as_one(runtime: Runtime) -> None:
    """With nothing to claim, the worker reads the pause row to see whether it is its turn to
    probe. The worker's loop waits out SQLAlchemy's errors; anything else ends the process, as
    ``StoreUnavailable`` (the HTTP layer's error) did here while PostgreSQL was stopped."""
    with runtime.store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE delivery_state RENAME TO delivery_state_away"))
    try:
        with pytest.raises(SQLAlchemyError):
            runtime.store.queue.claim_probe("a-worker", 30, datetime.now(UTC))
    finally:
        with runtime.store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE delivery_state_away RENAME TO delivery_state"))
