"""An in-memory simulator of the SPP "Create a ticket" API (``POST /api/tickets``).

``make run``, the tests and the benchmarks talk to it instead of a real SPP workspace.
It checks every request against SPP's API reference with its own rules and
deliberately imports nothing from the rest of :mod:`bridge`: it exists
to catch bugs in our StoreTicketRequest schema, so it must not share that schema.

It can also misbehave on purpose: fixed latency, random 503s (``fail_rate``) and a
script of answers (statuses with ``Retry-After``, a slow answer after the ticket was
created, a dropped connection, a 201 without an id).
"""

from __future__ import annotations

from bridge.sandbox.app import create_sandbox_app
from bridge.sandbox.faults import ENDPOINTS, Step, parse_step
from bridge.sandbox.server import PortUnavailable, SandboxServer, ensure_port_free, serve
from bridge.sandbox.state import EmailTaken, Sandbox, StoredFile, StoredMessage, clock_ticket_id
from bridge.sandbox.validation import validate_ticket_request

__all__ = [
    "ENDPOINTS",
    "EmailTaken",
    "PortUnavailable",
    "Sandbox",
    "SandboxServer",
    "Step",
    "StoredFile",
    "StoredMessage",
    "clock_ticket_id",
    "create_sandbox_app",
    "ensure_port_free",
    "parse_step",
    "serve",
    "validate_ticket_request",
]
