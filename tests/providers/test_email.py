"""``email``: a raw RFC 822 message as the body, end to end to the SPP sandbox.

The fixtures are whole messages as a mail server stores them (CRLF line ends, encoded
words, transfer encodings, the charsets seen in real mail); the token is added at test time.
"""

# ruff: noqa: RUF001  (en dashes and curly quotes are what these charset tests are about)

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder, TestResponse

from bridge.providers import PROVIDERS, mime
from bridge.providers.mime import decode_bytes
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

TOKEN = "mail-token-5Jq0c3YVwz8RkT2m"
SOURCES = (
    CLIENTS
    + f"""sources:  # message: false keeps the body in the note, where these tests read it
  mail:
    kind: email
    message: false
    secret: {TOKEN}
  threads:
    kind: email
    message: false
    secret: {TOKEN}
    ticket:
      subject: "[mail] {{{{ subject }}}}"
      tags: [email]
      metadata:
        message_id: "{{{{ message_id }}}}"
        in_reply_to: "{{{{ fields.in_reply_to }}}}"
        to: "{{{{ fields.to | join(', ') }}}}"
"""
)


def post(
    app: Flask,
    raw: bytes,
    source: str = "mail",
    content_type: str = "message/rfc822",
    headers: dict[str, str] | None = None,
) -> TestResponse:
    return app.test_client().post(
        f"/hooks/{source}",
        data=raw,
        content_type=content_type,
        headers={"X-Bridge-Token": TOKEN} if headers is None else headers,
    )


def eml(name: str) -> bytes:
    return fixture("email", name)


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app(SOURCES)


# --- each fixture, end to end: the exact StoreTicketRequest SPP receives ---------------

