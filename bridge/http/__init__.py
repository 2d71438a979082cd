"""The HTTP layer: inbound hooks, the admin API, health, OpenAPI, and the error mapping."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

from bridge.http.admin_api import admin_api
from bridge.http.errors import register_error_handlers
from bridge.http.health import health
from bridge.http.hooks import hooks

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,100}$")


def register_http(app: Flask) -> None:
    app.register_blueprint(hooks)
    app.register_blueprint(admin_api)
    app.register_blueprint(health)
    register_error_handlers(app)
    app.before_request(_assign_request_id)
    app.after_request(_echo_request_id)


def _assign_request_id() -> None:
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if _SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex


def _echo_request_id(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
    return response
