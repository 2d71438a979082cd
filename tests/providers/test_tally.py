"""``tally``: signed JSON webhooks, end to end from /hooks/<source> to the SPP sandbox."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder

from bridge.providers.tally import TallyProvider
from bridge.sources import Source
from tests.conftest import CLIENTS
from tests.providers.helpers import JSON_VALUES, deliver, fixture, stored_event, verify_then_parse

SECRET = "tally-signing-secret-8d2e41"
SOURCES = (
    CLIENTS
    + f"""sources:  # message: false keeps the body in the note, where these tests read it
  support:
    kind: tally
    message: false
    secret: {SECRET}
    name_field: Your name
    honeypot: website
    ticket:
      tags: [tally]
      metadata:
        source: "{{{{ fields.utm_source }}}}"
  contact:
    kind: tally
    message: false
    secret: {SECRET}
    email_field: Email of the person we should reply to
  requests:
    kind: tally
    message: false
    secret: {SECRET}
  requests_by_label:
    kind: tally
    message: false
    secret: {SECRET}
    name_field: last NAME
    subject_field: Order number
    body_field: utm_source
  requests_by_key:
    kind: tally
    message: false
    secret: {SECRET}
    name_field: question_Sd3eF4
    subject_field: question_Wp1qR2
    body_field: question_Yv5wX6
"""
)
PHOTOS = (
    "https://storage.tally.so/private/box.jpg?id=Lq8Wn3&accessToken=Tt9Rr2&signature=c41e",
    "https://storage.tally.so/private/label-photo.jpg?id=Mr9Xo4&accessToken=Uu0Ss3&signature=d52f",
)


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def post(app: Flask, source: str, body: bytes, signature: str | None = None, content_type: str = "application/json"):
    headers = {"Tally-Signature": sign(body) if signature is None else signature}
    return app.test_client().post(f"/hooks/{source}", data=body, headers=headers, content_type=content_type)


@pytest.fixture
def app(make_app) -> Flask:
    return make_app(SOURCES)


def test_every_field_type(app: Flask, sandbox) -> None:
    response = post(app, "support", fixture("tally", "every_type.json"))
    event_id = response.get_json()["event_id"]
    assert deliver(app, sandbox, response) == {
        "user_id": 30,
        "subject": "Website support request",
        "note": "From: Grace Hopper <grace@bigcustomer.com>\n\n"
        "Your name: Grace Hopper\n"
        "Email: grace@bigcustomer.com\n"
        "Phone: +15125550291\n"
        "Affected page: https://bigcustomer.com/checkout\n"
        "Orders affected: 17\n"
        "Noticed on: 2026-11-21\n"
        "At what time?: 14:30\n"
        "What happened?: The payment step spins forever.\nCustomers give up.\n"
        "Severity: High\n"
        "Browsers: Chrome, Safari\n"
        "Plan: Pro\n"
        "Areas affected: Payments, Cart\n"
        "Rank what matters most: Speed, Price, Design\n"
        "How bad is it? (1-10): 9\n"
        "Rate our support so far: 4\n"
        "Rate each channel: Email: Good, Chat: Poor\n"
        "Screenshots: https://storage.tally.so/private/checkout-error.png?id=5Bq8Nl&accessToken=Yx2Jm9&signature=7d1e, "
        "https://storage.tally.so/private/console.log?id=9Kd2Ra&accessToken=Qp4Lz1&signature=a93c\n"
        "Signature: https://storage.tally.so/private/signature.png?id=kq2NxA&accessToken=Hh7Tt3&signature=0b5f\n"
        "Priority support fee: price: 49, currency: EUR, name: Grace Hopper, "
        "link: https://dashboard.stripe.com/payments/pi_3QxUfe\n"
        "utm_source: newsletter\n"
        "Estimated impact: 153\n\n"
        "Attachments (not forwarded):\n"
        "- checkout-error.png (47.1 kB)\n"
        "- console.log (2.0 kB)\n"
        "- signature.png (6.0 kB)",
        "tags": ["tally"],
        "metadata": {"source": "newsletter", "bridge_event_id": event_id},
    }
    message = stored_event(app, event_id)["message"]
    assert message["fields"]["question_wAlPQz"] == ["Chrome", "Safari"]
    assert message["fields"]["Rate each channel"] == {"Email": ["Good"], "Chat": ["Poor"]}
    assert "question_wAlPQz_b1-chrome" not in message["fields"]  # per-option duplicates dropped
    assert "Anything else?" not in message["fields"]  # unanswered
    assert message["name"] == "Grace Hopper"
    assert message["attachments"][0] == {
        "name": "checkout-error.png",
        "content_type": "image/png",
        "size": 48213,
        "url": "https://storage.tally.so/private/checkout-error.png?id=5Bq8Nl&accessToken=Yx2Jm9&signature=7d1e",
    }


def test_email_field_by_label_and_single_id_choice(app: Flask, sandbox) -> None:
    response = post(app, "contact", fixture("tally", "contact.json"))
    assert deliver(app, sandbox, response) == {
        "user_id": 12,
        "subject": "Contact form",
        "note": "From: <alice@example.com>\n\n"
        "Please resend invoice 2026-114.\n\n"
        "Your email: assistant@example.net\n"
        "Email of the person we should reply to: alice@example.com\n"
        "Topic: Billing\n"
        "Attachments: https://storage.tally.so/private/Rechnung-Marz.pdf?id=Rr5Tt6&accessToken=Zz1Xx2&signature=44aa\n\n"
        "Attachments (not forwarded):\n"
        "- Rechnung März.pdf (1.5 MB)",
        "metadata": {"bridge_event_id": response.get_json()["event_id"]},
    }


def test_name_from_first_and_last_subject_and_message_by_label(app: Flask, sandbox) -> None:
    response = post(app, "requests", fixture("tally", "request.json"))
    event_id = response.get_json()["event_id"]
    body = (
        "The parcel arrived damaged.\nPhotos attached.\n\n"
        "First name: Grace\n"
        "Last name: Hopper\n"
        "Email: grace@bigcustomer.com\n"
        "Subject: Refund for order SO-2026-0042\n"
        "Order number: SO-2026-0042\n"
        f"Photos: {PHOTOS[0]}, {PHOTOS[1]}\n"
        "utm_source: newsletter"
    )
    assert deliver(app, sandbox, response) == {
        "user_id": 30,
        "subject": "Refund for order SO-2026-0042",
        "note": f"From: Grace Hopper <grace@bigcustomer.com>\n\n{body}\n\n"
        "Attachments (not forwarded):\n"
        "- box.jpg (200.0 kB)\n"
        "- label photo.jpg (96.0 kB)",
        "metadata": {"bridge_event_id": event_id},
    }
    message = stored_event(app, event_id)["message"]
    assert (message["name"], message["body"]) == ("Grace Hopper", body)
    assert message["attachments"] == [
        {"name": "box.jpg", "content_type": "image/jpeg", "size": 204800, "url": PHOTOS[0]},
        {"name": "label photo.jpg", "content_type": "image/jpeg", "size": 98304, "url": PHOTOS[1]},
    ]


def test_hidden_field_names_are_detected_like_labels(app: Flask) -> None:
    """Tally's keys are its own (``question_…``); a hidden field is known by the name it was given."""
    payload = json.loads(fixture("tally", "bug_report.json"))
    payload["data"]["fields"].append(
        {"key": "question_Kk1Ll2", "label": "full_name", "type": "HIDDEN_FIELDS", "value": "Alice Example"}
    )
    response = post(app, "requests", json.dumps(payload).encode())
    assert stored_event(app, response.get_json()["event_id"])["message"]["name"] == "Alice Example"


