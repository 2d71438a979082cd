"""Prometheus metrics: counters and histograms where things happen, the queue read at scrape time.

Under gunicorn every web process counts on its own; with ``PROMETHEUS_MULTIPROC_DIR`` set
(gunicorn.conf.py sets it) /metrics adds them up across processes. Queue figures come from
the database when scraped, so they are right whichever process delivers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from bridge.store import Store

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

ACCEPTED = Counter("bridge_events_accepted", "Events stored, by source and first status", ["source", "status"])
DUPLICATES = Counter("bridge_events_duplicate", "Requests answered as duplicates of an earlier event", ["source"])
REJECTED = Counter("bridge_requests_rejected", "Inbound requests refused, by answer", ["status", "reason"])
ACCEPT_SECONDS = Histogram("bridge_accept_seconds", "Time to answer POST /hooks/<source>", buckets=LATENCY_BUCKETS)
ATTEMPTS = Counter("bridge_delivery_attempts", "Requests sent to SPP, by outcome", ["outcome"])
FINISHED = Counter("bridge_events_finished", "Events that ended delivered or failed after an attempt", ["status"])
DELIVERY_SECONDS = Histogram("bridge_delivery_seconds", "Duration of one request to SPP", buckets=LATENCY_BUCKETS)


class QueueCollector(Collector):
    """Events per status, queue depth and the age of the oldest waiting event, from the database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        counts = self.store.count_by_status()
        by_status = GaugeMetricFamily("bridge_events", "Events in the database, by status", labels=["status"])
        for status, count in sorted(counts.items()):
            by_status.add_metric([status], count)
        yield by_status
        depth = sum(counts.get(s, 0) for s in ("queued", "retrying", "delivering"))
        yield GaugeMetricFamily("bridge_queue_depth", "Events waiting for or in delivery", value=depth)
        oldest = self.store.oldest_pending()
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily("bridge_oldest_queued_seconds", "Age of the oldest event not yet delivered", value=age)


def render(store: Store) -> bytes:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        for metric in (ACCEPTED, DUPLICATES, REJECTED, ACCEPT_SECONDS, ATTEMPTS, FINISHED, DELIVERY_SECONDS):
            registry.register(metric)
    registry.register(QueueCollector(store))
    return bytes(generate_latest(registry))
