"""Acting on events (docs/behaviour.md section 6): retry now, cancel and bulk replay, through the
admin API and the admin page (CSRF on, as in production), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from bridge.db import events
from bridge.http.admin_actions import failed_shown
from bridge.runtime import Runtime, get_runtime
from bridge.sandbox import SandboxServer
from bridge.status import PauseReason
from bridge.store.pause import begin_pause
from tests.conftest import AppFactory, admin_headers, api_headers, deliver_all
from tests.helpers import wait_for
from tests.http.test_admin_page import csrf, page, signed_in, text_of

NO_DEFAULT_USER = """
client_lookup: false
sources:
  api:
    kind: json
    secret: api-secret-0123456789abcdef
"""


def post_event(client: FlaskClient, source: str = "api", email: str = "alice@example.com", subject: str = "S") -> str:
    body = {"email": email, "subject": subject, "message": "Body"}
    response = client.post(f"/hooks/{source}", json=body, headers=api_headers())
    assert response.status_code == 200, response.get_data(as_text=True)
    time.sleep(0.002)  # event ids order by the millisecond
    return str(response.get_json()["event_id"])


def event(client: FlaskClient, event_id: str) -> dict[str, Any]:
    response = client.get(f"/api/events/{event_id}", headers=admin_headers())
    assert response.status_code == 200
    return dict(response.get_json())


def api(client: FlaskClient, path: str) -> Any:
    return client.post(path, headers=admin_headers())


def waiting_an_hour(client: FlaskClient, runtime: Runtime, sandbox: SandboxServer) -> str:
    """An event SPP answered 429 with Retry-After: 3600: retrying, due in an hour."""
    event_id = post_event(client)
    sandbox.sandbox.script("429:3600")
    deliver_all(runtime)
    got = event(client, event_id)
    assert got["status"] == "retrying"
    due = datetime.fromisoformat(got["next_attempt_at"])
    assert due > datetime.now(UTC) + timedelta(minutes=59)
    return event_id


def failed(client: FlaskClient, runtime: Runtime, sandbox: SandboxServer, sources: list[str]) -> list[str]:
    """One event per entry of ``sources``, each refused by SPP (422)."""
    ids = [post_event(client, source, subject=f"Subject {n}") for n, source in enumerate(sources)]
    sandbox.sandbox.script(*[422] * len(ids))
    deliver_all(runtime)
    assert {event(client, i)["status"] for i in ids} == {"failed"}
    return ids


# --- retry now --------------------------------------------------------------------------


def test_retry_now_delivers_at_once_an_event_waiting_an_hour(app: Flask, runtime: Runtime, sandbox) -> None:
    """A real worker, idle with a 60 s poll: only the retry's wake-up can deliver it in time."""
    client = app.test_client()
    event_id = waiting_an_hour(client, runtime, sandbox)
    worker = runtime.worker(poll_seconds=60)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)  # the worker finds nothing due and waits
        assert event(client, event_id)["status"] == "retrying"
        response = api(client, f"/api/events/{event_id}/retry")
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json() == {"event_id": event_id, "status": "retrying", "delivery_paused": False}
        wait_for(lambda: event(client, event_id)["status"] == "delivered", timeout=10)
    finally:
        worker.stop()
        thread.join(15)
    got = event(client, event_id)
    assert [a["outcome"] for a in got["attempt_log"] if a["step"] == "ticket"] == ["retrying", "delivered"]
    assert got["ticket_id"] == sandbox.sandbox.tickets[0]["id"]


def test_retry_now_of_a_queued_event_keeps_its_place(app: Flask, runtime: Runtime) -> None:
    client = app.test_client()
    event_id = post_event(client)
    before = event(client, event_id)["next_attempt_at"]
    response = api(client, f"/api/events/{event_id}/retry")
    assert response.status_code == 200
    assert response.get_json() == {"event_id": event_id, "status": "queued", "delivery_paused": False}
    assert event(client, event_id)["next_attempt_at"] == before  # already due: not sent to the back


