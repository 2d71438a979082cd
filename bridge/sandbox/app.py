"""The sandbox's Flask app: SPP's routes behind the fault scripts, and the ``/_sandbox`` controls."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from bridge.sandbox import api
from bridge.sandbox.faults import ENDPOINTS, FAULT
from bridge.sandbox.resources import user
from bridge.sandbox.state import EmailTaken, Sandbox

FAULT_MESSAGE = "Service Unavailable (sandbox fault injection)"
DESCRIPTION = """SPP API sandbox: simulates Service Provider Pro's API
(X-Api-Version {version}, latency {latency} ms, fail rate {fail_rate}).

Authorization: Bearer <token> on every /api request.
POST /api/tickets                    create a ticket
GET  /api/tickets/{{ticket}}           a ticket with its messages (id or 8-character number)
POST /api/ticket_messages/{{ticket}}   post a message: JSON, or multipart with attachments[] files
GET  /api/ticket_messages/{{ticket}}   its messages, newest first (limit, page)
GET  /api/clients                    clients, newest first (filters[email][$eq], limit, page)
POST /api/clients                    create a client (422 when the email is taken)

GET  /_sandbox/tickets   tickets created and ticket requests seen
GET  /_sandbox/state     tickets with messages and files, clients, requests seen per endpoint
GET  /_sandbox/files/<id>/<name>   a stored attachment's bytes
POST /_sandbox/clients   {{"email": ..., "name_f": ...}} or {{"clients": [...]}}: add known clients
POST /_sandbox/settings  {{"ignore_client_filter": true}}: GET /api/clients answers every client
POST /_sandbox/reset     forget everything sent, counters and scripts
POST /_sandbox/script    {{"endpoint": "tickets", "steps": [503, "429:7", "hang:2", "reset", "noid"]}}
                         endpoints: {endpoints}
