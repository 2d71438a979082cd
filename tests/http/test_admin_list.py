"""The admin event list (rows, counts, time range, chart, refresh, first run), the raw request on
the event page, and the sources page's samples and 24 h counts, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html as markup
import io
import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from flask.testing import FlaskClient
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import select, update

from bridge.db import events
from bridge.message import InboundMessage
from bridge.providers import PROVIDERS
from bridge.runtime import Runtime, get_runtime
from bridge.status import Status
from bridge.store import ListFilter, NewEvent
from tests.conftest import API_SECRET, DEFAULT_SOURCES, AppFactory, deliver_all
from tests.http.test_admin_page import csrf, page, post_event, signed_in, text_of
from tests.providers.helpers import every_kind_sources

TALLY_SECRET = "tally-signing-secret-5e8c21"
MAIL_TOKEN = "mail-secret-0123456789"
SITE = """
  site:
    kind: form
    honeypot: website
    ticket:
      subject: "Site: {{ subject or 'contact form' }}"
"""
MORE_SOURCES = DEFAULT_SOURCES + SITE + f"  tally: {{kind: tally, secret: {TALLY_SECRET}}}\n"
MORE_SOURCES += f"  mail: {{kind: email, secret: {MAIL_TOKEN}}}\n"


# no defaults.user_id: a sender the clients map does not name cannot be mapped
NO_DEFAULT_USER = f"""client_lookup: false
clients:
  alice@example.com: 12
  dave@example.com: 14
sources:
  api: {{kind: json, secret: {API_SECRET}}}
  strict: {{kind: json}}
{SITE}"""


def rows_of(html: str) -> list[str]:
    return re.findall(r'<tr class="row-[a-z]+" id="row-[^"]+">.*?</tr>', html, re.S)


def row_of(html: str, event_id: str) -> str:
    found = re.search(rf'<tr class="row-[a-z]+" id="row-{event_id}">.*?</tr>', html, re.S)
    assert found, f"no row of {event_id}"
    return found.group(0)


def count(html: str, status: str) -> int:
    found = re.search(rf'data-status="{status}">(\d+)<', html)
    assert found, status
    return int(found.group(1))


def stored_event(
    runtime: Runtime,
    at: datetime,
    status: Status = Status.DELIVERED,
    source: str = "api",
    subject: str = "Stored",
) -> str:
    """An event as if received at ``at``: its id minted then, like intake's."""
    event_id = f"evt_{int(at.timestamp() * 1000):012x}{secrets.token_hex(8)}"
    message = InboundMessage(dedupe_key=event_id, email="old@example.com", subject=subject)
    new = NewEvent(
        id=event_id,
        source=source,
        status=status,
        message=message,
        ticket_request={"subject": f"Ticket {subject}", "user_id": 1},
        last_error="SPP refused it (HTTP 422)" if status == Status.FAILED else None,
        received_at=at,
        raw_request={"method": "POST", "path": f"/hooks/{source}", "query": {}, "headers": {}},
    )
    assert runtime.store.events.add(new).created
    return event_id


