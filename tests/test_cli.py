"""``flask --app wsgi bridge …``: replay, check and migrate, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import inspect, text, update

from bridge.app import create_app
from bridge.db import events
from bridge.runtime import Runtime, get_runtime
from bridge.sandbox import SandboxServer
from tests.conftest import (
    DEFAULT_SOURCES,
    ROOT,
    AppFactory,
    admin_headers,
    api_headers,
    bridge_env,
    deliver_all,
)
from tests.helpers import NO_DOTENV, flask_cmd, free_port, start_process, wait_for

NO_DEFAULT_USER = """
client_lookup: false
sources:
  api:
    kind: json
    secret: api-secret-0123456789abcdef
  open:
    kind: json
"""


def bridge(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["bridge", *args])


def post_event(client: FlaskClient, source: str = "api", email: str = "alice@example.com", n: int = 0) -> str:
    body = {"email": email, "subject": f"Subject {n}", "message": "Body"}
    response = client.post(f"/hooks/{source}", json=body, headers=api_headers())
    assert response.status_code == 200, response.get_data(as_text=True)
    time.sleep(0.002)  # event ids order by the millisecond
    return str(response.get_json()["event_id"])


def status_of(client: FlaskClient, event_id: str) -> str:
    return str(client.get(f"/api/events/{event_id}", headers=admin_headers()).get_json()["status"])


def failed_events(client: FlaskClient, runtime: Runtime, sandbox: SandboxServer, sources: list[str]) -> list[str]:
    """One event per entry of ``sources``, each refused by SPP (422)."""
    ids = [post_event(client, source, n=n) for n, source in enumerate(sources)]
    sandbox.sandbox.script(*[422] * len(ids))
    deliver_all(runtime)
    assert {status_of(client, i) for i in ids} == {"failed"}
    assert ids == sorted(ids)  # --failed replays in id (arrival) order
    return ids


# --- replay ----------------------------------------------------------------------------


def test_replay_one_event(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    client = app.test_client()
    [event_id] = failed_events(client, runtime, sandbox, ["api"])
    result = bridge(app, "replay", event_id)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"[1/1] {event_id}: queued\n1 queued, 0 not replayed\n"
    assert result.stderr == ""
    deliver_all(runtime)
    assert status_of(client, event_id) == "delivered"
    assert len(sandbox.sandbox.tickets) == 1


def test_replay_one_refused_event_exits_1(app: Flask, runtime: Runtime) -> None:
    event_id = post_event(app.test_client())  # queued
    result = bridge(app, "replay", event_id)
    assert result.exit_code == 1
    assert result.stdout == "0 queued, 1 not replayed\n"
    assert result.stderr == (
        f"[1/1] {event_id}: event {event_id} is queued; only failed or discarded events are replayed\n"
    )
    unknown = bridge(app, "replay", "evt_nope")
    assert unknown.exit_code == 1
    assert unknown.stderr == "[1/1] evt_nope: no event 'evt_nope'\n"


def test_replay_force_a_delivered_event(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    client = app.test_client()
    event_id = post_event(client)
    deliver_all(runtime)
    refused = bridge(app, "replay", event_id)
    assert refused.exit_code == 1
    assert "(use force=true to deliver it again)" in refused.stderr
    forced = bridge(app, "replay", "--force", event_id)
    assert forced.exit_code == 0, forced.output
    deliver_all(runtime)
    assert [t["id"] for t in sandbox.sandbox.tickets] == [1, 2]


def test_replay_every_failed_event(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    client = app.test_client()
    ids = failed_events(client, runtime, sandbox, ["api", "open", "api"])
    delivered = post_event(client, n=9)
    deliver_all(runtime)

    result = bridge(app, "replay", "--failed")
    assert result.exit_code == 0, result.output
    lines = [f"[{n}/3] {event_id}: queued" for n, event_id in enumerate(ids, 1)]
    assert result.stdout == "\n".join([*lines, "3 queued, 0 not replayed"]) + "\n"
    assert result.stderr == ""
    deliver_all(runtime)
    assert [status_of(client, i) for i in [*ids, delivered]] == ["delivered"] * 4

    again = bridge(app, "replay", "--failed")
    assert (again.exit_code, again.stdout) == (0, "0 queued, 0 not replayed\n")


def test_replay_failed_of_one_source(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    client = app.test_client()
    first, other, second = failed_events(client, runtime, sandbox, ["api", "open", "api"])
    result = bridge(app, "replay", "--failed", "--source", "api")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"[1/2] {first}: queued",
        f"[2/2] {second}: queued",
        "2 queued, 0 not replayed",
    ]
    assert [status_of(client, i) for i in (first, other, second)] == ["queued", "failed", "queued"]
    none = bridge(app, "replay", "--failed", "--source", "nosuchsource")
    assert (none.exit_code, none.stdout) == (0, "0 queued, 0 not replayed\n")


def test_replay_failed_since(app: Flask, runtime: Runtime, sandbox: SandboxServer) -> None:
    client = app.test_client()
    old, recent = failed_events(client, runtime, sandbox, ["api", "api"])
    with runtime.store.engine.begin() as conn:
        conn.execute(update(events).where(events.c.id == old).values(received_at=datetime(2020, 1, 1, tzinfo=UTC)))
    result = bridge(app, "replay", "--failed", "--since", "2024-06-01")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"[1/1] {recent}: queued\n1 queued, 0 not replayed\n"
    assert status_of(client, old) == "failed"
    # naive times are UTC; the boundary is inclusive
    boundary = bridge(app, "replay", "--failed", "--since", "2020-01-01T00:00:00")
    assert boundary.stdout == f"[1/1] {old}: queued\n1 queued, 0 not replayed\n"


def test_replay_failed_reports_events_that_still_cannot_map(make_app: AppFactory, sandbox: SandboxServer) -> None:
    app = make_app(NO_DEFAULT_USER)
    client = app.test_client()
    stranger = post_event(client, email="x@stranger.org")
    assert status_of(client, stranger) == "failed"
    result = bridge(app, "replay", "--failed")
    assert result.exit_code == 0
    assert result.stdout == "0 queued, 1 not replayed\n"
    assert result.stderr == (
        f"[1/1] {stranger}: still cannot map the event: no client matches x@stranger.org"
        " and the sources file sets no defaults.user_id\n"
    )
    assert status_of(client, stranger) == "failed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give either an EVENT_ID or --failed"),
        (("evt_x", "--failed"), "give either an EVENT_ID or --failed"),
        (("evt_x", "--source", "api"), "--source and --since go with --failed"),
        (("evt_x", "--since", "2024-01-01"), "--source and --since go with --failed"),
    ],
)
def test_replay_needs_an_id_or_failed(app: Flask, args: tuple[str, ...], message: str) -> None:
    result = bridge(app, "replay", *args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"error: {message}\n"


def test_replay_bad_since_is_a_usage_error(app: Flask) -> None:
    result = bridge(app, "replay", "--failed", "--since", "yesterday")
    assert result.exit_code == 2
    assert "Invalid value for '--since'" in result.stderr


# --- check -----------------------------------------------------------------------------

EMAIL_ONLY = " (email kinds only)"  # threading, on a kind that is no email


def test_check_lists_every_source_url(app: Flask, runtime: Runtime) -> None:
    result = bridge(app, "check")
    assert result.exit_code == 0, result.output
    defaults = "      delivery: client_lookup: true, create_clients: false, message: true, threading: true" + EMAIL_ONLY
    assert result.stdout.splitlines() == [
        f"sources file {runtime.settings.sources_file}: 3 source(s)",
        "  api                  json       http://localhost:8000/hooks/api  (with secret)",
        "      sender: POST JSON to http://localhost:8000/hooks/api"
        " (with X-Bridge-Token: <secret>, or ?token=<secret>, when the source has one)",
        defaults,
        "  open                 json       http://localhost:8000/hooks/open  (no secret)",
        "      sender: POST JSON to http://localhost:8000/hooks/open"
        " (with X-Bridge-Token: <secret>, or ?token=<secret>, when the source has one)",
        defaults,
        "  contact              form       http://localhost:8000/hooks/contact  (no secret)",
        '      sender: <form method="post" action="http://localhost:8000/hooks/contact">'
        " (add ?token=<secret> when the source has a secret)",
        defaults,
        "alerts: off (BRIDGE_ALERT_URLS is not set)",
        "retention: 30 days (failed events: 90)",
    ]
    assert result.stderr.splitlines() == [
        f"warning: source '{name}' ({kind}) has no secret: anyone can post to /hooks/{name}, and whoever sends an"
        " event's de-duplication key first (e.g. a guessed Idempotency-Key) keeps the real event out; set a secret"
        " unless the source is a public form"
        for name, kind in (("open", "json"), ("contact", "form"))
    ]
    assert "api-secret" not in result.output


def test_check_prints_what_each_source_does_at_delivery(make_app: AppFactory) -> None:
    """The top-level client_lookup and create_clients, unless the source sets its own."""
    app = make_app(
        """
        create_clients: true
        sources:
          api: {kind: json, secret: api-secret-0123456789abcdef}
          notes: {kind: json, secret: api-secret-0123456789abcdef, create_clients: false, message: false}
          offline: {kind: json, secret: api-secret-0123456789abcdef, client_lookup: false, create_clients: false}
          mail: {kind: email, secret: mail-secret-0123456789, threading: false}
        """
    )
    result = bridge(app, "check")
    assert result.exit_code == 0, result.output
    delivery = [line.strip() for line in result.stdout.splitlines() if line.startswith("      delivery: ")]
    assert delivery == [
        "delivery: client_lookup: true, create_clients: true, message: true, threading: true" + EMAIL_ONLY,
        "delivery: client_lookup: true, create_clients: false, message: false, threading: true" + EMAIL_ONLY,
        "delivery: client_lookup: false, create_clients: false, message: true, threading: true" + EMAIL_ONLY,
        "delivery: client_lookup: true, create_clients: true, message: true, threading: false",
    ]


def test_check_names_the_alert_targets_without_their_secrets(make_app: AppFactory) -> None:
    app = make_app(
        BRIDGE_ALERT_URLS="json://bridge:alert-pass-0123456789@127.0.0.1:9/alerts", BRIDGE_RETENTION_DAYS="120"
    )
    result = bridge(app, "check")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-2:] == ["alerts: json://127.0.0.1:9", "retention: 120 days (failed events: 120)"]
    assert "alert-pass" not in result.output


def test_check_uses_the_public_url(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=["bridge", "check"], env={"BRIDGE_PUBLIC_URL": "https://bridge.example.com/"}
    )
    assert result.exit_code == 0, result.output
    assert "  open                 json       https://bridge.example.com/hooks/open  (no secret)" in result.stdout
    explicit = bridge(app, "check", "--base-url", "https://other.example.com")
    assert "https://other.example.com/hooks/api" in explicit.stdout


def test_check_warns_without_spp_url(tmp_path: Path, db_url: str) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text(DEFAULT_SOURCES)
    env = bridge_env(db_url, "", sources)
    del env["SPP_API_URL"], env["SPP_API_TOKEN"]
    result = bridge(create_app(env=env), "check")
    assert result.exit_code == 0
    assert result.stderr.splitlines()[-1] == "warning: SPP_API_URL is not set; web and worker will refuse to start"


def _run_flask(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "PYTHONDONTWRITEBYTECODE": "1",
        **NO_DOTENV,
    }
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "bridge", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@contextmanager
def sandbox_command(tmp_path: Path, port: int, log_name: str = "sandbox.log") -> Iterator[str]:
    """``flask --app wsgi bridge sandbox`` on ``port`` (token ``t``) until the block ends."""
    sources = tmp_path / "sources.yml"
    sources.write_text(DEFAULT_SOURCES)
    env = {"BRIDGE_SOURCES_FILE": str(sources), "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    proc = start_process(flask_cmd("sandbox", "--port", str(port), "--token", "t", "--quiet"), env, tmp_path / log_name)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), timeout=30)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_sandbox_command_keeps_connections_alive(tmp_path: Path) -> None:
    """The command serves under gunicorn, so a session reuses one connection as with a real SPP."""
    with sandbox_command(tmp_path, free_port()) as url, requests.Session() as session:
        answers = [
            session.post(f"{url}/api/tickets", json={"user_id": 1, "subject": f"n{n}"}, headers=_SANDBOX_AUTH)
            for n in range(3)
        ]
        pools = session.get_adapter(url).poolmanager.pools
        opened = sum(pools[key].num_connections for key in pools.keys())  # noqa: SIM118 (no __iter__)
        assert [a.status_code for a in answers] == [201, 201, 201]
        first = answers[0].json()["id"]
        assert [a.json()["id"] for a in answers] == [first, first + 1, first + 2]
        assert {a.headers["Connection"] for a in answers} == {"keep-alive"}
        assert opened == 1
    assert "POST /api/tickets" not in (tmp_path / "sandbox.log").read_text()  # --quiet


def test_sandbox_command_reset_step_drops_the_connection(tmp_path: Path) -> None:
    with sandbox_command(tmp_path, free_port()) as url, requests.Session() as session:
        tickets, ticket = f"{url}/api/tickets", {"user_id": 1, "subject": "x"}
        assert session.post(tickets, json=ticket, headers=_SANDBOX_AUTH, timeout=5).status_code == 201
        requests.post(f"{url}/_sandbox/script", json={"steps": ["reset", "reset"]}, timeout=5).raise_for_status()
        with pytest.raises(requests.exceptions.ConnectionError):
            session.post(tickets, json=ticket, headers=_SANDBOX_AUTH, timeout=5)  # a kept-alive connection
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(tickets, json=ticket, headers=_SANDBOX_AUTH, timeout=5)  # a new one
        assert session.post(tickets, json=ticket, headers=_SANDBOX_AUTH, timeout=5).status_code == 201
        seen = requests.get(f"{url}/_sandbox/tickets", timeout=5).json()
        assert (len(seen["tickets"]), seen["requests_seen"]) == (2, 4)


def test_sandbox_command_ticket_ids_do_not_repeat_after_a_restart(tmp_path: Path) -> None:
    port, ticket = free_port(), {"user_id": 1, "subject": "x"}
    started = time.time() * 1000
    with sandbox_command(tmp_path, port) as url:
        first = requests.post(f"{url}/api/tickets", json=ticket, headers=_SANDBOX_AUTH, timeout=5).json()["id"]
        requests.post(f"{url}/_sandbox/reset", timeout=5).raise_for_status()
        after_reset = requests.post(f"{url}/api/tickets", json=ticket, headers=_SANDBOX_AUTH, timeout=5).json()["id"]
    with sandbox_command(tmp_path, port, "sandbox-2.log") as url:
        restarted = requests.post(f"{url}/api/tickets", json=ticket, headers=_SANDBOX_AUTH, timeout=5).json()["id"]
    assert started <= first < after_reset < restarted


def test_sandbox_command_refuses_a_port_already_in_use(tmp_path: Path) -> None:
    """Even one shared with SO_REUSEPORT, as the web's gunicorn (reuse_port) would let it."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        proc = _run_flask(tmp_path, "sandbox", "--port", str(port), BRIDGE_SOURCES_FILE=_default_sources(tmp_path))
    assert time.monotonic() - started < 20
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.splitlines() == [
        f"error: the sandbox cannot start: 127.0.0.1:{port} is already in use (another sandbox, or another `make run`?)"
    ]


