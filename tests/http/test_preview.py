"""POST /api/preview/<source>: the StoreTicketRequest a hook would send, with nothing stored or sent."""

from __future__ import annotations

from flask import Flask

from bridge.runtime import Runtime
from tests.conftest import admin_headers

BODY = {"email": "someone@bigcustomer.com", "name": "Sam", "subject": "Quote", "message": "Price?", "order_number": "7"}


def test_preview_answers_the_request_and_stores_nothing(app: Flask, runtime: Runtime, sandbox) -> None:
    response = app.test_client().post("/api/preview/api", json=BODY, headers=admin_headers())
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {
        "user_id": 30,
        "subject": "Quote",
        "note": "From Sam <someone@bigcustomer.com> via api",
        "tags": ["api"],
        "order": "7",
    }
    assert runtime.store.queries.count_by_status() == {}
    assert sandbox.sandbox.requests_seen == 0


def test_preview_of_the_calls_shows_client_ticket_and_message(make_app, sandbox) -> None:
    app = make_app(
        """
        defaults: {user_id: 1}
        sources:
          api: {kind: json, create_clients: true}
        """
    )
    body = {"email": "new@example.org", "name": "Nora New", "subject": "Quote", "message": "Price?"}
    response = app.test_client().post("/api/preview/api?calls=true", json=body, headers=admin_headers())
    assert response.status_code == 200, response.get_data(as_text=True)
    calls = response.get_json()
    assert calls["client"] == {
        "look_up": "GET /api/clients?filters[email][$eq]=new@example.org",
        "create_if_not_found": "POST /api/clients {'email': 'new@example.org', 'name_f': 'Nora', 'name_l': 'New'}",
        "otherwise_user_id": 1,
    }
    assert calls["ticket"]["body"]["user_id"] == "<the client found or created>"
    assert calls["ticket"]["body"]["note"] == "From Nora New <new@example.org> via api"
    assert calls["message"]["body"] == {"message": "Price?", "user_id": "<the client found or created>"}
    assert calls["message"]["files"] == []
    assert sandbox.sandbox.requests_seen == 0 and sandbox.sandbox.clients == []  # nothing was sent


def test_preview_of_a_form_source(app: Flask) -> None:
    response = app.test_client().post("/api/preview/contact", data=BODY, headers=admin_headers())
    assert response.status_code == 200
    assert response.get_json()["subject"] == "Website: Quote"


def test_preview_needs_the_admin_token_not_the_senders(app: Flask) -> None:
    client = app.test_client()
    assert client.post("/api/preview/api", json=BODY).status_code == 401
    assert client.post("/api/preview/api", json=BODY, headers={"Authorization": "Bearer nope"}).status_code == 401


def test_preview_is_absent_without_an_admin_token(make_app) -> None:
    app = make_app(BRIDGE_ADMIN_TOKEN="")
    assert app.test_client().post("/api/preview/api", json=BODY).status_code == 404


def test_preview_says_why_no_ticket_would_be_made(make_app) -> None:
    app = make_app(
        """
        client_lookup: false
        sources:
          open: {kind: json}
          site: {kind: form, honeypot: website}
        """
    )
    client = app.test_client()
    unresolved = client.post("/api/preview/open", json=BODY, headers=admin_headers())
    assert unresolved.status_code == 422
    assert unresolved.get_json()["error"] == "unresolved_user"
    spam = client.post("/api/preview/site", data={**BODY, "website": "http://spam"}, headers=admin_headers())
    assert spam.status_code == 422
    assert spam.get_json()["error"] == "discarded"
    assert "honeypot" in spam.get_json()["message"]


def test_preview_answers_input_errors_like_the_hook(app: Flask) -> None:
    client = app.test_client()
    assert client.post("/api/preview/nope", json=BODY, headers=admin_headers()).status_code == 404
    bad = client.post("/api/preview/api", data=b"{", content_type="application/json", headers=admin_headers())
    assert bad.status_code == 400
    assert (
        client.post("/api/preview/api", data=b"x", content_type="text/plain", headers=admin_headers()).status_code
        == 415
    )
