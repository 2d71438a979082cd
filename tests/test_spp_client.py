"""The SPP client against real servers on loopback ports: every row of docs/behaviour.md section 5.

The sandbox plays SPP; ``StubSpp`` (a bare ``http.server``) gives the few answers the sandbox
cannot script: a 200, a redirect, an HTTP-date ``Retry-After``, odd 2xx bodies. ``requests``
is never mocked.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from werkzeug.http import HTTP_STATUS_CODES

from bridge.sandbox import SandboxServer
from bridge.spp_client import USER_AGENT, SppClient, parse_retry_after
from bridge.version import __version__
from tests.conftest import SPP_TOKEN

API_VERSION = "2024-03-05"
TICKET: dict[str, Any] = {
    "user_id": 7,
    "subject": "Printer on fire",
    "status": 1,
    "employees": [3, 4],
    "tags": ["website"],
    "order": "ORD-123",
    "note": "It is very hot.",
    "metadata": {"bridge_event_id": "ev_01", "campaign": "spring"},
}


@dataclass
class Canned:
    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class StubSpp:
    """Answers every POST with ``answer`` and keeps what it received (headers, body)."""

    def __init__(self) -> None:
        self.answer = Canned()
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                stub.received.append((dict(self.headers), self.rfile.read(length)))
                body = stub.answer.body.encode()
                self.send_response(stub.answer.status)
                for name, value in stub.answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[SppClient]:
    spp = SppClient(sandbox.url, SPP_TOKEN, API_VERSION, connect_timeout=2, read_timeout=5)
    yield spp
    spp.close()


@pytest.fixture
def stub() -> Iterator[StubSpp]:
    server = StubSpp()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def stub_client(stub: StubSpp) -> Iterator[SppClient]:
    spp = SppClient(stub.url + "/", SPP_TOKEN, API_VERSION, connect_timeout=2, read_timeout=5)
    yield spp
    spp.close()


def free_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_for_tickets(sandbox: SandboxServer, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The sandbox's tickets once there are ``count`` (a hung request finishes later)."""
    deadline = time.monotonic() + timeout
    while len(sandbox.sandbox.tickets) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(sandbox.sandbox.tickets) == count
    return list(sandbox.sandbox.tickets)


def sandbox_excerpt(status: int) -> dict[str, str]:
    return {"message": f"{HTTP_STATUS_CODES[status]} (sandbox script)"}


# --- 2xx with an integer id: delivered ---


def test_created_ticket_is_delivered_with_id_and_identifier(client: SppClient, sandbox: SandboxServer) -> None:
    outcome = client.create_ticket(TICKET)

    [ticket] = sandbox.sandbox.tickets
    assert outcome.result == "delivered"
    assert outcome.http_status == 201
    assert outcome.ticket_id == ticket["id"] == 1
    assert outcome.spp_request_id == ticket["api_identifier"]
    assert (outcome.error, outcome.retry_after, outcome.ambiguous) == (None, None, False)
    assert len(outcome.response_excerpt or "") == 500  # the ticket resource, cut to the excerpt
    assert '"subject":"Printer on fire"' in (outcome.response_excerpt or "")
    assert outcome.duration_ms >= 0


