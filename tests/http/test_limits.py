"""Per-source limits (docs/behaviour.md sections 3 and 4): ``rate_limit`` counted per sender in the
database, shared by every process, and ``max_body_bytes``; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select

from bridge.app import create_app
from bridge.db import events, rate_counters
from bridge.errors import ConfigError
from bridge.message import InboundMessage
from bridge.runtime import Runtime, get_runtime
from bridge.status import Status
from bridge.store import NewEvent, RateCheck, RateExceeded
from tests.conftest import CLIENTS, AppFactory, admin_headers, bridge_env
from tests.helpers import serve_app

LIMITED = (
    CLIENTS
    + """sources:
  limited:
    kind: json
    rate_limit: 2/minute
  small:
    kind: json
    max_body_bytes: 200
  contact:
    kind: form
    rate_limit: 1/hour
"""
)


def stored_count(runtime: Runtime) -> int:
    with runtime.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


def post(app: Flask, body: dict, ip: str = "198.51.100.7", **headers: str):
    return app.test_client().post("/hooks/limited", json=body, headers=headers, environ_base={"REMOTE_ADDR": ip})


def assert_rate_limited(response, window: int) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == "rate_limited" and "2/minute" in body["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= window


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app(LIMITED)


# --- rate_limit ----------------------------------------------------------------------------


def test_the_next_post_from_one_sender_is_429_and_stores_nothing(app: Flask) -> None:
    runtime = get_runtime(app)
    for n in range(2):
        assert post(app, {"email": "alice@example.com", "subject": f"n{n}"}).status_code == 200
    over = post(app, {"email": "Alice@Example.com ", "subject": "third"})
    assert_rate_limited(over, 60)
    assert stored_count(runtime) == 2
    # another sender has a window of its own, also from the same address
    assert post(app, {"email": "bob@example.com", "subject": "hi"}).status_code == 200
    assert stored_count(runtime) == 3


def test_a_retry_of_a_stored_event_still_gets_its_duplicate_answer(app: Flask) -> None:
    first = post(app, {"email": "alice@example.com"}, **{"Idempotency-Key": "k-1"}).get_json()
    assert post(app, {"email": "alice@example.com"}, **{"Idempotency-Key": "k-2"}).status_code == 200
    assert_rate_limited(post(app, {"email": "alice@example.com"}, **{"Idempotency-Key": "k-3"}), 60)
    again = post(app, {"email": "alice@example.com"}, **{"Idempotency-Key": "k-1"})
    assert again.status_code == 200
    assert again.get_json()["duplicate"] is True
    assert stored_count(get_runtime(app)) == 2
    # the repeat was not counted: the sender is still exactly at its limit
    assert_rate_limited(post(app, {"email": "alice@example.com"}, **{"Idempotency-Key": "k-4"}), 60)
    del first


def test_a_sender_without_an_address_is_counted_by_its_ip_address(app: Flask) -> None:
    for n in range(2):
        assert post(app, {"subject": f"n{n}"}, ip="203.0.113.1").status_code == 200
    assert_rate_limited(post(app, {"subject": "n2"}, ip="203.0.113.1"), 60)
    assert post(app, {"subject": "n3"}, ip="203.0.113.2").status_code == 200


def test_behind_a_proxy_the_forwarded_client_address_counts(app: Flask) -> None:
    # the router (one hop, ProxyFix) connects from one address for every client
    forwarded = {"X-Forwarded-For": "192.0.2.10"}
    for n in range(2):
        assert post(app, {"subject": f"n{n}"}, ip="10.0.0.1", **forwarded).status_code == 200
    assert_rate_limited(post(app, {"subject": "n2"}, ip="10.0.0.1", **forwarded), 60)
    assert post(app, {"subject": "n3"}, ip="10.0.0.1", **{"X-Forwarded-For": "192.0.2.11"}).status_code == 200


def test_the_count_is_shared_by_two_apps_on_one_database(make_app: AppFactory) -> None:
    one, two = make_app(LIMITED), make_app(LIMITED)
    assert post(one, {"email": "carol@example.com", "subject": "a"}).status_code == 200
    assert post(two, {"email": "carol@example.com", "subject": "b"}).status_code == 200
    assert_rate_limited(post(one, {"email": "carol@example.com", "subject": "c"}), 60)
    assert_rate_limited(post(two, {"email": "carol@example.com", "subject": "d"}), 60)
    assert stored_count(get_runtime(one)) == 2


def test_a_form_source_counts_too_and_a_browser_gets_the_json_error(app: Flask) -> None:
    client = app.test_client()
    form = {"email": "dave@example.com", "message": "first"}
    assert client.post("/hooks/contact", data=form, headers={"Accept": "application/json"}).status_code == 200
    over = client.post("/hooks/contact", data={**form, "message": "second"}, headers={"Accept": "text/html"})
    assert over.status_code == 429
    assert over.get_json()["error"] == "rate_limited"
    assert 1 <= int(over.headers["Retry-After"]) <= 3600


def test_a_window_frees_when_it_ends_and_ended_windows_are_deleted(app: Flask) -> None:
    """The store counts as of each event's receipt time: the next window takes the sender again."""
    store = get_runtime(app).store
    check = RateCheck("limited/60/email:erin@example.com", 2, 60)
    start = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

    def add(key: str, at: datetime):
        new = NewEvent(f"evt_{key}", "limited", Status.QUEUED, InboundMessage(key), None, None, at)
        return store.events.add(new, rate=check)

    assert add("a", start).created and add("b", start + timedelta(seconds=30)).created
    with pytest.raises(RateExceeded) as over:
        add("c", start + timedelta(seconds=45))
    assert over.value.retry_after == 15
    assert add("c", start + timedelta(seconds=60)).created
    store.events.rate_counters._next_sweep = 0.0  # the minute between sweeps has passed
    assert add("d", start + timedelta(hours=2)).created
    with store.engine.connect() as conn:
        windows = conn.execute(select(rate_counters.c.window_start)).scalars().all()
    assert windows == [int((start + timedelta(hours=2)).timestamp())]


