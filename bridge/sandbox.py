"""An in-memory simulator of the SPP "Create a ticket" API (``POST /api/tickets``).

``make run``, the tests and the benchmarks talk to it instead of a real SPP workspace.
It checks every request against the SPP page (``spp-api/create-ticket.md``) with its
own rules and deliberately imports nothing from the rest of :mod:`bridge`: it exists
to catch bugs in our StoreTicketRequest schema, so it must not share that schema.

It can also misbehave on purpose: fixed latency, random 503s (``fail_rate``) and a
script of answers (statuses with ``Retry-After``, a slow answer after the ticket was
created, a dropped connection, a 201 without an id).
"""

from __future__ import annotations

import contextlib
import errno
import json
import random
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

Errors = dict[str, list[str]]
RECORDED_HEADERS = ("X-Api-Version", "User-Agent", "Content-Type", "Accept")
FAULT_MESSAGE = "Service Unavailable (sandbox fault injection)"
DESCRIPTION = """SPP API sandbox: simulates POST /api/tickets of Service Provider Pro
(X-Api-Version {version}, latency {latency} ms, fail rate {fail_rate}).

POST /api/tickets       create a ticket (Authorization: Bearer <token>)
GET  /_sandbox/tickets  tickets created and requests seen
POST /_sandbox/reset    forget tickets, counters and script
POST /_sandbox/script   {{"steps": [503, "429:7", "hang:2", "reset", "noid"]}}
"""


@dataclass(frozen=True)
class Step:
    """A scripted answer; kind is status (201 = handle normally), hang, reset or noid."""

    kind: str
    status: int = 201
    retry_after: int | None = None
    seconds: float = 0.0


FAULT = Step(kind="fault", status=503)


def clock_ticket_id() -> int:
    """The current time in milliseconds: a first ticket id that a restarted sandbox does not repeat.

    The bridge keeps the ticket ids it was given across sandbox restarts, so ids starting at 1
    every time would point two events at "the same" ticket. Ids only catch up with the clock
    if a run creates more than one ticket per millisecond on average.
    """
    return time.time_ns() // 1_000_000


def parse_step(raw: int | str) -> Step:
    """Turn ``503``, ``"429:7"``, ``"hang:2"``, ``"reset"`` or ``"noid"`` into a Step."""
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise TypeError(f"script step {raw!r}: expected an HTTP status or a string")
    text = str(raw).strip()
    if text in ("reset", "noid"):
        return Step(kind=text)
    head, _, arg = text.partition(":")
    try:
        if head == "hang":
            step = Step(kind="hang", seconds=float(arg))
        else:
            step = Step(kind="status", status=int(head), retry_after=int(arg) if arg else None)
    except ValueError:
        raise ValueError(f"script step {raw!r}: not a number where one is expected") from None
    if step.status != 201 and not 400 <= step.status <= 599:
        raise ValueError(f"script step {raw!r}: status must be 201 or 400-599")
    if step.retry_after is not None and step.status not in (429, 503):
        raise ValueError(f"script step {raw!r}: Retry-After only goes with 429 or 503")
    if step.seconds < 0 or (step.retry_after or 0) < 0:
        raise ValueError(f"script step {raw!r}: must not be negative")
    return step


class Sandbox:
    """In-memory SPP simulator state, thread-safe (one threading.Lock)."""

    def __init__(
        self,
        token: str = "sandbox-token",
        api_version: str = "2024-03-05",
        latency_ms: int = 0,
        fail_rate: float = 0.0,
        seed: int | None = None,
        first_id: int | Callable[[], int] = 1,
    ) -> None:
        """``first_id``: the id of the first ticket, and of the first after each reset; a function
        (such as :func:`clock_ticket_id`) is asked again at every reset."""
        if latency_ms < 0 or not 0.0 <= fail_rate <= 1.0:
            raise ValueError("latency_ms must be >= 0 and fail_rate between 0 and 1")
        self.token, self.api_version = token, api_version
        self.latency_ms, self.fail_rate = latency_ms, fail_rate
        self.tickets: list[dict[str, Any]] = []
        self.requests_seen = 0
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._steps: deque[Step] = deque()
        self._app: Flask | None = None
        self._first_id = first_id
        self._next_id = self._start_id()

    def _start_id(self) -> int:
        return self._first_id() if callable(self._first_id) else self._first_id

    def script(self, *steps: int | str) -> None:
        """Queue answers, one per ``POST /api/tickets``; all are checked before any is queued."""
        parsed = [parse_step(step) for step in steps]
        with self._lock:
            self._steps.extend(parsed)

    def reset(self) -> None:
        """Forget tickets, counters and script; token, latency and fail_rate stay."""
        with self._lock:
            self.tickets.clear()
            self.requests_seen = 0
            self._steps.clear()
            self._next_id = self._start_id()

    def app(self) -> Flask:
        """The WSGI app serving this sandbox (created once)."""
        with self._lock:
            if self._app is None:
                self._app = create_sandbox_app(self)
            return self._app

    def snapshot(self) -> dict[str, Any]:
        """A copy of the state, as ``GET /_sandbox/tickets`` shows it."""
        with self._lock:
            tickets = [dict(ticket) for ticket in self.tickets]
            return {"tickets": tickets, "requests_seen": self.requests_seen}

    def take_turn(self) -> Step | None:
        """Count a request; return its scripted step, FAULT (by fail_rate) or None."""
        with self._lock:
            self.requests_seen += 1
            if self._steps:
                return self._steps.popleft()  # scripted requests are never faulted at random
            return FAULT if self._random.random() < self.fail_rate else None

    def store(self, body: dict[str, Any], headers: dict[str, str | None]) -> dict[str, Any]:
        """Keep the request as received under the next id (first_id, first_id + 1, ...)."""
        with self._lock:
            now = datetime.now(UTC).replace(microsecond=0).isoformat()
            ticket_id, self._next_id = self._next_id, self._next_id + 1
            record = {
                "id": ticket_id,
                "api_identifier": str(uuid.uuid4()),
                "created_at": now,
                "request": body,
                "headers": headers,
            }
            self.tickets.append(record)
            return record


