"""The HTTP layer: inbound hooks, the admin API, health, OpenAPI, and the error mapping."""

from __future__ import annotations

import logging
import random
import re
import time

from flask import Flask, Response, g, request

from bridge.http import (
    admin_actions,  # noqa: F401  (its routes join admin_page before it is registered)
    admin_sources,  # noqa: F401  (adds the sources page's routes to admin_page)
)
from bridge.http.admin_api import admin_api
from bridge.http.admin_page import AdminSessions, admin_page
from bridge.http.body import refuse_unread_body
from bridge.http.errors import register_error_handlers
from bridge.http.health import health
from bridge.http.hooks import hooks
from bridge.metrics import ACCEPT_SECONDS, REJECTED

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,100}$")
log = logging.getLogger("bridge.http")


def register_http(app: Flask) -> None:
    app.register_blueprint(hooks)
    app.register_blueprint(admin_api)
    app.register_blueprint(admin_page)
    app.session_interface = AdminSessions()
    app.register_blueprint(health)
    register_error_handlers(app)
    app.before_request(_start)
    app.before_request(refuse_unread_body)
    app.after_request(_finish)


def new_request_id() -> str:
    """128 random bits, as hex; not a secret (see bridge.intake.new_event_id for why not ``uuid4``)."""
    return f"{random.getrandbits(128):032x}"


def _start() -> None:
    g.started = time.perf_counter()
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if _SAFE_REQUEST_ID.match(given) else new_request_id()


def _finish(response: Response) -> Response:
    """Echo the request id; one log line per request (the web process's access log); for inbound
    hooks, the accept metrics."""
    response.headers["X-Request-ID"] = g.get("request_id") or new_request_id()
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    if request.path.startswith("/hooks/"):
        ACCEPT_SECONDS.observe(seconds)
        if response.status_code >= 400:
            REJECTED.labels(str(response.status_code), g.get("error_code", "-")).inc()
    log.info(
        "%s %s %d %s",
        request.method,
        request.path,
        response.status_code,
        g.get("outcome") or g.get("error_code", ""),
        extra={
            "event_id": g.get("event_id", "-"),
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 1),
        },
    )
    return response
