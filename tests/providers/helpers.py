"""End-to-end helpers for provider tests: post to /hooks/<source>, deliver to the sandbox,
and read back the exact StoreTicketRequest SPP received."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from flask import Flask
from hypothesis import strategies as st
from werkzeug import Request
from werkzeug.test import EnvironBuilder, TestResponse

from bridge.errors import BridgeError
from bridge.message import InboundMessage
from bridge.providers import PROVIDERS, Provider
from bridge.providers.base import KEY_COLUMN_LENGTH
from bridge.runtime import get_runtime
from bridge.sources import Source
from tests.conftest import deliver_all

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=15,
)


def every_kind_sources() -> str:
    """A sources file with one source per registered kind, named after it, with the kind's example secret."""
    return "defaults: {user_id: 1}\nsources:\n" + "".join(
        f"  {kind}: {{kind: {kind}, secret: '{provider.example_secret}'}}\n" for kind, provider in PROVIDERS.items()
    )


def accepted_content_types(provider: Provider) -> list[str]:
    """The kind's sample content type (it may carry a multipart boundary), then every type it accepts."""
    return list(dict.fromkeys((provider.sample[0], *provider.content_types)))


def fixture(kind: str, name: str) -> bytes:
    return (FIXTURES / kind / name).read_bytes()


def original(name: str) -> bytes:
    """A file as its sender had it (``tests/fixtures/files``), before a kind's post encoded it."""
    return (FIXTURES / "files" / name).read_bytes()


def sha256(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def read_message(kind: str, body: bytes | dict[str, Any], content_type: str) -> InboundMessage:
    """The message a kind reads from a post (``body``: the bytes, or form fields and files as the
    test client takes them), attachment bytes included, which are never in the stored event:
    ``Provider.read`` on the request as the hook gets it, the signature unchecked as in a preview."""
    request = EnvironBuilder(method="POST", data=body, content_type=content_type).get_request()
    source = Source(name=kind, kind=kind, secret=PROVIDERS[kind].example_secret)
    return PROVIDERS[kind].read(request, source, verify=False)


def deliver(app: Flask, sandbox: Any, response: TestResponse) -> dict[str, Any]:
    """Deliver the event ``response`` accepted; return the StoreTicketRequest that reached SPP."""
    assert response.status_code == 200, response.get_data(as_text=True)
    event_id = response.get_json()["event_id"]
    deliver_all(get_runtime(app))
    sent = [t["request"] for t in sandbox.sandbox.tickets if t["request"]["metadata"]["bridge_event_id"] == event_id]
    assert len(sent) == 1, f"expected one ticket for {event_id}, got {len(sent)}"
    return dict(sent[0])


def stored_event(app: Flask, event_id: str) -> dict[str, Any]:
    event = get_runtime(app).store.queries.get_event(event_id)
    assert event is not None
    return event


def verify_then_parse(provider: Provider, request: Request, source: Source, verify_as: Source | None = None) -> None:
    """Verify, then parse even when unverified (as the preview does).

    Only a BridgeError may come out, and a parsed message must be storable.
    """
    with contextlib.suppress(BridgeError):
        provider.verify(request, verify_as or source)
    try:
        message = provider.parse(request, source)
    except BridgeError:
        return
    assert_storable(message)


def assert_storable(message: InboundMessage) -> None:
    """The message fits the events table: JSON for its column, a dedupe key the key column and
    PostgreSQL text take (no NUL, no lone surrogate), a discard reason without NUL."""
    json.dumps(message.to_dict())
    assert len(message.dedupe_key) <= KEY_COLUMN_LENGTH, message.dedupe_key
    for attachment in message.attachments:  # the bytes sent to SPP are the size listed in the note
        assert attachment.content is None or attachment.size == len(attachment.content), attachment
        assert attachment.content is None or attachment.problem is None, attachment
    assert "\x00" not in message.dedupe_key
    message.dedupe_key.encode("utf-8")
    assert message.discard_reason is None or "\x00" not in message.discard_reason