# --- StoreTicketRequest rules, read from the SPP page (not from bridge.tickets) ---

# field -> (item type, container): None = a single value, list = array, dict = object
RULES: dict[str, tuple[str, type | None]] = {
    "user_id": ("integer", None),
    "subject": ("string", None),
    "status": ("integer", None),
    "employees": ("integer", list),
    "tags": ("string", list),
    "order": ("string", None),
    "note": ("string", None),
    "metadata": ("string", dict),
}
REQUIRED = ("user_id", "subject")
CONTAINER_NAMES: dict[type, str] = {list: "an array", dict: "an object of string values"}


def _is(kind: str, value: object) -> bool:
    if kind == "integer":
        return type(value) is int  # JSON true/false are bools and 1.0 is a float: not ints
    # Laravel's TrimStrings + ConvertEmptyStringsToNull middleware (on by default) turn
    # "" and "   " into null before validation, so SPP does not see them as strings.
    return isinstance(value, str) and value.strip() != ""


def _check(errors: Errors, key: str, value: Any) -> None:
    kind, container = RULES[key]
    if container is not None and not isinstance(value, container):
        errors[key] = [f"The {key} field must be {CONTAINER_NAMES[container]}."]
        return
    if container is None:
        items = {key: value}
    elif isinstance(value, dict):
        items = {f"{key}.{name}": item for name, item in value.items()}
    else:
        items = {f"{key}.{index}": item for index, item in enumerate(value)}
    for name, item in items.items():
        if not _is(kind, item):
            article = "an" if kind == "integer" else "a"
            errors[name] = [f"The {name.replace('_', ' ')} field must be {article} {kind}."]


def validate_ticket_request(body: dict[str, Any]) -> Errors:
    """Laravel-style errors (``{"employees.0": ["..."]}``); empty when the body is valid."""
    errors: Errors = {}
    for key in REQUIRED:
        value = body.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            errors[key] = [f"The {key.replace('_', ' ')} field is required."]
    for key, value in body.items():
        if key not in RULES:
            errors[key] = [f"unknown field: {key!r} is not part of StoreTicketRequest."]
        elif key not in errors:
            _check(errors, key, value)
    return errors


# --- HTTP ---


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


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # tests and benchmarks do not want a log line per request


class SandboxServer:
    """Runs a Sandbox on a real loopback port in a background thread.

    Uses ``werkzeug.serving.make_server(threaded=True)``; also a context manager.
    """

    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox, self.host, self.port = sandbox, host, port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL with the real bound port, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError("SandboxServer is not started")
        return f"http://{self.host}:{self._server.port}"

    def start(self) -> Self:
        app = self.sandbox.app()
        self._server = make_server(self.host, self.port, app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="spp-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()  # serve_forever then closes the listening socket
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class PortUnavailable(Exception):
    """The sandbox cannot listen on the address it was given (most often: something already does)."""


def ensure_port_free(host: str, port: int) -> None:
    """Raise :class:`PortUnavailable` when ``host:port`` cannot be bound.

    The probe sets SO_REUSEADDR (a port left in TIME_WAIT by a previous run is free) but not
    SO_REUSEPORT, so it fails while anything listens there, even a gunicorn with reuse_port.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            reason = "is already in use (another sandbox, or another `make run`?)"
        else:
            reason = f"cannot be listened on ({exc.strerror or exc})"
        raise PortUnavailable(f"{host}:{port} {reason}") from None


def serve(host: str, port: int, token: str, latency_ms: int, fail_rate: float, quiet: bool = False) -> None:
    """Serve a sandbox until Ctrl-C (``flask --app wsgi bridge sandbox``).

    Under gunicorn (one process, since the tickets live in memory, and many threads, since
    a slow sandbox holds one per request), which keeps connections alive as SPP's servers
    do; werkzeug's server closes every connection, so each delivery would pay for a new one.
    The tests' in-process :class:`SandboxServer` stays on werkzeug.

    Raises :class:`PortUnavailable` rather than share the port: with two sandboxes on one port
    (SO_REUSEPORT), the kernel would spread deliveries over two sets of tickets. Ticket ids
    start from the clock, so they do not repeat those of an earlier run.
    """
    from gunicorn.app.base import BaseApplication

    ensure_port_free(host, port)
    sandbox = Sandbox(token=token, latency_ms=latency_ms, fail_rate=fail_rate, first_id=clock_ticket_id)
    settings = {
        "bind": f"{host}:{port}",
        "reuse_port": False,
        "workers": 1,
        "worker_class": "gthread",
        "threads": 64,
        "keepalive": 75,
        "accesslog": None if quiet else "-",
        "control_socket_disable": True,
    }

    class SandboxApplication(BaseApplication):
        def load_config(self) -> None:
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            return sandbox.app()

    print(f"SPP sandbox on http://{host}:{port} (token: {token})", flush=True)
    SandboxApplication().run()
