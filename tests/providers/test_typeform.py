"""``typeform``: signed JSON webhooks, end to end from /hooks/<source> to the SPP sandbox."""

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

from bridge.providers.typeform import TypeformProvider
from bridge.sources import Source
from tests.conftest import CLIENTS
from tests.providers.helpers import JSON_VALUES, deliver, fixture, stored_event, verify_then_parse

SECRET = "typeform-test-secret-5f1c9a"
SOURCES = (
    CLIENTS
    + f"""sources:  # message: false keeps the body in the note, where these tests read it
  quotes:
    kind: typeform
    message: false
    secret: {SECRET}
    name_field: name
    honeypot: website_trap
    ticket:
      tags: [typeform]
      metadata:
        campaign: "{{{{ fields.utm_campaign }}}}"
  devis:
    kind: typeform
    message: false
    secret: {SECRET}
    name_field: prenom
  example:
    kind: typeform
    message: false
    secret: {SECRET}
    email_field: Secondary contact email
  support:
    kind: typeform
    message: false
    secret: {SECRET}
  support_by_title:
    kind: typeform
    message: false
    secret: {SECRET}
    name_field: Company
    subject_field: order NUMBER
    body_field: Anything else we should know?
  support_by_ref:
    kind: typeform
    message: false
    secret: {SECRET}
    name_field: company
    subject_field: order_number
    body_field: extra_info
  support_unanswered:
    kind: typeform
    message: false
    secret: {SECRET}
    name_field: nickname
    subject_field: topic
    body_field: comments
"""
)
SCREENSHOT = (
    "https://api.typeform.com/forms/Kq7vR2xN/responses/m4c8r2t6y0u3i7o1p5a9s2d6f0g4h8j1/fields/Sc9qR0sT1uV2"
    "/files/9b2e71c4d5a6-pay%20button.png"
)


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def post(app: Flask, source: str, body: bytes, signature: str | None = None, **kwargs):
    headers = {"Typeform-Signature": sign(body) if signature is None else signature}
    return app.test_client().post(
        f"/hooks/{source}", data=body, headers=headers, content_type=kwargs.pop("content_type", "application/json")
    )


@pytest.fixture
def app(make_app) -> Flask:
    return make_app(SOURCES)


def test_every_answer_type(app: Flask, sandbox) -> None:
    response = post(app, "quotes", fixture("typeform", "every_type.json"))
    ticket = deliver(app, sandbox, response)
    assert ticket == {
        "user_id": 30,
        "subject": "Project enquiry",
        "note": "From: Ada Lovelace <ada@bigcustomer.com>\n\n"
        "What is your name?: Ada Lovelace\n"
        "Your email address: ada@bigcustomer.com\n"
        "Tell us about the project: We need a new shop.\nIt should launch before the holidays.\n"
        "Which service do you need?: Website redesign\n"
        "Anything else?: SEO, Hosting, Newsletter\n"
        "Budget: Around 30k\n"
        "How many pages?: 12\n"
        "How urgent is it (0-10)?: 8\n"
        "Do you have a website already?: no\n"
        "Do you accept our terms?: yes\n"
        "Deadline: 2026-12-15\n"
        "Phone: +441632960961\n"
        "Current website: https://shop.bigcustomer.com\n"
        "Upload your brief: https://api.typeform.com/forms/pRj8fQ2w/responses/9x2k0v4q8m1b3n5c7z9x2k0v4q8m1b3n"
        "/fields/Fu0dBcC1eD2f/files/4f1c2a-brief.pdf\n"
        "Deposit: amount: 50.00, last4: 4242, name: Ada Lovelace, success: yes\n"
        "utm_campaign: winter-sale\n\n"
        "Attachments (not forwarded):\n"
        "- 4f1c2a-brief.pdf (0 B)",
        "tags": ["typeform"],
        "metadata": {"campaign": "winter-sale", "bridge_event_id": response.get_json()["event_id"]},
    }
    message = stored_event(app, response.get_json()["event_id"])["message"]
    assert message["fields"]["extras"] == ["SEO", "Hosting", "Newsletter"]
    assert message["fields"]["Anything else?"] == ["SEO", "Hosting", "Newsletter"]
    assert message["fields"]["deposit"] == {"amount": "50.00", "last4": "4242", "name": "Ada Lovelace", "success": True}
    assert message["fields"]["existing_site"] is False
    assert "website_trap" not in message["fields"]  # empty hidden fields are left out


