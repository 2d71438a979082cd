"""``mailgun``: route forward() posts, parsed and raw MIME, end to end to the SPP sandbox.

Fixtures hold what Mailgun posts (fields as JSON, raw messages as .eml); the signature fields
are added at test time with ``KEY``, as Mailgun would with the account's HTTP webhook signing key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from werkzeug.test import EnvironBuilder, TestResponse

from bridge.db import events
from bridge.providers import PROVIDERS
from bridge.runtime import get_runtime
from bridge.sources import Source
from tests.conftest import CLIENTS, AppFactory
from tests.providers import helpers
from tests.providers.helpers import deliver, fixture, read_message, sha256, stored_event, verify_then_parse

KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"  # a test HTTP webhook signing key
SOURCES = (
    CLIENTS
    + f"""sources:  # message: false keeps the body in the note, where these tests read it
  support:
    kind: mailgun
    message: false
    secret: {KEY}
  support-mime:
    kind: mailgun
    message: false
    secret: {KEY}
"""
)
URLENCODED = "application/x-www-form-urlencoded"
PDF, PNG = fixture("mailgun", "invoice.pdf"), fixture("mailgun", "screenshot.png")


def sign(fields: dict[str, Any], key: str = KEY, timestamp: float | None = None, token: str = "") -> dict[str, Any]:
    """The fields with Mailgun's timestamp, token (50 characters) and signature added."""
    stamp = str(int(time.time() if timestamp is None else timestamp))
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {**fields, "timestamp": stamp, "token": token, "signature": signature}


def posted(name: str, **changes: Any) -> dict[str, Any]:
    fields = json.loads(fixture("mailgun", name))
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


def with_headers(fields: dict[str, Any], *extra: list[str], drop: str = "") -> dict[str, Any]:
    headers = [h for h in json.loads(fields["message-headers"]) if h[0].lower() != drop]
    return {**fields, "message-headers": json.dumps([*headers, *extra])}


def mime_post(raw: bytes, sender: str = "jose.garcia@bigcustomer.com") -> dict[str, Any]:
    """What Mailgun posts to a forward URL ending in ``mime``."""
    return sign({"recipient": "support-mime@help.example.com", "sender": sender, "body-mime": raw})


def post_form(app: Flask, source: str, fields: dict[str, Any]) -> TestResponse:
    """urlencoded, the bytes of ``bytes`` values as they are (Mailgun's posts without attachments)."""
    return app.test_client().post(f"/hooks/{source}", data=urlencode(fields), content_type=URLENCODED)


def event_count(app: Flask) -> int:
    with get_runtime(app).store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


def event_id(response: TestResponse) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["event_id"])


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app(SOURCES)


# --- parsed mode -----------------------------------------------------------------------


def test_reply_keeps_the_quoted_message_and_decodes_the_sender(app: Flask, sandbox: Any) -> None:
    fields = posted("reply.json")
    response = post_form(app, "support", sign(fields))
    sent = deliver(app, sandbox, response)
    assert sent == {
        "user_id": 30,
        "subject": "Re: Facture n° 2024-117 \u2013 montant erroné",
        "note": "From: François Müller <francois.muller@bigcustomer.com>\n\n"
        + fields["body-plain"].replace("\r\n", "\n").strip(),
        "metadata": {"bridge_event_id": event_id(response)},
    }
    assert "> Nous avons bien reçu votre demande" in sent["note"]  # the full text, not stripped-text
    assert "\r\n" in fields["body-plain"] and "\r" not in sent["note"]  # line ends as every email kind has them
    message = stored_event(app, event_id(response))["message"]
    assert message["dedupe_key"] == "message-id:<CAHx9Qm+Vt2Lr8=Yb4@mail.gmail.com>"
    assert message["message_id"] == "<CAHx9Qm+Vt2Lr8=Yb4@mail.gmail.com>"
    assert message["html"] == fields["body-html"]
    assert message["fields"]["recipient"] == "support@help.example.com"
    assert message["fields"]["stripped-text"] == fields["stripped-text"]
    assert message["fields"]["headers"]["in-reply-to"] == "<20241105101200.4f1a@help.example.com>"
    assert not {"signature", "token", "timestamp", "body-plain", "message-headers"} & set(message["fields"])


def test_html_only_mail_becomes_readable_text(app: Flask, sandbox: Any) -> None:
    response = post_form(app, "support", sign(posted("html-only.json")))
    assert deliver(app, sandbox, response) == {
        "user_id": 12,
        "subject": "Order #4512 arrived damaged",
        "note": "From: Alice Martin <alice@example.com>\n\nOrder #4512\n\nThe parcel arrived damaged:\n\n"
        "  * Blue mug \u2013 broken handle\n  * Teapot \u2013 cracked lid\nOrder      4512      \n"
        "Delivered  5 Nov 2024\n\n\nCould you send replacements?",
        "metadata": {"bridge_event_id": event_id(response)},
    }


