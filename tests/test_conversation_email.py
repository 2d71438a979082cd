"""Email as a conversation (docs/conversations.md sections 3 and 4): attachments sent with the first
message byte for byte, and replies joining the ticket of the mail they answer.

Raw RFC 822 mail posted to an ``email`` source, delivered to the sandbox on a real port, on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from flask import Flask

from bridge.runtime import get_runtime
from tests.conftest import SLOW_RETRIES, AppFactory, admin_headers, deliver_all, make_due
from tests.conversations import PDF, UMLAUT_NAME

TOKEN = "mail-secret-0123456789"
SOURCES = f"""
defaults: {{user_id: 1}}
clients:
  alice@example.com: 12
  bob@example.com: 13
sources:
  mail: {{kind: email, secret: {TOKEN}}}
  other: {{kind: email, secret: {TOKEN}}}
  unthreaded: {{kind: email, secret: {TOKEN}, threading: false}}
"""
# a retry is due only when a test makes it due, so what an event waits for stays still meanwhile
QUOTED = (
    "Thanks, that helps.\n\n"
    "On Mon, 1 Dec 2026 at 10:00, Support <support@agency.example> wrote:\n"
    "> Please send the invoice.\n"
    "> Support\n"
)


def mail(
    message_id: str,
    body: str = "Hello, see attached.",
    sender: str = "Alice Example <alice@example.com>",
    subject: str = "Invoice",
    files: list[tuple[str, str, bytes]] | None = None,
    **headers: str,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "support@agency.example"
    message["Subject"] = subject
    message["Message-ID"] = message_id
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    for name, content_type, content in files or []:
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return bytes(message)


def post(app: Flask, raw: bytes, source: str = "mail") -> str:
    response = app.test_client().post(
        f"/hooks/{source}", data=raw, headers={"X-Bridge-Token": TOKEN, "Content-Type": "message/rfc822"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["event_id"])


def detail(app: Flask, event_id: str) -> dict[str, Any]:
    return dict(app.test_client().get(f"/api/events/{event_id}", headers=admin_headers()).get_json())


def test_a_5_mb_pdf_and_a_non_ascii_name_reach_spp_byte_for_byte(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES)
    notes = "Grüße aus Köln\n".encode()
    event_id = post(
        app, mail("<a1@alice.example>", files=[(UMLAUT_NAME, "application/pdf", PDF), ("n.txt", "text/plain", notes)])
    )
    deliver_all(get_runtime(app))
    event = detail(app, event_id)
    assert event["status"] == "delivered", event["last_error"]
    [message] = sandbox.sandbox.messages_of(event["ticket_id"])
    assert message.transport == "multipart" and message.user_id == 12
    assert [(f.name, f.content_type, hashlib.sha256(f.content).hexdigest()) for f in message.files] == [
        (UMLAUT_NAME, "application/pdf", hashlib.sha256(PDF).hexdigest()),
        ("n.txt", "text/plain", hashlib.sha256(notes).hexdigest()),
    ]
    assert message.message == "Hello, see attached."
    assert event["plan"]["message"]["files"] == [0, 1]


def test_a_file_over_the_limit_is_listed_not_sent(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES, BRIDGE_MAX_ATTACHMENT_BYTES="1000")
    small = b"small file"
    event_id = post(
        app, mail("<a2@alice.example>", files=[("big.pdf", "application/pdf", PDF), ("s.txt", "text/plain", small)])
    )
    deliver_all(get_runtime(app))
    [message] = sandbox.sandbox.messages_of(detail(app, event_id)["ticket_id"])
    assert [f.name for f in message.files] == ["s.txt"]
    assert message.message == (
        "Hello, see attached.\n\nFiles:\n- big.pdf (5.0 MB, not attached: over the 1000 B limit)"
    )


def test_a_reply_from_the_same_sender_joins_the_ticket_without_the_quote(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES)
    runtime = get_runtime(app)
    first = post(app, mail("<t1@alice.example>"))
    deliver_all(runtime)
    ticket_id = detail(app, first)["ticket_id"]
    reply = post(
        app,
        mail("<t2@alice.example>", QUOTED, subject="Re: Invoice", In_Reply_To="<t1@alice.example>"),
        source="other",  # any email source
    )
    deliver_all(runtime)
    event = detail(app, reply)
    assert (event["status"], event["ticket_id"], event["thread_of"]) == ("delivered", ticket_id, first)
    assert [a["step"] for a in event["attempt_log"]] == ["message"]  # no second ticket
    assert len(sandbox.sandbox.tickets) == 1
    original, answer = sandbox.sandbox.messages_of(ticket_id)
    assert original.message == "Hello, see attached."
    assert answer.user_id == 12 and answer.message == "Thanks, that helps."
    assert event["message"]["body"] == QUOTED.strip()  # the whole text stays on the event


def test_a_stranger_replying_with_valid_references_gets_a_new_ticket(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES)
    runtime = get_runtime(app)
    first = post(app, mail("<s1@alice.example>"))
    deliver_all(runtime)
    stranger = post(
        app,
        mail("<s2@bob.example>", QUOTED, sender="Bob <bob@example.com>", References="<s1@alice.example>"),
    )
    deliver_all(runtime)
    event = detail(app, stranger)
    assert event["thread_of"] is None and event["ticket_id"] != detail(app, first)["ticket_id"]
    assert len(sandbox.sandbox.tickets) == 2
    assert len(sandbox.sandbox.messages_of(detail(app, first)["ticket_id"])) == 1  # Alice's stays hers
    [message] = sandbox.sandbox.messages_of(event["ticket_id"])
    assert message.user_id == 13 and message.message == QUOTED.strip()  # a new ticket keeps the whole text


def test_two_unknown_senders_under_the_default_user_never_share_a_ticket(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES.replace("defaults: {user_id: 1}", "defaults: {user_id: 1}\nclient_lookup: false"))
    runtime = get_runtime(app)
    first = post(app, mail("<d1@x.example>", sender="Xena <xena@x.example>"))
    deliver_all(runtime)
    other = post(app, mail("<d2@y.example>", QUOTED, sender="Yann <yann@y.example>", In_Reply_To="<d1@x.example>"))
    same = post(app, mail("<d3@x.example>", QUOTED, sender="xena@X.example", In_Reply_To="<d1@x.example>"))
    deliver_all(runtime)
    assert detail(app, other)["thread_of"] is None
    assert detail(app, same)["thread_of"] == first


def test_a_reply_to_a_retrying_mail_waits_then_joins(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES, **SLOW_RETRIES)
    runtime = get_runtime(app)
    sandbox.sandbox.script(503)  # the original's ticket request fails once
    first = post(app, mail("<w1@alice.example>"))
    deliver_all(runtime)
    assert detail(app, first)["status"] == "retrying"
    reply = post(app, mail("<w2@alice.example>", QUOTED, In_Reply_To="<w1@alice.example>"))
    deliver_all(runtime)
    waiting = detail(app, reply)
    assert waiting["status"] == "retrying" and waiting["attempts"] == 0 and waiting["ticket_id"] is None
    assert waiting["last_error"].startswith(f"waiting for the ticket of {first}")
    assert sandbox.sandbox.tickets == []

    make_due(runtime, first)
    deliver_all(runtime)
    make_due(runtime, reply)
    deliver_all(runtime)
    joined = detail(app, reply)
    ticket_id = detail(app, first)["ticket_id"]
    assert (joined["status"], joined["ticket_id"], joined["thread_of"]) == ("delivered", ticket_id, first)
    assert len(sandbox.sandbox.tickets) == 1
    assert [m.message for m in sandbox.sandbox.messages_of(ticket_id)] == [
        "Hello, see attached.",
        "Thanks, that helps.",
    ]


def test_a_reply_to_a_failed_mail_opens_its_own_ticket(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES)
    runtime = get_runtime(app)
    sandbox.sandbox.script(422)
    first = post(app, mail("<f1@alice.example>"))
    deliver_all(runtime)
    assert detail(app, first)["status"] == "failed"
    reply = post(app, mail("<f2@alice.example>", QUOTED, In_Reply_To="<f1@alice.example>"))
    deliver_all(runtime)
    event = detail(app, reply)
    assert (event["status"], event["thread_of"]) == ("delivered", None)
    assert len(sandbox.sandbox.tickets) == 1


def test_the_ticket_number_in_the_subject_joins_that_ticket(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES)
    runtime = get_runtime(app)
    first = post(app, mail("<n1@alice.example>"))
    deliver_all(runtime)
    ticket_id = detail(app, first)["ticket_id"]
    reply = post(app, mail("<n2@alice.example>", "New details.", subject=f"More on it [#{ticket_id}]"))
    deliver_all(runtime)
    event = detail(app, reply)
    assert (event["ticket_id"], event["thread_of"]) == (ticket_id, first)
    assert len(sandbox.sandbox.messages_of(ticket_id)) == 2


def test_headers_naming_nothing_known_and_threading_off_make_new_tickets(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES)
    runtime = get_runtime(app)
    first = post(app, mail("<o1@alice.example>"))
    unknown = post(app, mail("<o2@alice.example>", QUOTED, In_Reply_To="<nobody@nowhere.example>"))
    deliver_all(runtime)
    off = post(app, mail("<o3@alice.example>", QUOTED, In_Reply_To="<o1@alice.example>"), source="unthreaded")
    deliver_all(runtime)
    assert detail(app, unknown)["thread_of"] is None and detail(app, off)["thread_of"] is None
    assert detail(app, off)["plan"].get("reply") is None
    assert len({detail(app, e)["ticket_id"] for e in (first, unknown, off)}) == 3


def test_a_reply_with_nothing_new_posts_the_whole_text(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES)
    runtime = get_runtime(app)
    first = post(app, mail("<e1@alice.example>"))
    deliver_all(runtime)
    only_quote = "> Please send the invoice.\n> Support"
    reply = post(app, mail("<e2@alice.example>", only_quote, In_Reply_To="<e1@alice.example>"))
    deliver_all(runtime)
    _, answer = sandbox.sandbox.messages_of(detail(app, first)["ticket_id"])
    assert answer.message == only_quote
    assert detail(app, reply)["thread_of"] == first


def test_an_attachment_that_cannot_be_decoded_is_listed_not_dropped(make_app: AppFactory, sandbox) -> None:
    app = make_app(SOURCES)
    raw = mail("<b1@alice.example>", files=[("broken.pdf", "application/pdf", b"%PDF")])
    parsed = message_from_bytes(raw, policy=policy.default)
    for part in parsed.iter_attachments():  # its base64 made invalid
        part.set_payload("!!!! not base64 at all ****\n")
        del part["Content-Transfer-Encoding"]
        part["Content-Transfer-Encoding"] = "base64"
    event_id = post(app, bytes(parsed))
    deliver_all(get_runtime(app))
    event = detail(app, event_id)
    assert event["status"] == "delivered"
    [message] = sandbox.sandbox.messages_of(event["ticket_id"])
    assert message.files == []
    assert "- broken.pdf (not attached: " in message.message