def test_typeform_example_payload_with_email_field_by_title(app: Flask, sandbox) -> None:
    response = post(app, "example", fixture("typeform", "example_payload.json"))
    ticket = deliver(app, sandbox, response)
    assert ticket["user_id"] == 12  # alice@example.com, the second email answer, picked by its title
    assert ticket["subject"] == "Webhooks example"
    assert ticket["note"] == (
        "From: <alice@example.com>\n\n"
        "Thanks, {{answer_60906475}}! What's it like where you live? Tell us in a few sentences.: It's cold right now! "
        "I live in an older medium-sized city with a university. Geographically, the area is hilly.\n"
        "If you're OK with our city management following up if they have further questions, please give us your "
        "email address.: laura@example.com\n"
        "What is your first name?: Laura\n"
        "When did you move to the place where you live?: 2005-10-15\n"
        "Secondary contact email: alice@example.com\n"
        "Which pictures do you like? You can choose as many as you like.: London, Sydney\n"
        "On a scale of 1 to 5, what rating would you give the weather in Sydney?: 5\n"
        "How many people live in your household?: 3\n"
        "On a scale of 1 to 5, what rating would you give the food in Sydney?: 3\n"
        "Upload a photo of your favourite spot: https://api.typeform.com/forms/lT4Z3j/responses/"
        "a3a12ec67a1365927098a606107fac15/fields/M5tXK5kGsfK4/files/d3f8e7a2-sydney.jpg\n"
        "user_id: abc123456\n\n"
        "Attachments (not forwarded):\n"
        "- d3f8e7a2-sydney.jpg (0 B)"
    )
    # no name, subject or message question: no name, the form's title, every answer in order
    message = stored_event(app, response.get_json()["event_id"])["message"]
    assert message["name"] is None
    assert message["attachments"] == [
        {
            "name": "d3f8e7a2-sydney.jpg",
            "content_type": "",
            "size": 0,
            "url": "https://api.typeform.com/forms/lT4Z3j/responses/a3a12ec67a1365927098a606107fac15/fields/"
            "M5tXK5kGsfK4/files/d3f8e7a2-sydney.jpg",
        }
    ]


def test_name_subject_and_message_detected_by_ref(app: Flask, sandbox) -> None:
    response = post(app, "support", fixture("typeform", "contact_refs.json"))
    ticket = deliver(app, sandbox, response)
    assert ticket["user_id"] == 30
    assert ticket["subject"] == "Checkout fails on mobile"
    message = stored_event(app, response.get_json()["event_id"])["message"]
    assert message["name"] == "Ada Lovelace"
    assert message["email"] == "ada@bigcustomer.com"
    assert message["subject"] == "Checkout fails on mobile"
    # the message first, then every other answer (name, address and subject too), hidden fields last
    assert message["body"] == (
        "Since Monday the pay button does nothing on phones.\nDesktop works.\n\n"
        "Who are we talking to?: Ada Lovelace\n"
        "What's the best address to reach you?: ada@bigcustomer.com\n"
        "Company: Big Customer Ltd\n"
        "In a few words, what is it about?: Checkout fails on mobile\n"
        "Order number: SO-2026-1187\n"
        "Anything else we should know?: We use Safari on iPhone 15.\n"
        f"Upload a screenshot: {SCREENSHOT}\n"
        "utm_source: newsletter"
    )
    assert ticket["note"].startswith(f"From: Ada Lovelace <ada@bigcustomer.com>\n\n{message['body']}")
    assert message["attachments"] == [
        {"name": "9b2e71c4d5a6-pay button.png", "content_type": "", "size": 0, "url": SCREENSHOT}
    ]
    assert message["fields"]["message"] == message["fields"]["Tell us more"]  # fields keep every answer


def test_name_subject_and_message_detected_by_title(app: Flask, sandbox) -> None:
    response = post(app, "support", fixture("typeform", "contact_titles.json"))
    ticket = deliver(app, sandbox, response)
    assert ticket == {
        "user_id": 30,
        "subject": "Invoice address",
        "note": "From: Grace Hopper <grace@bigcustomer.com>\n\n"
        "Please put our VAT number on the next invoice.\n\n"
        "Your name: Grace Hopper\n"
        "Email: grace@bigcustomer.com\n"
        "Subject: Invoice address\n"
        "Which plan are you on?: Pro",
        "metadata": {"bridge_event_id": response.get_json()["event_id"]},
    }


