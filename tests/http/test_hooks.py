"""POST /hooks/<source>: every row of docs/behaviour.md section 4, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import textwrap

import pytest
from flask import Flask
from sqlalchemy import select

from bridge.app import create_app
from bridge.db import events
from bridge.runtime import Runtime, get_runtime
from tests.conftest import API_SECRET, DEFAULT_SOURCES, api_headers, bridge_env

SAMPLE = {"email": "alice@example.com", "name": "Alice", "subject": "Hello", "message": "Help me"}


def stored(runtime: Runtime) -> list[dict]:
    with runtime.store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(events)).mappings()]


def assert_error(response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) >= {"error", "message"} and body["message"]
    if code:
        assert body["error"] == code
    assert "Traceback" not in response.get_data(as_text=True)


def test_stored_and_queued(app: Flask, runtime: Runtime) -> None:
    response = app.test_client().post("/hooks/api", json=SAMPLE, headers=api_headers())
    assert response.status_code == 200
    body = response.get_json()
    assert body == {"event_id": body["event_id"], "status": "queued"}
    [event] = stored(runtime)
    assert event["id"] == body["event_id"]
    assert event["status"] == "queued"
    assert event["ticket_request"] == {
        "user_id": 12,
        "subject": "Hello",
        "note": f"From Alice <alice@example.com> via api (bridge event {body['event_id']})",
        "tags": ["api"],
        "metadata": {"bridge_event_id": body["event_id"]},
    }
    assert event["plan"] == {"message": {"text": "Help me", "files": []}}
    assert event["message"]["fields"] == SAMPLE


def test_duplicate_answers_the_first_event(app: Flask, runtime: Runtime) -> None:
    client = app.test_client()
    first = client.post("/hooks/api", json=SAMPLE, headers=api_headers()).get_json()
    again = client.post("/hooks/api", json=SAMPLE, headers=api_headers())
    assert again.status_code == 200
    assert again.get_json() == {"event_id": first["event_id"], "status": "queued", "duplicate": True}
    assert len(stored(runtime)) == 1


def test_a_duplicate_on_a_source_without_a_secret_tells_nothing_of_the_event(app: Flask, runtime: Runtime) -> None:
    """Anyone may post to ``open``: a stranger who sends a guessed Idempotency-Key learns no event id
    and cannot follow the event's status; the sender with a secret (``api``) still gets both."""
    client = app.test_client()
    key = {"Idempotency-Key": "order-42"}
    first = client.post("/hooks/open", json=SAMPLE, headers=key)
    assert set(first.get_json()) == {"event_id", "status"}
    guessed = client.post("/hooks/open", json={"subject": "anything"}, headers=key)
    assert guessed.status_code == 200
    assert guessed.get_json() == {"duplicate": True}
    form = {"Accept": "application/json"}
    assert client.post("/hooks/contact", data=SAMPLE, headers=form).get_json()["status"] == "queued"
    assert client.post("/hooks/contact", data=SAMPLE, headers=form).get_json() == {"duplicate": True}
    assert len(stored(runtime)) == 2


def test_idempotency_key_is_the_json_dedupe_key(app: Flask, runtime: Runtime) -> None:
    client = app.test_client()
    headers = api_headers(**{"Idempotency-Key": "order-42"})
    first = client.post("/hooks/api", json=SAMPLE, headers=headers).get_json()
    changed = client.post("/hooks/api", json={**SAMPLE, "message": "edited"}, headers=headers).get_json()
    assert changed == {"event_id": first["event_id"], "status": "queued", "duplicate": True}
    other = client.post("/hooks/api", json=SAMPLE, headers=api_headers(**{"Idempotency-Key": "order-43"}))
    assert other.get_json()["event_id"] != first["event_id"]
    assert len(stored(runtime)) == 2


def test_same_body_on_another_source_is_not_a_duplicate(app: Flask, runtime: Runtime) -> None:
    client = app.test_client()
    a = client.post("/hooks/api", json=SAMPLE, headers=api_headers()).get_json()
    b = client.post("/hooks/open", json=SAMPLE).get_json()
    assert a["event_id"] != b["event_id"] and "duplicate" not in b


