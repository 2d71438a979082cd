"""``standard``: Standard Webhooks senders, end to end from /hooks/<source> to the SPP sandbox.

Requests are signed at test time with the spec's reference library and a test secret.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook
from werkzeug.test import EnvironBuilder

from bridge.errors import ConfigError
from bridge.providers.standard import StandardWebhooksProvider
from bridge.sources import Source
from tests.conftest import CLIENTS
from tests.providers.helpers import JSON_VALUES, deliver, fixture, stored_event, verify_then_parse

SECRET = "whsec_c3RhbmRhcmQtd2ViaG9va3MtdGVzdC1rZXktMDAwMQ=="  # base64 of "standard-webhooks-test-key-0001"
SOURCES = (
    CLIENTS
    + f"""sources:  # message: false keeps the body in the note, where these tests read it
  billing:
    kind: standard
    message: false
    secret: {SECRET}
    email_field: data.customer.email
    name_field: data.customer.name
    ticket:
      tags: [billing]
      order: "{{{{ fields.data.invoice_id }}}}"
  events:
    kind: standard
    message: false
    secret: {SECRET}
    honeypot: trap
"""
)


def signed_headers(
    body: bytes, msg_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", at: datetime | None = None, secret=SECRET
):
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signature}


def post(app: Flask, source: str, body: bytes, headers: dict | None = None, content_type: str = "application/json"):
    headers = signed_headers(body) if headers is None else headers
    return app.test_client().post(f"/hooks/{source}", data=body, headers=headers, content_type=content_type)


@pytest.fixture
def app(make_app) -> Flask:
    return make_app(SOURCES)


def test_recommended_shape_with_dotted_fields(app: Flask, sandbox) -> None:
    body = fixture("standard", "invoice_paid.json")
    response = post(app, "billing", body)
    event_id = response.get_json()["event_id"]
    assert deliver(app, sandbox, response) == {
        "user_id": 12,
        "subject": "invoice.paid event",
        "note": "From: Alice Example <alice@example.com>\n\n" + body.decode().strip(),  # the event, indented
        "tags": ["billing"],
        "order": "in_1QxUfeHWmLk8AP3T",
        "metadata": {"bridge_event_id": event_id},
    }
    message = stored_event(app, event_id)["message"]
    assert message["fields"] == json.loads(body)
    assert message["message_id"] == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


def test_message_fields_found_under_data(app: Flask, sandbox) -> None:
    response = post(app, "events", fixture("standard", "non_ascii.json"))
    assert deliver(app, sandbox, response) == {
        "user_id": 1,
        "subject": "Consulta sobre facturación — ¿cómo?",
        "note": "From: José Núñez <jose@ejemplo.es>\n\n¡Hola! Necesito ayuda con la factura nº 42.\n谢谢 / Спасибо",
        "metadata": {"bridge_event_id": response.get_json()["event_id"]},
    }


def test_flat_object_like_the_json_kind(app: Flask, sandbox) -> None:
    response = post(app, "events", fixture("standard", "flat.json"))
    assert deliver(app, sandbox, response) == {
        "user_id": 30,
        "subject": "Disk almost full on web-3",
        "note": "From: Ops Team <ops@bigcustomer.com>\n\nweb-3 /var is at 94%.\nPlease have a look.",
        "metadata": {"bridge_event_id": response.get_json()["event_id"]},
    }


def test_a_retry_with_a_new_signature_is_a_duplicate(app: Flask) -> None:
    body = fixture("standard", "invoice_paid.json")
    first = post(app, "billing", body).get_json()
    later = signed_headers(body, at=datetime.now(UTC) - timedelta(seconds=90))
    again = post(app, "billing", body, headers=later)
    assert again.status_code == 200
    assert again.get_json() == {"event_id": first["event_id"], "status": "queued", "duplicate": True}
    other = post(app, "billing", body, headers=signed_headers(body, msg_id="msg_other")).get_json()
    assert other["event_id"] != first["event_id"]


def test_key_rotation_any_listed_signature_may_match(app: Flask) -> None:
    body = fixture("standard", "flat.json")
    headers = signed_headers(body)
    wrong = signed_headers(body, secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB")["webhook-signature"]
    headers["webhook-signature"] = f"v1a,c29tZQ== {wrong} {headers['webhook-signature']}"
    assert post(app, "events", body, headers=headers).status_code == 200


@pytest.mark.parametrize("minutes", [-6, 6, -60 * 24])
def test_timestamp_more_than_five_minutes_off_is_401(app: Flask, minutes: int) -> None:
    body = fixture("standard", "flat.json")
    headers = signed_headers(body, at=datetime.now(UTC) + timedelta(minutes=minutes))
    response = post(app, "events", body, headers=headers)
    assert response.status_code == 401
    assert "timestamp" in response.get_json()["message"]


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-signature": "v1"},  # no comma: the library's tuple unpacking raises ValueError
        {"webhook-signature": "v1,a,b"},
        {"webhook-signature": "v1,!!notbase64"},  # binascii.Error
        {"webhook-signature": "v1,c29tZQ=="},
        {"webhook-signature": ""},
        {"webhook-id": ""},
        {"webhook-id": "msg_changed"},
        {"webhook-timestamp": "soon"},
        {"webhook-timestamp": "1e400"},
        {"webhook-timestamp": "nan"},
        {"webhook-timestamp": "99999999999999999999"},
    ],
)
def test_bad_signature_headers_are_401(app: Flask, change: dict) -> None:
    body = fixture("standard", "flat.json")
    response = post(app, "events", body, headers={**signed_headers(body), **change})
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"


def test_body_that_is_not_utf8_is_401(app: Flask) -> None:
    body = '{"subject": "caf\u00e9"}'.encode("latin-1")
    headers = signed_headers(b'{"subject": "cafe"}')
    assert post(app, "events", body, headers=headers).status_code == 401


def test_unusable_secret_stops_start_up(make_app) -> None:
    with pytest.raises(ConfigError, match=r"sources\.billing\.secret: is not a Standard Webhooks secret"):
        make_app(SOURCES.replace(SECRET, "whsec_abcde"))  # not valid base64


@pytest.mark.parametrize("body, status", [(b"[1]", 422), (b'"text"', 422), (b"{nope", 400), (b'{"a": NaN}', 400)])
def test_signed_but_unusable_body(app: Flask, body: bytes, status: int) -> None:
    assert post(app, "events", body).status_code == status


def test_wrongly_typed_message_field_is_422(app: Flask) -> None:
    body = json.dumps({"type": "x", "data": {"email": ["a@b.c"]}}).encode()
    response = post(app, "events", body)
    assert response.status_code == 422 and "email" in response.get_json()["errors"]


def test_wrong_content_type_is_415(app: Flask) -> None:
    body = fixture("standard", "flat.json")
    assert post(app, "events", body, content_type="text/plain").status_code == 415


def test_filled_honeypot_is_discarded(app: Flask) -> None:
    body = json.dumps({"type": "contact.created", "trap": "x", "data": {"email": "a@b.co"}}).encode()
    assert post(app, "events", body).get_json()["status"] == "discarded"


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40)
SOURCE = Source(name="fuzz", kind="standard", secret=SECRET, email_field="data.e", options={"honeypot": "h"})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=JSON_VALUES | st.fixed_dictionaries({}, optional={"type": JSON_VALUES, "data": JSON_VALUES}),
    signed=st.booleans(),
    headers=st.dictionaries(st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature"]), header_text),
)
def test_verify_and_parse_raise_only_bridge_errors(value, signed: bool, headers) -> None:
    body = json.dumps(value).encode()
    headers = {**headers, **(signed_headers(body) if signed else {})}
    request = EnvironBuilder(method="POST", data=body, headers=headers, content_type="application/json").get_request()
    verify_then_parse(StandardWebhooksProvider(), request, SOURCE)


@pytest.mark.parametrize("msg_id", ["msg_\u00e9\u00ff", "m" * 300])
def test_unusual_or_long_webhook_id_is_stored_not_a_500(app: Flask, msg_id: str) -> None:
    body = fixture("standard", "flat.json")
    first = post(app, "events", body, headers=signed_headers(body, msg_id=msg_id))
    assert first.status_code == 200
    again = post(app, "events", body, headers=signed_headers(body, msg_id=msg_id))
    assert again.get_json()["event_id"] == first.get_json()["event_id"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=JSON_VALUES | st.fixed_dictionaries({}, optional={"type": JSON_VALUES, "data": JSON_VALUES}))
def test_any_signed_payload_gets_a_documented_answer(app: Flask, value) -> None:
    body = json.dumps(value).encode()
    response = post(app, "events", body)
    assert response.status_code in {200, 422}, response.get_data(as_text=True)
