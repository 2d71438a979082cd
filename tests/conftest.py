"""Shared fixtures: the SPP sandbox on a real port, SQLite and PostgreSQL, and app factories.

PostgreSQL tests use TEST_DATABASE_URL. Without it they skip with a visible reason, except
where BRIDGE_REQUIRE_POSTGRES=1 (CI), where a missing database fails the run instead.
"""

from __future__ import annotations

import os
import secrets
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text, update

from bridge.app import create_app
from bridge.db import events, make_engine, metadata, normalize_url
from bridge.migrate import upgrade
from bridge.runtime import Runtime, get_runtime
from bridge.sandbox import Sandbox, SandboxServer
from bridge.worker import Worker
from tests.helpers import Receiver

SPP_TOKEN = "spp-test-token-0123456789"
ADMIN_TOKEN = "admin-test-token-0123456789"
API_SECRET = "api-secret-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# the defaults and clients most test sources files start with
CLIENTS = """defaults:
  user_id: 1
clients:
  alice@example.com: 12
  "@bigcustomer.com": 30
"""

DEFAULT_SOURCES = (
    CLIENTS
    + f"""sources:
  api:
    kind: json
    secret: {API_SECRET}
    ticket:
      tags: [api]
      order: "{{{{ fields.order_number }}}}"
  open:
    kind: json
  contact:
    kind: form
    redirect: https://example.com/thanks
    ticket:
      subject: "Website: {{{{ subject }}}}"
      tags: [website]
"""
)


# docs/behaviour.md section 6: the keys of an event in the list, and in the detail
SUMMARY_KEYS = {
    "id",
    "source",
    "status",
    "ticket_id",
    "attempts",
    "last_error",
    "spp_request_id",
    "received_at",
    "delivered_at",
    "next_attempt_at",
    # docs/conversations.md: the steps besides the ticket
    "spp_message_id",
    "client_id",
    "client_how",
    "thread_of",
}
DETAIL_KEYS = SUMMARY_KEYS | {"ticket_request", "message", "request_id", "plan", "attempt_log", "purged_at"}


def postgres_url() -> str | None:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        if os.environ.get("BRIDGE_REQUIRE_POSTGRES") == "1":
            pytest.fail("BRIDGE_REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    return url


@pytest.fixture(scope="session")
def pg_ready() -> Iterator[str]:
    """A PostgreSQL schema of this test session's own, migrated; dropped at the end.

    A schema per session lets several test runs share one database without clobbering
    each other's tables; worker subprocesses reach it through the same URL.
    """
    base = postgres_url()
    assert base
    schema = f"bridge_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = make_engine(normalize_url(base, ""))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    # no pooled connection outlives this: the long fault suite restarts PostgreSQL in between
    admin.dispose()
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    engine = make_engine(normalize_url(url, ""))
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def pg_url(pg_ready: str) -> str:
    """The session's PostgreSQL schema, emptied for this test."""
    engine = make_engine(normalize_url(pg_ready, ""))
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(t.name for t in reversed(metadata.sorted_tables))))
    engine.dispose()
    return pg_ready


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bridge.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs twice: on SQLite and on PostgreSQL."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    server = SandboxServer(Sandbox(token=SPP_TOKEN)).start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxServer:
    sandbox_server.sandbox.reset()
    return sandbox_server


def bridge_env(db: str, spp_url: str, sources_file: Path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": db,
        "SPP_API_URL": spp_url,
        "SPP_API_TOKEN": SPP_TOKEN,
        "BRIDGE_SOURCES_FILE": str(sources_file),
        "BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,
        "BRIDGE_RETRY_BASE_SECONDS": "0.05",
        "BRIDGE_RETRY_MAX_SECONDS": "0.2",
        "BRIDGE_SPP_READ_TIMEOUT_SECONDS": "2",
        "BRIDGE_LEASE_SECONDS": "5",
        **extra,
    }


AppFactory = Callable[..., Flask]


@pytest.fixture
def make_app(tmp_path: Path, db_url: str, sandbox: SandboxServer) -> Iterator[AppFactory]:
    """Build a migrated app on this test's database; ``sources`` is YAML text, ``env`` extra variables."""
    apps: list[Flask] = []

    def factory(sources: str = DEFAULT_SOURCES, **env: str) -> Flask:
        path = tmp_path / f"sources-{len(apps)}.yml"
        path.write_text(textwrap.dedent(sources))
        app = create_app(env=bridge_env(db_url, sandbox.url, path, **env))
        upgrade(get_runtime(app).store.engine)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        get_runtime(app).store.engine.dispose()


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture
def runtime(app: Flask) -> Runtime:
    return get_runtime(app)


def deliver_all(runtime: Runtime, timeout: float = 20.0, **kwargs: Any) -> Worker:
    """Run an in-process worker until nothing is due."""
    worker = runtime.worker(poll_seconds=0.05, **kwargs)
    worker.run_until_idle(timeout)
    return worker


# for tests that read an event between its retries: no retry falls due on its own while they look
SLOW_RETRIES = {"BRIDGE_RETRY_BASE_SECONDS": "60", "BRIDGE_RETRY_MAX_SECONDS": "120"}


def make_due(runtime: Runtime, event_id: str) -> None:
    """Make a retrying event due now instead of after its backoff."""
    with runtime.store.engine.begin() as conn:
        conn.execute(update(events).where(events.c.id == event_id).values(next_attempt_at=datetime.now(UTC)))


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def api_headers(**extra: str) -> dict[str, str]:
    return {"X-Bridge-Token": API_SECRET, **extra}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP server on loopback recording the notifications apprise posts to it (``receiver.url``)."""
    found = Receiver()
    found.thread.start()
    yield found
    found.server.shutdown()
    found.thread.join(5)
