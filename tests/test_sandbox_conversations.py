"""The sandbox's conversation endpoints (messages, reading tickets, clients) over a real port.

``requests`` is never mocked; multipart bodies are built by ``requests`` itself, or by hand
where a test needs a part that ``requests`` would not send (``filename*``, no content type).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests

from bridge.sandbox import Sandbox, SandboxServer
from bridge.sandbox.state import FIRST_CLIENT_ID, FIRST_MESSAGE_ID
from tests.conversations import KNOWN, PDF, UMLAUT_NAME, fresh, serve_with_known_client

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
TICKET = {"user_id": 42, "subject": "Invoice question", "note": "from the bridge", "tags": ["email"]}
MISSING = "<missing>"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    yield from serve_with_known_client(TOKEN)


@pytest.fixture
def sandbox(server: SandboxServer) -> Sandbox:
    return fresh(server)


@pytest.fixture
def ticket(server: SandboxServer, sandbox: Sandbox) -> dict[str, Any]:
    response = requests.post(f"{server.url}/api/tickets", json=TICKET, headers=AUTH, timeout=5)
    assert response.status_code == 201
    created: dict[str, Any] = response.json()
    created["number"] = sandbox.tickets[-1]["number"]
    return created


def messages_url(server: SandboxServer, key: int | str) -> str:
    return f"{server.url}/api/ticket_messages/{key}"


def post_json(url: str, body: Any, headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
    return requests.post(url, json=body, headers=AUTH if headers is None else headers, timeout=5, **kwargs)


def multipart(parts: list[tuple[str, str]], boundary: str = "sandbox-boundary") -> tuple[bytes, dict[str, str]]:
    """A multipart body from (part headers, content) pairs, exactly as written."""
    body = b""
    for headers, content in parts:
        body += f"--{boundary}\r\n{headers}\r\n\r\n".encode() + content.encode() + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"}


def text_part(name: str, value: str) -> tuple[str, str]:
    return f'Content-Disposition: form-data; name="{name}"', value


def file_part(name: str, filename: str, content_type: str | None = "text/plain") -> tuple[str, str]:
    headers = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"'
    return headers + (f"\r\nContent-Type: {content_type}" if content_type else ""), "a"


def state(server: SandboxServer) -> dict[str, Any]:
    seen: dict[str, Any] = requests.get(f"{server.url}/_sandbox/state", timeout=5).json()
    return seen


# --- POST /api/ticket_messages/{ticket}: JSON ---


def test_json_message_is_created_with_a_message_resource(server: SandboxServer, ticket: dict[str, Any]) -> None:
    response = post_json(messages_url(server, ticket["id"]), {"message": "Hello, world", "user_id": 42})

    assert response.status_code == 201
    uuid.UUID(response.headers["X-Api-Identifier"])
    assert response.headers["X-Api-Version"] == "2024-03-05"
    message = response.json()
    assert set(message) == {"id", "user_id", "created_at", "message", "staff_only", "files"}
    assert message["id"] == FIRST_MESSAGE_ID
    assert (message["user_id"], message["message"], message["staff_only"], message["files"]) == (
        42,
        "Hello, world",
        False,
        [],
    )
    assert message["created_at"].endswith("+00:00")
    [stored] = state(server)["tickets"][0]["messages"]
    assert stored["transport"] == "json" and stored["api_identifier"] == response.headers["X-Api-Identifier"]


def test_message_without_user_id_is_the_token_owners_and_staff_only_is_kept(
    server: SandboxServer, ticket: dict[str, Any]
) -> None:
    message = post_json(messages_url(server, ticket["id"]), {"message": "Internal", "staff_only": True}).json()

    assert (message["user_id"], message["staff_only"]) == (1, True)


def test_ticket_is_found_by_its_number_in_any_case(server: SandboxServer, ticket: dict[str, Any]) -> None:
    number = ticket["number"]
    assert len(number) == 8 and not number.isdigit()

    for key in (number, number.lower()):
        assert post_json(messages_url(server, key), {"message": "by number"}).status_code == 201
    assert len(state(server)["tickets"][0]["messages"]) == 2


@pytest.mark.parametrize("key", ["999", "ZZZZZZZZ", str(FIRST_CLIENT_ID), "0"])
def test_unknown_ticket_is_404(server: SandboxServer, ticket: dict[str, Any], key: str) -> None:
    response = post_json(messages_url(server, key), {"message": "lost"})

    assert response.status_code == 404
    assert response.json() == {"message": "Ticket not found."}
    assert state(server)["tickets"][0]["messages"] == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_wrong_token_is_401_before_the_ticket_is_looked_up(server: SandboxServer, headers: dict[str, str]) -> None:
    response = post_json(messages_url(server, 999), {"message": "x"}, headers=headers)

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthenticated."}


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"message": MISSING}, {"message"}),
        ({"message": None}, {"message"}),
        ({"message": ""}, {"message"}),
        ({"message": "  \n "}, {"message"}),
        ({"message": 5}, {"message"}),
        ({"user_id": "42"}, {"user_id"}),
        ({"user_id": True}, {"user_id"}),
        ({"user_id": 4.2}, {"user_id"}),
        ({"staff_only": "true"}, {"staff_only"}),
        ({"staff_only": 1}, {"staff_only"}),
        ({"staff_only": None}, {"staff_only"}),
        ({"attachments": ["aGVsbG8="]}, {"attachments"}),
        ({"body": "x"}, {"body"}),
        ({"message": "", "user_id": "x"}, {"message", "user_id"}),
    ],
)
def test_invalid_json_message_is_422(
    server: SandboxServer, ticket: dict[str, Any], change: dict[str, Any], fields: set[str]
) -> None:
    body = {k: v for k, v in {"message": "ok", "user_id": 42, **change}.items() if v != MISSING}

    response = post_json(messages_url(server, ticket["id"]), body)

    assert response.status_code == 422
    payload = response.json()
    assert payload["message"] == "The given data was invalid."
    assert set(payload["errors"]) == fields
    assert all(isinstance(text, str) for texts in payload["errors"].values() for text in texts)
    assert state(server)["tickets"][0]["messages"] == []


@pytest.mark.parametrize(
    ("data", "content_type"),
    [(b"message=hi", "application/x-www-form-urlencoded"), (b"hi", "text/plain"), (b"[1]", "application/json")],
)
def test_body_neither_json_object_nor_multipart_is_400(
    server: SandboxServer, ticket: dict[str, Any], data: bytes, content_type: str
) -> None:
    headers = {**AUTH, "Content-Type": content_type}
    response = requests.post(messages_url(server, ticket["id"]), data=data, headers=headers, timeout=5)

    assert response.status_code == 400 and response.json()["message"]


# --- POST /api/ticket_messages/{ticket}: multipart with files ---


def test_multipart_files_are_stored_and_served_byte_for_byte(server: SandboxServer, ticket: dict[str, Any]) -> None:
    files = [
        ("attachments[]", (UMLAUT_NAME, PDF, "application/pdf")),
        ("attachments[]", ("notes.txt", "Grüße\n".encode(), "text/plain; charset=utf-8")),
    ]
    data = {"message": "Please see the attached transfer.", "user_id": "42", "staff_only": "0"}

    response = requests.post(messages_url(server, ticket["id"]), data=data, files=files, headers=AUTH, timeout=30)

    assert response.status_code == 201, response.text
    message = response.json()
    assert (message["user_id"], message["staff_only"]) == (42, False)
    pdf_url, notes_url = message["files"]
    assert pdf_url == f"{server.url}/_sandbox/files/1/{quote(UMLAUT_NAME)}"
    served = requests.get(pdf_url, timeout=30)
    assert served.status_code == 200
    assert served.content == PDF
    assert served.headers["Content-Type"] == "application/pdf"
    assert requests.get(notes_url, timeout=5).content == "Grüße\n".encode()
    [stored] = state(server)["tickets"][0]["messages"]
    assert stored["transport"] == "multipart"
    assert [f["name"] for f in stored["files"]] == [UMLAUT_NAME, "notes.txt"]
    assert stored["files"][0]["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert stored["files"][0]["size"] == len(PDF)


def test_rfc5987_filename_is_decoded(server: SandboxServer, ticket: dict[str, Any], sandbox: Sandbox) -> None:
    disposition = "Content-Disposition: form-data; name=\"attachments[]\"; filename*=UTF-8''" + quote(UMLAUT_NAME)
    body, headers = multipart([text_part("message", "see file"), (f"{disposition}\r\nContent-Type: text/plain", "x")])

    response = requests.post(messages_url(server, ticket["id"]), data=body, headers=headers, timeout=5)

    assert response.status_code == 201, response.text
    [stored] = sandbox.messages_of(ticket["id"])
    assert [(f.name, f.content_type, f.content) for f in stored.files] == [(UMLAUT_NAME, "text/plain", b"x")]


@pytest.mark.parametrize(("raw", "staff_only"), [("1", True), ("true", True), ("0", False), ("false", False)])
def test_multipart_staff_only_values(server: SandboxServer, ticket: dict[str, Any], raw: str, staff_only: bool) -> None:
    body, headers = multipart([text_part("message", "m"), text_part("staff_only", raw)])

    response = requests.post(messages_url(server, ticket["id"]), data=body, headers=headers, timeout=5)

    assert response.status_code == 201
    assert response.json()["staff_only"] is staff_only


@pytest.mark.parametrize(
    ("parts", "fields"),
    [
        ([text_part("user_id", "42")], {"message"}),
        ([text_part("message", "")], {"message"}),
        ([text_part("message", "   ")], {"message"}),
        ([text_part("message", "m"), text_part("user_id", "abc")], {"user_id"}),
        ([text_part("message", "m"), text_part("user_id", "4.2")], {"user_id"}),
        ([text_part("message", "m"), text_part("user_id", "-3")], {"user_id"}),
        ([text_part("message", "m"), text_part("staff_only", "yes")], {"staff_only"}),
        ([text_part("message", "m"), text_part("staff_only", "2")], {"staff_only"}),
        ([text_part("message", "m"), text_part("attachments[]", "not a file")], {"attachments.0"}),
        ([text_part("message", "m"), text_part("subject", "x")], {"subject"}),
        ([text_part("message", "m"), file_part("attachments", "a.txt")], {"attachments"}),
        ([text_part("message", "m"), file_part("attachments[]", "a.txt", None)], {"attachments.0"}),
        ([text_part("message", "m"), file_part("attachments[]", "")], {"attachments.0"}),
        ([text_part("message", "m"), file_part("file", "a.txt")], {"file"}),
    ],
)
def test_invalid_multipart_message_is_422(
    server: SandboxServer, ticket: dict[str, Any], parts: list[tuple[str, str]], fields: set[str]
) -> None:
    body, headers = multipart(parts)

    response = requests.post(messages_url(server, ticket["id"]), data=body, headers=headers, timeout=5)

    assert response.status_code == 422, response.text
    assert set(response.json()["errors"]) == fields
    assert state(server)["tickets"][0]["messages"] == []


# --- GET /api/ticket_messages/{ticket} and GET /api/tickets/{ticket} ---


def test_messages_are_listed_newest_first_in_pages(server: SandboxServer, ticket: dict[str, Any]) -> None:
    url = messages_url(server, ticket["id"])
    ids = [post_json(url, {"message": f"m{n}"}).json()["id"] for n in range(5)]

    first = requests.get(url, params={"limit": 2}, headers=AUTH, timeout=5)
    third = requests.get(url, params={"limit": 2, "page": 3}, headers=AUTH, timeout=5).json()

    assert first.status_code == 200
    page = first.json()
    assert [m["message"] for m in page["data"]] == ["m4", "m3"]
    assert [m["id"] for m in page["data"]] == ids[::-1][:2]
    assert page["meta"] | {"path": None} == {
        "current_page": 1,
        "from": 1,
        "last_page": 3,
        "path": None,
        "per_page": 2,
        "to": 2,
        "total": 5,
    }
    assert page["links"]["prev"] is None and page["links"]["next"].endswith("limit=2&page=2")
    assert [m["message"] for m in third["data"]] == ["m0"] and third["links"]["next"] is None


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"page": "0"}, {"page": "-1"}])
def test_bad_page_arguments_are_422(server: SandboxServer, ticket: dict[str, Any], params: dict[str, str]) -> None:
    response = requests.get(messages_url(server, ticket["id"]), params=params, headers=AUTH, timeout=5)

    assert response.status_code == 422
    assert set(response.json()["errors"]) == set(params)


def test_listing_messages_of_an_unknown_ticket_is_404(server: SandboxServer, ticket: dict[str, Any]) -> None:
    assert requests.get(messages_url(server, 12345), headers=AUTH, timeout=5).status_code == 404
    assert requests.get(messages_url(server, ticket["id"]), timeout=5).status_code == 401


def test_ticket_is_read_with_messages_files_and_client(server: SandboxServer, ticket: dict[str, Any]) -> None:
    url = messages_url(server, ticket["id"])
    post_json(url, {"message": "first", "user_id": 42})
    files = [("attachments[]", ("a.bin", b"\x00\x01", "application/octet-stream"))]
    requests.post(url, data={"message": "second"}, files=files, headers=AUTH, timeout=5).raise_for_status()

    response = requests.get(f"{server.url}/api/tickets/{ticket['number']}", headers=AUTH, timeout=5)

    assert response.status_code == 200
    uuid.UUID(response.headers["X-Api-Identifier"])
    read = response.json()
    assert read["id"] == ticket["id"]
    assert (read["subject"], read["note"], read["user_id"], read["tags"]) == (
        "Invoice question",
        "from the bridge",
        42,
        ["email"],
    )
    assert [m["message"] for m in read["messages"]] == ["first", "second"]  # oldest first
    assert set(read["messages"][1]) == {"id", "user_id", "created_at", "message", "staff_only", "files"}
    assert requests.get(read["messages"][1]["files"][0], timeout=5).content == b"\x00\x01"
    assert read["client"]["email"] == KNOWN["email"] and read["client"]["name"] == "Kim Known"
    assert read["metadata"] == {} and read["status"] == "Open"


def test_unknown_ticket_read_is_404_and_needs_the_token(server: SandboxServer, ticket: dict[str, Any]) -> None:
    assert requests.get(f"{server.url}/api/tickets/777", headers=AUTH, timeout=5).status_code == 404
    assert requests.get(f"{server.url}/api/tickets/{ticket['id']}", timeout=5).status_code == 401


def test_unknown_client_stays_an_id_in_the_ticket(server: SandboxServer, sandbox: Sandbox) -> None:
    created = post_json(f"{server.url}/api/tickets", {"user_id": 5, "subject": "s"}).json()

    assert created["client"] == {"id": 5}


# --- clients ---


def clients(server: SandboxServer, **params: Any) -> requests.Response:
    return requests.get(f"{server.url}/api/clients", params=params, headers=AUTH, timeout=5)


def by_email(email: str) -> dict[str, str]:
    return {"filters[email][$eq]": email}


def test_seeded_client_is_found_by_email_in_any_case(server: SandboxServer, sandbox: Sandbox) -> None:
    sandbox.seed_client(email="other@example.com", name_f="O")

    response = clients(server, **by_email("known.client@EXAMPLE.com"))

    assert response.status_code == 200
    uuid.UUID(response.headers["X-Api-Identifier"])
    page = response.json()
    assert [c["id"] for c in page["data"]] == [42]
    user = page["data"][0]
    assert {k: user[k] for k in ("email", "name_f", "name_l", "name", "company")} == {
        "email": KNOWN["email"],
        "name_f": "Kim",
        "name_l": "Known",
        "name": "Kim Known",
        "company": "Known Ltd",
    }
    assert page["meta"]["total"] == 1
    assert clients(server, **by_email("nobody@example.com")).json()["data"] == []


def test_clients_come_newest_first_and_in_pages(server: SandboxServer, sandbox: Sandbox) -> None:
    for n in range(4):
        sandbox.seed_client(email=f"c{n}@example.com")

    first = clients(server, limit=2).json()
    last = clients(server, limit=2, page=3).json()

    assert [c["email"] for c in first["data"]] == ["c3@example.com", "c2@example.com"]
    assert [c["email"] for c in last["data"]] == [KNOWN["email"]]
    assert first["meta"]["total"] == 5 and first["meta"]["last_page"] == 3


def test_ignore_filter_mode_answers_every_client(server: SandboxServer, sandbox: Sandbox) -> None:
    sandbox.seed_client(email="other@example.com")
    answer = requests.post(f"{server.url}/_sandbox/settings", json={"ignore_client_filter": True}, timeout=5)
    assert answer.status_code == 200

    page = clients(server, limit=1, **by_email(KNOWN["email"])).json()

    assert [c["email"] for c in page["data"]] == ["other@example.com"]
    assert page["meta"]["total"] == 2
    assert "filters%5Bemail%5D%5B%24eq%5D=" in page["links"]["next"]  # the next page keeps the query
    assert state(server)["ignore_client_filter"] is True


@pytest.mark.parametrize("payload", [{}, {"ignore_client_filter": "yes"}, {"ignore_client_filter": True, "x": 1}])
def test_settings_need_a_boolean(server: SandboxServer, payload: dict[str, Any]) -> None:
    assert requests.post(f"{server.url}/_sandbox/settings", json=payload, timeout=5).status_code == 400


@pytest.mark.parametrize(
    "params", [{"filters[name_f][$eq]": "Kim"}, {"filters[email][$in]": "a@b.c"}, {"filters": "x"}]
)
def test_unsupported_filters_are_422_not_ignored(server: SandboxServer, params: dict[str, str]) -> None:
    response = requests.get(f"{server.url}/api/clients", params=params, headers=AUTH, timeout=5)

    assert response.status_code == 422
    assert set(response.json()["errors"]) == set(params)


def test_client_list_needs_the_token(server: SandboxServer) -> None:
    assert requests.get(f"{server.url}/api/clients", timeout=5).status_code == 401


def test_created_client_has_an_id_apart_from_tickets_and_is_found(server: SandboxServer, sandbox: Sandbox) -> None:
    body = {"email": "new@example.com", "name_f": "Nia", "name_l": "New", "company": "New Co"}

    response = post_json(f"{server.url}/api/clients", body)

    assert response.status_code == 201
    uuid.UUID(response.headers["X-Api-Identifier"])
    user = response.json()
    assert user["id"] == FIRST_CLIENT_ID
    assert (user["email"], user["name"], user["company"]) == ("new@example.com", "Nia New", "New Co")
    assert clients(server, **by_email("NEW@example.com")).json()["data"][0]["id"] == FIRST_CLIENT_ID
    assert [c["id"] for c in state(server)["clients"]] == [42, FIRST_CLIENT_ID]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name_f": "No Email"}, {"email"}),
        ({"email": ""}, {"email"}),
        ({"email": "not-an-email"}, {"email"}),
        ({"email": "a b@example.com"}, {"email"}),
        ({"email": "a@b@c"}, {"email"}),
        ({"email": 5}, {"email"}),
        ({"email": "x@example.com", "name_f": 1}, {"name_f"}),
        ({"email": "x@example.com", "balance": "10"}, {"balance"}),
        ({"email": "x@example.com", "status_id": "1"}, {"status_id"}),
        ({"email": "x@example.com", "address": {"town": "X"}}, {"address.town"}),
        ({"email": "x@example.com", "address": "Main St"}, {"address"}),
        ({"email": "x@example.com", "custom_fields": []}, {"custom_fields"}),
        ({"email": "x@example.com", "password": "secret"}, {"password"}),
        ({"email": "KNOWN.client@example.com"}, {"email"}),
    ],
)
def test_invalid_or_taken_client_is_422(
    server: SandboxServer, sandbox: Sandbox, body: dict[str, Any], fields: set[str]
) -> None:
    response = post_json(f"{server.url}/api/clients", body)

    assert response.status_code == 422
    assert set(response.json()["errors"]) == fields
    assert [c["id"] for c in state(server)["clients"]] == [42]


def test_taken_email_says_so(server: SandboxServer, sandbox: Sandbox) -> None:
    errors = post_json(f"{server.url}/api/clients", {"email": KNOWN["email"].upper()}).json()["errors"]

    assert errors == {"email": ["The email has already been taken."]}


def test_full_client_is_accepted(server: SandboxServer, sandbox: Sandbox) -> None:
    body = {
        "email": "full@example.com",
        "name_f": "F",
        "name_l": "L",
        "company": "C",
        "phone": "123",
        "tax_id": "T1",
        "note": "n",
        "balance": 10.5,
        "optin": "Yes",
        "status_id": 1,
        "custom_fields": {"plan": "gold"},
        "address": {"line_1": "1 Main St", "city": "Town", "country": "US"},
    }

    user = post_json(f"{server.url}/api/clients", body).json()

    assert user["address"]["line_1"] == "1 Main St" and user["balance"] == 10.5
    assert user["custom_fields"] == {"plan": "gold"}


def test_clients_seeded_over_http_and_reset(server: SandboxServer, sandbox: Sandbox) -> None:
    answer = requests.post(
        f"{server.url}/_sandbox/clients", json={"clients": [{"email": "s@example.com", "id": 7}]}, timeout=5
    )
    assert answer.status_code == 200 and answer.json()["clients"][0]["id"] == 7
    post_json(f"{server.url}/api/clients", {"email": "api@example.com"})
    for refused in ({"email": "s@example.com"}, ["x"], {"name_f": "no email"}):
        assert requests.post(f"{server.url}/_sandbox/clients", json=refused, timeout=5).status_code == 400

    requests.post(f"{server.url}/_sandbox/reset", timeout=5).raise_for_status()

    assert [c["email"] for c in state(server)["clients"]] == [KNOWN["email"]]  # the constructor's clients stay


def test_reset_forgets_messages_and_files(server: SandboxServer, ticket: dict[str, Any]) -> None:
    files = [("attachments[]", ("a.txt", b"a", "text/plain"))]
    message = requests.post(
        messages_url(server, ticket["id"]), data={"message": "m"}, files=files, headers=AUTH, timeout=5
    ).json()

    requests.post(f"{server.url}/_sandbox/reset", timeout=5).raise_for_status()

    assert requests.get(message["files"][0], timeout=5).status_code == 404
    assert state(server)["tickets"] == []


def test_file_url_needs_its_own_name(server: SandboxServer, ticket: dict[str, Any]) -> None:
    files = [("attachments[]", ("a.txt", b"a", "text/plain"))]
    url = requests.post(
        messages_url(server, ticket["id"]), data={"message": "m"}, files=files, headers=AUTH, timeout=5
    ).json()["files"][0]

    assert requests.get(url.replace("a.txt", "b.txt"), timeout=5).status_code == 404


# --- fault scripts per endpoint ---


def test_script_targets_one_endpoint_only(server: SandboxServer, sandbox: Sandbox, ticket: dict[str, Any]) -> None:
    answer = requests.post(
        f"{server.url}/_sandbox/script", json={"endpoint": "messages", "steps": [503, "429:7", "noid", 201]}, timeout=5
    )
    assert answer.json() == {"endpoint": "messages", "queued": 4}
    url = messages_url(server, ticket["id"])

    assert post_json(f"{server.url}/api/tickets", TICKET).status_code == 201  # tickets are not scripted
    answers = [post_json(url, {"message": "m"}) for _ in range(5)]

    assert [a.status_code for a in answers] == [503, 429, 201, 201, 201]
    assert answers[1].headers["Retry-After"] == "7"
    assert answers[2].json() == {"ok": True}
    assert len(sandbox.messages_of(ticket["id"])) == 2
    assert state(server)["requests_seen"] == {"tickets": 2, "messages": 5, "clients": 0, "create_client": 0}


def test_messages_reset_and_hang(server: SandboxServer, sandbox: Sandbox, ticket: dict[str, Any]) -> None:
    sandbox.script("reset", "hang:1", endpoint="messages")
    url = messages_url(server, ticket["id"])

    with pytest.raises(requests.exceptions.ConnectionError):
        post_json(url, {"message": "dropped"})
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(url, json={"message": "slow"}, headers=AUTH, timeout=(2, 0.3))
    deadline = time.monotonic() + 3
    while not sandbox.messages_of(ticket["id"]) and time.monotonic() < deadline:
        time.sleep(0.05)

    assert [m.message for m in sandbox.messages_of(ticket["id"])] == ["slow"]


def test_client_endpoints_have_scripts_of_their_own(server: SandboxServer, sandbox: Sandbox) -> None:
    sandbox.script(502, "noid", 200, endpoint="clients")
    sandbox.script("429:3", endpoint="create_client")

    looked_up = [clients(server, **by_email(KNOWN["email"])) for _ in range(3)]
    created = [post_json(f"{server.url}/api/clients", {"email": "z@example.com"}) for _ in range(2)]

    assert [r.status_code for r in looked_up] == [502, 200, 200]
    assert looked_up[1].json() == {"ok": True} and looked_up[2].json()["data"][0]["id"] == 42
    assert [r.status_code for r in created] == [429, 201]
    assert created[0].headers["Retry-After"] == "3"


@pytest.mark.parametrize(
    "payload", [{"endpoint": "bogus", "steps": [503]}, {"endpoint": 5, "steps": [503]}, {"endpoint": "messages"}]
)
def test_script_for_an_unknown_endpoint_is_refused(server: SandboxServer, payload: dict[str, Any]) -> None:
    assert requests.post(f"{server.url}/_sandbox/script", json=payload, timeout=5).status_code == 400


def test_in_process_script_checks_the_endpoint(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        sandbox.script(503, endpoint="ticket")


def test_fail_rate_covers_every_scripted_endpoint() -> None:
    with SandboxServer(Sandbox(token=TOKEN, fail_rate=1.0, clients=[KNOWN])) as faulty:
        faulty.sandbox.store(TICKET, {})
        answers = [
            post_json(f"{faulty.url}/api/ticket_messages/1", {"message": "m"}),
            requests.get(f"{faulty.url}/api/clients", headers=AUTH, timeout=5),
            post_json(f"{faulty.url}/api/clients", {"email": "f@example.com"}),
        ]
        assert [a.status_code for a in answers] == [503, 503, 503]
        assert requests.get(f"{faulty.url}/api/tickets/1", headers=AUTH, timeout=5).status_code == 200


def test_description_lists_the_new_endpoints(server: SandboxServer) -> None:
    text = requests.get(f"{server.url}/", timeout=5).text

    for path in ("/api/ticket_messages/{ticket}", "/api/clients", "/_sandbox/state", "create_client"):
        assert path in text