def test_retry_now_while_delivery_is_paused_says_so(app: Flask, runtime: Runtime, sandbox) -> None:
    client = app.test_client()
    event_id = waiting_an_hour(client, runtime, sandbox)
    with runtime.store.engine.begin() as conn:
        begin_pause(conn, PauseReason.TOKEN_REFUSED, 401, datetime.now(UTC), 3600)
    response = api(client, f"/api/events/{event_id}/retry")
    assert response.status_code == 200
    assert response.get_json()["delivery_paused"] is True
    deliver_all(runtime)
    assert event(client, event_id)["status"] == "retrying"  # due, but the pause holds
    assert sandbox.sandbox.requests_seen == 1


def test_retry_and_cancel_refuse_events_that_are_not_waiting(app: Flask, runtime: Runtime, sandbox) -> None:
    client = app.test_client()
    delivered = post_event(client)
    deliver_all(runtime)
    [refused] = failed(client, runtime, sandbox, ["api"])
    for event_id, status in ((delivered, "delivered"), (refused, "failed")):
        for action in ("retry", "cancel"):
            response = api(client, f"/api/events/{event_id}/{action}")
            assert response.status_code == 409, (action, status)
            body = response.get_json()
            assert body["error"] == "not_waiting"
            assert f"it is {status}; only queued or retrying events can" in body["message"]
    assert event(client, delivered)["status"] == "delivered"
    assert not event(client, refused)["last_error"].startswith("cancelled")


def test_an_event_a_worker_holds_is_refused(app: Flask, runtime: Runtime) -> None:
    client = app.test_client()
    event_id = post_event(client)
    [claim] = runtime.store.queue.claim("busy-worker", 1, 60, datetime.now(UTC))
    assert claim.event_id == event_id
    for action in ("retry", "cancel"):
        response = api(client, f"/api/events/{event_id}/{action}")
        assert response.status_code == 409
        assert "a worker is delivering it right now" in response.get_json()["message"]
    assert event(client, event_id)["status"] == "delivering"


def test_unknown_events_are_404(app: Flask) -> None:
    client = app.test_client()
    for action in ("retry", "cancel"):
        for event_id in ("evt_nope", "x" * 41):
            response = api(client, f"/api/events/{event_id}/{action}")
            assert response.status_code == 404
            assert response.get_json()["error"] == "unknown_event"


def test_actions_need_the_admin_token(app: Flask) -> None:
    client = app.test_client()
    event_id = post_event(client)
    for path in (f"/api/events/{event_id}/retry", f"/api/events/{event_id}/cancel", "/api/events/replay"):
        assert client.post(path).status_code == 401
        assert client.post(path, headers={"Authorization": "Bearer wrong-token-0000"}).status_code == 401
    assert event(client, event_id)["status"] == "queued"


# --- cancel -------------------------------------------------------------------------------


def test_cancel_fails_a_waiting_event_and_replay_brings_it_back(app: Flask, runtime: Runtime, sandbox) -> None:
    client = app.test_client()
    event_id = waiting_an_hour(client, runtime, sandbox)
    response = api(client, f"/api/events/{event_id}/cancel")
    assert response.status_code == 200
    assert response.get_json() == {"event_id": event_id, "status": "failed"}
    got = event(client, event_id)
    assert got["last_error"] == "cancelled by the operator"
    assert got["next_attempt_at"] is None
    assert len(got["attempt_log"]) == 1  # no attempt row: nothing was sent
    assert api(client, f"/api/events/{event_id}/cancel").status_code == 409  # once

    assert api(client, f"/api/events/{event_id}/replay").status_code == 200
    deliver_all(runtime)
    assert event(client, event_id)["status"] == "delivered"
    assert len(sandbox.sandbox.tickets) == 1


