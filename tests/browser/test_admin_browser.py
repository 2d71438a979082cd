"""The admin page in a real Chromium (Playwright) against the app on a loopback port.

The SPP sandbox and an in-process delivery worker run meanwhile, so a replay pressed in the
browser really reaches the sandbox. Screenshots go to test-artifacts/admin/; the event page
is also saved as docs/images/event-page.png for the README.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from bridge.runtime import Runtime, get_runtime
from bridge.worker import Worker
from tests.conftest import ADMIN_TOKEN, API_SECRET, SPP_TOKEN, api_headers
from tests.helpers import ROOT, Receiver, serve_app, wait_for

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts" / "admin"
DOC_IMAGE = ROOT / "docs" / "images" / "event-page.png"
LIST_IMAGE = ROOT / "docs" / "images" / "events-list.png"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def require_chromium() -> None:
    """Skip, saying why, without Chromium or Playwright; BRIDGE_REQUIRE_BROWSER=1 makes that a failure."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "browser tests need Playwright for Python (pip install -r requirements-dev.txt)"
    else:
        if CHROMIUM.exists():
            return
        reason = f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("BRIDGE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"BRIDGE_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def worker(runtime: Runtime) -> Iterator[Worker]:
    """A delivery worker in a thread, woken by the web layer like the embedded one."""
    running = runtime.worker(poll_seconds=0.5)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    yield running
    running.stop()
    thread.join(15)
    assert not thread.is_alive()


def post(app: Flask, subject: str, email: str = "alice@example.com", **extra: str) -> str:
    body = {"email": email, "name": extra.pop("name", "Alice"), "subject": subject, **extra}
    response = app.test_client().post("/hooks/api", json=body, headers=api_headers())
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["event_id"])


def status_of(runtime: Runtime, event_id: str) -> str:
    event = runtime.store.queries.get_event(event_id)
    return event["status"] if event else "missing"


def make_events(app: Flask, runtime: Runtime, sandbox: Any) -> str:
    """A few delivered events and one SPP refused (422); returns the refused one."""
    sandbox.sandbox.script(422)
    refused = post(app, "Printer on fire", message="The office printer is smoking.", order_number="A-1001")
    wait_for(lambda: status_of(runtime, refused) == "failed")
    delivered = [
        post(app, "Invoice question", "bob@bigcustomer.com", name="Bob Builder", message="Is VAT included?"),
        post(app, "New website page", "carol@example.org", name="Carol", message="Please add a team page."),
        post(app, "<script>alert(1)</script>", "mallory@example.net", name="Mallory", message="Escaped?"),
    ]
    wait_for(lambda: all(status_of(runtime, i) == "delivered" for i in delivered))
    return refused


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def sign_in(page: Any, base: str) -> None:
    page.goto(f"{base}/admin/")
    assert "/admin/sign-in" in page.url
    shot(page, "01-sign-in.png")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/admin/(events)?$"))


def no_secret(page: Any) -> None:
    html = page.content()
    assert all(secret not in html for secret in (ADMIN_TOKEN, API_SECRET, SPP_TOKEN))


def replay_until_delivered(page: Any, runtime: Runtime, event_id: str) -> None:
    from playwright.sync_api import expect

    page.get_by_role("button", name="Replay", exact=True).click()
    expect(page.locator(".flash.ok")).to_contain_text("Replayed")
    wait_for(lambda: status_of(runtime, event_id) == "delivered")
    page.reload()
    expect(page.locator("#event-status")).to_have_text("delivered")
    expect(page.locator("#ticket-id")).to_have_text(re.compile(r"^\d+$"))
    # the refused ticket, the ticket, then its first message
    assert page.locator("table.attempts tbody tr").count() == 3
    for step in ("ticket", "message"):
        expect(page.locator(f"#step-{step} .state")).to_have_text("done")
    expect(page.locator("#step-client .state")).to_have_text("not needed")  # alice@example.com: the sources file
    expect(page.locator("#client-how")).to_have_text("from the sources file")
    expect(page.locator("#first-message pre")).to_have_text("The office printer is smoking.")


