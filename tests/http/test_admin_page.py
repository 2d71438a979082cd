"""The operators' admin page (/admin): sign-in, events, event page with Replay, sources with try-it.

CSRF stays on here as in production: every POST first reads its token from the rendered form.
"""

from __future__ import annotations

import html as markup
import json
import re
from email.message import EmailMessage
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from bridge.runtime import Runtime, get_runtime
from tests.conftest import (
    ADMIN_TOKEN,
    API_SECRET,
    FIXTURES,
    SPP_TOKEN,
    AppFactory,
    api_headers,
    deliver_all,
    make_due,
)

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


def text_of(html: str, element_id: str) -> str:
    """What a reader sees of the element with this id: its text, tags dropped, spaces folded."""
    found = re.search(rf'<(\w+)[^>]* id="{element_id}"[^>]*>(.*?)</\1>', html, re.S)
    assert found, f"no #{element_id} in the page"
    return " ".join(markup.unescape(re.sub(r"<[^>]+>", " ", found.group(2))).split())


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
    assert re.search(r'data-status="all">3<', html)


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
    assert "The requests delivery would make" in html
    assert "No request: <code>user_id</code> 30 (from the sources file)." in html  # @bigcustomer.com
    assert "&#34;user_id&#34;: 30" in html and "&#34;order&#34;: &#34;7&#34;" in html
    assert "&#34;message&#34;: &#34;Price?&#34;" in html  # the first message's body
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
    assert "The requests delivery would make" in unmapped  # defaults.user_id maps anyone here
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


# --- the event page: client, ticket and message, each a step of its own --------------------------

JOTFORM_TOKEN = "jotform-test-token-3b7c90"  # the one inside the Jotform fixtures' webhookURL
MAIL_TOKEN = "mail-secret-0123456789"
CONVERSATIONS = f"""
defaults: {{user_id: 1}}
clients:
  mapped@example.com: 12
sources:
  api: {{kind: json, secret: {API_SECRET}}}
  create: {{kind: json, secret: {API_SECRET}, create_clients: true}}
  v1: {{kind: json, secret: {API_SECRET}, message: false}}
  files: {{kind: jotform, secret: {JOTFORM_TOKEN}}}
"""
MAIL_SOURCE = f"  mail: {{kind: email, secret: {MAIL_TOKEN}}}\n"


def post_to(client: FlaskClient, source: str, **body: Any) -> str:
    sent = {"email": "kim@example.com", "name": "Kim Known", "subject": "Printer", "message": "It is on fire", **body}
    response = client.post(f"/hooks/{source}", json=sent, headers=api_headers())
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["event_id"])


def jotform_files(change: Any = None) -> bytes:
    """Jotform's post with two file parts (70 B and 29 B) and one file known by its link;
    ``change(raw)`` edits its rawRequest answers."""
    body = (FIXTURES / "jotform" / "posted_file.multipart").read_bytes()
    if change is None:
        return body
    head, rest = body.split(b'name="rawRequest"\r\n\r\n', 1)
    raw, tail = rest.split(b"\r\n", 1)
    answers = json.loads(raw)
    change(answers)
    return head + b'name="rawRequest"\r\n\r\n' + json.dumps(answers).encode() + b"\r\n" + tail


def post_jotform(client: FlaskClient, body: bytes) -> str:
    response = client.post(
        f"/hooks/files?token={JOTFORM_TOKEN}",
        data=body,
        content_type="multipart/form-data; boundary=------------------------Rk5Tn0Wq3Yb8Mz2Pd6",
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["event_id"])


