"""The sandbox's state: tickets, messages, files, clients, requests seen and scripts, behind one lock."""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bridge.sandbox.faults import ENDPOINTS, FAULT, Step, check_endpoint, parse_step

if TYPE_CHECKING:
    from flask import Flask

# Each kind of id has a range of its own, so a test that passes a client id where a ticket id
# belongs meets a 404 instead of a lucky match. Ticket ids are 1, 2, ... (tests) or the clock's
# milliseconds (13 digits, `bridge sandbox`); clients and messages stay between the two.
FIRST_CLIENT_ID = 1_000_001
FIRST_MESSAGE_ID = 3_000_001


def clock_ticket_id() -> int:
    """The current time in milliseconds: a first ticket id that a restarted sandbox does not repeat.

    The bridge keeps the ticket ids it was given across sandbox restarts, so ids starting at 1
    every time would point two events at "the same" ticket. Ids only catch up with the clock
    if a run creates more than one ticket per millisecond on average.
    """
    return time.time_ns() // 1_000_000


def now_stamp() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass
class StoredFile:
    id: int
    name: str
    content_type: str
    content: bytes = field(repr=False)

    @property
    def path(self) -> str:
        return f"/_sandbox/files/{self.id}/{quote(self.name)}"

    def describe(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "content_type": self.content_type,
            "size": len(self.content),
            "sha256": hashlib.sha256(self.content).hexdigest(),
            "url": base_url + self.path,
        }


@dataclass
class StoredMessage:
    id: int
    ticket_id: int
    user_id: int
    message: str
    staff_only: bool
    files: list[StoredFile]
    transport: str  # "json" or "multipart": how the request carried it
    headers: dict[str, str | None]
    api_identifier: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: str = field(default_factory=now_stamp)


class EmailTaken(Exception):
    """A client with this email (compared case-insensitively) exists already."""


