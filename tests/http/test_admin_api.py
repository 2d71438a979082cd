"""The admin API and the open endpoints (docs/behaviour.md section 6), on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.app import create_app
from bridge.runtime import Runtime
from tests.conftest import (
    ADMIN_TOKEN,
    API_SECRET,
    DEFAULT_SOURCES,
    DETAIL_KEYS,
    SUMMARY_KEYS,
    AppFactory,
    admin_headers,
    api_headers,
    bridge_env,
    deliver_all,
)

ATTEMPT_KEYS = {
    "number",
    "step",
    "client_id",
    "message_id",
    "started_at",
    "duration_ms",
    "outcome",
    "http_status",
    "error",
    "ambiguous",
    "ticket_id",
    "spp_request_id",
    "response_excerpt",
}
UNAUTHORIZED = {"error": "unauthorized", "message": "missing or wrong bearer token (BRIDGE_ADMIN_TOKEN)"}


def post_event(client: FlaskClient, n: int, source: str = "api", **fields: Any) -> str:
    body = {"email": "alice@example.com", "subject": f"Subject {n}", "message": f"Body {n}", **fields}
    response = client.post(f"/hooks/{source}", json=body, headers=api_headers())
    assert response.status_code == 200, response.get_data(as_text=True)
    event_id: str = response.get_json()["event_id"]
    time.sleep(0.002)  # event ids order by the millisecond; keep "newest first" exact
    return event_id


def get_json(client: FlaskClient, url: str, status: int = 200) -> Any:
    response = client.get(url, headers=admin_headers())
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()


def list_ids(client: FlaskClient, query: str = "") -> list[str]:
    body = get_json(client, f"/api/events{query}")
    return [item["id"] for item in body["events"]]


def is_utc_iso(value: str) -> bool:
    parsed = datetime.fromisoformat(value)
    return parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


# --- auth ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/events"), ("GET", "/api/events/evt_x"), ("POST", "/api/events/evt_x/replay")],
)
def test_no_admin_token_means_no_admin_api(make_app: AppFactory, method: str, path: str) -> None:
    app = make_app(BRIDGE_ADMIN_TOKEN="")
    for headers in ({}, admin_headers(), {"Authorization": "Bearer "}):
        response = app.test_client().open(path, method=method, headers=headers)
        assert response.status_code == 404
        assert response.get_json()["error"] == "not_found"
        assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-token",
        f"Bearer {ADMIN_TOKEN}x",
        f"Bearer {ADMIN_TOKEN[:-1]}",
        f"Basic {ADMIN_TOKEN}",
        ADMIN_TOKEN,
        f"Bearer {API_SECRET}",
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/events"), ("GET", "/api/events/evt_x"), ("POST", "/api/events/evt_x/replay")],
)
def test_missing_or_wrong_bearer_is_401(app: Flask, authorization: str | None, method: str, path: str) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = app.test_client().open(path, method=method, headers=headers)
    assert response.status_code == 401
    assert response.get_json() == UNAUTHORIZED
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert ADMIN_TOKEN not in response.get_data(as_text=True)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_right_bearer_is_200(app: Flask, scheme: str) -> None:
    response = app.test_client().get("/api/events", headers={"Authorization": f"{scheme} {ADMIN_TOKEN}"})
    assert response.status_code == 200
    assert response.get_json() == {"events": [], "next_cursor": None}


@pytest.mark.parametrize("with_token", [True, False])
def test_open_endpoints_need_no_auth(make_app: AppFactory, with_token: bool) -> None:
    client = make_app(**({} if with_token else {"BRIDGE_ADMIN_TOKEN": ""})).test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert (ready.status_code, ready.get_json()) == (200, {"status": "ready"})
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    assert spec.get_json()["openapi"].startswith("3.")


@pytest.mark.parametrize(
    "database_url",
    ["postgresql://postgres@127.0.0.1:1/x", "sqlite:///{tmp}/no/such/dir/bridge.db"],
    ids=["postgres-closed-port", "sqlite-missing-dir"],
)
def test_readyz_is_503_when_the_database_is_down(tmp_path: Path, database_url: str) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text(DEFAULT_SOURCES)
    env = bridge_env(database_url.format(tmp=tmp_path), "http://127.0.0.1:9", sources)
    client = create_app(env=env).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {
        "error": "database_unavailable",
        "message": "the database is not answering; retry later",
    }
    assert response.headers["Retry-After"] == "5"
    assert client.get("/healthz").status_code == 200  # alive, just not ready
    listing = client.get("/api/events", headers=admin_headers())
    assert (listing.status_code, listing.get_json()["error"]) == (503, "database_unavailable")


# --- GET /api/events -------------------------------------------------------------------


def test_list_is_newest_first_with_the_documented_keys(app: Flask, runtime: Runtime, sandbox: Any) -> None:
    client = app.test_client()
    ids = [post_event(client, n) for n in range(4)]
    deliver_all(runtime)
    body = get_json(client, "/api/events")
    assert set(body) == {"events", "next_cursor"}
    assert body["next_cursor"] is None
    assert [item["id"] for item in body["events"]] == ids[::-1]
    tickets = {t["request"]["metadata"]["bridge_event_id"]: t for t in sandbox.sandbox.tickets}
    for item in body["events"]:
        assert set(item) == SUMMARY_KEYS
        ticket = tickets[item["id"]]
        assert item["source"] == "api"
        assert item["status"] == "delivered"
        assert item["ticket_id"] == ticket["id"]
        assert item["spp_request_id"] == ticket["api_identifier"]
        assert item["attempts"] == 2  # the ticket, then its message
        assert item["spp_message_id"] is not None and item["client_id"] == ticket["request"]["user_id"]
        assert item["last_error"] is None
        assert item["next_attempt_at"] is None
        assert is_utc_iso(item["received_at"]) and is_utc_iso(item["delivered_at"])
        assert item["delivered_at"] >= item["received_at"]


def test_list_filters_by_status_and_source(app: Flask, runtime: Runtime, sandbox: Any) -> None:
    client = app.test_client()
    failed = post_event(client, 1)
    sandbox.sandbox.script(422)
    deliver_all(runtime)
    delivered = [post_event(client, 2), post_event(client, 3, source="open")]
    deliver_all(runtime)
    queued = [post_event(client, 4), post_event(client, 5, source="open")]

    assert list_ids(client, "?status=failed") == [failed]
    assert list_ids(client, "?status=delivered") == delivered[::-1]
    assert list_ids(client, "?status=queued") == queued[::-1]
    assert list_ids(client, "?status=retrying") == []
    assert list_ids(client, "?source=open") == [queued[1], delivered[1]]
    assert list_ids(client, "?source=api") == [queued[0], delivered[0], failed]
    assert list_ids(client, "?source=api&status=delivered") == [delivered[0]]
    assert list_ids(client, "?source=nosuchsource") == []

    [item] = get_json(client, "/api/events?status=failed")["events"]
    assert item["attempts"] == 1
    assert item["last_error"] == "ticket: SPP rejected the ticket: HTTP 422"
    assert item["ticket_id"] is None and item["delivered_at"] is None and item["next_attempt_at"] is None
    [fresh, _] = get_json(client, "/api/events?status=queued")["events"]
    assert fresh["attempts"] == 0 and fresh["next_attempt_at"] is not None


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 8])
def test_cursor_walks_every_event_exactly_once(app: Flask, limit: int) -> None:
    client = app.test_client()
    ids = [post_event(client, n, source="open" if n % 3 == 0 else "api") for n in range(7)]
    seen: list[str] = []
    pages = 0
    url = f"/api/events?limit={limit}"
    while True:
        body = get_json(client, url)
        pages += 1
        assert len(body["events"]) <= limit
        seen += [item["id"] for item in body["events"]]
        if body["next_cursor"] is None:
            break
        assert body["next_cursor"] == body["events"][-1]["id"]
        url = f"/api/events?limit={limit}&cursor={body['next_cursor']}"
    assert seen == ids[::-1]
    assert pages == max(1, -(-len(ids) // limit))


def test_cursor_combines_with_filters(app: Flask) -> None:
    client = app.test_client()
    ids = [post_event(client, n, source="open" if n % 2 else "api") for n in range(6)]
    first = get_json(client, "/api/events?source=api&limit=2")
    assert [i["id"] for i in first["events"]] == [ids[4], ids[2]]
    second = get_json(client, f"/api/events?source=api&limit=2&cursor={first['next_cursor']}")
    assert second == {"events": second["events"], "next_cursor": None}
    assert [i["id"] for i in second["events"]] == [ids[0]]


def test_default_limit_is_50(app: Flask) -> None:
    client = app.test_client()
    for n in range(51):
        client.post("/hooks/open", json={"n": n})
    body = get_json(client, "/api/events")
    assert len(body["events"]) == 50
    assert body["next_cursor"] == body["events"][-1]["id"]
    assert len(get_json(client, f"/api/events?cursor={body['next_cursor']}")["events"]) == 1


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=-1",
        "limit=501",
        "limit=abc",
        "limit=1.5",
        "limit=",
        "limit=99999999999999999999999",
        "status=bogus",
        "status=",
        "status=DELIVERED",
        "cursor=" + "x" * 41,
        "source=" + "s" * 101,
        "nosuchparameter=1",
        "cursor=%00",
        "cursor=evt%0A",
        "source=api%00",
    ],
)
def test_bad_query_is_400_json(app: Flask, query: str) -> None:
    response = app.test_client().get(f"/api/events?{query}", headers=admin_headers())
    assert response.status_code == 400
    body = response.get_json()
    assert set(body) == {"error", "message"}
    assert body["error"] == "bad_query"
    assert body["message"].startswith("invalid query: ")
    assert query.partition("=")[0] in body["message"]


@pytest.mark.parametrize(
    "query", ["limit=1", "limit=500", "cursor=", "cursor=evt_zzz", "source=", "source=%C3%A9%E2%82%AC"]
)
def test_edge_queries_are_fine(app: Flask, query: str) -> None:
    response = app.test_client().get(f"/api/events?{query}", headers=admin_headers())
    assert response.status_code == 200, response.get_data(as_text=True)


# --- GET /api/events/<id> --------------------------------------------------------------


def test_event_detail(app: Flask, runtime: Runtime, sandbox: Any) -> None:
    client = app.test_client()
    body = {"email": "bob@bigcustomer.com", "name": "Bob", "subject": "Broken", "message": "Fix", "order_number": "7"}
    response = client.post("/hooks/api", json=body, headers=api_headers(**{"X-Request-ID": "req-42"}))
    event_id = response.get_json()["event_id"]
    sandbox.sandbox.script(503)
    deliver_all(runtime)
    deliver_all(runtime)  # the retry is due after at most 0.2 s
    for _ in range(50):
        detail = get_json(client, f"/api/events/{event_id}")
        if detail["status"] == "delivered":
            break
        time.sleep(0.05)
        deliver_all(runtime)
    [ticket] = sandbox.sandbox.tickets

    assert set(detail) == DETAIL_KEYS
    assert detail["id"] == event_id
    assert detail["source"] == "api"
    assert detail["status"] == "delivered"
    assert detail["attempts"] == 3
    assert detail["ticket_id"] == ticket["id"]
    assert (detail["client_id"], detail["client_how"], detail["thread_of"]) == (30, "mapped", None)
    [message] = sandbox.sandbox.messages_of(ticket["id"])
    assert (detail["spp_message_id"], message.user_id, message.message) == (message.id, 30, "Fix")
    assert detail["plan"] == {"message": {"text": "Fix", "files": []}}
    assert detail["spp_request_id"] == ticket["api_identifier"]
    assert detail["last_error"] is None
    assert detail["request_id"] == "req-42"
    assert detail["ticket_request"] == ticket["request"]
    assert detail["ticket_request"] == {
        "user_id": 30,
        "subject": "Broken",
        "note": f"From Bob <bob@bigcustomer.com> via api (bridge event {event_id})",
        "tags": ["api"],
        "order": "7",
        "metadata": {"bridge_event_id": event_id},
    }
    assert detail["message"]["email"] == "bob@bigcustomer.com"
    assert detail["message"]["fields"] == body
    first, second, third = detail["attempt_log"]
    assert set(first) == set(second) == set(third) == ATTEMPT_KEYS
    assert [a["step"] for a in detail["attempt_log"]] == ["ticket", "ticket", "message"]
    assert (third["number"], third["outcome"], third["message_id"]) == (3, "delivered", message.id)
    assert (first["number"], first["outcome"], first["http_status"], first["ticket_id"]) == (1, "retrying", 503, None)
    assert first["error"] == "ticket: SPP answered 503" and first["ambiguous"] is False
    assert (second["number"], second["outcome"], second["http_status"]) == (2, "delivered", 201)
    assert second["ticket_id"] == ticket["id"] and second["error"] is None
    assert second["spp_request_id"] == ticket["api_identifier"]
    assert is_utc_iso(first["started_at"]) and first["started_at"] <= second["started_at"]


def test_event_detail_of_a_fresh_event(app: Flask) -> None:
    client = app.test_client()
    event_id = post_event(client, 1)
    detail = get_json(client, f"/api/events/{event_id}")
    assert set(detail) == DETAIL_KEYS
    assert (detail["status"], detail["attempts"], detail["attempt_log"]) == ("queued", 0, [])
    assert detail["ticket_id"] is None and detail["delivered_at"] is None
    assert detail["ticket_request"]["metadata"] == {"bridge_event_id": event_id}


def test_event_detail_hides_secrets(app: Flask, runtime: Runtime) -> None:
    client = app.test_client()
    response = client.post(f"/hooks/api?token={API_SECRET}", json={"email": "a@b.c", "message": "x"})
    event_id = response.get_json()["event_id"]
    deliver_all(runtime)
    for url in (f"/api/events/{event_id}", "/api/events"):
        text = client.get(url, headers=admin_headers()).get_data(as_text=True)
        assert API_SECRET not in text and ADMIN_TOKEN not in text


@pytest.mark.parametrize("event_id", ["evt_nope", "x" * 200, "%20", "evt_'--", "evt%00", "%E2%82%AC"])
def test_unknown_event_is_404_json(app: Flask, event_id: str) -> None:
    response = app.test_client().get(f"/api/events/{event_id}", headers=admin_headers())
    assert response.status_code == 404
    body = response.get_json()
    assert body["error"] == "unknown_event"
    assert body["message"].startswith("no event ")