EXPECTED = {
    "utf8_rfc2047.eml": {
        "user_id": 30,
        "subject": "Grüße aus Köln – Rechnung Nr. 4711 fehlt",
        "note": "From: Jürgen Müller <juergen@bigcustomer.com>\n\nGuten Tag,\n\n"
        "die Rechnung Nr. 4711 über 1.250,00 € ist bei uns nicht angekommen.\n\nViele Grüße\nJürgen Müller",
    },
    "latin1.eml": {
        "user_id": 1,
        "subject": "Problème de connexion à l'espace client",
        "note": "From: François Lefèvre <francois@example.fr>\n\nBonjour,\n\n"
        "je n'arrive plus à me connecter à l'espace client depuis la mise à jour.\n"
        "Le message d'erreur indique « accès refusé ».\n\nCordialement,\nFrançois Lefèvre",
    },
    "windows1252.eml": {
        "user_id": 1,
        "subject": "Refund € amount – still waiting",
        "note": "From: O'Brien, Siobhan <siobhan@example.ie>\n\nHello,\n\n"
        "you promised a refund of €49.90 – it’s been two weeks. “Within 5 days”, you said.\n\nSiobhan",
    },
    "iso2022jp.eml": {
        "user_id": 1,
        "subject": "請求書の再発行のお願い",
        "note": "From: 山田太郎 <taro.yamada@example.jp>\n\n"
        "お世話になっております。\n先月分の請求書を再発行していただけますか。\nよろしくお願いいたします。\n山田",
    },
    "utf8_undeclared.eml": {
        "user_id": 1,
        "subject": "Fråga om leverans",
        "note": "From: Zoë Ångström <zoe@example.se>\n\nHej!\n\n"
        "När kommer min beställning? Jag har väntat i två veckor.\n\nZoë",
    },
    "html_only.eml": {
        "user_id": 12,
        "subject": "Order #1042 arrived damaged",
        "note": "From: Alice Example <alice@example.com>\n\n"
        "Hi team,\n\n  my order #1042 arrived damaged:\n\n"
        "    * the lid is cracked\n    * two cups are broken\n\n"
        "  Could you send a replacement?\n\n  Thanks,\n  Alice",
    },
    "reply_quoted.eml": {
        "user_id": 12,
        "subject": "Re: [Ticket #88] Order #1042 arrived damaged",
        "note": "From: Alice Example <alice@example.com>\n\n"
        "Thanks, the replacement is fine. Please ship it to my office address instead.\n\n"
        "On Wed, Nov 25, 2026 at 5:12 PM Acme Support <support@acme.example> wrote:\n"
        "> Hi Alice,\n>\n> sorry about that! We can send a replacement set today.\n"
        "> Shall we use the address on the order?\n>\n> Acme Support",
    },
    "attachments.eml": {
        "user_id": 30,
        "subject": "Unterlagen für die Rückerstattung",
        "note": "From: Jürgen Müller <juergen@bigcustomer.com>\n\nHello,\n\n"
        "attached: the invoice, a photo of the delivery and the original order mail.\n\nJuergen\n\n"
        "Attachments (not forwarded):\n"
        "- Rechnung 4711.pdf (2.1 kB)\n- Lieferung beschädigt.png (69 B)\n- Your order.eml (180 B)",
    },
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_message_becomes_its_ticket(app: Flask, sandbox: Any, name: str) -> None:
    response = post(app, eml(name))
    event_id = response.get_json()["event_id"]
    assert deliver(app, sandbox, response) == {**EXPECTED[name], "metadata": {"bridge_event_id": event_id}}


def test_attachments_are_listed_with_type_and_size(app: Flask) -> None:
    response = post(app, eml("attachments.eml"))
    message = stored_event(app, response.get_json()["event_id"])["message"]
    assert message["attachments"] == [
        {"name": "Rechnung 4711.pdf", "content_type": "application/pdf", "size": 2175},
        {"name": "Lieferung beschädigt.png", "content_type": "image/png", "size": 69},
        {"name": "Your order.eml", "content_type": "message/rfc822", "size": 180},
    ]
    assert "JVBERi0xLjQK" not in json.dumps(message)  # the PDF's base64 is not in the normalized message


def test_attachments_keep_their_bytes() -> None:
    message = read_message("email", eml("attachments.eml"), "message/rfc822")
    assert [(a.name, sha256(a.content)) for a in message.attachments[:2]] == [
        ("Rechnung 4711.pdf", sha256(original("rechnung-4711.pdf"))),
        ("Lieferung beschädigt.png", sha256(original("lieferung.png"))),
    ]
    forwarded = message.attachments[2]  # message/rfc822: the enclosed mail as a file of its own
    assert forwarded.content is not None and forwarded.content.startswith(b"From: Shop <orders@")
    assert (forwarded.name, forwarded.size) == ("Your order.eml", len(forwarded.content))


def test_files_are_decoded_and_a_broken_one_is_listed_with_its_problem(app: Flask) -> None:
    """files.eml: Thunderbird's RFC 2231 name split in two, Gmail's encoded-word name, a
    quoted-printable CSV, and a base64 scan with a gateway's notice in the middle of it."""
    message = read_message("email", eml("files.eml"), "message/rfc822")
    assert [(a.name, a.content_type, a.size, sha256(a.content), a.problem) for a in message.attachments] == [
        (
            "Übersicht März 2026 – Rechnungen.pdf",
            "application/pdf",
            2059,
            sha256(original("invoice-2026-03.pdf")),
            None,
        ),
        ("Foto Schaden – Küche.png", "image/png", 69, sha256(original("lieferung.png")), None),
        # a text part travels with CRLF line ends, the form the file has in mail
        ("kontoauszug.csv", "text/csv", 39, sha256(original("kontoauszug.csv").replace(b"\n", b"\r\n")), None),
        ("scan.pdf", "application/pdf", 473, None, "could not be decoded: invalid base64"),
    ]
    response = post(app, eml("files.eml"))
    assert response.status_code == 200, response.get_data(as_text=True)
    stored = stored_event(app, response.get_json()["event_id"])["message"]
    assert stored["body"] == message.body
    assert stored["attachments"][3] == {
        "name": "scan.pdf",
        "content_type": "application/pdf",
        "size": 473,
        "problem": "could not be decoded: invalid base64",
    }
    assert "JVBERi0x" not in json.dumps(stored)  # no file's bytes are stored with the message


@pytest.mark.parametrize(
    "encoded, content",
    [
        (b"SGVsbG8gd29ybGQ=", b"Hello world"),
        (b"SGVsbG8gd29ybGQ", b"Hello world"),  # padding left off
        (b"SGVsbG8g \r\nd29ybGQ=", b"Hello world"),  # a space at a line's end
        (b"SGVsbG8gd29ybGQ=\r\nQUFB", None),  # data after the padding
        (b"SGVsbG8gd29ybGQ!!!", None),  # characters out of the alphabet
        (b"SGVsbG8gd29yb", None),  # a length no padding can mend
        (b"not base64 at all", None),
    ],
)
def test_base64_the_stdlib_decodes_only_by_guessing_is_a_problem(encoded: bytes, content: bytes | None) -> None:
    """``get_payload(decode=True)`` never fails: it drops what is out of the alphabet, or returns
    the encoded text, and registers a defect on the part; the defects decide."""
    raw = (
        b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\nsee the file\r\n--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=f.pdf\r\n\r\n"
        + encoded
        + b"\r\n--b--\r\n"
    )
    [attachment] = mime.parse_rfc822(raw).attachments
    assert attachment.content == content
    assert attachment.problem == (None if content else "could not be decoded: invalid base64")


def test_bad_uuencode_is_a_problem_and_good_uuencode_is_decoded() -> None:
    def with_file(uuencoded: bytes) -> bytes:
        return (
            b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
            b"Content-Type: text/plain\r\n\r\nsee the file\r\n--b\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: x-uuencode\r\nContent-Disposition: attachment; filename=f.txt\r\n\r\n"
            + uuencoded
            + b"\r\n--b--\r\n"
        )

    [good] = mime.parse_rfc822(with_file(b"begin 644 f.txt\r\n%2&5L;&\\\r\n`\r\nend")).attachments
    [bad] = mime.parse_rfc822(with_file(b"no begin line here")).attachments
    assert (good.content, good.problem) == (b"Hello", None)
    assert (bad.content, bad.problem) == (None, "could not be decoded: invalid uuencode")


# --- references: what a reply answers ---------------------------------------------------


def test_a_reply_names_the_mail_it_answers_first(app: Flask) -> None:
    response = post(app, eml("reply_thread.eml"))
    message = stored_event(app, response.get_json()["event_id"])["message"]
    assert message["references"] == [
        "<ticket-88.note-2@acme.example>",  # In-Reply-To, its comment left out
        "<CAH7zQ2-reply@mail.example.com>",  # then References, the newest first, each once
        "<ticket-88@acme.example>",
        "<0100018c-html-only@email.example.com>",
    ]


def test_a_reference_equals_the_message_id_of_the_mail_it_names(app: Flask) -> None:
    earlier = stored_event(app, post(app, eml("reply_quoted.eml")).get_json()["event_id"])["message"]
    later = stored_event(app, post(app, eml("reply_thread.eml")).get_json()["event_id"])["message"]
    assert earlier["message_id"] == "<CAH7zQ2-reply@mail.example.com>"
    assert earlier["message_id"] in later["references"]
    assert earlier["references"] == ["<ticket-88@acme.example>", "<0100018c-html-only@email.example.com>"]


def test_a_mail_that_answers_nothing_has_no_references(app: Flask) -> None:
    message = stored_event(app, post(app, eml("latin1.eml")).get_json()["event_id"])["message"]
    assert message["references"] == []


def test_references_are_capped_at_fifty_newest_first() -> None:
    ids = " ".join(f"<m{n}@example.com>" for n in range(200))
    raw = b"From: a@example.com\r\nIn-Reply-To: <m199@example.com>\r\nReferences: " + ids.encode() + b"\r\n\r\nhi\r\n"
    references = read_message("email", raw, "message/rfc822").references
    assert len(references) == mime.MAX_REFERENCES == 50
    assert references[:2] == ["<m199@example.com>", "<m198@example.com>"] and references[-1] == "<m150@example.com>"


def test_templates_see_the_headers(app: Flask, sandbox: Any) -> None:
    response = post(app, eml("reply_quoted.eml"), source="threads")
    sent = deliver(app, sandbox, response)
    assert {k: v for k, v in sent.items() if k != "note"} == {
        "user_id": 12,
        "subject": "[mail] Re: [Ticket #88] Order #1042 arrived damaged",
        "tags": ["email"],
        "metadata": {
            "message_id": "<CAH7zQ2-reply@mail.example.com>",
            "in_reply_to": "<ticket-88@acme.example>",
            "to": "support@acme.example",
            "bridge_event_id": response.get_json()["event_id"],
        },
    }
    fields = stored_event(app, response.get_json()["event_id"])["message"]["fields"]
    assert fields["from"] == "Alice Example <alice@example.com>"
    assert fields["headers"]["references"] == "<0100018c-html-only@email.example.com> <ticket-88@acme.example>"


def test_text_plain_and_an_mbox_from_line_are_accepted(app: Flask, sandbox: Any) -> None:
    # what a Postfix pipe with flags=FR hands over: a "From " line and a Return-Path first
    raw = b"From alice@example.com  Thu Nov 26 08:02:55 2026\r\nReturn-Path: <alice@example.com>\r\n" + eml(
        "html_only.eml"
    )
    response = post(app, raw, content_type="text/plain; charset=utf-8")
    assert deliver(app, sandbox, response)["note"] == EXPECTED["html_only.eml"]["note"]


# --- charsets a naive decoder gets wrong -------------------------------------------------------

# The five bytes Windows-1252 leaves undefined, in an ISO-8859-1 body: the mail is still Latin-1.
C1_LATIN1 = b"From: a@example.fr\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nd\xe9j\xe0 vu \x81 caf\xe9\r\n"
UNDEFINED = b"From: a@example.fr\r\nContent-Type: text/plain; charset=undefined\r\n\r\nCaf\xc3\xa9 ouvert\r\n"


def test_shared_decoder_keeps_latin1_with_a_c1_byte() -> None:
    assert mime.parse_rfc822(C1_LATIN1).text == "déjà vu \x81 café"


def test_shared_decoder_survives_the_undefined_charset() -> None:
    assert mime.parse_rfc822(UNDEFINED).text == "Café ouvert"


def test_shared_parser_gives_plain_newlines() -> None:
    assert mime.parse_rfc822(b"From: a@example.fr\r\n\r\nline 1\r\nline 2\r\n").text == "line 1\nline 2"


@pytest.mark.parametrize(
    "raw, text",
    [(C1_LATIN1, "déjà vu \x81 café"), (UNDEFINED, "Café ouvert")],
    ids=["latin1-c1-byte", "charset-undefined"],
)
def test_bodies_in_charsets_the_shared_decoder_got_wrong(app: Flask, raw: bytes, text: str) -> None:
    response = post(app, raw)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert stored_event(app, response.get_json()["event_id"])["message"]["body"] == text


@pytest.mark.parametrize(
    "payload, declared, text",
    [
        ("naïve €".encode("cp1252"), "iso-8859-1", "naïve €"),  # Latin-1 label on Windows-1252 text
        ("naïve".encode(), "us-ascii", "naïve"),  # 8-bit UTF-8 labelled ASCII
        ("naïve".encode("latin-1"), "utf-8", "naïve"),  # a wrong UTF-8 label
        (b"\x81", None, "\ufffd"),  # no label, not UTF-8, not Windows-1252
        ("café".encode(), "punycode", "café"),  # a codec that raises plain UnicodeError
    ],
)
def test_decode_bytes_falls_back_sensibly(payload: bytes, declared: str | None, text: str) -> None:
    assert decode_bytes(payload, declared) == text


# --- de-duplication: Message-ID, else a hash of from, date, subject and body ------------


def test_the_same_message_id_is_a_duplicate(app: Flask) -> None:
    first = post(app, eml("latin1.eml")).get_json()
    resent = eml("latin1.eml").replace(b"Bonjour", b"Salut")
    assert post(app, resent).get_json() == {"event_id": first["event_id"], "status": "queued", "duplicate": True}


def test_without_message_id_the_content_is_the_key(app: Flask) -> None:
    raw = eml("windows1252.eml").replace(b"Message-ID: <000001d9a1b2$c3d4e5f0$0a0b0c0d@example.ie>\r\n", b"")
    first = post(app, raw).get_json()
    again = post(app, raw).get_json()
    assert again == {"event_id": first["event_id"], "status": "queued", "duplicate": True}
    changed = post(app, raw.replace(b"Siobhan\r\n", b"Siobhan O'Brien\r\n")).get_json()
    assert changed["event_id"] != first["event_id"] and "duplicate" not in changed
    assert stored_event(app, first["event_id"])["message"]["dedupe_key"].startswith("sha256:")


def test_a_very_long_message_id_still_dedupes(app: Flask) -> None:
    raw = eml("latin1.eml").replace(b"<20261123182000.5521@example.fr>", b"<" + b"x" * 400 + b"@example.fr>")
    first = post(app, raw).get_json()
    assert post(app, raw).get_json() == {"event_id": first["event_id"], "status": "queued", "duplicate": True}


# --- the secret ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, query",
    [({}, ""), ({"X-Bridge-Token": "wrong"}, ""), ({}, "?token=wrong")],
    ids=["none", "wrong-header", "wrong-query"],
)
def test_missing_or_wrong_token_is_401(app: Flask, headers: dict[str, str], query: str) -> None:
    response = app.test_client().post(
        f"/hooks/mail{query}", data=eml("latin1.eml"), content_type="message/rfc822", headers=headers
    )
    assert response.status_code == 401