def test_a_cancelled_queued_event_is_never_sent(app: Flask, runtime: Runtime, sandbox) -> None:
    client = app.test_client()
    event_id = post_event(client)
    assert api(client, f"/api/events/{event_id}/cancel").status_code == 200
    deliver_all(runtime)
    assert sandbox.sandbox.requests_seen == 0
    assert event(client, event_id)["status"] == "failed"


# --- bulk replay ----------------------------------------------------------------------------


BULK_SOURCES = """
defaults:
  user_id: 1
sources:
  api:
    kind: json
    secret: api-secret-0123456789abcdef
  other:
    kind: json
    secret: api-secret-0123456789abcdef
"""


def test_bulk_replay_of_the_failed_events_of_a_filter(make_app: AppFactory, sandbox) -> None:
    app = make_app(BULK_SOURCES)
    runtime = get_runtime(app)
    client = app.test_client()
    api_1, other, api_2 = failed(client, runtime, sandbox, ["api", "other", "api"])
    queued = post_event(client)

    response = api(client, "/api/events/replay?status=failed&source=api&since=")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"replayed": 2, "not_replayed": 0}
    statuses = [event(client, i)["status"] for i in (api_1, other, api_2, queued)]
    assert statuses == ["queued", "failed", "queued", "queued"]

    assert api(client, "/api/events/replay?since=2999-01-01T00:00:00Z").get_json() == {
        "replayed": 0,
        "not_replayed": 0,
    }
    assert api(client, "/api/events/replay").get_json() == {"replayed": 1, "not_replayed": 0}  # status: failed
    deliver_all(runtime)
    assert len(sandbox.sandbox.tickets) == 4


def test_bulk_replay_since_and_search(make_app: AppFactory, sandbox) -> None:
    app = make_app(BULK_SOURCES)
    runtime = get_runtime(app)
    client = app.test_client()
    old, recent = failed(client, runtime, sandbox, ["api", "api"])
    with runtime.store.engine.begin() as conn:
        conn.execute(update(events).where(events.c.id == old).values(received_at=datetime(2020, 1, 1, tzinfo=UTC)))
    later = "since=2020-01-01T01:00:01%2B01:00&q=SUBJECT%200"
    assert api(client, f"/api/events/replay?{later}").get_json() == {"replayed": 0, "not_replayed": 0}
    # a zone is honoured, the boundary is inclusive, the search is any case
    assert api(client, "/api/events/replay?since=2020-01-01T01:00:00%2B01:00&q=SUBJECT%200").get_json() == {
        "replayed": 1,
        "not_replayed": 0,
    }
    assert event(client, old)["status"] == "queued"
    assert api(client, "/api/events/replay?since=2024-06-01").get_json() == {"replayed": 1, "not_replayed": 0}
    assert event(client, recent)["status"] == "queued"


def test_bulk_replay_counts_the_events_it_cannot_replay(make_app: AppFactory) -> None:
    app = make_app(NO_DEFAULT_USER)
    client = app.test_client()
    stranger = post_event(client, email="x@stranger.org")
    assert event(client, stranger)["status"] == "failed"
    assert api(client, "/api/events/replay").get_json() == {"replayed": 0, "not_replayed": 1}
    assert event(client, stranger)["status"] == "failed"


def test_bulk_replay_refuses_a_bad_query(app: Flask) -> None:
    client = app.test_client()
    for query in ("status=queued", "status=delivered", "since=yesterday", "since=2024-13-01", "source=a%00b"):
        response = api(client, f"/api/events/replay?{query}")
        assert response.status_code == 400, query
        assert response.get_json()["error"] == "bad_query"
    assert "only failed events are replayed in bulk" in api(client, "/api/events/replay?status=x").get_json()["message"]


# --- the admin page -----------------------------------------------------------------------------


def press(client: FlaskClient, event_id: str, action: str, token: str | None = None) -> Any:
    if token is None:
        token = csrf(page(client, f"/admin/events/{event_id}"), "act-csrf_token")
    data = {"act-csrf_token": token, "act-retry_now" if action == "retry" else "act-cancel": "x"}
    return client.post(f"/admin/events/{event_id}/{action}", data=data)