def test_form_redirects_browsers(app: Flask, runtime: Runtime) -> None:
    response = app.test_client().post(
        "/hooks/contact", data=SAMPLE, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "https://example.com/thanks"
    [event] = stored(runtime)
    assert event["ticket_request"]["subject"] == "Website: Hello"


def test_form_answers_json_when_asked(app: Flask) -> None:
    response = app.test_client().post("/hooks/contact", data=SAMPLE, headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.get_json()["status"] == "queued"


def test_multipart_form_lists_files(app: Flask, runtime: Runtime) -> None:
    import io

    data = {**SAMPLE, "upload": (io.BytesIO(b"x" * 1234), "brief.pdf", "application/pdf")}
    response = app.test_client().post(
        "/hooks/contact", data=data, content_type="multipart/form-data", headers={"Accept": "application/json"}
    )
    assert response.status_code == 200
    [event] = stored(runtime)
    assert event["message"]["attachments"] == [{"name": "brief.pdf", "content_type": "application/pdf", "size": 1234}]


@pytest.mark.parametrize(
    "headers, query",
    [({}, ""), ({"X-Bridge-Token": "wrong"}, ""), ({}, "?token=wrong"), ({"X-Bridge-Token": ""}, "")],
)
def test_bad_or_missing_secret_is_401(app: Flask, runtime: Runtime, headers: dict, query: str) -> None:
    response = app.test_client().post(f"/hooks/api{query}", json=SAMPLE, headers=headers)
    assert_error(response, 401, "unauthorized")
    assert stored(runtime) == []


def test_secret_in_query_is_accepted(app: Flask) -> None:
    response = app.test_client().post(f"/hooks/api?token={API_SECRET}", json=SAMPLE)
    assert response.status_code == 200


def test_unknown_source_is_404(app: Flask) -> None:
    assert_error(app.test_client().post("/hooks/nope", json=SAMPLE), 404, "unknown_source")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(app: Flask, method: str) -> None:
    response = app.test_client().open("/hooks/api", method=method)
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]


def test_body_over_the_limit_is_413(make_app) -> None:
    app = make_app(BRIDGE_MAX_BODY_BYTES="1000")
    response = app.test_client().post("/hooks/api", json={"message": "x" * 2000}, headers=api_headers())
    assert_error(response, 413, "payload_too_large")
    assert stored(get_runtime(app)) == []


def test_large_form_field_under_the_limit_is_accepted(app: Flask) -> None:
    # Flask's own default would refuse a 600 kB form field (MAX_FORM_MEMORY_SIZE 500 kB)
    response = app.test_client().post(
        "/hooks/contact", data={"message": "x" * 600_000}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "source, content_type",
    [("api", "text/plain"), ("api", "application/x-www-form-urlencoded"), ("contact", "application/json"), ("api", "")],
)
def test_wrong_content_type_is_415(app: Flask, source: str, content_type: str) -> None:
    response = app.test_client().post(
        f"/hooks/{source}", data=b"{}", headers={**api_headers(), "Content-Type": content_type}
    )
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\x00", b"", b"[" * 100_000, b'{"a": 1e99999999}x'])
def test_unparseable_body_is_400(app: Flask, body: bytes) -> None:
    response = app.test_client().post("/hooks/api", data=body, headers=api_headers(), content_type="application/json")
    assert_error(response, 400, "bad_payload")


@pytest.mark.parametrize("body", [[1, 2], "text", 42, None])
def test_json_that_is_not_an_object_is_422(app: Flask, body: object) -> None:
    response = app.test_client().post(
        "/hooks/api", data=json.dumps(body), headers=api_headers(), content_type="application/json"
    )
    assert_error(response, 422, "unprocessable")


def test_wrongly_typed_message_field_is_422(app: Flask) -> None:
    response = app.test_client().post("/hooks/api", json={"email": ["a@b.c"]}, headers=api_headers())
    assert_error(response, 422)
    assert "email" in response.get_json()["errors"]


def test_empty_form_is_422(app: Flask) -> None:
    response = app.test_client().post(
        "/hooks/contact",
        data=b"",
        content_type="application/x-www-form-urlencoded",
        headers={"Accept": "application/json"},
    )
    assert_error(response, 422)


def test_unresolved_user_is_stored_failed(make_app) -> None:
    app = make_app(
        """
        client_lookup: false
        sources:
          open:
            kind: json
        """
    )
    response = app.test_client().post("/hooks/open", json={"email": "nobody@example.org", "subject": "Hi"})
    assert response.status_code == 200
    assert response.get_json()["status"] == "failed"
    [event] = stored(get_runtime(app))
    assert event["status"] == "failed"
    assert event["last_error"].startswith("unresolved_user:")
    assert event["ticket_request"] is None
    assert event["message"]["email"] == "nobody@example.org"


def test_database_down_is_503(tmp_path, sandbox) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text(textwrap.dedent(DEFAULT_SOURCES))
    app = create_app(env=bridge_env("postgresql://postgres@127.0.0.1:1/nowhere", sandbox.url, sources))
    response = app.test_client().post("/hooks/api", json=SAMPLE, headers=api_headers())
    assert_error(response, 503, "database_unavailable")
    assert response.headers["Retry-After"] == "5"


def test_request_id_is_echoed_or_made(app: Flask) -> None:
    client = app.test_client()
    given = client.post("/hooks/api", json=SAMPLE, headers=api_headers(**{"X-Request-ID": "abc-123"}))
    assert given.headers["X-Request-ID"] == "abc-123"
    made = client.post("/hooks/nope", json=SAMPLE)
    assert len(made.headers["X-Request-ID"]) == 32
    hostile = client.post("/hooks/nope", json=SAMPLE, headers={"X-Request-ID": "a\u00e9b" + "x" * 500})
    assert hostile.headers["X-Request-ID"] != "a\u00e9b" + "x" * 500
