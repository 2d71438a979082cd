"""Delivery as a conversation (docs/conversations.md): the client found, created or mapped, the
ticket, then the sender's words as its first message, each step recorded on its own.

Everything runs against the sandbox on a real port and the real database (SQLite and PostgreSQL).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import func, select, update

from bridge.db import clients
from bridge.runtime import Runtime, get_runtime
from tests.conftest import SLOW_RETRIES, AppFactory, admin_headers, deliver_all, make_due

SECRET = "api-secret-0123456789abcdef"
SOURCES = f"""
defaults: {{user_id: 1}}
clients:
  mapped@example.com: 12
sources:
  api: {{kind: json, secret: {SECRET}}}
  create: {{kind: json, secret: {SECRET}, create_clients: true}}
  nolookup: {{kind: json, secret: {SECRET}, client_lookup: false}}
  v1: {{kind: json, secret: {SECRET}, message: false}}
  templated:
    kind: json
    secret: {SECRET}
    ticket:
      message: "{{{{ body }}}} (order {{{{ fields.order }}}})"
"""
# a retry is due only when a test makes it due (deliver_until_settled), so the state between stays still
NO_DEFAULT = f"""
sources:
  api: {{kind: json, secret: {SECRET}}}
"""


def post(app: Flask, source: str = "api", **body: Any) -> str:
    payload = {"email": "kim@example.com", "name": "Kim Known", "subject": "Printer", "message": "It is on fire"}
    response = app.test_client().post(f"/hooks/{source}", json={**payload, **body}, headers={"X-Bridge-Token": SECRET})
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["event_id"])


def detail(app: Flask, event_id: str) -> dict[str, Any]:
    response = app.test_client().get(f"/api/events/{event_id}", headers=admin_headers())
    assert response.status_code == 200
    return dict(response.get_json())


def steps(event: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["step"], a["outcome"]) for a in event["attempt_log"]]


def deliver_until_settled(runtime: Runtime, event_id: str, rounds: int = 10) -> None:
    """Deliver, making each retry due at once, until the event is delivered or failed."""
    for _ in range(rounds):
        deliver_all(runtime)
        status = runtime.store.queries.get_event(event_id)["status"]  # type: ignore[index]
        if status in ("delivered", "failed"):
            return
        make_due(runtime, event_id)
    raise AssertionError(f"{event_id} still {status}")


# --- 7.1 who the client is -------------------------------------------------------------


def test_a_sender_spp_knows_is_looked_up_once_then_remembered(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES)
    runtime = get_runtime(app)
    known = sandbox.sandbox.seed_client(email="Kim@Example.com", name_f="Kim", name_l="Known")
    first = post(app)
    deliver_all(runtime)
    event = detail(app, first)
    assert (event["status"], event["client_id"], event["client_how"]) == ("delivered", known["id"], "found")
    assert steps(event) == [("client", "delivered"), ("ticket", "delivered"), ("message", "delivered")]
    assert event["attempt_log"][0]["client_id"] == known["id"]
    [ticket] = sandbox.sandbox.tickets
    assert ticket["request"]["user_id"] == known["id"] == event["ticket_request"]["user_id"]
    [message] = sandbox.sandbox.messages_of(ticket["id"])
    assert (message.user_id, message.message, message.staff_only) == (known["id"], "It is on fire", False)
    assert ticket["request"]["note"] == f"From Kim Known <kim@example.com> via api (bridge event {first})"

    second = post(app, message="Still on fire")  # the same address in another case: no look-up again
    deliver_all(runtime)
    event = detail(app, second)
    assert (event["client_id"], event["client_how"]) == (known["id"], "found")
    assert steps(event) == [("ticket", "delivered"), ("message", "delivered")]


def test_an_unknown_sender_gets_the_default_user_and_not_found_expires(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES)
    runtime = get_runtime(app)
    first = post(app)
    deliver_all(runtime)
    event = detail(app, first)
    assert (event["status"], event["client_id"], event["client_how"]) == ("delivered", 1, "default")
    assert steps(event)[0] == ("client", "delivered")  # SPP answered: no such client
    assert sandbox.sandbox.clients == []  # nothing created without create_clients

    second = post(app, message="again")
    deliver_all(runtime)
    assert steps(detail(app, second))[0] == ("ticket", "delivered")  # "not found" remembered

    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10, seconds=1)
    with runtime.store.engine.begin() as conn:
        conn.execute(update(clients).values(checked_at=ten_minutes_ago))
    known = sandbox.sandbox.seed_client(email="kim@example.com", name_f="Kim")  # added in SPP since
    third = post(app, message="once more")
    deliver_all(runtime)
    event = detail(app, third)
    assert steps(event)[0] == ("client", "delivered")
    assert (event["client_id"], event["client_how"]) == (known["id"], "found")


def test_create_clients_makes_the_client_with_its_name(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES)
    event_id = post(app, "create", email="nora.new@example.org", name="Nora van der New")
    deliver_all(get_runtime(app))
    event = detail(app, event_id)
    [created] = sandbox.sandbox.clients
    assert (created["email"], created["name_f"], created["name_l"]) == ("nora.new@example.org", "Nora", "van der New")
    assert (event["status"], event["client_id"], event["client_how"]) == ("delivered", created["id"], "created")
    assert steps(event) == [("client", "delivered")] * 2 + [("ticket", "delivered"), ("message", "delivered")]
    [message] = sandbox.sandbox.messages_of(event["ticket_id"])
    assert message.user_id == created["id"]

    nameless = post(app, "create", email="x.y@example.net", name="")
    deliver_all(get_runtime(app))
    made = sandbox.sandbox.client(detail(app, nameless)["client_id"])
    assert made is not None and (made["name_f"], made.get("name_l")) == ("x.y", None)  # the local part


def test_ten_events_of_a_new_sender_with_three_workers_create_one_client(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES, BRIDGE_DELIVERY_CONCURRENCY="4")
    runtime = get_runtime(app)
    sandbox.sandbox.latency_ms = 30  # the look-ups overlap
    try:
        ids = [post(app, "create", email="Burst@Example.org", message=f"message {n}") for n in range(10)]
        workers = [runtime.worker(poll_seconds=0.02) for _ in range(3)]
        threads = [threading.Thread(target=w.run_until_idle, args=(30.0,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(40)
        for _ in range(20):  # events that waited for another worker's creation: due again in 2 s, now
            waiting = [i for i in ids if detail(app, i)["status"] != "delivered"]
            if not waiting:
                break
            for event_id in waiting:
                make_due(runtime, event_id)
            deliver_all(runtime)
    finally:
        sandbox.sandbox.latency_ms = 0
    assert [detail(app, i)["status"] for i in ids] == ["delivered"] * 10
    [created] = sandbox.sandbox.clients
    assert {detail(app, i)["client_id"] for i in ids} == {created["id"]}
    assert len(sandbox.sandbox.tickets) == 10
    assert all(t["request"]["user_id"] == created["id"] for t in sandbox.sandbox.tickets)
    with runtime.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(clients)).scalar_one() == 1


def test_client_lookup_false_never_asks_spp(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES)
    sandbox.sandbox.seed_client(email="kim@example.com")
    event_id = post(app, "nolookup")
    deliver_all(get_runtime(app))
    event = detail(app, event_id)
    assert (event["client_id"], event["client_how"]) == (1, "default")
    assert steps(event) == [("ticket", "delivered"), ("message", "delivered")]


def test_the_sources_file_wins_over_spp(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES)
    sandbox.sandbox.seed_client(email="mapped@example.com")
    event_id = post(app, email="Mapped@Example.com")
    deliver_all(get_runtime(app))
    event = detail(app, event_id)
    assert (event["client_id"], event["client_how"]) == (12, "mapped")
    assert steps(event) == [("ticket", "delivered"), ("message", "delivered")]


def test_no_client_anywhere_fails_at_the_client_step_and_replays_once_spp_has_it(make_app: AppFactory, sandbox) -> None:
    app = make_app(NO_DEFAULT)
    runtime = get_runtime(app)
    event_id = post(app)
    deliver_all(runtime)
    event = detail(app, event_id)
    assert event["status"] == "failed"
    assert event["last_error"] == (
        "client: unresolved_user: no client in SPP or the sources file matches kim@example.com"
        " and the sources file sets no defaults.user_id"
    )
    assert (event["attempts"], steps(event)) == (1, [("client", "delivered")])
    assert sandbox.sandbox.tickets == []

    known = sandbox.sandbox.seed_client(email="kim@example.com")
    with runtime.store.engine.begin() as conn:  # the remembered "not found" is past its ten minutes
        conn.execute(update(clients).values(checked_at=datetime.now(UTC) - timedelta(hours=1)))
    assert app.test_client().post(f"/api/events/{event_id}/replay", headers=admin_headers()).status_code == 200
    deliver_all(runtime)
    event = detail(app, event_id)
    assert (event["status"], event["client_id"], event["attempts"]) == ("delivered", known["id"], 4)


def test_a_failed_look_up_is_retried_like_a_ticket(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES, **SLOW_RETRIES)
    runtime = get_runtime(app)
    sandbox.sandbox.script(503, endpoint="clients")
    event_id = post(app)
    deliver_all(runtime)
    event = detail(app, event_id)
    assert (event["status"], event["last_error"], event["ticket_id"]) == ("retrying", "client: SPP answered 503", None)
    deliver_until_settled(runtime, event_id)
    event = detail(app, event_id)
    assert event["status"] == "delivered"
    assert steps(event) == [
        ("client", "retrying"),
        ("client", "delivered"),
        ("ticket", "delivered"),
        ("message", "delivered"),
    ]


def test_a_refused_creation_looks_the_client_up_again(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES, **SLOW_RETRIES)
    runtime = get_runtime(app)
    sandbox.sandbox.script(422, endpoint="create_client")  # e.g. made in SPP between look-up and creation
    event_id = post(app, "create")
    deliver_all(runtime)
    event = detail(app, event_id)
    assert event["status"] == "retrying" and "looking it up again" in event["last_error"]
    known = sandbox.sandbox.seed_client(email="kim@example.com")
    deliver_until_settled(runtime, event_id)
    event = detail(app, event_id)
    assert (event["status"], event["client_id"], event["client_how"]) == ("delivered", known["id"], "found")
    assert len(sandbox.sandbox.clients) == 1  # the one SPP had; the refused creation made none


# --- 7.2 the first message ---------------------------------------------------------------


def test_message_503_then_201_makes_one_ticket_and_one_message(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES, **SLOW_RETRIES)
    runtime = get_runtime(app)
    sandbox.sandbox.script(503, endpoint="messages")
    event_id = post(app, email="mapped@example.com")
    deliver_all(runtime)
    between = detail(app, event_id)
    [ticket] = sandbox.sandbox.tickets
    assert (between["status"], between["ticket_id"], between["spp_message_id"]) == ("retrying", ticket["id"], None)
    assert between["last_error"] == "message: SPP answered 503"
    deliver_until_settled(runtime, event_id)
    done = detail(app, event_id)
    [message] = sandbox.sandbox.messages_of(ticket["id"])
    assert len(sandbox.sandbox.tickets) == 1
    assert (done["status"], done["ticket_id"], done["spp_message_id"]) == ("delivered", ticket["id"], message.id)
    assert steps(done) == [("ticket", "delivered"), ("message", "retrying"), ("message", "delivered")]
    assert done["spp_request_id"] == ticket["api_identifier"]  # the ticket's request, not the message's


def test_message_422_fails_with_the_ticket_and_a_replay_posts_only_the_message(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES)
    runtime = get_runtime(app)
    sandbox.sandbox.script(422, endpoint="messages")
    event_id = post(app, email="mapped@example.com")
    deliver_all(runtime)
    failed = detail(app, event_id)
    [ticket] = sandbox.sandbox.tickets
    assert (failed["status"], failed["ticket_id"]) == ("failed", ticket["id"])
    assert failed["last_error"].startswith("message: SPP rejected the message: HTTP 422")

    assert app.test_client().post(f"/api/events/{event_id}/replay", headers=admin_headers()).status_code == 200
    deliver_all(runtime)
    done = detail(app, event_id)
    assert len(sandbox.sandbox.tickets) == 1
    [message] = sandbox.sandbox.messages_of(ticket["id"])
    assert (done["status"], done["ticket_id"], done["spp_message_id"]) == ("delivered", ticket["id"], message.id)
    assert steps(done) == [("ticket", "delivered"), ("message", "failed"), ("message", "delivered")]


def test_message_false_keeps_the_body_in_the_note_and_posts_nothing(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES)
    event_id = post(app, "v1", email="mapped@example.com")
    deliver_all(get_runtime(app))
    event = detail(app, event_id)
    [ticket] = sandbox.sandbox.tickets
    assert ticket["request"]["note"] == "From: Kim Known <mapped@example.com>\n\nIt is on fire"
    assert sandbox.sandbox.messages_of(ticket["id"]) == []
    assert (event["status"], event["spp_message_id"], steps(event)) == ("delivered", None, [("ticket", "delivered")])
    assert event["plan"] == {}


def test_ticket_message_is_a_template(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES)
    post(app, "templated", email="mapped@example.com", order="A-7")
    deliver_all(get_runtime(app))
    [ticket] = sandbox.sandbox.tickets
    [message] = sandbox.sandbox.messages_of(ticket["id"])
    assert message.message == "It is on fire (order A-7)"


def test_a_replay_maps_a_ticketless_event_with_the_current_clients(make_app: AppFactory, sandbox) -> None:
    first = make_app(SOURCES)
    sandbox.sandbox.script(422)
    event_id = post(first, email="mapped@example.com")
    deliver_all(get_runtime(first))
    assert detail(first, event_id)["status"] == "failed"

    moved = make_app(SOURCES.replace("mapped@example.com: 12", "mapped@example.com: 13"))
    assert moved.test_client().post(f"/api/events/{event_id}/replay", headers=admin_headers()).status_code == 200
    deliver_all(get_runtime(moved))
    event = detail(moved, event_id)
    assert (event["status"], event["client_id"]) == ("delivered", 13)
    [ticket] = sandbox.sandbox.tickets
    assert ticket["request"]["user_id"] == 13


def test_a_lost_lease_between_steps_never_makes_a_second_ticket(make_app: AppFactory, sandbox) -> None:
    """A worker that dies after the ticket was created: the next one posts only the message."""
    app = make_app(SOURCES)
    runtime = get_runtime(app)
    sandbox.sandbox.script("drop:0", endpoint="messages")  # the first message request never arrives
    event_id = post(app, email="mapped@example.com")
    deliver_all(runtime)
    between = detail(app, event_id)
    assert between["ticket_id"] is not None and between["status"] == "retrying"
    make_due(runtime, event_id)
    [claim] = runtime.store.queue.claim("dead-worker", 1, 0.01, datetime.now(UTC))  # holds it, then dies
    assert (claim.ticket_id, claim.attempt) == (between["ticket_id"], 3)
    time.sleep(0.05)  # past its lease
    deliver_all(runtime)
    done = detail(app, event_id)
    assert done["status"] == "delivered"
    assert len(sandbox.sandbox.tickets) == 1
    assert len(sandbox.sandbox.messages_of(done["ticket_id"])) == 1
    assert [(a["number"], a["step"], a["outcome"], a["ambiguous"]) for a in done["attempt_log"]] == [
        (1, "ticket", "delivered", False),
        (2, "message", "retrying", True),  # the dropped connection: it may have been posted
        (3, "message", "retrying", True),  # the dead worker's, recorded when its lease expired
        (4, "message", "delivered", False),
    ]
