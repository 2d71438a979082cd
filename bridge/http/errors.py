"""Every error becomes ``{"error": code, "message": text}`` here, and nowhere else."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify
from werkzeug.exceptions import HTTPException

from bridge.errors import BridgeError, RejectedPayload, StoreUnavailable, TooManyRequests, Unauthorized

log = logging.getLogger("bridge.http")


def error_response(status: int, code: str, message: str, **extra: object) -> Response:
    g.error_code = code  # for the request's log line and metrics
    response = jsonify({"error": code, "message": message, **extra})
    response.status_code = status
    return response


def _bridge_error(exc: BridgeError) -> Response:
    extra = {"errors": exc.errors} if isinstance(exc, RejectedPayload) and exc.errors else {}
    response = error_response(exc.status, exc.code, exc.message, **extra)
    if isinstance(exc, StoreUnavailable):
        response.headers["Retry-After"] = "5"
        log.warning("answered 503: %s", exc.__cause__.__class__.__name__)
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized) and exc.scheme:
        response.headers["WWW-Authenticate"] = f'{exc.scheme} realm="spp-ticket-bridge"'
    return response


# where our code and message say more than Werkzeug's
HTTP_ERRORS = {
    413: ("payload_too_large", "the body is larger than BRIDGE_MAX_BODY_BYTES, or the source's max_body_bytes, allows")
}


def _http_error(exc: HTTPException) -> Response:
    default = ((exc.name or "error").lower().replace(" ", "_"), exc.description or exc.name or "error")
    code, message = HTTP_ERRORS.get(exc.code or 0, default)
    response = error_response(exc.code or 500, code, message)
    for name, value in exc.get_headers():
        if name.lower() != "content-type":  # e.g. Allow on a 405
            response.headers[name] = value
    return response


def _unexpected(exc: Exception) -> Response:
    log.exception("unexpected error")
    return error_response(500, "internal_error", "the bridge hit an unexpected error; it has been logged")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(BridgeError, _bridge_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
