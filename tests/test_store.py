"""Store queries the admin surfaces use: search by sender or subject, newest event per source."""

from __future__ import annotations

import time

from flask import Flask

from bridge.runtime import Runtime
from tests.conftest import api_headers


def post(app: Flask, source: str, **body: str) -> str:
    headers = api_headers() if source == "api" else {}
    response = app.test_client().post(f"/hooks/{source}", json=body, headers=headers)
    assert response.status_code == 200
    time.sleep(0.002)  # event ids are ordered by millisecond
    return str(response.get_json()["event_id"])


def test_search_matches_sender_name_address_or_subject(app: Flask, runtime: Runtime) -> None:
    a = post(app, "api", email="zoe@bigcustomer.com", name="Zoë Quant", subject="Invoice 100%")
    b = post(app, "api", email="max@example.org", subject="Printer_jam")
    c = post(app, "open", email="\x00evil@example.org", subject="Nothing")

    def found(term: str) -> list[str]:
        return [e["id"] for e in runtime.store.list_events(None, None, 10, None, search=term)[0]]

    assert found("ZOË") == [a]
    assert found("bigcustomer") == [a]
    assert found("100%") == [a] and found("0%") == [a]
    assert found("r_j") == [b] and found("_") == [b]
    assert found("evil") == [c]
    assert found("example.org") == [c, b]
    assert found("nobody") == []


def test_latest_event_per_source(app: Flask, runtime: Runtime) -> None:
    post(app, "api", email="a@example.com", subject="one")
    second = post(app, "api", email="a@example.com", subject="two")
    other = post(app, "open", email="b@example.com", subject="three")
    latest = runtime.store.latest_by_source()
    assert {s: e["id"] for s, e in latest.items()} == {"api": second, "open": other}
    assert latest["api"]["status"] == "queued"
