"""``sendgrid``: Inbound Parse posts, parsed and raw MIME, end to end to the SPP sandbox.

Fixtures are whole ``multipart/form-data`` bodies as SendGrid posts them (boundary ``xYzZY``,
text fields in the charsets ``charsets`` names). HTTP Basic credentials and, for the signed
source, the ECDSA signature of a security policy are added at test time with a key made here.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder, TestResponse

from bridge.errors import BridgeError
from bridge.providers import PROVIDERS
from bridge.providers.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, SendGridProvider
from bridge.sources import Source
from tests.conftest import CLIENTS, AppFactory
from tests.providers.helpers import (
    deliver,
    fixture,
    original,
    read_message,
    sha256,
    stored_event,
    verify_then_parse,
)

CREDENTIALS = "parse:Zx8-v2mQ-test-pass"
CONTENT_TYPE = "multipart/form-data; boundary=xYzZY"
POLICY_KEY = ec.generate_private_key(ec.SECP256R1())  # stands in for SendGrid's signing key
PUBLIC_KEY = base64.b64encode(
    POLICY_KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
).decode()
SOURCES = (
    CLIENTS
    + f"""sources:  # message: false keeps the body in the note, where these tests read it
  parse:
    kind: sendgrid
    message: false
    secret: "{CREDENTIALS}"
  parse-signed:
    kind: sendgrid
    message: false
    secret: "{CREDENTIALS}"
    verification_key: {PUBLIC_KEY}
  parse-spam:
    kind: sendgrid
    message: false
    secret: "{CREDENTIALS}"
    max_spam_score: 5