def test_the_buttons_show_only_for_waiting_events(app: Flask, runtime: Runtime, sandbox) -> None:
    admin = signed_in(app)
    queued = post_event(app.test_client())
    html = page(admin, f"/admin/events/{queued}")
    assert 'value="Retry now"' in html and 'value="Cancel delivery"' in html
    deliver_all(runtime)
    assert 'id="event-actions"' not in page(admin, f"/admin/events/{queued}")  # delivered
    [refused] = failed(app.test_client(), runtime, sandbox, ["api"])
    assert 'id="event-actions"' not in page(admin, f"/admin/events/{refused}")
    assert 'value="Retry now"' not in page(admin, f"/admin/events/{refused}")


def test_retry_now_from_the_event_page(app: Flask, runtime: Runtime, sandbox) -> None:
    admin = signed_in(app)
    event_id = waiting_an_hour(app.test_client(), runtime, sandbox)
    response = press(admin, event_id, "retry")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/admin/events/{event_id}")
    html = page(admin, f"/admin/events/{event_id}")
    assert "Retry now: the event is due; the worker sends it shortly." in html
    deliver_all(runtime)
    assert event(app.test_client(), event_id)["status"] == "delivered"


def test_retry_now_from_the_page_while_paused(app: Flask, runtime: Runtime, sandbox) -> None:
    admin = signed_in(app)
    event_id = waiting_an_hour(app.test_client(), runtime, sandbox)
    with runtime.store.engine.begin() as conn:
        begin_pause(conn, PauseReason.TOKEN_REFUSED, 401, datetime.now(UTC), 3600)
    press(admin, event_id, "retry")
    assert "delivery is paused (SPP refuses the API token): it goes out once the pause ends" in page(
        admin, f"/admin/events/{event_id}"
    )


def test_cancel_from_the_event_page(app: Flask, runtime: Runtime, sandbox) -> None:
    admin = signed_in(app)
    event_id = waiting_an_hour(app.test_client(), runtime, sandbox)
    token = csrf(page(admin, f"/admin/events/{event_id}"), "act-csrf_token")
    assert press(admin, event_id, "cancel", token).status_code == 303
    html = page(admin, f"/admin/events/{event_id}")
    assert "Cancelled: the event is failed" in html
    assert text_of(html, "event-status") == "failed"
    again = press(admin, event_id, "cancel", token)  # the page was stale: refused, said why
    assert again.status_code == 303
    assert "Not cancelled: event" in page(admin, f"/admin/events/{event_id}")


def test_the_actions_refuse_a_missing_or_forged_csrf_token(app: Flask, runtime: Runtime) -> None:
    admin = signed_in(app)
    event_id = post_event(app.test_client())
    for action in ("retry", "cancel"):
        assert admin.post(f"/admin/events/{event_id}/{action}", data={"act-cancel": "x"}).status_code == 400
        assert press(admin, event_id, action, token="forged").status_code == 400
    assert event(app.test_client(), event_id)["status"] == "queued"
    failed_before = admin.post("/admin/events/replay-failed", data={"confirm": "x"})
    assert failed_before.status_code == 400


def test_the_list_offers_to_replay_the_failed_events_it_shows(make_app: AppFactory, sandbox) -> None:
    app = make_app(BULK_SOURCES)
    runtime = get_runtime(app)
    admin = signed_in(app)
    failed(app.test_client(), runtime, sandbox, ["api", "other", "api"])
    assert text_of(page(admin, "/admin/events"), "bulk-replay").startswith("Replay the 3 failed events shown")
    assert text_of(page(admin, "/admin/events?source=api"), "bulk-replay").startswith(
        "Replay the 2 failed events shown"
    )
    assert text_of(page(admin, "/admin/events?status=failed&q=subject+1"), "bulk-replay").startswith(
        "Replay the 1 failed event shown"
    )
    for view in ("/admin/events?status=delivered", "/admin/events?q=nobody"):
        assert 'id="bulk-replay"' not in page(admin, view)