def _default_sources(tmp_path: Path) -> str:
    sources = tmp_path / "sources.yml"
    sources.write_text(DEFAULT_SOURCES)
    return str(sources)


_SANDBOX_AUTH = {"Authorization": "Bearer t"}


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_check_with_a_broken_sources_file_prints_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("defaults: {user_id: 1}\nsources:\n  website:\n    kind: carrier-pigeon\n")
    proc = _run_flask(tmp_path, "check", BRIDGE_SOURCES_FILE=str(broken))
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    [line] = proc.stderr.splitlines()
    assert line == (
        f"configuration error: {broken}: sources.website.kind: unknown kind 'carrier-pigeon'"
        f" (known: {line.rpartition('(known: ')[2]}"
    )
    assert str(broken) in line and "website" in line and "kind" in line


def test_check_in_a_subprocess(tmp_path: Path) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text(DEFAULT_SOURCES)
    proc = _run_flask(
        tmp_path,
        "check",
        BRIDGE_SOURCES_FILE=str(sources),
        SPP_API_URL="https://acme.spp.co",
        SPP_API_TOKEN="t",
        BRIDGE_PUBLIC_URL="https://bridge.example.com",
    )
    assert proc.returncode == 0, proc.stderr
    assert [line.split(" has no secret")[0] for line in proc.stderr.splitlines()] == [
        "warning: source 'open' (json)",
        "warning: source 'contact' (form)",
    ]
    assert "https://bridge.example.com/hooks/contact" in proc.stdout


