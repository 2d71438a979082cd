"""``postmark``: Postmark's inbound webhook, end to end to the SPP sandbox.

Fixtures are what Postmark posts (shaped after its inbound webhook documentation and
django-anymail's tests); the HTTP Basic credentials Postmark takes from the webhook URL are
added at test time.
"""

# ruff: noqa: RUF001  (en dashes and curly quotes are what these charset tests are about)

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder, TestResponse

from bridge.providers import PROVIDERS
from bridge.runtime import get_runtime
from bridge.sources import Source
from tests.conftest import CLIENTS, AppFactory, deliver_all
from tests.providers.helpers import (
    deliver,
    fixture,
    original,
    read_message,
    sha256,
    stored_event,
    verify_then_parse,
)

CREDENTIALS = "postmark:Xq7-inbound-pass"  # what goes into https://user:pass@<bridge>/hooks/inbound
SOURCES = (
    CLIENTS
    + f"""sources:  # message: false keeps the body in the note, where these tests read it
  inbound:
    kind: postmark
    message: false
    secret: "{CREDENTIALS}"
  billing:
    kind: postmark
    message: false
    secret: "{CREDENTIALS}"
    ticket:
      subject: "[{{{{ fields.MailboxHash or 'general' }}}}] {{{{ subject }}}}"
      note: "{{{{ body }}}}"
      tags: [postmark, "{{{{ fields.MailboxHash }}}}"]
      metadata:
        postmark_id: "{{{{ fields.MessageID }}}}"
        message_id: "{{{{ message_id }}}}"
        to: "{{{{ fields.OriginalRecipient }}}}"
        spam_score: "{{{{ fields.headers['x-spam-score'] }}}}"
"""
)


def auth(credentials: str = CREDENTIALS) -> dict[str, str]:
    """The header Postmark's HTTP client sends for a webhook URL holding ``user:pass@``."""
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def payload(name: str, **changes: Any) -> dict[str, Any]:
    data = json.loads(fixture("postmark", name))
    data.update(changes)
    return data


def post(app: Flask, body: Any, source: str = "inbound", headers: dict[str, str] | None = None) -> TestResponse:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return app.test_client().post(
        f"/hooks/{source}", data=data, content_type="application/json", headers=auth() if headers is None else headers
    )


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app(SOURCES)


# --- each fixture, end to end: the exact StoreTicketRequest SPP receives ---------------


def test_html_only_mail_becomes_text(app: Flask, sandbox: Any) -> None:
    response = post(app, payload("html_only.json"))
    sent = deliver(app, sandbox, response)
    assert sent == {
        "user_id": 12,
        "subject": "Order #1042 arrived damaged",
        "note": "From: Alice Example <alice@example.com>\n\n"
        "Hi team,\n\n  my order #1042 arrived damaged:\n\n"
        "    * the lid is cracked\n    * two cups are broken\n\n"
        "  Could you send a replacement?\n\n  Thanks,\n  Alice",
        "metadata": {"bridge_event_id": response.get_json()["event_id"]},
    }
    event = stored_event(app, response.get_json()["event_id"])
    assert event["message"]["html"].startswith("<!DOCTYPE html>")


def test_reply_keeps_the_quoted_message_not_the_stripped_reply(app: Flask, sandbox: Any) -> None:
    response = post(app, payload("reply_quoted.json"))
    sent = deliver(app, sandbox, response)
    assert sent == {
        "user_id": 12,
        "subject": "Re: [Ticket] Order #1042 arrived damaged",
        "note": "From: Alice Example <alice@example.com>\n\n"
        "Thanks, the replacement is fine. Please ship it to my office address instead.\n\n"
        "On Wed, Nov 25, 2026 at 5:12 PM Acme Support <support@acme.example> wrote:\n"
        "> Hi Alice,\n>\n> sorry about that! We can send a replacement set today.\n"
        "> Shall we use the address on the order?\n>\n> Acme Support",
        "metadata": {"bridge_event_id": response.get_json()["event_id"]},
    }


