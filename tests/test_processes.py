"""Real processes: workers on PostgreSQL, SIGKILL and SIGTERM, gunicorn, configuration errors.

Each test here has its own sandbox, so that a delivery left hanging by a killed worker
cannot create a ticket inside another test.
"""

from __future__ import annotations

import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask

from bridge.app import create_app
from bridge.migrate import upgrade
from bridge.runtime import get_runtime
from bridge.sandbox import Sandbox, SandboxServer
from tests.conftest import (
    ADMIN_TOKEN,
    API_SECRET,
    DEFAULT_SOURCES,
    SPP_TOKEN,
    admin_headers,
    api_headers,
    bridge_env,
)
from tests.helpers import BIN, ROOT, flask_cmd, free_port, start_process, wait_for, web_is_up

pytestmark = pytest.mark.slow


@pytest.fixture
def own_sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer(Sandbox(token=SPP_TOKEN)).start()
    yield server
    server.stop()


@pytest.fixture
def env_for(tmp_path: Path, own_sandbox: SandboxServer):
    sources = tmp_path / "sources.yml"
    sources.write_text(textwrap.dedent(DEFAULT_SOURCES))

    def make(db: str, **extra: str) -> dict[str, str]:
        return bridge_env(db, own_sandbox.url, sources, **extra)

    return make


def app_on(env: dict[str, str]) -> Flask:
    app = create_app(env=env)
    upgrade(get_runtime(app).store.engine)
    return app


def post(app: Flask, n: int = 0) -> str:
    body = {"email": "alice@example.com", "subject": f"Request {n}", "message": "Hello"}
    response = app.test_client().post("/hooks/api", json=body, headers=api_headers())
    assert response.status_code == 200
    return str(response.get_json()["event_id"])


def status_of(app: Flask, event_id: str) -> str:
    found = get_runtime(app).store.queries.get_event(event_id)
    assert found
    return str(found["status"])


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout)


def started(log: Path) -> bool:
    return log.exists() and "started:" in log.read_text()


@pytest.mark.postgres
def test_two_workers_deliver_200_events_exactly_once(pg_url, env_for, own_sandbox, tmp_path) -> None:
    env = env_for(pg_url, BRIDGE_DELIVERY_CONCURRENCY="4")
    app = app_on(env)
    own_sandbox.sandbox.latency_ms = 20
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    workers = [start_process(flask_cmd("worker"), env, log) for log in logs]
    try:
        wait_for(lambda: all(started(log) for log in logs), timeout=30)
        ids = [post(app, n) for n in range(200)]
        wait_for(
            lambda: get_runtime(app).store.queries.count_by_status() == {"delivered": 200}, timeout=90, interval=0.2
        )
    finally:
        codes = [stop(w) for w in workers]
    assert codes == [0, 0]
    tickets = own_sandbox.sandbox.tickets
    assert len(tickets) == 200
    assert sorted(t["request"]["metadata"]["bridge_event_id"] for t in tickets) == sorted(ids)
    per_worker = [log.read_text().count("(ticket): delivered (HTTP 201") for log in logs]
    assert sum(per_worker) == 200 and min(per_worker) > 0, per_worker


@pytest.mark.postgres
def test_killed_worker_lease_expires_and_another_delivers(pg_url, env_for, own_sandbox, tmp_path) -> None:
    env = env_for(pg_url, BRIDGE_LEASE_SECONDS="3", BRIDGE_SPP_READ_TIMEOUT_SECONDS="2")
    app = app_on(env)
    own_sandbox.sandbox.script("hang:1.5")
    event_id = post(app)
    first = start_process(flask_cmd("worker"), env, tmp_path / "first.log")
    wait_for(lambda: own_sandbox.sandbox.requests_seen == 1, timeout=30)
    assert stop(first, signal.SIGKILL) == -signal.SIGKILL
    assert status_of(app, event_id) == "delivering"
    second = start_process(flask_cmd("worker"), env, tmp_path / "second.log")
    try:
        wait_for(lambda: status_of(app, event_id) == "delivered", timeout=30)
    finally:
        assert stop(second) == 0
    log = get_runtime(app).store.queries.list_attempts(event_id)
    assert [(a["step"], a["ambiguous"], a["outcome"]) for a in log] == [
        ("ticket", True, "retrying"),
        ("ticket", False, "delivered"),
        ("message", False, "delivered"),
    ]
    assert "lease expired" in log[0]["error"]
    mine = [t for t in own_sandbox.sandbox.tickets if t["request"]["metadata"]["bridge_event_id"] == event_id]
    assert 1 <= len(mine) <= 2  # two only because the killed attempt reached SPP: recorded as ambiguous