def test_a_delivered_event_shows_each_step_with_its_id(make_app: AppFactory, sandbox) -> None:
    app = make_app(CONVERSATIONS)
    runtime = get_runtime(app)
    known = sandbox.sandbox.seed_client(email="Kim@Example.com", name_f="Kim")
    client = signed_in(app)
    event_id = post_to(client, "api")
    deliver_all(runtime)
    event = runtime.store.queries.get_event(event_id)
    assert event and event["status"] == "delivered"
    ticket, message = event["ticket_id"], event["spp_message_id"]

    html = page(client, f"/admin/events/{event_id}")
    assert text_of(html, "step-client") == f"client done client {known['id']}, looked up in SPP #1 delivered"
    assert text_of(html, "step-ticket") == f"ticket done ticket {ticket} #2 delivered"
    assert text_of(html, "step-message") == f"message done message {message} #3 delivered"
    assert (text_of(html, "client-id"), text_of(html, "client-how")) == (str(known["id"]), "looked up in SPP")
    assert text_of(html, "message-id") == str(message)
    assert "Text posted" in html and '<pre class="text">It is on fire</pre>' in html
    attempts = html.split('<table class="stack attempts">')[1]
    steps = re.findall(r'<td data-label="Step">(\w+)</td>', attempts)
    assert steps == ["client", "ticket", "message"]  # the attempts table's Step column
    assert f"client {known['id']}</td>" in html and f"message {message}</td>" in html
    assert 'id="thread"' not in html  # not an email reply

    # the same sender again: the client is remembered, no look-up
    again = post_to(client, "api", message="Still on fire")
    deliver_all(runtime)
    second = page(client, f"/admin/events/{again}")
    assert text_of(second, "step-client") == f"client done client {known['id']}, looked up in SPP —"


def test_a_retrying_event_shows_its_ticket_and_the_message_step_that_failed(make_app: AppFactory, sandbox) -> None:
    app = make_app(CONVERSATIONS)
    runtime = get_runtime(app)
    client = signed_in(app)
    sandbox.sandbox.script(503, endpoint="messages")
    event_id = post_to(client, "api", email="mapped@example.com")
    deliver_all(runtime)
    event = runtime.store.queries.get_event(event_id)
    assert event and (event["status"], event["spp_message_id"]) == ("retrying", None)

    html = page(client, f"/admin/events/{event_id}")
    assert text_of(html, "step-client") == "client not needed client 12, from the sources file —"
    assert text_of(html, "step-ticket") == f"ticket done ticket {event['ticket_id']} #1 delivered"
    assert text_of(html, "step-message") == "message waiting message: SPP answered 503 #2 retrying"
    assert (text_of(html, "client-id"), text_of(html, "client-how")) == ("12", "from the sources file")
    assert text_of(html, "message-id") == "not posted yet"
    assert "Text to be posted" in html and '<pre class="text">It is on fire</pre>' in html

    sandbox.sandbox.script(422, endpoint="messages")
    make_due(runtime, event_id)
    deliver_all(runtime)
    failed = page(client, f"/admin/events/{event_id}")
    assert 'id="event-status">failed<' in failed
    assert text_of(failed, "step-ticket") == f"ticket done ticket {event['ticket_id']} #1 delivered"
    step = text_of(failed, "step-message")
    assert step.startswith("message failed message: SPP rejected the message: HTTP 422")
    assert step.endswith("#2 retrying #3 failed")
    assert len(sandbox.sandbox.tickets) == 1


def test_a_created_client_and_the_look_up_before_it(make_app: AppFactory, sandbox) -> None:
    app = make_app(CONVERSATIONS)
    runtime = get_runtime(app)
    client = signed_in(app)
    event_id = post_to(client, "create", email="nora.new@example.org", name="Nora van der New")

    queued = page(client, f"/admin/events/{event_id}")
    assert text_of(queued, "client-id") == "—"
    assert text_of(queued, "client-lookup") == (
        "to be looked up: nora.new@example.org created if not found (as Nora van der New)"
    )
    assert text_of(queued, "step-client") == "client waiting — —"
    assert text_of(queued, "step-ticket") == "ticket waiting — —"
    assert text_of(queued, "message-id") == "not posted yet"

    deliver_all(runtime)
    [created] = sandbox.sandbox.clients
    html = page(client, f"/admin/events/{event_id}")
    assert (text_of(html, "client-id"), text_of(html, "client-how")) == (str(created["id"]), "created in SPP")
    assert 'id="client-lookup"' not in html
    assert text_of(html, "step-client") == (
        f"client done client {created['id']}, created in SPP #1 delivered #2 delivered"  # look-up, creation
    )