def test_sandbox_receives_exactly_the_body_and_headers(client: SppClient, sandbox: SandboxServer) -> None:
    client.create_ticket(TICKET)

    [ticket] = sandbox.sandbox.tickets
    assert ticket["request"] == TICKET
    assert ticket["headers"] == {
        "X-Api-Version": API_VERSION,
        "User-Agent": USER_AGENT,
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    assert f"spp-ticket-bridge/{__version__}" == USER_AGENT


def test_bearer_token_and_request_id_go_out_as_headers(stub: StubSpp, stub_client: SppClient) -> None:
    stub.answer = Canned(201, '{"id": 5}')

    stub_client.create_ticket(TICKET, request_id="req-42")

    [(headers, body)] = stub.received
    assert headers["Authorization"] == f"Bearer {SPP_TOKEN}"
    assert headers["X-Request-ID"] == "req-42"
    assert json.loads(body) == TICKET


def test_no_request_id_header_without_one(stub: StubSpp, stub_client: SppClient) -> None:
    stub.answer = Canned(201, '{"id": 5}')

    stub_client.create_ticket(TICKET)

    [(headers, _)] = stub.received
    assert "X-Request-ID" not in headers


@pytest.mark.parametrize(
    ("status", "body", "result", "ticket_id"),
    [
        (200, '{"id": 5}', "delivered", 5),
        (201, '{"data": {"id": 6}}', "delivered", 6),  # a Laravel resource wrapped in "data"
        (202, '{"id": 0}', "delivered", 0),
        (201, '{"id": "5"}', "failed", None),
        (201, '{"id": true}', "failed", None),
        (201, '{"id": 5.0}', "failed", None),
        (201, "[5]", "failed", None),
        (201, "created", "failed", None),
        (204, "", "failed", None),
    ],
)
def test_2xx_needs_an_integer_id(
    stub: StubSpp, stub_client: SppClient, status: int, body: str, result: str, ticket_id: int | None
) -> None:
    stub.answer = Canned(status, body, {"X-Api-Identifier": "api-1"})

    outcome = stub_client.create_ticket(TICKET)

    assert (outcome.result, outcome.http_status, outcome.ticket_id) == (result, status, ticket_id)
    assert outcome.spp_request_id == "api-1"
    assert len(stub.received) == 1


def test_2xx_without_id_fails_rather_than_resend(client: SppClient, sandbox: SandboxServer) -> None:
    """SPP said yes but named no ticket: it may well exist, so re-sending could duplicate it.

    The event fails with the answer recorded, for a person to check and replay.
    """
    sandbox.sandbox.script("noid")

    outcome = client.create_ticket(TICKET)

    assert outcome.result == "failed"
    assert outcome.http_status == 201
    assert outcome.ticket_id is None
    assert outcome.error == "SPP answered 201 without a ticket id"
    assert json.loads(outcome.response_excerpt or "") == {"ok": True}
    assert sandbox.sandbox.requests_seen == 1


# --- rejected: failed at once ---


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_rejection_fails_with_status_and_excerpt(client: SppClient, sandbox: SandboxServer, status: int) -> None:
    sandbox.sandbox.script(status)

    outcome = client.create_ticket(TICKET)

    assert outcome.result == "failed"
    assert outcome.http_status == status
    assert outcome.error == f"SPP rejected the ticket: HTTP {status}"
    assert json.loads(outcome.response_excerpt or "") == sandbox_excerpt(status)
    assert (outcome.retry_after, outcome.ambiguous, outcome.ticket_id) == (None, False, None)
    assert sandbox.sandbox.requests_seen == 1


def test_excerpt_is_cut_at_500_characters(stub: StubSpp, stub_client: SppClient) -> None:
    body = "x" * 499 + "yz" * 100
    stub.answer = Canned(422, body)

    outcome = stub_client.create_ticket(TICKET)

    assert outcome.response_excerpt == body[:500]


@pytest.mark.parametrize(
    ("change", "field_name"),
    [
        ({"user_id": "1"}, "user_id"),
        ({"user_id": True}, "user_id"),
        ({"priority": "high"}, "priority"),
        ({"subject": ""}, "subject"),
        ({"subject": None}, "subject"),
        ({"status": 1.5}, "status"),
        ({"employees": ["3"]}, "employees"),
        ({"tags": "website"}, "tags"),
        ({"metadata": {"bridge_event_id": 1}}, "metadata"),
    ],
)
def test_invalid_request_fails_without_being_sent(
    client: SppClient, sandbox: SandboxServer, change: dict[str, Any], field_name: str
) -> None:
    outcome = client.create_ticket({**TICKET, **change})

    assert outcome.result == "failed"
    assert (outcome.error or "").startswith("invalid StoreTicketRequest, not sent: {")
    assert repr(field_name) in (outcome.error or "")
    assert (outcome.http_status, outcome.response_excerpt, outcome.duration_ms) == (None, None, 0)
    assert sandbox.sandbox.requests_seen == 0


def test_missing_subject_is_not_sent(client: SppClient, sandbox: SandboxServer) -> None:
    outcome = client.create_ticket({"user_id": 7})

    assert outcome.result == "failed"
    assert "'subject'" in (outcome.error or "")
    assert sandbox.sandbox.requests_seen == 0


# --- retry: worth another attempt later ---


@pytest.mark.parametrize("status", [401, 403, 408, 425, 429, 500, 502, 503, 504, 507])
def test_retryable_status_retries(client: SppClient, sandbox: SandboxServer, status: int) -> None:
    sandbox.sandbox.script(status)

    outcome = client.create_ticket(TICKET)

    assert outcome.result == "retrying"
    assert outcome.http_status == status
    assert outcome.error == f"SPP answered {status}"
    assert json.loads(outcome.response_excerpt or "") == sandbox_excerpt(status)
    assert (outcome.retry_after, outcome.ambiguous, outcome.ticket_id) == (None, False, None)
    assert sandbox.sandbox.requests_seen == 1
    assert sandbox.sandbox.tickets == []


def test_wrong_token_retries_on_real_401(sandbox: SandboxServer) -> None:
    spp = SppClient(sandbox.url, "not-the-token", API_VERSION, connect_timeout=2, read_timeout=5)

    outcome = spp.create_ticket(TICKET)
    spp.close()

    assert (outcome.result, outcome.http_status) == ("retrying", 401)
    assert json.loads(outcome.response_excerpt or "") == {"message": "Unauthenticated."}
    assert sandbox.sandbox.tickets == []


@pytest.mark.parametrize(("step", "seconds"), [("429:7", 7.0), ("503:120", 120.0), ("503:0", 0.0)])
def test_retry_after_seconds_are_kept(client: SppClient, sandbox: SandboxServer, step: str, seconds: float) -> None:
    sandbox.sandbox.script(step)

    outcome = client.create_ticket(TICKET)

    assert outcome.result == "retrying"
    assert outcome.http_status == int(step.split(":")[0])
    assert outcome.retry_after == seconds


def test_retry_after_http_date_is_parsed(stub: StubSpp, stub_client: SppClient) -> None:
    when = datetime.now(UTC) + timedelta(hours=1)
    stub.answer = Canned(503, "busy", {"Retry-After": format_datetime(when, usegmt=True)})

    outcome = stub_client.create_ticket(TICKET)

    assert (outcome.result, outcome.http_status) == ("retrying", 503)
    # the date is whole seconds and time has passed since: a little under an hour
    assert outcome.retry_after is not None
    assert 3500 <= outcome.retry_after <= 3600


def test_refused_connection_retries_and_is_not_ambiguous() -> None:
    spp = SppClient(f"http://127.0.0.1:{free_port()}", SPP_TOKEN, API_VERSION, connect_timeout=2, read_timeout=5)

    outcome = spp.create_ticket(TICKET)
    spp.close()

    assert outcome.result == "retrying"
    assert outcome.ambiguous is False  # nothing reached SPP: re-sending cannot duplicate
    assert (outcome.error or "").startswith("could not connect to SPP: ConnectionError")
    assert (outcome.http_status, outcome.retry_after, outcome.response_excerpt) == (None, None, None)


def test_read_timeout_retries_and_is_ambiguous(sandbox: SandboxServer) -> None:
    spp = SppClient(sandbox.url, SPP_TOKEN, API_VERSION, connect_timeout=2, read_timeout=0.5)
    sandbox.sandbox.script("hang:1.5")

    outcome = spp.create_ticket(TICKET)
    spp.close()

    assert outcome.result == "retrying"
    assert outcome.ambiguous is True
    assert outcome.error == "SPP did not answer within the read timeout"
    assert outcome.http_status is None
    assert outcome.duration_ms >= 450
    # SPP went on to create the ticket after we gave up: that is what "ambiguous" means
    assert wait_for_tickets(sandbox, 1)[0]["request"] == TICKET
    assert sandbox.sandbox.requests_seen == 1


def test_connection_reset_retries_and_is_ambiguous(client: SppClient, sandbox: SandboxServer) -> None:
    sandbox.sandbox.script("reset")

    outcome = client.create_ticket(TICKET)

    assert outcome.result == "retrying"
    assert outcome.ambiguous is True
    assert (outcome.error or "").startswith("connection to SPP lost: ConnectionError")
    assert (outcome.http_status, outcome.response_excerpt) == (None, None)


@pytest.mark.parametrize("step", ["reset", 503, "503:1", "429:1", 502])
def test_client_never_resends_a_post(client: SppClient, sandbox: SandboxServer, step: int | str) -> None:
    sandbox.sandbox.script(step)

    assert client.create_ticket(TICKET).result == "retrying"
    assert sandbox.sandbox.requests_seen == 1
    assert sandbox.sandbox.tickets == []


def test_next_call_after_a_reset_delivers(client: SppClient, sandbox: SandboxServer) -> None:
    sandbox.sandbox.script("reset")

    outcomes = [client.create_ticket(TICKET).result for _ in range(2)]

    assert outcomes == ["retrying", "delivered"]
    assert sandbox.sandbox.requests_seen == 2


# --- anything else: failed, with the answer kept ---


@pytest.mark.parametrize("status", [405, 410, 413, 415])
def test_other_4xx_fails(client: SppClient, sandbox: SandboxServer, status: int) -> None:
    """Not in the table of docs/behaviour.md section 5; nothing about them gets better with waiting."""
    sandbox.sandbox.script(status)

    outcome = client.create_ticket(TICKET)

    assert outcome.result == "failed"
    assert outcome.http_status == status
    assert outcome.error == f"SPP gave an unexpected answer: HTTP {status}"
    assert json.loads(outcome.response_excerpt or "") == sandbox_excerpt(status)
    assert sandbox.sandbox.requests_seen == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_fails_and_is_not_followed(
    stub: StubSpp, stub_client: SppClient, sandbox: SandboxServer, status: int
) -> None:
    """A redirect means SPP_API_URL is wrong (http:// for https://, an old host).

    Following it could turn the POST into a GET or send the token elsewhere; the request
    created nothing, and waiting will not fix the URL, so the event fails with the status
    kept and can be replayed once the setting is right.
    """
    stub.answer = Canned(status, "moved", {"Location": f"{sandbox.url}/api/tickets"})

    outcome = stub_client.create_ticket(TICKET)

    assert outcome.result == "failed"
    assert outcome.http_status == status
    assert outcome.error == f"SPP gave an unexpected answer: HTTP {status}"
    assert outcome.response_excerpt == "moved"
    assert len(stub.received) == 1
    assert sandbox.sandbox.requests_seen == 0


# --- parse_retry_after ---

PAST = "Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 12 ", 12.0),
        ("0", 0.0),
        ("1.5", None),
        ("-3", None),
        ("soon", None),
        ("\xb2", None),  # latin-1 "²": str.isdigit() says yes, float() says no
        (PAST, 0.0),
        ("Wed, 21 Oct 2015 07:28:00", 0.0),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


@given(st.text(alphabet=st.characters(max_codepoint=255)))
@example("\xb2")
@example("Fri, 31 Dec 9999 23:59:59 GMT")
def test_parse_retry_after_never_raises(header: str) -> None:
    """Header values arrive decoded as latin-1: any of them must give a number or None."""
    seconds = parse_retry_after(header)
    assert seconds is None or seconds >= 0


@given(st.integers(min_value=0, max_value=10**12))
def test_parse_retry_after_takes_any_delta_seconds(value: int) -> None:
    assert parse_retry_after(str(value)) == float(value)