@pytest.mark.parametrize("source", ["requests_by_label", "requests_by_key"])
def test_name_subject_and_body_fields_override_detection(app: Flask, sandbox, source: str) -> None:
    response = post(app, source, fixture("tally", "request.json"))
    ticket = deliver(app, sandbox, response)
    assert ticket["subject"] == "SO-2026-0042"
    message = stored_event(app, response.get_json()["event_id"])["message"]
    assert message["name"] == "Hopper"
    assert message["body"] == (
        "newsletter\n\n"
        "First name: Grace\n"
        "Last name: Hopper\n"
        "Email: grace@bigcustomer.com\n"
        "Subject: Refund for order SO-2026-0042\n"
        "Message: The parcel arrived damaged.\nPhotos attached.\n"
        "Order number: SO-2026-0042\n"
        f"Photos: {PHOTOS[0]}, {PHOTOS[1]}"
    )


def test_without_name_subject_or_message_the_title_and_every_answer(app: Flask, sandbox) -> None:
    response = post(app, "requests", fixture("tally", "bug_report.json"))
    event_id = response.get_json()["event_id"]
    recording = "https://storage.tally.so/private/cart.webm?id=Zp4Kd1&accessToken=Vv1Ww2&signature=e63a"
    assert deliver(app, sandbox, response) == {
        "user_id": 12,
        "subject": "Bug report",
        "note": "From: <alice@example.com>\n\n"
        "Email: alice@example.com\n"
        "Which page?: https://example.com/cart\n"
        "What happened?: The cart empties itself after login.\n"
        "Browser: Firefox\n"
        f"Screen recording: {recording}\n\n"
        "Attachments (not forwarded):\n"
        "- cart.webm (3.0 MB)",
        "metadata": {"bridge_event_id": event_id},
    }
    message = stored_event(app, event_id)["message"]
    assert message["name"] is None
    assert message["attachments"] == [
        {"name": "cart.webm", "content_type": "video/webm", "size": 3145728, "url": recording}
    ]


def test_first_email_answer_is_the_sender_by_default(make_app, sandbox) -> None:
    app = make_app(SOURCES.replace("    email_field: Email of the person we should reply to\n", ""))
    ticket = deliver(app, sandbox, post(app, "contact", fixture("tally", "contact.json")))
    assert ticket["user_id"] == 1
    assert ticket["note"].startswith("From: <assistant@example.net>\n\n")