def test_token_in_the_query_is_accepted(app: Flask) -> None:
    response = post(app, eml("latin1.eml"), source=f"mail?token={TOKEN}", headers={})
    assert response.status_code == 200


# --- what is not a message ---------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"\r\n  \r\n", b"Hello support, my printer is broken.\r\nRegards", b"\x00\x01\x02binary"],
    ids=["empty", "blank", "no-headers", "binary"],
)
def test_a_body_that_is_no_message_is_400(app: Flask, raw: bytes) -> None:
    response = post(app, raw)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"] == "bad_payload"


def test_a_header_the_stdlib_cannot_parse_is_kept_as_sent(app: Flask, sandbox: Any) -> None:
    # email.headerregistry raises IndexError on this Cc; the rest of the message is fine
    raw = eml("latin1.eml").replace(b"To: support@acme.example\r\n", b'To: support@acme.example\r\nCc: "\r\n')
    response = post(app, raw)
    assert deliver(app, sandbox, response)["note"] == EXPECTED["latin1.eml"]["note"]
    fields = stored_event(app, response.get_json()["event_id"])["message"]["fields"]
    assert (fields["headers"]["cc"], fields["cc"]) == ('"', [])


def test_a_malformed_encoded_word_does_not_fail_the_message(app: Flask, sandbox: Any) -> None:
    # the stdlib's decode_header raises HeaderParseError on broken base64 in an encoded word;
    # the header parser itself is lenient with the From one (it decodes what it can)
    raw = b"From: =?utf-8?b?Q?= <alice@example.com>\r\nSubject: =?x?b?=?utf-8?q?=?utf-8?q?\r\n\r\nHello\r\n"
    sent = deliver(app, sandbox, post(app, raw))
    assert (sent["subject"], sent["note"]) == (
        "=?x?b?=?utf-8?q?=?utf-8?q?",
        "From: Q <alice@example.com>\n\nHello",
    )