# --- migrate ---------------------------------------------------------------------------


def test_migrate_is_idempotent(app: Flask, runtime: Runtime) -> None:
    event_id = post_event(app.test_client())
    for _ in range(2):
        result = bridge(app, "migrate")
        assert result.exit_code == 0, result.output
        assert result.stdout == "database is up to date\n"
    assert set(inspect(runtime.store.engine).get_table_names()) >= {"events", "attempts", "alembic_version"}
    with runtime.store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    assert status_of(app.test_client(), event_id) == "queued"


def test_migrate_a_fresh_sqlite_database_twice(tmp_path: Path, sandbox: SandboxServer) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text(DEFAULT_SOURCES)
    app = create_app(env=bridge_env(f"sqlite:///{tmp_path / 'fresh.db'}", sandbox.url, sources))
    for _ in range(2):
        result = bridge(app, "migrate")
        assert (result.exit_code, result.stdout) == (0, "database is up to date\n")
    engine = get_runtime(app).store.engine
    assert {"events", "attempts"} <= set(inspect(engine).get_table_names())
    assert app.test_client().post("/hooks/open", json={"a": 1}).status_code == 200
    engine.dispose()


def test_migrate_without_a_database_is_one_line(tmp_path: Path) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text(DEFAULT_SOURCES)
    app = create_app(env=bridge_env("postgresql://postgres@127.0.0.1:1/x", "http://127.0.0.1:9", sources))
    result = bridge(app, "migrate")
    assert result.exit_code == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: cannot migrate: the database is not answering (OperationalError")
    assert "Traceback" not in result.output


def test_replay_without_a_database_is_one_line(tmp_path: Path) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text(DEFAULT_SOURCES)
    app = create_app(env=bridge_env("postgresql://postgres@127.0.0.1:1/x", "http://127.0.0.1:9", sources))
    result = bridge(app, "replay", "--failed")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == "error: the database is not answering; retry later\n"
    one = bridge(app, "replay", "evt_x")
    assert one.exit_code == 1
    assert one.stderr == "[1/1] evt_x: the database is not answering; retry later\n"
