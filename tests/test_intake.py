"""Intake: a parsed message's first status, its ticket request, and how it is stored."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from flask import Flask
from werkzeug.test import EnvironBuilder

from bridge.errors import Unauthorized, Unmappable
from bridge.intake import Received, accept, map_message, new_event_id, preview
from bridge.log import REDACTED
from bridge.message import Attachment, InboundMessage
from bridge.runtime import Runtime, get_runtime
from bridge.status import Status
from tests.conftest import API_SECRET, AppFactory

RECEIVED = Received("req-1", {"method": "POST", "path": "/hooks/api", "query": {}, "headers": {}}, b"{}")
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_event_ids_sort_by_arrival() -> None:
    ids = [new_event_id() for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(len(i) <= 40 and i.startswith("evt_") for i in ids)
    assert ids[0][:16] <= ids[-1][:16]


def test_event_ids_of_forked_processes_differ() -> None:
    """gunicorn forks its web processes: each must draw its own random part, not its parent's."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id's random part, then out at once
        os.write(write, new_event_id()[-16:].encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert len(child) == 16 and child != new_event_id()[-16:]


def test_map_message_queues_discards_or_fails(runtime: Runtime) -> None:
    api = runtime.sources.sources["api"]
    queued = map_message(InboundMessage("k1", email="alice@example.com", subject="Hi"), api, runtime, NOW, "e")
    assert (queued.status, queued.failure) == (Status.QUEUED, None)
    assert queued.delivery is not None and queued.delivery.ticket_request["user_id"] == 12
    assert (queued.delivery.client_id, queued.delivery.client_how) == (12, "mapped")

    spam = InboundMessage("k2", subject="Hi", discard_reason="automatic reply (X-Autoreply)")
    discarded = map_message(spam, api, runtime, NOW)
    assert (discarded.status, discarded.delivery) == (Status.DISCARDED, None)
    assert discarded.failure is not None and discarded.failure.detail == "automatic reply (X-Autoreply)"


def test_map_message_fails_what_cannot_become_a_ticket(make_app: AppFactory) -> None:
    # no defaults.user_id, no clients, and no look-up in SPP
    runtime = get_runtime(make_app("client_lookup: false\nsources:\n  api: {kind: json}\n"))
    mapped = map_message(InboundMessage("k", email="nobody@example.org"), runtime.sources.sources["api"], runtime, NOW)
    assert mapped.status == Status.FAILED
    assert mapped.failure is not None and mapped.failure.reason == "unresolved_user"


def test_accept_stores_once_and_answers_repeats_with_the_first_event(app: Flask, runtime: Runtime) -> None:
    api = runtime.sources.sources["api"]
    message = InboundMessage("same-key", email="alice@example.com", subject="Hello")
    runtime.wake.clear()
    first = accept(runtime, api, message, RECEIVED)
    assert (first.status, first.created) == (Status.QUEUED, True)
    assert runtime.wake.is_set()
    again = accept(runtime, api, InboundMessage("same-key", subject="other text"), RECEIVED)
    assert (again.event_id, again.status, again.created) == (first.event_id, Status.QUEUED, False)
    event = runtime.store.queries.get_event(first.event_id)
    assert event is not None and event["message"]["subject"] == "Hello"
    assert event["request_id"] == "req-1"
    assert event["ticket_request"]["metadata"]["bridge_event_id"] == first.event_id


def test_accept_stores_a_discarded_message_without_waking_the_worker(app: Flask, runtime: Runtime) -> None:
    runtime.wake.clear()
    spam = InboundMessage("spam-1", email="alice@example.com", discard_reason="bulk mail (Precedence: bulk)")
    added = accept(runtime, runtime.sources.sources["api"], spam, RECEIVED)
    assert (added.status, added.created) == (Status.DISCARDED, True)
    assert not runtime.wake.is_set()
    event = runtime.store.queries.get_event(added.event_id)
    assert event is not None and event["last_error"] == "discarded: bulk mail (Precedence: bulk)"


def test_accept_removes_the_sources_secret_from_what_it_stores(app: Flask, runtime: Runtime) -> None:
    echoed = InboundMessage(
        "echo-1",
        email="alice@example.com",
        subject=f"token {API_SECRET}",
        body=f"my key is {API_SECRET}",
        fields={"nested": [{"secret": API_SECRET}]},
        attachments=[Attachment(f"{API_SECRET}.txt", "text/plain", 3)],
    )
    added = accept(runtime, runtime.sources.sources["api"], echoed, RECEIVED)
    event = runtime.store.queries.get_event(added.event_id)
    assert event is not None
    assert API_SECRET not in repr(event)
    assert event["message"]["subject"] == f"token {REDACTED}"
    assert event["message"]["fields"] == {"nested": [{"secret": REDACTED}]}
    assert event["message"]["attachments"][0]["name"] == f"{REDACTED}.txt"


def test_a_one_time_token_reused_by_another_message_is_refused(make_app: AppFactory) -> None:
    runtime = get_runtime(make_app())
    api = runtime.sources.sources["api"]
    accept(runtime, api, InboundMessage("m-1", email="alice@example.com", replay_token="tok"), RECEIVED)
    with pytest.raises(Unauthorized):
        accept(runtime, api, InboundMessage("m-2", email="alice@example.com", replay_token="tok"), RECEIVED)
    assert runtime.store.queries.count_by_status() == {"queued": 1}


def test_preview_maps_without_storing(app: Flask, runtime: Runtime) -> None:
    api = runtime.sources.sources["api"]
    body = b'{"email": "alice@example.com", "subject": "Preview me", "message": "hi"}'
    request = EnvironBuilder(method="POST", data=body, content_type="application/json").get_request()
    ticket = preview(runtime, api, request)  # no X-Bridge-Token: the preview skips the sender's secret
    assert ticket["subject"] == "Preview me"
    assert "metadata" not in ticket or "bridge_event_id" not in ticket["metadata"]
    assert runtime.store.queries.count_by_status() == {}


def test_preview_of_a_message_that_makes_no_ticket_says_why(make_app: AppFactory) -> None:
    runtime = get_runtime(make_app("client_lookup: false\nsources:\n  api: {kind: json}\n"))
    request = EnvironBuilder(method="POST", json={"email": "x@example.org"}).get_request()
    with pytest.raises(Unmappable) as raised:
        preview(runtime, runtime.sources.sources["api"], request)
    assert raised.value.code == "unresolved_user"
    assert raised.value.message.startswith("it would be stored as failed")