def test_multipart_attachments_are_listed_in_order(app: Flask, sandbox: Any) -> None:
    data = {
        **sign(posted("attachments.json")),
        # posted out of order: the list follows attachment-N, not the order of the parts
        "attachment-2": (io.BytesIO(PNG), "screenshot.png", "image/png"),
        "attachment-1": (io.BytesIO(PDF), "invoice.pdf", "application/pdf"),
    }
    response = app.test_client().post("/hooks/support", data=data, content_type="multipart/form-data")
    assert deliver(app, sandbox, response) == {
        "user_id": 30,
        "subject": "Error when exporting the report",
        "note": "From: Bob Lee <bob@bigcustomer.com>\n\nHi,\n\nExporting the monthly report fails with "
        '"Error 500". Screenshot and the invoice it\nwas built from are attached.\n\nBob\n\n'
        "Attachments (not forwarded):\n- invoice.pdf (303 B)\n- screenshot.png (69 B)",
        "metadata": {"bridge_event_id": event_id(response)},
    }
    message = stored_event(app, event_id(response))["message"]
    assert message["attachments"] == [
        {"name": "invoice.pdf", "content_type": "application/pdf", "size": len(PDF)},
        {"name": "screenshot.png", "content_type": "image/png", "size": len(PNG)},
    ]
    assert message["fields"]["attachment-count"] == "2"


def test_multipart_attachments_keep_their_bytes() -> None:
    data = {
        **posted("attachments.json"),
        "attachment-1": (io.BytesIO(PDF), "Übersicht März.pdf", "application/pdf"),
        "attachment-2": (io.BytesIO(PNG), "screenshot.png", "image/png"),
    }
    message = read_message("mailgun", data, "multipart/form-data")
    assert [(a.name, a.content_type, a.size, sha256(a.content)) for a in message.attachments] == [
        ("Übersicht März.pdf", "application/pdf", len(PDF), sha256(PDF)),
        ("screenshot.png", "image/png", len(PNG), sha256(PNG)),
    ]


def test_in_reply_to_and_references_are_read_from_message_headers_or_their_own_fields(app: Flask) -> None:
    fields = posted("reply.json")
    from_headers = post_form(app, "support", sign(fields))
    assert stored_event(app, event_id(from_headers))["message"]["references"] == [
        "<20241105101200.4f1a@help.example.com>"
    ]
    # message-headers without them, and a References of its own posted as a field
    bare = with_headers(with_headers(fields, drop="in-reply-to"), drop="references")
    bare = {
        **bare,
        "Message-Id": "<other@mail.gmail.com>",
        "References": "<first@help.example.com> <20241105101200.4f1a@help.example.com>",
    }
    from_fields = post_form(app, "support", sign(bare))
    message = stored_event(app, event_id(from_fields))["message"]
    assert message["references"] == ["<20241105101200.4f1a@help.example.com>", "<first@help.example.com>"]
    assert message["fields"]["headers"]["in-reply-to"] == "<20241105101200.4f1a@help.example.com>"


def test_envelope_sender_when_there_is_no_from(app: Flask, sandbox: Any) -> None:
    fields = with_headers(posted("attachments.json", **{"from": None}), drop="from")
    sent = deliver(app, sandbox, post_form(app, "support", sign(fields)))
    assert sent["user_id"] == 30
    assert sent["note"].startswith("From: <bob@bigcustomer.com>\n\nHi,")


def test_message_id_from_message_headers_then_the_token(app: Flask) -> None:
    fields = posted("reply.json", **{"Message-Id": None})
    first = post_form(app, "support", sign(fields))
    assert (
        stored_event(app, event_id(first))["message"]["dedupe_key"] == "message-id:<CAHx9Qm+Vt2Lr8=Yb4@mail.gmail.com>"
    )
    anonymous = sign(with_headers(fields, drop="message-id"), token="t" * 50)
    second = post_form(app, "support", anonymous)
    message = stored_event(app, event_id(second))["message"]
    assert message["dedupe_key"] == "mailgun-token:" + "t" * 50
    assert message["message_id"] is None


# --- raw MIME (forward URL ending in "mime") ---------------------------------------------


