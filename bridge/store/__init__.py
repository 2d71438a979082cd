"""The event store, in parts with one job each, on one engine.

- :class:`EventStore` (``events.py``): intake (insert-or-duplicate, one-time tokens, SQLite
  group commit) and replay; it counts the sources' rate limits with ``limits.py``.
- :class:`DeliveryQueue` (``queue.py``): claim, record an attempt, release, expire leases; the
  only storage the delivery worker sees.
- :class:`EventActions` (``actions.py``): the operator's "retry now" and "cancel" of a
  waiting event, each one conditional update that a worker's claim excludes.
- :class:`EventQueries` (``queries.py``): reads for the admin API and page, metrics and the CLI.
- :class:`AccessStore` (``access.py``): the admin surface's secrets, signed-out sessions and
  failed attempts, shared by every process.
- :class:`AlertStore` (``alerts.py``): what the alerts tell (failures not yet told, the due
  backlog, the delivery pause) and the throttle that lets one process of all tell it.
- :class:`Retention` (``retention.py``): deletes the request, message and files of events
  finished long enough ago, in small batches.

Tables and the engine are in ``bridge/db.py``; SQLite's write lock and group commit in ``sqlite.py``.
The parts raise :class:`bridge.errors.StoreUnavailable` when the database does not answer; what
that means for an HTTP caller is decided in ``bridge/http/errors.py``.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

from bridge.store.access import AccessStore
from bridge.store.actions import EventActions
from bridge.store.alerts import AlertStore
from bridge.store.base import NOTIFY_CHANNEL, unavailable
from bridge.store.events import Added, EventStore, NewEvent, OneTimeToken, ReplayedToken
from bridge.store.limits import RateCheck, RateExceeded
from bridge.store.queries import EventQueries, ListFilter
from bridge.store.queue import Claim, DeliveryQueue
from bridge.store.retention import FAILED_MIN_DAYS, Purged, Removed, Retention
from bridge.store.sqlite import WriteLock

__all__ = [
    "FAILED_MIN_DAYS",
    "NOTIFY_CHANNEL",
    "AccessStore",
    "Added",
    "AlertStore",
    "Claim",
    "DeliveryQueue",
    "EventActions",
    "EventQueries",
    "EventStore",
    "ListFilter",
    "NewEvent",
    "OneTimeToken",
    "Purged",
    "RateCheck",
    "RateExceeded",
    "Removed",
    "ReplayedToken",
    "Retention",
    "Store",
]


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        write_lock = None if self.is_postgres else WriteLock(engine.url.database)
        self.events = EventStore(engine, write_lock)
        self.queue = DeliveryQueue(engine, write_lock)
        self.queries = EventQueries(engine, write_lock)
        self.actions = EventActions(engine, write_lock)
        self.access = AccessStore(engine, write_lock)
        self.alerts = AlertStore(engine, write_lock)
        self.retention = Retention(engine, write_lock)

    def ping(self) -> None:
        with unavailable(), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