def test_a_message_without_a_from_address_is_422(app: Flask) -> None:
    response = post(app, b"Subject: hello\r\nTo: support@acme.example\r\n\r\nWho am I?\r\n")
    assert response.status_code == 422
    assert "From" in response.get_json()["message"]


@pytest.mark.parametrize("content_type", ["application/json", "application/octet-stream", "multipart/form-data"])
def test_other_content_types_are_415(app: Flask, content_type: str) -> None:
    assert post(app, eml("latin1.eml"), content_type=content_type).status_code == 415


# --- automatic replies, bounces, bulk mail: stored as discarded ------------------------------


@pytest.mark.parametrize(
    "name, reason",
    [
        ("auto_reply.eml", "discarded: automatic reply (Auto-Submitted: auto-replied)"),
        ("bounce.eml", "discarded: bounce (null return path)"),
        ("bulk.eml", "discarded: bulk mail (Precedence: bulk)"),
    ],
)
def test_automatic_mail_is_discarded_with_its_reason(app: Flask, sandbox: Any, name: str, reason: str) -> None:
    response = post(app, eml(name))
    assert response.get_json()["status"] == "discarded"
    event = stored_event(app, response.get_json()["event_id"])
    assert (event["status"], event["last_error"], event["ticket_request"]) == ("discarded", reason, None)
    deliver_all(get_runtime(app))
    assert sandbox.sandbox.tickets == []


