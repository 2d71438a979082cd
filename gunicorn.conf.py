"""gunicorn settings for the ``web`` process (Procfile). WEB_CONCURRENCY and PORT come from the platform."""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

# Each gunicorn worker counts metrics in files here; /metrics adds them up (prometheus-client
# multiprocess mode). Set before any worker imports prometheus_client.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bridge-metrics-"))

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# gthread, except that a request is read whole by the worker's main loop before a thread takes it:
# slow clients cost a socket each, never one of the threads (bridge/server.py, docs/deploy.md)
worker_class = "bridge.server.BufferingThreadWorker"
# Each worker listens on a socket of its own and the kernel spreads new connections over them.
# On one shared socket, whichever worker woke first took a whole burst of keep-alive connections
# and kept it: one process served everything while the other idled (about half the bench runs).
reuse_port = True
timeout = 30
graceful_timeout = 10
keepalive = 5
# no access log of gunicorn's own: the app writes one line per request (bridge/http/__init__.py),
# in LOG_FORMAT, with the request and event ids
accesslog = None
control_socket_disable = True  # one shared path per machine would clash between instances


def on_starting(server: Any) -> None:
    """Check the configuration once in the master, so a bad one stops gunicorn with one line
    instead of workers failing to boot over and over; then name each source without a secret,
    once per start rather than once per worker."""
    from bridge.errors import ConfigError
    from bridge.log import configure_logging
    from bridge.providers import PROVIDERS
    from bridge.sources import load_sources, warn_open_sources
    from config.settings import load_settings

    try:
        settings = load_settings()
        settings.require_spp()
        sources = load_sources(settings.sources_file, PROVIDERS, max_body_bytes=settings.max_body_bytes)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    secrets = [settings.spp_api_token, settings.admin_token, *sources.secrets()]
    configure_logging([s for s in secrets if s], fmt=settings.log_format)
    warn_open_sources(sources)


def post_worker_init(worker: Any) -> None:
    """BRIDGE_EMBEDDED_WORKER=true: each web process also delivers (one-dyno deployments)."""
    from bridge.embedded import start_embedded_worker
    from bridge.runtime import get_runtime

    if get_runtime(worker.wsgi).settings.embedded_worker:
        start_embedded_worker(worker.wsgi)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server: Any, worker: Any) -> None:
    from bridge.embedded import stop_embedded_worker

    stop_embedded_worker()
