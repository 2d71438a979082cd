"""PostgreSQL drops the web process's pooled connections (a restart, a failover): the next
webhook is still stored and answered 200, with no ping before each use of a connection
(bridge/db.py, make_engine), and every later request finds fresh connections."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from sqlalchemy import text

from bridge.app import create_app
from bridge.db import make_engine, normalize_url
from bridge.migrate import upgrade
from bridge.runtime import get_runtime
from bridge.sandbox import SandboxServer
from tests.conftest import DEFAULT_SOURCES, admin_headers, api_headers, bridge_env

pytestmark = pytest.mark.postgres
NAME = "bridge_dropped_connections_test"


def drop_connections(pg_url: str) -> int:
    """Terminate every server connection of the app under test (by its application_name)."""
    admin = make_engine(normalize_url(pg_url, ""))
    try:
        with admin.begin() as conn:
            query = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :name"
            return int(conn.execute(text(query), {"name": NAME}).scalar_one())
    finally:
        admin.dispose()


def test_a_webhook_after_the_database_dropped_the_pool_is_stored(
    pg_url: str, tmp_path: Path, sandbox: SandboxServer
) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text(textwrap.dedent(DEFAULT_SOURCES))
    app = create_app(env=bridge_env(f"{pg_url}&application_name={NAME}", sandbox.url, sources))
    upgrade(get_runtime(app).store.engine)
    client = app.test_client()
    body = {"email": "alice@example.com", "subject": "Before", "message": "Hello"}
    assert client.post("/hooks/api", json=body, headers=api_headers()).status_code == 200
    try:
        assert drop_connections(pg_url) >= 1
        for n in range(3):  # each one meets a dropped connection, or a new one
            answer = client.post("/hooks/api", json={**body, "subject": f"After {n}"}, headers=api_headers())
            assert answer.status_code == 200, answer.get_data(as_text=True)
            assert answer.get_json()["status"] == "queued"
        listed = client.get("/api/events?limit=10", headers=admin_headers())
        assert listed.status_code == 200  # the pool was discarded: reads find new connections too
        assert len(listed.get_json()["events"]) == 4
    finally:
        get_runtime(app).store.engine.dispose()
