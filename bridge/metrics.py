"""Prometheus counters and histograms, incremented where things happen.

Under gunicorn every web process counts on its own; with ``PROMETHEUS_MULTIPROC_DIR`` set
(gunicorn.conf.py sets it) /metrics adds them up across processes. The queue figures are read
from the database at scrape time (``bridge/http/health.py``), so they are right whichever
process delivers.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

ACCEPTED = Counter("bridge_events_accepted", "Events stored, by source and first status", ["source", "status"])
DUPLICATES = Counter("bridge_events_duplicate", "Requests answered as duplicates of an earlier event", ["source"])
REJECTED = Counter("bridge_requests_rejected", "Inbound requests refused, by answer", ["status", "reason"])
ACCEPT_SECONDS = Histogram("bridge_accept_seconds", "Time to answer POST /hooks/<source>", buckets=LATENCY_BUCKETS)
ATTEMPTS = Counter("bridge_delivery_attempts", "Requests sent to SPP, by outcome", ["outcome"])
FINISHED = Counter("bridge_events_finished", "Events that ended delivered or failed after an attempt", ["status"])
DELIVERY_SECONDS = Histogram("bridge_delivery_seconds", "Duration of one request to SPP", buckets=LATENCY_BUCKETS)
ALERTS_SENT = Counter(
    "bridge_alerts_sent",
    "Notifications to alert targets, by alert kind and result (ok, failed)",
    ["kind", "result"],
)

ALL = (ACCEPTED, DUPLICATES, REJECTED, ACCEPT_SECONDS, ATTEMPTS, FINISHED, DELIVERY_SECONDS, ALERTS_SENT)
