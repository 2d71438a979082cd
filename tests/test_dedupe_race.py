"""Identical requests racing through a real HTTP server: one event, one ticket."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests
from flask import Flask

from bridge.runtime import get_runtime
from tests.conftest import api_headers, deliver_all
from tests.helpers import serve_app

BODY = {"email": "race@example.com", "subject": "Same request ten times", "message": "Only one ticket, please"}


def test_ten_identical_requests_make_one_event_and_one_ticket(app: Flask, sandbox) -> None:
    start = threading.Barrier(10)

    def post(_: int) -> requests.Response:
        start.wait()  # all ten leave together
        return requests.post(f"{url}/hooks/api", json=BODY, headers=api_headers(), timeout=10)

    with serve_app(app) as url, ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(post, range(10)))
    assert [a.status_code for a in answers] == [200] * 10
    ids = {a.json()["event_id"] for a in answers}
    assert len(ids) == 1
    assert sum(1 for a in answers if a.json().get("duplicate")) == 9
    runtime = get_runtime(app)
    assert runtime.store.queries.count_by_status() == {"queued": 1}
    deliver_all(runtime)
    assert len(sandbox.sandbox.tickets) == 1
    assert sandbox.sandbox.tickets[0]["request"]["metadata"]["bridge_event_id"] == ids.pop()
