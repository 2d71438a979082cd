"""What the parts of the store share: the engine, the SQLite write lock, and one error for an absent database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bridge.errors import StoreUnavailable
from bridge.store.sqlite import WriteLock

# PostgreSQL NOTIFY channel: a new or replayed event is due (the worker LISTENs)
NOTIFY_CHANNEL = "bridge_events"


@contextmanager
def unavailable() -> Iterator[None]:
    """A database that does not answer becomes :class:`StoreUnavailable` (the sender retries)."""
    try:
        yield
    except (OperationalError, InterfaceError, PoolTimeout) as exc:
        raise StoreUnavailable("the database is not answering; retry later") from exc


class Part:
    """One part of the store on a shared engine (and, on SQLite, a shared write lock)."""

    def __init__(self, engine: Engine, write_lock: WriteLock | None) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self.write_lock = write_lock
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT") if self.is_postgres else None

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction (on SQLite, holding the file's write lock)."""
        if self.write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self.write_lock.hold(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def one_statement(self) -> Iterator[Connection]:
        """For a write that is a single statement, which is atomic by itself. On PostgreSQL it
        runs in autocommit: no BEGIN and no COMMIT, one round trip instead of three (psycopg
        sends BEGIN as a command of its own). On SQLite, as :meth:`writing`."""
        if self._autocommit is None:
            with self.writing() as conn:
                yield conn
            return
        with self._autocommit.connect() as conn:
            yield conn
