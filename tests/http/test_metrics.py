"""GET /metrics: Prometheus text with the admin bearer token."""

from __future__ import annotations

from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from bridge.runtime import Runtime
from tests.conftest import admin_headers, api_headers, deliver_all, make_due


def scrape(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = app.test_client().get("/metrics", headers=admin_headers())
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_the_admin_token(app: Flask, make_app) -> None:
    assert app.test_client().get("/metrics").status_code == 401
    assert app.test_client().get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 401
    assert make_app(BRIDGE_ADMIN_TOKEN="").test_client().get("/metrics").status_code == 404


def test_metrics_count_what_happened(app: Flask, runtime: Runtime, sandbox) -> None:
    before = scrape(app)
    client = app.test_client()
    body = {"email": "alice@example.com", "subject": "Metrics", "message": "count me"}
    client.post("/hooks/api", json=body, headers=api_headers())
    client.post("/hooks/api", json=body, headers=api_headers())
    client.post("/hooks/api", json=body)  # no secret
    queued = scrape(app)
    assert value(queued, "bridge_queue_depth") == 1
    assert value(queued, "bridge_events", status="queued") == 1
    assert value(queued, "bridge_oldest_queued_seconds") >= 0
    sandbox.sandbox.script(503)
    deliver_all(runtime)
    make_due(runtime, runtime.store.queries.list_events(None, None, 1, None)[0][0]["id"])
    deliver_all(runtime)
    after = scrape(app)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("bridge_events_accepted_total", source="api", status="queued") == 1
    assert delta("bridge_events_duplicate_total", source="api") == 1
    assert delta("bridge_requests_rejected_total", status="401", reason="unauthorized") == 1
    assert delta("bridge_accept_seconds_count") == 3
    assert delta("bridge_delivery_attempts_total", outcome="retrying") == 1
    assert delta("bridge_delivery_attempts_total", outcome="delivered") == 2  # the ticket, then the message
    assert delta("bridge_events_finished_total", status="delivered") == 1
    assert delta("bridge_delivery_seconds_count") == 3
    assert value(after, "bridge_queue_depth") == 0
    assert value(after, "bridge_events", status="delivered") == 1