def test_attachments_are_listed_by_name_and_size_and_their_content_is_not_stored(app: Flask, sandbox: Any) -> None:
    posted = payload("attachments.json")
    response = post(app, posted)
    event_id = response.get_json()["event_id"]
    assert deliver(app, sandbox, response) == {
        "user_id": 30,
        "subject": "Unterlagen für die Rückerstattung",
        "note": "From: Jürgen Müller <juergen@bigcustomer.com>\n\n"
        "Hallo,\n\nanbei die Rechnung, ein Foto der Lieferung und die Kontoauszüge.\n\nJürgen\n\n"
        "Attachments (not forwarded):\n"
        "- Rechnung 4711.pdf (2.1 kB)\n- lieferung.png (69 B)\n- kontoauszug.csv (37 B)",
        "metadata": {"bridge_event_id": event_id},
    }
    message = stored_event(app, event_id)["message"]
    assert message["attachments"] == [
        {"name": "Rechnung 4711.pdf", "content_type": "application/pdf", "size": 2175},
        {"name": "lieferung.png", "content_type": "image/png", "size": 69},
        {"name": "kontoauszug.csv", "content_type": "text/csv", "size": 37},
    ]
    assert message["fields"]["Attachments"][1] == {
        "Name": "lieferung.png",
        "ContentType": "image/png",
        "ContentLength": 69,
        "ContentID": "ii_lq2x9k0v0@bigcustomer.com",
    }
    stored = json.dumps(message)
    assert all(a["Content"][:40] not in stored for a in posted["Attachments"])


def test_attachments_keep_their_bytes() -> None:
    message = read_message("postmark", fixture("postmark", "files.json"), "application/json")
    assert [(a.name, a.content_type, a.size, sha256(a.content), a.problem) for a in message.attachments] == [
        (
            "Übersicht März 2026 – Rechnungen.pdf",
            "application/pdf",
            2059,
            sha256(original("invoice-2026-03.pdf")),
            None,
        ),
        ("Bildschirmfoto 2026-11-30 um 09.18.42.png", "image/png", 1032, sha256(original("screenshot.png")), None),
        ("kontoauszug.csv", "application/octet-stream", 37, sha256(original("kontoauszug.csv")), None),  # no type given
        ("scan.pdf", "application/pdf", 5120, None, "could not be decoded: invalid base64"),
    ]


def test_an_attachment_that_is_not_base64_is_listed_not_refused(app: Flask) -> None:
    posted = payload("files.json")
    response = post(app, posted)
    assert response.status_code == 200, response.get_data(as_text=True)
    message = stored_event(app, response.get_json()["event_id"])["message"]
    assert message["attachments"][3] == {
        "name": "scan.pdf",
        "content_type": "application/pdf",
        "size": 5120,
        "problem": "could not be decoded: invalid base64",
    }
    assert message["fields"]["Attachments"][0]["Name"] == "Übersicht März 2026 – Rechnungen.pdf"
    assert all(a["Content"][:40] not in json.dumps(message) for a in posted["Attachments"])


def test_an_attachment_without_its_content_is_listed_with_the_problem() -> None:
    body = payload("files.json")
    body["Attachments"] = [{"Name": "big.zip", "ContentType": "application/zip", "ContentLength": 900, "Content": ""}]
    [attachment] = read_message("postmark", json.dumps(body).encode(), "application/json").attachments
    assert (attachment.name, attachment.size, attachment.content, attachment.problem) == (
        "big.zip",
        900,
        None,
        "its content was not posted",
    )


def test_the_dashboard_check_data_is_decoded_too() -> None:
    attachment = {"Name": "test.txt", "Data": base64.b64encode(b"test attachment").decode(), "ContentType": ""}
    body = json.dumps(payload("html_only.json", Attachments=[attachment])).encode()
    [read] = read_message("postmark", body, "application/json").attachments
    assert (read.content, read.size, read.content_type) == (b"test attachment", 15, "application/octet-stream")


@pytest.mark.parametrize("name", ["reply_quoted.json", "files.json"])
def test_in_reply_to_and_references_are_read_from_the_headers(app: Flask, name: str) -> None:
    expected = {
        "reply_quoted.json": ["<ticket-88@acme.example>", "<0100018c-html-only@email.example.com>"],
        "files.json": ["<ticket-91.note-1@acme.example>", "<ticket-91@acme.example>"],
    }
    response = post(app, payload(name))
    assert stored_event(app, response.get_json()["event_id"])["message"]["references"] == expected[name]