def test_a_sender_no_one_knows_fails_at_the_client_step(make_app: AppFactory) -> None:
    app = make_app(f"sources:\n  api: {{kind: json, secret: {API_SECRET}}}\n")
    client = signed_in(app)
    event_id = post_to(client, "api")
    queued = page(client, f"/admin/events/{event_id}")
    assert text_of(queued, "client-lookup") == (
        "to be looked up: kim@example.com if SPP has none: no client, the event fails (no defaults.user_id)"
    )
    deliver_all(get_runtime(app))
    html = page(client, f"/admin/events/{event_id}")
    assert text_of(html, "step-client").startswith("client failed client: unresolved_user: no client in SPP")
    assert text_of(html, "client-lookup") == (
        "kim@example.com: no client settled (see the client step)"
        " if SPP has none: no client, the event fails (no defaults.user_id)"
    )
    assert text_of(html, "step-ticket") == "ticket not reached — —"
    assert text_of(html, "step-message") == "message not reached — —"


def test_message_false_keeps_the_body_in_the_note(make_app: AppFactory, sandbox) -> None:
    app = make_app(CONVERSATIONS)
    client = signed_in(app)
    event_id = post_to(client, "v1", email="mapped@example.com")
    deliver_all(get_runtime(app))
    html = page(client, f"/admin/events/{event_id}")
    assert text_of(html, "first-message") == "Body in the note (message: false)."
    assert text_of(html, "step-message") == ("message not needed the body is in the ticket's note (message: false) —")
    assert text_of(html, "step-ticket").startswith("ticket done ticket ")
    assert 'id="message-id"' not in html


def test_each_attachment_says_whether_it_was_sent(make_app: AppFactory, sandbox) -> None:
    app = make_app(CONVERSATIONS, BRIDGE_MAX_ATTACHMENT_BYTES="50")
    client = signed_in(app)
    event_id = post_jotform(client, jotform_files())
    deliver_all(get_runtime(app))
    [ticket] = sandbox.sandbox.tickets
    [message] = sandbox.sandbox.messages_of(ticket["id"])
    assert [f.name for f in message.files] == ["notes.txt"]  # 29 B; the 70 B PNG is over the 50 B limit

    html = page(client, f"/admin/events/{event_id}")
    files = re.search(r'<ul class="files">(.*?)</ul>', html, re.S)
    assert files
    items = [" ".join(markup.unescape(re.sub(r"<[^>]+>", " ", li)).split()) for li in files.group(1).split("<li>")[1:]]
    link = "https://www.jotform.com/uploads/kolanuvarun739/243615086540051/6114090137116209999/frontend%20setup.jpg"
    assert items == [
        "workflow.png (image/png, 70 B) — too large: over the 50 B limit, listed by name",
        "notes.txt (text/plain, 29 B) — sent with the message",
        f"frontend setup.jpg (unknown type, 0 B) — listed as a link {link}",
    ]
    assert f'<a href="{link}" rel="noopener noreferrer nofollow">' in html
    assert "- frontend setup.jpg: " + link in html  # listed in the message's text


def test_hostile_sender_data_on_the_event_page_is_text(make_app: AppFactory, sandbox) -> None:
    app = make_app(CONVERSATIONS)
    client = signed_in(app)

    def hostile(raw: dict[str, Any]) -> None:
        raw["q7_feedback"] = '<script>alert("body")</script>'
        raw["filesRelated"] = ["javascript:alert(1)//x.png", 'https://e.example/"><img src=x onerror=alert(2)>.png']
        raw["temp_upload"] = {"q9_filesRelated": ["x.png#a#b"]}

    event_id = post_jotform(client, jotform_files(hostile).replace(b'filename="notes.txt"', b'filename="<b>n</b>.txt"'))
    deliver_all(get_runtime(app))
    html = page(client, f"/admin/events/{event_id}")
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>n</b>" not in html
    assert "&lt;script&gt;alert(&#34;body&#34;)&lt;/script&gt;" in html  # the message text, as text
    assert "&lt;b&gt;n&lt;/b&gt;.txt" in html
    assert 'href="javascript:' not in html  # only http(s) links are links
    assert "<code>javascript:alert(1)//x.png</code>" in html
    assert 'href="https://e.example/&#34;&gt;&lt;img src=x onerror=alert(2)&gt;.png"' in html


