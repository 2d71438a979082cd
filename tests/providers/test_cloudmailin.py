"""``cloudmailin``: JSON (Normalized) posts, end to end to the SPP sandbox.

Fixtures are the JSON bodies CloudMailin posts; the HTTP Basic credentials CloudMailin takes
from the target URL are added at test time.
"""

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

CREDENTIALS = "cloudmailin:Qw7-test-pass-0f3a"
SOURCES = (
    CLIENTS
    + f"""sources:  # message: false keeps the body in the note, where these tests read it
  mail:
    kind: cloudmailin
    message: false
    secret: "{CREDENTIALS}"
"""
)


def basic(credentials: str = CREDENTIALS) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def payload(name: str) -> dict[str, Any]:
    return json.loads(fixture("cloudmailin", name))


def post(app: Flask, data: dict[str, Any] | bytes, headers: dict[str, str] | None = None) -> TestResponse:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    headers = basic() if headers is None else headers
    return app.test_client().post("/hooks/mail", data=body, content_type="application/json", headers=headers)


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app(SOURCES)


def test_template_fields_keep_the_envelope_and_repeated_headers(app: Flask) -> None:
    response = post(app, fixture("cloudmailin", "non_ascii.json"))
    message = stored_event(app, response.get_json()["event_id"])["message"]
    assert message["message_id"] == "<CAH7x0Yq3f+8Wk2e@mail.bigcustomer.com>"
    assert message["fields"]["envelope"]["spf"] == {"result": "pass", "domain": "bigcustomer.com"}
    assert message["fields"]["headers"]["received"][1].startswith("by mail-ed1-f41.google.com")
    assert "plain" not in message["fields"] and "html" not in message["fields"]


def test_html_only_with_embedded_and_url_attachments(app: Flask, sandbox: Any) -> None:
    response = post(app, fixture("cloudmailin", "html_only_attachments.json"))
    event_id = response.get_json()["event_id"]
    assert deliver(app, sandbox, response) == {
        "user_id": 12,
        "subject": "Export fails since this morning",
        "note": "From: Alice Martin <alice@example.com>\n\n"
        "Hello,\n\nOur export fails since this morning:\n\n"
        "  * CSV export: error 500\n  * PDF export: times out\n\nScreenshot below.\n\nAlice\n\n"
        "Attachments (not forwarded):\n- invoice-2026-03.pdf (2.0 kB)\n- screenshot.png (1.0 kB)\n"
        "- export-log.txt (17.8 kB)",
        "metadata": {"bridge_event_id": event_id},
    }
    fields = stored_event(app, event_id)["message"]["fields"]
    assert [a.get("content") for a in fields["attachments"]] == [None, None, None]  # no file content stored
    assert fields["attachments"][2]["url"] == "https://attachments.example.net/cloudmailin/9b1f0c2e/export-log.txt"


def test_embedded_attachments_keep_their_bytes_and_a_stored_one_its_link() -> None:
    message = read_message("cloudmailin", fixture("cloudmailin", "html_only_attachments.json"), "application/json")
    assert [(a.name, sha256(a.content), a.url) for a in message.attachments] == [
        ("invoice-2026-03.pdf", sha256(original("invoice-2026-03.pdf")), None),
        ("screenshot.png", sha256(original("screenshot.png")), None),
        ("export-log.txt", None, "https://attachments.example.net/cloudmailin/9b1f0c2e/export-log.txt"),
    ]
    assert message.attachments[2].size == 18234  # the size CloudMailin gives; the file itself is not fetched