def test_templates_see_what_postmark_posted(app: Flask, sandbox: Any) -> None:
    response = post(app, payload("non_ascii.json"), source="billing")
    event_id = response.get_json()["event_id"]
    assert deliver(app, sandbox, response) == {
        "user_id": 30,
        "subject": "[billing] Grüße aus Köln – Rechnung Nr. 4711 fehlt",
        "note": "Guten Tag,\n\ndie Rechnung Nr. 4711 über 1.250,00 € ist bei uns nicht angekommen.\n"
        "Könnten Sie sie bitte erneut schicken?\n\nViele Grüße\nJürgen Müller",
        "tags": ["postmark", "billing"],
        "metadata": {
            "postmark_id": "5b0d1e57-3f8a-4c51-9d5e-0b2a4d3c9e11",
            "message_id": "<CAF=8xq2u7bXo9k@mail.bigcustomer.com>",
            "to": "451d9b70cf9364d6f9d51sdf34343sdf343+billing@inbound.postmarkapp.com",
            "spam_score": "-0.1",
            "bridge_event_id": event_id,
        },
    }


def test_dashboard_check_payload_with_data_instead_of_content(app: Flask, sandbox: Any) -> None:
    # the inbound settings' "Check" button posts attachments as Data, without ContentLength
    attachment = {
        "Name": "test.txt",
        "Data": base64.b64encode(b"test attachment").decode(),
        "ContentType": "text/plain",
    }
    response = post(app, payload("html_only.json", Attachments=[attachment], RawEmail="From: x\r\n\r\nbig"))
    sent = deliver(app, sandbox, response)
    assert sent["note"].endswith("Attachments (not forwarded):\n- test.txt (15 B)")
    assert "RawEmail" not in stored_event(app, response.get_json()["event_id"])["message"]["fields"]


# --- de-duplication on MessageID ------------------------------------------------------


def test_a_retry_with_the_same_message_id_is_a_duplicate(app: Flask) -> None:
    first = post(app, payload("non_ascii.json")).get_json()
    again = post(app, payload("non_ascii.json", TextBody="edited on the way"))
    assert again.status_code == 200
    assert again.get_json() == {"event_id": first["event_id"], "status": "queued", "duplicate": True}
    other = post(app, payload("non_ascii.json", MessageID="0a1b2c3d-0000-4000-8000-000000000001")).get_json()
    assert other["event_id"] != first["event_id"] and "duplicate" not in other


def test_a_very_long_message_id_is_hashed_into_the_key(app: Flask) -> None:
    long_id = "x" * 1000
    first = post(app, payload("non_ascii.json", MessageID=long_id)).get_json()
    assert post(app, payload("non_ascii.json", MessageID=long_id)).get_json()["duplicate"] is True
    assert first["status"] == "queued"


# --- credentials ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        auth("postmark:wrong"),
        auth("someone:Xq7-inbound-pass"),
        {"Authorization": f"Bearer {CREDENTIALS}"},
        {"X-Bridge-Token": CREDENTIALS},
    ],
    ids=["none", "wrong-password", "wrong-user", "bearer", "bridge-token"],
)
def test_missing_or_wrong_basic_credentials_are_401(app: Flask, headers: dict[str, str]) -> None:
    response = post(app, payload("non_ascii.json"), headers=headers)
    assert response.status_code == 401, response.get_data(as_text=True)
    assert CREDENTIALS not in response.get_data(as_text=True)


# --- answers Postmark reads: 403 stops its retries, anything but 200 is retried ------------


@pytest.mark.parametrize(
    "body",
    [
        [],
        "null",
        {"FromFull": {"Email": "alice@example.com"}, "Subject": "no MessageID"},
        {"MessageID": "   ", "From": "alice@example.com"},
        {"MessageID": "5b0d1e57-aaaa", "From": "", "FromFull": {"Email": "", "Name": "Nobody"}},
        {"MessageID": "5b0d1e57-bbbb", "From": "alice@example.com", "Subject": 5},
        {"MessageID": "5b0d1e57-cccc", "From": "alice@example.com", "Attachments": "yes"},
        {"RecordType": "Delivery", "MessageID": "5b0d1e57-dddd", "Recipient": "alice@example.com"},
    ],
    ids=["array", "null", "no-message-id", "blank-message-id", "no-sender", "bad-type", "bad-list", "outbound-hook"],
)
def test_parsed_but_not_an_inbound_message_is_403(app: Flask, body: Any) -> None:
    response = post(app, json.dumps(body) if not isinstance(body, str) else body)
    assert response.status_code == 403, response.get_data(as_text=True)
    assert set(response.get_json()) >= {"error", "message"}