def post_tally(client: FlaskClient, body: bytes) -> str:
    digest = hmac.new(TALLY_SECRET.encode(), body, hashlib.sha256).digest()
    response = client.post(
        "/hooks/tally?token=" + quote(TALLY_SECRET),
        data=body,
        content_type="application/json",
        headers={"Tally-Signature": base64.b64encode(digest).decode(), "Authorization": "Bearer private-value-77"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["event_id"])


# --- rows ------------------------------------------------------------------------------------


def test_each_row_shows_the_ticket_subject_sender_last_error_and_next_attempt(
    make_app: AppFactory, sandbox: Any
) -> None:
    app = make_app(NO_DEFAULT_USER, BRIDGE_RETRY_BASE_SECONDS="600", BRIDGE_RETRY_MAX_SECONDS="3600")
    runtime = get_runtime(app)
    client = signed_in(app)
    form = client.post("/hooks/site", data={"email": "dave@example.com", "name": "Dave", "message": "hi"})
    assert form.status_code == 200
    [form_id] = runtime.store.queries.event_ids(Status.QUEUED, "site")
    deliver_all(runtime)
    unmapped = client.post("/hooks/strict", json={"email": "x@nowhere.example", "subject": "Own words"})
    unmapped_id = unmapped.get_json()["event_id"]
    sandbox.sandbox.script(503)
    retrying = post_event(client, subject="Printer " + "very " * 40 + "long")
    deliver_all(runtime)  # the 503: retrying, its next attempt 10 min away
    html = page(client, "/admin/")

    row = row_of(html, form_id)  # the ticket's subject, not the form's missing one
    assert ">Site: contact form<" in row and "(no subject)" not in row and "Dave &lt;dave@example.com&gt;" in row

    row = row_of(html, unmapped_id)  # no ticket request: the message's subject, the mapping failure
    assert ">Own words<" in row and 'class="error-text last-error"' in row and "no client matches" in row

    row = row_of(html, retrying)
    event = runtime.store.queries.get_event(retrying)
    assert event and event["status"] == Status.RETRYING and event["last_error"]
    assert f'title="{markup.escape(event["last_error"])}"' in row  # the whole error on hover
    next_at = event["next_attempt_at"].strftime("%Y-%m-%d %H:%M:%S UTC")
    assert re.search(rf'class="nowrap next-attempt"><time datetime="[^"]+" title="{next_at}">in \d+ min<', row)
    received = re.search(r'<time datetime="[^"]+" title="(\d{4}-[^"]+ UTC)">just now</time>', row)
    assert received and received.group(1) == event["received_at"].strftime("%Y-%m-%d %H:%M:%S UTC")
    assert text_of(row, "row-" + retrying).count("alice@example.com") == 1


def test_a_long_last_error_is_cut_short_with_the_whole_of_it_on_hover(make_app: AppFactory) -> None:
    app = make_app()
    runtime = get_runtime(app)
    event_id = stored_event(runtime, datetime.now(UTC), Status.FAILED)
    long_error = "SPP refused it: " + "the field was not valid; " * 20
    with runtime.store.engine.begin() as conn:
        conn.execute(update(events).where(events.c.id == event_id).values(last_error=long_error))
    row = row_of(page(signed_in(app), "/admin/"), event_id)
    shown = re.search(r'last-error" title="([^"]+)">([^<]+)<', row)
    assert shown and markup.unescape(shown.group(1)) == long_error
    assert len(shown.group(2)) <= 91 and shown.group(2).endswith("…")


def test_a_discarded_event_is_neutral_and_says_why(make_app: AppFactory) -> None:
    app = make_app(MORE_SOURCES)
    client = signed_in(app)
    response = client.post("/hooks/site", data={"email": "bot@spam.example", "message": "buy", "website": "x"})
    assert response.status_code == 200
    [event_id] = get_runtime(app).store.queries.event_ids(Status.DISCARDED)
    row = row_of(page(client, "/admin/"), event_id)
    assert row.startswith('<tr class="row-discarded"')
    assert 'class="discard-reason"' in row and "discarded: spam: honeypot field &#39;website&#39; was filled in" in row
    assert "error-text" not in row and "could not be mapped" not in row
    assert 'class="badge status-discarded"' in row


# --- counts and filters -------------------------------------------------------------------------


def test_counts_follow_the_source_search_and_time_filters(make_app: AppFactory, sandbox: Any) -> None:
    app = make_app(MORE_SOURCES)
    runtime = get_runtime(app)
    client = signed_in(app)
    sandbox.sandbox.script(422)
    post_event(client, subject="Refused at SPP")
    deliver_all(runtime)
    post_event(client, email="carol@example.org", subject="Waiting")
    client.post("/hooks/contact", data={"email": "dave@example.com", "subject": "From the form", "message": "x"})
    stored_event(runtime, datetime.now(UTC) - timedelta(hours=3), Status.FAILED, subject="Three hours old")

    everything = page(client, "/admin/")
    assert (count(everything, "all"), count(everything, "failed"), count(everything, "queued")) == (4, 2, 2)
    by_source = page(client, "/admin/?source=contact")
    assert (count(by_source, "all"), count(by_source, "failed"), count(by_source, "queued")) == (1, 0, 1)
    found = page(client, "/admin/?q=carol")
    assert (count(found, "all"), count(found, "failed"), count(found, "queued")) == (1, 0, 1)
    nothing = page(client, "/admin/?source=api&q=nobody-at-all")
    assert "No events match" in nothing and count(nothing, "failed") == 0 and count(nothing, "all") == 0
    recent = page(client, "/admin/?since=1h")
    assert (count(recent, "all"), count(recent, "failed")) == (3, 1) and "Three hours old" not in recent
    # a status filter narrows the rows, not the counts beside it
    failed = page(client, "/admin/?status=failed&since=24h")
    assert len(rows_of(failed)) == 2 and count(failed, "queued") == 2


def test_the_time_range_filter(make_app: AppFactory) -> None:
    app = make_app()
    runtime = get_runtime(app)
    now = datetime.now(UTC)
    ages = {
        "fresh": timedelta(minutes=5),
        "hours": timedelta(hours=5),
        "days": timedelta(days=3),
        "old": timedelta(days=40),
    }
    for subject, age in ages.items():
        stored_event(runtime, now - age, subject=subject)
    client = signed_in(app)

    def shown(since: str) -> set[str]:
        html = page(client, f"/admin/?since={since}")
        return {subject for subject in ages if f">Ticket {subject}<" in html}

    assert shown("1h") == {"fresh"}
    assert shown("24h") == {"fresh", "hours"}
    assert shown("7d") == {"fresh", "hours", "days"}
    assert shown("30d") == {"fresh", "hours", "days"}
    assert shown("") == shown("all") == set(ages)
    iso = (now - timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert shown(iso) == {"fresh", "hours"}
    offset = (now - timedelta(hours=6)).astimezone(datetime.now().astimezone().tzinfo).isoformat()
    assert shown(quote(offset)) == {"fresh", "hours"}
    html = page(client, f"/admin/?since={iso}")
    assert f'<option value="{iso}" selected>since {iso}</option>' in html  # kept in the form

    for bad in ("yesterday", "2026-13-45", "1h; DROP TABLE events", "0001-01-01T00:00:00+01:00"):
        response = client.get(f"/admin/?since={quote(bad)}")
        assert response.status_code == 400, bad
        assert "Not a filter: since must be" in response.get_data(as_text=True)


def test_paging_keeps_the_filters(make_app: AppFactory) -> None:
    app = make_app()
    runtime = get_runtime(app)
    now = datetime.now(UTC)
    for n in range(3):
        stored_event(runtime, now - timedelta(minutes=n + 1), subject=f"recent {n}")
    stored_event(runtime, now - timedelta(days=2), subject="older")
    client = signed_in(app)
    first = page(client, "/admin/?since=24h&limit=2")
    next_url = markup.unescape(re.search(r'href="([^"]+)" rel="next"', first).group(1))  # type: ignore[union-attr]
    assert "since=24h" in next_url and "limit=2" in next_url
    second = page(client, next_url)
    assert ">Ticket recent 2<" in second and ">Ticket older<" not in second and 'rel="next"' not in second
    assert 'href="/admin/events?since=24h">First page<' in second
    assert '<option value="24h" selected>' in second


# --- refresh, first run --------------------------------------------------------------------------


def test_the_pages_refresh_only_while_something_shown_is_pending(make_app: AppFactory, sandbox: Any) -> None:
    app = make_app()
    runtime = get_runtime(app)
    client = signed_in(app)
    refresh = '<meta http-equiv="refresh" content="5">'
    event_id = post_event(client)
    assert refresh in page(client, "/admin/") and refresh in page(client, f"/admin/events/{event_id}")
    assert refresh not in page(client, "/admin/?status=delivered")  # nothing pending shown
    deliver_all(runtime)
    assert refresh not in page(client, "/admin/") and refresh not in page(client, f"/admin/events/{event_id}")
    assert refresh not in page(client, "/admin/sources")


def test_the_first_run_shows_how_to_send_a_first_event(make_app: AppFactory) -> None:
    app = make_app()
    client = signed_in(app)
    html = page(client, "/admin/")
    assert 'id="first-run"' in html and "No events match" not in html and 'id="chart"' not in html
    curl = markup.unescape(re.search(r'<pre id="first-curl">(.*?)</pre>', html, re.S).group(1))  # type: ignore[union-attr]
    assert curl.startswith("curl -s -H 'Content-Type: application/json' --data-binary '{")
    assert curl.endswith(" http://localhost/hooks/open")  # the json source needing no secret
    assert 'href="/admin/sources#source-open"' in html
    # the line works: its body sent to its URL is the first event
    body = json.loads(curl.split("--data-binary ", 1)[1].rsplit(" ", 1)[0].strip("'"))
    assert client.post("/hooks/open", json=body).status_code == 200
    html = page(client, "/admin/")
    assert 'id="first-run"' not in html and 'id="chart"' in html
    assert 'id="first-run"' not in page(client, "/admin/?q=nobody")  # a filter: "No events match" instead


def test_the_first_run_with_only_a_secret_source_names_the_header(make_app: AppFactory) -> None:
    app = make_app(f"defaults: {{user_id: 1}}\nsources:\n  orders: {{kind: json, secret: {API_SECRET}}}\n")
    html = page(signed_in(app), "/admin/")
    curl = markup.unescape(re.search(r'<pre id="first-curl">(.*?)</pre>', html, re.S).group(1))  # type: ignore[union-attr]
    assert "-H 'X-Bridge-Token: YOUR-SECRET'" in curl and API_SECRET not in html


# --- the chart ---------------------------------------------------------------------------------


def test_the_chart_counts_each_hour_of_the_last_day(make_app: AppFactory) -> None:
    app = make_app()
    runtime = get_runtime(app)
    now = datetime.now(UTC)
    hour_now = now.replace(minute=0, second=0, microsecond=0)
    two_back = hour_now - timedelta(hours=2) + timedelta(minutes=10)
    plan = [
        (two_back, Status.DELIVERED, "api"),
        (two_back + timedelta(minutes=5), Status.DELIVERED, "api"),
        (two_back + timedelta(minutes=6), Status.FAILED, "api"),
        (two_back + timedelta(minutes=7), Status.QUEUED, "contact"),
        (hour_now + (now - hour_now) / 2, Status.FAILED, "contact"),  # in this hour, whatever its minute
        (now - timedelta(hours=30), Status.DELIVERED, "api"),  # before the chart's day
    ]
    for at, status, source in plan:
        stored_event(runtime, at, status, source)
    client = signed_in(app)
    html = page(client, "/admin/")
    totals = {name: int(n) for name, n in re.findall(r'data-total="(\w+)">(\d+)<', html)}
    assert totals == {"accepted": 5, "delivered": 2, "failed": 2}
    table = dict(re.findall(r'<tr><th scope="row">(\d\d:00 to \d\d:00 UTC)</th>(.*?)</tr>', html))
    assert len(table) == 24

    def cells(start: datetime) -> tuple[int, ...]:
        span = f"{start:%H}:00 to {(start.hour + 1) % 24:02d}:00 UTC"
        return tuple(int(n) for n in re.findall(r'data-series="\w+">(\d+)<', table[span]))

    assert cells(hour_now - timedelta(hours=2)) == (4, 2, 1)
    assert cells(hour_now) == (1, 0, 1)
    assert sum(sum(cells(hour_now - timedelta(hours=h))) for h in range(24)) == 5 + 2 + 2
    assert f"{hour_now - timedelta(hours=2):%H}:00 to" in html and "<title>" in html  # bars say their numbers
    assert re.search(rf"<title>{hour_now - timedelta(hours=2):%H}:00 to \d\d:00 UTC: 4 accepted</title>", html)
    assert " style=" not in html and "<script" not in html  # the CSP allows neither
    by_source = page(client, "/admin/?source=contact")
    assert {n: int(v) for n, v in re.findall(r'data-total="(\w+)">(\d+)<', by_source)} == {
        "accepted": 2,
        "delivered": 0,
        "failed": 1,
    }


def test_the_store_reads_hours_counts_and_sources_with_time_bounds(make_app: AppFactory) -> None:
    """The queries behind the page, straight: an id minted before the bound is outside it."""
    runtime = get_runtime(make_app())
    now = datetime.now(UTC)
    stored_event(runtime, now - timedelta(minutes=90), Status.FAILED, "api")
    stored_event(runtime, now - timedelta(minutes=20), Status.DELIVERED, "contact")
    stored_event(runtime, now - timedelta(hours=25), Status.FAILED, "api")
    queries = runtime.store.queries
    hours = queries.hourly(now)
    assert len(hours) == 24 and hours[-1]["start"] <= now < hours[-1]["start"] + timedelta(hours=1)
    assert sum(h["accepted"] for h in hours) == 2 and sum(h["failed"] for h in hours) == 1
    assert queries.count_by_status(ListFilter(since=now - timedelta(hours=1))) == {"delivered": 1}
    assert queries.count_by_status(ListFilter(source="api")) == {"failed": 2}
    assert queries.source_counts(now - timedelta(hours=24)) == {
        "api": {"accepted": 1, "failed": 1},
        "contact": {"accepted": 1, "failed": 0},
    }
    rows, _ = queries.list_page(ListFilter(since=now - timedelta(hours=2)), 10, None)
    assert [r["ticket_subject"] for r in rows] == ["Ticket Stored", "Ticket Stored"]
    assert rows[0]["sender_email"] == "old@example.com" and rows[0]["message_subject"] == "Stored"


# --- the raw request on the event page ---------------------------------------------------------------


def test_the_event_page_shows_the_request_as_stored_without_credentials(make_app: AppFactory) -> None:
    app = make_app(MORE_SOURCES)
    runtime = get_runtime(app)
    client = signed_in(app)
    _, sample = PROVIDERS["tally"].sample
    body = sample.replace("Grüße aus Köln", f"Grüße aus Köln {TALLY_SECRET}").encode()
    event_id = post_tally(client, body)
    html = page(client, f"/admin/events/{event_id}")
    raw = re.search(r'<section class="card raw" id="raw-request">(.*?)</section>', html, re.S)
    assert raw and "<details>" in raw.group(1)
    shown = raw.group(1)
    assert "<code>POST /hooks/tally</code>" in shown
    assert '<th scope="row">Tally-Signature</th>' in shown  # the signature, not its key
    assert '<th scope="row">Authorization</th><td>[REDACTED]</td>' in shown
    assert '<th scope="row">token</th><td>[REDACTED]</td>' in shown
    assert "Grüße aus Köln [REDACTED]" in markup.unescape(shown)
    assert TALLY_SECRET not in html and quote(TALLY_SECRET) not in html and "private-value-77" not in html
    with runtime.store.engine.connect() as conn:  # the page hides nothing the store holds
        stored = conn.execute(select(events.c.raw_request, events.c.raw_body).where(events.c.id == event_id)).one()
    kept = json.dumps(stored.raw_request) + bytes(stored.raw_body).decode()
    assert TALLY_SECRET not in kept and "private-value-77" not in kept
    assert f'href="/admin/sources?sample={event_id}#source-tally"' in html


def test_a_long_body_is_cut_and_a_binary_body_summarised(make_app: AppFactory) -> None:
    app = make_app(MORE_SOURCES)
    client = signed_in(app)
    mail = (
        "From: Max <max@example.com>\nTo: help@example.com\nSubject: Long\nMessage-ID: <long-1@example.com>\n"
        "Content-Type: text/plain; charset=utf-8\n\n" + "ä" * 40_000
    ).encode()
    response = client.post(
        "/hooks/mail", data=mail, headers={"X-Bridge-Token": MAIL_TOKEN}, content_type="message/rfc822"
    )
    long_id = response.get_json()["event_id"]
    html = page(client, f"/admin/events/{long_id}")
    assert f"{len(mail) - 64 * 1024} more bytes not shown." in html
    assert "\ufffd" not in html.split('class="raw-body">', 1)[1].split("</pre>", 1)[0][:-2]

    upload = b"%PDF-1.4\x00\x01\x02" + bytes(range(256)) * 4
    response = client.post(
        "/hooks/contact",
        data={"email": "dave@example.com", "message": "see file", "file": (io.BytesIO(upload), "a.pdf")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 303  # the contact source's redirect
    [binary_id] = [e for e in get_runtime(app).store.queries.event_ids(Status.QUEUED, "contact")]
    html = page(client, f"/admin/events/{binary_id}")
    assert 'id="raw-binary">Binary body:' in html and "%PDF-1.4" not in html

    json_id = post_event(client)  # a json body is kept as the message's fields only
    assert 'id="raw-in-fields"' in page(client, f"/admin/events/{json_id}")


# --- the sources page: samples and counts -------------------------------------------------------------


def sample_form(html: str, source: str) -> tuple[str, str]:
    """The try-it form of ``source`` as rendered: (selected content type, sample text)."""
    text = re.search(rf'<textarea id="{source}-sample"[^>]*>(?:\r?\n)?(.*?)</textarea>', html, re.S)
    select_ = re.search(rf'<select id="{source}-content_type".*?</select>', html, re.S)
    assert text and select_, source
    chosen = re.search(r'<option selected value="([^"]*)"|<option value="([^"]*)" selected', select_.group(0))
    assert chosen, f"no content type chosen for {source}"
    return markup.unescape(chosen.group(1) or chosen.group(2)), markup.unescape(text.group(1))


def try_as_rendered(client: FlaskClient, html: str, source: str) -> str:
    content_type, sample = sample_form(html, source)
    data = {
        f"{source}-csrf_token": csrf(html, f"{source}-csrf_token"),
        f"{source}-sample": sample,
        f"{source}-content_type": content_type,
    }
    response = client.post(f"/admin/sources/{source}/try", data=data)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_every_kinds_default_sample_previews_to_a_ticket(make_app: AppFactory) -> None:
    app = make_app(every_kind_sources())
    client = signed_in(app)
    html = page(client, "/admin/sources")
    for kind in PROVIDERS:
        result = try_as_rendered(client, html, kind)
        card = result.split(f'id="source-{kind}"', 1)[1].split("</section>", 1)[0]
        assert "The requests delivery would make" in card, (kind, re.findall(r'result error wrap">(.*?)<', card))
        assert 'class="result ok call-ticket"' in card, kind


def test_a_refused_sample_is_explained_in_words(make_app: AppFactory) -> None:
    app = make_app(every_kind_sources())
    client = signed_in(app)
    token = csrf(page(client, "/admin/sources"), "tally-csrf_token")
    data = {
        "tally-csrf_token": token,
        "tally-sample": '{"eventType": "FORM_RESPONSE"}',
        "tally-content_type": "application/json",
    }
    html = client.post("/admin/sources/tally/try", data=data).get_data(as_text=True)
    error = markup.unescape(re.search(r'<p class="result error wrap">(.*?)</p>', html, re.S).group(1))  # type: ignore[union-attr]
    assert error.startswith("The hook would answer 422: the payload lacks what a 'tally' source requires: data")
    assert "{" not in error and "[" not in error  # no Python dict or list


def test_an_event_is_the_sample_of_its_sources_form(make_app: AppFactory) -> None:
    app = make_app(MORE_SOURCES)
    runtime = get_runtime(app)
    client = signed_in(app)
    mail = (
        "From: Max <max@example.com>\r\nTo: help@example.com\r\nSubject: Über den Drucker\r\n"
        "Message-ID: <s-1@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nEr brennt.\r\n"
    ).encode()
    response = client.post(
        "/hooks/mail", data=mail, headers={"X-Bridge-Token": MAIL_TOKEN}, content_type="message/rfc822"
    )
    mail_id = response.get_json()["event_id"]
    html = page(client, f"/admin/sources?sample={mail_id}")
    card = html.split('id="source-mail"', 1)[1].split("</section>", 1)[0]
    assert "<details open>" in card and f"The sample is the request of event {mail_id}." in card
    content_type, sample = sample_form(html, "mail")
    assert content_type == "message/rfc822" and sample.replace("\r\n", "\n") == mail.decode().replace("\r\n", "\n")
    result = try_as_rendered(client, html, "mail")
    assert "&#34;subject&#34;: &#34;Über den Drucker&#34;" in result

    json_id = post_event(client, subject="Rebuilt from fields", order_number="A-9")
    html = page(client, f"/admin/sources?sample={json_id}")
    content_type, sample = sample_form(html, "api")
    assert content_type == "application/json" and json.loads(sample)["order_number"] == "A-9"
    assert "&#34;order&#34;: &#34;A-9&#34;" in try_as_rendered(client, html, "api")

    form = client.post("/hooks/contact", data={"email": "d@example.com", "subject": "Form again", "message": "x"})
    assert form.status_code == 303
    [form_id] = runtime.store.queries.event_ids(Status.QUEUED, "contact")
    html = page(client, f"/admin/sources?sample={form_id}")
    assert sample_form(html, "contact") == (
        "application/x-www-form-urlencoded",
        "email=d%40example.com&subject=Form+again&message=x",
    )

    with runtime.store.engine.begin() as conn:  # its body gone (as a retention sweep leaves it)
        conn.execute(update(events).where(events.c.id == mail_id).values(raw_body=b""))
    html = page(client, f"/admin/sources?sample={mail_id}")
    card = html.split('id="source-mail"', 1)[1].split("</section>", 1)[0]
    assert "cannot be used as a sample: its body is no longer kept" in card
    assert sample_form(html, "mail") == PROVIDERS["email"].sample  # the kind's own sample stays
    assert 'id="raw-gone"' in page(client, f"/admin/events/{mail_id}")

    for unknown in ("evt_0000000000000000000000000000", "nonsense"):
        html = page(client, f"/admin/sources?sample={unknown}")
        assert 'id="sample-note"' in html and "There is no event" in html


def test_a_multipart_event_sample_keeps_its_boundary(make_app: AppFactory) -> None:
    app = make_app(MORE_SOURCES)
    client = signed_in(app)
    response = client.post(
        "/hooks/contact",
        data={
            "email": "dave@example.com",
            "subject": "With a note",
            "message": "x",
            "file": (io.BytesIO(b"plain words"), "n.txt"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 303  # the contact source's redirect
    [event_id] = get_runtime(app).store.queries.event_ids(Status.QUEUED, "contact")
    html = page(client, f"/admin/sources?sample={event_id}")
    content_type, _ = sample_form(html, "contact")
    assert content_type.startswith("multipart/form-data; boundary=")
    result = try_as_rendered(client, html, "contact")
    assert "&#34;subject&#34;: &#34;Website: With a note&#34;" in result and "n.txt" in result


def test_each_source_card_counts_its_last_day(make_app: AppFactory) -> None:
    app = make_app()
    runtime = get_runtime(app)
    now = datetime.now(UTC)
    stored_event(runtime, now - timedelta(hours=2), Status.DELIVERED, "api")
    stored_event(runtime, now - timedelta(hours=5), Status.FAILED, "api")
    stored_event(runtime, now - timedelta(hours=26), Status.FAILED, "api")
    stored_event(runtime, now - timedelta(minutes=1), Status.FAILED, "contact")
    html = page(signed_in(app), "/admin/sources")

    def last_day(source: str) -> tuple[int, int]:
        card = html.split(f'id="source-{source}"', 1)[1].split("</section>", 1)[0]
        found = re.search(r'data-count="accepted">(\d+)<.*?data-count="failed"[^>]*>(\d+)<', card, re.S)
        assert found, source
        return int(found.group(1)), int(found.group(2))

    assert (last_day("api"), last_day("contact"), last_day("open")) == ((2, 1), (1, 1), (0, 0))


def test_the_time_bounded_reads_take_a_range_of_the_primary_key(make_app: AppFactory) -> None:
    """30 days of events, 100 a day: the chart, the counts and the sources' day read the day's
    range of pk_events, not the table (EXPLAIN on both databases)."""
    runtime = get_runtime(make_app())
    engine = runtime.store.engine
    now = datetime.now(UTC)
    rows = []
    for n in range(3000):
        at = now - timedelta(minutes=n * 14.4)
        event_id = f"evt_{int(at.timestamp() * 1000):012x}{secrets.token_hex(8)}"
        rows.append(
            {
                "id": event_id,
                "source": ("api", "contact")[n % 2],
                "dedupe_key": event_id,
                "status": ("delivered", "failed", "queued")[n % 3],
                "raw_request": {},
                "raw_body": b"",
                "attempts": 0,
                "retry_window_start": at,
                "attempts_at_window_start": 0,
                "received_at": at,
                "updated_at": at,
            }
        )
    with engine.begin() as conn:
        conn.execute(events.insert(), rows)
        conn.exec_driver_sql("ANALYZE")
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if "FROM events" in statement:
            statements.append((statement, parameters))

    queries = runtime.store.queries
    day_ago = now - timedelta(hours=24)
    sqlalchemy_event.listen(engine, "before_cursor_execute", capture)
    try:
        hours = queries.hourly(now)
        counts = queries.count_by_status(ListFilter(source="api", since=day_ago))
        per_source = queries.source_counts(day_ago)
    finally:
        sqlalchemy_event.remove(engine, "before_cursor_execute", capture)
    assert len(statements) == 3
    assert sum(h["accepted"] for h in hours) == sum(1 for r in rows if r["received_at"] >= hours[0]["start"])
    assert sum(counts.values()) == per_source["api"]["accepted"] in range(49, 53)
    with engine.connect() as conn:
        for statement, parameters in statements:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            if runtime.store.is_postgres:
                cursor.execute("EXPLAIN " + statement, parameters)
                plan = "\n".join(row[0] for row in cursor.fetchall())
                assert "pk_events" in plan and "Seq Scan" not in plan, plan
            else:
                plan = "\n".join(str(row) for row in cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters))
                assert "sqlite_autoindex_events_1 (id>?)" in plan, plan


def test_filters_with_control_characters_or_odd_digits_are_a_clear_answer(make_app: AppFactory) -> None:
    """PostgreSQL refuses a NUL in text: such a filter is a 400 page, never a 500; a page size
    that is no ASCII number is the default one."""
    admin = signed_in(make_app())
    for url in (
        "/admin/events?source=%00",
        "/admin/events?q=a%00b",
        "/admin/events?since=2%0a4h",
        "/admin/events/replay-failed?source=%00",
        "/admin/events/replay-failed?q=%1b",
    ):
        answer = admin.get(url)
        assert answer.status_code == 400, url
        assert "control characters" in answer.get_data(as_text=True)
    assert admin.get("/admin/events?limit=%C2%B2").status_code == 200  # "²" is a digit to str.isdigit