@pytest.mark.postgres
def test_worker_killed_after_the_ticket_another_posts_only_the_message(pg_url, env_for, own_sandbox, tmp_path) -> None:
    """SIGKILL while the message request is in flight: the ticket exists, so the next worker
    sends only the message (docs/conversations.md, the first message)."""
    env = env_for(pg_url, BRIDGE_LEASE_SECONDS="6", BRIDGE_SPP_READ_TIMEOUT_SECONDS="5")
    app = app_on(env)
    own_sandbox.sandbox.script("drop:4", endpoint="messages")  # stalls, then drops having done nothing
    event_id = post(app)
    first = start_process(flask_cmd("worker"), env, tmp_path / "first.log")
    queries = get_runtime(app).store.queries
    wait_for(lambda: (queries.get_event(event_id) or {}).get("ticket_id"), timeout=30)
    time.sleep(0.5)  # the message request is out
    assert stop(first, signal.SIGKILL) == -signal.SIGKILL
    second = start_process(flask_cmd("worker"), env, tmp_path / "second.log")
    try:
        wait_for(lambda: status_of(app, event_id) == "delivered", timeout=30)
    finally:
        assert stop(second) == 0
    [ticket] = own_sandbox.sandbox.tickets
    [message] = own_sandbox.sandbox.messages_of(ticket["id"])
    event = queries.get_event(event_id)
    assert event is not None and (event["ticket_id"], event["spp_message_id"]) == (ticket["id"], message.id)
    log = queries.list_attempts(event_id)
    assert [(a["step"], a["ambiguous"], a["outcome"]) for a in log] == [
        ("ticket", False, "delivered"),
        ("message", True, "retrying"),  # the killed worker's request, as the lease expiry found it
        ("message", False, "delivered"),
    ]


@pytest.mark.postgres
def test_notify_wakes_a_separate_worker(pg_url, env_for, own_sandbox, tmp_path) -> None:
    """With a 60 s poll, only PostgreSQL's NOTIFY can make the worker deliver this in time."""
    env = env_for(pg_url, BRIDGE_POLL_SECONDS="60")
    app = app_on(env)
    log = tmp_path / "worker.log"
    worker = start_process(flask_cmd("worker"), env, log)
    try:
        wait_for(lambda: started(log), timeout=30)
        time.sleep(0.5)  # let the listener connect
        event_id = post(app)
        wait_for(lambda: status_of(app, event_id) == "delivered", timeout=10)
    finally:
        assert stop(worker) == 0


@pytest.mark.postgres
def test_a_refused_token_pauses_every_worker_process(pg_url, env_for, own_sandbox, tmp_path) -> None:
    """Two worker processes share the pause through the database: after at most one refusal
    each, only one probe a second reaches SPP, and no event uses up its two attempts."""
    settings = {"BRIDGE_DELIVERY_CONCURRENCY": "1", "BRIDGE_MAX_ATTEMPTS": "2", "BRIDGE_PROBE_SECONDS": "1"}
    env = env_for(pg_url, **settings)
    app = app_on(env)
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    workers = [start_process(flask_cmd("worker"), env, log) for log in logs]
    try:
        wait_for(lambda: all(started(log) for log in logs), timeout=30)
        time.sleep(0.5)  # let the listeners connect
        own_sandbox.sandbox.script(*[401] * 5)  # more refusals than events: each would fail one without the pause
        ids = [post(app, n) for n in range(4)]
        wait_for(lambda: own_sandbox.sandbox.requests_seen >= 1, timeout=10)
        first_refusal = time.monotonic()
        wait_for(lambda: all(status_of(app, i) == "delivered" for i in ids), timeout=30, interval=0.1)
        paused_for = time.monotonic() - first_refusal
    finally:
        codes = [stop(w) for w in workers]
    assert codes == [0, 0]
    assert paused_for >= 2.5  # two refusals at most before the pause, then probes 1 s apart
    assert own_sandbox.sandbox.requests_seen == 5 + 4
    tickets = own_sandbox.sandbox.tickets
    assert sorted(t["request"]["metadata"]["bridge_event_id"] for t in tickets) == sorted(ids)
    assert any("delivery paused for every worker" in log.read_text() for log in logs)


def test_sigterm_while_idle_exits_cleanly(sqlite_url, env_for, tmp_path) -> None:
    env = env_for(sqlite_url)
    app_on(env)
    log = tmp_path / "worker.log"
    worker = start_process(flask_cmd("worker"), env, log)
    wait_for(lambda: started(log), timeout=30)
    assert stop(worker, timeout=10) == 0
    assert "stopped (0 in-flight" in log.read_text()


def test_sigterm_mid_delivery_hands_back_within_10_seconds(sqlite_url, env_for, own_sandbox, tmp_path) -> None:
    env = env_for(sqlite_url, BRIDGE_SPP_READ_TIMEOUT_SECONDS="25", BRIDGE_LEASE_SECONDS="60")
    app = app_on(env)
    own_sandbox.sandbox.script("hang:20")
    event_id = post(app)
    log = tmp_path / "worker.log"
    worker = start_process(flask_cmd("worker"), env, log)
    wait_for(lambda: own_sandbox.sandbox.requests_seen == 1, timeout=30)
    assert stop(worker, timeout=10) == 0
    assert status_of(app, event_id) == "retrying"
    [attempt] = get_runtime(app).store.queries.list_attempts(event_id)
    assert attempt["ambiguous"] is True and "stopped" in attempt["error"]