"""


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


def _scripted(sandbox: Sandbox, endpoint: str, handle: Callable[..., Any]) -> Callable[..., Any]:
    """``handle`` behind the latency, the fault script of ``endpoint`` and the fail rate."""

    def view(**path: str) -> Any:
        time.sleep(sandbox.latency_ms / 1000)
        step = sandbox.take_turn(endpoint)
        if step is None or step.normal:
            return handle(sandbox, **path)
        if step.kind == "reset":
            return _drop_connection()
        if step.kind == "noid":  # a yes without the id (or the list) the client needs
            return jsonify({"ok": True}), 200 if request.method == "GET" else 201
        if step.kind == "hang":  # slow SPP: the request takes effect after the client gave up
            time.sleep(step.seconds)
            return handle(sandbox, **path)
        if step.kind == "drop":  # SPP stalls, then drops the connection having done nothing
            time.sleep(step.seconds)
            return _drop_connection()
        if step is FAULT:
            return api.error(503, FAULT_MESSAGE)
        reason = HTTP_STATUS_CODES.get(step.status, "Error")
        response, status = api.error(step.status, f"{reason} (sandbox script)")
        if step.retry_after is not None:
            response.headers["Retry-After"] = str(step.retry_after)
        return response, status

    return view


def _delayed(sandbox: Sandbox, handle: Callable[..., Any]) -> Callable[..., Any]:
    def view(**path: str) -> Any:
        time.sleep(sandbox.latency_ms / 1000)
        return handle(sandbox, **path)

    return view


def _queue_script(sandbox: Sandbox) -> Any:
    payload = request.get_json(silent=True)
    steps = payload.get("steps") if isinstance(payload, dict) else None
    endpoint = payload.get("endpoint", "tickets") if isinstance(payload, dict) else None
    if not isinstance(steps, list) or not isinstance(endpoint, str):
        return api.error(
            400, 'Send {"endpoint": "tickets", "steps": [503, "429:7", "hang:2", "drop:2", "reset", "noid"]}.'
        )
    try:
        sandbox.script(*steps, endpoint=endpoint)
    except (TypeError, ValueError) as exc:
        return api.error(400, str(exc))
    return jsonify({"endpoint": endpoint, "queued": len(steps)})


def _seed_clients(sandbox: Sandbox) -> Any:
    payload = request.get_json(silent=True)
    if isinstance(payload, dict) and "clients" in payload:
        payload = payload["clients"]
    raw = payload if isinstance(payload, list) else [payload]
    clients = [client for client in raw if isinstance(client, dict)]
    if len(clients) != len(raw):
        return api.error(400, 'Send a client {"email": ..., "name_f": ...} or {"clients": [...]}.')
    added = []
    for client in clients:
        try:
            added.append(user(sandbox.seed_client(**client)))
        except (ValueError, EmailTaken) as exc:
            return api.error(400, f"client {client!r} not added: {type(exc).__name__}: {exc}", added=added)
    return jsonify({"clients": added})


def _settings(sandbox: Sandbox) -> Any:
    payload = request.get_json(silent=True)
    keys = set(payload) if isinstance(payload, dict) else set()
    value = payload.get("ignore_client_filter") if isinstance(payload, dict) else None
    if not isinstance(value, bool) or keys != {"ignore_client_filter"}:
        return api.error(400, 'Send {"ignore_client_filter": true} or false.')
    sandbox.ignore_client_filter = value
    return jsonify({"ignore_client_filter": value})


def _file(sandbox: Sandbox, file_id: int, name: str) -> Any:
    stored = sandbox.file(file_id)
    if stored is None or stored.name != name:
        return api.error(404, "Not Found")
    return Response(stored.content, mimetype=stored.content_type)


def _describe(sandbox: Sandbox) -> Response:
    text = DESCRIPTION.format(
        version=sandbox.api_version,
        latency=sandbox.latency_ms,
        fail_rate=sandbox.fail_rate,
        endpoints=", ".join(ENDPOINTS),
    )
    return Response(text, mimetype="text/plain")


def _reset(sandbox: Sandbox) -> Response:
    sandbox.reset()
    return jsonify({"reset": True})


def create_sandbox_app(sandbox: Sandbox) -> Flask:
    """A Flask app of its own (nothing shared with the bridge app) serving ``sandbox``."""
    app = Flask(__name__)
    app.config["MAX_FORM_MEMORY_SIZE"] = 16 * 1024 * 1024  # a long message text is not a reason for a 413
    routes: dict[tuple[str, str], Callable[..., Any]] = {
        ("/", "GET"): lambda: _describe(sandbox),
        ("/api/tickets", "POST"): _scripted(sandbox, "tickets", api.create_ticket),
        ("/api/tickets/<ticket>", "GET"): _delayed(sandbox, api.show_ticket),
        ("/api/ticket_messages/<ticket>", "POST"): _scripted(sandbox, "messages", api.create_message),
        ("/api/ticket_messages/<ticket>", "GET"): _delayed(sandbox, api.list_messages),
        ("/api/clients", "GET"): _scripted(sandbox, "clients", api.list_clients),
        ("/api/clients", "POST"): _scripted(sandbox, "create_client", api.create_client),
        ("/_sandbox/tickets", "GET"): lambda: jsonify(sandbox.snapshot()),
        ("/_sandbox/state", "GET"): lambda: jsonify(sandbox.state(request.host_url.rstrip("/"))),
        ("/_sandbox/files/<int:file_id>/<path:name>", "GET"): lambda file_id, name: _file(sandbox, file_id, name),
        ("/_sandbox/clients", "POST"): lambda: _seed_clients(sandbox),
        ("/_sandbox/settings", "POST"): lambda: _settings(sandbox),
        ("/_sandbox/script", "POST"): lambda: _queue_script(sandbox),
        ("/_sandbox/reset", "POST"): lambda: _reset(sandbox),
    }
    for (path, method), view in routes.items():
        app.add_url_rule(path, f"{method} {path}", view, methods=[method])
    app.register_error_handler(api.Refused, lambda exc: exc.answer)
    app.register_error_handler(HTTPException, lambda exc: api.error(exc.code or 500, exc.name))
    return app
