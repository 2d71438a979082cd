"""The sandbox's HTTP routes: a Flask app of its own, nothing shared with the bridge app."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from bridge.sandbox.faults import FAULT
from bridge.sandbox.state import Sandbox
from bridge.sandbox.validation import validate_ticket_request

RECORDED_HEADERS = ("X-Api-Version", "User-Agent", "Content-Type", "Accept")
FAULT_MESSAGE = "Service Unavailable (sandbox fault injection)"
DESCRIPTION = """SPP API sandbox: simulates POST /api/tickets of Service Provider Pro
(X-Api-Version {version}, latency {latency} ms, fail rate {fail_rate}).

POST /api/tickets       create a ticket (Authorization: Bearer <token>)
GET  /_sandbox/tickets  tickets created and requests seen
POST /_sandbox/reset    forget tickets, counters and script
POST /_sandbox/script   {{"steps": [503, "429:7", "hang:2", "reset", "noid"]}}
"""


def _error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"message": message, **extra}), status


def _ticket_resource(record: dict[str, Any]) -> dict[str, Any]:
    body, stamp = record["request"], record["created_at"]
    employees = [{"id": e, "name_f": "", "name_l": "", "group_id": 1, "role_id": 1} for e in body.get("employees", [])]
    return {
        "id": record["id"],
        "created_at": stamp,
        "updated_at": stamp,
        "last_message_at": stamp,
        "date_closed": None,
        "subject": body["subject"],
        "user_id": body["user_id"],
        "form_data": {},
        "tags": body.get("tags", []),
        "note": body.get("note", ""),
        "employees": employees,
        "status": "Open",
        "source": "API",
        "order_id": None,
        "messages": [],
        "order": None,
        "ticket": None,
        "client": {"id": body["user_id"]},
        "metadata": body.get("metadata", {}),
    }


def _read_json_object() -> dict[str, Any] | tuple[Response, int]:
    if not request.is_json:
        return _error(400, "The body must be JSON (Content-Type: application/json).")
    try:
        body = json.loads(request.get_data())
    except ValueError as exc:
        return _error(400, f"The body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return _error(400, "The body must be a JSON object.")
    return body


def _create_normally(sandbox: Sandbox) -> Any:
    if request.headers.get("Authorization") != f"Bearer {sandbox.token}":
        return _error(401, "Unauthenticated.")
    body = _read_json_object()
    if not isinstance(body, dict):
        return body
    errors = validate_ticket_request(body)
    if errors:
        return _error(422, "The given data was invalid.", errors=errors)
    record = sandbox.store(body, {name: request.headers.get(name) for name in RECORDED_HEADERS})
    response = jsonify(_ticket_resource(record))
    response.headers["X-Api-Identifier"] = record["api_identifier"]
    response.headers["X-Api-Version"] = sandbox.api_version
    return response, 201


def _drop_connection() -> Response:
    """Reset the TCP connection without an answer: the client sees a connection error.

    Both servers the sandbox runs on hand the app the client's socket (werkzeug's as
    ``werkzeug.socket``, gunicorn's as ``gunicorn.socket``). SO_LINGER 0 turns the close that
    follows into a RST; the shutdown makes the server's write of the answer below fail, which
    both treat as a client gone away. 444 is nginx's code for "closed without response", seen
    only on a server that gives no socket.
    """
    request.get_data()  # read the body first, as a server that crashed mid-request would
    sock = request.environ.get("werkzeug.socket") or request.environ.get("gunicorn.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)
    return Response(status=444)


def _create_ticket(sandbox: Sandbox) -> Any:
    time.sleep(sandbox.latency_ms / 1000)
    step = sandbox.take_turn()
    if step is None or (step.kind == "status" and step.status == 201):
        return _create_normally(sandbox)
    if step.kind == "reset":
        return _drop_connection()
    if step.kind == "noid":
        return jsonify({"ok": True}), 201
    if step.kind == "hang":  # slow SPP: the ticket exists after the client gave up
        time.sleep(step.seconds)
        return _create_normally(sandbox)
    if step is FAULT:
        return _error(503, FAULT_MESSAGE)
    reason = HTTP_STATUS_CODES.get(step.status, "Error")
    response, status = _error(step.status, f"{reason} (sandbox script)")
    if step.retry_after is not None:
        response.headers["Retry-After"] = str(step.retry_after)
    return response, status


def _queue_script(sandbox: Sandbox) -> Any:
    payload = request.get_json(silent=True)
    steps = payload.get("steps") if isinstance(payload, dict) else None
    if not isinstance(steps, list):
        return _error(400, 'Send {"steps": [503, "429:7", "hang:2", "reset", "noid"]}.')
    try:
        sandbox.script(*steps)
    except (TypeError, ValueError) as exc:
        return _error(400, str(exc))
    return jsonify({"queued": len(steps)})


def _describe(sandbox: Sandbox) -> Response:
    text = DESCRIPTION.format(version=sandbox.api_version, latency=sandbox.latency_ms, fail_rate=sandbox.fail_rate)
    return Response(text, mimetype="text/plain")


def _reset(sandbox: Sandbox) -> Response:
    sandbox.reset()
    return jsonify({"reset": True})


def create_sandbox_app(sandbox: Sandbox) -> Flask:
    """A Flask app of its own (nothing shared with the bridge app) serving ``sandbox``."""
    app = Flask(__name__)
    routes = {
        ("/", "GET"): lambda: _describe(sandbox),
        ("/api/tickets", "POST"): lambda: _create_ticket(sandbox),
        ("/_sandbox/tickets", "GET"): lambda: jsonify(sandbox.snapshot()),
        ("/_sandbox/script", "POST"): lambda: _queue_script(sandbox),
        ("/_sandbox/reset", "POST"): lambda: _reset(sandbox),
    }
    for (path, method), view in routes.items():
        app.add_url_rule(path, f"{method} {path}", view, methods=[method])
    app.register_error_handler(HTTPException, lambda exc: _error(exc.code or 500, exc.name))
    return app