def test_same_response_id_is_a_duplicate(app: Flask) -> None:
    body = fixture("tally", "every_type.json")
    first = post(app, "support", body).get_json()
    again = post(app, "support", json.dumps(json.loads(body), indent=1).encode())
    assert again.status_code == 200
    assert again.get_json() == {"event_id": first["event_id"], "status": "queued", "duplicate": True}


@pytest.mark.parametrize("signature", [" ", "AAAA", "sha256=x", sign(b"other"), sign(b"{}", "wrong"), "ü"])
def test_bad_signature_is_401(app: Flask, signature: str) -> None:
    response = post(app, "support", fixture("tally", "every_type.json"), signature=signature)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"


def test_reserialized_body_does_not_verify(app: Flask) -> None:
    body = fixture("tally", "non_ascii.json")
    reserialized = json.dumps(json.loads(body)).encode()  # \\u escapes: other bytes, other HMAC
    assert post(app, "support", reserialized, signature=sign(body)).status_code == 401


@pytest.mark.parametrize(
    "payload",
    [
        {"eventType": "FORM_RESPONSE"},
        {"data": {"fields": []}},
        {"data": {"responseId": ""}},
        {"data": {"responseId": "r1", "fields": [{"label": "no key", "value": "x"}]}},
        {"data": {"responseId": "r1", "fields": [{"key": "k", "options": [{"text": "no id"}]}]}},
        "FORM_RESPONSE",
    ],
)
def test_payload_without_what_tally_sends_is_422(app: Flask, payload: object) -> None:
    response = post(app, "support", json.dumps(payload).encode())
    assert response.status_code == 422
    assert response.get_json()["error"] == "unprocessable"


@pytest.mark.parametrize("body", [b"{", b"\xff", b"", b'{"data": Infinity}'])
def test_unparseable_body_is_400(app: Flask, body: bytes) -> None:
    assert post(app, "support", body).status_code == 400


def test_wrong_content_type_is_415(app: Flask) -> None:
    assert post(app, "support", fixture("tally", "every_type.json"), content_type="text/plain").status_code == 415


def test_filled_honeypot_is_discarded(app: Flask) -> None:
    payload = json.loads(fixture("tally", "every_type.json"))
    [trap] = [f for f in payload["data"]["fields"] if f["label"] == "website"]
    trap["value"] = "https://cheap-pills.example"
    response = post(app, "support", json.dumps(payload).encode())
    assert response.status_code == 200
    assert response.get_json()["status"] == "discarded"


option = st.fixed_dictionaries({"id": st.text(max_size=3)}, optional={"text": JSON_VALUES})
field = st.fixed_dictionaries(
    {"key": st.text(max_size=6) | JSON_VALUES},
    optional={
        "label": JSON_VALUES,
        "type": st.sampled_from(["CHECKBOXES", "MATRIX", "FILE_UPLOAD", "SIGNATURE", "INPUT_EMAIL", "RANKING"])
        | JSON_VALUES,
        "value": JSON_VALUES
        | st.lists(
            st.fixed_dictionaries(
                {}, optional={"name": JSON_VALUES, "size": JSON_VALUES, "url": JSON_VALUES | st.text()}
            )
        ),
        "options": st.lists(option, max_size=3) | JSON_VALUES,
        "rows": st.lists(option, max_size=2),
        "columns": st.lists(option, max_size=2),
    },
)
payloads = st.fixed_dictionaries(
    {},
    optional={
        "data": JSON_VALUES
        | st.fixed_dictionaries(
            {"responseId": st.text(max_size=300) | JSON_VALUES},
            optional={"fields": st.lists(field, max_size=4) | JSON_VALUES, "formName": JSON_VALUES},
        )
    },
)
SOURCE = Source(name="fuzz", kind="tally", secret=SECRET, email_field="e", options={"honeypot": "h"})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=payloads, signed=st.booleans())
def test_parser_raises_only_bridge_errors(payload: dict, signed: bool) -> None:
    body = json.dumps(payload).encode()
    headers = {"Tally-Signature": sign(body)} if signed else {}
    request = EnvironBuilder(method="POST", data=body, headers=headers, content_type="application/json").get_request()
    verify_then_parse(TallyProvider(), request, SOURCE)


@pytest.mark.parametrize("response_id", ["\udfff", "r\u0000", "r" * 300])
def test_unstorable_or_long_response_id_is_hashed_not_a_500(app: Flask, response_id: str) -> None:
    payload = {"data": {"responseId": response_id, "fields": [{"key": "k", "label": "\u0000", "value": "\ud800"}]}}
    body = json.dumps(payload).encode()
    first = post(app, "support", body)
    assert first.status_code == 200
    assert post(app, "support", body).get_json()["event_id"] == first.get_json()["event_id"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=payloads)
def test_any_signed_payload_gets_a_documented_answer(app: Flask, payload: dict) -> None:
    response = post(app, "support", json.dumps(payload).encode())
    assert response.status_code in {200, 422}, response.get_data(as_text=True)