def test_mailer_daemon_without_a_null_return_path_is_discarded(app: Flask) -> None:
    raw = eml("bounce.eml").replace(b"Return-Path: <>\r\n", b"")
    event = stored_event(app, post(app, raw).get_json()["event_id"])
    assert event["last_error"] == "discarded: bounce (MAILER-DAEMON)"


def test_a_nul_in_the_quoted_header_is_stored_safely(app: Flask) -> None:
    raw = eml("auto_reply.eml").replace(b"auto-replied", b"auto-\x00replied")
    response = post(app, raw)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert stored_event(app, response.get_json()["event_id"])["last_error"].startswith("discarded: automatic reply")


# --- whatever arrives, the parser raises nothing but the bridge's own errors --------------

_charsets = st.sampled_from(["utf-8", "iso-8859-1", "iso-2022-jp", "undefined", "idna", "punycode", "utf-16", "x-bad"])
_ctes = st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "binary", "bogus"])
_header_line = st.builds(
    "{}: {}\r\n".format,
    st.sampled_from(["From", "Subject", "Message-ID", "Auto-Submitted", "Return-Path", "To", "Date", "X-Odd"]),
    st.text(max_size=40).map(lambda s: s.replace("\r", "").replace("\n", " ")),
)


@st.composite
def _messages(draw: st.DrawFn) -> bytes:
    head = "".join(draw(st.lists(_header_line, max_size=6)))
    if draw(st.booleans()):
        boundary = "b0und"
        part = (
            f"--{boundary}\r\nContent-Type: text/{draw(st.sampled_from(['plain', 'html']))}; "
            f"charset={draw(_charsets)}\r\nContent-Transfer-Encoding: {draw(_ctes)}\r\n"
            f"Content-Disposition: {draw(st.sampled_from(['inline', 'attachment; filename=x', 'attachment']))}\r\n\r\n"
        )
        head += f"Content-Type: multipart/{draw(st.sampled_from(['mixed', 'alternative']))}; boundary={boundary}\r\n"
        body = part.encode() + draw(st.binary(max_size=80)) + f"\r\n--{boundary}--\r\n".encode()
    else:
        head += f"Content-Type: text/plain; charset={draw(_charsets)}\r\nContent-Transfer-Encoding: {draw(_ctes)}\r\n"
        body = draw(st.binary(max_size=80))
    return head.encode("utf-8", "surrogatepass") + b"\r\n" + body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_messages())
def test_no_input_raises_anything_but_a_bridge_error(raw: bytes) -> None:
    request = EnvironBuilder(
        method="POST", path="/hooks/mail", data=raw, content_type="message/rfc822", headers={"X-Bridge-Token": TOKEN}
    ).get_request()
    verify_then_parse(PROVIDERS["email"], request, Source(name="mail", kind="email", secret=TOKEN))
