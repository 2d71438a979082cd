"""The migrations build exactly the tables bridge/db.py describes, and go down and up again."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from bridge.db import make_engine, metadata, normalize_url
from bridge.migrate import alembic_config, upgrade
from tests.conftest import postgres_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
        yield engine
        engine.dispose()
        return
    base = postgres_url()
    assert base
    schema = f"bridge_migrations_{os.getpid()}_{secrets.token_hex(3)}"
    admin = make_engine(normalize_url(base, ""))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = make_engine(normalize_url(f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}", ""))
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def downgrade_to_base(engine: Engine) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")


def test_migrations_match_the_tables_in_code(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []


def test_migrations_go_down_and_up_again(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    downgrade_to_base(empty_engine)
    assert set(inspect(empty_engine).get_table_names()) <= {"alembic_version"}
    upgrade(empty_engine)
    assert {"events", "attempts", "seen_tokens"} <= set(inspect(empty_engine).get_table_names())


def test_attempt_outcomes_of_an_older_version_take_the_status_words(empty_engine: Engine) -> None:
    """0006: an attempt stored as 'retry' reads 'retrying', like its event's status; and back on downgrade."""
    upgrade(empty_engine, "0005")
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO events (id, source, dedupe_key, status, raw_request, raw_body, attempts,"
                " retry_window_start, attempts_at_window_start, received_at, updated_at)"
                " VALUES ('evt_1', 'api', 'k', 'retrying', '{}', :body, 1, :now, 0, :now, :now)"
            ),
            {"body": b"{}", "now": "2026-01-01 00:00:00"},
        )
        for number, outcome in ((1, "retry"), (2, "delivered")):
            conn.execute(
                text(
                    "INSERT INTO attempts (event_id, number, started_at, duration_ms, outcome, ambiguous)"
                    " VALUES ('evt_1', :n, :now, 5, :outcome, false)"
                ),
                {"n": number, "outcome": outcome, "now": "2026-01-01 00:00:00"},
            )

    def outcomes() -> list[str]:
        with empty_engine.connect() as conn:
            return list(conn.execute(text("SELECT outcome FROM attempts ORDER BY number")).scalars())

    upgrade(empty_engine, "0006")
    assert outcomes() == ["retrying", "delivered"]
    config = alembic_config()
    with empty_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    assert outcomes() == ["retry", "delivered"]


def test_tokens_seen_by_two_sources_keep_their_first_sighting(empty_engine: Engine) -> None:
    """0009: one-time tokens are kept by token alone; of two sightings, the first stays."""
    upgrade(empty_engine, "0008")
    sightings = [
        ("support", "tok-1", "message-id:a", "2026-01-01 00:00:00"),
        ("support-mime", "tok-1", "message-id:b", "2026-01-01 00:00:05"),
        ("support", "tok-2", "message-id:c", "2026-01-01 00:00:00"),
    ]
    with empty_engine.begin() as conn:
        for source, token, key, seen_at in sightings:
            conn.execute(
                text("INSERT INTO seen_tokens (source, token, dedupe_key, seen_at) VALUES (:s, :t, :k, :at)"),
                {"s": source, "t": token, "k": key, "at": seen_at},
            )

    def tokens() -> list[tuple[str, str, str]]:
        with empty_engine.connect() as conn:
            rows = conn.execute(text("SELECT token, source, dedupe_key FROM seen_tokens ORDER BY token"))
            return [tuple(row) for row in rows]

    upgrade(empty_engine, "0009")
    kept = [("tok-1", "support", "message-id:a"), ("tok-2", "support", "message-id:c")]
    assert tokens() == kept
    with empty_engine.begin() as conn:
        duplicate = "INSERT INTO seen_tokens (source, token, dedupe_key, seen_at) VALUES ('x', 'tok-2', 'k', :at)"
        conn.execute(text(duplicate + " ON CONFLICT DO NOTHING"), {"at": "2026-01-01 00:00:09"})
    assert tokens() == kept
    config = alembic_config()
    with empty_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")
    assert tokens() == kept