def mail(message_id: str, body: str, sender: str = "Max <mapped@example.com>", **headers: str) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Message-ID"] = sender, "support@agency.example", message_id
    message["Subject"] = headers.pop("subject", "Printer")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return bytes(message)


def post_mail(client: FlaskClient, raw: bytes) -> str:
    response = client.post(
        "/hooks/mail", data=raw, headers={"X-Bridge-Token": MAIL_TOKEN}, content_type="message/rfc822"
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["event_id"])


def test_a_reply_that_joined_an_earlier_ticket_links_to_it(make_app: AppFactory, sandbox) -> None:
    app = make_app(CONVERSATIONS + MAIL_SOURCE)
    runtime = get_runtime(app)
    client = signed_in(app)
    first = post_mail(client, mail("<a1@mapped.example>", "The printer is on fire."))
    deliver_all(runtime)
    earlier = runtime.store.queries.get_event(first)
    assert earlier and earlier["status"] == "delivered"
    ticket = earlier["ticket_id"]

    quoted = "Thanks, it works.\n\nOn Mon, 1 Dec 2026 at 10:00, Support wrote:\n> Try turning it off.\n"
    reply = {"subject": f"Re: Printer [#{ticket}]", "In_Reply_To": "<a1@mapped.example>"}
    joined = post_mail(client, mail("<a2@mapped.example>", quoted, **reply))
    stranger = post_mail(client, mail("<s1@example.net>", "Me too!", "Sam <sam@example.net>", **reply))
    pending = page(client, f"/admin/events/{joined}")
    assert "delivery joins that mail's ticket when the bridge has it and the client is the same" in pending
    deliver_all(runtime)

    html = page(client, f"/admin/events/{joined}")
    thread = text_of(html, "thread")
    assert thread.startswith(f"This reply joined ticket {ticket} , made for the earlier event {first} .")
    assert thread.endswith(f"Subject names ticket [#{ticket}]")
    assert f'<a href="/admin/events/{first}"><code>{first}</code></a>' in html
    assert text_of(html, "step-ticket") == f"ticket done joined ticket {ticket} of event {first} —"
    assert "Message on the joined ticket" in html and '<pre class="text">Thanks, it works.</pre>' in html
    texts = {m.id: m.message for m in sandbox.sandbox.messages_of(ticket)}
    assert texts[int(text_of(html, "message-id"))] == "Thanks, it works."  # the id shown is the one SPP gave

    own = page(client, f"/admin/events/{stranger}")
    assert "did not match to a ticket of the same client (or knows nothing of): it opened a ticket of its own" in own
    assert "First message" in own and '<pre class="text">Me too!</pre>' in own
    assert len(sandbox.sandbox.tickets) == 2  # the first mail's, and the stranger's own