def try_it(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base}/admin/sources")
    card = page.locator("#source-api")
    card.locator("summary").click()
    card.get_by_label("Sample body").fill('{"email": "dana@bigcustomer.com", "subject": "Quote", "message": "Price?"}')
    card.get_by_label("Content type").select_option("application/json")
    card.get_by_role("button", name="Show the requests").click()
    expect(page.locator("#source-api pre.call-ticket")).to_contain_text('"user_id": 30')
    expect(page.locator("#source-api pre.call-message")).to_contain_text('"message": "Price?"')
    no_secret(page)
    shot(page, "06-sources-try-it.png")


def test_operator_replays_a_refused_event_and_tries_a_source(
    app: Flask, runtime: Runtime, sandbox: Any, worker: Worker, browser: Any
) -> None:
    from playwright.sync_api import expect

    refused = make_events(app, runtime, sandbox)
    with serve_app(app) as base:
        page = browser.new_page(viewport=DESKTOP)
        page.set_default_timeout(10_000)
        sign_in(page, base)
        expect(page.locator("table.events tbody tr")).to_have_count(4)
        expect(page.get_by_text("<script>alert(1)</script>")).to_be_visible()  # shown as text, not run
        shot(page, "02-events.png")
        page.locator("select[name=status]").select_option("failed")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("table.events tbody tr")).to_have_count(1)
        shot(page, "03-events-failed.png")
        page.get_by_role("link", name="Printer on fire").click()
        expect(page.locator("#event-status")).to_have_text("failed")
        expect(page.locator("#step-ticket .state")).to_have_text("failed")
        expect(page.locator("#step-message .state")).to_have_text("not reached")
        shot(page, "04-event-failed.png")
        replay_until_delivered(page, runtime, refused)
        no_secret(page)
        shot(page, "05-event-delivered.png")
        if os.environ.get("BRIDGE_UPDATE_SCREENSHOTS") == "1":  # the README's picture, on request only
            page.screenshot(path=str(DOC_IMAGE), full_page=True)
        try_it(page, base)
        page.set_viewport_size(PHONE)
        for url, name in (("/admin/", "07-events-phone.png"), (f"/admin/events/{refused}", "08-event-phone.png")):
            page.goto(base + url)
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing runs off-screen
            shot(page, name)
        page.close()


def test_first_run_then_the_list_with_its_chart_and_an_events_raw_request(
    app: Flask, runtime: Runtime, sandbox: Any, worker: Worker, browser: Any
) -> None:
    from playwright.sync_api import expect

    with serve_app(app) as base:
        page = browser.new_page(viewport=DESKTOP)
        page.set_default_timeout(10_000)
        refused: list[str] = []  # what the Content-Security-Policy refused, if anything
        page.on(
            "console",
            lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None,
        )
        sign_in(page, base)
        expect(page.locator("#first-run")).to_be_visible()
        expect(page.locator("#first-curl")).to_contain_text(f"{base}/hooks/open")
        shot(page, "09-first-run.png")

        failed = make_events(app, runtime, sandbox)
        page.reload()
        expect(page.locator("#first-run")).to_have_count(0)
        expect(page.locator("svg.chart-svg")).to_be_visible()
        expect(page.locator("svg.chart-svg rect.bar")).to_have_count(72)
        expect(page.locator('[data-total="accepted"]')).to_have_text("4")
        expect(page.locator('[data-total="failed"]')).to_have_text("1")
        bar = page.locator("svg.chart-svg rect.bar.accepted").last.bounding_box()
        assert bar and bar["height"] > 10  # drawn by the stylesheet and attributes, not inline style
        expect(page.locator(f"#row-{failed} .last-error")).to_contain_text("422")
        shot(page, "10-events-chart.png")

        page.goto(f"{base}/admin/events/{failed}")
        raw = page.locator("#raw-request")
        raw.locator("summary").click()
        expect(raw.locator("table.raw-headers")).to_contain_text("X-Bridge-Token")
        expect(raw.locator("table.raw-headers")).to_contain_text("[REDACTED]")
        no_secret(page)
        shot(page, "11-event-raw-request.png")
        page.get_by_role("link", name="Use this request as the sample").click()
        card = page.locator("#source-api")
        expect(card.get_by_label("Sample body")).to_have_value(re.compile(r'"subject": "Printer on fire"'))
        card.get_by_role("button", name="Show the requests").click()
        expect(page.locator("#source-api pre.call-ticket")).to_contain_text('"order": "A-1001"')
        shot(page, "12-sources-sample-from-event.png")
        assert not refused, refused
        page.close()


