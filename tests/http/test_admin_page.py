"""The operators' admin page (/admin): sign-in, events, event page with Replay, sources with try-it.

CSRF stays on here as in production: every POST first reads its token from the rendered form.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from bridge.runtime import Runtime
from tests.conftest import ADMIN_TOKEN, API_SECRET, SPP_TOKEN, AppFactory, api_headers, deliver_all, make_due

_CSRF = re.compile(r'name="((?:[\w.-]+-)?csrf_token)" type="hidden" value="([^"]+)"')


def csrf(html: str, field: str = "csrf_token") -> str:
    for name, value in _CSRF.findall(html):
        if name == field:
            return value
    raise AssertionError(f"no {field} in the page")


def signed_in(app: Flask) -> FlaskClient:
    client = app.test_client()
    token = csrf(client.get("/admin/sign-in").get_data(as_text=True))
    response = client.post("/admin/sign-in", data={"csrf_token": token, "token": ADMIN_TOKEN})
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


def post_event(client: FlaskClient, email: str = "alice@example.com", subject: str = "Hello", **extra: Any) -> str:
    body = {"email": email, "subject": subject, "message": f"Body of {subject}", **extra}
    response = client.post("/hooks/api", json=body, headers=api_headers())
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["event_id"])


def page(client: FlaskClient, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.get_data(as_text=True)


def press_replay(client: FlaskClient, event_id: str, button: str = "replay") -> Any:
    token = csrf(page(client, f"/admin/events/{event_id}"))
    return client.post(f"/admin/events/{event_id}/replay", data={"csrf_token": token, button: "x"})


# --- signing in -----------------------------------------------------------------------


def test_every_admin_page_is_absent_without_an_admin_token(make_app: AppFactory) -> None:
    client = make_app(BRIDGE_ADMIN_TOKEN="").test_client()
    for url in ("/admin/", "/admin/sign-in", "/admin/events", "/admin/sources", "/admin/events/evt_x"):
        assert client.get(url).status_code == 404, url
    assert client.post("/admin/sign-in", data={"token": "x"}).status_code == 404


def test_signed_out_visitors_are_sent_to_sign_in(app: Flask) -> None:
    client = app.test_client()
    response = client.get("/admin/events?status=failed")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/sign-in?next=")
    assert client.post("/admin/events/evt_x/replay").status_code == 302
    assert client.get("/admin/sources").status_code == 302


def test_sign_in_goes_back_where_the_operator_was_going(app: Flask) -> None:
    client = app.test_client()
    token = csrf(page(client, "/admin/sign-in"))
    response = client.post("/admin/sign-in?next=/admin/sources", data={"csrf_token": token, "token": ADMIN_TOKEN})
    assert response.headers["Location"] == "/admin/sources"
    assert "Sources" in page(client, "/admin/sources")


def test_sign_in_never_redirects_off_the_admin_page(app: Flask) -> None:
    client = app.test_client()
    token = csrf(page(client, "/admin/sign-in"))
    response = client.post(
        "/admin/sign-in?next=https://evil.example/", data={"csrf_token": token, "token": ADMIN_TOKEN}
    )
    assert response.headers["Location"] == "/admin/events"


def test_a_wrong_token_is_refused(app: Flask) -> None:
    client = app.test_client()
    token = csrf(page(client, "/admin/sign-in"))
    response = client.post("/admin/sign-in", data={"csrf_token": token, "token": "admin-test-token-wrong"})
    assert response.status_code == 401
    assert "Wrong admin token" in response.get_data(as_text=True)
    assert "admin-test-token-wrong" not in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_sign_in_without_csrf_token_is_refused(app: Flask) -> None:
    client = app.test_client()
    client.get("/admin/sign-in")
    assert client.post("/admin/sign-in", data={"token": ADMIN_TOKEN}).status_code == 400
    assert client.get("/admin/").status_code == 302


def test_sign_out_ends_the_session(app: Flask) -> None:
    client = signed_in(app)
    token = csrf(page(client, "/admin/"), "signout-csrf_token")
    response = client.post("/admin/sign-out", data={"signout-csrf_token": token})
    assert response.status_code == 303
    assert client.get("/admin/").status_code == 302


def test_a_new_admin_token_ends_old_sessions(make_app: AppFactory) -> None:
    old = signed_in(make_app(SECRET_KEY="fixed-secret-key-for-this-test"))
    cookie = old.get_cookie("session")
    assert cookie is not None
    client = make_app(
        SECRET_KEY="fixed-secret-key-for-this-test", BRIDGE_ADMIN_TOKEN="a-brand-new-admin-token"
    ).test_client()
    client.set_cookie("session", cookie.value)
    assert client.get("/admin/").status_code == 302


# --- the event list ----------------------------------------------------------------------


def test_list_shows_events_newest_first_with_counts(app: Flask, runtime: Runtime) -> None:
    client = signed_in(app)
    post_event(client, subject="First one")
    post_event(client, email="bob@bigcustomer.com", subject="Second one")
    deliver_all(runtime)
    post_event(client, subject="Third one")
    html = page(client, "/admin/")
    assert html.index("Third one") < html.index("Second one") < html.index("First one")
    assert "bob@bigcustomer.com" in html
    assert re.search(r'data-status="delivered">2<', html)
    assert re.search(r'data-status="queued">1<', html)
    assert re.search(r"all <b>3</b>", html)


def test_list_filters_by_status_and_source_and_searches(app: Flask, runtime: Runtime) -> None:
    client = signed_in(app)
    post_event(client, subject="Delivered via api")
    deliver_all(runtime)
    post_event(client, email="carol@example.org", subject="Queued via api")
    client.post("/hooks/contact", data={"email": "dave@example.com", "subject": "From the form", "message": "x"})
    queued = page(client, "/admin/?status=queued")
    assert "Queued via api" in queued and "From the form" in queued and "Delivered via api" not in queued
    by_source = page(client, "/admin/?source=contact")
    assert "From the form" in by_source and "via api" not in by_source
    found = page(client, "/admin/?q=CAROL")
    assert "Queued via api" in found and "Delivered via api" not in found
    by_subject = page(client, "/admin/events?q=delivered+VIA")
    assert "Delivered via api" in by_subject and "Queued via api" not in by_subject
    assert "No events match" in page(client, "/admin/?q=nobody-at-all")


def test_list_pages_with_the_cursor(app: Flask) -> None:
    client = signed_in(app)
    for n in range(5):
        post_event(client, subject=f"Subject number {n}")
    first = page(client, "/admin/?limit=2")
    assert "Subject number 4" in first and "Subject number 3" in first and "Subject number 2" not in first
    next_url = re.search(r'href="([^"]+)" rel="next"', first)
    assert next_url
    second = page(client, next_url.group(1).replace("&amp;", "&"))
    assert "Subject number 2" in second and "Subject number 1" in second and "Subject number 4" not in second
    last = page(client, re.search(r'href="([^"]+)" rel="next"', second).group(1).replace("&amp;", "&"))  # type: ignore[union-attr]
    assert "Subject number 0" in last and 'rel="next"' not in last and "First page" in last


# --- the event page and replay -------------------------------------------------------------


def test_event_page_shows_message_request_and_attempts(app: Flask, runtime: Runtime, sandbox) -> None:
    client = signed_in(app)
    sandbox.sandbox.script(503)
    event_id = post_event(client, subject="Need help", order_number="A-7", extra_field="kept")
    deliver_all(runtime)
    make_due(runtime, event_id)
    deliver_all(runtime)
    event = runtime.store.queries.get_event(event_id)
    assert event and event["status"] == "delivered"
    html = page(client, f"/admin/events/{event_id}")
    assert event_id in html and "Need help" in html and "Body of Need help" in html
    assert f'id="ticket-id">{event["ticket_id"]}<' in html
    assert "extra_field" in html and "A-7" in html  # fields and the StoreTicketRequest (order)
    assert "&#34;bridge_event_id&#34;" in html
    assert ">503<" in html and ">201<" in html  # every attempt with its HTTP status
    assert html.count('data-label="Duration"') == 3  # the ticket twice, then the message
    assert "Replay (new ticket)" in html


def test_unknown_event_is_a_404_page(app: Flask) -> None:
    client = signed_in(app)
    response = client.get("/admin/events/evt_nothing_here")
    assert response.status_code == 404
    assert "There is no event" in response.get_data(as_text=True)


def test_replay_through_the_form(app: Flask, runtime: Runtime, sandbox) -> None:
    client = signed_in(app)
    sandbox.sandbox.script(422)
    event_id = post_event(client, subject="Refused first")
    deliver_all(runtime)
    failed = page(client, f"/admin/events/{event_id}")
    assert "badge status-failed" in failed and ">422<" in failed and 'name="replay"' in failed
    response = press_replay(client, event_id)
    assert response.status_code == 303
    queued = page(client, f"/admin/events/{event_id}")
    assert "Replayed: the event is queued" in queued and 'id="event-status">queued<' in queued
    deliver_all(runtime)
    delivered = page(client, f"/admin/events/{event_id}")
    assert 'id="event-status">delivered<' in delivered
    assert runtime.store.queries.get_event(event_id)["ticket_id"] is not None  # type: ignore[index]


def test_forced_replay_of_a_delivered_event(app: Flask, runtime: Runtime, sandbox) -> None:
    client = signed_in(app)
    event_id = post_event(client)
    deliver_all(runtime)
    refused = press_replay(client, event_id, "replay")
    assert refused.status_code == 303
    assert "Not replayed" in page(client, f"/admin/events/{event_id}")  # a 409 is a message, not a 500
    assert press_replay(client, event_id, "force").status_code == 303
    deliver_all(runtime)
    assert len(sandbox.sandbox.tickets) == 2


def test_replay_of_an_unmappable_event_says_why(make_app: AppFactory) -> None:
    app = make_app("client_lookup: false\nsources:\n  open: {kind: json}\n")
    client = signed_in(app)
    response = client.post("/hooks/open", json={"email": "x@nowhere.example", "message": "hi"})
    event_id = response.get_json()["event_id"]
    press_replay(client, event_id)
    html = page(client, f"/admin/events/{event_id}")
    assert "Not replayed: still cannot map the event" in html  # the 422 as a message
    assert "unresolved_user" in html


def test_replay_without_csrf_token_is_refused(app: Flask, runtime: Runtime, sandbox) -> None:
    client = signed_in(app)
    sandbox.sandbox.script(422)
    event_id = post_event(client)
    deliver_all(runtime)
    response = client.post(f"/admin/events/{event_id}/replay", data={"replay": "x"})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    wrong = client.post(f"/admin/events/{event_id}/replay", data={"replay": "x", "csrf_token": "forged"})
    assert wrong.status_code == 400
    assert runtime.store.queries.get_event(event_id)["status"] == "failed"  # type: ignore[index]


def test_sender_data_is_escaped(app: Flask) -> None:
    client = signed_in(app)
    event_id = post_event(client, subject="<script>alert(1)</script>", name='<img src=x onerror="alert(2)">')
    for html in (page(client, "/admin/"), page(client, f"/admin/events/{event_id}")):
        assert "<script>alert(1)" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_pages_carry_security_headers(app: Flask) -> None:
    client = signed_in(app)
    response = client.get("/admin/")
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


# --- sources and the try-it form -------------------------------------------------------------


def try_it(client: FlaskClient, source: str, sample: str, content_type: str) -> str:
    token = csrf(page(client, "/admin/sources"), f"{source}-csrf_token")
    data = {f"{source}-csrf_token": token, f"{source}-sample": sample, f"{source}-content_type": content_type}
    response = client.post(f"/admin/sources/{source}/try", data=data)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def test_sources_page_lists_urls_kinds_and_newest_event(app: Flask) -> None:
    client = signed_in(app)
    event_id = post_event(client)
    html = page(client, "/admin/sources")
    assert "http://localhost/hooks/api" in html and "http://localhost/hooks/contact" in html
    assert "X-Bridge-Token" in html  # the json kind's set-up hint
    assert "&lt;form method=&#34;post&#34; action=&#34;http://localhost/hooks/contact&#34;&gt;" in html
    assert f"/admin/events/{event_id}" in html
    assert html.count(">configured<") == 1  # only `api` has a secret


def test_try_it_with_a_json_source(app: Flask, runtime: Runtime, sandbox) -> None:
    client = signed_in(app)
    sample = '{"email": "someone@bigcustomer.com", "subject": "Quote", "message": "Price?", "order_number": "7"}'
    html = try_it(client, "api", sample, "application/json")
    assert "StoreTicketRequest it would send" in html
    assert "&#34;user_id&#34;: 30" in html and "&#34;order&#34;: &#34;7&#34;" in html
    assert "bridge_event_id" not in html
    assert runtime.store.queries.count_by_status() == {} and sandbox.sandbox.requests_seen == 0


def test_try_it_with_a_form_source(app: Flask) -> None:
    client = signed_in(app)
    html = try_it(
        client, "contact", "email=alice%40example.com&subject=Quote&message=Hi", "application/x-www-form-urlencoded"
    )
    assert "&#34;subject&#34;: &#34;Website: Quote&#34;" in html
    assert "&#34;user_id&#34;: 12" in html


def test_try_it_says_why_no_ticket_would_be_made(app: Flask) -> None:
    client = signed_in(app)
    assert "would answer 415" in try_it(client, "api", "hello", "text/plain")
    assert "would answer 400: the body is not valid JSON" in try_it(client, "api", "{", "application/json")
    unmapped = try_it(signed_in(app), "api", '{"email": "x@y.z", "message": "<b>hi</b>"}', "application/json")
    assert "StoreTicketRequest it would send" in unmapped  # defaults.user_id maps anyone here
    assert "<b>hi</b>" not in unmapped


def test_try_it_reports_mapping_failures(make_app: AppFactory) -> None:
    app = make_app("client_lookup: false\nsources:\n  open: {kind: json}\n  site: {kind: form, honeypot: website}\n")
    client = signed_in(app)
    assert "stored as failed: no client matches a@b.c" in try_it(
        client, "open", '{"email": "a@b.c"}', "application/json"
    )
    spam = try_it(
        client, "site", "email=a%40b.c&message=hi&website=http%3A%2F%2Fspam", "application/x-www-form-urlencoded"
    )
    assert "stored as discarded" in spam


def test_try_it_without_csrf_token_is_refused(app: Flask) -> None:
    client = signed_in(app)
    response = client.post("/admin/sources/api/try", data={"api-sample": "{}", "api-content_type": "application/json"})
    assert response.status_code == 400


def test_no_secret_on_any_page(app: Flask, runtime: Runtime, sandbox) -> None:
    client = signed_in(app)
    event_id = post_event(client, subject=f"leak {API_SECRET}", token=API_SECRET)
    sandbox.sandbox.script(422)
    deliver_all(runtime)
    pages = [page(client, url) for url in ("/admin/", "/admin/sources", f"/admin/events/{event_id}")]
    pages.append(try_it(client, "api", f'{{"email": "a@b.c", "subject": "{API_SECRET}"}}', "application/json"))
    pages.append(page(app.test_client(), "/admin/sign-in"))
    for html in pages:
        for secret in (API_SECRET, ADMIN_TOKEN, SPP_TOKEN):
            assert secret not in html
    assert "[REDACTED]" in pages[2]