def test_try_it_shows_the_client_ticket_and_message_calls(make_app: AppFactory, sandbox) -> None:
    app = make_app(CONVERSATIONS)
    client = signed_in(app)
    sample = '{"email": "nora@example.org", "name": "Nora New", "subject": "Quote", "message": "Price <b>?</b>"}'
    html = try_it(client, "create", sample, "application/json")
    assert 'Look up: <code class="wrap">GET /api/clients?filters[email][$eq]=nora@example.org</code>' in html
    assert 'If SPP has none, create it: <code class="wrap">POST /api/clients {&#39;email&#39;: ' in html
    assert "2. Ticket: <code>POST /api/tickets</code>" in html
    assert "&#34;user_id&#34;: &#34;&lt;the client found or created&gt;&#34;" in html
    assert "3. Message: <code>POST /api/ticket_messages/&lt;the ticket&#39;s id&gt;</code>" in html
    assert "&#34;message&#34;: &#34;Price &lt;b&gt;?&lt;/b&gt;&#34;" in html and "<b>?</b>" not in html
    assert "No file sent with it." in html

    lookup_only = try_it(client, "api", sample, "application/json")
    assert "If SPP has none: the default user, <code>user_id</code> 1" in lookup_only
    note = try_it(client, "v1", '{"email": "mapped@example.com", "message": "hi"}', "application/json")
    assert "No request: <code>user_id</code> 12 (from the sources file)." in note
    assert "None: the body goes in the ticket's note (message: false)." in note
    assert sandbox.sandbox.requests_seen == 0 and sandbox.sandbox.clients == []
    assert get_runtime(app).store.queries.count_by_status() == {}


def test_try_it_shows_what_a_reply_would_post_on_the_ticket_it_names(make_app: AppFactory, sandbox) -> None:
    app = make_app(CONVERSATIONS + MAIL_SOURCE)
    quoted = "Thanks, it works.\n\nOn Mon, 1 Dec 2026 at 10:00, Support wrote:\n> Try turning it off.\n"
    sample = mail("<a2@mapped.example>", quoted, subject="Re: Printer [#77]").decode()
    html = try_it(signed_in(app), "mail", sample, "message/rfc822")
    assert "If it joins an earlier ticket" in html
    assert "<dt>Subject names</dt><dd>ticket [#77]</dd>" in html
    assert '<pre class="result ok">Thanks, it works.</pre>' in html  # the quote cut
    assert "&#34;message&#34;: &#34;Thanks, it works.\\n\\nOn Mon" in html  # a ticket of its own: the whole mail
    assert sandbox.sandbox.requests_seen == 0


def test_try_it_lists_the_files_the_message_would_carry(make_app: AppFactory) -> None:
    app = make_app(CONVERSATIONS)
    raw = json.dumps({"q4_email": "mapped@example.com", "q5_message": "See the file"})
    parts = [
        ("formTitle", None, "Contact"),
        ("submissionID", None, "6221904456789012345"),
        ("rawRequest", None, raw),
        ("q6_upload[]", "read me.txt", "plain words"),
    ]
    sample = "".join(
        f'--xYzZY\r\nContent-Disposition: form-data; name="{name}"'
        + (f'; filename="{filename}"\r\nContent-Type: text/plain' if filename else "")
        + f"\r\n\r\n{value}\r\n"
        for name, filename, value in parts
    )
    html = try_it(signed_in(app), "files", sample + "--xYzZY--\r\n", "multipart/form-data; boundary=xYzZY")
    assert '<td class="wrap">read me.txt</td><td>text/plain</td><td class="nowrap">11 B</td>' in html
    assert "&#34;message&#34;: &#34;See the file\\n\\nEmail: mapped@example.com&#34;" in html


def test_sources_page_shows_each_sources_delivery_options(make_app: AppFactory) -> None:
    app = make_app(CONVERSATIONS + MAIL_SOURCE.replace("}", ", threading: false}"))
    html = page(signed_in(app), "/admin/sources")

    def options(name: str) -> list[str]:
        card = re.search(rf'<section class="card source" id="source-{name}">(.*?)</section>', html, re.S)
        assert card
        found = re.findall(r"<dt><code>(\w+)</code></dt>\s*<dd>(\w+)", card.group(1))
        return [f"{key}: {value}" for key, value in found]

    assert options("api") == ["client_lookup: true", "create_clients: false", "message: true", "threading: true"]
    assert options("create")[1] == "create_clients: true"
    assert options("v1")[2] == "message: false"
    assert options("mail")[3] == "threading: false"
    assert "(email kinds only)" in html
