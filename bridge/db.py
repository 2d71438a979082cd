"""Database engine and tables (SQLAlchemy Core). Migrations live in ``migrations/``."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Dialect

from bridge.status import DUE, ENDED, Status

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# conditions of the partial indexes below; the store's queries use these very clauses
DUE_WHERE = text("status IN ({})".format(", ".join(f"'{status}'" for status in DUE)))
LEASED_WHERE = text(f"status = '{Status.DELIVERING}'")
FAILED_WHERE = text(f"status = '{Status.FAILED}'")
# finished events whose request and message are still kept (bridge/store/retention.py)
PURGEABLE_WHERE = text("purged_at IS NULL AND status IN ({})".format(", ".join(f"'{status}'" for status in ENDED)))

events = Table(
    "events",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("source", String(100), nullable=False),
    Column("dedupe_key", String(255), nullable=False),
    Column("status", String(20), nullable=False),  # a Status
    Column("request_id", String(100)),
    # sender name, address and subject, case-folded: what the admin page searches (the
    # message keeps them as sent; SQLite's LIKE folds ASCII only, so folding happens here)
    Column("search_text", String(512)),
    Column("raw_request", JSON, nullable=False),  # method, path, query, headers (secrets removed)
    Column("raw_body", LargeBinary, nullable=False),
    Column("message", JSON),
    Column("ticket_request", JSON),
    Column("attempts", Integer, nullable=False, default=0),
    # BRIDGE_MAX_ATTEMPTS and the 72 h limit count from here: receipt, or the last replay
    Column("retry_window_start", UTCDateTime(), nullable=False),
    Column("attempts_at_window_start", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime()),
    Column("lease_owner", String(120)),
    Column("lease_expires_at", UTCDateTime()),
    Column("ticket_id", BigInteger),
    Column("spp_request_id", String(120)),
    Column("last_error", Text),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime()),
    # the conversation (docs/conversations.md): what delivery does besides the ticket, decided at
    # intake ("plan": the client to look up or create, the message and files, the mail it answers),
    # and what each step has done so far
    Column("plan", JSON),
    Column("client_id", BigInteger),  # the SPP client the ticket belongs to (its user_id)
    Column("client_how", String(20)),  # a ClientHow: mapped, default, found, created
    Column("spp_message_id", BigInteger),
    Column("thread_of", String(40)),  # the earlier event whose ticket this follow-up joined
    Column("email_message_id", String(255)),  # the Message-ID of an email event, for its replies
    # when retention deleted the event's request, message and files (the row and attempts stay)
    Column("purged_at", UTCDateTime()),
    UniqueConstraint("source", "dedupe_key"),
    # what a worker claims next, in order (partial: only waiting events), and the leases to check.
    # No index leads with status: SQLite's planner would take it for claims and sort every due event.
    Index("ix_events_due", "next_attempt_at", sqlite_where=DUE_WHERE, postgresql_where=DUE_WHERE),
    Index("ix_events_leases", "lease_expires_at", sqlite_where=LEASED_WHERE, postgresql_where=LEASED_WHERE),
    # a reply names the Message-ID it answers, or "[#<ticket id>]" in its subject
    Index("ix_events_email_message_id", "email_message_id"),
    Index("ix_events_ticket_id", "ticket_id"),
    # the failed events, by when they failed: what the failure alert reads every turn
    Index("ix_events_failed", "updated_at", sqlite_where=FAILED_WHERE, postgresql_where=FAILED_WHERE),
    # what retention has left to delete, oldest first
    Index("ix_events_purgeable", "updated_at", sqlite_where=PURGEABLE_WHERE, postgresql_where=PURGEABLE_WHERE),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(40), ForeignKey("events.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("number", Integer, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("outcome", String(20), nullable=False),  # an AttemptOutcome
    Column("http_status", Integer),
    Column("error", Text),
    Column("ambiguous", Boolean, nullable=False, default=False),
    Column("ticket_id", BigInteger),
    Column("spp_request_id", String(120)),
    Column("response_excerpt", Text),
    Column("step", String(20), nullable=False, default="ticket"),  # a Step: client, ticket, message
    Column("client_id", BigInteger),
    Column("message_id", BigInteger),
)


# the files that came with an event, by their place in the message's attachment list; kept until
# the event is delivered and its retained data is dropped (docs/conversations.md, attachments)
attachments = Table(
    "attachments",
    metadata,
    Column("event_id", String(40), ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("name", String(255), nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("content", LargeBinary, nullable=False),
)


# SPP clients by email, as looked up or created (docs/conversations.md, clients): one row per
# address (case-folded), so one address never creates two clients. ``client_id`` NULL is a "not
# found" that expires; ``creating_owner`` is the worker that holds the right to create it.
clients = Table(
    "clients",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("client_id", BigInteger),
    Column("how", String(20), nullable=False),  # found, created, not_found
    Column("checked_at", UTCDateTime(), nullable=False),
    Column("creating_owner", String(120)),
    Column("creating_until", UTCDateTime()),
)


# one-time signature tokens (Mailgun's), by token alone: one seen by one source is refused on
# every other, since sources may share a signing key
seen_tokens = Table(
    "seen_tokens",
    metadata,
    Column("token", String(255), primary_key=True),
    Column("source", String(100), nullable=False),
    Column("dedupe_key", String(255), nullable=False),
    Column("seen_at", UTCDateTime(), nullable=False, index=True),
)


# one row (id 1), or none: whether delivery is paused for every process, and why (docs/behaviour.md
# section 5). No row, or a row with paused_since NULL, means delivery runs.
delivery_state = Table(
    "delivery_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("paused_since", UTCDateTime()),
    Column("reason", String(40)),  # a PauseReason
    Column("http_status", Integer),  # SPP's answer that paused delivery, or the last probe's
    Column("next_probe_at", UTCDateTime()),  # when one worker may send the next probe
)
STATE_ROW = 1


# the admin surface's state, shared by every process: random secrets the bridge made for itself
# (the admin session key), sessions signed out before they expired, and failed admin sign-ins and
# bearer tokens per client address and time window
app_secrets = Table(
    "app_secrets",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

revoked_sessions = Table(
    "revoked_sessions",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
)

auth_failures = Table(
    "auth_failures",
    metadata,
    Column("client", String(100), primary_key=True),
    Column("window_start", UTCDateTime(), primary_key=True),
    Column("failures", Integer, nullable=False),
)


# fixed-window request counters of the sources' rate limits (bridge/store/limits.py): one row per
# counted key and window, shared by every process; windows that have ended are deleted now and then
rate_counters = Table(
    "rate_counters",
    metadata,
    Column("key", String(255), primary_key=True),  # source, window length and sender
    Column("window_start", BigInteger, primary_key=True, autoincrement=False),  # Unix seconds
    Column("count", Integer, nullable=False),
)


# the alerts' throttle (bridge/store/alerts.py): one row per alert kind and notification target
# (``target``: a digest of the target's URL with its secrets masked), shared by every process
alert_state = Table(
    "alert_state",
    metadata,
    Column("kind", String(20), primary_key=True),  # failed, queue_age, token
    Column("target", String(64), primary_key=True),
    Column("sent_at", UTCDateTime()),  # the last notification the target accepted
    Column("next_at", UTCDateTime()),  # no notification of this kind to this target before
    Column("sending_owner", String(120)),  # the process whose turn it is, until sending_until
    Column("sending_until", UTCDateTime()),
)

# the failures a target was told about: a failed event whose updated_at matches ``failed_at``
# has been notified (a replayed event that fails again has a new updated_at)
alerted_failures = Table(
    "alerted_failures",
    metadata,
    Column("event_id", String(40), ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
    Column("target", String(64), primary_key=True),
    Column("failed_at", UTCDateTime(), nullable=False),
)


def normalize_url(url: str, instance_path: str) -> str:
    """Heroku's ``postgres://`` becomes psycopg 3's URL; empty means SQLite under instance/."""
    if not url:
        os.makedirs(instance_path, exist_ok=True)
        return f"sqlite:///{os.path.join(instance_path, 'bridge.db')}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """No ping before each use of a pooled PostgreSQL connection: it would cost a round trip per
    webhook (a tenth of the web process's time under load). A connection the database dropped
    (a restart, a failover) is found by the statement that meets it; SQLAlchemy then discards
    every connection of the pool. Intake tries such an insert once more on a new connection
    (``EventStore.add``), the worker retries whatever it was doing, and any other request answers
    503 once (the caller retries)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        _sqlite_setup(engine)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=5,
        connect_args={"connect_timeout": 3},
    )


def _sqlite_setup(engine: Engine) -> None:
    """WAL for concurrent readers; BEGIN IMMEDIATE so writers queue instead of deadlocking."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
