"""Read queries: what the admin API and page, the metrics and the CLI show. Nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, and_, case, cast, func, literal_column, select

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


# what the admin list shows of each row besides SUMMARY_COLUMNS, read out of the JSON columns by
# the database so that no message body or ticket note is fetched for a list
LIST_TEXTS = (
    events.c.ticket_request["subject"].as_string().label("ticket_subject"),
    events.c.message["subject"].as_string().label("message_subject"),
    events.c.message["name"].as_string().label("sender_name"),
    events.c.message["email"].as_string().label("sender_email"),
    events.c.message["discard_reason"].as_string().label("discard_reason"),
)
HOUR = 3600


@dataclass(frozen=True)
class ListFilter:
    """What the admin list is narrowed to; ``since`` bounds ``received_at`` from below."""

    status: Status | None = None
    source: str | None = None
    search: str | None = None
    since: datetime | None = None


def id_floor(moment: datetime) -> str:
    """The smallest event id minted at ``moment`` or later (ids start with their milliseconds in
    hex, see ``bridge.intake.new_event_id``), so a time bound is a range of the primary key.

    A second of slack covers the time between minting an id and stamping ``received_at``; the
    exact bound is on ``received_at`` beside it."""
    millis = max(int((moment.timestamp() - 1) * 1000), 0)
    return f"evt_{millis:012x}"


def _since(moment: datetime) -> ColumnElement[bool]:
    return and_(events.c.id >= id_floor(moment), events.c.received_at >= moment)


def _counted(status: Status) -> Any:
    """How many of a group's rows are in ``status``."""
    return func.sum(case((events.c.status == status, 1), else_=0))


def _narrowed(query: Any, where: ListFilter, with_status: bool = True) -> Any:
    if where.search:
        term = where.search.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(events.c.search_text.like(f"%{term}%", escape="\\"))
    if where.status and with_status:
        query = query.where(events.c.status == where.status)
    if where.source:
        query = query.where(events.c.source == where.source)
    if where.since:
        query = query.where(_since(where.since))
    return query


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
        return self._page(select(*SUMMARY_COLUMNS), ListFilter(status, source, search), limit, cursor)

    def list_page(self, where: ListFilter, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """The admin list's rows, newest first: the summary, the ticket's and the message's subject,
        the sender and the discard reason, in one query."""
        return self._page(select(*SUMMARY_COLUMNS, *LIST_TEXTS), where, limit, cursor)

    def _page(
        self, query: Any, where: ListFilter, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        query = _narrowed(query.order_by(events.c.id.desc()).limit(limit + 1), where)
        if cursor:
            query = query.where(events.c.id < cursor)
        with unavailable(), self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1]["id"] if more else None)

    def raw_request(self, event_id: str) -> dict[str, Any] | None:
        """The event's source, request as stored (``raw_request``, ``raw_body``) and message fields."""
        query = select(events.c.source, events.c.raw_request, events.c.raw_body, events.c.message)
        with unavailable(), self.engine.connect() as conn:
            row = conn.execute(query.where(events.c.id == event_id)).mappings().one_or_none()
        if row is None:
            return None
        message = expand_stored(row["message"]) if row["message"] else {}
        return {
            "source": row["source"],
            "request": row["raw_request"] or {},
            "body": bytes(row["raw_body"] or b""),
            "fields": message.get("fields"),
        }

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

    def count_by_status(self, where: ListFilter | None = None) -> dict[str, int]:
        """Events per status, narrowed like the list (its status aside)."""
        query = _narrowed(select(events.c.status, func.count()).group_by(events.c.status), where or ListFilter(), False)
        with unavailable(), self.engine.connect() as conn:
            return {status: n for status, n in conn.execute(query).all()}

    def hourly(self, now: datetime, hours: int = 24, source: str | None = None) -> list[dict[str, Any]]:
        """Per hour of arrival over the last ``hours`` hours, oldest first: the events received
        (``accepted``), and how many of them are delivered and failed by now. One grouped query
        on a range of the primary key."""
        end = int(now.timestamp()) // HOUR + 1
        start = end - hours
        if self.is_postgres:
            seconds = cast(func.floor(func.extract("epoch", events.c.received_at)), BigInteger)
        else:
            seconds = cast(func.strftime("%s", events.c.received_at), BigInteger)
        hour = seconds // literal_column(str(HOUR), BigInteger)  # a literal: PostgreSQL matches GROUP BY by text
        counts = select(hour.label("hour"), func.count(), _counted(Status.DELIVERED), _counted(Status.FAILED))
        query = _narrowed(
            counts.group_by(hour), ListFilter(source=source, since=datetime.fromtimestamp(start * HOUR, UTC))
        )
        with unavailable(), self.engine.connect() as conn:
            found = {int(row[0]): [int(n or 0) for n in row[1:]] for row in conn.execute(query).all()}
        return [
            dict(zip(("accepted", "delivered", "failed"), found.get(h, [0, 0, 0]), strict=True))
            | {"start": datetime.fromtimestamp(h * HOUR, UTC)}
            for h in range(start, end)
        ]

    def source_counts(self, since: datetime) -> dict[str, dict[str, int]]:
        """Per source, the events received since ``since``: ``accepted`` (all) and ``failed`` (now)."""
        failed = _counted(Status.FAILED)
        # grouped by an expression: on the bare column SQLite would rather walk all of
        # uq_events_source_dedupe_key (grouped already) than the day's range of the primary key
        source = events.c.source.concat(literal_column("''"))
        query = select(source, func.count(), failed).where(_since(since)).group_by(source)
        with unavailable(), self.engine.connect() as conn:
            return {row[0]: {"accepted": int(row[1]), "failed": int(row[2] or 0)} for row in conn.execute(query).all()}

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

    def event_ids(
        self, status: Status, source: str | None = None, since: datetime | None = None, search: str | None = None
    ) -> list[str]:
        """Ids of the events in ``status`` (of ``source``, received at or after ``since``, whose
        sender or subject contains ``search``) that still hold their request, oldest first: what
        a bulk replay takes (retention's purge leaves nothing to replay)."""
        where = ListFilter(status, source, search, since)
        query = _narrowed(select(events.c.id), where).where(events.c.purged_at.is_(None)).order_by(events.c.id)
        with unavailable(), self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def count_events(
        self, status: Status, source: str | None = None, since: datetime | None = None, search: str | None = None
    ) -> int:
        """How many events :meth:`event_ids` would list."""
        where = ListFilter(status, source, search, since)
        query = _narrowed(select(func.count()).select_from(events), where).where(events.c.purged_at.is_(None))
        with unavailable(), self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