def test_invalid_json_is_400(app: Flask) -> None:
    assert post(app, b'{"MessageID": "5b0d1e57"').status_code == 400


def test_other_content_types_are_415(app: Flask) -> None:
    response = app.test_client().post(
        "/hooks/inbound", data={"MessageID": "x", "From": "alice@example.com"}, headers=auth()
    )
    assert response.status_code == 415


# --- automatic replies and bounces are stored as discarded ------------------------------


@pytest.mark.parametrize(
    "name, changes, reason",
    [
        ("auto_reply.json", {}, "discarded: automatic reply (Auto-Submitted: auto-replied)"),
        ("bounce.json", {}, "discarded: bounce (null return path)"),
        (
            "non_ascii.json",
            {"Headers": [{"Name": "X-Autoreply", "Value": "yes"}, {"Name": "Message-ID", "Value": "<a@b>"}]},
            "discarded: automatic reply (X-Autoreply)",
        ),
        (
            "non_ascii.json",
            {"Headers": [{"Name": "Precedence", "Value": "bulk"}]},
            "discarded: bulk mail (Precedence: bulk)",
        ),
        (
            "bounce.json",
            {"Headers": [{"Name": "Message-ID", "Value": "<x@mx1.example.net>"}]},
            "discarded: bounce (MAILER-DAEMON)",
        ),
    ],
    ids=["auto-submitted", "null-return-path", "x-autoreply", "precedence-bulk", "mailer-daemon"],
)
def test_automatic_mail_is_discarded_with_its_reason(
    app: Flask, sandbox: Any, name: str, changes: dict[str, Any], reason: str
) -> None:
    response = post(app, payload(name, **changes))
    assert response.status_code == 200
    assert response.get_json()["status"] == "discarded"
    event = stored_event(app, response.get_json()["event_id"])
    assert (event["status"], event["last_error"], event["ticket_request"]) == ("discarded", reason, None)
    deliver_all(get_runtime(app))
    assert sandbox.sandbox.tickets == []


def test_a_malformed_encoded_word_is_kept_as_sent(app: Flask, sandbox: Any) -> None:
    # Postmark decodes encoded words; one it could not decode reaches us as sent, and the
    # stdlib's decode_header raises HeaderParseError on it
    response = post(
        app,
        payload(
            "html_only.json", Subject="=?utf-8?b?Q?=", FromFull={"Email": "alice@example.com", "Name": "=?utf-8?b?Q?="}
        ),
    )
    sent = deliver(app, sandbox, response)
    assert sent["subject"] == "=?utf-8?b?Q?="
    assert sent["note"].startswith("From: =?utf-8?b?Q?= <alice@example.com>\n\nHi team,")


def test_a_control_character_in_a_header_is_stored_safely(app: Flask) -> None:
    headers = [{"Name": "Auto-Submitted", "Value": "auto-\u0000replied\ud800"}]
    response = post(app, payload("non_ascii.json", Headers=headers))
    assert response.status_code == 200, response.get_data(as_text=True)
    event = stored_event(app, response.get_json()["event_id"])
    assert event["last_error"] == "discarded: automatic reply (Auto-Submitted: auto-?replied?)"


# --- whatever arrives, the parser raises nothing but the bridge's own errors --------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        *("MessageID", "From", "FromName", "FromFull", "Subject", "TextBody", "HtmlBody", "Headers", "Attachments"),
        *("ToFull", "RecordType", "Tag", "MailboxHash", "Date"),
    ]
)
_near_postmark = st.dictionaries(_keys, _json, max_size=8).map(
    lambda d: {"MessageID": "5b0d1e57", "FromFull": {"Email": "a@b.c"}, **d}
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(_json.map(json.dumps), _near_postmark.map(json.dumps)))
def test_no_input_raises_anything_but_a_bridge_error(body: str) -> None:
    request = EnvironBuilder(
        method="POST", path="/hooks/inbound", data=body, content_type="application/json", headers=auth()
    ).get_request()
    verify_then_parse(PROVIDERS["postmark"], request, Source(name="inbound", kind="postmark", secret=CREDENTIALS))
