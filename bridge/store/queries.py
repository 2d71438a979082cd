"""Read queries: what the admin API and page, the metrics and the CLI show. Nothing here writes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from bridge.db import attempts, events
from bridge.message import expand_stored
from bridge.status import PENDING, Status
from bridge.store.base import Part, unavailable
from bridge.store.pause import Pause, read_pause

SUMMARY_COLUMNS = (
    events.c.id,
    events.c.source,
    events.c.status,
    events.c.ticket_id,
    events.c.attempts,
    events.c.last_error,
    events.c.spp_request_id,
    events.c.received_at,
    events.c.delivered_at,
    events.c.next_attempt_at,
    events.c.spp_message_id,
    events.c.client_id,
    events.c.client_how,
    events.c.thread_of,
)


class EventQueries(Part):
    def get_event(self, event_id: str) -> dict[str, Any] | None:
        query = select(
            *SUMMARY_COLUMNS,
            events.c.ticket_request,
            events.c.message,
            events.c.request_id,
            events.c.plan,
            events.c.purged_at,
        )
        with unavailable(), self.engine.connect() as conn:
            row = conn.execute(query.where(events.c.id == event_id)).mappings().one_or_none()
        if row is None:
            return None
        event = dict(row)
        event["message"] = expand_stored(event["message"]) if event["message"] else event["message"]
        return event

    def list_events(
        self,
        status: Status | None,
        source: str | None,
        limit: int,
        cursor: str | None,
        search: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; ``search`` matches the sender (name or address) or the subject, any case."""
        query = select(*SUMMARY_COLUMNS).order_by(events.c.id.desc()).limit(limit + 1)
        if search:
            term = search.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(events.c.search_text.like(f"%{term}%", escape="\\"))
        if status:
            query = query.where(events.c.status == status)
        if source:
            query = query.where(events.c.source == source)
        if cursor:
            query = query.where(events.c.id < cursor)
        with unavailable(), self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1]["id"] if more else None)

    def messages(self, event_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored messages of these events, by id (the list above leaves them out)."""
        if not event_ids:
            return {}
        query = select(events.c.id, events.c.message).where(events.c.id.in_(event_ids))
        with unavailable(), self.engine.connect() as conn:
            return {row.id: expand_stored(row.message or {}) for row in conn.execute(query)}

    def list_attempts(self, event_id: str) -> list[dict[str, Any]]:
        query = select(attempts).where(attempts.c.event_id == event_id).order_by(attempts.c.id)
        with unavailable(), self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def latest_by_source(self) -> dict[str, dict[str, Any]]:
        """Each source's newest event (id, status, received_at)."""
        newest = select(func.max(events.c.id)).group_by(events.c.source).scalar_subquery()
        query = select(events.c.source, events.c.id, events.c.status, events.c.received_at).where(
            events.c.id.in_(newest)
        )
        with unavailable(), self.engine.connect() as conn:
            return {r.source: dict(r._mapping) for r in conn.execute(query)}

    def count_by_status(self) -> dict[str, int]:
        query = select(events.c.status, func.count()).group_by(events.c.status)
        with unavailable(), self.engine.connect() as conn:
            return {status: n for status, n in conn.execute(query).all()}

    def oldest_pending(self) -> datetime | None:
        """When the oldest event still waiting for delivery was received."""
        query = select(func.min(events.c.received_at)).where(events.c.status.in_(PENDING))
        with unavailable(), self.engine.connect() as conn:
            value = conn.execute(query).scalar_one_or_none()
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    def delivery_pause(self) -> Pause | None:
        """The delivery pause shared by every process, or None while delivery runs."""
        with unavailable(), self.engine.connect() as conn:
            return read_pause(conn)

    def event_ids(self, status: Status, source: str | None = None, since: datetime | None = None) -> list[str]:
        """Ids of the events in ``status``, oldest first."""
        query = select(events.c.id).where(events.c.status == status).order_by(events.c.id)
        if source:
            query = query.where(events.c.source == source)
        if since:
            query = query.where(events.c.received_at >= since)
        with unavailable(), self.engine.connect() as conn:
            return list(conn.execute(query).scalars())
