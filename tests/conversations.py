"""What the tests of SPP's conversation endpoints share: a sandbox with one known client, and files."""

from __future__ import annotations

import os
from collections.abc import Iterator

from bridge.sandbox import Sandbox, SandboxServer

KNOWN = {"id": 42, "email": "Known.Client@Example.com", "name_f": "Kim", "name_l": "Known", "company": "Known Ltd"}
PDF = b"%PDF-1.7\n" + os.urandom(5 * 1024 * 1024) + b"\n%%EOF\n"
UMLAUT_NAME = "Überweisung März.pdf"


def serve_with_known_client(token: str) -> Iterator[SandboxServer]:
    """A module's sandbox on a real port, seeded with :data:`KNOWN` (for a module-scoped fixture)."""
    with SandboxServer(Sandbox(token=token, clients=[KNOWN])) as running:
        yield running


def fresh(server: SandboxServer) -> Sandbox:
    """The sandbox as the constructor left it: only the known client, the email filter honoured."""
    server.sandbox.reset()
    server.sandbox.ignore_client_filter = False
    return server.sandbox
