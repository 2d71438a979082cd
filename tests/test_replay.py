"""POST /api/events/<id>/replay and bridge/replay.py, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from bridge.db import events
from bridge.message import Attachment, InboundMessage
from bridge.runtime import Runtime, get_runtime
from bridge.sandbox import SandboxServer
from bridge.status import Status
from bridge.store import Added, NewEvent
from tests.conftest import AppFactory, admin_headers, api_headers, deliver_all

NO_DEFAULT_USER = """
clients:
  alice@example.com: 12
client_lookup: false
sources:
  api:
    kind: json
    secret: api-secret-0123456789abcdef
"""
STRANGER_MAPPED = """
clients:
  alice@example.com: 12
  "@stranger.org": 77
sources:
  api:
    kind: json
    secret: api-secret-0123456789abcdef
"""
SOURCE_GONE = """
defaults:
  user_id: 1
sources:
  open:
    kind: json
"""


def post_event(client: FlaskClient, email: str = "alice@example.com", subject: str = "Hello") -> str:
    body = {"email": email, "subject": subject, "message": f"Body of {subject}"}
    response = client.post("/hooks/api", json=body, headers=api_headers())
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["event_id"])


def replay(client: FlaskClient, event_id: str, query: str = "") -> Any:
    return client.post(f"/api/events/{event_id}/replay{query}", headers=admin_headers())


def detail(client: FlaskClient, event_id: str) -> dict[str, Any]:
    response = client.get(f"/api/events/{event_id}", headers=admin_headers())
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def failed_event(client: FlaskClient, runtime: Runtime, sandbox: SandboxServer, subject: str = "Hello") -> str:
    event_id = post_event(client, subject=subject)
    sandbox.sandbox.script(422)
    deliver_all(runtime)
    assert detail(client, event_id)["status"] == "failed"
    return event_id


def set_status(runtime: Runtime, event_id: str, status: str) -> None:
    with runtime.store.engine.begin() as conn:
        conn.execute(update(events).where(events.c.id == event_id).values(status=status))


AUTO_REPLY = InboundMessage(
    dedupe_key="auto-reply-1",
    email="alice@example.com",
    subject="Out of office",
    body="I am away",
    attachments=[Attachment("cal.ics", "text/calendar", 120)],
    discard_reason="automatic reply (Auto-Submitted: auto-replied)",
)


def add_discarded(
    runtime: Runtime, event_id: str = "evt_00000000000000000000discarded", message: dict[str, Any] | None = None
) -> str:
    """A discarded event; ``message`` replaces its stored message as a row of an older version might hold it."""
    new = NewEvent(
        id=event_id,
        source="api",
        status=Status.DISCARDED,
        message=AUTO_REPLY,
        ticket_request=None,
        last_error="discarded: automatic reply",
        received_at=datetime.now(UTC),
        request_id="req-discarded",
        raw_request={"method": "POST", "path": "/hooks/api", "query": {}, "headers": {}},
        raw_body=b"{}",
    )
    assert runtime.store.events.add(new) == Added(event_id, Status.DISCARDED, True)
    if message is not None:
        with runtime.store.engine.begin() as conn:
            conn.execute(update(events).where(events.c.id == event_id).values(message=message))
    return event_id


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    return body


# --- replayable states -----------------------------------------------------------------


def test_replay_a_failed_event(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    client = app.test_client()
    event_id = failed_event(client, runtime, sandbox)
    assert sandbox.sandbox.tickets == []

    response = replay(client, event_id)
    assert response.status_code == 200
    assert response.get_json() == {"event_id": event_id, "status": "queued"}
    queued = detail(client, event_id)
    assert (queued["status"], queued["last_error"], queued["attempts"]) == ("queued", None, 1)
    assert queued["next_attempt_at"] is not None

    deliver_all(runtime)
    [ticket] = sandbox.sandbox.tickets
    done = detail(client, event_id)
    assert done["status"] == "delivered"
    assert done["ticket_id"] == ticket["id"]
    assert done["attempts"] == 3  # counting goes on across replays
    assert done["ticket_request"] == ticket["request"]
    assert ticket["request"]["metadata"] == {"bridge_event_id": event_id}
    assert [(a["number"], a["step"], a["outcome"], a["http_status"]) for a in done["attempt_log"]] == [
        (1, "ticket", "failed", 422),
        (2, "ticket", "delivered", 201),
        (3, "message", "delivered", 201),
    ]


def test_replay_a_discarded_event(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    client = app.test_client()
    event_id = add_discarded(runtime)
    response = replay(client, event_id)
    assert (response.status_code, response.get_json()) == (200, {"event_id": event_id, "status": "queued"})
    deliver_all(runtime)
    [ticket] = sandbox.sandbox.tickets
    done = detail(client, event_id)
    assert (done["status"], done["ticket_id"], done["attempts"]) == ("delivered", ticket["id"], 2)
    assert ticket["request"] == {
        "user_id": 12,
        "subject": "Out of office",
        "note": f"From <alice@example.com> via api (bridge event {event_id})",
        "tags": ["api"],
        "metadata": {"bridge_event_id": event_id},
    }
    [message] = sandbox.sandbox.messages_of(ticket["id"])
    assert (message.user_id, message.message) == (12, "I am away\n\nFiles:\n- cal.ics (120 B, not attached)")


def test_stored_messages_come_back_whole() -> None:
    assert InboundMessage.from_dict(AUTO_REPLY.to_dict()) == AUTO_REPLY
    assert InboundMessage.from_dict({**AUTO_REPLY.to_dict(), "field_of_an_older_version": 1}) == AUTO_REPLY


@pytest.mark.parametrize("message", [{}, {"subject": "no dedupe key"}])
def test_an_event_without_a_message_is_422(app: Flask, runtime: Runtime, message: dict[str, Any]) -> None:
    client = app.test_client()
    event_id = add_discarded(runtime, message=message)
    body = assert_error(replay(client, event_id), 422, "no_message")
    assert body["message"] == "still cannot map the event: the event holds no normalized message to map"
    assert detail(client, event_id)["status"] == "failed"


def test_attempts_keep_counting_across_replays(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    client = app.test_client()
    event_id = failed_event(client, runtime, sandbox)
    for _ in range(2):
        sandbox.sandbox.script(409)
        assert replay(client, event_id).status_code == 200
        deliver_all(runtime)
        assert detail(client, event_id)["status"] == "failed"
    assert replay(client, event_id).status_code == 200
    deliver_all(runtime)
    done = detail(client, event_id)
    assert (done["status"], done["attempts"]) == ("delivered", 5)
    assert [a["number"] for a in done["attempt_log"]] == [1, 2, 3, 4, 5]
    assert [a["http_status"] for a in done["attempt_log"]] == [422, 409, 409, 201, 201]
    assert len(sandbox.sandbox.tickets) == 1


def test_replay_maps_again_with_the_current_configuration(make_app: AppFactory, sandbox: SandboxServer) -> None:
    first = make_app()
    client = first.test_client()
    event_id = failed_event(client, get_runtime(first), sandbox)
    assert detail(client, event_id)["ticket_request"]["tags"] == ["api"]

    changed = make_app(
        """
        defaults: {user_id: 1}
        sources:
          api:
            kind: json
            secret: api-secret-0123456789abcdef
            ticket: {tags: [replayed], user_id: 5}
        """
    )
    client = changed.test_client()
    assert replay(client, event_id).status_code == 200
    assert detail(client, event_id)["ticket_request"] == {
        "user_id": 5,
        "subject": "Hello",
        "note": f"From <alice@example.com> via api (bridge event {event_id})",
        "tags": ["replayed"],
        "metadata": {"bridge_event_id": event_id},
    }
    deliver_all(get_runtime(changed))
    [ticket] = sandbox.sandbox.tickets
    assert ticket["request"]["user_id"] == 5


# --- delivered: only with force ----------------------------------------------------------


def test_delivered_is_409_without_force_and_a_new_ticket_with_it(
    app: Flask, runtime: Runtime, sandbox: SandboxServer
) -> None:
    client = app.test_client()
    event_id = post_event(client)
    deliver_all(runtime)
    [old] = sandbox.sandbox.tickets

    for query in ("", "?force=false", "?force=0"):
        body = assert_error(replay(client, event_id, query), 409, "not_replayable")
        assert body["message"] == (
            f"event {event_id} is delivered; only failed or discarded events are replayed"
            " (use force=true to deliver it again)"
        )
    assert detail(client, event_id)["status"] == "delivered"

    response = replay(client, event_id, "?force=true")
    assert (response.status_code, response.get_json()) == (200, {"event_id": event_id, "status": "queued"})
    queued = detail(client, event_id)
    assert queued["status"] == "queued"
    deliver_all(runtime)

    old_again, new = sandbox.sandbox.tickets
    assert old_again == old and new["id"] != old["id"]
    assert new["request"]["metadata"]["bridge_event_id"] == event_id
    done = detail(client, event_id)
    assert (done["status"], done["ticket_id"], done["attempts"]) == ("delivered", new["id"], 4)
    assert done["spp_request_id"] == new["api_identifier"]
    assert [(a["number"], a["step"], a["ticket_id"]) for a in done["attempt_log"]] == [
        (1, "ticket", old["id"]),
        (2, "message", None),
        (3, "ticket", new["id"]),
        (4, "message", None),
    ]
    assert [len(sandbox.sandbox.messages_of(t["id"])) for t in (old, new)] == [1, 1]
    assert done["spp_message_id"] == sandbox.sandbox.messages_of(new["id"])[0].id


def test_force_also_replays_failed_events(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    client = app.test_client()
    event_id = failed_event(client, runtime, sandbox)
    assert replay(client, event_id, "?force=true").status_code == 200


@pytest.mark.parametrize("status", ["queued", "delivering", "retrying"])
@pytest.mark.parametrize("query", ["", "?force=true"])
def test_other_states_are_409(app: Flask, runtime: Runtime, status: str, query: str) -> None:
    client = app.test_client()
    event_id = post_event(client)
    set_status(runtime, event_id, status)
    body = assert_error(replay(client, event_id, query), 409, "not_replayable")
    assert body["message"] == f"event {event_id} is {status}; only failed or discarded events are replayed"
    assert detail(client, event_id)["status"] == status


def test_a_second_replay_of_the_same_event_is_409(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    client = app.test_client()
    event_id = failed_event(client, runtime, sandbox)
    assert replay(client, event_id).status_code == 200
    assert_error(replay(client, event_id), 409, "not_replayable")
    deliver_all(runtime)
    assert len(sandbox.sandbox.tickets) == 1


@pytest.mark.parametrize("event_id", ["evt_nope", "evt%00", "x" * 41])
def test_unknown_event_is_404(app: Flask, event_id: str) -> None:
    body = assert_error(replay(app.test_client(), event_id), 404, "unknown_event")
    assert body["message"].startswith("no event ")


@pytest.mark.parametrize("query", ["?force=maybe", "?force=", "?force=2", "?nosuch=1"])
def test_bad_replay_query_is_400(app: Flask, runtime: Runtime, sandbox: SandboxServer, query: str) -> None:
    client = app.test_client()
    event_id = failed_event(client, runtime, sandbox)
    body = assert_error(replay(client, event_id, query), 400, "bad_query")
    assert body["message"].startswith("invalid query: ")
    assert detail(client, event_id)["status"] == "failed"


# --- mapping that still fails ----------------------------------------------------------


def test_unresolved_user_fixed_by_configuration(make_app: AppFactory, sandbox: SandboxServer) -> None:
    before = make_app(NO_DEFAULT_USER)
    client = before.test_client()
    event_id = post_event(client, email="Carol@Stranger.org")
    stored = detail(client, event_id)
    assert stored["status"] == "failed"
    assert stored["last_error"] == (
        "unresolved_user: no client matches carol@stranger.org and the sources file sets no defaults.user_id"
    )
    assert (stored["attempts"], stored["ticket_request"], stored["attempt_log"]) == (0, None, [])

    body = assert_error(replay(client, event_id), 422, "unresolved_user")
    assert body["message"] == (
        "still cannot map the event: no client matches carol@stranger.org and the sources file sets no defaults.user_id"
    )
    still = detail(client, event_id)
    assert (still["status"], still["last_error"], still["attempts"]) == ("failed", stored["last_error"], 0)
    assert still["next_attempt_at"] is None

    after = make_app(STRANGER_MAPPED)  # same database, fixed configuration
    client = after.test_client()
    response = replay(client, event_id)
    assert (response.status_code, response.get_json()) == (200, {"event_id": event_id, "status": "queued"})
    deliver_all(get_runtime(after))
    [ticket] = sandbox.sandbox.tickets
    assert ticket["request"]["user_id"] == 77
    done = detail(client, event_id)
    assert (done["status"], done["ticket_id"], done["attempts"], done["last_error"]) == (
        "delivered",
        ticket["id"],
        2,
        None,
    )


def test_source_removed_from_configuration_is_422(make_app: AppFactory, sandbox: SandboxServer) -> None:
    first = make_app()
    event_id = failed_event(first.test_client(), get_runtime(first), sandbox)
    client = make_app(SOURCE_GONE).test_client()
    body = assert_error(replay(client, event_id), 422, "unknown_source")
    assert body["message"] == "still cannot map the event: source 'api' is no longer in the sources file"
    still = detail(client, event_id)
    assert still["status"] == "failed"
    assert still["last_error"] == "unknown_source: source 'api' is no longer in the sources file"


def test_forced_replay_that_cannot_map_leaves_a_delivered_event_delivered(
    make_app: AppFactory, sandbox: SandboxServer
) -> None:
    first = make_app()
    client = first.test_client()
    event_id = post_event(client)
    deliver_all(get_runtime(first))
    [ticket] = sandbox.sandbox.tickets

    client = make_app(SOURCE_GONE).test_client()
    assert_error(replay(client, event_id, "?force=true"), 422, "unknown_source")
    still = detail(client, event_id)
    assert (still["status"], still["ticket_id"], still["last_error"]) == ("delivered", ticket["id"], None)


def test_replay_wakes_the_worker(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    client = app.test_client()
    event_id = failed_event(client, runtime, sandbox)
    runtime.wake.clear()
    assert replay(client, event_id).status_code == 200
    assert runtime.wake.is_set()  # the embedded worker starts at once


def test_a_replay_gets_a_fresh_retry_budget(make_app: AppFactory, sandbox: SandboxServer) -> None:
    app = make_app(BRIDGE_MAX_ATTEMPTS="2")
    runtime = get_runtime(app)
    client = app.test_client()
    event_id = post_event(client)
    sandbox.sandbox.script(503, 503)
    for _ in range(40):
        deliver_all(runtime)
        if detail(client, event_id)["status"] == "failed":
            break
        time.sleep(0.05)
    assert detail(client, event_id)["last_error"] == "gave up after 2 attempts; last: ticket: SPP answered 503"

    assert replay(client, event_id).status_code == 200
    sandbox.sandbox.script(503)  # SPP still hiccups once
    deliver_all(runtime)
    after = detail(client, event_id)
    assert after["attempts"] == 3
    assert after["status"] in ("retrying", "delivered"), after["last_error"]