# --- max_body_bytes --------------------------------------------------------------------------


def test_a_body_over_the_sources_limit_is_413_and_stores_nothing(app: Flask) -> None:
    client = app.test_client()
    assert client.post("/hooks/small", json={"message": "x" * 100}).status_code == 200
    response = client.post("/hooks/small", json={"message": "x" * 300})
    assert response.status_code == 413
    body = response.get_json()
    assert body["error"] == "payload_too_large" and "max_body_bytes" in body["message"]
    assert stored_count(get_runtime(app)) == 1
    # other sources keep BRIDGE_MAX_BODY_BYTES
    assert client.post("/hooks/limited", json={"message": "x" * 300}).status_code == 200


def test_a_chunked_body_over_the_sources_limit_is_413(app: Flask) -> None:
    """Without Content-Length the body is cut off at the source's limit as it is read."""

    def chunks(size: int) -> Iterator[bytes]:
        yield b'{"message": "'
        yield b"x" * size
        yield b'"}'

    with serve_app(app) as base:
        headers = {"Content-Type": "application/json"}
        over = requests.post(f"{base}/hooks/small", data=chunks(1000), headers=headers, timeout=10)
        under = requests.post(f"{base}/hooks/small", data=chunks(10), headers=headers, timeout=10)
    assert over.status_code == 413 and over.json()["error"] == "payload_too_large"
    assert under.status_code == 200
    assert stored_count(get_runtime(app)) == 1


def test_a_chunked_form_over_the_global_limit_is_413_not_cut_off(make_app: AppFactory) -> None:
    """Werkzeug stops a body without Content-Length at BRIDGE_MAX_BODY_BYTES without a word; the
    first 1000 bytes of this form would parse, and a cut-off message would be stored."""
    app = make_app(LIMITED, BRIDGE_MAX_BODY_BYTES="1000")

    def form() -> Iterator[bytes]:
        yield b"email=frank%40example.com&message="
        yield b"y" * 2000

    with serve_app(app) as base:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        response = requests.post(f"{base}/hooks/contact", data=form(), headers=headers, timeout=10)
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"
    assert stored_count(get_runtime(app)) == 0


def test_the_preview_keeps_the_sources_body_limit(make_app: AppFactory) -> None:
    app = make_app(LIMITED)
    response = app.test_client().post("/api/preview/small", json={"message": "x" * 300}, headers=admin_headers())
    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"


# --- start-up ----------------------------------------------------------------------------------


def test_a_source_may_not_raise_the_global_body_limit(tmp_path, db_url: str) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text("sources:\n  big:\n    kind: json\n    max_body_bytes: 2000\n")
    env = bridge_env(db_url, "http://127.0.0.1:9", sources, BRIDGE_MAX_BODY_BYTES="1000")
    with pytest.raises(ConfigError) as info:
        create_app(env=env)
    assert str(info.value) == (
        f"{sources}: sources.big.max_body_bytes: 2000 is above BRIDGE_MAX_BODY_BYTES (1000),"
        " the limit of every request; a source can only lower it"
    )