def test_the_count_takes_the_lists_since_filter(make_app: AppFactory, sandbox) -> None:
    """The list's time filter, as an ISO 8601 string or a datetime; one it cannot read shows no button."""
    app = make_app(BULK_SOURCES)
    runtime = get_runtime(app)
    old, _recent = failed(app.test_client(), runtime, sandbox, ["api", "api"])
    with runtime.store.engine.begin() as conn:
        conn.execute(update(events).where(events.c.id == old).values(received_at=datetime(2020, 1, 1, tzinfo=UTC)))
    with app.test_request_context("/admin/events"):
        assert failed_shown({"status": None, "source": None, "q": None}) == 2
        assert failed_shown({"status": None, "source": None, "q": None, "since": "2024-01-01"}) == 1
        assert failed_shown({"status": None, "source": None, "q": None, "since": "2019-01-01T00:00:00"}) == 2
        assert failed_shown({"status": None, "source": None, "q": None, "since": "last week"}) == 0


def test_bulk_replay_confirms_the_count_and_the_filter_first(make_app: AppFactory, sandbox) -> None:
    app = make_app(BULK_SOURCES)
    runtime = get_runtime(app)
    admin = signed_in(app)
    api_1, other, api_2 = failed(app.test_client(), runtime, sandbox, ["api", "other", "api"])

    html = page(admin, "/admin/events/replay-failed?status=failed&source=api&q=subject&since=2020-01-01")
    assert text_of(html, "replay-count").startswith("2 failed events match this filter.")
    shown = "Source api Sender or subject subject Received since 2020-01-01 00:00:00 UTC"
    assert text_of(html, "replay-filter") == shown
    ranged = page(admin, "/admin/events/replay-failed?source=api&since=24h")  # the list's named range, pinned
    assert text_of(ranged, "replay-count").startswith("2 failed events match this filter.")
    assert "Received since last 24 h: " in text_of(ranged, "replay-filter")
    assert 'name="since" type="hidden" value="20' in ranged
    data = {name: csrf(html) if name == "csrf_token" else value for name, value in _hidden(html).items()}
    response = admin.post("/admin/events/replay-failed", data={**data, "confirm": "x"})
    assert response.status_code == 303
    # back to the list, the time pinned to the one confirmed
    assert response.headers["Location"].endswith(
        "/admin/events?status=failed&source=api&q=subject&since=2020-01-01T00:00:00%2B00:00"
    )
    assert "2 replayed." in page(admin, response.headers["Location"])
    client = app.test_client()
    assert [event(client, i)["status"] for i in (api_1, other, api_2)] == ["queued", "failed", "queued"]

    none = page(admin, "/admin/events/replay-failed?source=api")
    assert text_of(none, "replay-count") == "No failed event matches this filter."
    assert "Replay them" not in none
    bad = admin.get("/admin/events/replay-failed?since=yesterday")
    assert bad.status_code == 400
    assert "or an ISO 8601 time" in bad.get_data(as_text=True)


def test_bulk_replay_from_the_page_says_what_it_could_not_replay(make_app: AppFactory) -> None:
    app = make_app(NO_DEFAULT_USER)
    admin = signed_in(app)
    post_event(app.test_client(), email="x@stranger.org")
    html = page(admin, "/admin/events/replay-failed")
    response = admin.post("/admin/events/replay-failed", data={"csrf_token": csrf(html), "confirm": "x"})
    assert "0 replayed; 1 not replayed (they still cannot be mapped, or are no longer failed)." in page(
        admin, response.headers["Location"]
    )


def _hidden(html: str) -> dict[str, str]:
    import re

    return dict(re.findall(r'<input id="[^"]*" name="([^"]+)" type="hidden" value="([^"]*)"', html))
