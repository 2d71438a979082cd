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

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction (on SQLite, holding the file's write lock)."""
        if self.write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self.write_lock.hold(), self.engine.begin() as conn:
            yield conn
