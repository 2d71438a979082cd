"""``flask --app wsgi bridge retry|cancel EVENT_ID`` on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask

from bridge.runtime import Runtime
from bridge.sandbox import SandboxServer
from bridge.status import PauseReason
from bridge.store.pause import begin_pause
from tests.conftest import deliver_all
from tests.test_cli import bridge, post_event, status_of


def waiting_an_hour(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> str:
    event_id = post_event(app.test_client())
    sandbox.sandbox.script("429:3600")
    deliver_all(runtime)
    assert status_of(app.test_client(), event_id) == "retrying"
    return event_id


def test_retry_makes_an_event_due_now(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    event_id = waiting_an_hour(app, runtime, sandbox)
    result = bridge(app, "retry", event_id)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{event_id}: retrying, due now\n"
    assert result.stderr == ""
    deliver_all(runtime)
    assert status_of(app.test_client(), event_id) == "delivered"


def test_retry_while_paused_says_the_pause_holds(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    event_id = waiting_an_hour(app, runtime, sandbox)
    with runtime.store.engine.begin() as conn:
        begin_pause(conn, PauseReason.TOKEN_REFUSED, 401, datetime.now(UTC), 3600)
    result = bridge(app, "retry", event_id)
    assert result.exit_code == 0
    assert result.stderr == "delivery is paused (SPP refuses the API token): it goes out once the pause ends\n"
    due = runtime.store.queries.get_event(event_id)
    assert due is not None and due["next_attempt_at"] <= datetime.now(UTC) + timedelta(seconds=1)


def test_cancel_fails_an_event_and_replay_brings_it_back(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    event_id = waiting_an_hour(app, runtime, sandbox)
    result = bridge(app, "cancel", event_id)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{event_id}: failed (cancelled by the operator); replay brings it back\n"
    event = runtime.store.queries.get_event(event_id)
    assert event is not None and event["last_error"] == "cancelled by the operator"
    assert bridge(app, "replay", event_id).exit_code == 0
    deliver_all(runtime)
    assert status_of(app.test_client(), event_id) == "delivered"


def test_refusals_exit_1_with_one_line(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    event_id = post_event(app.test_client())
    deliver_all(runtime)
    for command in ("retry", "cancel"):
        done = bridge(app, command, event_id)
        assert done.exit_code == 1
        assert done.stdout == ""
        verb = "retried now" if command == "retry" else "cancelled"
        assert done.stderr == (
            f"error: event {event_id} cannot be {verb}: it is delivered; only queued or retrying events can\n"
        )
        unknown = bridge(app, command, "evt_nope")
        assert (unknown.exit_code, unknown.stderr) == (1, "error: no event 'evt_nope'\n")
    assert status_of(app.test_client(), event_id) == "delivered"