def test_files_with_line_broken_base64_an_encoded_name_a_link_and_a_broken_one(app: Flask) -> None:
    message = read_message("cloudmailin", fixture("cloudmailin", "files.json"), "application/json")
    link = "https://attachments.example.net/cloudmailin/4d2e9a10/protokoll-2026-11.log"
    assert [(a.name, a.size, sha256(a.content), a.url, a.problem) for a in message.attachments] == [
        ("Übersicht März.pdf", 2059, sha256(original("invoice-2026-03.pdf")), None, None),
        ("Bildschirmfoto.png", 1032, sha256(original("screenshot.png")), None, None),
        ("protokoll-2026-11.log", 48213, None, link, None),
        ("scan.pdf", 5120, None, None, "could not be decoded: invalid base64"),
    ]
    response = post(app, fixture("cloudmailin", "files.json"))
    assert response.status_code == 200, response.get_data(as_text=True)
    stored = stored_event(app, response.get_json()["event_id"])["message"]
    assert stored["attachments"][2:] == [
        {"name": "protokoll-2026-11.log", "content_type": "text/plain", "size": 48213, "url": link},
        {
            "name": "scan.pdf",
            "content_type": "application/pdf",
            "size": 5120,
            "problem": "could not be decoded: invalid base64",
        },
    ]


@pytest.mark.parametrize(
    "name, references",
    [
        ("reply.json", ["<ticket-4521.1773068520@help.example.net>"]),
        ("files.json", ["<ticket-91.note-1@acme.example>", "<ticket-91@acme.example>"]),
        ("non_ascii.json", []),
    ],
)
def test_in_reply_to_and_references_are_read_from_the_underscored_headers(
    app: Flask, name: str, references: list[str]
) -> None:
    response = post(app, fixture("cloudmailin", name))
    assert stored_event(app, response.get_json()["event_id"])["message"]["references"] == references


def test_reply_keeps_the_quoted_message(app: Flask, sandbox: Any) -> None:
    response = post(app, fixture("cloudmailin", "reply.json"))
    event_id = response.get_json()["event_id"]
    assert deliver(app, sandbox, response) == {
        "user_id": 1,
        "subject": "Re: [#4521] Login problem",
        "note": "From: Bob Kowalski <bob@unknown-sender.org>\n\n"
        'Thanks, the reset link worked, but now I get "session expired" after a minute.\n\n'
        "Grüße, Bob\n\n"
        "On Mon, 9 Mar 2026 at 16:02, Support <support@help.example.net> wrote:\n"
        "> Hi Bob,\n>\n> please use the reset link we sent you.\n>\n> Regards, Support",
        "metadata": {"bridge_event_id": event_id},
    }
    fields = stored_event(app, event_id)["message"]["fields"]
    assert fields["reply_plain"].startswith("Thanks, the reset link worked")  # the new part, for templates


def test_headers_message_id_is_the_dedupe_key(app: Flask) -> None:
    data = payload("reply.json")
    first = post(app, data).get_json()
    resent = {**data, "envelope": {**data["envelope"], "remote_ip": "198.51.100.8"}}  # the MTA's retry
    assert post(app, resent).get_json() == {"event_id": first["event_id"], "status": "queued", "duplicate": True}
    other = {**data, "headers": {**data["headers"], "message_id": "<another@unknown-sender.org>"}}
    assert "duplicate" not in post(app, other).get_json()


def test_without_message_id_a_content_hash_is_the_key(app: Flask) -> None:
    data = payload("reply.json")
    del data["headers"]["message_id"]
    first = post(app, data).get_json()
    assert post(app, data).get_json() == {**first, "duplicate": True}
    changed = {**data, "plain": data["plain"] + "\nPS: still broken.\n"}
    assert "duplicate" not in post(app, changed).get_json()


@pytest.mark.parametrize(
    ("headers", "envelope_from", "reason"),
    [
        ({"auto_submitted": "auto-replied"}, None, "automatic reply (Auto-Submitted: auto-replied)"),
        ({"x_autoreply": "yes"}, None, "automatic reply (X-Autoreply)"),
        ({"precedence": ["bulk", "list"]}, None, "bulk mail (Precedence: bulk)"),
        ({"return_path": "<>"}, "", "bounce (null return path)"),
        ({"from": "Mail Delivery System <MAILER-DAEMON@mx.bigcustomer.com>"}, None, "bounce (MAILER-DAEMON)"),
    ],
)
def test_automatic_replies_and_bounces_are_discarded(
    app: Flask, headers: dict[str, Any], envelope_from: str | None, reason: str
) -> None:
    data = payload("non_ascii.json")
    data["headers"].update(headers)
    if envelope_from is not None:
        data["envelope"]["from"] = envelope_from
    response = post(app, data)
    assert response.status_code == 200 and response.get_json()["status"] == "discarded"
    assert stored_event(app, response.get_json()["event_id"])["last_error"] == f"discarded: {reason}"