def test_mime_variant_parses_body_mime(app: Flask, sandbox: Any) -> None:
    response = post_form(app, "support-mime", mime_post(fixture("mailgun", "reply.eml")))
    assert deliver(app, sandbox, response) == {
        "user_id": 30,
        "subject": "Re: Accès bloqué à l'espace client",
        "note": "From: José García <jose.garcia@bigcustomer.com>\n\n"
        "Toujours bloqué ce matin, voir le relevé joint.\n\nJosé\n\n"
        "Le jeu. 7 nov. 2024 à 10:00, Support <support-mime@help.example.com> a écrit :\n"
        "> Bonjour José,\n> Pouvez-vous réessayer de vous connecter ?\n\n"
        "Attachments (not forwarded):\n- relevé.pdf (303 B)",
        "metadata": {"bridge_event_id": event_id(response)},
    }
    message = stored_event(app, event_id(response))["message"]
    assert message["dedupe_key"] == "message-id:<CAJ7wq=Rk3pX0m@mail.gmail.com>"
    assert message["fields"]["headers"]["in-reply-to"] == "<20241107090000.9c2e@help.example.com>"
    assert "body-mime" not in message["fields"]


def test_mime_variant_keeps_attachment_bytes_and_references(app: Flask) -> None:
    reply = read_message("mailgun", urlencode(mime_post(fixture("mailgun", "reply.eml"))).encode(), URLENCODED)
    assert [(a.name, sha256(a.content)) for a in reply.attachments] == [("relevé.pdf", sha256(PDF))]
    assert reply.references == ["<20241107090000.9c2e@help.example.com>"]
    files = read_message("mailgun", urlencode(mime_post(fixture("email", "files.eml"))).encode(), URLENCODED)
    assert [(a.name, sha256(a.content), a.problem) for a in files.attachments] == [
        ("Übersicht März 2026 \u2013 Rechnungen.pdf", sha256(helpers.original("invoice-2026-03.pdf")), None),
        ("Foto Schaden \u2013 Küche.png", sha256(helpers.original("lieferung.png")), None),
        ("kontoauszug.csv", sha256(helpers.original("kontoauszug.csv").replace(b"\n", b"\r\n")), None),
        ("scan.pdf", None, "could not be decoded: invalid base64"),
    ]


def test_mime_8bit_latin1_mail_keeps_its_bytes(app: Flask, sandbox: Any) -> None:
    response = post_form(app, "support-mime", mime_post(fixture("mailgun", "latin1.eml"), "helene@exemple.fr"))
    assert deliver(app, sandbox, response) == {
        "user_id": 1,
        "subject": "Problème de téléchargement",
        "note": "From: Hélène Lefèvre <helene@exemple.fr>\n\nBonjour,\n\n"
        "Le téléchargement de la facture échoue depuis hier \u2013 coût : 12 €.\n\nHélène",
        "metadata": {"bridge_event_id": event_id(response)},
    }


def test_mime_variant_in_a_multipart_post(app: Flask) -> None:
    fields = mime_post(fixture("mailgun", "reply.eml"))
    fields["body-mime"] = fields["body-mime"].decode()
    response = app.test_client().post("/hooks/support-mime", data=fields, content_type="multipart/form-data")
    assert stored_event(app, event_id(response))["message"]["subject"] == "Re: Accès bloqué à l'espace client"


def test_a_one_megabyte_body_mime_is_accepted(app: Flask) -> None:
    attachment = secrets.token_bytes(750_000)
    raw = fixture("mailgun", "reply.eml").replace(
        base64.encodebytes(PDF).replace(b"\n", b"\r\n"), base64.encodebytes(attachment).replace(b"\n", b"\r\n")
    )
    assert len(raw) > 1_000_000
    response = post_form(app, "support-mime", mime_post(raw))
    message = stored_event(app, event_id(response))["message"]
    assert message["attachments"] == [{"name": "relevé.pdf", "content_type": "application/pdf", "size": 750_000}]


# --- duplicates and replayed signatures -------------------------------------------------


def test_the_same_post_again_is_a_duplicate(app: Flask) -> None:
    fields = sign(posted("reply.json"))
    first = post_form(app, "support", fields)
    again = post_form(app, "support", fields)  # a Mailgun retry: same fields, same signature
    assert again.status_code == 200
    assert again.get_json() == {"event_id": event_id(first), "status": "queued", "duplicate": True}
    assert event_count(app) == 1


def test_the_same_message_id_with_a_new_token_is_a_duplicate(app: Flask) -> None:
    first = post_form(app, "support", sign(posted("reply.json")))
    other = post_form(app, "support", sign(posted("reply.json", recipient="billing@help.example.com")))
    assert other.get_json() == {"event_id": event_id(first), "status": "queued", "duplicate": True}


def test_a_replayed_signature_on_another_message_is_refused_across_processes(make_app: AppFactory) -> None:
    # two apps on one database stand for two web processes: the token is remembered in the database
    web_a, web_b = make_app(SOURCES), make_app(SOURCES)
    original = sign(posted("reply.json"))
    first = post_form(web_a, "support", original)
    forged = {**original, "Message-Id": "<forged@attacker.example>", "body-plain": "Please refund me"}
    refused = post_form(web_b, "support", forged)
    assert refused.status_code == 401, refused.get_data(as_text=True)
    assert refused.get_json()["error"] == "unauthorized"
    assert "already used for another message" in refused.get_json()["message"]
    again = post_form(web_b, "support", original)
    assert again.get_json() == {"event_id": event_id(first), "status": "queued", "duplicate": True}
    assert event_count(web_a) == 1