class Sandbox:
    """In-memory SPP simulator state, thread-safe (one threading.Lock).

    Configuration (token, latency, fail rate, ``ignore_client_filter``, the seeded clients)
    survives :meth:`reset`; everything SPP was sent does not.
    """

    def __init__(
        self,
        token: str = "sandbox-token",
        api_version: str = "2024-03-05",
        latency_ms: int = 0,
        fail_rate: float = 0.0,
        seed: int | None = None,
        first_id: int | Callable[[], int] = 1,
        clients: Iterable[Mapping[str, Any]] = (),
        api_user_id: int = 1,
        ignore_client_filter: bool = False,
    ) -> None:
        """``first_id``: the id of the first ticket, and of the first after each reset; a function
        (such as :func:`clock_ticket_id`) is asked again at every reset.

        ``clients``: User fields (``email`` required, ``id`` optional) present from the start and
        after every reset. ``api_user_id``: the author of a message posted without ``user_id``
        (SPP's API token belongs to a team member). ``ignore_client_filter``: ``GET /api/clients``
        answers every client whatever ``filters`` asks, as an API without filter support would.
        """
        if latency_ms < 0 or not 0.0 <= fail_rate <= 1.0:
            raise ValueError("latency_ms must be >= 0 and fail_rate between 0 and 1")
        self.token, self.api_version = token, api_version
        self.latency_ms, self.fail_rate = latency_ms, fail_rate
        self.api_user_id = api_user_id
        self.ignore_client_filter = ignore_client_filter
        self.tickets: list[dict[str, Any]] = []
        self.messages: list[StoredMessage] = []
        self.clients: list[dict[str, Any]] = []
        self.requests_seen = 0  # POST /api/tickets only, as before the other endpoints existed
        self.requests_by_endpoint: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._steps: dict[str, deque[Step]] = {endpoint: deque() for endpoint in ENDPOINTS}
        self._app: Flask | None = None
        self._first_id = first_id
        self._seed_clients = [dict(client) for client in clients]
        self._files: dict[int, StoredFile] = {}
        self._clear()

    def _clear(self) -> None:
        self.tickets.clear()
        self.messages.clear()
        self.clients.clear()
        self._files.clear()
        self.requests_seen = 0
        self.requests_by_endpoint = dict.fromkeys(ENDPOINTS, 0)
        for steps in self._steps.values():
            steps.clear()
        self._next_id = self._first_id() if callable(self._first_id) else self._first_id
        self._next_client_id, self._next_message_id, self._next_file_id = FIRST_CLIENT_ID, FIRST_MESSAGE_ID, 1
        for client in self._seed_clients:
            self._add_client(client)

    def script(self, *steps: int | str, endpoint: str = "tickets") -> None:
        """Queue answers, one per request to ``endpoint``; all are checked before any is queued."""
        check_endpoint(endpoint)
        parsed = [parse_step(step) for step in steps]
        with self._lock:
            self._steps[endpoint].extend(parsed)

    def reset(self) -> None:
        """Forget tickets, messages, files, created clients, counters and scripts."""
        with self._lock:
            self._clear()

    def app(self) -> Flask:
        """The WSGI app serving this sandbox (created on first use, once)."""
        with self._lock:
            if self._app is None:
                from bridge.sandbox.app import create_sandbox_app  # the app module needs this one first

                self._app = create_sandbox_app(self)
            return self._app

    def snapshot(self) -> dict[str, Any]:
        """A copy of the tickets and the count of ticket requests, as ``GET /_sandbox/tickets`` shows it."""
        with self._lock:
            tickets = [dict(ticket) for ticket in self.tickets]
            return {"tickets": tickets, "requests_seen": self.requests_seen}

    def state(self, base_url: str = "") -> dict[str, Any]:
        """Everything, as ``GET /_sandbox/state`` shows it: tickets with their messages and files."""
        with self._lock:
            tickets = []
            for ticket in self.tickets:
                messages = [self._describe_message(m, base_url) for m in self.messages if m.ticket_id == ticket["id"]]
                tickets.append({**ticket, "messages": messages})
            return {
                "tickets": tickets,
                "clients": [dict(client) for client in self.clients],
                "requests_seen": dict(self.requests_by_endpoint),
                "ignore_client_filter": self.ignore_client_filter,
            }

    @staticmethod
    def _describe_message(message: StoredMessage, base_url: str) -> dict[str, Any]:
        return {
            "id": message.id,
            "user_id": message.user_id,
            "created_at": message.created_at,
            "message": message.message,
            "staff_only": message.staff_only,
            "transport": message.transport,
            "api_identifier": message.api_identifier,
            "headers": message.headers,
            "files": [stored.describe(base_url) for stored in message.files],
        }

    def take_turn(self, endpoint: str = "tickets") -> Step | None:
        """Count a request; return its scripted step, FAULT (by fail_rate) or None."""
        with self._lock:
            self.requests_by_endpoint[endpoint] += 1
            if endpoint == "tickets":
                self.requests_seen += 1
            if self._steps[endpoint]:
                return self._steps[endpoint].popleft()  # scripted requests are never faulted at random
            return FAULT if self._random.random() < self.fail_rate else None

    # --- tickets ---

    def store(self, body: dict[str, Any], headers: dict[str, str | None]) -> dict[str, Any]:
        """Keep the request as received under the next id (first_id, first_id + 1, ...)."""
        with self._lock:
            ticket_id, self._next_id = self._next_id, self._next_id + 1
            record = {
                "id": ticket_id,
                "number": self._new_number(),
                "api_identifier": str(uuid.uuid4()),
                "created_at": now_stamp(),
                "request": body,
                "headers": headers,
            }
            self.tickets.append(record)
            return record

    def _new_number(self) -> str:
        """An 8-character code like SPP's ticket numbers, with a letter in it so it never reads as an id."""
        taken = {ticket["number"] for ticket in self.tickets}
        while True:
            number = uuid.uuid4().hex[:8].upper()
            if not number.isdigit() and number not in taken:
                return number

    def find_ticket(self, key: str) -> dict[str, Any] | None:
        """The ticket whose id (all digits) or number (case-insensitive) is ``key``."""
        with self._lock:
            if key.isascii() and key.isdigit():
                return next((t for t in self.tickets if t["id"] == int(key)), None)
            return next((t for t in self.tickets if t["number"] == key.upper()), None)

    # --- messages and files ---

    def add_message(
        self,
        ticket_id: int,
        text: str,
        user_id: int | None,
        staff_only: bool,
        files: Iterable[tuple[str, str, bytes]],
        transport: str,
        headers: dict[str, str | None],
    ) -> StoredMessage:
        """Keep a message and its files (name, content type, bytes) under the next ids."""
        with self._lock:
            stored = []
            for name, content_type, content in files:
                stored.append(StoredFile(self._next_file_id, name, content_type, content))
                self._files[self._next_file_id] = stored[-1]
                self._next_file_id += 1
            message = StoredMessage(
                id=self._next_message_id,
                ticket_id=ticket_id,
                user_id=self.api_user_id if user_id is None else user_id,
                message=text,
                staff_only=staff_only,
                files=stored,
                transport=transport,
                headers=headers,
            )
            self._next_message_id += 1
            self.messages.append(message)
            return message

    def messages_of(self, ticket_id: int) -> list[StoredMessage]:
        """The ticket's messages, oldest first."""
        with self._lock:
            return [message for message in self.messages if message.ticket_id == ticket_id]

    def file(self, file_id: int) -> StoredFile | None:
        with self._lock:
            return self._files.get(file_id)

    # --- clients ---

    def seed_client(self, **fields: Any) -> dict[str, Any]:
        """Add a client now (until the next reset); ``email`` required, ``id`` optional."""
        with self._lock:
            return self._add_client(fields)

    def create_client(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Add a client sent to ``POST /api/clients``; raises :class:`EmailTaken`."""
        with self._lock:
            return self._add_client({key: value for key, value in fields.items() if key != "id"})

    def _add_client(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        email = fields.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise ValueError(f"a client needs an email address, not {email!r}")
        if any(client["email"].casefold() == email.casefold() for client in self.clients):
            raise EmailTaken(email)
        client_id = fields.get("id")
        if client_id is None:
            client_id, self._next_client_id = self._next_client_id, self._next_client_id + 1
        elif type(client_id) is not int or any(client["id"] == client_id for client in self.clients):
            raise ValueError(f"client id {client_id!r} is not a new integer")
        client = {"created_at": now_stamp(), **fields, "id": client_id}
        self.clients.append(client)
        return dict(client)

    def find_clients(self, email: str | None) -> list[dict[str, Any]]:
        """Clients newest first; only those with ``email`` (case-insensitive) unless it is None."""
        with self._lock:
            found = [dict(c) for c in self.clients if email is None or c["email"].casefold() == email.casefold()]
        return found[::-1]

    def client(self, client_id: int) -> dict[str, Any] | None:
        with self._lock:
            return next((dict(c) for c in self.clients if c["id"] == client_id), None)
