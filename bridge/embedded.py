"""The embedded worker: delivery from the web process, for one-dyno deployments."""

from __future__ import annotations

import threading

from flask import Flask

from bridge.runtime import get_runtime
from bridge.worker import Worker

_worker: Worker | None = None
_thread: threading.Thread | None = None


def start_embedded_worker(app: Flask) -> Worker:
    """Start delivering in a background thread of this process (once per process)."""
    global _worker, _thread
    if _worker is not None:
        return _worker
    runtime = get_runtime(app)
    _worker = runtime.worker()
    _thread = threading.Thread(target=_worker.run, name="embedded-worker", daemon=True)
    _thread.start()
    runtime.listen_for_events(_worker)  # events accepted by the other web processes too
    return _worker


def stop_embedded_worker() -> None:
    """Called from gunicorn's worker_exit hook: finish or hand back in-flight deliveries."""
    global _worker, _thread
    if _worker is not None and _thread is not None:
        _worker.stop()
        _thread.join(_worker.grace_seconds + 1)
    _worker = _thread = None