@pytest.mark.parametrize(
    "title, name",
    [
        ("Your Name:", "Grace Hopper"),
        ("full-name", "Grace Hopper"),
        ("fullName", "Grace Hopper"),
        ("  YOUR FULL NAME *", "Grace Hopper"),
        ("Name", "Grace Hopper"),
        ("What is your name?", None),
        ("Company name", None),
        ("Nickname", None),
    ],
)
def test_which_titles_are_a_name(app: Flask, title: str, name: str | None) -> None:
    payload = json.loads(fixture("typeform", "contact_titles.json"))
    payload["form_response"]["definition"]["fields"][0]["title"] = title
    response = post(app, "support", json.dumps(payload).encode())
    assert stored_event(app, response.get_json()["event_id"])["message"]["name"] == name


@pytest.mark.parametrize("source", ["support_by_title", "support_by_ref"])
def test_name_subject_and_body_fields_override_detection(app: Flask, sandbox, source: str) -> None:
    response = post(app, source, fixture("typeform", "contact_refs.json"))
    ticket = deliver(app, sandbox, response)
    assert ticket["subject"] == "SO-2026-1187"
    message = stored_event(app, response.get_json()["event_id"])["message"]
    assert message["name"] == "Big Customer Ltd"
    assert message["body"] == (
        "We use Safari on iPhone 15.\n\n"
        "Who are we talking to?: Ada Lovelace\n"
        "What's the best address to reach you?: ada@bigcustomer.com\n"
        "Company: Big Customer Ltd\n"
        "In a few words, what is it about?: Checkout fails on mobile\n"
        "Tell us more: Since Monday the pay button does nothing on phones.\nDesktop works.\n"
        "Order number: SO-2026-1187\n"
        f"Upload a screenshot: {SCREENSHOT}\n"
        "utm_source: newsletter"
    )


def test_fields_naming_unanswered_questions_leave_no_guess(app: Flask, sandbox) -> None:
    """A configured field replaces detection: when it is not answered there is no name, the title
    is the subject and the body lists every answer, though "full_name", "subject" and "message" are there."""
    response = post(app, "support_unanswered", fixture("typeform", "contact_refs.json"))
    ticket = deliver(app, sandbox, response)
    assert ticket["subject"] == "Support request"
    message = stored_event(app, response.get_json()["event_id"])["message"]
    assert message["name"] is None
    assert message["body"].startswith("Who are we talking to?: Ada Lovelace\n")
    assert "Tell us more: Since Monday" in message["body"]
    assert ticket["note"].startswith("From: <ada@bigcustomer.com>\n\nWho are we talking to?: Ada Lovelace\n")


def test_first_email_answer_is_the_sender_by_default(make_app, sandbox) -> None:
    app = make_app(SOURCES.replace("email_field: Secondary contact email", "email_field: readable_ref_email"))
    ticket = deliver(app, sandbox, post(app, "example", fixture("typeform", "example_payload.json")))
    assert ticket["note"].startswith("From: <laura@example.com>\n\n")
    default = make_app(SOURCES.replace("    email_field: Secondary contact email\n", ""))
    ticket = deliver(default, sandbox, post(default, "example", fixture("typeform", "example_payload.json")))
    assert ticket["note"].startswith("From: <laura@example.com>\n\n")


def test_same_token_is_a_duplicate(app: Flask) -> None:
    body = fixture("typeform", "every_type.json")
    first = post(app, "quotes", body).get_json()
    # a retry may be re-serialized; the token, not the bytes, identifies the response
    again = post(app, "quotes", json.dumps(json.loads(body)).encode())
    assert again.status_code == 200
    assert again.get_json() == {"event_id": first["event_id"], "status": "queued", "duplicate": True}


@pytest.mark.parametrize(
    "signature",
    ["", "sha256=", "sha256=AAAA", sign(b"other body"), sign(b"x", "wrong-secret"), "sha1=abc", "sha256=é"],
)
def test_bad_signature_is_401(app: Flask, signature: str) -> None:
    body = fixture("typeform", "every_type.json")
    response = post(app, "quotes", body, signature=signature or " ")
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"


def test_signature_is_checked_on_the_raw_bytes(app: Flask) -> None:
    body = fixture("typeform", "non_ascii.json")
    tampered = body.replace("Zoë".encode(), b"Zoe")
    assert post(app, "devis", tampered, signature=sign(body)).status_code == 401


@pytest.mark.parametrize(
    "payload",
    [
        {"event_type": "form_response"},
        {"form_response": {"answers": []}},
        {"form_response": {"token": ""}},
        {"form_response": {"token": 42}},
        {"form_response": {"token": "t", "answers": [{"type": "text"}]}},
        [1, 2],
    ],
)
def test_payload_without_what_typeform_sends_is_422(app: Flask, payload: object) -> None:
    response = post(app, "quotes", json.dumps(payload).encode())
    assert response.status_code == 422
    assert response.get_json()["error"] == "unprocessable"


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"", b'{"a": NaN}'])
def test_unparseable_body_is_400(app: Flask, body: bytes) -> None:
    assert post(app, "quotes", body).status_code == 400