def test_an_operator_learns_of_failures_fixes_the_cause_and_pushes_every_event_through(
    make_app: Any, sandbox: Any, receiver: Receiver, browser: Any
) -> None:
    """The issue's done criterion, as an operator lives it: SPP refuses three tickets and asks a
    fourth to wait an hour; the alert arrives (apprise to a loopback receiver) with its link; the
    cause is gone (the sandbox accepts again); from the page, the three failed ones are replayed
    in bulk after a confirmation and the waiting one is sent at once."""
    from playwright.sync_api import expect

    app = make_app(BRIDGE_ALERT_URLS=receiver.url, BRIDGE_DELIVERY_CONCURRENCY="1")
    runtime = get_runtime(app)
    running = runtime.worker(poll_seconds=0.2)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    try:
        sandbox.sandbox.script(422, 422, 422, "429:3600")
        refused = [post(app, f"Order {n} missing", message=f"Where is order {n}?") for n in (1, 2, 3)]
        wait_for(lambda: all(status_of(runtime, i) == "failed" for i in refused))
        waiting = post(app, "Call me back", message="Please call me.")
        wait_for(lambda: status_of(runtime, waiting) == "retrying")
        with serve_app(app) as base:
            runtime.alerts(public_url=base).run(datetime.now(UTC))
            [notice] = receiver.posts
            assert notice["title"] == "spp-ticket-bridge: 3 events failed"
            link = re.search(r"See (\S+)\.$", notice["message"])
            assert link and link.group(1) == f"{base}/admin/events?status=failed"

            page = browser.new_page(viewport=DESKTOP)
            page.set_default_timeout(10_000)
            sign_in(page, base)
            page.goto(link.group(1))
            expect(page.locator("table.events tbody tr")).to_have_count(3)
            shot(page, "13-alert-link-failed-events.png")
            page.get_by_role("link", name="Replay the 3 failed events shown").click()
            expect(page.locator("#replay-count")).to_contain_text("3 failed events match this filter.")
            shot(page, "14-confirm-bulk-replay.png")
            page.get_by_role("button", name="Replay them").click()
            expect(page.locator(".flash.ok")).to_have_text("3 replayed.")
            wait_for(lambda: all(status_of(runtime, i) == "delivered" for i in refused))

            page.goto(f"{base}/admin/events/{waiting}")
            expect(page.locator("#event-status")).to_have_text("retrying")
            shot(page, "15-event-retrying-retry-now.png")
            page.get_by_role("button", name="Retry now").click()
            expect(page.locator(".flash.ok")).to_contain_text("Retry")
            wait_for(lambda: status_of(runtime, waiting) == "delivered")
            page.reload()
            expect(page.locator("#event-status")).to_have_text("delivered")
            page.goto(f"{base}/admin/events")
            expect(page.locator("table.events .badge.status-delivered")).to_have_count(4)
            no_secret(page)
            shot(page, "16-events-all-delivered.png")
            if os.environ.get("BRIDGE_UPDATE_SCREENSHOTS") == "1":
                page.screenshot(path=str(LIST_IMAGE), full_page=True)
            page.close()
    finally:
        running.stop()
        thread.join(15)