# --- signature and timestamp ------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"signature": None},
        {"token": None},
        {"timestamp": None},
        {"signature": "0" * 64},
        {"signature": "zz" * 32},
        {"signature": "é" * 64},
        {"token": "another-token"},
        {"timestamp": "soon"},
        {"timestamp": "1e9"},
    ],
)
def test_bad_or_missing_signature_is_401(app: Flask, change: dict[str, Any]) -> None:
    fields = {k: v for k, v in {**sign(posted("reply.json")), **change}.items() if v is not None}
    response = post_form(app, "support", fields)
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.get_json()["error"] == "unauthorized"
    assert event_count(app) == 0


def test_signature_made_with_another_key_is_401(app: Flask) -> None:
    response = post_form(app, "support", sign(posted("reply.json"), key="key-of-another-account"))
    assert response.status_code == 401
    assert KEY not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("age_seconds", "status"),
    [
        (11 * 3600, 200),  # the last Mailgun retry, about 8 h after the first try
        (12 * 3600 + 60, 401),
        (-120, 200),  # a little clock skew
        (-10 * 60, 401),
    ],
)
def test_timestamp_window(app: Flask, age_seconds: int, status: int) -> None:
    response = post_form(app, "support", sign(posted("reply.json"), timestamp=time.time() - age_seconds))
    assert response.status_code == status, response.get_data(as_text=True)


# --- rejected, discarded, wrong content type --------------------------------------------


def test_no_sender_and_no_body_is_406(app: Flask) -> None:
    fields = sign({"recipient": "support@help.example.com", "subject": "", "body-plain": "", "message-headers": "[]"})
    response = post_form(app, "support", fields)
    assert response.status_code == 406, response.get_data(as_text=True)
    assert response.get_json()["error"] == "unprocessable"
    assert event_count(app) == 0


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (posted("autoreply.json"), "automatic reply (Auto-Submitted: auto-replied)"),
        (with_headers(posted("reply.json"), ["Precedence", "bulk"]), "bulk mail (Precedence: bulk)"),
        (with_headers(posted("reply.json"), ["X-Autoreply", "yes"]), "automatic reply (X-Autoreply)"),
        (with_headers(posted("reply.json"), ["Return-Path", "<>"]), "bounce (null return path)"),
        (posted("reply.json", sender=""), "bounce (null return path)"),
        (
            with_headers(
                posted("reply.json"), ["From", "Mail Delivery System <MAILER-DAEMON@mx.example.net>"], drop="from"
            ),
            "bounce (MAILER-DAEMON)",
        ),
    ],
)
def test_automatic_replies_and_bounces_are_discarded(app: Flask, fields: dict[str, Any], reason: str) -> None:
    response = post_form(app, "support", sign(fields))
    assert response.get_json() == {"event_id": event_id(response), "status": "discarded"}
    event = stored_event(app, event_id(response))
    assert event["last_error"] == f"discarded: {reason}"
    assert event["ticket_request"] is None


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/json", b'{"signature": {"token": "t"}, "event-data": {}}'), ("text/plain", b"hello")],
)
def test_content_type_other_than_a_form_is_415(app: Flask, content_type: str, body: bytes) -> None:
    response = app.test_client().post("/hooks/support", data=body, content_type=content_type)
    assert response.status_code == 415
    assert response.get_json()["error"] == "unsupported_media_type"


# --- no input escapes as anything but a BridgeError --------------------------------------

FIELD_NAMES = st.sampled_from(
    ["from", "sender", "subject", "body-plain", "body-html", "message-headers", "Message-Id", "body-mime"]
)
FIELD_VALUES = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        ["[]", '[["From", "a@b.c"]]', "[[1, 2, 3]]", "{}", "null", '[["Auto-Submitted"]]', "<>", "=?x?q?=?="]
    ),
)
SOURCE = Source(name="support", kind="mailgun", secret=KEY)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fields=st.dictionaries(FIELD_NAMES, FIELD_VALUES, max_size=8),
    signed=st.booleans(),
    multipart=st.booleans(),
    timestamp=st.sampled_from([None, 0, 10**12]),  # now, stale, far ahead
)
def test_no_input_raises_anything_but_a_bridge_error(
    fields: dict[str, str], signed: bool, multipart: bool, timestamp: int | None
) -> None:
    data: dict[str, Any] = sign(fields, timestamp=timestamp) if signed else fields
    content_type = "multipart/form-data" if multipart else URLENCODED
    request = EnvironBuilder(method="POST", data=data, content_type=content_type).get_request()
    verify_then_parse(PROVIDERS["mailgun"], request, SOURCE)