def test_worker_without_spp_url_refuses_to_start(sqlite_url, env_for) -> None:
    env = {k: v for k, v in env_for(sqlite_url).items() if not k.startswith("SPP_")}
    result = subprocess.run(
        flask_cmd("worker"),
        env={"PATH": str(BIN), **env},
        capture_output=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
        text=True,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "error: SPP_API_URL: not set (the workspace URL, e.g. https://acme.spp.co)"
    ]


PROCESSES = [
    flask_cmd("worker"),
    flask_cmd("migrate"),
    [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"],
]


@pytest.mark.parametrize("command", PROCESSES)
def test_configuration_error_stops_every_process_with_one_line(sqlite_url, own_sandbox, tmp_path, command) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text("sources:\n  api:\n    kind: json\n    secret: ${NOT_SET_ANYWHERE}\n")
    env = bridge_env(sqlite_url, own_sandbox.url, sources, PORT=str(free_port()))
    result = subprocess.run(
        command,
        env={"PATH": str(BIN), **env},
        capture_output=True,
        timeout=60,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert lines == [
        f"configuration error: {sources}: sources.api.secret: environment variable NOT_SET_ANYWHERE is not set or empty"
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", PROCESSES)
def test_heroku_without_a_database_stops_every_process(own_sandbox, tmp_path, command) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text(textwrap.dedent(DEFAULT_SOURCES))
    env = bridge_env("", own_sandbox.url, sources, PORT=str(free_port()), DYNO="web.1")
    result = subprocess.run(
        command, env={"PATH": str(BIN), **env}, capture_output=True, timeout=60, text=True, cwd=ROOT
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert lines == [
        "configuration error: DATABASE_URL is not set: on Heroku (DYNO is set) each dyno would get its own"
        " throw-away SQLite file; add Heroku Postgres"
    ]
    assert "Traceback" not in result.stderr


def test_gunicorn_with_embedded_worker_delivers(sqlite_url, env_for, own_sandbox, tmp_path) -> None:
    port = free_port()
    env = env_for(sqlite_url, BRIDGE_EMBEDDED_WORKER="true", PORT=str(port), WEB_CONCURRENCY="2")
    app_on(env)
    log = tmp_path / "web.log"
    web = start_process([str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"], env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: web_is_up(base), timeout=30)
        body = {"email": "alice@example.com", "subject": "Via gunicorn", "message": "Hi"}
        answer = requests.post(f"{base}/hooks/api", json=body, headers=api_headers(), timeout=5)
        assert answer.status_code == 200
        event_id = answer.json()["event_id"]

        def delivered() -> bool:
            got = requests.get(f"{base}/api/events/{event_id}", headers=admin_headers(), timeout=5).json()
            return got["status"] == "delivered" and got["ticket_id"] == 1

        wait_for(delivered, timeout=15)
    finally:
        assert stop(web, timeout=15) == 0
    output = log.read_text()
    for secret in (SPP_TOKEN, ADMIN_TOKEN, API_SECRET):
        assert secret not in output


def test_gunicorn_sigterm_hands_back_embedded_delivery(sqlite_url, env_for, own_sandbox, tmp_path) -> None:
    port = free_port()
    env = env_for(
        sqlite_url,
        BRIDGE_EMBEDDED_WORKER="true",
        PORT=str(port),
        WEB_CONCURRENCY="1",
        BRIDGE_SPP_READ_TIMEOUT_SECONDS="25",
        BRIDGE_LEASE_SECONDS="60",
    )
    app = app_on(env)
    own_sandbox.sandbox.script("hang:20")
    event_id = post(app)
    web = start_process([str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"], env, tmp_path / "web.log")
    wait_for(lambda: own_sandbox.sandbox.requests_seen == 1, timeout=30)
    started_at = time.monotonic()
    assert stop(web, timeout=15) == 0
    assert time.monotonic() - started_at < 10.5
    assert status_of(app, event_id) == "retrying"
    [attempt] = get_runtime(app).store.queries.list_attempts(event_id)
    assert attempt["ambiguous"] is True and "stopped" in attempt["error"]


def test_gunicorn_names_each_source_without_a_secret_once(sqlite_url, env_for, tmp_path) -> None:
    """One warning line per open source per start, from the master, however many workers there are."""
    port = free_port()
    env = env_for(sqlite_url, PORT=str(port), WEB_CONCURRENCY="2", LOG_FORMAT="text")
    app_on(env)
    log = tmp_path / "web.log"
    web = start_process([str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"], env, log)
    try:
        wait_for(lambda: web_is_up(f"http://127.0.0.1:{port}"), timeout=30)
        wait_for(lambda: log.read_text().count("Booting worker") == 2, timeout=30)
    finally:
        assert stop(web, timeout=15) == 0
    warnings = [line for line in log.read_text().splitlines() if " has no secret: " in line]
    assert [line.split(" WARNING bridge.sources ")[1].split(" has no secret")[0] for line in warnings] == [
        "[req=- evt=-] source 'open' (json)",
        "[req=- evt=-] source 'contact' (form)",
    ]
    assert all("anyone can post to /hooks/" in line for line in warnings)
