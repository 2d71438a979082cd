"""Pathological mail for every email kind, each posted in that kind's own framing.

The corpus holds the headers, addresses and MIME shapes that once made the standard library's
``email`` package take seconds to minutes (quadratic header parsing, one parse of every part's
headers per question asked) or recurse past Python's limit. Each case goes to ``email`` (the raw
body), SendGrid (raw mode's ``email`` field, and parsed mode's ``headers`` block), Mailgun's
MIME mode (``body-mime``) and, as header data, to Postmark and CloudMailin. Every answer must
be a documented 4xx or a 200, within a second, and log at most one line, never a traceback.
The limits that make this so are in docs/providers.md, "Limits on what is read of a message".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import EnvironBuilder

from bridge.providers import PROVIDERS, mime
from bridge.sources import Source
from tests.conftest import AppFactory
from tests.providers.helpers import every_kind_sources, stored_event

SECONDS = 1.0  # the requirement: any email up to the body limit is read in under a second
KIB, MIB = 1024, 1024 * 1024
FROM = b"From: Alice <alice@example.com>\r\n"
DOCUMENTED = {200, 400, 413, 422} | {PROVIDERS[kind].reject_status for kind in ("mailgun", "postmark")}


@dataclass(frozen=True)
class Mail:
    """A raw message; ``attachments`` is how many attachments the JSON kinds post beside it, and
    ``html`` whether they post its body as HTML."""

    raw: bytes
    attachments: int = 0
    html: bool = False


def _message(*header_lines: bytes, body: bytes = b"Hello\r\n") -> bytes:
    return b"".join(header_lines) + b"\r\n" + body


def _nested_multipart(depth: int) -> bytes:
    heads = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(depth))
    tails = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    return FROM + heads + b"Content-Type: text/plain\r\n\r\ndeep down\r\n" + tails


def _nested_rfc822(depth: int) -> bytes:
    enclosed = b"From: inner@example.com\r\nSubject: inner\r\n\r\nthe innermost text\r\n"
    for _ in range(depth):
        enclosed = b"From: fwd@example.com\r\nContent-Type: message/rfc822\r\n\r\n" + enclosed
    attachment = b"--out\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=fwd.eml\r\n\r\n"
    return (
        FROM
        + b"Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
        + attachment
        + enclosed
        + b"\r\n--out--\r\n"
    )


def _many_attachments(count: int, size: int) -> bytes:
    part = (
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=a.bin\r\n\r\n" + b"x" * size + b"\r\n"
    )
    text = b"--b\r\nContent-Type: text/plain\r\n\r\nsee the attachments\r\n"
    return FROM + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + text + part * count + b"--b--\r\n"


CORPUS: dict[str, Callable[[], Mail]] = {
    "quadratic To": lambda: Mail(_message(FROM, b"To: " + b'"a",' * 50_000 + b"\r\n")),
    "quadratic Cc of addresses": lambda: Mail(_message(FROM, b"Cc: " + b"a@example.com," * 15_000 + b"\r\n")),
    "deep parentheses From": lambda: Mail(_message(b"From: " + b"(" * 487 + b"alice@example.com\r\n")),
    "very deep parentheses From": lambda: Mail(_message(b"From: " + b"(" * 50_000 + b"alice@example.com\r\n")),
    "deep parentheses To": lambda: Mail(_message(FROM, b"To: " + b"(" * 5_000 + b"b@example.com\r\n")),
    "200 KB Subject": lambda: Mail(_message(FROM, b"Subject: " + b"x " * 100_000 + b"\r\n")),
    "100 KB Subject of encoded words": lambda: Mail(
        _message(FROM, b"Subject: " + b"=?utf-8?q?a?= =?iso-8859-1?b?5A==?= " * 2_900 + b"\r\n")
    ),
    "10,000 Received headers": lambda: Mail(
        _message(b"Received: from a.example.com by b.example.com; Tue, 1 Dec 2026 10:00:00 +0000\r\n" * 10_000, FROM)
    ),
    "5,000 header lines of one header": lambda: Mail(_message(FROM, b"X-Long: start\r\n" + b" continued\r\n" * 5_000)),
    "a million tiny header lines": lambda: Mail(_message(FROM, b"X: y\r\n" * 1_000_000)),
    "boundary that never closes": lambda: Mail(
        FROM
        + b"Content-Type: multipart/mixed; boundary=open\r\n\r\n--open\r\nContent-Type: text/plain\r\n\r\n"
        + b"line without end\r\n" * 50_000
    ),
    "1,000-deep nested multipart": lambda: Mail(_nested_multipart(1_000)),
    "message/rfc822 nested 1,000 deep": lambda: Mail(_nested_rfc822(1_000)),
    "NUL in headers": lambda: Mail(
        _message(
            b"From: Al\x00ice <alice@exa\x00mple.com>\r\n",
            b"To: b\x00@example.com\r\nSubject: a\x00b\r\nMessage-ID: <x\x00y@example.com>\r\n",
            b"Auto-Submitted: no\x00\r\nX-Null: \x00\x00\r\n",
        )
    ),
    "invalid charset names": lambda: Mail(
        _message(
            FROM,
            b"Subject: =?x-\xff\xfe?q?a?= =?utf-8*en?q?b?= =?" + b"c" * 3_000 + b"?q?d?=\r\n",
            b'Content-Type: text/plain; charset="\x00\xff' + b"k" * 5_000 + b'"\r\n',
            body=b"caf\xe9 \xff\xfe\r\n",
        )
    ),
    "base64 with garbage": lambda: Mail(
        _message(
            FROM,
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n",
            body=b"SGVsbG8=\x00\xff!!!=====@@@ SGV sbG8\r\n" * 20_000,
        )
    ),
    "50,000 tiny attachments in 5 MB": lambda: Mail(_many_attachments(50_000, 1), attachments=50_000),
    "Content-Type with 50,000 parameters": lambda: Mail(
        _message(FROM, b"Content-Type: text/plain; " + b"a=b;" * 50_000 + b" charset=utf-8\r\n")
    ),
    "5 MB of empty lines": lambda: Mail(_message(FROM, body=b"\n" * (5 * MIB))),
    "10,000 address headers": lambda: Mail(_message(FROM, b'To: "a","b"\r\n' * 10_000)),
    "HTML-only mail of a 200,000-cell table": lambda: Mail(
        _message(FROM, b"Content-Type: text/html\r\n", body=b"<table>" + b"<tr><td>a</td><td>b</td></tr>" * 100_000),
        html=True,
    ),
}


# --- each kind's framing ----------------------------------------------------------------------

SOURCES = every_kind_sources()
BOUNDARY = "hostile-" + secrets.token_hex(8)


def _basic(kind: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(PROVIDERS[kind].example_secret.encode()).decode()}


def _form(**fields: bytes) -> bytes:
    return (
        b"".join(
            b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (BOUNDARY.encode(), n.encode(), v)
            for n, v in fields.items()
        )
        + b"--%s--\r\n" % BOUNDARY.encode()
    )


def split_message(raw: bytes) -> tuple[list[tuple[str, str]], str]:
    """Header fields (unfolded) and body text, as a service that parses mail posts them."""
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    fields: list[tuple[str, str]] = []
    for line in head.split(b"\n"):
        text = line.decode("utf-8", "replace")
        if text[:1] in (" ", "\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + text)
        elif ":" in text:
            name, value = text.split(":", 1)
            fields.append((name, value.strip()))
    return fields, body.decode("utf-8", "replace")


def _first(fields: list[tuple[str, str]], name: str) -> str:
    return next((v for n, v in fields if n.lower() == name), "")


def _json_attachments(count: int, postmark: bool) -> list[dict[str, Any]]:
    one = (
        {"Name": "a.bin", "ContentType": "application/octet-stream", "ContentLength": 1}
        if postmark
        else {"file_name": "a.bin", "content_type": "application/octet-stream", "size": 1}
    )
    return [one] * count


def as_email(mail: Mail) -> dict[str, Any]:
    token = PROVIDERS["email"].example_secret
    return {"data": mail.raw, "content_type": "message/rfc822", "headers": {"X-Bridge-Token": token}}


def as_sendgrid_raw(mail: Mail) -> dict[str, Any]:
    body = _form(email=mail.raw, envelope=b'{"from": "alice@example.com", "to": ["support@example.com"]}')
    return {"data": body, "content_type": f"multipart/form-data; boundary={BOUNDARY}", "headers": _basic("sendgrid")}


def as_sendgrid_parsed(mail: Mail) -> dict[str, Any]:
    head, _, body = mail.raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    fields = _form(
        headers=head, charsets=b'{"text": "utf-8", "headers": "utf-8"}', **{"html" if mail.html else "text": body}
    )
    return {"data": fields, "content_type": f"multipart/form-data; boundary={BOUNDARY}", "headers": _basic("sendgrid")}


def as_mailgun_mime(mail: Mail) -> dict[str, Any]:
    stamp, token = str(int(time.time())), secrets.token_hex(25)
    key = PROVIDERS["mailgun"].example_secret.encode()
    signature = hmac.new(key, (stamp + token).encode(), hashlib.sha256).hexdigest()
    body = _form(
        recipient=b"support-mime@example.com",
        sender=b"alice@example.com",
        timestamp=stamp.encode(),
        token=token.encode(),
        signature=signature.encode(),
        **{"body-mime": mail.raw},
    )
    return {"data": body, "content_type": f"multipart/form-data; boundary={BOUNDARY}", "headers": {}}


def as_postmark(mail: Mail) -> dict[str, Any]:
    fields, body = split_message(mail.raw)
    data = {
        "MessageID": secrets.token_hex(16),
        "From": _first(fields, "from"),
        "To": _first(fields, "to"),
        "Subject": _first(fields, "subject"),
        "TextBody": "" if mail.html else body[: 2 * MIB],
        "HtmlBody": body[: 4 * MIB] if mail.html else "",
        "Headers": [{"Name": n, "Value": v} for n, v in fields],
        "Attachments": _json_attachments(mail.attachments, postmark=True),
    }
    return {"data": json.dumps(data), "content_type": "application/json", "headers": _basic("postmark")}


def as_cloudmailin(mail: Mail) -> dict[str, Any]:
    fields, body = split_message(mail.raw)
    values: dict[str, list[str]] = {}
    for name, value in fields:
        values.setdefault(name.lower().replace("-", "_"), []).append(value)
    headers = {name: found[0] if len(found) == 1 else found for name, found in values.items()}
    data = {
        "envelope": {"from": "alice@example.com", "to": "support@example.com"},
        "headers": headers,
        "plain": None if mail.html else body[: 2 * MIB],
        "html": body[: 4 * MIB] if mail.html else None,
        "attachments": _json_attachments(mail.attachments, postmark=False),
    }
    return {"data": json.dumps(data), "content_type": "application/json", "headers": _basic("cloudmailin")}


FRAMINGS: dict[str, tuple[str, Callable[[Mail], dict[str, Any]]]] = {
    "email": ("email", as_email),
    "sendgrid raw": ("sendgrid", as_sendgrid_raw),
    "sendgrid parsed": ("sendgrid", as_sendgrid_parsed),
    "mailgun mime": ("mailgun", as_mailgun_mime),
    "postmark": ("postmark", as_postmark),
    "cloudmailin": ("cloudmailin", as_cloudmailin),
}


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app(SOURCES)


@pytest.mark.parametrize("case", list(CORPUS))
def test_every_email_kind_answers_within_a_second(
    app: Flask, case: str, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    mail = CORPUS[case]()
    client = app.test_client()
    for framing, (kind, frame) in FRAMINGS.items():
        posted = frame(mail)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            started = time.perf_counter()
            response = client.post(f"/hooks/{kind}", **posted)
            elapsed = time.perf_counter() - started
        where = f"{case} as {framing}: {response.status_code} {response.get_data(as_text=True)[:300]}"
        assert response.status_code in DOCUMENTED, where
        assert elapsed < SECONDS, f"{where} took {elapsed:.2f} s"
        assert not [r for r in caplog.records if r.exc_info], f"{where}: a traceback was logged"
        mine = [r for r in caplog.records if r.name.startswith("bridge.providers")]
        assert len(mine) <= 1 and all("\n" not in r.getMessage() for r in mine), [r.getMessage() for r in mine]
        if response.status_code == 200:
            stored_event(app, response.get_json()["event_id"])  # it was stored, whole
    assert client.get("/healthz").status_code == 200


# --- the parser itself, measured where it runs ------------------------------------------------

TOKEN = PROVIDERS["email"].example_secret
SOURCE = Source(name="mail", kind="email", secret=TOKEN)


def parse_as_email_kind(raw: bytes) -> Any:
    """What the ``email`` kind makes of ``raw`` (its parse: MIME, headers, addresses, fields)."""
    request = EnvironBuilder(
        method="POST", data=raw, content_type="message/rfc822", headers={"X-Bridge-Token": TOKEN}
    ).get_request()
    return PROVIDERS["email"].parse(request, SOURCE)


WORST = {
    "200 KB of quoted names in To": _message(FROM, b"To: " + b'"a",' * 50_000 + b"\r\n"),
    "200 KB Subject": _message(FROM, b"Subject: " + b"x " * 100_000 + b"\r\n"),
    "5,000 header lines": _message(FROM, b"X-Trace: hop\r\n" * 5_000),
    "50,000 tiny attachments in 5 MB": _many_attachments(50_000, 1),
    "1,000-deep nested multipart": _nested_multipart(1_000),
    "200 nested multiparts over 100,000 lines": _nested_multipart(200).replace(b"deep down\r\n", b"line\r\n" * 100_000),
    "Content-Type with 50,000 parameters": _message(FROM, b"Content-Type: text/plain; " + b"a=b;" * 50_000 + b"\r\n"),
    "10 MB of empty lines": _message(FROM, body=b"\n" * (10 * MIB - 100)),
    "10 MB of header lines": _message(FROM, b"X: y\r\n" * (10 * MIB // 6)),
    "16 KB address headers, 150 of them": _message(FROM, *[b"To: " + b'"a",' * 4_000 + b"\r\n"] * 150),
    "1,000 parts with 64 parameters in each header": FROM
    + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    + b"".join(
        b"--b\r\nContent-Type: application/octet-stream; "
        + b"; ".join(b"p%d=%s" % (j, b"v%d" % i * 12) for j in range(64))
        + b"\r\nContent-Disposition: attachment; "
        + b"; ".join(b"q%d=%s" % (j, b"v%d" % i * 12) for j in range(64))
        + b"\r\n\r\nx\r\n"
        for i in range(1_000)
    )
    + b"--b--\r\n",
    "HTML-only, a table of 400,000 cells": _message(
        FROM, b"Content-Type: text/html\r\n", body=b"<table>" + b"<tr><td>a</td><td>b</td></tr>" * 200_000
    ),
}


@pytest.mark.parametrize("case", list(WORST))
def test_the_worst_cases_parse_in_under_a_second(case: str) -> None:
    started = time.perf_counter()
    message = parse_as_email_kind(WORST[case])  # each is a message, however odd: none is refused
    assert time.perf_counter() - started < SECONDS
    assert message.email == "alice@example.com"


def test_a_long_address_list_is_cut_not_refused() -> None:
    message = parse_as_email_kind(WORST["200 KB of quoted names in To"].replace(b'"a",', b"a@example.com, ", 2_000))
    assert message.email == "alice@example.com"
    assert len(message.fields["to"]) == mime.MAX_ADDRESSES
    assert len(message.fields["headers"]["to"]) <= mime.MAX_HEADER_CHARS


def test_fifty_thousand_attachments_are_listed_up_to_the_cap_then_counted() -> None:
    message = parse_as_email_kind(_many_attachments(50_000, 1))
    assert message.body == "see the attachments"
    listed, summary = message.attachments[:-1], message.attachments[-1]
    assert len(listed) == mime.MAX_ATTACHMENTS
    assert {(a.name, a.content_type, a.size) for a in listed} == {("a.bin", "application/octet-stream", 1)}
    assert summary.name == f"… and {50_000 - mime.MAX_ATTACHMENTS:,} more attachments"


def test_deep_parentheses_in_from_leave_no_sender() -> None:
    with pytest.raises(Exception, match="no From address") as raised:
        parse_as_email_kind(_message(b"From: " + b"(" * 487 + b"alice@example.com\r\n"))
    assert type(raised.value).__name__ == "RejectedPayload"
    assert mime.sender("(" * 5_000 + "a@example.com") == (None, None)
    assert mime.recipients("(" * 5_000 + "a@example.com, b@example.com") == []


def test_headers_after_the_first_two_hundred_are_read_when_the_bridge_needs_them() -> None:
    """Mail servers add trace headers on top: From and Subject come after them."""
    raw = _message(b"Received: from hop by hop\r\n" * 300, FROM, b"Subject: still read\r\nX-Late: ignored\r\n")
    message = parse_as_email_kind(raw)
    assert (message.email, message.subject) == ("alice@example.com", "still read")
    assert "x-late" not in message.fields["headers"]


def test_a_nested_message_deeper_than_the_limit_keeps_the_text() -> None:
    message = parse_as_email_kind(_nested_rfc822(1_000))
    assert message.body == "see below"
    assert message.attachments[0].name == "fwd.eml"


def _base64_attachment(name: str, size: int) -> bytes:
    data = base64.encodebytes(bytes(range(256)) * (size // 256))  # 76-character lines, as mail has them
    return (
        b"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="' + name.encode() + b'"\r\n\r\n' + data
    )


def test_ten_megabytes_of_ordinary_attachments_are_read_whole_and_fast() -> None:
    raw = (
        FROM
        + b"Subject: the scans\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        + b"--b\r\nContent-Type: text/plain\r\n\r\nthree scans attached\r\n"
        + b"".join(_base64_attachment(f"scan {n}.pdf", 2_500_000) for n in range(3))
        + b"--b--\r\n"
    )
    assert len(raw) > 10_000_000
    started = time.perf_counter()
    message = parse_as_email_kind(raw)
    assert time.perf_counter() - started < SECONDS
    assert message.body == "three scans attached"
    assert [(a.name, a.size) for a in message.attachments] == [(f"scan {n}.pdf", 2_499_840) for n in range(3)]
    assert all(a.content == bytes(range(256)) * (2_500_000 // 256) for a in message.attachments)


def test_ten_megabytes_of_attachments_with_a_bad_character_at_their_end_are_listed_fast() -> None:
    """A bad character after megabytes of good base64 (with spaces at its line ends, which alone
    would be decoded) is where a careless check retries every line."""
    data = base64.encodebytes(bytes(range(256)) * (2_500_000 // 256)).replace(b"\n", b" \r\n") + b"!\r\n"
    head = b"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
    raw = (
        FROM
        + b"Subject: the scans\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        + b"--b\r\nContent-Type: text/plain\r\n\r\nthree scans attached\r\n"
        + b"".join(head + b'Content-Disposition: attachment; filename="s%d.pdf"\r\n\r\n' % n + data for n in range(3))
        + b"--b--\r\n"
    )
    started = time.perf_counter()
    message = parse_as_email_kind(raw)
    assert time.perf_counter() - started < SECONDS
    assert [(a.content, a.problem) for a in message.attachments] == [(None, "could not be decoded: invalid base64")] * 3


def test_a_body_past_the_line_limit_is_cut_and_said_so() -> None:
    message = parse_as_email_kind(_message(FROM, body=b"a line\r\n" * 1_000_000))
    assert message.body.startswith("a line\na line") and len(message.body) < 7 * 1_000_000
    assert message.attachments[-1].name == "… the rest of the message, not read"
    assert message.attachments[-1].size > 0
