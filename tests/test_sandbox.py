"""The SPP sandbox, exercised over a real loopback port with ``requests`` (no mocks)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bridge.sandbox import Sandbox, SandboxServer, parse_step

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
VALID = {"user_id": 7, "subject": "Printer on fire"}
FULL = {
    "user_id": 7,
    "subject": "Printer on fire",
    "status": 1,
    "employees": [3, 4],
    "tags": ["website"],
    "order": "123456",
    "note": "It is very hot.",
    "metadata": {"bridge_event_id": "ev_1", "campaign": "spring"},
}
MISSING = "<missing>"  # marks a key left out of the body


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(Sandbox(token=TOKEN, api_version="2024-03-05")) as running:
        yield running


@pytest.fixture
def sandbox(server: SandboxServer) -> Sandbox:
    server.sandbox.reset()
    return server.sandbox


@pytest.fixture
def tickets_url(server: SandboxServer, sandbox: Sandbox) -> str:
    return f"{server.url}/api/tickets"


def post(url: str, body: Any = VALID, headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
    return requests.post(
        url, json=body, headers=AUTH if headers is None else headers, timeout=kwargs.pop("timeout", 5), **kwargs
    )


def state(server: SandboxServer) -> dict[str, Any]:
    seen: dict[str, Any] = requests.get(f"{server.url}/_sandbox/tickets", timeout=5).json()
    return seen


def test_created_ticket_has_resource_body_and_headers(tickets_url: str) -> None:
    response = post(tickets_url, FULL)
    assert response.status_code == 201
    uuid.UUID(response.headers["X-Api-Identifier"])
    assert response.headers["X-Api-Version"] == "2024-03-05"
    ticket = response.json()
    assert ticket["id"] == 1
    assert ticket["subject"] == FULL["subject"] and ticket["user_id"] == 7
    assert ticket["status"] == "Open" and ticket["source"] == "API"
    assert ticket["tags"] == ["website"] and ticket["note"] == "It is very hot."
    assert [e["id"] for e in ticket["employees"]] == [3, 4]
    assert set(ticket["employees"][0]) == {"id", "name_f", "name_l", "group_id", "role_id"}
    assert ticket["client"] == {"id": 7} and ticket["metadata"] == FULL["metadata"]
    assert ticket["created_at"].endswith("+00:00") and ticket["date_closed"] is None
    for key in ("updated_at", "last_message_at", "form_data", "order_id", "order", "ticket"):
        assert key in ticket


def test_ids_increment_and_requests_are_recorded(server: SandboxServer, tickets_url: str) -> None:
    headers = {**AUTH, "X-Api-Version": "2024-03-05", "User-Agent": "spp-ticket-bridge/0.1"}
    first, second = post(tickets_url, headers=headers), post(tickets_url, FULL, headers=headers)
    assert (first.json()["id"], second.json()["id"]) == (1, 2)
    seen = state(server)
    assert seen["requests_seen"] == 2
    stored = seen["tickets"][1]
    assert stored["id"] == 2 and stored["request"] == FULL
    assert stored["api_identifier"] == second.headers["X-Api-Identifier"]
    assert stored["headers"]["User-Agent"] == "spp-ticket-bridge/0.1"
    assert stored["headers"]["X-Api-Version"] == "2024-03-05"
    assert stored["headers"]["Content-Type"] == "application/json"
    assert stored["headers"]["Accept"] == "application/json"


def test_concurrent_requests_get_distinct_ids(server: SandboxServer, tickets_url: str) -> None:
    ids: list[int] = []
    threads = [threading.Thread(target=lambda: ids.append(post(tickets_url).json()["id"])) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(ids) == list(range(1, 13))
    assert len(state(server)["tickets"]) == 12


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"bearer {TOKEN}"},
    ],
)
def test_wrong_or_missing_token_is_401(tickets_url: str, headers: dict[str, str]) -> None:
    response = post(tickets_url, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthenticated."}


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b'{"user_id": 1, "subject": "x"}', "text/plain"),
        (b"user_id=1&subject=x", "application/x-www-form-urlencoded"),
        (b"{not json", "application/json"),
        (b'[{"user_id": 1, "subject": "x"}]', "application/json"),
        (b'"just a string"', "application/json"),
    ],
)
def test_body_that_is_not_a_json_object_is_400(tickets_url: str, data: bytes, content_type: str) -> None:
    headers = {**AUTH, "Content-Type": content_type}
    response = requests.post(tickets_url, data=data, headers=headers, timeout=5)
    assert response.status_code == 400
    assert response.json()["message"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"user_id": MISSING}, "user_id"),
        ({"user_id": None}, "user_id"),
        ({"user_id": "1"}, "user_id"),
        ({"user_id": True}, "user_id"),
        ({"user_id": 1.5}, "user_id"),
        ({"user_id": 1.0}, "user_id"),
        ({"subject": MISSING}, "subject"),
        ({"subject": None}, "subject"),
        ({"subject": ""}, "subject"),
        ({"subject": "   "}, "subject"),
        ({"subject": 5}, "subject"),
        ({"status": "1"}, "status"),
        ({"status": False}, "status"),
        ({"employees": ["1"]}, "employees.0"),
        ({"employees": 3}, "employees"),
        ({"tags": [1]}, "tags.0"),
        ({"tags": "website"}, "tags"),
        ({"order": 123}, "order"),
        ({"note": 5}, "note"),
        ({"note": None}, "note"),
        ({"metadata": {"a": 1}}, "metadata.a"),
        ({"metadata": {"a": ""}}, "metadata.a"),
        ({"metadata": []}, "metadata"),
        ({"metadata": "x"}, "metadata"),
        ({"foo": "bar"}, "foo"),
    ],
)
def test_invalid_store_ticket_request_is_422(
    server: SandboxServer, tickets_url: str, change: dict[str, Any], field: str
) -> None:
    body = {key: value for key, value in {**FULL, **change}.items() if value != MISSING}
    response = post(tickets_url, body)
    assert response.status_code == 422
    payload = response.json()
    assert payload["message"] == "The given data was invalid."
    assert list(payload["errors"]) == [field]
    assert all(isinstance(text, str) for text in payload["errors"][field])
    assert state(server)["tickets"] == []


def test_unknown_field_error_says_so(tickets_url: str) -> None:
    errors = post(tickets_url, {**VALID, "priority": "high"}).json()["errors"]
    assert "unknown field" in errors["priority"][0]


def test_every_failing_rule_is_reported(tickets_url: str) -> None:
    response = post(tickets_url, {"tags": [1, "ok", 2], "foo": 1})
    assert response.status_code == 422
    assert set(response.json()["errors"]) == {"user_id", "subject", "tags.0", "tags.2", "foo"}


def test_optional_fields_may_be_empty_containers(tickets_url: str) -> None:
    body = {**VALID, "employees": [], "tags": [], "metadata": {}}
    assert post(tickets_url, body).status_code == 201


def test_scripted_statuses_come_in_order_then_normal(server: SandboxServer, sandbox: Sandbox, tickets_url: str) -> None:
    sandbox.script(503, 429, 400, 422, 500, 201, "404")
    codes = [post(tickets_url).status_code for _ in range(8)]
    assert codes == [503, 429, 400, 422, 500, 201, 404, 201]
    assert [t["id"] for t in state(server)["tickets"]] == [1, 2]
    assert state(server)["requests_seen"] == 8


def test_scripted_error_has_json_body_and_retry_after_only_when_asked(sandbox: Sandbox, tickets_url: str) -> None:
    sandbox.script("429:7", 429, "503:2")
    limited, plain, unavailable = (post(tickets_url) for _ in range(3))
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert limited.json()["message"]
    assert "Retry-After" not in plain.headers
    assert unavailable.status_code == 503 and unavailable.headers["Retry-After"] == "2"


def test_script_endpoint_queues_steps(server: SandboxServer, tickets_url: str) -> None:
    answer = requests.post(f"{server.url}/_sandbox/script", json={"steps": [503, "429:7", "noid"]}, timeout=5)
    assert answer.status_code == 200
    codes = [post(tickets_url).status_code for _ in range(4)]
    assert codes == [503, 429, 201, 201]


@pytest.mark.parametrize("steps", [["bogus"], [99], ["500:3"], ["hang:x"], [True], "503"])
def test_script_endpoint_rejects_bad_steps(server: SandboxServer, steps: Any) -> None:
    answer = requests.post(f"{server.url}/_sandbox/script", json={"steps": steps}, timeout=5)
    assert answer.status_code == 400


def test_parse_step_rejects_bad_steps_before_queueing_any(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="Retry-After"):
        sandbox.script(503, "400:5")
    with pytest.raises(TypeError):
        parse_step(2.5)  # type: ignore[arg-type]
    assert parse_step("hang:0.5").seconds == 0.5
    assert parse_step(" 429:7 ").retry_after == 7


def test_hang_times_out_the_client_but_creates_the_ticket(
    server: SandboxServer, sandbox: Sandbox, tickets_url: str
) -> None:
    sandbox.script("hang:1")
    with pytest.raises(requests.exceptions.ReadTimeout):
        post(tickets_url, timeout=(2, 0.3))
    deadline = time.monotonic() + 3
    while not state(server)["tickets"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [t["request"] for t in state(server)["tickets"]] == [VALID]


def test_reset_step_drops_the_connection(server: SandboxServer, sandbox: Sandbox, tickets_url: str) -> None:
    sandbox.script("reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        post(tickets_url)
    assert state(server) == {"tickets": [], "requests_seen": 1}
    assert post(tickets_url).status_code == 201


def test_reset_step_also_drops_a_kept_alive_connection(sandbox: Sandbox, tickets_url: str) -> None:
    with requests.Session() as session:
        assert session.post(tickets_url, json=VALID, headers=AUTH, timeout=5).ok
        sandbox.script("reset")
        with pytest.raises(requests.exceptions.ConnectionError):
            session.post(tickets_url, json=VALID, headers=AUTH, timeout=5)
        assert session.post(tickets_url, json=VALID, headers=AUTH, timeout=5).status_code == 201


def test_noid_step_answers_201_without_id(server: SandboxServer, sandbox: Sandbox, tickets_url: str) -> None:
    sandbox.script("noid")
    response = post(tickets_url)
    assert response.status_code == 201
    assert response.json() == {"ok": True}
    assert state(server)["tickets"] == []


def test_fail_rate_one_always_answers_503() -> None:
    with SandboxServer(Sandbox(token=TOKEN, fail_rate=1.0)) as faulty:
        responses = [post(f"{faulty.url}/api/tickets") for _ in range(5)]
        assert {r.status_code for r in responses} == {503}
        assert "fault injection" in responses[0].json()["message"]
        assert faulty.sandbox.snapshot() == {"tickets": [], "requests_seen": 5}


def test_fail_rate_is_reproducible_with_a_seed() -> None:
    def codes(seed: int) -> list[int]:
        with SandboxServer(Sandbox(token=TOKEN, fail_rate=0.5, seed=seed)) as flaky:
            return [post(f"{flaky.url}/api/tickets").status_code for _ in range(10)]

    first = codes(3)
    assert first == codes(3)
    assert set(first) == {201, 503}


def test_latency_delays_every_answer() -> None:
    with SandboxServer(Sandbox(token=TOKEN, latency_ms=200)) as slow:
        started = time.monotonic()
        response = post(f"{slow.url}/api/tickets", headers={})
        assert time.monotonic() - started >= 0.2
        assert response.status_code == 401


def test_reset_endpoint_clears_tickets_counters_and_script(
    server: SandboxServer, sandbox: Sandbox, tickets_url: str
) -> None:
    post(tickets_url)
    sandbox.script(503)
    assert requests.post(f"{server.url}/_sandbox/reset", timeout=5).status_code == 200
    assert state(server) == {"tickets": [], "requests_seen": 0}
    response = post(tickets_url)
    assert response.status_code == 201 and response.json()["id"] == 1


def test_ids_start_at_first_id_and_a_function_is_asked_again_at_reset() -> None:
    starts = iter([1_000, 5_000])
    with SandboxServer(Sandbox(token=TOKEN, first_id=lambda: next(starts))) as running:
        url = f"{running.url}/api/tickets"
        assert [post(url).json()["id"] for _ in range(2)] == [1_000, 1_001]
        running.sandbox.reset()
        assert post(url).json()["id"] == 5_000
    assert Sandbox(first_id=42).store(VALID, {})["id"] == 42


def test_sandbox_reset_keeps_configuration() -> None:
    sandbox = Sandbox(token="t", latency_ms=5, fail_rate=0.25)
    sandbox.script(503)
    sandbox.reset()
    assert (sandbox.token, sandbox.latency_ms, sandbox.fail_rate) == ("t", 5, 0.25)
    assert sandbox.tickets == [] and sandbox.requests_seen == 0
    assert sandbox.app() is sandbox.app()


def test_description_and_json_404(server: SandboxServer) -> None:
    home = requests.get(f"{server.url}/", timeout=5)
    assert home.status_code == 200 and "/api/tickets" in home.text
    missing = requests.get(f"{server.url}/nope", timeout=5)
    assert missing.status_code == 404 and missing.json() == {"message": "Not Found"}
    wrong_method = requests.get(f"{server.url}/api/tickets", timeout=5)
    assert wrong_method.status_code == 405 and wrong_method.json()["message"]


def test_stopped_server_refuses_connections() -> None:
    running = SandboxServer(Sandbox()).start()
    url = running.url
    running.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=2)
