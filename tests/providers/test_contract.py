"""What every registered kind must do, checked over ``PROVIDERS``.

A kind added to the registry is held to this contract without a line here: it declares its
example secret and its sample (bridge/providers/base.py), and the tests build their sources
and requests from those. What only one kind does stays in tests/providers/test_<kind>.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder

from bridge.errors import ConfigError
from bridge.providers import PROVIDERS, Provider
from bridge.providers.base import BasicAuth
from bridge.sources import Source
from tests.conftest import AppFactory, admin_headers
from tests.providers.helpers import (
    JSON_VALUES,
    accepted_content_types,
    deliver,
    every_kind_sources,
    stored_event,
    verify_then_parse,
)

KINDS = sorted(PROVIDERS)
GARBAGE = b'\xff\xfe\x00{"<--xYzZY\r\n\r\nnot a body of any kind'
NON_ASCII_WORD = re.compile(r"\w*[^\x00-\x7f]\w*")


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app(every_kind_sources())


def wrong_credentials(provider: Provider) -> dict[str, str]:
    """A wrong value in every place a kind looks for its credentials (Mailgun's are form fields)."""
    headers = {
        "X-Bridge-Token": "wrong-token",
        "Authorization": "Basic " + base64.b64encode(b"wrong:wrong").decode(),
        "webhook-id": "msg_wrong",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1," + base64.b64encode(b"wrong").decode(),
    }
    signature_header = getattr(provider, "signature_header", None)  # the body-HMAC kinds
    if signature_header:
        prefix = getattr(provider, "signature_prefix", b"").decode()
        headers[signature_header] = prefix + base64.b64encode(b"wrong").decode()
    return headers


@pytest.mark.parametrize("kind", [kind for kind in KINDS if PROVIDERS[kind].requires_secret])
def test_a_kind_that_needs_a_secret_refuses_to_start_without_one(make_app: AppFactory, kind: str) -> None:
    with pytest.raises(ConfigError, match=rf"sources\.hook\.secret: kind '{kind}' needs a secret"):
        make_app(f"defaults: {{user_id: 1}}\nsources:\n  hook: {{kind: {kind}}}\n")


@pytest.mark.parametrize("kind", KINDS)
def test_credentials_are_checked_before_the_body(app: Flask, kind: str) -> None:
    """Missing or wrong credentials with a body no kind can parse: 401, never what the body would earn."""
    provider = PROVIDERS[kind]
    client = app.test_client()
    for query, headers in (("", {}), ("?token=wrong-token", wrong_credentials(provider))):
        for content_type in accepted_content_types(provider):
            response = client.post(f"/hooks/{kind}{query}", data=GARBAGE, headers=headers, content_type=content_type)
            assert response.status_code == 401, (content_type, headers, response.get_json())
            # the challenge names what the sender must send: Basic where credentials go in the URL
            scheme = "Basic" if isinstance(provider, BasicAuth) else "Bearer"
            assert response.headers["WWW-Authenticate"] == f'{scheme} realm="spp-ticket-bridge"'
        # a kind whose credentials travel in the form (mailgun) must see a form first
        response = client.post(f"/hooks/{kind}{query}", data=GARBAGE, headers=headers, content_type="text/csv")
        assert response.status_code in (401, 415), response.get_json()


@pytest.mark.parametrize("kind", KINDS)
def test_the_sample_makes_a_ticket(app: Flask, kind: str) -> None:
    """The admin page's try-it form starts with the sample (stripped): it must preview as a ticket."""
    content_type, sample = PROVIDERS[kind].sample
    assert sample == sample.strip()
    response = app.test_client().post(
        f"/api/preview/{kind}?calls=true", data=sample.encode(), headers=admin_headers(), content_type=content_type
    )
    assert response.status_code == 200, response.get_json()
    calls = response.get_json()
    assert calls["client"]["otherwise_user_id"] == 1 and calls["ticket"]["body"]["note"]
    assert calls["message"]["body"]["message"].strip()


@pytest.mark.parametrize("kind", KINDS)
def test_non_ascii_text_reaches_the_stored_message_and_the_ticket(
    app: Flask, sandbox: object, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample's non-ASCII words come out in the ticket SPP receives, and as such in the stored message.

    The unsigned sample is let through: verification is each kind's own tests' subject.
    """
    monkeypatch.setattr(PROVIDERS[kind], "verify", lambda request, source: None)
    content_type, sample = PROVIDERS[kind].sample
    response = app.test_client().post(f"/hooks/{kind}", data=sample.encode(), content_type=content_type)
    assert response.status_code == 200, response.get_json()
    stored = json.dumps(stored_event(app, response.get_json()["event_id"])["message"], ensure_ascii=False)
    ticket = deliver(app, sandbox, response)
    event = stored_event(app, response.get_json()["event_id"])
    [message] = sandbox.sandbox.messages_of(event["ticket_id"])  # type: ignore[attr-defined]
    assert event["spp_message_id"] == message.id and message.user_id == ticket["user_id"]
    text = f"{ticket.get('subject', '')}\n{message.message}"
    words = set(NON_ASCII_WORD.findall(text))
    assert words, f"the {kind} sample brings no non-ASCII text to the ticket: {text!r}"
    assert "\ufffd" not in text and "\u00c3" not in text, text  # nothing decoded in the wrong charset
    assert all(word in stored for word in words), (words, stored)


@st.composite
def near(draw: st.DrawFn, sample: bytes) -> bytes:
    """The sample with a stretch replaced by random bytes (cut short when the stretch runs to its end)."""
    start = draw(st.integers(0, len(sample)))
    end = draw(st.integers(start, len(sample)))
    return sample[:start] + draw(st.binary(max_size=16)) + sample[end:]


@st.composite
def altered(draw: st.DrawFn, value: Any) -> Any:
    """A JSON value with parts dropped or replaced by other JSON values, at any depth."""
    if draw(st.integers(0, 7)) == 0:
        return draw(JSON_VALUES)
    if isinstance(value, dict):
        return {k: draw(altered(v)) for k, v in value.items() if draw(st.integers(0, 5))}
    if isinstance(value, list):
        return [draw(altered(v)) for v in value if draw(st.integers(0, 5))]
    if isinstance(value, str) and value[:1] in ("{", "["):  # JSON in a form field (jotform's rawRequest)
        with contextlib.suppress(ValueError):
            return json.dumps(draw(altered(json.loads(value))))
    return value


@st.composite
def reshaped(draw: st.DrawFn, content_type: str, sample: str) -> bytes:
    """A JSON or urlencoded sample, still well-formed, with fields dropped or their values replaced."""
    if content_type == "application/json":
        return json.dumps(draw(altered(json.loads(sample)))).encode()
    if content_type == "application/x-www-form-urlencoded":
        fields = [(name, draw(altered(value))) for name, value in parse_qsl(sample) if draw(st.integers(0, 5))]
        return urlencode([(name, v if isinstance(v, str) else json.dumps(v)) for name, v in fields]).encode()
    return sample.encode()


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_parse_raises_only_bridge_errors(kind: str, data: st.DataObject) -> None:
    provider = PROVIDERS[kind]
    sample_type, sample = provider.sample
    bodies = st.binary(max_size=300) | near(sample.encode()) | reshaped(sample_type, sample)
    body = data.draw(bodies, label="body")
    content_type = data.draw(st.sampled_from(accepted_content_types(provider)), label="content type")
    request = EnvironBuilder(method="POST", data=body, content_type=content_type).get_request()
    verify_then_parse(provider, request, Source(name=kind, kind=kind, secret=provider.example_secret))
