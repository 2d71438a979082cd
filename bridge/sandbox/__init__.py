"""An in-memory simulator of the parts of SPP's API the bridge uses (docs/spp-api.md).

Tickets (create, read), a ticket's messages (post as JSON or multipart with files, list) and
clients (look up by email, create). ``make run``, the tests and the benchmarks talk to it
instead of a real SPP workspace. It checks every request against SPP's API reference with its
own rules and deliberately imports nothing from the rest of :mod:`bridge`: it exists to catch
bugs in our StoreTicketRequest schema and client, so it must not share them.

It can also misbehave on purpose, per endpoint: fixed latency, random 503s (``fail_rate``) and
scripts of answers (statuses with ``Retry-After``, a slow answer after the request took effect,
a dropped connection, a 2xx without an id).
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