@pytest.mark.parametrize("credentials", [None, "cloudmailin:wrong", "user:Qw7-test-pass-0f3a"])
def test_missing_or_wrong_basic_credentials_are_401(app: Flask, credentials: str | None) -> None:
    response = post(app, payload("reply.json"), headers=basic(credentials) if credentials else {})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "data",
    [
        {"plain": "no headers at all", "envelope": {"from": "bob@unknown-sender.org"}},
        {"headers": "From: bob@unknown-sender.org", "plain": "headers must be an object"},
        {"headers": {"subject": "nobody, nothing"}, "envelope": {}, "plain": ""},
        {"headers": {"from": "bob@unknown-sender.org"}, "attachments": ["not an attachment object"]},
        ["not", "an", "object"],
    ],
)
def test_payloads_lacking_what_the_kind_requires_are_422(app: Flask, data: Any) -> None:
    response = post(app, json.dumps(data).encode())
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"] == "unprocessable"


def test_invalid_json_is_400_and_other_content_types_415(app: Flask) -> None:
    assert post(app, b'{"headers": ').status_code == 400
    response = app.test_client().post("/hooks/mail", data={"plain": "x"}, headers=basic())
    assert response.status_code == 415


# --- no input makes the provider raise anything but the bridge's own errors -------------------

SOURCE = Source(name="mail", kind="cloudmailin", secret=CREDENTIALS)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
header_names = st.sampled_from(["from", "subject", "message_id", "date", "auto_submitted", "precedence", "x"])
shaped = st.fixed_dictionaries(
    {},
    optional={
        "headers": st.dictionaries(header_names, values, max_size=5) | values,
        "envelope": st.fixed_dictionaries({}, optional={"from": values, "to": values}) | values,
        "plain": values,
        "html": values,
        "reply_plain": values,
        "attachments": st.lists(
            st.fixed_dictionaries(
                {}, optional={"file_name": values, "size": values, "content": values, "content_type": values}
            )
            | values,
            max_size=3,
        )
        | values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(shaped.map(lambda d: json.dumps(d).encode()), values.map(lambda v: json.dumps(v).encode())))
def test_parse_raises_only_bridge_errors(body: bytes) -> None:
    request = EnvironBuilder(method="POST", data=body, content_type="application/json", headers=basic()).get_request()
    verify_then_parse(PROVIDERS["cloudmailin"], request, SOURCE)


@pytest.mark.parametrize("escape", ["\\ud800", "\\u0000"])
def test_message_id_that_is_no_storable_text_is_hashed(app: Flask, escape: str) -> None:
    """JSON can carry a lone surrogate or NUL that no text column takes; the key is hashed instead."""
    body = f'{{"headers": {{"from": "bob@unknown-sender.org", "message_id": "<{escape}@x>"}}, "plain": "hi"}}'
    first = post(app, body.encode())
    assert first.status_code == 200, first.get_json()
    assert post(app, body.encode()).get_json() == {**first.get_json(), "duplicate": True}
    key = stored_event(app, first.get_json()["event_id"])["message"]["dedupe_key"]
    assert key.startswith("message-id:sha256:")


def test_a_malformed_encoded_word_does_not_fail_the_message(app: Flask, sandbox: Any) -> None:
    data = payload("reply.json")
    data["headers"]["subject"] = "=?x?b?=?utf-8?q?=?utf-8?q?"
    assert deliver(app, sandbox, post(app, data))["subject"] == "=?x?b?=?utf-8?q?=?utf-8?q?"
