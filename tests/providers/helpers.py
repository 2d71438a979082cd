"""End-to-end helpers for provider tests: post to /hooks/<source>, deliver to the sandbox,
and read back the exact StoreTicketRequest SPP received."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug import Request
from werkzeug.test import TestResponse

from bridge.errors import BridgeError
from bridge.providers import PROVIDERS, Provider
from bridge.runtime import get_runtime
from bridge.sources import Source
from tests.conftest import deliver_all

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def every_kind_sources() -> str:
    """A sources file with one source per registered kind, named after it, with the kind's example secret."""
    return "defaults: {user_id: 1}\nsources:\n" + "".join(
        f"  {kind}: {{kind: {kind}, secret: '{provider.example_secret}'}}\n" for kind, provider in PROVIDERS.items()
    )


def fixture(kind: str, name: str) -> bytes:
    return (FIXTURES / kind / name).read_bytes()


def deliver(app: Flask, sandbox: Any, response: TestResponse) -> dict[str, Any]:
    """Deliver the event ``response`` accepted; return the StoreTicketRequest that reached SPP."""
    assert response.status_code == 200, response.get_data(as_text=True)
    event_id = response.get_json()["event_id"]
    deliver_all(get_runtime(app))
    sent = [t["request"] for t in sandbox.sandbox.tickets if t["request"]["metadata"]["bridge_event_id"] == event_id]
    assert len(sent) == 1, f"expected one ticket for {event_id}, got {len(sent)}"
    return dict(sent[0])


def stored_event(app: Flask, event_id: str) -> dict[str, Any]:
    event = get_runtime(app).store.get_event(event_id)
    assert event is not None
    return event


def verify_then_parse(provider: Provider, request: Request, source: Source, verify_as: Source | None = None) -> None:
    """Verify, then parse even when unverified (as the preview does).

    Only a BridgeError may come out, and a parsed message must be storable as JSON.
    """
    with contextlib.suppress(BridgeError):
        provider.verify(request, verify_as or source)
    try:
        message = provider.parse(request, source)
    except BridgeError:
        return
    json.dumps(message.to_dict())
