"""The admin surface's state, in the database so that every process agrees on it: the bridge's own
random secrets, sessions signed out before they expired, and failed attempts per client."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from bridge.db import app_secrets, auth_failures, revoked_sessions
from bridge.store.base import Part, unavailable
from bridge.store.sqlite import WriteLock

SWEEP_SECONDS = 60  # counts of past windows can wait this long to be deleted


class AccessStore(Part):
    def __init__(self, engine: Engine, write_lock: WriteLock | None) -> None:
        super().__init__(engine, write_lock)
        self._insert = postgresql.insert if self.is_postgres else sqlite.insert
        self._next_sweep = 0.0

    def secret(self, name: str) -> str:
        """The random secret called ``name``: made by whichever process asks first, then the same for all."""
        query = select(app_secrets.c.value).where(app_secrets.c.name == name)
        with unavailable():
            with self.engine.connect() as conn:
                found = conn.execute(query).scalar_one_or_none()
            if found is not None:
                return str(found)
            row = {"name": name, "value": secrets.token_urlsafe(48), "created_at": datetime.now(UTC)}
            with self.writing() as conn:
                conn.execute(self._insert(app_secrets).values(row).on_conflict_do_nothing())
                return str(conn.execute(query).scalar_one())

    def revoke_session(self, session_id: str, expires_at: datetime) -> None:
        """Refuse ``session_id`` from now on (until ``expires_at``, when it would have expired anyway)."""
        row = {"session_id": session_id, "expires_at": expires_at}
        with unavailable(), self.writing() as conn:
            conn.execute(delete(revoked_sessions).where(revoked_sessions.c.expires_at < datetime.now(UTC)))
            conn.execute(self._insert(revoked_sessions).values(row).on_conflict_do_nothing())

    def is_revoked(self, session_id: str) -> bool:
        query = select(revoked_sessions.c.session_id).where(revoked_sessions.c.session_id == session_id)
        with unavailable(), self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def failures(self, client: str, window_start: datetime) -> int:
        """Failed attempts of ``client`` in the window that began at ``window_start``."""
        query = select(auth_failures.c.failures).where(
            auth_failures.c.client == client, auth_failures.c.window_start == window_start
        )
        with unavailable(), self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one_or_none() or 0)

    def count_failure(self, client: str, window_start: datetime) -> int:
        """One more failed attempt of ``client`` in this window; the window's count so far."""
        insert = self._insert(auth_failures).values(client=client, window_start=window_start, failures=1)
        upsert = insert.on_conflict_do_update(
            index_elements=[auth_failures.c.client, auth_failures.c.window_start],
            set_={"failures": auth_failures.c.failures + 1},
        ).returning(auth_failures.c.failures)
        with unavailable(), self.writing() as conn:
            count = int(conn.execute(upsert).scalar_one())
            if time.monotonic() >= self._next_sweep:
                conn.execute(delete(auth_failures).where(auth_failures.c.window_start < window_start))
                self._next_sweep = time.monotonic() + SWEEP_SECONDS
            return count

    def clear_failures(self, client: str) -> None:
        with unavailable(), self.writing() as conn:
            conn.execute(delete(auth_failures).where(auth_failures.c.client == client))