"""
)
NON_ASCII, HTML_ONLY, RAW_REPLY, REPLY_FILES = (
    "parsed_non_ascii.multipart",
    "parsed_html_only_attachments.multipart",
    "raw_reply.multipart",
    "parsed_reply_files.multipart",
)


def basic(credentials: str = CREDENTIALS) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def signed(body: bytes, timestamp: float | None = None, key: ec.EllipticCurvePrivateKey = POLICY_KEY) -> dict[str, str]:
    stamp = str(int(time.time() if timestamp is None else timestamp))
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: stamp}


def post(app: Flask, body: bytes, source: str = "parse", headers: dict[str, str] | None = None) -> TestResponse:
    headers = basic() if headers is None else headers
    return app.test_client().post(f"/hooks/{source}", data=body, content_type=CONTENT_TYPE, headers=headers)


def in_headers_block(body: bytes, *lines: bytes) -> bytes:
    """The fixture with header lines added to the posted ``headers`` block (after Received)."""
    marker = b"MIME-Version: 1.0\r\n"
    assert marker in body
    return body.replace(marker, marker + b"".join(line + b"\r\n" for line in lines), 1)


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app(SOURCES)


def test_parsed_mode_non_ascii_sender_subject_and_charsets(app: Flask, sandbox: Any) -> None:
    response = post(app, fixture("sendgrid", NON_ASCII))
    event_id = response.get_json()["event_id"]
    assert deliver(app, sandbox, response) == {
        "user_id": 30,  # "@bigcustomer.com"
        "subject": "Réclamation : facture n° 2026-118",
        "note": "From: Zoë Ångström <zoe@bigcustomer.com>\n\n"
        "Bonjour,\n\nLa facture n° 2026-118 a été débitée deux fois : 120 € au lieu de 60 €.\n"
        "Pourriez-vous l\N{RIGHT SINGLE QUOTATION MARK}annuler ?\n\nZoë",
        "metadata": {"bridge_event_id": event_id},
    }
    message = stored_event(app, event_id)["message"]
    assert message["message_id"] == "<CAH7x0Yq3f+8Wk2e@mail.bigcustomer.com>"
    assert message["html"].startswith('<div dir="ltr">Bonjour,<br><br>La facture n° 2026-118 a été')
    fields = message["fields"]
    assert fields["subject"] == "Réclamation : facture n° 2026-118"  # iso-8859-1 bytes, per charsets
    assert fields["envelope"] == {"to": ["support@parse.example.net"], "from": "zoe@bigcustomer.com"}
    assert fields["headers"]["message-id"] == "<CAH7x0Yq3f+8Wk2e@mail.bigcustomer.com>"
    assert (fields["spam_score"], fields["SPF"], fields["sender_ip"]) == ("0.1", "pass", "209.85.208.41")
    assert not {"text", "html", "email", "charsets"} & set(fields)


def test_charset_names_in_any_case_and_codecs_that_refuse_everything(app: Flask, sandbox: Any) -> None:
    body = fixture("sendgrid", NON_ASCII)
    odd = body.replace(b'"html":"iso-8859-1"', b'"html":"ISO-8859-1"').replace(b'"windows-1252"', b'"undefined"')
    assert odd != body
    first, second = post(app, body), post(app, odd.replace(b"<CAH7x0Yq3f+8Wk2e@", b"<other@"))
    assert deliver(app, sandbox, second)["note"] == deliver(app, sandbox, first)["note"]
    html = stored_event(app, second.get_json()["event_id"])["message"]["html"]
    assert "débitée" in html


def test_parsed_mode_html_only_with_attachments(app: Flask, sandbox: Any) -> None:
    response = post(app, fixture("sendgrid", HTML_ONLY))
    event_id = response.get_json()["event_id"]
    assert deliver(app, sandbox, response) == {
        "user_id": 12,
        "subject": "Export fails since this morning",
        "note": "From: Alice Martin <alice@example.com>\n\n"
        "Hello,\n\nOur export fails since this morning:\n\n"
        "  * CSV export: error 500\n  * PDF export: times out\n\nScreenshot below.\n\nAlice\n\n"
        "Attachments (not forwarded):\n- invoice-2026-03.pdf (2.0 kB)\n- screenshot.png (5.0 kB)",
        "metadata": {"bridge_event_id": event_id},
    }
    message = stored_event(app, event_id)["message"]
    assert message["attachments"] == [
        {"name": "invoice-2026-03.pdf", "content_type": "application/pdf", "size": 2059},
        {"name": "screenshot.png", "content_type": "image/png", "size": 5128},
    ]


def test_parsed_mode_attachments_keep_their_bytes() -> None:
    html_only = read_message("sendgrid", fixture("sendgrid", HTML_ONLY), CONTENT_TYPE).attachments
    assert [(a.name, sha256(a.content)) for a in html_only] == [
        ("invoice-2026-03.pdf", sha256(original("invoice-2026-03.pdf"))),
        ("screenshot.png", sha256(original("screenshot-wide.png"))),
    ]
    reply = read_message("sendgrid", fixture("sendgrid", REPLY_FILES), CONTENT_TYPE).attachments
    assert [(a.name, a.content_type, a.size, sha256(a.content)) for a in reply] == [
        ("Rechnung 4711 \u2013 März.pdf", "application/pdf", 2175, sha256(original("rechnung-4711.pdf"))),
        ("Lieferung beschädigt.png", "image/png", 69, sha256(original("lieferung.png"))),
    ]


def test_raw_mode_attachments_keep_their_bytes_and_a_broken_one_its_problem() -> None:
    eml = fixture("email", "files.eml")
    body = b'--xYzZY\r\nContent-Disposition: form-data; name="email"\r\n\r\n' + eml + b"\r\n--xYzZY--\r\n"
    attachments = read_message("sendgrid", body, CONTENT_TYPE).attachments
    assert [(a.name, sha256(a.content), a.problem) for a in attachments] == [
        ("Übersicht März 2026 \u2013 Rechnungen.pdf", sha256(original("invoice-2026-03.pdf")), None),
        ("Foto Schaden \u2013 Küche.png", sha256(original("lieferung.png")), None),
        ("kontoauszug.csv", sha256(original("kontoauszug.csv").replace(b"\n", b"\r\n")), None),
        ("scan.pdf", None, "could not be decoded: invalid base64"),
    ]


@pytest.mark.parametrize(
    "name, references",
    [
        # parsed mode: In-Reply-To and References in the posted header block
        (REPLY_FILES, ["<ticket-4533.1773238000@parse.example.net>", "<CAF=sg-first-70@mail.bigcustomer.com>"]),
        (RAW_REPLY, ["<ticket-4521.1773068520@parse.example.net>"]),  # raw mode: in the message
        (NON_ASCII, []),
    ],
)
def test_in_reply_to_and_references_are_read_in_both_modes(app: Flask, name: str, references: list[str]) -> None:
    response = post(app, fixture("sendgrid", name))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert stored_event(app, response.get_json()["event_id"])["message"]["references"] == references


def test_attachments_follow_their_numbers_and_survive_a_repeated_name(app: Flask) -> None:
    def file(name: str, filename: str, size: int) -> bytes:
        disposition = f'form-data; name="{name}"; filename="{filename}"'.encode()
        return b"--xYzZY\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + b"x" * size + b"\r\n"

    files = file("attachment10", "j.txt", 10) + file("attachment2", "b.txt", 2) + file("attachment2", "b2.txt", 3)
    body = fixture("sendgrid", NON_ASCII).replace(b"--xYzZY--\r\n", files + b"--xYzZY--\r\n")
    response = post(app, body)
    assert response.status_code == 200, response.get_json()
    attachments = stored_event(app, response.get_json()["event_id"])["message"]["attachments"]
    assert [(a["name"], a["size"]) for a in attachments] == [("b.txt", 2), ("b2.txt", 3), ("j.txt", 10)]


def test_raw_mime_mode_reply_keeps_the_quote_and_8bit_latin1(app: Flask, sandbox: Any) -> None:
    response = post(app, fixture("sendgrid", RAW_REPLY))
    event_id = response.get_json()["event_id"]
    assert deliver(app, sandbox, response) == {
        "user_id": 1,  # defaults.user_id
        "subject": "Re: [#4521] Login problem",
        "note": "From: Bob Kowalski <bob@unknown-sender.org>\n\n"
        'Thanks, the reset link worked, but now I get "session expired" after a minute.\n\n'
        "Grüße, Bob\n\n"
        "On Mon, 9 Mar 2026 at 16:02, Support <support@parse.example.net> wrote:\n"
        "> Hi Bob,\n>\n> please use the reset link we sent you.\n>\n> Regards, Support",
        "metadata": {"bridge_event_id": event_id},
    }
    fields = stored_event(app, event_id)["message"]["fields"]
    assert fields["headers"]["in-reply-to"] == "<ticket-4521.1773068520@parse.example.net>"
    assert "email" not in fields


def test_a_malformed_encoded_word_does_not_fail_the_message(app: Flask, sandbox: Any) -> None:
    broken = b"Subject: =?x?b?=?utf-8?q?=?utf-8?q?"
    body = fixture("sendgrid", NON_ASCII).replace(
        b"Subject: =?ISO-8859-1?Q?R=E9clamation_:_facture_n=B0_2026-118?=", broken
    )
    assert deliver(app, sandbox, post(app, body))["subject"] == "=?x?b?=?utf-8?q?=?utf-8?q?"


def test_message_id_is_the_dedupe_key(app: Flask) -> None:
    body = fixture("sendgrid", NON_ASCII)
    first = post(app, body).get_json()
    # SendGrid's retry of the same mail, spam fields recomputed: still the same Message-ID
    rescored = body.replace(b"\r\n0.1\r\n", b"\r\n0.2\r\n")
    assert rescored != body
    again = post(app, rescored)
    assert again.status_code == 200
    assert again.get_json() == {"event_id": first["event_id"], "status": "queued", "duplicate": True}
    other = post(app, body.replace(b"<CAH7x0Yq3f+8Wk2e@", b"<CAH7x0Yq3f+8Wk2f@"))
    assert "duplicate" not in other.get_json()


def test_without_message_id_sender_date_subject_and_body_are_the_key(app: Flask) -> None:
    body = fixture("sendgrid", NON_ASCII).replace(b"Message-ID: <CAH7x0Yq3f+8Wk2e@mail.bigcustomer.com>\r\n", b"")
    first = post(app, body).get_json()
    assert post(app, body).get_json() == {**first, "duplicate": True}
    event = stored_event(app, first["event_id"])
    assert event["message"]["message_id"] is None and event["message"]["dedupe_key"].startswith("sha256:")


@pytest.mark.parametrize(
    "lines",
    [
        (b"Auto-Submitted: auto-replied",),
        (b"X-Autoreply: yes",),
        (b"Precedence: bulk",),
        (b"Return-Path: <>",),
    ],
)
def test_automatic_replies_are_discarded(app: Flask, lines: tuple[bytes, ...]) -> None:
    response = post(app, in_headers_block(fixture("sendgrid", NON_ASCII), *lines))
    assert response.status_code == 200 and response.get_json()["status"] == "discarded"
    event = stored_event(app, response.get_json()["event_id"])
    assert event["ticket_request"] is None and event["last_error"].startswith("discarded: ")


def test_bounce_from_mailer_daemon_in_raw_mode_is_discarded(app: Flask) -> None:
    body = fixture("sendgrid", RAW_REPLY).replace(
        b"From: Bob Kowalski <bob@unknown-sender.org>",
        b"From: Mail Delivery Subsystem <MAILER-DAEMON@smtp.unknown-sender.org>",
    )
    response = post(app, body.replace(b'"from":"bob@unknown-sender.org"', b'"from":""'))
    assert response.get_json()["status"] == "discarded"
    assert stored_event(app, response.get_json()["event_id"])["last_error"] == "discarded: bounce (null return path)"


def test_spam_score_above_max_spam_score_is_discarded(app: Flask) -> None:
    spammy = fixture("sendgrid", NON_ASCII).replace(b"\r\n0.1\r\n", b"\r\n7.3\r\n")
    response = post(app, spammy, source="parse-spam")
    assert response.get_json()["status"] == "discarded"
    assert stored_event(app, response.get_json()["event_id"])["last_error"] == "discarded: spam: score 7.3 above 5"
    assert post(app, spammy, source="parse").get_json()["status"] == "queued"  # no threshold, no filter
    assert post(app, fixture("sendgrid", HTML_ONLY), source="parse-spam").get_json()["status"] == "queued"


@pytest.mark.parametrize("credentials", [None, "parse:wrong", "other:Zx8-v2mQ-test-pass"])
def test_missing_or_wrong_basic_credentials_are_401(app: Flask, credentials: str | None) -> None:
    response = post(app, fixture("sendgrid", NON_ASCII), headers=basic(credentials) if credentials else {})
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"


def test_signed_post_is_accepted(app: Flask, sandbox: Any) -> None:
    body = fixture("sendgrid", RAW_REPLY)
    response = post(app, body, source="parse-signed", headers={**basic(), **signed(body)})
    assert deliver(app, sandbox, response)["subject"] == "Re: [#4521] Login problem"


@pytest.mark.parametrize(
    "case",
    ["unsigned", "wrong key", "tampered body", "stale", "ahead of the clock", "no timestamp", "garbage signature"],
)
def test_bad_signatures_are_401(app: Flask, case: str) -> None:
    body = fixture("sendgrid", RAW_REPLY)
    headers = {
        "unsigned": {},
        "wrong key": signed(body, key=ec.generate_private_key(ec.SECP256R1())),
        "tampered body": signed(body.replace(b"Bob", b"Rob")),
        "stale": signed(body, timestamp=time.time() - 6 * 60),
        "ahead of the clock": signed(body, timestamp=time.time() + 6 * 60),
        "no timestamp": {SIGNATURE_HEADER: signed(body)[SIGNATURE_HEADER]},
        "garbage signature": {**signed(body), SIGNATURE_HEADER: "not base64!"},
    }[case]
    response = post(app, body, source="parse-signed", headers={**basic(), **headers})
    assert response.status_code == 401, response.get_json()


def test_a_good_signature_does_not_replace_the_basic_credentials(app: Flask) -> None:
    body = fixture("sendgrid", RAW_REPLY)
    assert post(app, body, source="parse-signed", headers=signed(body)).status_code == 401


def test_neither_headers_nor_email_is_rejected_422(app: Flask) -> None:
    body = b'--xYzZY\r\nContent-Disposition: form-data; name="to"\r\n\r\nsupport@parse.example.net\r\n--xYzZY--\r\n'
    response = post(app, body)
    assert response.status_code == 422
    assert "neither 'headers'" in response.get_json()["message"]


def test_malformed_envelope_json_is_rejected_422(app: Flask) -> None:
    response = post(app, fixture("sendgrid", NON_ASCII).replace(b'{"to":["support', b'{"to":[support'))
    assert response.status_code == 422


def test_other_content_types_are_415(app: Flask) -> None:
    response = app.test_client().post("/hooks/parse", json={"headers": "From: a@b.c"}, headers=basic())
    assert response.status_code == 415


def test_a_body_that_is_not_multipart_is_400(app: Flask) -> None:
    assert post(app, b"this is not multipart").status_code == 400


def test_options_are_checked() -> None:
    provider = SendGridProvider()
    provider.validate_options({"verification_key": PUBLIC_KEY, "max_spam_score": 5})
    pem = POLICY_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    provider.validate_options({"verification_key": pem.decode()})
    rsa_like = base64.b64encode(b"not a key").decode()
    for options in ({"verification_key": rsa_like}, {"max_spam_score": "lots"}, {"max_spam_score": [1]}):
        with pytest.raises(ValueError):
            provider.validate_options(options)


# --- no input makes the provider raise anything but the bridge's own errors -------------------

SOURCE = Source(name="parse", kind="sendgrid", secret=CREDENTIALS, options={"max_spam_score": 5})
FIELD_NAMES = st.sampled_from(
    (
        "headers",
        "email",
        "text",
        "html",
        "from",
        "subject",
        "envelope",
        "charsets",
        "attachment-info",
        "spam_score",
        "attachment1",
        "attachments",
        "x",
    )
)
CHARSETS = st.dictionaries(
    st.sampled_from(["text", "html", "subject", "from", "headers"]),
    st.sampled_from(["UTF-8", "iso-8859-1", "ISO-8859-1", "undefined", "utf-16", "bogus", "idna", ""]),
).map(lambda d: ("charsets", json.dumps(d).encode(), None))
part = st.tuples(FIELD_NAMES, st.binary(max_size=200), st.none() | st.text(max_size=12)) | CHARSETS


def multipart(parts: list[tuple[str, bytes, str | None]]) -> bytes:
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += (
            b"--xYzZY\r\nContent-Disposition: " + disposition.encode("utf-8", "replace") + b"\r\n\r\n" + value + b"\r\n"
        )
    return out + b"--xYzZY--\r\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.lists(part, max_size=6).map(multipart),
    boundary=st.sampled_from(["xYzZY", "", "other"]),
)
def test_parse_raises_only_bridge_errors(body: bytes, boundary: str) -> None:
    request = EnvironBuilder(
        method="POST", data=body, content_type=f"multipart/form-data; boundary={boundary}", headers=basic()
    ).get_request()
    verify_then_parse(PROVIDERS["sendgrid"], request, SOURCE)


ASCII = st.characters(min_codepoint=33, max_codepoint=126)


@settings(max_examples=100, deadline=None)
@given(signature=st.text(ASCII, max_size=100), timestamp=st.text(ASCII, max_size=20))
def test_signature_check_raises_only_bridge_errors(signature: str, timestamp: str) -> None:
    source = Source(name="s", kind="sendgrid", secret=CREDENTIALS, options={"verification_key": PUBLIC_KEY})
    headers = {**basic(), SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: timestamp}
    request = EnvironBuilder(method="POST", data=b"x", content_type=CONTENT_TYPE, headers=headers).get_request()
    with pytest.raises(BridgeError):
        PROVIDERS["sendgrid"].verify(request, source)
