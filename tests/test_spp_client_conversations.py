"""SppClient's conversation calls (post_message, find_client, create_client, get_ticket) against
the sandbox on a real port, and against a bare ``http.server`` where the request itself is the
point (the multipart parts, the query). ``requests`` is never mocked.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from bridge.sandbox import Sandbox, SandboxServer
from bridge.sandbox.state import FIRST_CLIENT_ID, FIRST_MESSAGE_ID
from bridge.spp_client import USER_AGENT, FileUpload, SppClient
from tests.conftest import SPP_TOKEN
from tests.conversations import KNOWN, PDF, UMLAUT_NAME, fresh, serve_with_known_client

API_VERSION = "2024-03-05"
TICKET = {"user_id": 42, "subject": "Invoice question"}


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    yield from serve_with_known_client(SPP_TOKEN)


@pytest.fixture
def sandbox(server: SandboxServer) -> Sandbox:
    return fresh(server)


@pytest.fixture
def client(server: SandboxServer, sandbox: Sandbox) -> Iterator[SppClient]:
    spp = SppClient(server.url, SPP_TOKEN, API_VERSION, connect_timeout=2, read_timeout=5)
    yield spp
    spp.close()


@pytest.fixture
def ticket_id(sandbox: Sandbox) -> int:
    ticket_id: int = sandbox.store(TICKET, {})["id"]
    return ticket_id


class Capture:
    """Answers every request with ``answer`` (status, JSON) and keeps (method, path, headers, body)."""

    def __init__(self) -> None:
        self.answer: tuple[int, Any] = (201, {"id": 5})
        self.received: list[tuple[str, str, dict[str, str], bytes]] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                capture.received.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
                status, payload = capture.answer
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def capture() -> Iterator[Capture]:
    stub = Capture()
    thread = threading.Thread(target=stub.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield stub
    stub.server.shutdown()
    stub.server.server_close()


@pytest.fixture
def capture_client(capture: Capture) -> Iterator[SppClient]:
    spp = SppClient(capture.url, SPP_TOKEN, API_VERSION, connect_timeout=2, read_timeout=5)
    yield spp
    spp.close()


def parts_of(headers: dict[str, str], body: bytes) -> list[tuple[str, str | None, str | None, bytes]]:
    """(name, file name, content type, content) of each part, read from the bytes as sent."""
    kind, _, boundary = headers["Content-Type"].partition("; boundary=")
    assert kind == "multipart/form-data" and boundary
    chunks = body.split(b"--" + boundary.encode())
    assert chunks[0] == b"" and chunks[-1] == b"--\r\n"
    parts = []
    for chunk in chunks[1:-1]:
        head, _, content = chunk.removeprefix(b"\r\n").removesuffix(b"\r\n").partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode("utf-8").split("\r\n"))
        disposition = dict(item.strip().split("=", 1) for item in fields["Content-Disposition"].split(";")[1:])
        filename = disposition.get("filename")
        parts.append(
            (disposition["name"].strip('"'), filename and filename.strip('"'), fields.get("Content-Type"), content)
        )
    return parts


# --- post_message ---


def test_message_without_files_goes_as_json(client: SppClient, sandbox: Sandbox, ticket_id: int) -> None:
    outcome = client.post_message(ticket_id, "Hello, I need help.", user_id=42)

    [stored] = sandbox.messages_of(ticket_id)
    assert (outcome.result, outcome.http_status, outcome.message_id) == ("delivered", 201, FIRST_MESSAGE_ID)
    assert outcome.spp_request_id == stored.api_identifier
    assert (outcome.ticket_id, outcome.client_id, outcome.found, outcome.ambiguous) == (None, None, None, False)
    assert outcome.resource is not None and outcome.resource["message"] == "Hello, I need help."
    assert (stored.transport, stored.message, stored.user_id, stored.files) == (
        "json",
        "Hello, I need help.",
        42,
        [],
    )
    assert stored.headers == {
        "X-Api-Version": API_VERSION,
        "User-Agent": USER_AGENT,
        "Content-Type": "application/json",
        "Accept": "application/json",
    }


def test_message_without_user_id_leaves_it_out(capture: Capture, capture_client: SppClient) -> None:
    capture_client.post_message(7, "Note", request_id="req-9")

    [(method, path, headers, body)] = capture.received
    assert (method, path) == ("POST", "/api/ticket_messages/7")
    assert json.loads(body) == {"message": "Note"}
    assert headers["X-Request-ID"] == "req-9" and headers["Authorization"] == f"Bearer {SPP_TOKEN}"


def test_message_reaches_a_ticket_by_its_number(client: SppClient, sandbox: Sandbox, ticket_id: int) -> None:
    number = sandbox.tickets[0]["number"]

    assert client.post_message(number, "by number").result == "delivered"
    assert len(sandbox.messages_of(ticket_id)) == 1


def test_files_arrive_byte_for_byte(client: SppClient, sandbox: Sandbox, ticket_id: int) -> None:
    files = [
        FileUpload(UMLAUT_NAME, PDF, "application/pdf"),
        FileUpload("empty.txt", b"", "text/plain"),
    ]

    outcome = client.post_message(ticket_id, "Transfer attached", user_id=42, files=files)

    assert outcome.result == "delivered", outcome.error
    [stored] = sandbox.messages_of(ticket_id)
    assert (stored.transport, stored.user_id, stored.message) == ("multipart", 42, "Transfer attached")
    assert [(f.name, f.content_type) for f in stored.files] == [
        (UMLAUT_NAME, "application/pdf"),
        ("empty.txt", "text/plain"),
    ]
    assert stored.files[0].content == PDF and stored.files[1].content == b""
    assert outcome.resource is not None and len(outcome.resource["files"]) == 2


def test_multipart_has_one_attachments_part_per_file(capture: Capture, capture_client: SppClient) -> None:
    files = [FileUpload(UMLAUT_NAME, b"%PDF-1", "application/pdf"), FileUpload("b.png", b"\x89PNG", "image/png")]

    capture_client.post_message(7, "see files", user_id=42, files=files)

    [(_, path, headers, body)] = capture.received
    assert path == "/api/ticket_messages/7"
    assert headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert parts_of(headers, body) == [
        ("message", None, None, b"see files"),
        ("user_id", None, None, b"42"),
        ("attachments[]", UMLAUT_NAME, "application/pdf", b"%PDF-1"),
        ("attachments[]", "b.png", "image/png", b"\x89PNG"),
    ]


@pytest.mark.parametrize(
    ("ticket", "message", "user_id", "files", "field"),
    [
        (7, "", None, [], "message"),
        (7, "  ", None, [], "message"),
        (7, "m", True, [], "user_id"),
        (7, "m", "42", [], "user_id"),
        (True, "m", None, [], "ticket"),
        ("", "m", None, [], "ticket"),
        (7, "m", None, [FileUpload("a.txt", b"a", "")], "attachments.0"),
        (7, "m", None, [FileUpload(" ", b"a", "text/plain")], "attachments.0"),
        (7, "m", None, [FileUpload("a.txt", "text", "text/plain")], "attachments.0"),
    ],
)
def test_invalid_message_is_not_sent(
    client: SppClient, sandbox: Sandbox, ticket: Any, message: Any, user_id: Any, files: Any, field: str
) -> None:
    outcome = client.post_message(ticket, message, user_id=user_id, files=files)

    assert outcome.result == "failed"
    assert (outcome.error or "").startswith("invalid message, not sent: {")
    assert repr(field) in (outcome.error or "")
    assert sandbox.requests_by_endpoint["messages"] == 0


def test_message_to_an_unknown_ticket_fails(client: SppClient, sandbox: Sandbox) -> None:
    outcome = client.post_message(999, "lost")

    assert (outcome.result, outcome.http_status) == ("failed", 404)
    assert outcome.error == "SPP rejected the message: HTTP 404"
    assert json.loads(outcome.response_excerpt or "") == {"message": "Ticket not found."}


@pytest.mark.parametrize(
    ("step", "result", "error"),
    [
        (422, "failed", "SPP rejected the message: HTTP 422"),
        (409, "failed", "SPP rejected the message: HTTP 409"),
        (410, "failed", "SPP gave an unexpected answer: HTTP 410"),
        (403, "retrying", "SPP answered 403"),
        (429, "retrying", "SPP answered 429"),
        (500, "retrying", "SPP answered 500"),
        ("noid", "failed", "SPP answered 201 without a message id"),
    ],
)
def test_message_answers_are_classified(
    client: SppClient, sandbox: Sandbox, ticket_id: int, step: int | str, result: str, error: str
) -> None:
    sandbox.script(step, endpoint="messages")

    outcome = client.post_message(ticket_id, "m")

    assert (outcome.result, outcome.error, outcome.message_id, outcome.ambiguous) == (result, error, None, False)
    assert sandbox.requests_by_endpoint["messages"] == 1  # never re-sent by the client
    assert sandbox.messages_of(ticket_id) == []


def test_message_retry_after_and_token_refusal(client: SppClient, sandbox: Sandbox, ticket_id: int) -> None:
    sandbox.script("503:9", 401, endpoint="messages")

    busy, refused = client.post_message(ticket_id, "m"), client.post_message(ticket_id, "m")

    assert (busy.result, busy.retry_after) == ("retrying", 9.0)
    assert (refused.result, refused.token_refused) == ("retrying", True)


def test_lost_message_answer_is_ambiguous(server: SandboxServer, sandbox: Sandbox, ticket_id: int) -> None:
    spp = SppClient(server.url, SPP_TOKEN, API_VERSION, connect_timeout=2, read_timeout=0.3)
    sandbox.script("reset", "hang:0.8", endpoint="messages")

    reset, slow = spp.post_message(ticket_id, "first"), spp.post_message(ticket_id, "second")
    spp.close()

    assert (reset.result, reset.ambiguous) == ("retrying", True)
    assert (reset.error or "").startswith("connection to SPP lost")
    assert (slow.result, slow.ambiguous, slow.error) == ("retrying", True, "SPP did not answer within the read timeout")


# --- find_client ---


def test_client_is_found_whatever_the_case(client: SppClient, sandbox: Sandbox) -> None:
    sandbox.seed_client(email="other@example.com")

    outcome = client.find_client(" KNOWN.client@example.COM ")

    assert (outcome.result, outcome.found, outcome.client_id, outcome.error) == ("delivered", True, 42, None)
    assert outcome.resource is not None and outcome.resource["email"] == KNOWN["email"]
    assert outcome.spp_request_id is not None
    assert sandbox.requests_by_endpoint["clients"] == 1


def test_unknown_email_is_not_found_which_is_no_error(client: SppClient, sandbox: Sandbox) -> None:
    outcome = client.find_client("nobody@example.com")

    assert (outcome.result, outcome.found, outcome.client_id, outcome.error) == ("delivered", False, None, None)
    assert outcome.ok


def test_look_up_sends_the_filter_as_a_query(capture: Capture, capture_client: SppClient) -> None:
    capture.answer = (200, {"data": [], "meta": {"current_page": 1, "last_page": 1}})

    capture_client.find_client("a+b@example.com", request_id="req-1")

    [(method, path, headers, body)] = capture.received
    url = urlsplit(path)
    assert (method, url.path, body) == ("GET", "/api/clients", b"")
    assert parse_qs(url.query) == {"filters[email][$eq]": ["a+b@example.com"], "limit": ["100"], "page": ["1"]}
    assert "Content-Type" not in headers and headers["X-Request-ID"] == "req-1"


def test_ignored_filter_still_finds_the_client_on_a_later_page(client: SppClient, sandbox: Sandbox) -> None:
    sandbox.ignore_client_filter = True
    for n in range(250):  # newest first: the known client, seeded first, is on the third page
        sandbox.seed_client(email=f"client{n}@example.com")

    outcome = client.find_client("known.client@example.com")

    assert (outcome.result, outcome.found, outcome.client_id) == ("delivered", True, 42)
    assert sandbox.requests_by_endpoint["clients"] == 3


def test_ignored_filter_does_not_take_a_near_miss(client: SppClient, sandbox: Sandbox) -> None:
    sandbox.ignore_client_filter = True
    sandbox.seed_client(email="known.client@example.co")
    sandbox.seed_client(email="xknown.client@example.com")

    outcome = client.find_client("known.client@example.com ")

    assert (outcome.found, outcome.client_id) == (True, 42)
    assert client.find_client("known.client@example.c").found is False


def test_ignored_filter_past_the_page_limit_fails_rather_than_say_not_found(
    server: SandboxServer, sandbox: Sandbox
) -> None:
    sandbox.ignore_client_filter = True
    for n in range(250):
        sandbox.seed_client(email=f"client{n}@example.com")
    spp = SppClient(server.url, SPP_TOKEN, API_VERSION, client_pages=2)

    outcome = spp.find_client("absent@example.com")
    spp.close()

    assert (outcome.result, outcome.found, outcome.client_id) == ("failed", None, None)
    assert outcome.error == "SPP ignored the email filter and absent@example.com is not in its first 2 pages of clients"
    assert sandbox.requests_by_endpoint["clients"] == 2


def test_ignored_filter_on_the_last_page_is_not_found(client: SppClient, sandbox: Sandbox) -> None:
    sandbox.ignore_client_filter = True

    outcome = client.find_client("absent@example.com")

    assert (outcome.result, outcome.found) == ("delivered", False)
    assert sandbox.requests_by_endpoint["clients"] == 1


@pytest.mark.parametrize(
    ("step", "result", "error"),
    [
        (422, "failed", "SPP rejected the client look-up: HTTP 422"),
        (401, "retrying", "SPP answered 401"),
        (429, "retrying", "SPP answered 429"),
        (503, "retrying", "SPP answered 503"),
        ("noid", "failed", "SPP answered 200 without a list of clients"),
    ],
)
def test_look_up_answers_are_classified(
    client: SppClient, sandbox: Sandbox, step: int | str, result: str, error: str
) -> None:
    sandbox.script(step, endpoint="clients")

    outcome = client.find_client(KNOWN["email"])

    assert (outcome.result, outcome.error, outcome.found, outcome.client_id) == (result, error, None, None)
    assert sandbox.requests_by_endpoint["clients"] == 1


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"data": [{"email": KNOWN["email"]}]}, "SPP answered 200 with the client but without its id"),
        ({"data": {"id": 1}}, "SPP answered 200 without a list of clients"),
    ],
)
def test_look_up_answer_without_usable_rows_fails(
    capture: Capture, capture_client: SppClient, answer: Any, error: str
) -> None:
    capture.answer = (200, answer)

    outcome = capture_client.find_client(KNOWN["email"])

    assert (outcome.result, outcome.error) == ("failed", error)


def test_a_bare_list_of_clients_is_read_too(capture: Capture, capture_client: SppClient) -> None:
    capture.answer = (200, [{"id": 3, "email": "x@example.com"}, {"id": 4, "email": "Y@example.com"}])

    assert capture_client.find_client("y@example.com").client_id == 4


def test_lost_look_up_is_retried_and_never_ambiguous(server: SandboxServer, sandbox: Sandbox) -> None:
    spp = SppClient(server.url, SPP_TOKEN, API_VERSION, connect_timeout=2, read_timeout=0.3)
    sandbox.script("hang:0.8", "reset", endpoint="clients")

    slow, reset = spp.find_client(KNOWN["email"]), spp.find_client(KNOWN["email"])
    spp.close()

    assert (slow.result, slow.ambiguous, slow.error) == (
        "retrying",
        False,
        "SPP did not answer within the read timeout",
    )
    assert (reset.result, reset.ambiguous) == ("retrying", False)


@pytest.mark.parametrize("email", ["", "not-an-email", "a@b@c", "a b@example.com", None])
def test_look_up_of_no_email_is_not_sent(client: SppClient, sandbox: Sandbox, email: Any) -> None:
    outcome = client.find_client(email)

    assert outcome.result == "failed" and (outcome.error or "").startswith("invalid email address, not sent")
    assert sandbox.requests_by_endpoint["clients"] == 0


# --- create_client ---


def test_client_is_created(client: SppClient, sandbox: Sandbox) -> None:
    outcome = client.create_client(" new@example.com ", " Nia ", "New", request_id="req-2")

    assert (outcome.result, outcome.http_status, outcome.client_id) == ("delivered", 201, FIRST_CLIENT_ID)
    assert outcome.resource is not None and outcome.resource["name"] == "Nia New"
    assert sandbox.clients[-1]["email"] == "new@example.com"
    assert client.find_client("NEW@example.com").client_id == FIRST_CLIENT_ID


def test_blank_names_are_left_out(capture: Capture, capture_client: SppClient, client: SppClient) -> None:
    capture_client.create_client("x@example.com", "", "  ")

    [(_, path, headers, body)] = capture.received
    assert (path, json.loads(body)) == ("/api/clients", {"email": "x@example.com"})
    assert headers["Content-Type"] == "application/json"
    assert client.create_client("x@example.com", "", "").result == "delivered"  # the sandbox refuses "" names


def test_taken_email_is_refused(client: SppClient, sandbox: Sandbox) -> None:
    outcome = client.create_client(KNOWN["email"].lower(), "Kim", "Again")

    assert (outcome.result, outcome.http_status, outcome.client_id) == ("failed", 422, None)
    assert outcome.error == "SPP rejected the client: HTTP 422"
    assert "already been taken" in (outcome.response_excerpt or "")


@pytest.mark.parametrize(
    ("step", "result", "error", "ambiguous"),
    [
        ("429:5", "retrying", "SPP answered 429", False),
        (400, "failed", "SPP rejected the client: HTTP 400", False),
        ("noid", "failed", "SPP answered 201 without a client id", False),
        ("reset", "retrying", None, True),
    ],
)
def test_create_client_answers_are_classified(
    client: SppClient, sandbox: Sandbox, step: int | str, result: str, error: str | None, ambiguous: bool
) -> None:
    sandbox.script(step, endpoint="create_client")

    outcome = client.create_client("z@example.com", "Z", "")

    assert (outcome.result, outcome.ambiguous, outcome.client_id) == (result, ambiguous, None)
    if error is not None:
        assert outcome.error == error
    assert sandbox.requests_by_endpoint["create_client"] == 1


def test_create_client_without_an_email_is_not_sent(client: SppClient, sandbox: Sandbox) -> None:
    assert client.create_client("nobody", "N", "O").result == "failed"
    assert sandbox.requests_by_endpoint["create_client"] == 0


# --- get_ticket ---


def test_ticket_is_read_with_its_messages(client: SppClient, sandbox: Sandbox, ticket_id: int) -> None:
    client.post_message(ticket_id, "first", files=[FileUpload("a.txt", b"a", "text/plain")])

    outcome = client.get_ticket(ticket_id)

    assert (outcome.result, outcome.http_status, outcome.ticket_id) == ("delivered", 200, ticket_id)
    assert outcome.resource is not None
    assert [m["message"] for m in outcome.resource["messages"]] == ["first"]
    assert outcome.resource["client"]["email"] == KNOWN["email"]


def test_unknown_ticket_read_fails_with_404(client: SppClient, sandbox: Sandbox) -> None:
    outcome = client.get_ticket(404404)

    assert (outcome.result, outcome.http_status, outcome.error) == (
        "failed",
        404,
        "SPP rejected the ticket look-up: HTTP 404",
    )
