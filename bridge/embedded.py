"""The embedded worker: delivery from the web process, for one-dyno deployments."""

from __future__ import annotations

import threading

from flask import Flask

from bridge.runtime import get_runtime
from bridge.worker import NotifyListener, Worker

_worker: Worker | None = None
_thread: threading.Thread | None = None


def start_embedded_worker(app: Flask) -> Worker:
    """Start delivering in a background thread of this process (once per process)."""
    global _worker, _thread
    if _worker is not None:
        return _worker
    runtime = get_runtime(app)
    s = runtime.settings
    _worker = Worker(
        runtime.store,
        runtime.spp_client(),
        runtime.retry_policy(),
        concurrency=s.delivery_concurrency,
        lease_seconds=s.lease_seconds,
        poll_seconds=s.poll_seconds,
        wake=runtime.wake,
    )
    _thread = threading.Thread(target=_worker.run, name="embedded-worker", daemon=True)
    _thread.start()
    if runtime.store.is_postgres:  # wake on events accepted by other web processes too
        url = runtime.store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        NotifyListener(url, runtime.wake, _worker.stopping).start()
    return _worker


def stop_embedded_worker() -> None:
    """Called from gunicorn's worker_exit hook: finish or hand back in-flight deliveries."""
    global _worker, _thread
    if _worker is not None and _thread is not None:
        _worker.stop()
        _thread.join(_worker.grace_seconds + 1)
    _worker = _thread = None
