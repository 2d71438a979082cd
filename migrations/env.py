"""Alembic environment: the bridge's tables, the bridge's database URL, one migrator at a time."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, text

from bridge.db import make_engine, metadata, normalize_url
from config.settings import load_settings

MIGRATION_LOCK = 72_130_001  # any constant; serialises concurrent `release` runs on PostgreSQL


def run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    instance = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "instance")
    engine = make_engine(normalize_url(load_settings().database_url, instance))
    with engine.begin() as conn:
        run(conn)