def test_wrong_content_type_is_415(app: Flask) -> None:
    body = fixture("typeform", "every_type.json")
    assert post(app, "quotes", body, content_type="application/x-www-form-urlencoded").status_code == 415


def test_filled_honeypot_hidden_field_is_discarded(app: Flask) -> None:
    payload = json.loads(fixture("typeform", "every_type.json"))
    payload["form_response"]["hidden"]["website_trap"] = "http://spam.example"
    response = post(app, "quotes", json.dumps(payload).encode())
    assert response.get_json()["status"] == "discarded"
    event = stored_event(app, response.get_json()["event_id"])
    assert event["last_error"] == "discarded: spam: honeypot field 'website_trap' was filled in"


def test_partial_response_is_stored_but_makes_no_ticket(app: Flask) -> None:
    payload = json.loads(fixture("typeform", "every_type.json"))
    payload["event_type"] = "form_response_partial"
    partial = post(app, "quotes", json.dumps(payload).encode()).get_json()
    assert partial["status"] == "discarded"
    complete = post(app, "quotes", fixture("typeform", "every_type.json")).get_json()
    assert complete["status"] == "queued" and "duplicate" not in complete


def test_missing_definition_falls_back_to_refs(app: Flask, sandbox) -> None:
    payload = {
        "event_type": "form_response",
        "form_response": {
            "token": "tok-1",
            "answers": [{"type": "email", "email": "bob@bigcustomer.com", "field": {"id": "x1", "ref": "contact"}}],
        },
    }
    response = post(app, "devis", json.dumps(payload).encode())
    assert deliver(app, sandbox, response) == {
        "user_id": 30,
        "subject": "devis submission",
        "note": "From: <bob@bigcustomer.com>\n\ncontact: bob@bigcustomer.com",
        "metadata": {"bridge_event_id": response.get_json()["event_id"]},
    }


answer = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["text", "choice", "choices", "payment", "file_url", "field", "type", "x"])
        | st.text(max_size=5)
    },
    optional={
        "file_url": JSON_VALUES | st.text(max_size=40),
        "field": JSON_VALUES | st.fixed_dictionaries({"id": st.text(max_size=3)}),
        "choice": JSON_VALUES,
        "choices": JSON_VALUES,
        "text": JSON_VALUES,
        "payment": JSON_VALUES,
    },
)
payloads = st.fixed_dictionaries(
    {},
    optional={
        "event_type": JSON_VALUES | st.just("form_response_partial"),
        "form_response": JSON_VALUES
        | st.fixed_dictionaries(
            {"token": st.text(max_size=300) | JSON_VALUES},
            optional={
                "answers": st.lists(answer, max_size=3) | JSON_VALUES,
                "hidden": JSON_VALUES,
                "definition": JSON_VALUES | st.fixed_dictionaries({"fields": JSON_VALUES, "title": JSON_VALUES}),
            },
        ),
    },
)
SOURCE = Source(name="fuzz", kind="typeform", secret=SECRET, email_field="e", options={"honeypot": "h"})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=payloads, signed=st.booleans())
def test_parser_raises_only_bridge_errors(payload: dict, signed: bool) -> None:
    body = json.dumps(payload).encode()
    headers = {"Typeform-Signature": sign(body)} if signed else {}
    request = EnvironBuilder(method="POST", data=body, headers=headers, content_type="application/json").get_request()
    verify_then_parse(TypeformProvider(), request, SOURCE)


@pytest.mark.parametrize("token", ["\ud800", "a\u0000b", "t" * 300])
def test_unstorable_or_long_token_is_hashed_not_a_500(app: Flask, token: str) -> None:
    payload = {"form_response": {"token": token, "answers": [{"type": "text", "text": "a\u0000\ud83d", "field": {}}]}}
    body = json.dumps(payload).encode()
    first = post(app, "devis", body)
    assert first.status_code == 200
    assert post(app, "devis", body).get_json()["event_id"] == first.get_json()["event_id"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=payloads)
def test_any_signed_payload_gets_a_documented_answer(app: Flask, payload: dict) -> None:
    response = post(app, "quotes", json.dumps(payload).encode())
    assert response.status_code in {200, 422}, response.get_data(as_text=True)
