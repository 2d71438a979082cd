"""Operations endpoints: the front door ``/``, liveness, readiness and the OpenAPI description (open),
metrics (admin token)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify, redirect, url_for
from flask.typing import ResponseReturnValue
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from bridge import metrics as counters
from bridge.http.admin_api import check_admin_token
from bridge.http.openapi import openapi_spec
from bridge.runtime import get_runtime
from bridge.status import PENDING
from bridge.store import EventQueries

health = Blueprint("health", __name__)


NO_ADMIN_PAGE = """spp-ticket-bridge is running.

Webhooks: POST /hooks/<source> (the sources file lists them; `flask --app wsgi bridge check` prints
their URLs). Health: /healthz. API description: /openapi.json.
The admin page (/admin) is off: set BRIDGE_ADMIN_TOKEN to turn it on, then open /admin and sign in
with that token.
"""


@health.get("/")
def home() -> ResponseReturnValue:
    """Whoever opens the bridge's URL in a browser: the admin page, or how to turn it on."""
    if get_runtime().settings.admin_token:
        return redirect(url_for("admin_page.events_list"), 302)
    return Response(NO_ADMIN_PAGE, mimetype="text/plain")


@health.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@health.get("/readyz")
def readyz() -> Response:
    get_runtime().store.ping()  # StoreUnavailable -> 503
    return jsonify({"status": "ready"})


@health.get("/metrics")
def metrics() -> Response:
    """Prometheus text format; the admin bearer token, as scrapers can send one."""
    runtime = get_runtime()
    check_admin_token(runtime.settings.admin_token)
    body = render_metrics(runtime.store.queries)
    return Response(body, mimetype="text/plain", headers={"Content-Type": CONTENT_TYPE_LATEST})


@health.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_spec())


class QueueCollector(Collector):
    """Events per status, queue depth, the age of the oldest waiting event and whether delivery
    is paused, from the database."""

    def __init__(self, queries: EventQueries) -> None:
        self.queries = queries

    def collect(self) -> Iterator[Metric]:
        counts = self.queries.count_by_status()
        by_status = GaugeMetricFamily("bridge_events", "Events in the database, by status", labels=["status"])
        for status, count in sorted(counts.items()):
            by_status.add_metric([status], count)
        yield by_status
        depth = sum(counts.get(s, 0) for s in PENDING)
        yield GaugeMetricFamily("bridge_queue_depth", "Events waiting for or in delivery", value=depth)
        oldest = self.queries.oldest_pending()
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily("bridge_oldest_queued_seconds", "Age of the oldest event not yet delivered", value=age)
        pause = self.queries.delivery_pause()
        yield GaugeMetricFamily(
            "bridge_delivery_paused", "1 while delivery is paused for every worker, else 0", value=int(bool(pause))
        )
        paused_for = (datetime.now(UTC) - pause.since).total_seconds() if pause else 0.0
        yield GaugeMetricFamily("bridge_delivery_paused_seconds", "How long delivery has been paused", value=paused_for)
        if pause:
            info = InfoMetricFamily("bridge_delivery_pause", "Why delivery is paused (present only while it is)")
            info.add_metric([], {"reason": pause.reason, "http_status": str(pause.http_status or "")})
            yield info


def render_metrics(queries: EventQueries) -> bytes:
    """This process's counters (every process's under gunicorn) and the queue as the database holds it."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        for metric in counters.ALL:
            registry.register(metric)
    registry.register(QueueCollector(queries))
    return bytes(generate_latest(registry))
