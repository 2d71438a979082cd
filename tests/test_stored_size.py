"""What one large post costs in the database (docs/limits.md): its text is stored once, and the
ticket note sent to SPP is capped; nothing of the message is lost. On SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from urllib.parse import quote_plus

from flask import Flask
from sqlalchemy import select, text

from bridge.db import events
from bridge.message import InboundMessage
from bridge.replay import replay_event
from bridge.runtime import Runtime, get_runtime
from bridge.sandbox import SandboxServer
from bridge.tickets import NOTE_MAX_BYTES
from tests.conftest import admin_headers, deliver_all

TEN_MIB = 10 * 1024 * 1024


def stored_bytes(runtime: Runtime, event_id: str) -> dict[str, int]:
    """Bytes of the three columns that can hold the body, as the database keeps them."""
    if runtime.store.is_postgres:
        size = "octet_length({}::text)"
        raw = "octet_length(raw_body)"
    else:
        size = "length(CAST({} AS BLOB))"
        raw = "length(CAST(raw_body AS BLOB))"
    query = text(
        f"SELECT {raw} AS raw_body, {size.format('message')} AS message,"
        f" {size.format('ticket_request')} AS ticket_request FROM events WHERE id = :id"
    )
    with runtime.store.engine.connect() as conn:
        return dict(conn.execute(query, {"id": event_id}).mappings().one())


def anonymous_form(size: int) -> tuple[bytes, str]:
    """An urlencoded form of exactly ``size`` bytes without a sender address, and its message text."""
    head = b"name=" + quote_plus("Anonymous visitor").encode() + b"&message="
    words = "Hello from the website please call me back "  # letters and spaces: one byte each, encoded
    message = (words * (size // len(words) + 1))[: size - len(head)]
    body = head + quote_plus(message).encode()
    assert len(body) == size
    return body, message


def test_a_10_mib_form_post_is_stored_once_and_nothing_is_lost(
    app: Flask, runtime: Runtime, sandbox: SandboxServer
) -> None:
    body, message = anonymous_form(TEN_MIB)
    client = app.test_client()
    response = client.post(
        "/hooks/contact",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    event_id = response.get_json()["event_id"]

    sizes = stored_bytes(runtime, event_id)
    assert sum(sizes.values()) <= 1.2 * len(body), sizes

    # the admin API shows the whole message: body and every field
    event = client.get(f"/api/events/{event_id}", headers=admin_headers()).get_json()
    assert event["message"]["body"] == message
    assert event["message"]["fields"] == {"name": "Anonymous visitor", "message": message}
    assert event["message"]["name"] == "Anonymous visitor"

    # the message sent to SPP is capped, and says where the rest is
    text = event["plan"]["message"]["text"]
    assert len(text.encode()) <= NOTE_MAX_BYTES
    assert text.startswith("Hello from the website")
    assert text.endswith(f"the full message is in the bridge under event {event_id}]")
    assert event["ticket_request"]["note"] == f"From Anonymous visitor via contact (bridge event {event_id})"
    deliver_all(runtime)
    [ticket] = sandbox.sandbox.snapshot()["tickets"]
    [posted] = sandbox.sandbox.messages_of(ticket["id"])
    assert posted.message == text

    # a replay maps the stored message again: the same request, from the whole body
    assert replay_event(runtime, event_id, force=True) == "queued"
    with runtime.store.engine.connect() as conn:
        again = conn.execute(select(events.c.ticket_request).where(events.c.id == event_id)).scalar_one()
    assert again == event["ticket_request"]
    assert json.dumps(again).count(event_id) == 2  # the note and metadata.bridge_event_id


def row(runtime: Runtime, event_id: str) -> dict:
    with runtime.store.engine.connect() as conn:
        return dict(conn.execute(select(events).where(events.c.id == event_id)).mappings().one())


def test_a_json_body_is_stored_as_its_message_alone(make_app, sandbox: SandboxServer) -> None:
    app = make_app(
        """
        defaults: {user_id: 1}
        sources:
          orders:
            kind: json
            body_field: ticket.text
        """
    )
    runtime = get_runtime(app)
    text_ = "Ä long complaint, in detail. " * 100
    sent = {"email": "alice@example.com", "ticket": {"text": text_, "tags": ["a", text_[:10]]}}
    raw = json.dumps(sent).encode()
    response = app.test_client().post("/hooks/orders", data=raw, content_type="application/json")
    event_id = response.get_json()["event_id"]
    stored = row(runtime, event_id)
    assert bytes(stored["raw_body"]) == b""
    assert (stored["raw_request"]["body_bytes"], stored["raw_request"]["body_stored"]) == (len(raw), False)
    # the body is a path into the fields, which hold the text once
    assert stored["message"]["body"] is None
    assert stored["message"]["in_fields"] == {"body": ["ticket", "text"]}
    assert json.dumps(stored["message"]).count("long complaint") == 100
    # read back whole: admin API, and a replay maps the same ticket again
    event = app.test_client().get(f"/api/events/{event_id}", headers=admin_headers()).get_json()
    assert event["message"]["body"] == text_ and event["message"]["fields"] == sent
    assert "in_fields" not in event["message"]
    deliver_all(runtime)
    assert replay_event(runtime, event_id, force=True) == "queued"
    assert row(runtime, event_id)["ticket_request"] == event["ticket_request"]
    assert event["plan"]["message"]["text"] == text_.strip()


def test_a_short_message_is_stored_as_before(app: Flask, runtime: Runtime) -> None:
    response = app.test_client().post("/hooks/open", json={"email": "a@example.com", "message": "Short"})
    stored = row(runtime, response.get_json()["event_id"])
    assert stored["message"]["body"] == "Short" and "in_fields" not in stored["message"]
    assert bytes(stored["raw_body"]) == b""


def test_a_form_with_a_file_keeps_its_raw_body(app: Flask, runtime: Runtime) -> None:
    """The file's contents are in the raw body only (the message lists its name and size)."""
    data = {"email": "a@example.com", "message": "see file", "upload": (io.BytesIO(b"%PDF-1.4 data"), "a.pdf")}
    response = app.test_client().post(
        "/hooks/contact", data=data, content_type="multipart/form-data", headers={"Accept": "application/json"}
    )
    stored = row(runtime, response.get_json()["event_id"])
    assert b"%PDF-1.4 data" in bytes(stored["raw_body"])
    assert stored["raw_request"]["body_stored"] is True


def test_a_stored_message_reads_back_whole_from_any_depth() -> None:
    """The path search walks nested fields without recursion: as deep as a JSON parser allows, and more."""
    long_text = "deep " * 300
    nested: dict = {"bottom": ["x", long_text]}
    for level in range(5000):
        nested = {f"level{level}": nested}
    message = InboundMessage("k", subject=long_text, body=long_text, name="short", fields={"top": nested})
    stored = message.to_stored()
    assert stored["body"] is None and stored["subject"] is None and stored["name"] == "short"
    assert len(stored["in_fields"]["body"]) == 5003
    assert InboundMessage.from_dict(stored) == message
    # a path that no longer leads anywhere reads as no text rather than failing
    broken = {**stored, "in_fields": {"body": ["top", "nowhere", 3]}}
    assert InboundMessage.from_dict(broken).body is None
